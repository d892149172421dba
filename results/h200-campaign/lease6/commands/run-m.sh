#!/bin/bash
# Lease 6: sweeps/campaign/forget-slowa-mitigate.yaml in the background on the first call (8 jobs at a
# time on the GPU), waited for at most $1 seconds by every call, then exported (whatever is
# stored) into $OUT, with a GPU utilisation sample every 30 s of the wait.
S=/root/stuffed
if [ ! -x $S ]; then
  gunzip -c .gpu/l6/stuffed.gz > $S; chmod +x $S
fi
[ -f results/corpora/java/manifest.json ] || { $S corpus unpack .gpu/l6/java --out results/corpora/java | tail -1 || exit 1; }
if [ ! -f /root/l6m.pid ]; then
  setsid nohup $S sweep run sweeps/campaign/forget-slowa-mitigate.yaml --db /root/l6m.db --runs-dir /root/runs \
    --per-gpu 8 > /root/l6m.log 2>&1 < /dev/null &
  echo $! > /root/l6m.pid; echo "started $(date -u +%H:%M:%S)"
fi
end=$(( $(date +%s) + ${1:-500} ))
while kill -0 "$(cat /root/l6m.pid)" 2>/dev/null && [ "$(date +%s)" -lt "$end" ]; do
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader >> /root/l6m-smi.csv
  sleep 10
done
grep -v "tok/s" /root/l6m.log | tail -n 40; tail -n 9 /root/l6m.log
kill -0 "$(cat /root/l6m.pid)" 2>/dev/null && echo STILL-RUNNING || echo DONE
$S results export --db /root/l6m.db --format dump --digits 6 --out $OUT/forget-slowa-mitigate.dump.json.gz
$S results list --db /root/l6m.db
cp /root/l6m.log /root/l6m-smi.csv $OUT/
