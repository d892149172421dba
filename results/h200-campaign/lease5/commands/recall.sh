#!/bin/bash
# Lease 5: the recall sweep (sweeps/campaign/recall-clip.yaml) in the background on the first call,
# waited for at most $1 seconds by every call, then exported (whatever has finished) into $OUT with
# a GPU utilisation sample every 30 s of the wait.
S=/root/stuffed
if [ ! -x $S ]; then
  gunzip -c .gpu/l5/stuffed.gz > $S; chmod +x $S
  $S corpus unpack .gpu/l5/corpus-default --out results/corpora/default || exit 1
  setsid nohup $S sweep run sweeps/campaign/recall-clip.yaml --db /root/l5.db --runs-dir /root/runs \
    --per-gpu 8 > /root/l5.log 2>&1 < /dev/null &
  echo $! > /root/l5.pid; echo "started $(date -u +%H:%M:%S)"
fi
end=$(( $(date +%s) + ${1:-500} ))
while kill -0 "$(cat /root/l5.pid)" 2>/dev/null && [ "$(date +%s)" -lt "$end" ]; do
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader >> /root/l5-smi.csv
  sleep 30
done
grep -v "tok/s" /root/l5.log | tail -n 30; tail -n 9 /root/l5.log
kill -0 "$(cat /root/l5.pid)" 2>/dev/null && echo STILL-RUNNING || echo DONE
$S results export --db /root/l5.db --format dump --digits 6 --out $OUT/recall-clip.dump.json.gz
$S results list --db /root/l5.db
cp /root/l5.log /root/l5-smi.csv $OUT/
