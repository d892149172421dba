//! Faults survived: a worker killed with -9 mid-training (resumed, same final weights as an
//! uninterrupted run), the controller killed with -9 three times at random points, an
//! interrupted checkpoint write, a full disk, another process holding the database's write
//! lock, a corrupt checkpoint, a job running past its timeout; and bad inputs answered clearly.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{jobs_json, ok, stuffed, text};
use stuffed::store::Db;
use stuffed_model::checkpoint;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn scalar(db: &Path, sql: &str) -> i64 {
    rt().block_on(async {
        let d = Db::open(db).await.unwrap();
        sqlx::query_scalar::<_, i64>(sql).fetch_one(d.pool()).await.unwrap()
    })
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A one-job sweep over a deterministic config (fp32 on the CPU).
fn one_job_sweep(d: &Path, corpus: &Path, name: &str, steps: i64, extra: &str) -> PathBuf {
    let p = d.join(format!("{name}.yaml"));
    std::fs::write(
        &p,
        format!(
            "name: {name}\nbase:\n  model: {{d_model: 32, n_layer: 2, d_state: 8, headdim: 16, chunk_size: 32}}\n  data: {{corpus: {}}}\n  train: {{seq_len: 64, batch_size: 4, steps: {steps}, lr: 0.003, warmup_steps: 2, log_every: 1, checkpoint_every: 5, device: cpu, precision: fp32, seed: 3}}\n{extra}",
            corpus.display()
        ),
    )
    .unwrap();
    p
}

fn open_attempt_pid(d: &Path, db: &Path, job: &str) -> Option<i32> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(d, &["results", "show", "--db", db.to_str().unwrap(), job, "--format", "json"])).ok()?;
    v["attempts"].as_array()?.iter().find(|a| a["ended_at"].is_null())?["pid"].as_i64().map(|p| p as i32)
}

/// The checkpoint directory `ckpt/latest` of a run names.
fn latest_checkpoint_dir(run_dir: &Path) -> PathBuf {
    let latest = std::fs::read_to_string(run_dir.join("ckpt/latest")).unwrap();
    run_dir.join("ckpt").join(latest.trim())
}

/// The run directory of the only job in `db`.
fn only_run_dir(d: &Path, db: &Path) -> PathBuf {
    d.join("results/runs").join(jobs_json(d, db, &[])[0]["id"].as_str().unwrap())
}

fn final_weights(run_dir: &Path) -> Vec<(String, tch::Tensor)> {
    checkpoint::read_tensors(&latest_checkpoint_dir(run_dir).join(checkpoint::WEIGHTS_FILE)).unwrap().into_iter().collect()
}

#[test]
fn worker_killed_mid_training_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    // Long enough that the kill, sent after the first checkpoint (step 5) and two CLI calls,
    // lands mid-training even on a loaded 2-core machine (60 steps once finished first).
    let sweep = one_job_sweep(d, &corpus, "wkill", 400, "retries: 2\n");
    let db = d.join("w.db");
    let mut ctl = Command::new(common::bin())
        .args(["sweep", "run", sweep.to_str().unwrap(), "--db", db.to_str().unwrap(), "--gpus", "none", "--max-parallel", "1"])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runs = d.join("results/runs");
    wait_for("the job's first checkpoint", Duration::from_secs(120), || {
        std::fs::read_dir(&runs).map(|r| r.flatten().any(|e| e.path().join("ckpt/latest").exists())).unwrap_or(false)
    });
    let job = jobs_json(d, &db, &[])[0]["id"].as_str().unwrap().to_string();
    let pid = open_attempt_pid(d, &db, &job).expect("a running attempt with a pid");
    // Safety: SIGKILL to the worker process the controller recorded.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(ctl.wait().unwrap().success());
    let rows = jobs_json(d, &db, &[]);
    assert_eq!(rows[0]["status"], "completed");
    assert_eq!(rows[0]["attempts"], 2, "killed, then resumed once");
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM attempts WHERE error_class = 'killed'"), 1);
    let run_dir = runs.join(&job);
    let events = std::fs::read_to_string(run_dir.join("events.jsonl")).unwrap();
    assert!(events.contains("\"kind\":\"resume\""));

    // The same job straight through: identical weights.
    let straight = d.join("straight");
    std::fs::create_dir_all(&straight).unwrap();
    std::fs::copy(run_dir.join("job.yaml"), straight.join("job.yaml")).unwrap();
    let o = Command::new(common::bin())
        .args(["worker", "--run-dir", straight.to_str().unwrap()])
        .current_dir(d)
        .env("STUFFED_THREADS", "2")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let (a, b) = (final_weights(&run_dir), final_weights(&straight));
    assert_eq!(a.len(), b.len());
    for ((n1, t1), (_, t2)) in a.iter().zip(&b) {
        assert!(t1.equal(t2), "{n1} differs between the killed-and-resumed run and the straight one");
    }
}

