//! The Slurm backend against a real one-node Slurm (tests/slurm/cluster.sh brings it up on
//! 127.0.0.1 with fake GPUs): a 4-job sweep end to end, a failing job, a running task requeued
//! by Slurm (completed once, resumed), a cancel. A system-level test: `#[ignore]`d, run by
//! `make test` through scripts/system-tests.sh, which installs the Slurm packages first (as
//! root, saying so); `make test-core` lists it as skipped. Where Slurm cannot run it fails
//! with the reason: a test that did not run never counts as passed.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{jobs_json, ok, small_sweep, stuffed, text};

struct Cluster(PathBuf);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("down").arg(&self.0).output();
    }
}

fn script() -> PathBuf {
    common::repo().join("tests/slurm/cluster.sh")
}

/// Brings the cluster up; panics with the reason where Slurm cannot run here.
fn cluster(dir: &Path) -> Cluster {
    let out = Command::new(script()).arg("up").arg(dir).output().expect("run cluster.sh");
    match out.status.code() {
        Some(0) => Cluster(dir.to_path_buf()),
        Some(77) => panic!(
            "the Slurm test cannot run here ({}): run it through scripts/system-tests.sh (make test), which installs Slurm as root",
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        _ => panic!("cluster.sh up failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn squeue_state(task: &str) -> String {
    let o = Command::new("squeue")
        .args(["-r", "--states=all", "-h", "-O", "JobArrayID:30,State:20", "-j", task.split('_').next().unwrap()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(task))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_string()
}

fn attempts(d: &Path, db: &Path, job: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(d, &["results", "show", "--db", db.to_str().unwrap(), job, "--format", "json"])).unwrap();
    v["attempts"].as_array().unwrap().clone()
}

fn with_backend(path: &Path, backend: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, format!("{text}backend: {backend}\n")).unwrap();
}

#[test]
#[ignore = "system-level: installs Slurm and writes /etc/slurm, /etc/munge (make test runs it via scripts/system-tests.sh)"]
fn slurm_backend_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _cluster = cluster(&d.join("slurm-cluster"));
    let corpus = common::fixture_corpus(d);
    let db = d.join("s.db");
    let dbs = db.to_str().unwrap();

    // 1. A 4-job sweep through job arrays: the same results as the local backend.
    let sweep = small_sweep(d, "sgrid", &corpus, 6);
    with_backend(&sweep, "{kind: slurm, gres: 'gpu:1', max_concurrent: 2, time: '00:10:00'}");
    let out = ok(d, &["sweep", "run", sweep.to_str().unwrap(), "--db", dbs, "--poll", "1"]);
    assert!(out.contains("completed"), "{out}");
    let jobs = jobs_json(d, &db, &["--sweep", "sgrid"]);
    assert_eq!(jobs.len(), 4);
    assert!(jobs.iter().all(|j| j["status"] == "completed" && j["attempts"] == 1), "{jobs:?}");
    let a = attempts(d, &db, jobs[0]["id"].as_str().unwrap());
    assert_eq!(a[0]["backend"], "slurm");
    assert!(a[0]["backend_id"].as_str().unwrap().contains('_'), "array task id recorded: {a:?}");
    // CPU jobs (train.device: cpu) ask Slurm for no GPU, whatever the backend's gres.
    let slurm_dir = PathBuf::from(a[0]["log_path"].as_str().unwrap()).parent().unwrap().to_path_buf();
    let scripts: Vec<String> = std::fs::read_dir(&slurm_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("sgrid-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(!scripts.is_empty() && scripts.iter().all(|s| !s.contains("--gres")), "{scripts:?}");
    let status = ok(d, &["sweep", "status", "--db", dbs, "sgrid"]);
    assert!(status.contains("completed 4"), "{status}");

    // 2. A failing job is recorded with its error, not retried; the other completes.
    let fail = d.join("sfail.yaml");
    std::fs::write(
        &fail,
        format!(
            "name: sfail\nbase:\n  model: {{d_model: 32, n_layer: 1, d_state: 4, headdim: 16}}\n  data: {{corpus: {c}}}\n  train: {{seq_len: 32, batch_size: 2, steps: 3, lr: 0.01, device: cpu}}\ngrid:\n  data.corpus: [{c}, /nonexistent/corpus]\nretries: 2\nbackend: {{kind: slurm}}\n",
            c = corpus.display()
        ),
    )
    .unwrap();
    let o = stuffed(d, &["sweep", "run", fail.to_str().unwrap(), "--db", dbs, "--poll", "1"]);
    assert!(!o.status.success(), "{}", text(&o));
    let jobs = jobs_json(d, &db, &["--sweep", "sfail"]);
    let failed: Vec<_> = jobs.iter().filter(|j| j["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{jobs:?}");
    assert_eq!(failed[0]["attempts"], 1);
    assert!(jobs.iter().any(|j| j["status"] == "completed"));

    // 3. A running task requeued by Slurm: resumes from its checkpoint, completes once.
    let long = d.join("slong.yaml");
    std::fs::write(
        &long,
        format!(
            "name: slong\nbase:\n  model: {{d_model: 32, n_layer: 2, d_state: 8, headdim: 16}}\n  data: {{corpus: {}}}\n  train: {{seq_len: 64, batch_size: 4, steps: 400, lr: 0.003, log_every: 5, checkpoint_every: 10, device: cpu}}\nbackend: {{kind: slurm}}\n",
            corpus.display()
        ),
    )
    .unwrap();
    ok(d, &["sweep", "run", long.to_str().unwrap(), "--db", dbs, "--detach"]);
    let job = jobs_json(d, &db, &["--sweep", "slong"])[0]["id"].as_str().unwrap().to_string();
    let run_dir = PathBuf::from(attempts(d, &db, &job)[0]["log_path"].as_str().unwrap()).parent().unwrap().parent().unwrap().to_path_buf();
    let task = attempts(d, &db, &job)[0]["backend_id"].as_str().unwrap().to_string();
    let job_dir = std::fs::read_dir(&run_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&job[..12]))
        .unwrap();
    wait_for("a checkpoint of the long job", Duration::from_secs(120), || job_dir.join("ckpt/latest").exists());
    let rq = Command::new("scontrol").args(["requeue", &task]).output().unwrap();
    assert!(rq.status.success(), "scontrol requeue: {}", String::from_utf8_lossy(&rq.stderr));
    wait_for("the requeued task to be pending", Duration::from_secs(60), || squeue_state(&task) == "PENDING");
    std::thread::sleep(Duration::from_secs(1));
    let _ = Command::new("scontrol").args(["update", &format!("jobid={task}"), "StartTime=now"]).output();
    wait_for("the long job to complete", Duration::from_secs(300), || {
        ok(d, &["sweep", "sync", "--db", dbs, "slong"]);
        jobs_json(d, &db, &["--sweep", "slong"])[0]["status"] == "completed"
    });
    let events = std::fs::read_to_string(job_dir.join("events.jsonl")).unwrap();
    assert!(events.contains("\"kind\":\"resume\""), "the rerun resumed from the checkpoint");
    let a = attempts(d, &db, &job);
    assert_eq!(a.iter().filter(|x| x["status"] == "completed").count(), 1, "{a:?}");

    // 4. Cancel: what the sweep submitted is scancelled and recorded.
    let many = d.join("scancel.yaml");
    std::fs::write(
        &many,
        std::fs::read_to_string(&long).unwrap().replace("name: slong", "name: scancel").replace("steps: 400", "steps: 5000")
            + "grid:\n  train.seed: [1, 2, 3]\n",
    )
    .unwrap();
    ok(d, &["sweep", "run", many.to_str().unwrap(), "--db", dbs, "--detach"]);
    let out = ok(d, &["sweep", "cancel", "--db", dbs, "scancel"]);
    assert!(out.contains("scancelled 3"), "{out}");
    let jobs = jobs_json(d, &db, &["--sweep", "scancel"]);
    assert!(jobs.iter().all(|j| j["status"] == "cancelled"), "{jobs:?}");
}
