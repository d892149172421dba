"""The same-run anchor of `stuffed bench suite --anchor`: mamba_ssm's Mamba-2 (Triton SSD).

Reads a JSON list of cases on stdin and writes one JSON object per case and repeat on stdout.
A training case times full steps (forward, cross-entropy, backward, grad clip 1.0, fused AdamW,
bf16 autocast) of a language model built from mamba_ssm's `Mamba2` mixer, laid out as ours:
embedding -> n_layer x [fp32 residual += mixer(RMSNorm(residual))] -> RMSNorm -> tied head.
An evaluation case times a no-grad bf16 forward over the whole sequence in one call.

`--src DIR` is the directory holding the `mamba_ssm` package (its `__init__.py` reduced to a
version line, so the CUDA selective-scan extension is not imported); einops must be importable
(`--pythonpath` adds directories). Each case runs `--repeats` times in this process: Triton
autotunes on first use, so the figure to compare is the best repeat, after warm-up steps.

Input case keys: name, kind ("train" | "eval"), d_model, n_layer, vocab, d_state, headdim,
chunk, batch, seq, steps, warmup.
"""
import argparse
import json
import sys
import time


def build(torch, nn, mamba2, c):
    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            d = c["d_model"]
            self.embedding = nn.Embedding(c["vocab"], d)
            self.norms = nn.ModuleList(nn.RMSNorm(d, eps=1e-5) for _ in range(c["n_layer"]))
            self.mixers = nn.ModuleList(
                mamba2.Mamba2(
                    d,
                    d_state=c["d_state"],
                    headdim=c["headdim"],
                    chunk_size=c["chunk"],
                    use_mem_eff_path=False,
                    layer_idx=i,
                )
                for i in range(c["n_layer"])
            )
            self.norm_f = nn.RMSNorm(d, eps=1e-5)

        def forward(self, ids):
            residual = self.embedding(ids).float()
            for norm, mixer in zip(self.norms, self.mixers):
                residual = residual + mixer(norm(residual).to(torch.bfloat16)).float()
            hidden = self.norm_f(residual).to(torch.bfloat16)
            return hidden @ self.embedding.weight.to(torch.bfloat16).t()

    return LM().cuda()


def run_case(torch, F, nn, mamba2, c):
    torch.manual_seed(0)
    model = build(torch, nn, mamba2, c)
    ids = torch.randint(0, c["vocab"], (c["batch"], c["seq"] + 1), device="cuda")
    inputs, targets = ids[:, :-1], ids[:, 1:]
    if c["kind"] == "train":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(inputs)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

    else:

        def step():
            # The loss over slices of 65,536 positions: fp32 logits of the whole sequence at once
            # (524,288 x 50,288) would take 105 GB on their own.
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(inputs)
                flat, tgt = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
                total = torch.zeros((), device="cuda")
                for i in range(0, flat.shape[0], 65536):
                    total += F.cross_entropy(flat[i : i + 65536].float(), tgt[i : i + 65536], reduction="sum")
                return total / flat.shape[0]

    for _ in range(c["warmup"]):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(c["steps"]):
        loss = step()
    torch.cuda.synchronize()
    secs = (time.perf_counter() - start) / c["steps"]
    out = {
        "tokens_per_s": c["batch"] * c["seq"] / secs,
        "step_ms": secs * 1e3,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9,
        "final_loss": float(loss),
        "params": sum(p.numel() for p in model.parameters()),
    }
    del model
    torch.cuda.empty_cache()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True, help="directory holding the mamba_ssm package")
    ap.add_argument("--pythonpath", action="append", default=[], help="more import directories")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    sys.path[:0] = [args.src] + args.pythonpath
    try:
        import huggingface_hub  # noqa: F401  (mamba2.py imports its hub mixin)
    except ImportError:
        import types

        hub = types.ModuleType("huggingface_hub")
        hub.PyTorchModelHubMixin = type("PyTorchModelHubMixin", (), {})
        sys.modules["huggingface_hub"] = hub
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import mamba_ssm
    import mamba_ssm.modules.mamba2 as mamba2

    cases = json.load(sys.stdin)
    meta = {
        "meta": {
            "torch": torch.__version__,
            "mamba_ssm": getattr(mamba_ssm, "__version__", "unknown"),
            "gpu": torch.cuda.get_device_name(0),
            "triton": __import__("triton").__version__,
        }
    }
    print(json.dumps(meta), flush=True)
    for c in cases:
        for r in range(args.repeats):
            rec = {"name": c["name"], "repeat": r}
            try:
                rec.update(run_case(torch, F, nn, mamba2, c))
            except Exception as e:  # reported, never fatal: the next case still runs
                rec["error"] = repr(e)[:400]
                torch.cuda.empty_cache()
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
