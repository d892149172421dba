#!/bin/bash
# Session 35 call 3: GPU tests (11: the split's in-place gradient); split A/B at study 2048 (graphed);
# fused loss match (200 steps); the suite with the mamba_ssm anchor in 3 processes, same invocation.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
cd .gpu/g1 && for f in stuffed fused_gpu; do python3 -c "import lzma,sys;open(sys.argv[1],\"wb\").write(lzma.open(sys.argv[1]+\".xz\").read())" $f; done && chmod +x stuffed fused_gpu
timeout 100 ./fused_gpu --test-threads 1 2>&1 | grep -E "^test |test result|FAIL|panicked|split" | head -40 | tee $OUT/gpu-tests.txt
grep -q "test result: ok" $OUT/gpu-tests.txt || exit 3
for v in 1 0 1; do echo "== STUFFED_SPLIT_COLUMNS=$v"; STUFFED_SPLIT_COLUMNS=$v timeout 40 ./stuffed bench suite --compare fused --graph on --only train-study-2048 2>&1 | grep -E "tokens/s"; done
timeout 40 ./stuffed train --config lossmatch.yaml --out /tmp/lm-fused --set train.ssd=fused --set train.cuda_graph=true 2>&1 | tail -1
cp /tmp/lm-fused/events.jsonl $OUT/lossmatch-fused.jsonl
echo "suite starts at $SECONDS s"
timeout $((592-SECONDS)) ./stuffed bench suite --compare fused --graph both --out $OUT/h200.json --anchor --anchor-processes 3 --anchor-src src --anchor-pythonpath pp --only train-130m,train-small,train-tiny,train-study-128,train-study-2048 2>&1 | grep -vE "^\s*$" | grep -vE "^  anchor \[" | tail -40
echo "done at $SECONDS s"
