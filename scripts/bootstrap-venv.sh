#!/usr/bin/env bash
# Creates (or repairs) the project-local .venv holding PyPI torch==2.11.0, the libtorch that
# tch 0.24 builds and runs against. Idempotent: a venv with the right torch is left alone.
# Usage: scripts/bootstrap-venv.sh [extra pip requirement ...]
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.11.0
PY=${PYTHON:-python3}

torch_version() {
  local f
  f=$(ls .venv/lib/python3*/site-packages/torch/version.py 2>/dev/null | head -1) || true
  [ -n "$f" ] && sed -n "s/^__version__ = '\([^'+]*\).*/\1/p" "$f"
}

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
if [ "$(torch_version)" != "$TORCH_VERSION" ]; then
  echo "bootstrap: installing torch==$TORCH_VERSION into .venv (about 4.6 GB, a few minutes)"
  .venv/bin/pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"
fi
for req in "$@"; do
  name=${req%%[=<>]*}
  if ! .venv/bin/pip show -q "$name" >/dev/null 2>&1; then
    echo "bootstrap: installing $req into .venv"
    .venv/bin/pip install -q --disable-pip-version-check "$req"
  fi
done
