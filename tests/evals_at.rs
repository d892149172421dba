//! Evaluations during training (`evals_at`, issue 19) and early stopping, end to end on the
//! CPU: three points stored at distinct steps and drawn by the report; the loss curve unchanged
//! by them; a job interrupted around its points evaluating each point exactly once after
//! resuming; a job stopped early recorded as completed and not run again.
mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{jobs_json, ok, stuffed, text};
use stuffed::store::Db;
use stuffed_model::protocol::{Envelope, Event};
use stuffed_model::train::JobConfig;

/// Training draws its initial weights from libtorch's global generator: the tests that train
/// in this process run one at a time.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn query<T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(db: &Path, sql: &str) -> Vec<T> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let d = Db::open(db).await.unwrap();
        sqlx::query_scalar::<_, T>(sql).fetch_all(d.pool()).await.unwrap()
    })
}

/// A one-model sweep of 8 steps with one loss evaluation; `extra` is appended to the file.
fn sweep(dir: &Path, name: &str, corpus: &Path, extra: &str) -> String {
    let yaml = format!(
        "name: {name}\n\
         base:\n\
         \x20 model: {{d_model: 32, n_layer: 1, d_state: 8, headdim: 16, chunk_size: 32}}\n\
         \x20 data: {{corpus: {corpus}}}\n\
         \x20 train: {{seq_len: 32, batch_size: 2, steps: 8, lr: 0.003, warmup_steps: 2, log_every: 1, device: cpu}}\n\
         evals:\n\
         \x20 - {{kind: loss, source: corpus, len: 128, prompts: 2, chunk: 32, bucket: 16}}\n{extra}",
        corpus = corpus.display()
    );
    let file = format!("{name}.yaml");
    std::fs::write(dir.join(&file), yaml).unwrap();
    file
}

#[test]
fn three_points_are_stored_at_distinct_steps_drawn_by_the_report_and_leave_the_loss_curve_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    // The same job with and without evaluations during training (0.25 and 0.5 of 8 steps, and
    // 8 itself, which coincides with the final evaluation: 3 points in all).
    let file = sweep(d, "during", &corpus, "grid:\n  evals_at: [[], [0.25, {tokens: 200}, 8]]\n");
    ok(d, &["sweep", "run", &file, "--db", "r.db", "--gpus", "none"]);
    let db = d.join("r.db");
    let jobs = jobs_json(d, &db, &[]);
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j["status"] == "completed"), "{jobs:?}");
    let with: Vec<String> = query(&db, "SELECT job_id FROM evals GROUP BY job_id HAVING COUNT(*) > 1");
    assert_eq!(with.len(), 1);
    let steps: Vec<i64> = query(&db, &format!("SELECT step FROM evals WHERE job_id = '{}' ORDER BY step", with[0]));
    // 0.25 of 8 steps is step 2; 200 tokens at 64 per step is reached at step 4.
    assert_eq!(steps, [2, 4, 8]);
    let tokens: Vec<i64> = query(&db, &format!("SELECT tokens FROM evals WHERE job_id = '{}' ORDER BY step", with[0]));
    assert_eq!(tokens, [128, 256, 512]);
    // The loss curves of the two jobs are the same, step for step.
    let curve =
        |id: &str| -> Vec<f64> { query(&db, &format!("SELECT value FROM metrics WHERE job_id = '{id}' AND key = 'loss' ORDER BY step")) };
    let without: Vec<String> = query(&db, &format!("SELECT id FROM jobs WHERE id != '{}'", with[0]));
    let (a, b) = (curve(&with[0]), curve(&without[0]));
    assert_eq!(a.len(), 8);
    assert_eq!(a, b, "evaluations during training changed the training");
    // The kept checkpoints: the points and the final one, whatever keep_checkpoints says.
    let run_dir: Vec<String> = query(&db, &format!("SELECT run_dir FROM jobs WHERE id = '{}'", with[0]));
    for s in [2, 4, 8] {
        assert!(d.join(&run_dir[0]).join(format!("ckpt/step-{s:08}/trainer.json")).exists(), "checkpoint of step {s} kept");
    }
    // Shown by `results show`, exported with their steps and tokens, drawn by the report.
    let show = ok(d, &["results", "show", "--db", "r.db", &with[0]]);
    assert!(show.contains("evaluations during training:") && show.contains("step 2 (128 tokens)"), "{show}");
    ok(d, &["results", "export", "--db", "r.db", "--format", "dump", "--out", "dump.json"]);
    let dump: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("dump.json")).unwrap()).unwrap();
    let evals = dump["evals"].as_array().unwrap();
    assert_eq!(
        evals.iter().filter(|e| e["job_id"] == with[0].as_str()).map(|e| e["tokens"].as_i64().unwrap()).collect::<Vec<_>>(),
        [128, 256, 512]
    );
    ok(d, &["results", "import", "--db", "b.db", "dump.json"]);
    assert_eq!(query::<i64>(&d.join("b.db"), "SELECT COUNT(*) FROM evals"), [4]);
    ok(d, &["report", "--db", "b.db", "--out", "rep"]);
    let svg = std::fs::read_to_string(d.join("rep/figures/ratio_during_training.svg")).expect("the figure of evaluations during training");
    assert_eq!(stuffed_reports::figures::count_series(&svg).lines, 1, "one curve: the job with evals_at");
    let readme = std::fs::read_to_string(d.join("rep/README.md")).unwrap();
    assert!(readme.contains("### Evaluations during training"), "{readme}");
    assert_eq!(readme.lines().filter(|l| l.starts_with("| ") && l.contains(" | #0 corpus | ")).count(), 3, "{readme}");
    let html = std::fs::read_to_string(d.join("rep/index.html")).unwrap();
    assert!(html.contains("<h2>Evaluations during training</h2>") && html.contains("figures/ratio_during_training.svg"), "{html}");
}