#[test]
fn controller_killed_three_times_at_random_points() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let sweep = common::small_sweep(d, "kill3", &corpus, 40);
    let db = d.join("k3.db");
    let args = ["sweep", "run", sweep.to_str().unwrap(), "--db", db.to_str().unwrap(), "--gpus", "none", "--max-parallel", "2"];
    let mut rng = stuffed_model::rng::Rng::new(2026);
    for _ in 0..3 {
        let mut ctl = Command::new(common::bin()).args(args).current_dir(d).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(800 + rng.below(2500)));
        ctl.kill().unwrap(); // SIGKILL
        ctl.wait().unwrap();
    }
    let o = stuffed(d, &args);
    assert!(o.status.success(), "{}", text(&o));
    let jobs = jobs_json(d, &db, &[]);
    assert_eq!(jobs.len(), 4);
    assert!(jobs.iter().all(|j| j["status"] == "completed"), "{jobs:?}");
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM attempts WHERE status = 'completed'"), 4, "each job completed exactly once");
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM (SELECT 1 FROM metrics GROUP BY job_id, key, step HAVING COUNT(*) > 1)"), 0);
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM evals"), 4);
}

#[test]
fn interrupted_checkpoint_write_leaves_the_previous_one_loadable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let sweep = one_job_sweep(d, &corpus, "ckpt", 10, "");
    let db = d.join("c.db");
    ok(d, &["sweep", "run", sweep.to_str().unwrap(), "--db", db.to_str().unwrap(), "--gpus", "none"]);
    let run = only_run_dir(d, &db);
    // A crash in the middle of writing step 15: a half-written directory and temp file.
    let torn = run.join("ckpt/.tmp-step-00000015");
    std::fs::create_dir_all(&torn).unwrap();
    std::fs::write(torn.join("model.safetensors"), b"\x10\x00\x00").unwrap();
    let ck = latest_checkpoint_dir(&run);
    std::fs::write(ck.join("model.safetensors.tmp999"), b"partial").unwrap();
    let o = ok(d, &["eval", "loss", "--checkpoint", ck.to_str().unwrap(), "--newlines", "--len", "64", "--format", "json"]);
    assert!(o.contains("mean_loss"));
    assert!(stuffed_model::train::latest_checkpoint(&run).unwrap().ends_with(ck.file_name().unwrap()));
}

#[test]
fn corrupt_checkpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let sweep = one_job_sweep(d, &corpus, "corrupt", 5, "");
    let db = d.join("x.db");
    ok(d, &["sweep", "run", sweep.to_str().unwrap(), "--db", db.to_str().unwrap(), "--gpus", "none"]);
    let ck = latest_checkpoint_dir(&only_run_dir(d, &db));
    let w = ck.join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    let o = stuffed(d, &["eval", "loss", "--checkpoint", ck.to_str().unwrap(), "--newlines", "--len", "16"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("model.safetensors"), "{}", text(&o));
}

