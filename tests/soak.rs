//! Soak test (ignored by default; run with `cargo test --release --test soak -- --ignored`):
//! a CPU sweep of 50 tiny jobs with 4 parallel workers while a chaos loop kills a random
//! running worker with SIGKILL every few seconds; the final database must hold exactly the
//! expected job set, each completed exactly once, with no duplicated metric rows.
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::jobs_json;
use stuffed::store::Db;

#[test]
#[ignore]
fn fifty_jobs_with_random_worker_kills() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let sweep = d.join("soak.yaml");
    std::fs::write(
        &sweep,
        format!(
            "name: soak\nbase:\n  model: {{d_model: 32, n_layer: 1, d_state: 4, headdim: 16, chunk_size: 16}}\n  data: {{corpus: {}}}\n  train: {{seq_len: 32, batch_size: 4, steps: 150, lr: 0.003, log_every: 2, checkpoint_every: 8, device: cpu}}\n  evals:\n    - {{kind: loss, source: corpus, len: 128, prompts: 1, chunk: 64, bucket: 16}}\ngrid:\n  train.seed: [{}]\nretries: 10\n",
            corpus.display(),
            (0..50).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
        ),
    )
    .unwrap();
    let db = d.join("soak.db");
    let start = Instant::now();
    let mut ctl = Command::new(common::bin())
        .args(["sweep", "run", sweep.to_str().unwrap(), "--db", db.to_str().unwrap(), "--gpus", "none", "--max-parallel", "4"])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut rng = stuffed_model::rng::Rng::new(7);
    let mut kills = 0;
    while ctl.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(1000 + rng.below(2000)));
        // The controller's children are its workers.
        let workers: Vec<i32> =
            String::from_utf8_lossy(&Command::new("pgrep").args(["-P", &ctl.id().to_string()]).output().unwrap().stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
        if let Some(&pid) = workers.get(rng.below(workers.len().max(1) as u64) as usize) {
            // Safety: SIGKILL to a worker of this test's sweep.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            kills += 1;
        }
        assert!(start.elapsed() < Duration::from_secs(1800), "soak test ran past 30 minutes");
    }
    let jobs = jobs_json(d, &db, &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (completed_attempts, dup_metrics, evals, killed) = rt.block_on(async {
        let x = Db::open(&db).await.unwrap();
        let q = |s: &'static str| sqlx::query_scalar::<_, i64>(s).fetch_one(x.pool());
        (
            q("SELECT COUNT(*) FROM attempts WHERE status = 'completed'").await.unwrap(),
            q("SELECT COUNT(*) FROM (SELECT 1 FROM metrics GROUP BY job_id, key, step HAVING COUNT(*) > 1)").await.unwrap(),
            q("SELECT COUNT(*) FROM evals").await.unwrap(),
            q("SELECT COUNT(*) FROM attempts WHERE error_class = 'killed'").await.unwrap(),
        )
    });
    println!("soak: 50 jobs, {kills} kills sent, {killed} attempts killed, {:.0}s", start.elapsed().as_secs_f64());
    assert!(kills >= 5 && killed >= 1, "the chaos loop must actually kill workers");
    assert_eq!(jobs.len(), 50);
    assert!(jobs.iter().all(|j| j["status"] == "completed"), "{jobs:?}");
    assert_eq!(completed_attempts, 50);
    assert_eq!(dup_metrics, 0);
    assert_eq!(evals, 50);
}
