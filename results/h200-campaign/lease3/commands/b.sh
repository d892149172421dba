#!/bin/bash
# Lease 3, call 2: wait for the sweeps (until $1 s), export them, then the mitigations and the
# newline probe to 262,144 on the final checkpoint of every job trained at 128 tokens.
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
S=/root/stuffed; t0=$(date +%s); end=$(( t0 + ${1:-400} ))
while [ "$(date +%s)" -lt "$end" ] && { kill -0 $(cat /root/collapse-screen.pid) 2>/dev/null || kill -0 $(cat /root/collapse-small.pid) 2>/dev/null; }; do sleep 10; done
for n in collapse-screen collapse-small; do tail -c 1500 /root/$n.log; echo; $S results export --db /root/$n.db --format dump --out $OUT/$n.dump.json.gz 2>&1 | tail -1; $S results list --db /root/$n.db 2>&1 | tail -12; done
cp /root/collapse-screen.log /root/collapse-small.log $OUT/ 2>/dev/null
echo "sweeps waited $(( $(date +%s) - t0 )) s"