#[test]
fn database_write_lock_held_elsewhere_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let sweep = one_job_sweep(d, &corpus, "lock", 4, "");
    let db = d.join("l.db");
    ok(d, &["sweep", "run", sweep.to_str().unwrap(), "--db", db.to_str().unwrap(), "--gpus", "none"]);
    ok(d, &["results", "export", "--db", db.to_str().unwrap(), "--format", "dump", "--out", "dump.json"]);
    let other = d.join("other.db");
    ok(d, &["results", "import", "--db", other.to_str().unwrap(), "dump.json"]);
    // Another process holds the write lock of `other` for 3 s while we import into it again.
    let mut holder = Command::new("python3")
        .args(["-c", &format!("import sqlite3,time; c=sqlite3.connect({:?}, isolation_level=None); c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(3); c.execute('COMMIT')", other.to_str().unwrap())])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = holder.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    let start = Instant::now();
    ok(d, &["results", "import", "--db", other.to_str().unwrap(), "dump.json"]);
    assert!(start.elapsed() >= Duration::from_millis(1500), "the import waited for the lock");
    assert_eq!(scalar(&other, "SELECT COUNT(*) FROM jobs"), 1);
    holder.wait().unwrap();
}

#[test]
fn job_past_its_timeout_is_stopped_retried_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let sweep = one_job_sweep(d, &corpus, "slow", 100000, "resources: {timeout: 4s}\nretries: 1\n");
    let db = d.join("t.db");
    let o = stuffed(d, &["sweep", "run", sweep.to_str().unwrap(), "--db", db.to_str().unwrap(), "--gpus", "none"]);
    assert!(!o.status.success());
    let jobs = jobs_json(d, &db, &[]);
    assert_eq!(jobs[0]["status"], "failed");
    assert_eq!(jobs[0]["attempts"], 2, "one retry");
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM attempts WHERE error_class = 'timeout'"), 2);
    let events = std::fs::read_to_string(d.join("results/runs").join(jobs[0]["id"].as_str().unwrap()).join("events.jsonl")).unwrap();
    assert!(events.contains("\"kind\":\"resume\""), "the retry resumed from the checkpoint the stopped worker wrote");
}

/// Unmounts a test's small disk when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A tmpfs of `size` mounted at `dir`, to fill; None (the test says it is skipped) without root.
fn small_disk(dir: &Path, size: &str) -> Option<Unmount> {
    std::fs::create_dir_all(dir).unwrap();
    let mounted =
        Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).status().is_ok_and(|s| s.success());
    if !mounted {
        println!("SKIPPED: cannot mount a small tmpfs here (needs root) to fill a disk");
        return None;
    }
    Some(Unmount(dir.to_path_buf()))
}

#[test]
fn full_disk_is_a_clear_error_and_the_database_stays_intact() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let small = d.join("small");
    let Some(_guard) = small_disk(&small, "256k") else { return };
    let corpus = common::fixture_corpus(d);
    let sweep = one_job_sweep(d, &corpus, "full", 50, "");
    let db = d.join("f.db");
    let o = stuffed(
        d,
        &["sweep", "run", sweep.to_str().unwrap(), "--db", db.to_str().unwrap(), "--gpus", "none", "--runs-dir", small.to_str().unwrap()],
    );
    assert!(!o.status.success());
    let show = ok(d, &["results", "list", "--db", db.to_str().unwrap(), "--format", "json"]);
    let jobs: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(jobs[0]["status"], "failed", "{jobs}");
    let detail = ok(d, &["results", "show", "--db", db.to_str().unwrap(), jobs[0]["id"].as_str().unwrap()]);
    assert!(detail.contains("No space left on device"), "{detail}");
    let integrity: String = rt().block_on(async {
        let x = Db::open(&db).await.unwrap();
        sqlx::query_scalar("PRAGMA integrity_check").fetch_one(x.pool()).await.unwrap()
    });
    assert_eq!(integrity, "ok");
}

/// Security issue 25, item 9: a database on a full disk is an error naming that disk, not a bare
/// "disk I/O error".
#[test]
fn a_database_on_a_full_disk_names_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    let Some(_guard) = small_disk(&small, "64k") else { return };
    // Fill the disk, then create a database there.
    let _ = std::fs::write(small.join("filler"), vec![0u8; 1 << 20]);
    let e = rt().block_on(Db::open(&small.join("new.db"))).err().expect("a database on a full disk cannot open");
    let msg = format!("{e:#}");
    assert!(msg.contains(&format!("the disk holding {} is full", small.display())), "{msg}");
}

