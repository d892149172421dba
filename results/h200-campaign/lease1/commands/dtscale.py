"""Copies a stuffed checkpoint's model.safetensors with every layer's initial dt multiplied by C
(dt = softplus(dt_bias); new dt_bias = log(expm1(C * dt))): the 'long-memory init' lever of the
campaign pilots. Standard library only. Usage: dtscale.py SRC_DIR DST_DIR C"""
import json, math, os, shutil, struct, sys

src, dst, c = sys.argv[1], sys.argv[2], float(sys.argv[3])
os.makedirs(dst, exist_ok=True)
for name in ("config.json", "stuffed.json"):
    if os.path.exists(os.path.join(src, name)):
        shutil.copy(os.path.join(src, name), os.path.join(dst, name))
raw = open(os.path.join(src, "model.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
body = bytearray(raw[8 + n:])
changed = []
for key, t in header.items():
    if not key.endswith("mixer.dt_bias"):
        continue
    assert t["dtype"] == "F32", t
    a, b = t["data_offsets"]
    vals = struct.unpack(f"<{(b - a) // 4}f", body[a:b])
    dts = [math.log1p(math.exp(v)) for v in vals]
    new = [math.log(math.expm1(c * d)) for d in dts]
    body[a:b] = struct.pack(f"<{len(new)}f", *new)
    changed.append((key, min(dts), max(dts), min(c * d for d in dts), max(c * d for d in dts)))
open(os.path.join(dst, "model.safetensors"), "wb").write(raw[:8 + n] + bytes(body))
for k, lo, hi, nlo, nhi in changed:
    print(f"{k}: dt {lo:.2e}..{hi:.2e} -> {nlo:.2e}..{nhi:.2e}")
