#!/bin/bash
# Waits (at most $1 seconds) for both pilot sweeps' controllers to exit, printing progress.
end=$(( $(date +%s) + ${1:-540} ))
alive() { for s in pilot-longmem pilot-default-init; do kill -0 "$(cat /root/$s.pid)" 2>/dev/null && return 0; done; return 1; }
while alive && [ "$(date +%s)" -lt "$end" ]; do sleep 20; done
for s in pilot-longmem pilot-default-init; do echo "== $s"; tail -c 1200 /root/$s.log; echo; done
alive && echo STILL-RUNNING || echo ALL-DONE
