//! The command-line conventions of issue 24: `--format json` on every command that prints a
//! table, with the keys docs/cli-json.md documents, and Hydra-style `--set KEY=VALUE`
//! overrides on `sweep run` (applied, checked like the file, recorded in the stored spec) and
//! on `train`, and progress bars only on a terminal.
mod common;

use std::path::Path;

use common::{ok, stuffed, text};
use serde_json::Value;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Asserts that `v` is an object holding every key of `keys`.
fn has_keys(v: &Value, keys: &[&str], what: &str) {
    let o = v.as_object().unwrap_or_else(|| panic!("{what}: not an object: {v}"));
    for k in keys {
        assert!(o.contains_key(*k), "{what}: no key `{k}` in {v}");
    }
}

const JOB_KEYS: [&str; 12] =
    ["id", "sweep", "label", "status", "state_size", "train_len", "step", "loss", "val_loss", "collapsed", "t_recall", "attempts"];

fn dry_run(d: &Path, file: &Path, set: &[&str]) -> Value {
    let mut args = vec!["sweep", "run", file.to_str().unwrap(), "--dry-run", "--gpus", "none", "--format", "json"];
    for s in set {
        args.extend(["--set", s]);
    }
    json(&ok(d, &args))
}

#[test]
fn dry_run_json_and_set_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sweep = common::small_sweep(d, "conv", Path::new("/nonexistent/corpus"), 4);
    let plan = dry_run(d, &sweep, &[]);
    has_keys(&plan, &["sweep", "set", "jobs", "gpus", "workers", "est_total_secs", "est_wall_secs", "warnings", "search"], "dry run");
    assert_eq!(plan["jobs"].as_array().unwrap().len(), 4);
    let job_keys = ["id", "label", "varied", "state_size", "loss_buckets", "params", "steps", "est_mem_gb", "est_secs"];
    has_keys(&plan["jobs"][0], &job_keys, "dry-run job");
    // A list expands the grid (replacing the file's list); a scalar is every job's value.
    let plan = dry_run(d, &sweep, &["model.d_state=[2, 4, 8]", "train.lr=1e-3"]);
    let jobs = plan["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 6, "3 state sizes x 2 lengths: {plan}");
    assert!(jobs.iter().all(|j| j["varied"]["train.lr"] == 1e-3 && j["label"].as_str().unwrap().contains("lr=0.001")), "{plan}");
    assert_eq!(plan["set"], serde_json::json!({"model.d_state": [2, 4, 8], "train.lr": 1e-3}));
}

#[test]
fn bad_set_keys_name_the_argument_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sweep = common::small_sweep(d, "bad", Path::new("/nonexistent/corpus"), 4);
    let cases = [
        ("model.d_stat=4", "did you mean `model.d_state`"),
        ("train.lr=fast", "expected f64"),
        ("train.seq_len=[]", "empty list"),
        ("retries=0", "key of the sweep file"),
        ("train.lr", "expected KEY=VALUE"),
    ];
    for (set, want) in cases {
        let o = stuffed(d, &["sweep", "run", sweep.to_str().unwrap(), "--dry-run", "--set", set]);
        let t = text(&o);
        assert!(!o.status.success(), "--set {set} should fail: {t}");
        assert!(t.contains(set) && t.contains(want), "--set {set}: {t}");
    }
}

#[test]
fn sweep_commands_print_json_and_record_the_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let sweep = common::small_sweep(d, "tiny", &corpus, 2);
    let db = d.join("r.db");
    let db = db.to_str().unwrap();
    let file = sweep.to_str().unwrap();
    let run = [
        "sweep",
        "run",
        file,
        "--db",
        db,
        "--gpus",
        "none",
        "--format",
        "json",
        "--set",
        "model.d_state=[4]",
        "--set",
        "train.seq_len=[32]",
    ];
    let out = json(&ok(d, &run));
    has_keys(&out, &["sweep", "summary", "jobs", "search"], "sweep run");
    has_keys(&out["summary"], &["completed", "failed", "interrupted", "skipped", "retried"], "sweep run summary");
    assert_eq!(out["summary"]["completed"], 1, "{out}");
    has_keys(&out["jobs"][0], &JOB_KEYS, "sweep run job");
    // The stored spec holds the overrides: a rerun with the same ones resumes (nothing to do).
    let dump = json(&ok(d, &["results", "export", "--db", db, "--format", "dump"]));
    let spec = dump["sweeps"][0]["spec"].as_str().unwrap();
    assert!(spec.contains("set:\n  \"model.d_state\": [4]\n  \"train.seq_len\": [32]\n"), "{spec}");
    assert_eq!(json(&ok(d, &run))["summary"]["skipped"], 1);

    let status = json(&ok(d, &["sweep", "status", "--db", db, "--format", "json"]));
    has_keys(&status["sweeps"][0], &["name", "description", "created_at", "cancelled", "total", "counts", "running", "search"], "status");
    assert_eq!(status["sweeps"][0]["counts"]["completed"], 1, "{status}");
    let list = json(&ok(d, &["results", "list", "--db", db, "--format", "json"]));
    has_keys(&list[0], &JOB_KEYS, "results list");
    let id = list[0]["id"].as_str().unwrap();
    let show = json(&ok(d, &["results", "show", "--db", db, id, "--format", "json"]));
    has_keys(&show, &["job", "config", "attempts", "latest_metrics", "evals", "evals_during_training", "artifacts"], "results show");
    let cancel = json(&ok(d, &["sweep", "cancel", "tiny", "--db", db, "--format", "json"]));
    has_keys(&cancel, &["sweep", "cancelled_pending", "scancelled", "signalled"], "sweep cancel");
    // `table` and `text` name the same format everywhere.
    ok(d, &["sweep", "status", "--db", db, "--format", "table"]);
    ok(d, &["results", "list", "--db", db, "--format", "text"]);
}

