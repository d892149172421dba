#!/bin/bash
# Call 4: operator profile with shapes at study-128 (after the one-chunk path).
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && for f in stuffed; do python3 -c "import lzma,sys;open(sys.argv[1],\"wb\").write(lzma.open(sys.argv[1]+\".xz\").read())" $f; done && chmod +x stuffed
timeout 120 ./stuffed bench train --preset study --batch 256 --seq 128 --compare fused --graph off --steps 5 --profile /tmp/prof4 2>&1 | grep "tokens/s"
cp /tmp/prof4/train-fused.tsv $OUT/ops-study-128.tsv
timeout 120 ./stuffed bench train --preset tiny --batch 64 --seq 1024 --compare fused --graph off --steps 5 --profile /tmp/prof5 2>&1 | grep "tokens/s"
cp /tmp/prof5/train-fused.tsv $OUT/ops-tiny.tsv
