#!/bin/bash
# Call 5: GPU tests; 200-step loss match at the study shape, fused (graphed) vs the tensor-op SSD.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && for f in stuffed fused_gpu; do python3 -c "import lzma,sys;open(sys.argv[1],\"wb\").write(lzma.open(sys.argv[1]+\".xz\").read())" $f; done && chmod +x stuffed fused_gpu
timeout 150 ./fused_gpu --test-threads 1 2>&1 | grep -E "test result|FAIL|panicked|model:" | head -20
for v in "fused true" "tensor false"; do set -- $v
  timeout 150 ./stuffed train --config lossmatch.yaml --out /tmp/lm-$1 --set train.ssd=$1 --set train.cuda_graph=$2 2>&1 | tail -1
  cp /tmp/lm-$1/events.jsonl $OUT/lossmatch-$1.jsonl
done
