//! End-to-end adaptive search on the CPU (`search:` in a sweep file): a search over the
//! training length for 2 state sizes runs to a bracket per cell with fewer jobs than the grid,
//! records its steps and resumes as a no-op; a controller killed with -9 mid-search resumes
//! with no duplicate job and the same steps as an uninterrupted run; the dry run's counts.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ok, stuffed, text};
use stuffed::store::Db;

fn scalar(db: &Path, sql: &str) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let d = Db::open(db).await.unwrap();
        sqlx::query_scalar::<_, i64>(sql).fetch_one(d.pool()).await.unwrap()
    })
}

/// A count read from a database another process is writing (and may still be creating):
/// read-only, never migrating; None until the table exists.
fn peek(db: &Path, sql: &str) -> Option<i64> {
    use std::str::FromStr;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display())).ok()?.read_only(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.ok()?;
        let n = sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.ok();
        pool.close().await;
        n
    })
}

/// (cell, round, probe, job, answer, decision) of a step.
type Step = (String, i64, i64, Option<String>, Option<String>, String);

/// Every step of a sweep's search, in order.
fn steps(db: &Path, sweep: &str) -> Vec<Step> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let d = Db::open(db).await.unwrap();
        let s = d.search_steps(sweep).await.unwrap();
        s.into_iter().map(|s| (s.cell, s.round, s.probe, s.job_id, s.answer, s.decision.describe())).collect()
    })
}

