//! End-to-end tests of issue 23 on the CPU: `stuffed analyze` on a tiny checkpoint in
//! transformers' layout (the paper's first experiment in one command, stored as an analysis job
//! with a report), `stuffed model import`, and continued pre-training (`init_from`) from a
//! checkpoint in transformers' layout.
mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{fixture_corpus, jobs_json, ok};
use stuffed_model::checkpoint;
use stuffed_model::{Mamba2LM, ModelSpec};
use tch::Device;

/// A tiny random Mamba-2 (bytes vocabulary) written as transformers writes one: Mamba2Config
/// keys and Hugging Face parameter names, no stuffed.json.
fn transformers_checkpoint(dir: &Path) -> PathBuf {
    let spec =
        ModelSpec { d_model: Some(32), n_layer: Some(2), d_state: Some(8), headdim: Some(16), chunk_size: Some(32), ..Default::default() };
    let cfg = spec.resolve(Some(257)).unwrap();
    let lm = Mamba2LM::seeded(&cfg, Device::Cpu, 1).unwrap();
    let out = dir.join("hf-tiny");
    std::fs::create_dir_all(&out).unwrap();
    let named = lm.params().iter().map(|(n, t)| (n.replace("backbone.embedding.", "backbone.embeddings."), t)).collect::<Vec<_>>();
    checkpoint::save_tensors(&out.join("model.safetensors"), named.into_iter()).unwrap();
    let config = serde_json::json!({
        "architectures": ["Mamba2ForCausalLM"], "model_type": "mamba2", "hidden_size": 32, "num_hidden_layers": 2,
        "vocab_size": cfg.padded_vocab(), "state_size": 8, "head_dim": 16, "num_heads": 4, "n_groups": 1, "expand": 2,
        "chunk_size": 32, "conv_kernel": 4, "tie_word_embeddings": true, "time_step_limit": [0.0, {"__float__": "Infinity"}],
    });
    std::fs::write(out.join("config.json"), config.to_string()).unwrap();
    out
}

#[test]
fn analyze_a_tiny_checkpoint_stores_results_and_a_report_within_two_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = fixture_corpus(d);
    let ckpt = transformers_checkpoint(d);
    let db = d.join("results.db");
    let out = d.join("analysis");
    let t0 = Instant::now();
    let args = [
        "analyze",
        ckpt.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--train-len",
        "64",
        "--len",
        "1024",
        "--corpus",
        corpus.to_str().unwrap(),
        "--prompts",
        "2",
        "--passkey-n",
        "2",
        "--bucket",
        "64",
        "--chunk",
        "256",
        "--device",
        "cpu",
        "--db",
        db.to_str().unwrap(),
    ];
    let stdout = ok(d, &args);
    let secs = t0.elapsed().as_secs_f64();
    assert!(secs < 120.0, "analyze took {secs:.0} s");
    assert!(stdout.contains("state collapse") || stdout.contains("collapsed"), "{stdout}");

    // Every evaluation stored, typed: (none + 4 mitigations) x (corpus, newlines), passkey, states.
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("analysis.json")).unwrap()).unwrap();
    let results = v["results"].as_array().unwrap();
    let kinds: Vec<&str> = results.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "loss").count(), 10, "{kinds:?}");
    assert!(kinds.contains(&"passkey") && kinds.contains(&"states"), "{kinds:?}");
    let mitigations: Vec<&str> = results.iter().filter_map(|r| r["params"]["mitigation"].as_str()).collect();
    for m in ["none", "rri", "dt-scale", "state-norm", "sliding-window"] {
        assert!(mitigations.iter().any(|x| x.starts_with(m)), "{m} missing from {mitigations:?}");
    }
    // What each stage cost: one row per evaluation, in analysis.json and the README.
    let stages = v["stages"].as_array().unwrap();
    assert_eq!(stages.len(), results.len(), "{stages:?}");
    assert!(stages.iter().all(|s| s["wall_s"].as_f64().unwrap() >= 0.0 && s["peak_memory_gb"].as_f64().unwrap() > 0.0), "{stages:?}");
    assert!(std::fs::read_to_string(out.join("README.md")).unwrap().contains("## Cost of each stage"));
    let jobs = jobs_json(d, &db, &[]);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["sweep"], "analyze");
    assert_eq!(jobs[0]["status"], "completed");
    assert_eq!(jobs[0]["train_len"], 64);
    let show = ok(d, &["results", "show", jobs[0]["id"].as_str().unwrap(), "--db", db.to_str().unwrap()]);
    assert!(show.contains("passkey") && show.contains("states"), "{show}");
    assert!(out.join("README.md").exists() && out.join("report/index.html").exists());
    let figures: Vec<String> =
        std::fs::read_dir(out.join("report/figures")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(figures.iter().any(|f| f.starts_with("mitigation_")) && figures.iter().any(|f| f.starts_with("passkey_")), "{figures:?}");
}

