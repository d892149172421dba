#!/usr/bin/env python3
"""Compiles model/csrc/kernels with NVRTC (as csrc/ssd.cpp does at first use) and assembles the PTX
for sm_90 with ptxas -v: registers, spills and shared memory of every kernel, on a machine without
a GPU. Needs libnvrtc (the nvidia-cuda-nvrtc wheel) and ptxas (torch's or triton's wheel), both in
the project's .venv after `make venv`.

usage: tools/kernel-regs.py [-DNAME=VALUE ..] [--filter REGEX] [--ptx FILE]
"""
import ctypes, glob, os, re, subprocess, sys, tempfile

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
site = glob.glob(os.path.join(root, ".venv/lib/python3*/site-packages"))
if not site:
    sys.exit("kernel-regs: no .venv (run `make venv` first)")
site = site[0]
nvrtc_lib = (glob.glob(site + "/nvidia/cu13/lib/libnvrtc.so*") + glob.glob(site + "/nvidia/cuda_nvrtc/lib/libnvrtc.so*"))
ptxas = [p for p in (site + "/torch/bin/ptxas", site + "/triton/backends/nvidia/bin/ptxas") if os.path.exists(p)]
if not nvrtc_lib or not ptxas:
    sys.exit("kernel-regs: libnvrtc or ptxas missing from .venv")

args = sys.argv[1:]
defines = [a for a in args if a.startswith("-D")]
filt = re.compile(args[args.index("--filter") + 1]) if "--filter" in args else None
ptx_out = args[args.index("--ptx") + 1] if "--ptx" in args else None

kdir = os.path.join(root, "model/csrc/kernels")
files = sorted(f for f in os.listdir(kdir) if f.endswith((".cu", ".cuh")))
main = "".join(f'#include "{f}"\n' for f in files if f.endswith(".cu"))
texts = [open(os.path.join(kdir, f), "rb").read() for f in files]

ctypes.CDLL(glob.glob(os.path.dirname(nvrtc_lib[0]) + "/libnvrtc-builtins.so*")[0], mode=ctypes.RTLD_GLOBAL)
nv = ctypes.CDLL(nvrtc_lib[0])
prog = ctypes.c_void_p()
arr = lambda xs: (ctypes.c_char_p * len(xs))(*xs)
r = nv.nvrtcCreateProgram(ctypes.byref(prog), main.encode(), b"stuffed_ssd.cu", len(files), arr(texts), arr([f.encode() for f in files]))
assert r == 0, f"nvrtcCreateProgram: {r}"
opts = [b"--gpu-architecture=compute_90", b"--std=c++17", b"-default-device"] + [d.encode() for d in defines]
r = nv.nvrtcCompileProgram(prog, len(opts), arr(opts))
n = ctypes.c_size_t()
nv.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
log = ctypes.create_string_buffer(n.value)
nv.nvrtcGetProgramLog(prog, log)
if r != 0:
    sys.exit("NVRTC failed:\n" + log.value.decode())
nv.nvrtcGetPTXSize(prog, ctypes.byref(n))
ptx = ctypes.create_string_buffer(n.value)
nv.nvrtcGetPTX(prog, ptx)
with tempfile.TemporaryDirectory() as tmp:
    p = ptx_out or os.path.join(tmp, "k.ptx")
    open(p, "wb").write(ptx.value)
    out = subprocess.run([ptxas[0], "-arch=sm_90", "-v", p, "-o", os.path.join(tmp, "k.cubin")], capture_output=True, text=True)
if out.returncode != 0:
    sys.exit("ptxas failed:\n" + out.stderr)
name = None
for line in out.stderr.splitlines():
    m = re.search(r"Compiling entry function '(\w+)'", line)
    if m:
        name = m.group(1)
        continue
    m = re.search(r"Used (\d+) registers", line)
    if m and name and (filt is None or filt.search(name)):
        spill = re.search(r"(\d+) bytes spill stores", out.stderr.split(name, 1)[1])
        smem = re.search(r"(\d+) bytes smem", line)
        print(f"{name:32s} regs {m.group(1):>3s}  smem {smem.group(1) if smem else 0:>5}  spill-stores {spill.group(1) if spill else '?'}")