/// Two state sizes, the training length searched over 4 values on a loss-ratio threshold the
/// fixture's tiny models cross (about 1.10-1.15 at 8 tokens, 1.03-1.05 from 32).
fn search_sweep(dir: &Path, name: &str, corpus: &Path, steps: i64) -> std::path::PathBuf {
    let yaml = format!(
        "name: {name}\n\
         base:\n\
         \x20 model: {{d_model: 32, n_layer: 2, d_state: 8, headdim: 16, chunk_size: 32}}\n\
         \x20 data: {{corpus: {corpus}}}\n\
         \x20 train: {{seq_len: 64, batch_size: 4, steps: {steps}, lr: 0.003, warmup_steps: 2, log_every: 2,\n\
         \x20         checkpoint_every: 4, device: cpu}}\n\
         grid:\n\
         \x20 model.d_state: [4, 16]\n\
         evals:\n\
         \x20 - {{kind: loss, source: corpus, len: \"8 * {{train.seq_len}}\", prompts: 2, chunk: 64, bucket: \"{{train.seq_len}} / 4\"}}\n\
         search:\n\
         \x20 key: train.seq_len\n\
         \x20 values: [8, 16, 32, 64]\n\
         \x20 criterion: {{test: ratio, above: 1.07}}\n",
        corpus = corpus.display()
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn search_ends_with_a_bracket_per_cell_in_fewer_jobs_than_the_grid() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let sweep = search_sweep(d, "srch", &corpus, 20);
    let db = d.join("s.db");
    let dry = ok(d, &["sweep", "run", sweep.to_str().unwrap(), "--dry-run", "--gpus", "none"]);
    assert!(dry.contains("2 cell(s) of 4 values"), "{dry}");
    assert!(dry.contains("full grid 8, search worst case 8, expected 6.0"), "{dry}");
    let slurm = stuffed(d, &["sweep", "run", sweep.to_str().unwrap(), "--dry-run", "--backend", "slurm"]);
    assert!(!slurm.status.success() && text(&slurm).contains("local backend only"), "{}", text(&slurm));
    let args = ["sweep", "run", sweep.to_str().unwrap(), "--db", db.to_str().unwrap(), "--gpus", "none", "--max-parallel", "2"];
    let out = ok(d, &args);
    // Every cell ends: a final row each, none still probing.
    let s = steps(&db, "srch");
    let finals: Vec<_> = s.iter().filter(|s| s.2 == -1).collect();
    assert_eq!(finals.len(), 2, "{s:#?}");
    assert!(finals.iter().all(|f| f.5.starts_with("bracket")), "{s:#?}\n{out}");
    let jobs = scalar(&db, "SELECT COUNT(*) FROM sweep_jobs WHERE sweep = 'srch'");
    assert!(jobs < 8, "{jobs} jobs");
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM attempts"), jobs);
    let status = ok(d, &["sweep", "status", "srch", "--db", db.to_str().unwrap()]);
    assert!(status.contains("d_state=4: bracket") && status.contains("d_state=16: bracket"), "{status}");
    // Running it again decides the same and runs nothing.
    let again = stuffed(d, &args);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM attempts"), jobs);
    assert_eq!(steps(&db, "srch"), s);
    // The steps travel with an export, and the report shows the brackets.
    let dump = d.join("dump.json");
    ok(d, &["results", "export", "--db", db.to_str().unwrap(), "--format", "dump", "--out", dump.to_str().unwrap()]);
    let db2 = d.join("imported.db");
    ok(d, &["results", "import", dump.to_str().unwrap(), "--db", db2.to_str().unwrap()]);
    assert_eq!(steps(&db2, "srch"), s);
    let report = d.join("report");
    ok(d, &["report", "--db", db2.to_str().unwrap(), "--out", report.to_str().unwrap()]);
    let readme = std::fs::read_to_string(report.join("README.md")).unwrap();
    assert!(readme.contains("## Adaptive search") && readme.contains("bracket"), "{readme}");
}

#[test]
fn search_controller_killed_mid_search_resumes_with_the_same_steps() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let corpus = common::fixture_corpus(d);
    let sweep = search_sweep(d, "srk", &corpus, 20);
    // Uninterrupted.
    let db_a = d.join("a.db");
    let runs_a = d.join("runs-a");
    let a = ["--db", db_a.to_str().unwrap(), "--runs-dir", runs_a.to_str().unwrap(), "--gpus", "none", "--max-parallel", "2"];
    ok(d, &[&["sweep", "run", sweep.to_str().unwrap()][..], &a[..]].concat());
    // Killed with -9 once a later round's probes are under way, then rerun.
    let db_b = d.join("b.db");
    let runs_b = d.join("runs-b");
    let b = ["--db", db_b.to_str().unwrap(), "--runs-dir", runs_b.to_str().unwrap(), "--gpus", "none", "--max-parallel", "2"];
    let args = [&["sweep", "run", sweep.to_str().unwrap()][..], &b[..]].concat();
    let mut child = Command::new(common::bin()).args(&args).current_dir(d).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    let mut killed_in_round = false;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(120) {
            break;
        }
        if peek(&db_b, "SELECT COUNT(*) FROM search_steps WHERE round >= 1 AND probe >= 0").unwrap_or(0) > 0 {
            std::thread::sleep(Duration::from_millis(500));
            killed_in_round = true;
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(killed_in_round, "the search ended before a second round");
    let o = stuffed(d, &args);
    assert!(o.status.success(), "{}", text(&o));
    let (sa, sb) = (steps(&db_a, "srk"), steps(&db_b, "srk"));
    assert_eq!(sa, sb);
    assert!(sa.iter().filter(|s| s.2 == -1).count() == 2, "{sa:#?}");
    // No job twice: one completed attempt per job of the sweep, the same jobs as uninterrupted.
    let jobs = scalar(&db_b, "SELECT COUNT(*) FROM sweep_jobs WHERE sweep = 'srk'");
    assert_eq!(jobs, scalar(&db_a, "SELECT COUNT(*) FROM sweep_jobs WHERE sweep = 'srk'"));
    assert_eq!(scalar(&db_b, "SELECT COUNT(*) FROM attempts WHERE status = 'completed'"), jobs);
    assert_eq!(
        scalar(&db_b, "SELECT COUNT(*) FROM (SELECT job_id FROM attempts WHERE status = 'completed' GROUP BY job_id HAVING COUNT(*) > 1)"),
        0
    );
}
