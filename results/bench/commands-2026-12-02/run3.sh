#!/bin/bash
# Call 3: GPU tests (fused vs tensor incl. one chunk from zero; graphed vs eager), then the
# study shapes and tiny/small with the new pass kernels and the one-chunk path, kernel profile.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && for f in stuffed fused_gpu; do python3 -c "import lzma,sys;open(sys.argv[1],\"wb\").write(lzma.open(sys.argv[1]+\".xz\").read())" $f; done && chmod +x stuffed fused_gpu
timeout 200 ./fused_gpu --test-threads 1 2>&1 | tail -25
for p in "study 256 128" "study 16 2048" "tiny 64 1024" "small 32 2048"; do
  set -- $p
  timeout 120 ./stuffed bench train --preset $1 --batch $2 --seq $3 --compare fused --graph both --steps 20 --profile /tmp/prof3/$1-$3 2>&1 | grep "tokens/s"
  cp /tmp/prof3/$1-$3/train-fused.kernels.tsv $OUT/k-$1-$3.tsv
done
