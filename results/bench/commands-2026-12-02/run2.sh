#!/bin/bash
# Call 2: kernel-level profiles (Kineto) of tiny, small and the study shapes, fused, eager.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && gunzip -kf stuffed.gz && chmod +x stuffed
for p in "tiny 64 1024" "small 32 2048" "study 256 128" "study 16 2048"; do
  set -- $p
  timeout 120 ./stuffed bench train --preset $1 --batch $2 --seq $3 --compare fused --graph off --steps 10 --profile /tmp/prof/$1-$3 2>&1 | grep "tokens/s"
  cp /tmp/prof/$1-$3/train-fused.kernels.tsv $OUT/k-$1-$3.tsv
done
