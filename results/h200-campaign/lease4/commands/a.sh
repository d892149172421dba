#!/bin/bash
# Lease 4: the BPE collapse screen in the background, waited for until $1 s after the start, then exported.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
S=/root/stuffed; t0=$(date +%s); n=collapse-bpe
if [ ! -x $S ]; then
  gunzip -c .gpu/l4/stuffed.gz > $S; chmod +x $S; $S --version
  $S corpus unpack .gpu/l4/javabpe --out results/corpora/java-gpt2 | tail -1
  setsid nohup $S sweep run sweeps/campaign/$n.yaml --db /root/$n.db --runs-dir /root/runs --per-gpu 4 > /root/$n.log 2>&1 < /dev/null &
  echo $! > /root/$n.pid; echo "started $(date -u +%H:%M:%S)"
  sleep 60; tail -c 800 /root/$n.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
fi
end=$(( t0 + ${1:-570} ))
while [ "$(date +%s)" -lt "$end" ] && kill -0 $(cat /root/$n.pid) 2>/dev/null; do sleep 10; done
tail -c 1500 /root/$n.log; echo
$S results export --db /root/$n.db --format dump --out $OUT/$n.dump.json.gz 2>&1 | tail -1
$S results list --db /root/$n.db 2>&1 | tail -5; cp /root/$n.log $OUT/
echo "call wall $(( $(date +%s) - t0 )) s"
