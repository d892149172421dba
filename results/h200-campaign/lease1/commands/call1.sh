#!/bin/bash
# Lease 1, call 1: binary, corpus, the long-memory init, then both pilot sweeps in the background.
set -euo pipefail
S=/root/stuffed; cp .gpu/stuffed $S; chmod +x $S
$S --version; nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
t0=$(date +%s)
$S corpus unpack .gpu/corpus-default/default --out results/corpora/default
$S train --config .gpu/campaign/init.yaml --out /root/initrun 2>&1 | tail -2
python3 .gpu/dtscale.py /root/initrun/ckpt/step-00000001 results/init/longmem 0.1
mkdir -p /root/state; cp -r results/init /root/state/ 2>/dev/null || true
for s in pilot-longmem pilot-default-init; do
  setsid nohup $S sweep run sweeps/campaign/$s.yaml --db /root/$s.db --runs-dir /root/runs --per-gpu 4 > /root/$s.log 2>&1 < /dev/null &
  echo $! > /root/$s.pid
done
echo "setup $(( $(date +%s) - t0 )) s; sweeps started $(date -u +%H:%M:%S)"
sleep 75
tail -c 1500 /root/pilot-longmem.log; echo; tail -c 800 /root/pilot-default-init.log
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
