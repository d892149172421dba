#!/bin/bash
# Session 35 call 1: GPU tests (10, with the fused cross-entropy); cross-entropy A/B (graphed);
# 200-step loss match fused (graphed, fused CE) vs tensor; packing curve; 130m kernel profile.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && for f in stuffed fused_gpu; do python3 -c "import lzma,sys;open(sys.argv[1],\"wb\").write(lzma.open(sys.argv[1]+\".xz\").read())" $f; done && chmod +x stuffed fused_gpu
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
timeout 150 ./fused_gpu --test-threads 1 2>&1 | grep -E "^test |test result|FAIL|panicked|cross" | head -40 | tee $OUT/gpu-tests.txt
echo "tests done at $SECONDS s"
B="./stuffed bench suite --compare fused --graph on"
for ce in 1 0 1; do echo "== STUFFED_FUSED_CE=$ce"; STUFFED_FUSED_CE=$ce timeout 90 $B --only train-130m,train-study-2048,train-small,train-tiny 2>&1 | grep -E "tokens/s"; done
echo "A/B done at $SECONDS s"
for v in "fused true" "tensor false"; do set -- $v
  timeout 150 ./stuffed train --config lossmatch.yaml --out /tmp/lm-$1 --set train.ssd=$1 --set train.cuda_graph=$2 2>&1 | tail -1
  cp /tmp/lm-$1/events.jsonl $OUT/lossmatch-$1.jsonl
done
echo "loss match done at $SECONDS s"
[ $SECONDS -lt 400 ] && timeout $((520-SECONDS)) ./stuffed bench pack --case train-study-128 --jobs 1,2,4 --steps 20 --graph --mps --out $OUT/pack.json 2>&1 | tail -12
echo "pack done at $SECONDS s"
[ $SECONDS -lt 500 ] && timeout $((570-SECONDS)) ./stuffed bench suite --compare fused --graph off --steps 3 --profile /tmp/prof --only train-130m 2>&1 | grep -E "tokens/s" && cp /tmp/prof/*kernels.tsv $OUT/
echo "all done at $SECONDS s"
