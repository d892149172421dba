//! The JSON Schemas of job and sweep files (docs/schema/): the committed copies match the
//! types (`STUFFED_BLESS=1` rewrites them), every shipped file validates, and a mistyped key is
//! rejected, as the loader rejects it.
use std::path::{Path, PathBuf};

use serde_json::Value;
use stuffed::config_schema::{render, Kind};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn validator(kind: Kind) -> jsonschema::Validator {
    jsonschema::validator_for(&kind.schema()).expect("a valid JSON Schema")
}

/// Every YAML file under `dir`, recursively, sorted.
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

fn read_yaml(p: &Path) -> Value {
    stuffed_model::yaml::value_from_str(&std::fs::read_to_string(p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

#[test]
fn committed_schemas_match_the_types() {
    for kind in [Kind::Job, Kind::Sweep] {
        let path = repo().join(kind.doc_path());
        let want = render(kind);
        if std::env::var_os("STUFFED_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is out of date: run STUFFED_BLESS=1 cargo test --release -p stuffed --test config_schema",
            path.display()
        );
    }
}

#[test]
fn every_shipped_sweep_and_job_file_validates() {
    let (job, sweep) = (validator(Kind::Job), validator(Kind::Sweep));
    let mut files = Vec::new();
    yaml_files(&repo().join("sweeps"), &mut files);
    assert!(files.len() > 10, "found only {files:?}");
    let mut counts = (0, 0);
    for f in &files {
        let doc = read_yaml(f);
        // A sweep names its base job config; anything else is a job config.
        let (v, what) = if doc.get("base").is_some() { (&sweep, "sweep") } else { (&job, "job") };
        if what == "sweep" {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
        let errs = errors(v, &doc);
        assert!(errs.is_empty(), "{} (a {what} file) does not validate:\n{}", f.display(), errs.join("\n"));
    }
    assert!(counts.0 > 0 && counts.1 > 0, "sweeps {} jobs {}", counts.0, counts.1);
}

#[test]
fn a_mistyped_key_is_rejected() {
    let job = validator(Kind::Job);
    let ok: Value = stuffed_model::yaml::value_from_str("model: {preset: tiny}\ntrain: {seq_len: 64, lr: 0.001, steps: 2}\n").unwrap();
    assert!(errors(&job, &ok).is_empty(), "{:?}", errors(&job, &ok));
    for bad in [
        "model: {preset: tiny, d_stat: 4}\ntrain: {seq_len: 64, lr: 0.001}\n",
        "model: {preset: tiny}\ntrain: {seq_len: 64, lr: 0.001, stesp: 2}\n",
        "model: {preset: tiny}\ntrain: {seq_len: 64, lr: 0.001}\nevals: [{kind: loss, len: 8, buckt: 4}]\n",
        "model: {preset: tiny}\ntrain: {seq_len: 64, lr: fast}\n",
    ] {
        let doc: Value = stuffed_model::yaml::value_from_str(bad).unwrap();
        assert!(!errors(&job, &doc).is_empty(), "accepted: {bad}");
    }
    let sweep = validator(Kind::Sweep);
    let ok: Value = stuffed_model::yaml::value_from_str(
        "name: s\nbase: job.yaml\ngrid: {model.d_state: [4, 8]}\nevals: [{kind: loss, len: \"8 * {train.seq_len}\"}]\n",
    )
    .unwrap();
    assert!(errors(&sweep, &ok).is_empty(), "{:?}", errors(&sweep, &ok));
    for bad in [
        "name: s\nbase: job.yaml\ngird: {model.d_state: [4, 8]}\n",
        "name: s\nbase: job.yaml\nresources: {gpu: 1}\n",
        "name: s\nbase: job.yaml\nbackend: {kind: slurm, partiton: gpu}\n",
        "name: s\nbase: job.yaml\ngrid: {model.d_state: 4}\n",
    ] {
        let doc: Value = stuffed_model::yaml::value_from_str(bad).unwrap();
        assert!(!errors(&sweep, &doc).is_empty(), "accepted: {bad}");
    }
}
