//! Checkpoints as researchers have them (issue 23): made here by transformers' Mamba2 (random
//! weights, small config) in each form — transformers' config with model.safetensors, sharded
//! safetensors or pytorch_model.bin, mamba_ssm's config with pytorch_model.bin, and a hub cache
//! tree read through `hf:ORG/NAME` — and each must give transformers' per-token losses to 1e-4
//! (fp32); `import` must write the same weights; a missing or mis-shaped tensor is named.
use std::path::{Path, PathBuf};
use std::process::Command;

use stuffed_model::checkpoint::{self, ConfigLayout, WeightFiles};
use stuffed_model::{Exec, Mamba2LM};
use tch::{Device, Kind, Tensor};

fn export(dir: &Path, tokens: &Tensor, tie: bool, groups: i64, vocab: i64, chunk: i64) -> Tensor {
    let toks: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(tokens).unwrap();
    let tok_path = dir.join("tokens.json");
    std::fs::write(&tok_path, serde_json::to_string(&toks).unwrap()).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = root.join("../.venv/bin/python");
    assert!(py.exists(), "{} missing: run `make test-deps` (installs torch and transformers)", py.display());
    let args = [tie as i64, groups, vocab, chunk].map(|v| v.to_string());
    let res = Command::new(&py).arg(root.join("tests/hf_export.py")).arg(dir).arg(&tok_path).args(args).output().unwrap();
    assert!(res.status.success(), "transformers export failed: {}", String::from_utf8_lossy(&res.stderr));
    checkpoint::read_tensors(&dir.join("losses.safetensors")).unwrap().remove("losses").unwrap()
}

fn per_token_losses(lm: &Mamba2LM, tokens: &Tensor) -> Tensor {
    let logits = tch::no_grad(|| lm.forward(tokens, None, &mut Exec::new(Kind::Float)));
    let (b, l, v) = logits.size3().unwrap();
    let logits = logits.narrow(1, 0, l - 1).reshape([-1, v]); // [B*(L-1), V]
    let target = tokens.narrow(1, 1, l - 1).reshape([-1]);
    logits.log_softmax(-1, Kind::Float).gather(1, &target.unsqueeze(1), false).neg().reshape([b, l - 1])
}