#[test]
fn unwritable_output_and_short_passkey_lengths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let cfg = d.join("job.yaml");
    std::fs::write(
        &cfg,
        format!("model: {{d_model: 32, n_layer: 1, d_state: 4, headdim: 16}}\ndata: {{corpus: {}}}\ntrain: {{seq_len: 16, batch_size: 2, steps: 2, lr: 0.01, device: cpu}}\n", corpus.display()),
    )
    .unwrap();
    let o = stuffed(d, &["train", "--config", cfg.to_str().unwrap(), "--out", "/proc/stuffed-run"]);
    assert!(!o.status.success() && text(&o).contains("/proc/stuffed-run"), "{}", text(&o));
    let bad = d.join("pk.yaml");
    std::fs::write(&bad, std::fs::read_to_string(&cfg).unwrap() + "evals:\n  - kind: passkey\n    lengths: [1024, 40]\n").unwrap();
    let o = stuffed(d, &["train", "--config", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("pk.yaml:6") && t.contains("evals[0].lengths[1]") && t.contains("shorter than the passkey template"), "{t}");
}

/// Several GPUs and one of them failing mid-sweep (test aids: `STUFFED_TEST_GPUS=3` gives the
/// controller three GPU slots that need no device, `STUFFED_TEST_BROKEN_GPU=1` makes every worker
/// placed on GPU 1 die at once without a final event; the jobs are long enough to keep GPUs 0
/// and 2 busy while GPU 1 takes new ones). One controller spreads the jobs over the
/// GPUs, retries the killed attempts on another GPU, retires GPU 1 after three failures in a
/// row and completes every job on GPUs 0 and 2; the attempts record each GPU.
#[test]
fn a_gpu_failing_mid_sweep_is_retired_and_its_jobs_run_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let sweep = d.join("gpus.yaml");
    std::fs::write(
        &sweep,
        format!(
            "name: gpus\nbase:\n  model: {{d_model: 32, n_layer: 1, d_state: 8, headdim: 16, chunk_size: 32}}\n  data: {{corpus: {}}}\n  train: {{seq_len: 32, batch_size: 2, steps: 40, lr: 0.003, log_every: 10, device: cpu}}\ngrid:\n  train.seed: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nretries: 3\n",
            corpus.display()
        ),
    )
    .unwrap();
    let db = d.join("g.db");
    let out = Command::new(common::bin())
        .args(["sweep", "run", sweep.to_str().unwrap(), "--db", db.to_str().unwrap(), "--per-gpu", "1", "--format", "json"])
        .env("STUFFED_TEST_GPUS", "3")
        .env("STUFFED_TEST_BROKEN_GPU", "1")
        .env_remove("CUDA_VISIBLE_DEVICES")
        .current_dir(d)
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {log}"));
    assert_eq!(v["summary"]["completed"], 10, "{log}");
    assert_eq!(v["summary"]["failed"], 0, "{log}");
    assert_eq!(v["summary"]["gpus_retired"], serde_json::json!([1]), "{log}");
    assert!(log.contains("cuda:1 retired"), "{log}");
    let q = |sql: &str| scalar(&db, sql);
    assert_eq!(q("SELECT COUNT(*) FROM attempts WHERE gpu = '1'"), 3, "GPU 1 got three attempts, then none");
    assert_eq!(q("SELECT COUNT(*) FROM attempts WHERE gpu = '1' AND status = 'killed'"), 3);
    assert_eq!(q("SELECT COUNT(*) FROM attempts WHERE status = 'completed' AND gpu IN ('0', '2')"), 10);
    assert_eq!(q("SELECT COUNT(DISTINCT gpu) FROM attempts WHERE status = 'completed'"), 2, "both healthy GPUs ran jobs");
    // A killed attempt's retry went to another GPU.
    assert_eq!(
        q("SELECT COUNT(*) FROM attempts a JOIN attempts b ON a.job_id = b.job_id AND b.number = a.number + 1 WHERE a.gpu = '1' AND b.gpu = '1'"),
        0
    );
}
