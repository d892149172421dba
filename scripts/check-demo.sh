#!/usr/bin/env bash
# Checks what `make demo` drew (issue 24 item 3) and says it in one line: passkey retrieval
# learned at short lengths and failing at longer ones (a T_recall interval in the report's
# t_recall_points.csv), retrieved at every length tried (a lower bound), or not learned, in
# which case the report must say so in its summary. Fails when the report is missing or its
# summary does not match its T_recall points.
# Usage: scripts/check-demo.sh [report dir, default results/demo-report]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-results/demo-report}
csv=$dir/t_recall_points.csv
md=$dir/README.md
for f in "$csv" "$md"; do
  [ -f "$f" ] || { echo "check-demo: $f is missing: run make demo" >&2; exit 1; }
done
header=$(head -n 1 "$csv")
[ "$header" = "state_size,S_M,t_recall_lo_K,t_recall_hi_K,kind" ] ||
  { echo "check-demo: $csv: unexpected header '$header'" >&2; exit 1; }
# state_size,S_M,lo,hi,kind -> "S: [lo, hi) K" for the sizes where retrieval was measured
learned=$(awk -F, 'NR > 1 && ($5 == "interval" || $5 == "lower_bound") {
  printf "%s%s at S = %s", sep, ($5 == "interval" ? "[" $3 "K, " $4 "K)" : ">= " $3 "K"), $1; sep = "; " }' "$csv")
if [ -n "$learned" ]; then
  if awk -F, 'NR > 1 && $5 == "interval" { found = 1 } END { exit !found }' "$csv"; then
    echo "check-demo: passkey retrieval learned and failing at longer prompts: T_recall $learned"
  else
    echo "check-demo: passkey retrieved at every length tried: T_recall $learned"
  fi
elif grep -q -e "No passkey retrieved" -e "No model retrieved the passkey" "$md"; then
  echo "check-demo: no model learned passkey retrieval in this run (the report says so; it depends on the seed, see README)"
else
  echo "check-demo: $csv has no T_recall but $md does not say that no passkey was retrieved" >&2
  exit 1
fi