#[test]
fn model_info_and_fit_print_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let info = json(&ok(d, &["model", "info", "--preset", "tiny", "--format", "json"]));
    has_keys(&info, &["config", "params", "state_size"], "model info");
    std::fs::write(d.join("t.csv"), "s,t\n1,2.1\n2,3.9\n3,6.2\n4,7.8\n").unwrap();
    let fit = json(&ok(d, &["fit", "--model", "linear", "--csv", "t.csv", "--x", "s", "--y", "t", "--format", "json"]));
    has_keys(&fit, &["a", "b", "r2", "ci", "n"], "fit");
    let schema = json(&ok(d, &["schema", "sweep"]));
    assert_eq!(schema["title"], "stuffed sweep file");
}

/// `stuffed train --config FILE --set KEY=VALUE` takes the overrides of `sweep run --set`: a
/// bad key or value names the argument (with a did-you-mean), and a list value, which would be
/// a grid, is refused.
#[test]
fn train_set_overrides_are_checked_like_sweep_run_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let job = d.join("job.yaml");
    std::fs::write(&job, "model: {preset: tiny}\ntrain: {seq_len: 16, batch_size: 2, steps: 1, lr: 0.01, device: cpu}\n").unwrap();
    let cases = [
        ("model.d_stat=4", "did you mean `model.d_state`"),
        ("train.lr=fast", "expected f64"),
        ("trian.lr=0.1", "did you mean `train.lr`"),
        ("model.d_state=[4, 8]", "one job per value"),
        ("train.lr=.nan", "not a finite number"),
        ("retries=0", "key of the sweep file"),
    ];
    for (set, want) in cases {
        let o = stuffed(d, &["train", "--config", job.to_str().unwrap(), "--out", "run", "--set", set]);
        let t = text(&o);
        assert!(!o.status.success(), "--set {set} should fail: {t}");
        assert!(t.contains(set) && t.contains(want), "--set {set}: {t}");
        assert!(!d.join("run").exists(), "--set {set}: a run directory was made");
    }
}

/// Progress bars are drawn only on a terminal (issue 24): with stderr a pipe, `report`,
/// `corpus build` and `eval loss|passkey|states` write no bar (no carriage return, no escape
/// sequence).
#[test]
fn progress_bars_stay_off_a_redirected_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("text")).unwrap();
    std::fs::write(d.join("text/a.txt"), "The state of a recurrent model holds what it remembers. ".repeat(200)).unwrap();
    common::empty_db(d, &d.join("x.db"));
    let eval = ["--preset", "tiny", "--device", "cpu"];
    let commands: [Vec<&str>; 5] = [
        vec!["corpus", "build", "--input", "text", "--out", "corpus", "--val-fraction", "0.5"],
        vec!["report", "--db", "x.db", "--out", "rep"],
        [&["eval", "loss", "--newlines", "--len", "64"][..], &eval].concat(),
        [&["eval", "states", "--newlines", "--len", "64", "--bucket", "16"][..], &eval].concat(),
        [&["eval", "passkey", "--lengths", "256", "--depths", "1", "--n", "1"][..], &eval].concat(),
    ];
    for args in commands {
        let o = stuffed(d, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        assert!(!err.contains('\r') && !err.contains('\x1b'), "{args:?} drew a bar on a pipe: {err:?}");
    }
}
