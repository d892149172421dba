"""Independent Mamba-2 for the parity test: Hugging Face transformers' Mamba2ForCausalLM on the
CPU (its pure-torch path). Loads a stuffed checkpoint directory, runs the given tokens, writes
the fp32 logits as safetensors.

usage: hf_parity.py CHECKPOINT_DIR TOKENS_JSON OUT_SAFETENSORS
"""
import json
import math
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import Mamba2Config, Mamba2ForCausalLM  # noqa: E402


def main(ckpt, tokens_path, out):
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    ssm = cfg.get("ssm_cfg", {})
    d_model, expand, headdim = cfg["d_model"], ssm.get("expand", 2), ssm.get("headdim", 64)
    mult = cfg.get("pad_vocab_size_multiple", 16)
    vocab = (cfg["vocab_size"] + mult - 1) // mult * mult
    hf_cfg = Mamba2Config(
        vocab_size=vocab,
        hidden_size=d_model,
        state_size=ssm.get("d_state", 128),
        num_hidden_layers=cfg["n_layer"],
        expand=expand,
        head_dim=headdim,
        num_heads=expand * d_model // headdim,
        n_groups=ssm.get("ngroups", 1),
        chunk_size=ssm.get("chunk_size", 256),
        conv_kernel=ssm.get("d_conv", 4),
        use_bias=False,
        use_conv_bias=True,
        layer_norm_epsilon=1e-5,
        residual_in_fp32=True,
        tie_word_embeddings=True,
        rms_norm=True,
        norm_before_gate=False,
        time_step_limit=(0.0, math.inf),
    )
    model = Mamba2ForCausalLM(hf_cfg).float().eval()
    sd = load_file(os.path.join(ckpt, "model.safetensors"))
    sd = {k.replace("backbone.embedding.", "backbone.embeddings.", 1): v for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        sys.exit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    tokens = torch.tensor(json.load(open(tokens_path)), dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=tokens).logits.float().contiguous()
    save_file({"logits": logits}, out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
