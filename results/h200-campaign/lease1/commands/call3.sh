#!/bin/bash
# Lease 1, last call: every kept checkpoint evaluated to 32K (held-out text, newline probe), the
# final checkpoints at 64K with each mitigation, then exports and a tarball into $OUT.
S=/root/stuffed; E=/root/ev; mkdir -p $E
t0=$(date +%s)
for d in /root/runs/*/; do
  id=$(basename $d); T=$(grep -m1 -E '^ +seq_len:' $d/job.yaml | awk '{print $2}')
  for c in $d/ckpt/step-*; do
    st=$(basename $c)
    $S eval loss --checkpoint $c --corpus results/corpora/default --prompts 8 --len 32768 --bucket 512 --train-len $T --precision fp32 --format json --out $E/$id-$st-corpus.json > /dev/null || echo "FAILED $id $st corpus"
    $S eval loss --checkpoint $c --newlines --len 32768 --bucket 512 --train-len $T --precision fp32 --format json --out $E/$id-$st-newlines.json > /dev/null || echo "FAILED $id $st newlines"
  done
  echo "$id T=$T checkpoints evaluated at $(( $(date +%s) - t0 )) s"
done
for d in /root/runs/*/; do
  id=$(basename $d); T=$(grep -m1 -E '^ +seq_len:' $d/job.yaml | awk '{print $2}')
  [ "$T" -le 1024 ] || continue
  c=$(ls -d $d/ckpt/step-* | tail -1)
  for m in none rri dt-scale:c=0.5 state-norm sliding-window:r=$((2*T)); do
    $S eval loss --checkpoint $c --corpus results/corpora/default --prompts 8 --len 65536 --bucket 1024 --train-len $T --precision fp32 --mitigation $m --format json --out "$E/$id-final-64k-${m%%:*}.json" > /dev/null || echo "FAILED $id $m"
  done
  echo "$id mitigations at $(( $(date +%s) - t0 )) s"
done
for s in pilot-longmem pilot-default-init; do $S results export --db /root/$s.db --format dump --out $OUT/$s.dump.json.gz; $S results list --db /root/$s.db; done
mkdir -p /root/pack; cp /root/*.log /root/pack/; for d in /root/runs/*/; do mkdir -p /root/pack/runs/$(basename $d); cp $d/events.jsonl $d/job.yaml /root/pack/runs/$(basename $d)/; done
cp -r $E /root/pack/ev; tar -czf $OUT/pilot-lease1.tar.gz -C /root pack; ls -la $OUT
echo "call3 $(( $(date +%s) - t0 )) s"
