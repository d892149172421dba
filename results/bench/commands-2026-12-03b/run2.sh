#!/bin/bash
# Session 34 call 2: GPU tests with the hardware bf16 conversion, add-norm V 4, rows E 8, conv V 2;
# A/B (graphed); 130m; Kineto kernel profile of study 2048.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && for f in stuffed fused_gpu; do python3 -c "import lzma,sys;open(sys.argv[1],\"wb\").write(lzma.open(sys.argv[1]+\".xz\").read())" $f; done && chmod +x stuffed fused_gpu
timeout 120 ./fused_gpu --test-threads 1 2>&1 | grep -E "test result|FAIL|panicked" | head -20
B="./stuffed bench suite --compare fused --graph on"
for d in "" "-DBF16_CVT=0" "-DADDNORM_VEC=1" "-DROWS_REGS=64" "-DCONV_VEC=4" "-DCONV_VEC=1" "-DROWS_VEC=4" "-DGNORM_BWD_VREGS=48" ""; do
  [ $SECONDS -gt 400 ] && break
  echo "== $d"; STUFFED_KERNEL_DEFINES="$d" timeout 60 $B --only train-tiny,train-small,train-study-2048,train-study-128 2>&1 | grep -E "tokens/s"; done
timeout 90 $B --only train-130m 2>&1 | grep -E "tokens/s"
timeout 60 ./stuffed bench suite --compare fused --graph off --steps 3 --profile /tmp/prof --only train-study-2048 2>&1 | grep -E "tokens/s"
cp /tmp/prof/*kernels.tsv $OUT/ 2>/dev/null; ls $OUT
