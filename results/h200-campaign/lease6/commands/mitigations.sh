#!/bin/bash
# Lease 6, call 3 (as run, on one line): the paper's training-free mitigations on the final
# checkpoints of five collapsed models of forget-slowa.yaml (d_state 1024 seeds 0 and 1, and
# seed 0 at d_state 512, 256 and 128, all T = 128), loss by position to 65,536 tokens on the
# sweep's 8 held-out files; mitigations.json is this output with the per-prompt losses dropped.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
S=/root/stuffed
for j in 41a6b918d54b99a1 e63483db761af0b0 49753ce79cba1e40 0c84c89ce37669c2 8df6877423e6eb9e; do
  ck=$(ls -d /root/runs/$j/ckpt/step-* | tail -1)
  for m in none rri dt-scale state-norm sliding-window:r=128; do
    echo "== $j $ck $m"
    timeout 60 $S eval loss --checkpoint $ck --corpus results/corpora/java --len 65536 --prompts 8 \
      --bucket 512 --train-len 128 --mitigation $m --format json 2>&1 | tail -c 200000 >> $OUT/mitigations-raw.txt
    echo "rc=$?"
  done
done
