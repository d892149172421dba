"""Checkpoints in the forms found in the wild, made by transformers' Mamba2 (random weights,
small config) for the loader tests, and transformers' per-token losses on given tokens.

usage: hf_export.py OUT_DIR TOKENS_JSON TIE(0|1) GROUPS VOCAB CHUNK

Writes under OUT_DIR: st/ (save_pretrained: transformers config + model.safetensors), shard/
(sharded safetensors + index), bin/ (transformers config + pytorch_model.bin), ssm_bin/
(mamba_ssm config + pytorch_model.bin with mamba_ssm names, like state-spaces/mamba2-*),
hub/models--test-org--tiny-mamba2/ (a hub cache tree: blobs, refs/main, snapshots/<sha> with a
tiny word-level tokenizer.json) and
losses.safetensors (per-token cross-entropy [B, L-1], fp32).
"""
import json
import os
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import Mamba2Config, Mamba2ForCausalLM  # noqa: E402

SHA = "0123456789abcdef0123456789abcdef01234567"


def main(out, tokens_path, tie, groups, vocab, chunk):
    tie, groups, vocab, chunk = tie == "1", int(groups), int(vocab), int(chunk)
    torch.manual_seed(7)
    cfg = Mamba2Config(vocab_size=vocab, hidden_size=64, state_size=16, num_hidden_layers=2, head_dim=16,
                       num_heads=8, n_groups=groups, chunk_size=chunk, tie_word_embeddings=tie)
    model = Mamba2ForCausalLM(cfg).float().eval()
    with torch.no_grad():  # the init leaves norms at 1 and D at 1: perturb everything
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(os.path.join(out, "st"))
    model.save_pretrained(os.path.join(out, "shard"), max_shard_size="40KB")
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    os.makedirs(os.path.join(out, "bin"), exist_ok=True)
    shutil.copy(os.path.join(out, "st", "config.json"), os.path.join(out, "bin"))
    torch.save(sd, os.path.join(out, "bin", "pytorch_model.bin"))
    ssm = os.path.join(out, "ssm_bin")
    os.makedirs(ssm, exist_ok=True)
    json.dump({"d_model": 64, "n_layer": 2, "vocab_size": vocab, "pad_vocab_size_multiple": 16 if vocab % 16 == 0 else 1,
               "tie_embeddings": tie, "ssm_cfg": {"layer": "Mamba2", "d_state": 16, "headdim": 16, "ngroups": groups,
                                                  "chunk_size": chunk}}, open(os.path.join(ssm, "config.json"), "w"))
    ssm_sd = {k.replace("backbone.embeddings.", "backbone.embedding."): v for k, v in sd.items()}
    torch.save(ssm_sd, os.path.join(ssm, "pytorch_model.bin"))
    repo = os.path.join(out, "hub", "models--test-org--tiny-mamba2")
    os.makedirs(os.path.join(repo, "blobs"), exist_ok=True)
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    snap = os.path.join(repo, "snapshots", SHA)
    os.makedirs(snap, exist_ok=True)
    for i, name in enumerate(["config.json", "model.safetensors"]):
        blob = os.path.join(repo, "blobs", f"blob{i}")
        shutil.copy(os.path.join(out, "st", name), blob)
        os.symlink(os.path.join("..", "..", "blobs", f"blob{i}"), os.path.join(snap, name))
    open(os.path.join(repo, "refs", "main"), "w").write(SHA)
    # A tiny word-level tokenizer.json (with GPT-NeoX's end-of-text token) in the snapshot.
    from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
    vocab = {w: i for i, w in enumerate(["<|endoftext|>", "[UNK]", "hello", "world"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(os.path.join(snap, "tokenizer.json"))
    tokens = torch.tensor(json.load(open(tokens_path)), dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=tokens).logits.float()
    losses = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                                               reduction="none").reshape(tokens.shape[0], -1)
    save_file({"losses": losses.contiguous()}, os.path.join(out, "losses.safetensors"))


if __name__ == "__main__":
    main(*sys.argv[1:7])
