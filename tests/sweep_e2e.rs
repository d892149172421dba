//! End-to-end sweeps on the CPU: a 4-job grid stored in SQLite; a controller killed with -9 in
//! the middle and restarted; a failing job recorded and not retried; bad sweep files; export,
//! import and a byte-identical report from the imported database.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{jobs_json, ok, small_sweep, stuffed, text};
use stuffed::store::Db;

fn db_counts(db: &Path) -> std::collections::BTreeMap<String, i64> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { Db::open(db).await.unwrap().counts().await.unwrap() })
}

fn scalar(db: &Path, sql: &str) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let d = Db::open(db).await.unwrap();
        sqlx::query_scalar::<_, i64>(sql).fetch_one(d.pool()).await.unwrap()
    })
}

#[test]
fn four_job_sweep_stores_jobs_metrics_and_evals_then_resumes_as_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let sweep = small_sweep(d, "grid", &corpus, 8);
    let db = d.join("r.db");
    let args = ["sweep", "run", sweep.to_str().unwrap(), "--db", db.to_str().unwrap(), "--gpus", "none", "--max-parallel", "2"];
    let out = ok(d, &args);
    assert!(out.contains("completed"), "{out}");
    let jobs = jobs_json(d, &db, &["--sweep", "grid"]);
    assert_eq!(jobs.len(), 4);
    assert!(jobs.iter().all(|j| j["status"] == "completed"), "{jobs:?}");
    let c = db_counts(&db);
    assert_eq!(c["evals"], 4);
    assert!(c["metrics"] >= 4 * 4 * 6, "{c:?}");
    assert_eq!(c["attempts"], 4);
    // Running the same file again skips everything.
    let again = stuffed(d, &args);
    assert!(again.status.success());
    assert!(text(&again).contains("4 skipped"), "{}", text(&again));
    assert_eq!(db_counts(&db)["attempts"], 4);
    // Filters are data, never SQL.
    let none = jobs_json(d, &db, &["--where", "label=x' OR '1'='1"]);
    assert!(none.is_empty());
    let some = jobs_json(d, &db, &["--where", "model.d_state=16", "--where", "train.seq_len>=64"]);
    assert_eq!(some.len(), 1);
}

#[test]
fn controller_killed_mid_sweep_then_rerun_completes_every_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let sweep = small_sweep(d, "killme", &corpus, 60);
    let db = d.join("k.db");
    let args = ["sweep", "run", sweep.to_str().unwrap(), "--db", db.to_str().unwrap(), "--gpus", "none", "--max-parallel", "2"];
    let mut child = Command::new(common::bin()).args(args).current_dir(d).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Kill it once the first job has a checkpoint and others are under way.
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let ckpts = std::fs::read_dir(d.join("results/runs"))
            .map(|r| r.filter_map(|e| e.ok()).filter(|e| e.path().join("ckpt/latest").exists()).count())
            .unwrap_or(0);
        if ckpts >= 1 || start.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let o = stuffed(d, &args);
    assert!(o.status.success(), "{}", text(&o));
    let jobs = jobs_json(d, &db, &["--sweep", "killme"]);
    assert_eq!(jobs.len(), 4);
    assert!(jobs.iter().all(|j| j["status"] == "completed"), "{jobs:?}");
    // Exactly one completed attempt per job; metric rows unique per (job, key, step).
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM attempts WHERE status = 'completed'"), 4);
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM (SELECT job_id, key, step, COUNT(*) c FROM metrics GROUP BY 1, 2, 3 HAVING c > 1)"), 0);
    assert_eq!(
        scalar(&db, "SELECT COUNT(DISTINCT step) FROM metrics WHERE key = 'loss'"),
        30,
        "every logged step once (60 steps, log_every 2)"
    );
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM evals"), 4);
}

#[test]
fn failing_job_is_recorded_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let yaml = format!(
        "name: failing\nbase:\n  model: {{d_model: 32, n_layer: 1, d_state: 4, headdim: 16}}\n  data: {{corpus: {}}}\n  train: {{seq_len: 32, batch_size: 2, steps: 3, lr: 0.01, device: cpu}}\ngrid:\n  data.corpus: [{}, /nonexistent/corpus]\nretries: 3\n",
        corpus.display(),
        corpus.display()
    );
    std::fs::write(d.join("f.yaml"), yaml).unwrap();
    let db = d.join("f.db");
    let o = stuffed(d, &["sweep", "run", "f.yaml", "--db", db.to_str().unwrap(), "--gpus", "none"]);
    assert!(!o.status.success(), "a failed job makes the run fail: {}", text(&o));
    let jobs = jobs_json(d, &db, &[]);
    let failed: Vec<_> = jobs.iter().filter(|j| j["status"] == "failed").collect();
    let done: Vec<_> = jobs.iter().filter(|j| j["status"] == "completed").collect();
    assert_eq!((failed.len(), done.len()), (1, 1), "{jobs:?}");
    assert_eq!(failed[0]["attempts"], 1, "config/data errors are not retried");
    let show = ok(d, &["results", "show", "--db", db.to_str().unwrap(), failed[0]["id"].as_str().unwrap()]);
    assert!(show.contains("/nonexistent/corpus"), "{show}");
}

