#!/usr/bin/env bash
# Checks that `make demo` (cargo build --release --bin stuffed) reuses the build `make test`
# left: nothing may compile. Otherwise prints cargo's reasons (the "dirty" lines of its
# fingerprint log) and fails. Issue 24 item 7: runner/build.rs reran on every refresh of
# .git/index, which rebuilt the runner crate.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(CARGO_LOG=cargo::core::compiler::fingerprint=info cargo build --release --bin stuffed 2>&1) ||
  { echo "$log" | tail -n 20 >&2; exit 1; }
if grep -q '^ *Compiling ' <<<"$log"; then
  echo "error: cargo build --release --bin stuffed rebuilt after the tests (make demo would too):" >&2
  grep -E '^ *Compiling |dirty' <<<"$log" | cut -c1-400 >&2
  exit 1
fi
echo "check-build-fresh: make demo reuses this build (nothing to compile)"
