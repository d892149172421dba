#!/bin/bash
# Call 7, a second invocation of call 6: the suite with the mamba_ssm anchor in the same invocation (fused eager and graphed).
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && python3 -c "import lzma,sys;open('stuffed','wb').write(lzma.open('stuffed.xz').read())" && chmod +x stuffed
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv > $OUT/nvidia-smi.csv
timeout 540 ./stuffed bench suite --compare fused --graph both --out $OUT/h200-run2.json --anchor --anchor-src src --anchor-pythonpath pp --only train-130m,train-small,train-tiny,train-study-128,train-study-2048 2>&1 | grep -E "^==|tokens/s|best" | tail -40
