#!/bin/bash
# Session 34 call 3: short A/B of the row kernels' registers at 8 values a lane; then the suite with
# the mamba_ssm anchor in the same invocation (fused eager and graphed), twice if the time allows.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && python3 -c "import lzma,sys;open('stuffed','wb').write(lzma.open('stuffed.xz').read())" && chmod +x stuffed
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv > $OUT/nvidia-smi.csv
for d in "" "-DROWS_REGS=96" "-DROWS_VEC=4"; do echo "== $d"; STUFFED_KERNEL_DEFINES="$d" timeout 60 ./stuffed bench suite --compare fused --graph on --only train-small,train-study-2048 2>&1 | grep -E "tokens/s"; done
for i in 1 2; do
  [ $SECONDS -gt 300 ] && break
  timeout $((560-SECONDS)) ./stuffed bench suite --compare fused --graph both --out $OUT/h200-$i.json --anchor --anchor-src src --anchor-pythonpath pp --only train-130m,train-small,train-tiny,train-study-128,train-study-2048 2>&1 | grep -E "^==|tokens/s|best" | tail -40
  echo "invocation $i done at $SECONDS s"
done