#[test]
fn model_init_writes_a_loadable_checkpoint_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("init");
    ok(d, &["model", "init", "--preset", "tiny", "--seed", "3", "--out", out.to_str().unwrap()]);
    let (lm, meta) = checkpoint::load(&out, Device::Cpu).unwrap();
    let again = Mamba2LM::seeded(&lm.cfg, Device::Cpu, 3).unwrap();
    for ((name, a), (_, b)) in lm.params().iter().zip(again.params().iter()) {
        assert!(a.equal(b), "{name} differs from the seed's initialisation");
    }
    assert_eq!(meta.tokenizer, None, "tiny's 256 ids cannot hold the byte tokenizer's 257");
    let o = common::stuffed(d, &["model", "init", "--preset", "tiny", "--out", out.to_str().unwrap()]);
    assert!(!o.status.success() && common::text(&o).contains("already holds a checkpoint"));
    let o = common::stuffed(d, &["model", "init", "--preset", "tiny", "--tokenizer", "gpt2", "--out", d.join("x").to_str().unwrap()]);
    assert!(!o.status.success() && common::text(&o).contains("do not fit"), "{}", common::text(&o));
}

#[test]
fn import_and_continued_pretraining_from_a_transformers_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ckpt = transformers_checkpoint(d);
    let imported = d.join("imported");
    ok(d, &["model", "import", ckpt.to_str().unwrap(), "--out", imported.to_str().unwrap(), "--tokenizer", "bytes"]);
    let info: serde_json::Value =
        serde_json::from_str(&ok(d, &["model", "info", "--checkpoint", imported.to_str().unwrap(), "--format", "json"])).unwrap();
    assert_eq!(info["config"]["d_model"], 32);
    assert!(std::fs::read_to_string(imported.join("config.json")).unwrap().contains("ssm_cfg"), "mamba_ssm's layout");
    let again = common::stuffed(d, &["model", "import", ckpt.to_str().unwrap(), "--out", imported.to_str().unwrap()]);
    assert!(!again.status.success() && common::text(&again).contains("already holds a checkpoint"));

    // Method 4: continue training the foreign checkpoint at a longer length.
    let corpus = fixture_corpus(d);
    let yaml = format!(
        "name: cpt\nmodel: {{d_model: 32, n_layer: 2, d_state: 8, headdim: 16, chunk_size: 32}}\ntokenizer: bytes\n\
         data: {{corpus: {}}}\ninit_from: {}\n\
         train: {{seq_len: 128, batch_size: 2, steps: 2, lr: 0.001, warmup_steps: 1, log_every: 1, device: cpu}}\n",
        corpus.display(),
        ckpt.display()
    );
    std::fs::write(d.join("cpt.yaml"), yaml).unwrap();
    let run = d.join("run");
    ok(d, &["train", "--config", "cpt.yaml", "--out", run.to_str().unwrap()]);
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    assert!(events.contains("\"kind\":\"train\""), "{events}");
}
