#!/bin/bash
# Lease 2: the recall-capacity sweep in the background, waited for at most $1 seconds, then
# exported (whatever has finished) into $OUT.
S=/root/stuffed
if [ ! -x $S ]; then
  cp .gpu/stuffed $S; chmod +x $S
  $S corpus unpack .gpu/corpus-default/default --out results/corpora/default || exit 1
  setsid nohup $S sweep run sweeps/campaign/recall.yaml --db /root/recall.db --runs-dir /root/runs --per-gpu 8 > /root/recall.log 2>&1 < /dev/null &
  echo $! > /root/recall.pid; echo "started $(date -u +%H:%M:%S)"
fi
end=$(( $(date +%s) + ${1:-500} ))
while kill -0 "$(cat /root/recall.pid)" 2>/dev/null && [ "$(date +%s)" -lt "$end" ]; do sleep 15; done
tail -c 2500 /root/recall.log; echo
kill -0 "$(cat /root/recall.pid)" 2>/dev/null && echo STILL-RUNNING || echo DONE
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
$S results export --db /root/recall.db --format dump --out $OUT/recall.dump.json.gz
$S results list --db /root/recall.db
cp /root/recall.log $OUT/
