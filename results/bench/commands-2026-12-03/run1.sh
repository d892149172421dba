#!/bin/bash
# Call 1 (2026-12-03): GPU tests with the fused add + RMSNorm; the suite, graphed fused only, no anchor.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && for f in stuffed fused_gpu; do python3 -c "import lzma,sys;open(sys.argv[1],\"wb\").write(lzma.open(sys.argv[1]+\".xz\").read())" $f; done && chmod +x stuffed fused_gpu
timeout 150 ./fused_gpu --test-threads 1 2>&1 | grep -E "test result|FAIL|panicked|add norm .*(1024|D=1 )|model:" | head -30
timeout 300 ./stuffed bench suite --compare fused --graph on --profile /tmp/prof --only train-tiny,train-small,train-study-128,train-study-2048,train-130m 2>&1 | grep -E "^==|tokens/s|best" | tail -30
cp /tmp/prof/train-study-2048-fused.kernels.tsv /tmp/prof/train-small-fused.kernels.tsv /tmp/prof/train-tiny-fused.kernels.tsv $OUT/ 2>/dev/null; ls /tmp/prof | head
