#!/bin/bash
# Session 34 call 4: GPU tests with the conv's output in parts (no concatenation of x, B, C's
# gradients); graphed suite; then study 2048 and 130m with the mamba_ssm anchor in the same invocation.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && for f in stuffed fused_gpu; do python3 -c "import lzma,sys;open(sys.argv[1],\"wb\").write(lzma.open(sys.argv[1]+\".xz\").read())" $f; done && chmod +x stuffed fused_gpu
timeout 120 ./fused_gpu --test-threads 1 2>&1 | grep -E "test result|FAIL|panicked|in parts" | head -30 | tee /tmp/t.txt
grep -q "test result: ok" /tmp/t.txt || exit 3
timeout 60 ./stuffed bench suite --compare fused --graph on --only train-tiny,train-small,train-study-2048,train-study-128 2>&1 | grep -E "tokens/s"
timeout 300 ./stuffed bench suite --compare fused --graph both --out $OUT/h200-call4.json --anchor --anchor-src src --anchor-pythonpath pp --only train-study-2048,train-130m 2>&1 | grep -E "^==|tokens/s|best" | tail -20
echo "done at $SECONDS s"
