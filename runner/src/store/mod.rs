//! The SQLite results store (sqlx): the one `Db` type holding every SQL statement. WAL and a
//! busy timeout are set when the pool opens; migrations are embedded. Only the controller
//! writes; ingestion of worker events is idempotent (by sequence number and natural keys).
mod dash;
mod dump_parts;
mod export;
mod filter;
mod import_guard;
mod ingest;
mod long;
mod schema;
mod search;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use stuffed_model::protocol::{EvalResult, JobRecord, JobStatus, ModelDims};

pub use dump_parts::split as split_dump;
pub use export::{Dump, ImportSummary};
pub use filter::{Cond, Op};
pub use import_guard::{check_dump, read_dump, MAX_DUMP_BYTES};
pub use ingest::{read_events, IngestSummary};
pub use long::{long_columns, LongTable};
pub use schema::{tables_doc, TABLES_BEGIN, TABLES_END};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Clone)]
pub struct Db {
    pool: SqlitePool,
}

/// Why `path` cannot be written, when the file system holding it is full (fewer than 1 MiB or
/// no inodes free): "the disk holding DIR is full (N bytes free)".
fn disk_full(path: &Path) -> Option<String> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // Safety: statvfs fills the struct we own from a NUL-terminated path.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let free = s.f_bavail as u64 * s.f_frsize as u64;
    (free < 1 << 20 || s.f_favail == 0).then(|| format!("the disk holding {} is full ({free} bytes free)", dir.display()))
}

/// UTC now as RFC 3339.
pub fn now() -> String {
    stuffed_model::train::events::now_rfc3339()
}

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct SweepRow {
    pub name: String,
    pub description: String,
    pub spec: String,
    pub source_path: Option<String>,
    pub backend: String,
    pub created_at: String,
    pub updated_at: String,
    pub cancelled_at: Option<String>,
}

/// A job as listed for a sweep (or across sweeps: `sweep`/`label` of its first sweep): the
/// protocol's one job-row type, shared with the dump and the reports.
pub type JobRow = JobRecord;

/// Reads a job row of [`JOB_COLUMNS`]: JSON columns parsed, the status typed, the model sizes
/// resolved from the config (presets made explicit).
fn job_from_row(row: SqliteRow) -> sqlx::Result<JobRecord> {
    let text = |name: &str| -> sqlx::Result<String> { row.try_get::<String, _>(name) };
    let decode = |name: &str, e: String| sqlx::Error::ColumnDecode { index: name.into(), source: e.into() };
    let config: Value = serde_json::from_str(&text("config")?).unwrap_or(Value::Null);
    let varied = match serde_json::from_str::<Value>(&text("varied")?) {
        Ok(Value::Object(m)) => m,
        _ => Default::default(),
    };
    let status: String = text("status")?;
    Ok(JobRecord {
        id: text("id")?,
        sweep: text("sweep")?,
        label: text("label")?,
        varied,
        position: row.try_get("position")?,
        status: status.parse().map_err(|e: stuffed_model::protocol::Error| decode("status", e.to_string()))?,
        state_size: row.try_get("state_size")?,
        n_params: row.try_get("n_params")?,
        train_len: row.try_get("train_len")?,
        model: model_dims(&config),
        config,
        run_dir: text("run_dir")?,
        attempts: row.try_get("attempts")?,
        error: row.try_get("error")?,
        error_class: row.try_get("error_class")?,
        last_seq: row.try_get("last_seq")?,
        step: row.try_get("step")?,
        total_steps: row.try_get("total_steps")?,
        last_loss: row.try_get("last_loss")?,
        tokens_per_s: row.try_get("tokens_per_s")?,
        peak_mem_gb: row.try_get("peak_mem_gb")?,
        created_at: text("created_at")?,
        updated_at: text("updated_at")?,
        finished_at: row.try_get("finished_at")?,
        stopped_early: row.try_get("stopped_early")?,
    })
}

