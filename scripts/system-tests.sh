#!/usr/bin/env bash
# The system-level tests: the ones that install Debian packages and change the system (as
# root), so `make test` runs them after saying what it installs and why, and `make test-core`
# never does. Each is `#[ignore]`d in its file (cargo lists it as ignored, with the reason);
# this script installs what they need and runs them with `--ignored`.
#
#   scripts/system-tests.sh           install (as root, one line per group first) and run them
#   scripts/system-tests.sh --skip    print "SKIPPED <test>: <why>" for each (make test-core)
#   scripts/system-tests.sh --list    the tests, one per line: FILE NAME
#   scripts/system-tests.sh --check   each listed test is #[ignore = "system-level..."] in its
#                                     file, and every such test is listed (make test-core runs it)
#
# apt's output goes to $STUFFED_APT_LOG (default target/apt.log, path printed), never to the
# test log. Where packages are missing and this is not root with apt-get, each test is
# reported as SKIPPED by name with the reason, and none of them counts as passed.
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${STUFFED_APT_LOG:-$PWD/target/apt.log}

# FILE|TEST|PACKAGES|WHY (what they are for, and what the test changes on the system)
TESTS=(
  "tests/slurm_e2e.rs|slurm_backend_end_to_end|slurmctld slurmd slurm-client munge|a real one-node Slurm cluster on 127.0.0.1 (tests/slurm/cluster.sh writes /etc/slurm/slurm.conf, /etc/slurm/gres.conf and /etc/munge/munge.key and starts munged, slurmctld and slurmd)"
  "tests/dashboard.rs|sweep_page_in_headless_chromium_goes_live_to_completed_and_job_page_has_a_loss_curve|chromium chromium-driver fonts-dejavu-core|headless Chromium driven over WebDriver (about 26 packages with their dependencies)"
)

field() { local IFS='|'; read -r -a f <<<"$1"; echo "${f[$2]}"; }
installed() { [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]; }
missing() { local p out=(); for p in $1; do installed "$p" || out+=("$p"); done; echo "${out[*]}"; }
# skip_all WHY: one "SKIPPED <test> (<file>): <packages> ... WHY" line per test.
skip_all() {
  local t
  for t in "${TESTS[@]}"; do
    echo "SKIPPED $(field "$t" 1) ($(field "$t" 0)): system-level, needs $(field "$t" 2) for $(field "$t" 3); $1"
  done
}

# check: the list here and the #[ignore = "system-level ..."] attributes agree.
check() {
  local t file name bad=0 f n
  for t in "${TESTS[@]}"; do
    file=$(field "$t" 0) name=$(field "$t" 1)
    if ! grep -B2 -E "^fn $name\(" "$file" | grep -q '#\[ignore = "system-level'; then
      echo "error: $file: $name is listed as a system-level test but not #[ignore = \"system-level ...\"]" >&2
      bad=1
    fi
  done
  for f in tests/*.rs; do
    for n in $(grep -A2 '#\[ignore = "system-level' "$f" | sed -n 's/^fn \([a-z0-9_]*\)(.*/\1/p'); do
      [[ " ${TESTS[*]} " == *"|$n|"* ]] ||
        { echo "error: $f: $n is #[ignore]d as system-level but not listed in $0" >&2; bad=1; }
    done
  done
  ((bad == 0)) && echo "system-tests: ${#TESTS[@]} system-level tests, each #[ignore]d and listed"
  return $bad
}

case ${1:-} in
  --check) check; exit ;;
  --list) for t in "${TESTS[@]}"; do echo "$(field "$t" 0) $(field "$t" 1)"; done; exit 0 ;;
  --skip) skip_all "make test-core never installs system packages (make test does, as root)"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--skip|--list]" >&2; exit 2 ;;
esac

need=""
for t in "${TESTS[@]}"; do need+=" $(missing "$(field "$t" 2)")"; done
if [[ -n ${need// /} ]]; then
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null || [[ -n ${STUFFED_NO_APT:-} ]]; then
    why="not root"; command -v apt-get >/dev/null || why="no apt-get"; [[ -n ${STUFFED_NO_APT:-} ]] && why="STUFFED_NO_APT is set"
    skip_all "missing here:${need}, and they cannot be installed ($why)"
    exit 0
  fi
  mkdir -p "$(dirname "$LOG")"
  for t in "${TESTS[@]}"; do
    pkgs=$(missing "$(field "$t" 2)")
    [[ -n $pkgs ]] && echo "installing $pkgs (for $(field "$t" 0): $(field "$t" 3)); apt output: $LOG"
  done
  export DEBIAN_FRONTEND=noninteractive
  opts=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  # shellcheck disable=SC2086
  if ! apt-get install "${opts[@]}" $need >>"$LOG" 2>&1; then
    echo "apt-get install failed; running apt-get update (apt output: $LOG)"
    # shellcheck disable=SC2086
    { apt-get update -q && apt-get install "${opts[@]}" $need; } >>"$LOG" 2>&1 ||
      { echo "error: apt-get install$need failed; the end of $LOG:" >&2; tail -n 20 "$LOG" >&2; exit 1; }
  fi
fi
args=()
for t in "${TESTS[@]}"; do args+=(--test "$(basename "$(field "$t" 0)" .rs)"); done
cargo test --release -p stuffed "${args[@]}" --no-fail-fast -- --ignored
