//! Helpers of the end-to-end tests: the `stuffed` binary, a fixture corpus, small sweeps.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stuffed"))
}

/// `stuffed ARGS` run in `dir`.
pub fn stuffed(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin()).args(args).current_dir(dir).env_remove("STUFFED_DB").output().expect("run stuffed")
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs and asserts success, returning stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let o = stuffed(dir, args);
    assert!(o.status.success(), "stuffed {args:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The repository root (for the shipped sweeps and the default corpus).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// A small corpus of English-like text built with `stuffed corpus build` into `dir/corpus`.
pub fn fixture_corpus(dir: &Path) -> PathBuf {
    let src = dir.join("text");
    std::fs::create_dir_all(&src).unwrap();
    let sentences = [
        "The state of a recurrent model holds what it remembers of the past.",
        "Longer training teaches the model to forget what no longer matters.",
        "A passkey hidden in a long text must be found and recalled.",
        "The grass is green and the sky is blue on a summer day.",
        "Every layer mixes the tokens with a selective state space.",
        "Researchers sweep the state size against the training length.",
    ];
    for d in 0..24 {
        let body: Vec<&str> = (0..120).map(|i| sentences[(i * 5 + d) % sentences.len()]).collect();
        std::fs::write(src.join(format!("doc{d:02}.txt")), body.join(" ")).unwrap();
    }
    let out = dir.join("corpus");
    ok(dir, &["corpus", "build", "--input", src.to_str().unwrap(), "--out", out.to_str().unwrap(), "--val-fraction", "0.15"]);
    out
}

/// A sweep over 2 state sizes x 2 training lengths of a very small model, fast on a CPU.
pub fn small_sweep(dir: &Path, name: &str, corpus: &Path, steps: i64) -> PathBuf {
    let yaml = format!(
        "name: {name}\n\
         base:\n\
         \x20 model: {{d_model: 32, n_layer: 2, d_state: 8, headdim: 16, chunk_size: 32}}\n\
         \x20 data: {{corpus: {corpus}}}\n\
         \x20 train: {{seq_len: 64, batch_size: 4, steps: {steps}, lr: 0.003, warmup_steps: 2, log_every: 2,\n\
         \x20         checkpoint_every: 4, device: cpu}}\n\
         grid:\n\
         \x20 model.d_state: [4, 16]\n\
         \x20 train.seq_len: [32, 64]\n\
         evals:\n\
         \x20 - {{kind: loss, source: corpus, len: 256, prompts: 2, chunk: 64, bucket: 16}}\n",
        corpus = corpus.display()
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

/// `sqlite3`-free database queries through `stuffed results list --format json`.
pub fn jobs_json(dir: &Path, db: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["results", "list", "--db", db.to_str().unwrap(), "--format", "json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(dir, &args)).expect("json job list")
}

/// Creates an empty results database at `db` (read-only commands never create one): an empty
/// dump imported, written into `dir`.
pub fn empty_db(dir: &Path, db: &Path) {
    let dump = dir.join("empty-dump.json");
    std::fs::write(
        &dump,
        r#"{"format":"stuffed-results","version":1,"sweeps":[],"jobs":[],"sweep_jobs":[],"attempts":[],"metrics":[],"evals":[],"artifacts":[]}"#,
    )
    .unwrap();
    ok(dir, &["results", "import", "--db", db.to_str().unwrap(), dump.to_str().unwrap()]);
}
