#!/usr/bin/env bash
# Builds the default corpus (results/corpora/default) if it is missing: English prose from
# Debian packages (perl-doc: Perl's pod manuals; python3-doc: the Python documentation
# sources; fortunes: the fortune cookie files), installed here when missing (as root, saying
# so first; apt's output goes to $STUFFED_APT_LOG, default target/apt.log). With STUFFED_NO_APT
# set (`make test-core`) nothing is installed: it stops with the command to run instead.
# Usage: scripts/bootstrap-corpus.sh [path/to/stuffed]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/stuffed}
OUT=results/corpora/default
[ -f "$OUT/manifest.json" ] && exit 0

have() {
  ls -d /usr/share/perl/5.*/pod >/dev/null 2>&1 &&
    ls -d /usr/share/doc/python3.*/html/_sources >/dev/null 2>&1 &&
    [ -d /usr/share/games/fortunes ]
}
if ! have; then
  pkgs="perl-doc fortunes"
  py=$(apt-cache pkgnames 2>/dev/null | grep -E '^python3\.[0-9]+-doc$' | sort -V | tail -1 || true)
  pkgs="$pkgs ${py:-python3-doc}"
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || [ -n "${STUFFED_NO_APT:-}" ]; then
    echo "bootstrap: the default corpus needs the Debian packages: $pkgs" >&2
    echo "bootstrap: install them (sudo apt-get install --no-install-recommends $pkgs) and re-run" >&2
    exit 1
  fi
  LOG=${STUFFED_APT_LOG:-$PWD/target/apt.log}
  mkdir -p "$(dirname "$LOG")"
  echo "bootstrap: installing $pkgs (documentation text only, for the default corpus results/corpora/default); apt output: $LOG"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends $pkgs >>"$LOG" 2>&1 ||
    { apt-get update -q >>"$LOG" 2>&1 && apt-get install -y -q --no-install-recommends $pkgs >>"$LOG" 2>&1; } ||
    { echo "bootstrap: apt-get install $pkgs failed; see $LOG" >&2; exit 1; }
fi
echo "bootstrap: building the default corpus into $OUT"
"$BIN" corpus build --preset default --out "$OUT"