/// The (step, eval index) pairs of the `eval` events of a run directory.
fn eval_events(run: &Path) -> Vec<(i64, i64)> {
    std::fs::read_to_string(run.join("events.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| Envelope::parse(l.as_bytes()).ok())
        .filter_map(|e| match e.event {
            Event::Eval { eval_index, step, .. } => Some((step, eval_index)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_job_interrupted_around_its_points_evaluates_each_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let yaml = format!(
        "model: {{d_model: 32, n_layer: 1, d_state: 8, headdim: 16, chunk_size: 32}}\n\
         data: {{corpus: {}}}\n\
         train: {{seq_len: 32, batch_size: 2, steps: 12, lr: 0.003, log_every: 1, device: cpu, keep_checkpoints: 1}}\n\
         evals:\n  - {{kind: loss, source: corpus, len: 64, prompts: 1, chunk: 32, bucket: 16}}\n  - {{kind: loss, source: newlines, len: 64, prompts: 1, chunk: 32, bucket: 16}}\n\
         evals_at: [4, 8]\n",
        corpus.display()
    );
    let job = JobConfig::from_yaml(&yaml, Path::new("job.yaml")).unwrap();
    let run = d.join("run");
    let _one = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let attempt = |stop_after: Option<i64>| {
        let stop = AtomicBool::new(false);
        let mut on_step = |s: &stuffed_model::train::StepInfo| {
            if Some(s.step) == stop_after {
                stop.store(true, Ordering::SeqCst);
            }
        };
        stuffed::job::run_job(&job, &run, 0, &stop, &mut on_step)
    };
    // 1: stopped as step 4 ends: its checkpoint is written, none of its evaluations ran.
    let e = attempt(Some(4)).unwrap_err();
    assert!(e.chain().any(|c| matches!(c.downcast_ref::<stuffed_model::Error>(), Some(stuffed_model::Error::Interrupted))), "{e:#}");
    assert_eq!(eval_events(&run), []);
    // 2: resumes at 4, evaluates it, evaluates 8 and stops after step 9.
    attempt(Some(9)).unwrap_err();
    assert_eq!(eval_events(&run), [(4, 0), (4, 1), (8, 0), (8, 1)]);
    // 3: resumes at 9 (points 4 and 8 are not evaluated again) and ends with the final ones.
    let o = attempt(None).unwrap();
    assert_eq!((o.steps, o.stopped_early), (12, None));
    assert_eq!(eval_events(&run), [(4, 0), (4, 1), (8, 0), (8, 1), (12, 0), (12, 1)]);
    // keep_checkpoints 1 keeps the latest; the points' checkpoints are kept beside it.
    let mut kept: Vec<String> = std::fs::read_dir(run.join("ckpt"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("step-"))
        .collect();
    kept.sort();
    assert_eq!(kept, ["step-00000004", "step-00000008", "step-00000012"]);
}

#[test]
fn early_stop_completes_the_job_at_the_first_point_and_a_rerun_leaves_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let extra = "evals_at: [0.25, 0.5]\ngrid:\n  early_stop: [{criterion: {test: ratio, above: 0.0001}}]\n";
    let file = sweep(d, "stop", &corpus, extra);
    let out = ok(d, &["sweep", "run", &file, "--db", "s.db", "--gpus", "none"]);
    assert!(out.contains("completed"), "{out}");
    let db = d.join("s.db");
    let jobs = jobs_json(d, &db, &[]);
    assert_eq!(jobs[0]["status"], "completed", "{jobs:?}");
    assert_eq!(jobs[0]["step"], "2/8 (stopped early)", "{jobs:?}");
    assert_eq!(query::<i64>(&db, "SELECT stopped_early FROM jobs"), [2]);
    assert_eq!(query::<i64>(&db, "SELECT step FROM evals"), [2], "the final evaluations are those of the point");
    assert_eq!(query::<String>(&db, "SELECT status FROM attempts"), ["completed"]);
    let id = jobs[0]["id"].as_str().unwrap();
    let show = ok(d, &["results", "show", "--db", "s.db", id]);
    assert!(show.contains("status completed (stopped early at step 2)"), "{show}");
    let status = ok(d, &["sweep", "status", "stop", "--db", "s.db"]);
    assert!(status.contains("1 of them stopped early") && status.contains("at step 2/8"), "{status}");
    let status: serde_json::Value = serde_json::from_str(&ok(d, &["sweep", "status", "stop", "--db", "s.db", "--format", "json"])).unwrap();
    assert_eq!(status["sweeps"][0]["stopped_early"][0]["step"], 2, "{status}");
    let run_dir: Vec<String> = query(&db, "SELECT run_dir FROM jobs");
    let events = std::fs::read_to_string(d.join(&run_dir[0]).join("events.jsonl")).unwrap();
    assert_eq!(events.lines().filter(|l| l.contains("\"kind\":\"early_stop\"")).count(), 1, "{events}");
    // A rerun of the sweep leaves the job as it is.
    let again = stuffed(d, &["sweep", "run", &file, "--db", "s.db", "--gpus", "none"]);
    assert!(again.status.success() && text(&again).contains("1 skipped"), "{}", text(&again));
    assert_eq!(query::<i64>(&db, "SELECT COUNT(*) FROM attempts"), [1]);
    // The dump carries the early stop, and an import checks it.
    ok(d, &["results", "export", "--db", "s.db", "--format", "dump", "--out", "dump.json"]);
    let mut dump: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("dump.json")).unwrap()).unwrap();
    assert_eq!(dump["jobs"][0]["stopped_early"], 2);
    dump["jobs"][0]["stopped_early"] = serde_json::json!(99);
    std::fs::write(d.join("bad.json"), dump.to_string()).unwrap();
    let bad = stuffed(d, &["results", "import", "--db", "c.db", "bad.json"]);
    assert!(!bad.status.success() && text(&bad).contains("stopped early at step 99"), "{}", text(&bad));
}
