#!/bin/bash
# Call 6: GPU tests; trainer eager vs cuda_graph (study shape, T = 128, 200 steps); then the suite
# with the mamba_ssm anchor in the same invocation.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && for f in stuffed fused_gpu; do python3 -c "import lzma,sys;open(sys.argv[1],\"wb\").write(lzma.open(sys.argv[1]+\".xz\").read())" $f; done && chmod +x stuffed fused_gpu
timeout 100 ./fused_gpu --test-threads 1 2>&1 | grep -E "test result|FAIL|panicked"
for g in false true; do
  timeout 150 ./stuffed train --config study.yaml --out /tmp/run-$g --set train.cuda_graph=$g 2>&1 | tail -2
  cp /tmp/run-$g/events.jsonl $OUT/train-graph-$g.jsonl 2>/dev/null || ls /tmp/run-$g
done
