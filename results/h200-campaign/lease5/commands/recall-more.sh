#!/bin/bash
# Lease 5: the recall sweep (sweeps/campaign/recall-clip-more.yaml) in the background on the first call (the binary and corpus of recall.sh reused),
# waited for at most $1 seconds by every call, then exported (whatever has finished) into $OUT with
# a GPU utilisation sample every 30 s of the wait.
S=/root/stuffed
if [ ! -e /root/l5b.pid ]; then
  [ -x $S ] || gunzip -c .gpu/l5/stuffed.gz > $S; chmod +x $S
  [ -f results/corpora/default/tokens.bin ] || $S corpus unpack .gpu/l5/corpus-default --out results/corpora/default || exit 1
  setsid nohup $S sweep run sweeps/campaign/recall-clip-more.yaml --db /root/l5b.db --runs-dir /root/runs \
    --per-gpu 8 > /root/l5b.log 2>&1 < /dev/null &
  echo $! > /root/l5b.pid; echo "started $(date -u +%H:%M:%S)"
fi
end=$(( $(date +%s) + ${1:-500} ))
while kill -0 "$(cat /root/l5b.pid)" 2>/dev/null && [ "$(date +%s)" -lt "$end" ]; do
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader >> /root/l5b-smi.csv
  sleep 30
done
grep -v "tok/s" /root/l5b.log | tail -n 30; tail -n 9 /root/l5b.log
kill -0 "$(cat /root/l5b.pid)" 2>/dev/null && echo STILL-RUNNING || echo DONE
$S results export --db /root/l5b.db --format dump --digits 6 --out $OUT/recall-clip-more.dump.json.gz
$S results list --db /root/l5b.db
cp /root/l5b.log /root/l5b-smi.csv $OUT/
