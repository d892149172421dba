#!/bin/bash
# Call 2: Kineto kernel profiles of the eager fused step after the fused add + norm (tiny, small, study 2048).
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && for f in stuffed; do python3 -c "import lzma,sys;open(sys.argv[1],\"wb\").write(lzma.open(sys.argv[1]+\".xz\").read())" $f; done && chmod +x stuffed
timeout 300 ./stuffed bench suite --compare fused --graph off --steps 3 --profile /tmp/prof --only train-tiny,train-small,train-study-2048,train-130m 2>&1 | grep -E "^==|tokens/s|best" | tail -30
ls /tmp/prof; cp /tmp/prof/*kernels.tsv $OUT/
