//! Whole-database dumps (`stuffed results export --format dump`) and their import into another
//! database, so committed results can be re-plotted anywhere; plus the report's input.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stuffed_reports::{EvalRecord, JobRecord, MetricRecord, ReportData, SweepRecord};

use super::{AttemptRow, Db, EvalRow, SweepRow};

pub const DUMP_FORMAT: &str = "stuffed-results";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobDump {
    pub id: String,
    pub config: Value,
    pub state_size: i64,
    pub n_params: i64,
    pub train_len: i64,
    pub run_dir: String,
    pub status: String,
    pub attempts: i64,
    pub error: Option<String>,
    pub error_class: Option<String>,
    pub step: Option<i64>,
    pub total_steps: Option<i64>,
    pub last_loss: Option<f64>,
    pub tokens_per_s: Option<f64>,
    pub peak_mem_gb: Option<f64>,
    pub created_at: String,
    pub finished_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SweepJobDump {
    pub sweep: String,
    pub job_id: String,
    pub label: String,
    pub varied: Value,
    pub position: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dump {
    pub format: String,
    pub version: u32,
    pub sweeps: Vec<SweepRow>,
    pub jobs: Vec<JobDump>,
    pub sweep_jobs: Vec<SweepJobDump>,
    pub attempts: Vec<AttemptRow>,
    /// (job, key, step, value)
    pub metrics: Vec<(String, String, i64, f64)>,
    pub evals: Vec<EvalRow>,
    /// (job, kind, path, step)
    pub artifacts: Vec<(String, String, String, Option<i64>)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    pub sweeps: usize,
    pub jobs: usize,
    pub metrics: usize,
    pub evals: usize,
}

impl<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> for JobDump {
    fn from_row(row: &'r sqlx::sqlite::SqliteRow) -> sqlx::Result<Self> {
        use sqlx::Row;
        let config: String = row.try_get("config")?;
        Ok(JobDump {
            id: row.try_get("id")?,
            config: serde_json::from_str(&config).unwrap_or(Value::Null),
            state_size: row.try_get("state_size")?,
            n_params: row.try_get("n_params")?,
            train_len: row.try_get("train_len")?,
            run_dir: row.try_get("run_dir")?,
            status: row.try_get("status")?,
            attempts: row.try_get("attempts")?,
            error: row.try_get("error")?,
            error_class: row.try_get("error_class")?,
            step: row.try_get("step")?,
            total_steps: row.try_get("total_steps")?,
            last_loss: row.try_get("last_loss")?,
            tokens_per_s: row.try_get("tokens_per_s")?,
            peak_mem_gb: row.try_get("peak_mem_gb")?,
            created_at: row.try_get("created_at")?,
            finished_at: row.try_get("finished_at")?,
        })
    }
}

/// `IN (?, ?, ...)` for n values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl Db {
    /// Everything about the given sweeps (all sweeps when empty), in a stable order.
    pub async fn dump(&self, sweeps: &[String]) -> anyhow::Result<Dump> {
        let names: Vec<String> = if sweeps.is_empty() { self.sweep_names().await? } else { sweeps.to_vec() };
        for n in &names {
            if self.sweep(n).await?.is_none() {
                anyhow::bail!("no sweep named '{n}' in this database");
            }
        }
        let ph = placeholders(names.len().max(1));
        macro_rules! bind_all {
            ($q:expr) => {{
                let mut q = $q;
                for n in &names {
                    q = q.bind(n);
                }
                q
            }};
        }
        let in_jobs = format!("SELECT job_id FROM sweep_jobs WHERE sweep IN ({ph})");
        let q_sweeps = format!("SELECT * FROM sweeps WHERE name IN ({ph}) ORDER BY name");
        let q_sj = format!("SELECT sweep, job_id, label, varied, position FROM sweep_jobs WHERE sweep IN ({ph}) ORDER BY sweep, position");
        let q_jobs = format!("SELECT * FROM jobs WHERE id IN ({in_jobs}) ORDER BY id");
        let q_attempts = format!("SELECT * FROM attempts WHERE job_id IN ({in_jobs}) ORDER BY job_id, number");
        let q_metrics = format!("SELECT job_id, key, step, value FROM metrics WHERE job_id IN ({in_jobs}) ORDER BY job_id, key, step");
        let q_evals = format!("SELECT job_id, eval_index, step, kind, params, result FROM evals WHERE job_id IN ({in_jobs}) ORDER BY job_id, eval_index");
        let q_artifacts = format!("SELECT job_id, kind, path, step FROM artifacts WHERE job_id IN ({in_jobs}) ORDER BY job_id, kind, path");
        let sweeps = bind_all!(sqlx::query_as::<_, SweepRow>(&q_sweeps)).fetch_all(&self.pool).await?;
        let sj_rows: Vec<(String, String, String, String, i64)> = bind_all!(sqlx::query_as(&q_sj)).fetch_all(&self.pool).await?;
        let jobs = bind_all!(sqlx::query_as::<_, JobDump>(&q_jobs)).fetch_all(&self.pool).await?;
        let attempts = bind_all!(sqlx::query_as::<_, AttemptRow>(&q_attempts)).fetch_all(&self.pool).await?;
        let metrics = bind_all!(sqlx::query_as(&q_metrics)).fetch_all(&self.pool).await?;
        let evals = bind_all!(sqlx::query_as::<_, EvalRow>(&q_evals)).fetch_all(&self.pool).await?;
        let artifacts = bind_all!(sqlx::query_as(&q_artifacts)).fetch_all(&self.pool).await?;
        Ok(Dump {
            format: DUMP_FORMAT.into(),
            version: 1,
            sweeps,
            jobs,
            sweep_jobs: sj_rows
                .into_iter()
                .map(|(sweep, job_id, label, varied, position)| SweepJobDump {
                    sweep,
                    job_id,
                    label,
                    varied: serde_json::from_str(&varied).unwrap_or(Value::Null),
                    position,
                })
                .collect(),
            attempts,
            metrics,
            evals,
            artifacts,
        })
    }

    /// Loads a dump; rows already present are replaced by the dump's (importing twice is a no-op).
    pub async fn import(&self, d: &Dump) -> anyhow::Result<ImportSummary> {
        if d.format != DUMP_FORMAT {
            anyhow::bail!("not a stuffed results export (format '{}', expected '{DUMP_FORMAT}')", d.format);
        }
        if d.version != 1 {
            anyhow::bail!("results export version {} is not supported (expected 1)", d.version);
        }
        let mut tx = self.pool.begin().await?;
        for s in &d.sweeps {
            sqlx::query("INSERT OR REPLACE INTO sweeps (name, description, spec, source_path, backend, created_at, updated_at, cancelled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
                .bind(&s.name).bind(&s.description).bind(&s.spec).bind(&s.source_path).bind(&s.backend).bind(&s.created_at).bind(&s.updated_at).bind(&s.cancelled_at)
                .execute(&mut *tx).await?;
        }
        for j in &d.jobs {
            sqlx::query(
                "INSERT OR REPLACE INTO jobs (id, config, state_size, n_params, train_len, run_dir, status, attempts, error, error_class, last_seq,
                   step, total_steps, last_loss, tokens_per_s, peak_mem_gb, created_at, updated_at, finished_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&j.id).bind(j.config.to_string()).bind(j.state_size).bind(j.n_params).bind(j.train_len).bind(&j.run_dir).bind(&j.status)
            .bind(j.attempts).bind(&j.error).bind(&j.error_class).bind(j.step).bind(j.total_steps).bind(j.last_loss).bind(j.tokens_per_s)
            .bind(j.peak_mem_gb).bind(&j.created_at).bind(&j.created_at).bind(&j.finished_at)
            .execute(&mut *tx).await?;
        }
        for sj in &d.sweep_jobs {
            sqlx::query("INSERT OR REPLACE INTO sweep_jobs (sweep, job_id, label, varied, position) VALUES (?, ?, ?, ?, ?)")
                .bind(&sj.sweep).bind(&sj.job_id).bind(&sj.label).bind(sj.varied.to_string()).bind(sj.position)
                .execute(&mut *tx).await?;
        }
        for a in &d.attempts {
            sqlx::query(
                "INSERT OR REPLACE INTO attempts (job_id, number, backend, backend_id, host, gpu, gpu_name, pid, started_at, ended_at, status, exit_code,
                   error_class, error, log_path, git_commit, git_dirty, version, libtorch, seed, ssd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&a.job_id).bind(a.number).bind(&a.backend).bind(&a.backend_id).bind(&a.host).bind(&a.gpu).bind(&a.gpu_name).bind(a.pid)
            .bind(&a.started_at).bind(&a.ended_at).bind(&a.status).bind(a.exit_code).bind(&a.error_class).bind(&a.error).bind(&a.log_path)
            .bind(&a.git_commit).bind(a.git_dirty).bind(&a.version).bind(&a.libtorch).bind(a.seed).bind(&a.ssd)
            .execute(&mut *tx).await?;
        }
        for (job, key, step, value) in &d.metrics {
            sqlx::query("INSERT OR REPLACE INTO metrics (job_id, key, step, value, seq) VALUES (?, ?, ?, ?, 0)")
                .bind(job).bind(key).bind(step).bind(value).execute(&mut *tx).await?;
        }
        for e in &d.evals {
            sqlx::query("INSERT OR REPLACE INTO evals (job_id, eval_index, step, kind, params, result, seq) VALUES (?, ?, ?, ?, ?, ?, 0)")
                .bind(&e.job_id).bind(e.eval_index).bind(e.step).bind(&e.kind).bind(&e.params).bind(&e.result).execute(&mut *tx).await?;
        }
        for (job, kind, path, step) in &d.artifacts {
            sqlx::query("INSERT OR REPLACE INTO artifacts (job_id, kind, path, step, created_at) VALUES (?, ?, ?, ?, '')")
                .bind(job).bind(kind).bind(path).bind(step).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(ImportSummary { sweeps: d.sweeps.len(), jobs: d.jobs.len(), metrics: d.metrics.len(), evals: d.evals.len() })
    }

    /// The report's input for the given sweeps (all when empty). Each job's config gets the
    /// resolved model sizes filled in, so figures can label models by d_state, d_model, ...
    pub async fn report_data(&self, sweeps: &[String]) -> anyhow::Result<ReportData> {
        let d = self.dump(sweeps).await?;
        let jobs_by_id: BTreeMap<&str, &JobDump> = d.jobs.iter().map(|j| (j.id.as_str(), j)).collect();
        let mut counts: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
        let mut jobs = Vec::new();
        for sj in &d.sweep_jobs {
            let Some(j) = jobs_by_id.get(sj.job_id.as_str()) else { continue };
            *counts.entry(sj.sweep.as_str()).or_default().entry(j.status.clone()).or_insert(0) += 1;
            jobs.push(JobRecord {
                id: j.id.clone(),
                sweep: sj.sweep.clone(),
                status: j.status.clone(),
                label: sj.label.clone(),
                config: with_resolved_model(&j.config),
                state_size: j.state_size,
                n_params: j.n_params,
            });
        }
        Ok(ReportData {
            sweeps: d
                .sweeps
                .iter()
                .map(|s| SweepRecord {
                    name: s.name.clone(),
                    description: s.description.clone(),
                    created_at: s.created_at.clone(),
                    counts: counts.get(s.name.as_str()).cloned().unwrap_or_default(),
                })
                .collect(),
            jobs,
            evals: d
                .evals
                .iter()
                .map(|e| EvalRecord {
                    job_id: e.job_id.clone(),
                    kind: e.kind.clone(),
                    params: serde_json::from_str(&e.params).unwrap_or(Value::Null),
                    result: serde_json::from_str(&e.result).unwrap_or(Value::Null),
                })
                .collect(),
            metrics: d
                .metrics
                .iter()
                .map(|(job_id, key, step, value)| MetricRecord { job_id: job_id.clone(), step: *step, key: key.clone(), value: *value })
                .collect(),
        })
    }
}

/// The job config with `model` completed by the resolved sizes (preset values made explicit).
fn with_resolved_model(config: &Value) -> Value {
    let mut c = config.clone();
    let resolved = serde_json::from_value::<stuffed_model::train::JobConfig>(config.clone()).ok().and_then(|j| j.model_config().ok());
    if let (Some(m), Some(obj)) = (resolved, c.get_mut("model").and_then(Value::as_object_mut)) {
        for (k, v) in [
            ("d_model", m.d_model),
            ("n_layer", m.n_layer),
            ("d_state", m.d_state()),
            ("headdim", m.headdim()),
            ("expand", m.ssm_cfg.expand),
            ("ngroups", m.ngroups()),
            ("nheads", m.nheads()),
            ("vocab_size", m.vocab_size),
        ] {
            obj.entry(k).or_insert(Value::from(v));
        }
    }
    c
}