#[test]
fn bad_sweep_files_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = "base:\n  model: {preset: tiny}\n  train: {seq_len: 64, batch_size: 2, steps: 3, lr: 0.01}\n";
    let cases = [
        ("syntax.yaml", "name: x\ngrid: [\n".to_string(), "syntax.yaml:", ""),
        ("unknown.yaml", format!("name: x\n{base}gird:\n  model.d_state: [8]\n"), "unknown.yaml:5:1", "did you mean `grid`"),
        ("wrongtype.yaml", format!("name: x\n{base}grid:\n  train.seq_len: [fast]\n"), "wrongtype.yaml:6", "train.seq_len"),
        ("emptygrid.yaml", format!("name: x\n{base}grid:\n  train.seq_len: []\n"), "emptygrid.yaml:6", "no values"),
        ("badkey.yaml", format!("name: x\n{base}grid:\n  model.d_stat: [8]\n"), "badkey.yaml:6:3", "did you mean `model.d_state`"),
    ];
    for (file, body, place, what) in cases {
        std::fs::write(d.join(file), body).unwrap();
        let o = stuffed(d, &["sweep", "run", file, "--dry-run", "--db", "x.db"]);
        let t = text(&o);
        assert!(!o.status.success(), "{file} should fail");
        assert!(t.contains(place) && t.contains(what), "{file}: {t}");
    }
    std::fs::write(d.join("big.yaml"), format!("name: x\n{base}grid:\n  train.seed: [1, 2, 3]\n  train.lr: [0.1, 0.2, 0.3]\n")).unwrap();
    let o = stuffed(d, &["sweep", "run", "big.yaml", "--dry-run", "--max-jobs", "5", "--db", "x.db"]);
    assert!(!o.status.success() && text(&o).contains("more than --max-jobs 5"), "{}", text(&o));
}

#[test]
fn export_import_and_report_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let sweep = small_sweep(d, "rt", &corpus, 4);
    let db = d.join("a.db");
    ok(d, &["sweep", "run", sweep.to_str().unwrap(), "--db", db.to_str().unwrap(), "--gpus", "none"]);
    ok(d, &["results", "export", "--db", db.to_str().unwrap(), "--format", "dump", "--out", "dump.json"]);
    let csv = ok(d, &["results", "export", "--db", db.to_str().unwrap(), "--format", "csv"]);
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.lines().next().unwrap().contains("config.model.d_state"));
    ok(d, &["report", "--db", db.to_str().unwrap(), "--out", "rep1"]);
    ok(d, &["results", "import", "--db", "b.db", "dump.json"]);
    ok(d, &["results", "import", "--db", "b.db", "dump.json"]); // idempotent
    ok(d, &["report", "--db", "b.db", "--out", "rep2"]);
    let files = |p: &Path| {
        let mut v: Vec<_> = walk(p).into_iter().map(|f| f.strip_prefix(p).unwrap().to_path_buf()).collect();
        v.sort();
        v
    };
    let (a, b) = (files(&d.join("rep1")), files(&d.join("rep2")));
    assert_eq!(a, b);
    assert!(a.iter().any(|f| f.to_string_lossy().ends_with(".svg")));
    for f in &a {
        assert_eq!(
            std::fs::read(d.join("rep1").join(f)).unwrap(),
            std::fs::read(d.join("rep2").join(f)).unwrap(),
            "{} differs",
            f.display()
        );
    }
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn second_controller_on_the_same_sweep_is_refused_and_the_first_runs_each_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let sweep = small_sweep(d, "twice", &corpus, 40);
    let db = d.join("t.db");
    let args = ["sweep", "run", sweep.to_str().unwrap(), "--db", db.to_str().unwrap(), "--gpus", "none", "--max-parallel", "2"];
    let mut first = Command::new(common::bin()).args(args).current_dir(d).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Wait until the first controller holds the lock and has named itself in it.
    let lock = d.join("t.db.twice.controller.lock");
    let start = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|s| s.ends_with('\n')) {
        assert!(start.elapsed() < Duration::from_secs(60), "the first controller never took its lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let t = Instant::now();
    let second = stuffed(d, &args);
    assert!(!second.status.success(), "{}", text(&second));
    let msg = text(&second);
    let holder = format!("sweep twice is already run by pid {} on host ", first.id());
    assert!(msg.contains(&holder) && msg.contains("(since "), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(10), "the refusal took {:?}", t.elapsed());
    assert!(first.wait().unwrap().success(), "the first controller failed");
    let jobs = jobs_json(d, &db, &["--sweep", "twice"]);
    assert_eq!(jobs.len(), 4);
    assert!(jobs.iter().all(|j| j["status"] == "completed"), "{jobs:?}");
    assert_eq!(db_counts(&db)["attempts"], 4, "a job ran more than once");
    // The lock went with the first controller: a rerun is allowed (and skips everything).
    let again = stuffed(d, &args);
    assert!(again.status.success() && text(&again).contains("4 skipped"), "{}", text(&again));
}
