#!/bin/bash
# Call 7: trainer eager run-to-run spread (the study shape, T = 128, 200 steps, a second eager run);
# then the suite with the mamba_ssm anchor in the same invocation, fused eager and graphed.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && for f in stuffed; do python3 -c "import lzma,sys;open(sys.argv[1],\"wb\").write(lzma.open(sys.argv[1]+\".xz\").read())" $f; done && chmod +x stuffed
for r in false-a false-b true-a; do
  timeout 100 ./stuffed train --config study.yaml --out /tmp/run-$r --set train.cuda_graph=${r%-*} 2>&1 | tail -1
  cp /tmp/run-$r/events.jsonl $OUT/train-graph-$r.jsonl
done
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv > $OUT/nvidia-smi.csv
timeout 480 ./stuffed bench suite --compare fused --graph both --out $OUT/h200.json --profile /tmp/psuite --anchor --anchor-src src --anchor-pythonpath pp 2>&1 | grep -v "^    " | tail -40
cp /tmp/psuite/train-study-2048-fused.kernels.tsv $OUT/ 2>/dev/null; cp /tmp/psuite/train-130m-fused.kernels.tsv $OUT/ 2>/dev/null
