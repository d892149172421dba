#!/bin/bash
# Call 4: GPU tests after one-wave grids for the norms; A/B of the conv's load groups; eager kernel profile.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && for f in stuffed fused_gpu; do python3 -c "import lzma,sys;open(sys.argv[1],\"wb\").write(lzma.open(sys.argv[1]+\".xz\").read())" $f; done && chmod +x stuffed fused_gpu
timeout 150 ./fused_gpu --test-threads 1 2>&1 | grep -E "test result|FAIL|panicked|model:" | head -20
B="./stuffed bench suite --compare fused"
for d in "-DCONV_GROUP=8" "-DCONV_GROUP=1" "-DCONV_GROUP=4" "-DCONV_GROUP=8"; do echo "== $d"; STUFFED_KERNEL_DEFINES="$d" timeout 60 $B --graph on --only train-tiny,train-small,train-study-2048 2>&1 | grep -E "tokens/s"; done
timeout 120 $B --graph off --steps 3 --profile /tmp/prof --only train-study-2048 2>&1 | grep -E "tokens/s"
cp /tmp/prof/*kernels.tsv $OUT/
