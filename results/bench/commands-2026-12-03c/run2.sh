#!/bin/bash
# Session 35 call 2: GPU tests with the cross-entropy's warp-a-row kernels; its A/B (graphed);
# then the suite with the mamba_ssm anchor in 3 separate processes, in the same invocation.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && for f in stuffed fused_gpu; do python3 -c "import lzma,sys;open(sys.argv[1],\"wb\").write(lzma.open(sys.argv[1]+\".xz\").read())" $f; done && chmod +x stuffed fused_gpu
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
timeout 120 ./fused_gpu --test-threads 1 2>&1 | grep -E "test result|FAIL|panicked|cross" | head -20 | tee /tmp/t.txt
grep -q "test result: ok" /tmp/t.txt || exit 3
B="./stuffed bench suite --compare fused --graph on --only train-study-128,train-study-2048,train-small,train-tiny"
for v in "STUFFED_FUSED_CE=1" "STUFFED_FUSED_CE=0" "STUFFED_KERNEL_DEFINES=-DCE_WARP_MAX=0" "STUFFED_FUSED_CE=1"; do echo "== $v"; env $v timeout 60 $B 2>&1 | grep -E "tokens/s"; done
echo "A/B done at $SECONDS s"
timeout $((585-SECONDS)) ./stuffed bench suite --compare fused --graph both --out $OUT/h200.json --anchor --anchor-processes 3 --anchor-src src --anchor-pythonpath pp --only train-130m,train-small,train-tiny,train-study-128,train-study-2048 2>&1 | grep -vE "^\s*$" | tail -40
echo "done at $SECONDS s"
