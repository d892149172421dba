#!/bin/bash
# Session 34 call 1: GPU tests with the vector loads (conv, rows, gated norm) and the fast sigmoid;
# A/B of CONV_VEC, ROWS_VEC, GNORM_VEC and register caps (graphed, same process kind); ncu if time is left.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && for f in stuffed fused_gpu; do python3 -c "import lzma,sys;open(sys.argv[1],\"wb\").write(lzma.open(sys.argv[1]+\".xz\").read())" $f; done && chmod +x stuffed fused_gpu
uname -r; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
timeout 170 ./fused_gpu --test-threads 1 2>&1 | grep -E "test result|FAIL|panicked|conv |gated norm" | head -40
B="./stuffed bench suite --compare fused --graph on"
for d in "-DCONV_VEC=1 -DROWS_VEC=2 -DGNORM_VEC=1 -DDECAY_FAST_EXP=0 -DSCALE_VEC=1" "" "-DCONV_VEC=1" "-DROWS_VEC=2" "-DGNORM_VEC=1" "-DDECAY_FAST_EXP=0" "-DSCALE_VEC=1" "-DROWS_VEC=8" "-DROWS_REGS=64" "-DCONV_VEC=2 -DCONV_TILE=64" "-DGNORM_BWD_VREGS=96" ""; do
  [ $SECONDS -gt 470 ] && break
  echo "== $d"; STUFFED_KERNEL_DEFINES="$d" timeout 60 $B --only train-tiny,train-small,train-study-2048 2>&1 | grep -E "tokens/s"; done
NCU=$(which ncu || ls /opt/nvidia/nsight-compute/*/ncu | head -1); echo "ncu: $NCU at $SECONDS s"
[ $SECONDS -lt 450 ] && timeout $((540-SECONDS)) $NCU --clock-control none -k regex:'conv_bwd|gnorm_bwd|gnorm_fwd|decay_fwd|ssd_xw|addnorm_bwd|ssd_dy' --launch-skip 100 -c 14 \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats \
  ./stuffed bench suite --compare fused --graph off --steps 2 --warmup 1 --only train-study-2048 > $OUT/ncu-study-2048.txt 2>&1; echo ncu rc $?
