#!/bin/bash
# Call 3: GPU tests after restrict pointers / grouped loads; suite graphed; A/B of register caps; eager kernel profiles.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && for f in stuffed fused_gpu; do python3 -c "import lzma,sys;open(sys.argv[1],\"wb\").write(lzma.open(sys.argv[1]+\".xz\").read())" $f; done && chmod +x stuffed fused_gpu
timeout 150 ./fused_gpu --test-threads 1 2>&1 | grep -E "test result|FAIL|panicked|model:" | head -20
B="./stuffed bench suite --compare fused"
timeout 200 $B --graph on --only train-tiny,train-small,train-study-128,train-study-2048,train-130m 2>&1 | grep -E "tokens/s"
for d in "-DGNORM_BWD_REGS=64" "-DROWS_REGS=64" "-DCONV_GROUP=16"; do echo "== $d"; STUFFED_KERNEL_DEFINES="$d" timeout 60 $B --graph on --only train-small,train-study-2048 2>&1 | grep -E "tokens/s"; done
timeout 120 $B --graph off --steps 3 --profile /tmp/prof --only train-tiny,train-study-2048 2>&1 | grep -E "tokens/s"
cp /tmp/prof/*kernels.tsv $OUT/
