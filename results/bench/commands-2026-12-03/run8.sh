#!/bin/bash
# Call 8: GPU tests after the row kernels' shared warps for short rows; then train-tiny (P 32) with
# the mamba_ssm anchor in the same invocation, twice if the time allows.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && for f in stuffed fused_gpu; do python3 -c "import lzma,sys;open(sys.argv[1],\"wb\").write(lzma.open(sys.argv[1]+\".xz\").read())" $f; done && chmod +x stuffed fused_gpu
timeout 60 ./fused_gpu --test-threads 1 2>&1 | grep -E "test result|FAIL|panicked|model:" | head -20 | tee /tmp/t.txt
grep -q "test result: ok" /tmp/t.txt || exit 3
for i in 1 2; do
  timeout 100 ./stuffed bench suite --compare fused --graph both --out $OUT/h200-tiny-$i.json --anchor --anchor-src src --anchor-pythonpath pp --only train-tiny 2>&1 | grep -E "tokens/s|best"
done