fn check_form(src: &Path, tokens: &Tensor, theirs: &Tensor, layout: ConfigLayout, kind: &str) {
    let source = checkpoint::open(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    assert_eq!(source.layout, layout, "{}", src.display());
    assert_eq!(source.weights.kind(), kind, "{}", src.display());
    let (lm, _) = checkpoint::load(src, Device::Cpu).unwrap();
    let ours = per_token_losses(&lm, tokens);
    let diff = (&ours - theirs).abs().max().double_value(&[]);
    eprintln!("{}: max |loss diff| = {diff:.2e}", src.display());
    assert!(diff <= 1e-4, "{}: per-token losses differ by {diff}", src.display());
}

#[test]
fn every_checkpoint_form_gives_transformers_losses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tokens = Tensor::randint(272, [2, 37], (Kind::Int64, Device::Cpu));
    let theirs = export(d, &tokens, true, 2, 272, 16);
    check_form(&d.join("st"), &tokens, &theirs, ConfigLayout::Transformers, "safetensors");
    check_form(&d.join("shard"), &tokens, &theirs, ConfigLayout::Transformers, "sharded safetensors");
    check_form(&d.join("bin"), &tokens, &theirs, ConfigLayout::Transformers, "pytorch_model.bin");
    check_form(&d.join("ssm_bin"), &tokens, &theirs, ConfigLayout::MambaSsm, "pytorch_model.bin");
    assert!(matches!(checkpoint::open(&d.join("shard")).unwrap().weights, WeightFiles::Sharded { ref shards, .. } if shards.len() > 1));

    // The hub cache, offline, through the environment as a user sets it (the only test of this
    // binary that reads HF_HUB_CACHE, so setting it here races with nothing).
    std::env::set_var("HF_HUB_CACHE", d.join("hub"));
    check_form(Path::new("hf:test-org/tiny-mamba2"), &tokens, &theirs, ConfigLayout::Transformers, "safetensors");
    check_form(
        Path::new("hf:test-org/tiny-mamba2@0123456789abcdef0123456789abcdef01234567"),
        &tokens,
        &theirs,
        ConfigLayout::Transformers,
        "safetensors",
    );
    // Its tokenizer through the same name, recorded by name (not by this machine's cache path),
    // and offered as the checkpoint's tokenizer.
    let tok = stuffed_model::Tokenizer::from_spec("hf:test-org/tiny-mamba2").unwrap();
    assert_eq!(tok.spec(), "hf:test-org/tiny-mamba2");
    assert_eq!(tok.encode("hello world"), vec![2, 3]);
    assert_eq!(tok.eos(), 0);
    let hint = checkpoint::open(Path::new("hf:test-org/tiny-mamba2")).unwrap().meta.tokenizer_hint.unwrap();
    assert!(hint.ends_with("tokenizer.json"), "{hint}");
    let e = stuffed_model::Tokenizer::from_spec("hf:test-org/absent").unwrap_err().to_string();
    assert!(e.contains("models--test-org--absent"), "{e}");
    let e = checkpoint::open(Path::new("hf:test-org/absent")).unwrap_err().to_string();
    assert!(e.contains("hf:test-org/absent") && e.contains("models--test-org--absent") && e.contains("hub"), "{e}");
    let e = checkpoint::open(Path::new("hf:test-org/tiny-mamba2@v9")).unwrap_err().to_string();
    assert!(e.contains("revision 'v9'"), "{e}");

    // `model import` writes our canonical directory with the same weights.
    for form in ["bin", "shard"] {
        let out: PathBuf = d.join(format!("imported-{form}"));
        checkpoint::import(&d.join(form), &out, Some("bytes".into())).unwrap();
        let a = checkpoint::load(&d.join(form), Device::Cpu).unwrap().0;
        let (b, meta) = checkpoint::load(&out, Device::Cpu).unwrap();
        assert_eq!(checkpoint::open(&out).unwrap().layout, ConfigLayout::MambaSsm);
        assert_eq!(meta.tokenizer.as_deref(), Some("bytes"));
        for ((n, x), (_, y)) in a.params().iter().zip(b.params().iter()) {
            assert!(x.equal(y), "{form}: {n} differs after import");
        }
    }
}

#[test]
fn untied_transformers_checkpoint_with_unpadded_vocab() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tensor::randint(260, [1, 50], (Kind::Int64, Device::Cpu));
    let theirs = export(dir.path(), &tokens, false, 1, 260, 32);
    check_form(&dir.path().join("st"), &tokens, &theirs, ConfigLayout::Transformers, "safetensors");
    check_form(&dir.path().join("bin"), &tokens, &theirs, ConfigLayout::Transformers, "pytorch_model.bin");
}

#[test]
fn missing_or_misshaped_tensor_in_a_pickle_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tokens = Tensor::randint(272, [1, 8], (Kind::Int64, Device::Cpu));
    let _ = export(d, &tokens, true, 2, 272, 16);
    let bin = d.join("bin/pytorch_model.bin");
    let mut named = checkpoint::read_torch_pickle(&bin).unwrap();
    // A safetensors stand-in with a wrong shape beside the pickle (safetensors is preferred).
    named.insert("backbone.layers.1.mixer.D".into(), Tensor::ones([3], (Kind::Float, Device::Cpu)));
    let st = d.join("bin/model.safetensors");
    checkpoint::save_tensors(&st, named.iter().map(|(n, t)| (n.clone(), t))).unwrap();
    let e = checkpoint::load(&d.join("bin"), Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("model.safetensors") && e.contains("backbone.layers.1.mixer.D"), "{e}");
    assert!(e.contains("[8]") && e.contains("[3]"), "both shapes named: {e}");
    named.remove("backbone.layers.1.mixer.D");
    checkpoint::save_tensors(&st, named.iter().map(|(n, t)| (n.clone(), t))).unwrap();
    let e = checkpoint::load(&d.join("bin"), Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("missing tensor 'backbone.layers.1.mixer.D'"), "{e}");
    // A file that is not a torch pickle.
    std::fs::remove_file(&st).unwrap();
    std::fs::write(&bin, b"not a zip").unwrap();
    let e = checkpoint::load(&d.join("bin"), Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("pytorch_model.bin") && e.contains("unreadable torch pickle"), "{e}");
}
