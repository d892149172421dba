//! Checkpoint format and parity with an independent implementation: Hugging Face
//! transformers' Mamba2 (pure torch, CPU) reads our checkpoint and must produce our logits to
//! 1e-4 in fp32. `make test` installs transformers into .venv.
use std::path::{Path, PathBuf};
use std::process::Command;

use stuffed_model::checkpoint::{self, CheckpointMeta};
use stuffed_model::{Exec, Mamba2LM, MambaConfig, ModelSpec};
use tch::{Device, Kind, Tensor};

fn venv_python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python")
}

fn config(groups: i64, chunk: i64) -> MambaConfig {
    ModelSpec {
        d_model: Some(64),
        n_layer: Some(2),
        d_state: Some(16),
        headdim: Some(16),
        ngroups: Some(groups),
        chunk_size: Some(chunk),
        vocab_size: Some(257),
        ..Default::default()
    }
    .resolve(None)
    .unwrap()
}

fn hf_logits(dir: &Path, tokens: &Tensor) -> Tensor {
    let toks: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(tokens).unwrap();
    let tok_path = dir.join("tokens.json");
    std::fs::write(&tok_path, serde_json::to_string(&toks).unwrap()).unwrap();
    let out = dir.join("hf_logits.safetensors");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hf_parity.py");
    let py = venv_python();
    assert!(py.exists(), "{} missing: run `make test-deps` (installs torch and transformers)", py.display());
    let res = Command::new(&py).arg(&script).arg(dir).arg(&tok_path).arg(&out).output().unwrap();
    assert!(res.status.success(), "transformers reference failed (run `make test-deps`): {}", String::from_utf8_lossy(&res.stderr));
    checkpoint::read_tensors(&out).unwrap().remove("logits").unwrap()
}

#[test]
fn logits_match_transformers_mamba2() {
    // ngroups 2 with a length that is a multiple of nothing; ngroups 1 with a length not a
    // multiple of the chunk.
    for &(groups, chunk, len) in &[(2, 16, 45), (1, 32, 77)] {
        let cfg = config(groups, chunk);
        let lm = Mamba2LM::seeded(&cfg, Device::Cpu, 11).unwrap();
        let dir = tempfile::tempdir().unwrap();
        checkpoint::save(&lm, dir.path(), &CheckpointMeta::default()).unwrap();
        let tokens = Tensor::randint(257, [2, len], (Kind::Int64, Device::Cpu));
        let ours = tch::no_grad(|| lm.forward(&tokens, None, &mut Exec::new(Kind::Float)));
        let theirs = hf_logits(dir.path(), &tokens);
        assert_eq!(ours.size(), theirs.size());
        let diff = (&ours - &theirs).abs().max().double_value(&[]);
        let scale = ours.abs().max().double_value(&[]);
        eprintln!("groups={groups} chunk={chunk} len={len}: max |diff| = {diff:.2e}, max |logit| = {scale:.3}");
        assert!(diff <= 1e-4, "groups={groups} chunk={chunk} len={len}: max |diff| = {diff}");
    }
}

#[test]
fn round_trip_preserves_weights_and_outputs() {
    let lm = Mamba2LM::seeded(&config(1, 16), Device::Cpu, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let meta = CheckpointMeta { tokenizer: Some("bytes".into()), step: Some(5), tokens: Some(10), ..Default::default() };
    checkpoint::save(&lm, dir.path(), &meta).unwrap();
    let (back, meta2) = checkpoint::load(dir.path(), Device::Cpu).unwrap();
    assert_eq!(meta, meta2);
    assert_eq!(back.cfg, lm.cfg);
    let toks = Tensor::randint(257, [1, 20], (Kind::Int64, Device::Cpu));
    let a = tch::no_grad(|| lm.forward(&toks, None, &mut Exec::new(Kind::Float)));
    let b = tch::no_grad(|| back.forward(&toks, None, &mut Exec::new(Kind::Float)));
    assert_eq!((a - b).abs().max().double_value(&[]), 0.0);
}

#[test]
fn wrong_shape_and_missing_tensor_are_named() {
    let lm = Mamba2LM::seeded(&config(1, 16), Device::Cpu, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    checkpoint::save(&lm, dir.path(), &CheckpointMeta::default()).unwrap();
    let weights = dir.path().join(checkpoint::WEIGHTS_FILE);
    let mut tensors = checkpoint::read_tensors(&weights).unwrap();

    // A mis-shaped D.
    tensors.insert("backbone.layers.1.mixer.D".into(), Tensor::ones([3], (Kind::Float, Device::Cpu)));
    checkpoint::save_tensors(&weights, tensors.iter().map(|(n, t)| (n.clone(), t))).unwrap();
    let err = checkpoint::load(dir.path(), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("backbone.layers.1.mixer.D"), "{err}");
    assert!(err.contains("[8]") && err.contains("[3]"), "both shapes named: {err}");
    assert!(err.contains("model.safetensors"), "file named: {err}");

    // A missing out_proj.
    tensors.remove("backbone.layers.1.mixer.D");
    checkpoint::save_tensors(&weights, tensors.iter().map(|(n, t)| (n.clone(), t))).unwrap();
    let err = checkpoint::load(dir.path(), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("missing tensor 'backbone.layers.1.mixer.D'"), "{err}");
}

#[test]
fn hugging_face_names_load() {
    let lm = Mamba2LM::seeded(&config(1, 16), Device::Cpu, 5).unwrap();
    let dir = tempfile::tempdir().unwrap();
    checkpoint::save(&lm, dir.path(), &CheckpointMeta::default()).unwrap();
    let weights = dir.path().join(checkpoint::WEIGHTS_FILE);
    let renamed: Vec<(String, Tensor)> = checkpoint::read_tensors(&weights)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n.replace("backbone.embedding.", "backbone.embeddings."), t))
        .collect();
    checkpoint::save_tensors(&weights, renamed.iter().map(|(n, t)| (n.clone(), t))).unwrap();
    checkpoint::load(dir.path(), Device::Cpu).unwrap();
}
