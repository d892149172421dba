#!/bin/bash
# Call 1: does the graphed step capture, and what does it give (tiny, small, study), fused only.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && gunzip -kf stuffed.gz && chmod +x stuffed
for p in "tiny 64 1024" "small 32 2048" "study 256 128" "study 16 2048"; do
  set -- $p
  timeout 120 ./stuffed bench train --preset $1 --batch $2 --seq $3 --compare fused --graph both --steps 20 2>&1 | grep -v "^  profile" | tail -6
done