/// The model sizes of a stored job config (zeros when it does not resolve).
pub fn model_dims(config: &Value) -> ModelDims {
    let Some(m) = serde_json::from_value::<stuffed_model::train::JobConfig>(config.clone()).ok().and_then(|j| j.model_config().ok()) else {
        return ModelDims::default();
    };
    ModelDims {
        d_model: m.d_model,
        n_layer: m.n_layer,
        d_state: m.d_state(),
        headdim: m.headdim(),
        expand: m.ssm_cfg.expand,
        ngroups: m.ngroups(),
        nheads: m.nheads(),
        vocab_size: m.vocab_size,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct AttemptRow {
    pub id: i64,
    pub job_id: String,
    pub number: i64,
    pub backend: String,
    pub backend_id: Option<String>,
    pub host: Option<String>,
    pub gpu: Option<String>,
    pub gpu_name: Option<String>,
    pub pid: Option<i64>,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub status: String,
    pub exit_code: Option<i64>,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub log_path: Option<String>,
    pub git_commit: Option<String>,
    pub git_dirty: Option<i64>,
    pub version: Option<String>,
    pub libtorch: Option<String>,
    pub seed: Option<i64>,
    /// The SSD backend the worker ran (`tensor` or `fused`), once its trainer started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssd: Option<String>,
}

/// One stored evaluation of a job.
#[derive(Debug, Clone, Serialize)]
pub struct EvalRow {
    pub job_id: String,
    pub eval_index: i64,
    pub step: i64,
    /// Training tokens of the checkpoint (absent for events before format 2).
    pub tokens: Option<i64>,
    pub result: EvalResult,
}

fn eval_from_row(row: SqliteRow) -> sqlx::Result<EvalRow> {
    let text: String = row.try_get("result")?;
    let result =
        EvalResult::from_json(&text).map_err(|e| sqlx::Error::ColumnDecode { index: "result".into(), source: e.to_string().into() })?;
    Ok(EvalRow {
        job_id: row.try_get("job_id")?,
        eval_index: row.try_get("eval_index")?,
        step: row.try_get("step")?,
        tokens: row.try_get("tokens")?,
        result,
    })
}

/// A new job of a sweep, as expansion produced it.
pub struct NewJob<'a> {
    pub id: &'a str,
    pub sweep: &'a str,
    pub label: &'a str,
    pub varied: &'a Value,
    pub position: i64,
    pub config: &'a Value,
    pub state_size: i64,
    pub n_params: i64,
    pub train_len: i64,
    pub run_dir: &'a str,
}

/// What an attempt records about where and how it ran.
#[derive(Debug, Clone, Default)]
pub struct NewAttempt {
    pub job_id: String,
    pub backend: String,
    pub backend_id: Option<String>,
    pub host: Option<String>,
    pub gpu: Option<String>,
    pub gpu_name: Option<String>,
    pub pid: Option<i64>,
    pub log_path: Option<String>,
    pub seed: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepSummary {
    pub name: String,
    pub description: String,
    pub created_at: String,
    pub cancelled: bool,
    pub total: i64,
    pub counts: std::collections::BTreeMap<String, i64>,
}

const JOB_COLUMNS: &str = "j.id, sj.sweep, sj.label, sj.varied, sj.position, j.config, j.state_size, j.n_params, \
    j.train_len, j.run_dir, j.status, j.attempts, j.error, j.error_class, j.last_seq, j.step, j.total_steps, \
    j.last_loss, j.tokens_per_s, j.peak_mem_gb, j.created_at, j.updated_at, j.finished_at, j.stopped_early";

impl Db {
    /// Opens (creating if needed) the database at `path`, in WAL mode with a busy timeout, and
    /// applies pending migrations.
    pub async fn open(path: &Path) -> anyhow::Result<Db> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(60))
            .foreign_keys(true);
        Self::connect(opts, 4)
            .await
            .map_err(|e| match disk_full(path) {
                // SQLite says only "disk I/O error": name the disk that is full.
                Some(why) => e.context(why),
                None => e,
            })
            .with_context(|| format!("opening database {}", path.display()))
    }

    /// A private in-memory database (tests).
    pub async fn open_memory() -> anyhow::Result<Db> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        Self::connect(opts, 1).await
    }

    async fn connect(opts: SqliteConnectOptions, max: u32) -> anyhow::Result<Db> {
        let pool = SqlitePoolOptions::new().max_connections(max).connect_with(opts).await?;
        schema::check_not_newer(&pool).await?;
        MIGRATOR.run(&pool).await.context("applying database migrations")?;
        Ok(Db { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    // ---- sweeps ----

    pub async fn upsert_sweep(&self, name: &str, description: &str, spec: &str, source: Option<&str>, backend: &str) -> anyhow::Result<()> {
        let t = now();
        sqlx::query(
            "INSERT INTO sweeps (name, description, spec, source_path, backend, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(name) DO UPDATE SET description = excluded.description, spec = excluded.spec,
               source_path = excluded.source_path, backend = excluded.backend, updated_at = excluded.updated_at, cancelled_at = NULL",
        )
        .bind(name)
        .bind(description)
        .bind(spec)
        .bind(source)
        .bind(backend)
        .bind(&t)
        .bind(&t)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn sweep(&self, name: &str) -> anyhow::Result<Option<SweepRow>> {
        Ok(sqlx::query_as::<_, SweepRow>("SELECT * FROM sweeps WHERE name = ?").bind(name).fetch_optional(&self.pool).await?)
    }

    pub async fn sweep_names(&self) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT name FROM sweeps ORDER BY created_at, name").fetch_all(&self.pool).await?)
    }

    pub async fn sweeps(&self) -> anyhow::Result<Vec<SweepSummary>> {
        let rows = sqlx::query_as::<_, SweepRow>("SELECT * FROM sweeps ORDER BY created_at, name").fetch_all(&self.pool).await?;
        let mut out = Vec::new();
        for s in rows {
            let counts: Vec<(String, i64)> = sqlx::query_as(
                "SELECT j.status, COUNT(*) FROM sweep_jobs sj JOIN jobs j ON j.id = sj.job_id WHERE sj.sweep = ? GROUP BY j.status",
            )
            .bind(&s.name)
            .fetch_all(&self.pool)
            .await?;
            out.push(SweepSummary {
                total: counts.iter().map(|c| c.1).sum(),
                counts: counts.into_iter().collect(),
                cancelled: s.cancelled_at.is_some(),
                name: s.name,
                description: s.description,
                created_at: s.created_at,
            });
        }
        Ok(out)
    }

    pub async fn cancel_sweep(&self, name: &str) -> anyhow::Result<u64> {
        let t = now();
        sqlx::query("UPDATE sweeps SET cancelled_at = ? WHERE name = ?").bind(&t).bind(name).execute(&self.pool).await?;
        let r = sqlx::query(
            "UPDATE jobs SET status = 'cancelled', updated_at = ? WHERE status = 'pending' AND id IN (SELECT job_id FROM sweep_jobs WHERE sweep = ?)",
        )
        .bind(&t)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    pub async fn is_cancelled(&self, name: &str) -> anyhow::Result<bool> {
        let c: Option<Option<String>> =
            sqlx::query_scalar("SELECT cancelled_at FROM sweeps WHERE name = ?").bind(name).fetch_optional(&self.pool).await?;
        Ok(matches!(c, Some(Some(_))))
    }

    // ---- jobs ----

    /// Adds a job to a sweep. A job already known (same hash) keeps its status and results.
    pub async fn add_job(&self, j: &NewJob<'_>) -> anyhow::Result<()> {
        let t = now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO jobs (id, config, state_size, n_params, train_len, run_dir, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING",
        )
        .bind(j.id)
        .bind(j.config.to_string())
        .bind(j.state_size)
        .bind(j.n_params)
        .bind(j.train_len)
        .bind(j.run_dir)
        .bind(&t)
        .bind(&t)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO sweep_jobs (sweep, job_id, label, varied, position) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT(sweep, job_id) DO UPDATE SET label = excluded.label, varied = excluded.varied, position = excluded.position",
        )
        .bind(j.sweep)
        .bind(j.id)
        .bind(j.label)
        .bind(j.varied.to_string())
        .bind(j.position)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Jobs of a sweep in sweep order.
    pub async fn sweep_jobs(&self, sweep: &str) -> anyhow::Result<Vec<JobRow>> {
        let q = format!("SELECT {JOB_COLUMNS} FROM sweep_jobs sj JOIN jobs j ON j.id = sj.job_id WHERE sj.sweep = ? ORDER BY sj.position");
        Ok(sqlx::query(&q).bind(sweep).try_map(job_from_row).fetch_all(&self.pool).await?)
    }

    /// Jobs matching every condition (sweep membership, status, config keys), in sweep order.
    pub async fn jobs(&self, conds: &[Cond]) -> anyhow::Result<Vec<JobRow>> {
        if conds.len() > filter::MAX_CONDS {
            anyhow::bail!("{} filter conditions: at most {} are taken", conds.len(), filter::MAX_CONDS);
        }
        let (clause, binds) = filter::sql(conds);
        let q = format!("SELECT {JOB_COLUMNS} FROM sweep_jobs sj JOIN jobs j ON j.id = sj.job_id {clause} ORDER BY sj.sweep, sj.position");
        let mut query = sqlx::query(&q);
        for b in binds {
            query = match b {
                filter::Bind::Text(s) => query.bind(s),
                filter::Bind::Num(x) => query.bind(x),
            };
        }
        Ok(query.try_map(job_from_row).fetch_all(&self.pool).await?)
    }

    /// One job by id or unique id prefix.
    pub async fn job(&self, id: &str) -> anyhow::Result<JobRow> {
        if crate::safety::check_id(id).is_err() {
            anyhow::bail!("no job with id '{}'", crate::safety::short(id));
        }
        let q = format!("SELECT {JOB_COLUMNS} FROM sweep_jobs sj JOIN jobs j ON j.id = sj.job_id WHERE j.id LIKE ? || '%' ESCAPE '\\' ORDER BY sj.position");
        let pattern = id.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let rows = sqlx::query(&q).bind(pattern).try_map(job_from_row).fetch_all(&self.pool).await?;
        let ids: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        match ids.len() {
            0 => anyhow::bail!("no job with id '{id}'"),
            1 => Ok(rows.into_iter().next().expect("one row")),
            n => anyhow::bail!("'{id}' matches {n} jobs: give more of the id"),
        }
    }

    pub async fn set_status(&self, id: &str, status: JobStatus, error_class: Option<&str>, error: Option<&str>) -> anyhow::Result<()> {
        let t = now();
        let finished =
            matches!(status, JobStatus::Completed | JobStatus::Failed | JobStatus::Diverged | JobStatus::Cancelled).then_some(t.clone());
        sqlx::query("UPDATE jobs SET status = ?, error_class = ?, error = ?, updated_at = ?, finished_at = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(error_class)
            .bind(error)
            .bind(&t)
            .bind(finished)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn record_peak_memory(&self, id: &str, gb: f64) -> anyhow::Result<()> {
        sqlx::query("UPDATE jobs SET peak_mem_gb = MAX(COALESCE(peak_mem_gb, 0), ?) WHERE id = ?")
            .bind(gb)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- attempts ----

    /// Records the start of an attempt (numbered from 1) and counts it on the job.
    pub async fn start_attempt(&self, a: &NewAttempt) -> anyhow::Result<i64> {
        let p = crate::version::provenance();
        let mut tx = self.pool.begin().await?;
        let number: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) + 1 FROM attempts WHERE job_id = ?")
            .bind(&a.job_id)
            .fetch_one(&mut *tx)
            .await?;
        let id = sqlx::query(
            "INSERT INTO attempts (job_id, number, backend, backend_id, host, gpu, gpu_name, pid, started_at, log_path,
               git_commit, git_dirty, version, libtorch, seed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.job_id)
        .bind(number)
        .bind(&a.backend)
        .bind(&a.backend_id)
        .bind(&a.host)
        .bind(&a.gpu)
        .bind(&a.gpu_name)
        .bind(a.pid)
        .bind(now())
        .bind(&a.log_path)
        .bind(&p.git_commit)
        .bind(p.git_dirty as i64)
        .bind(&p.version)
        .bind(&p.libtorch)
        .bind(a.seed)
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        sqlx::query("UPDATE jobs SET attempts = attempts + 1, status = 'running', updated_at = ? WHERE id = ?")
            .bind(now())
            .bind(&a.job_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn set_attempt_backend_id(&self, attempt: i64, backend_id: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE attempts SET backend_id = ? WHERE id = ?").bind(backend_id).bind(attempt).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn set_attempt_pid(&self, attempt: i64, pid: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE attempts SET pid = ? WHERE id = ?").bind(pid).bind(attempt).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn finish_attempt(
        &self,
        attempt: i64,
        status: &str,
        exit_code: Option<i64>,
        error_class: Option<&str>,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE attempts SET ended_at = ?, status = ?, exit_code = ?, error_class = ?, error = ? WHERE id = ? AND ended_at IS NULL",
        )
        .bind(now())
        .bind(status)
        .bind(exit_code)
        .bind(error_class)
        .bind(error)
        .bind(attempt)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn attempts(&self, job_id: &str) -> anyhow::Result<Vec<AttemptRow>> {
        Ok(sqlx::query_as::<_, AttemptRow>("SELECT * FROM attempts WHERE job_id = ? ORDER BY number")
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?)
    }

    /// The open (not ended) attempt of a job, if any.
    pub async fn open_attempt(&self, job_id: &str) -> anyhow::Result<Option<AttemptRow>> {
        Ok(sqlx::query_as::<_, AttemptRow>("SELECT * FROM attempts WHERE job_id = ? AND ended_at IS NULL ORDER BY number DESC LIMIT 1")
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    // ---- metrics and evals ----

    pub async fn metrics(&self, job_id: &str, key: &str) -> anyhow::Result<Vec<(i64, f64)>> {
        Ok(sqlx::query_as("SELECT step, value FROM metrics WHERE job_id = ? AND key = ? ORDER BY step")
            .bind(job_id)
            .bind(key)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn metric_keys(&self, job_id: &str) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT DISTINCT key FROM metrics WHERE job_id = ? ORDER BY key").bind(job_id).fetch_all(&self.pool).await?)
    }

    pub async fn latest_metrics(&self, job_id: &str) -> anyhow::Result<Vec<(String, i64, f64)>> {
        Ok(sqlx::query_as("SELECT key, step, value FROM latest_metrics WHERE job_id = ? ORDER BY key")
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?)
    }

    /// A job's final evaluations: each evaluation at the last step it ran at.
    pub async fn evals(&self, job_id: &str) -> anyhow::Result<Vec<EvalRow>> {
        Ok(sqlx::query(
            "SELECT job_id, eval_index, step, tokens, result FROM evals e WHERE job_id = ?
               AND step = (SELECT MAX(step) FROM evals e2 WHERE e2.job_id = e.job_id AND e2.eval_index = e.eval_index)
             ORDER BY eval_index",
        )
        .bind(job_id)
        .try_map(eval_from_row)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every evaluation of a job, during training (`evals_at`) and final, by index then step.
    pub async fn eval_history(&self, job_id: &str) -> anyhow::Result<Vec<EvalRow>> {
        Ok(sqlx::query("SELECT job_id, eval_index, step, tokens, result FROM evals WHERE job_id = ? ORDER BY eval_index, step")
            .bind(job_id)
            .try_map(eval_from_row)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn artifacts(&self, job_id: &str) -> anyhow::Result<Vec<(String, String, Option<i64>)>> {
        Ok(sqlx::query_as("SELECT kind, path, step FROM artifacts WHERE job_id = ? ORDER BY kind, path")
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?)
    }

    /// What a job that its worker called done lacks in the database, if anything: its final
    /// training step (the one it stopped at, when it stopped early), or one of its `n_evals`
    /// evaluations at that step.
    pub async fn incomplete(&self, job_id: &str, n_evals: usize) -> anyhow::Result<Option<String>> {
        let (step, total, stopped): (Option<i64>, Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT step, total_steps, stopped_early FROM jobs WHERE id = ?").bind(job_id).fetch_one(&self.pool).await?;
        // A job stopped early is complete at the step it stopped at (its evaluations are there).
        let (step, total) = match stopped {
            Some(s) => (Some(s), Some(s)),
            None => (step, total),
        };
        let (Some(step), Some(total)) = (step, total) else { return Ok(Some("no training step was recorded".into())) };
        if step < total {
            return Ok(Some(format!("the last recorded step is {step} of {total}")));
        }
        let evals: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT eval_index) FROM evals WHERE job_id = ? AND step = ?")
            .bind(job_id)
            .bind(step)
            .fetch_one(&self.pool)
            .await?;
        Ok((evals < n_evals as i64).then(|| format!("{evals} of its {n_evals} evaluations were recorded at step {step}")))
    }

    /// Row counts of the main tables (tests and diagnostics).
    pub async fn counts(&self) -> anyhow::Result<std::collections::BTreeMap<String, i64>> {
        let mut out = std::collections::BTreeMap::new();
        for t in ["sweeps", "jobs", "sweep_jobs", "attempts", "metrics", "evals", "artifacts"] {
            let n: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM {t}")).fetch_one(&self.pool).await?.get(0);
            out.insert(t.to_string(), n);
        }
        Ok(out)
    }
}
