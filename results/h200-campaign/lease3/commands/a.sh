#!/bin/bash
# Lease 3, call 1: binary and corpus; the packing curve (issue 20) on the idle GPU; then the two
# collapse-screen sweeps in the background with the 200-step loss match beside them; waited for
# until $1 seconds after the start, then whatever is stored is exported.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
export PATH=$PATH:/usr/local/nvidia/bin
S=/root/stuffed; t0=$(date +%s)
gunzip -c .gpu/l3/stuffed.gz > $S; chmod +x $S; $S --version
$S corpus unpack .gpu/l3/java --out results/corpora/java | tail -1
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.max.sm --format=csv,noheader
echo "setup $(( $(date +%s) - t0 )) s"
t1=$(date +%s)
timeout 240 $S bench pack --case train-study-128 --jobs 1,2,4,8 --steps 20 --mps --out $OUT/pack-study-128.json 2>&1 | tail -25
echo "pack $(( $(date +%s) - t1 )) s"
for s in collapse-screen:6 collapse-small:2; do n=${s%%:*}; k=${s##*:}
  setsid nohup $S sweep run sweeps/campaign/$n.yaml --db /root/$n.db --runs-dir /root/runs --per-gpu $k > /root/$n.log 2>&1 < /dev/null &
  echo $! > /root/$n.pid
done
echo "sweeps started $(date -u +%H:%M:%S)"
( for ssd in fused tensor; do t=$(date +%s)
    $S train --config .gpu/l3/lossmatch.yaml --out /root/lm-$ssd --set train.ssd=$ssd > /root/lm-$ssd.log 2>&1
    echo "lossmatch $ssd rc=$? $(( $(date +%s) - t )) s" >> /root/lm.log
  done ) &
end=$(( t0 + ${1:-580} ))
while [ "$(date +%s)" -lt "$end" ] && { kill -0 $(cat /root/collapse-screen.pid) 2>/dev/null || kill -0 $(cat /root/collapse-small.pid) 2>/dev/null; }; do sleep 10; done
cat /root/lm.log 2>/dev/null; tail -n 2 /root/lm-*.log
for ssd in fused tensor; do [ -f /root/lm-$ssd/events.jsonl ] && cp /root/lm-$ssd/events.jsonl $OUT/lm-$ssd.events.jsonl; done
for n in collapse-screen collapse-small; do tail -c 1200 /root/$n.log; echo; $S results export --db /root/$n.db --format dump --out $OUT/$n.dump.json.gz 2>&1 | tail -1; done
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
echo "call wall $(( $(date +%s) - t0 )) s"
