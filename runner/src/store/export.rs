//! Whole-database dumps (`stuffed results export --format dump`) and their import into another
//! database, so committed results can be re-plotted anywhere; plus the report's input.
use std::collections::BTreeMap;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stuffed_model::protocol::{EvalResult, JobRecord, SearchStep};
use stuffed_reports::{EvalRecord, MetricRecord, ReportData, SweepRecord};

use super::{job_from_row, AttemptRow, Db, SweepRow, JOB_COLUMNS};

pub const DUMP_FORMAT: &str = "stuffed-results";

/// The dump version written: 2 stores evaluation parameters and results as JSON objects.
/// Version 1 stored them as JSON text inside JSON strings; both are read.
pub const DUMP_VERSION: u32 = 2;

/// The dump versions `results import` reads.
pub const DUMP_VERSIONS: std::ops::RangeInclusive<u32> = 1..=DUMP_VERSION;

/// A dumped evaluation: one row of the `evals` table, its JSON columns as objects.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalDump {
    pub job_id: String,
    pub eval_index: i64,
    pub step: i64,
    pub kind: String,
    /// The parameters it ran with (JSON text in a version-1 dump).
    #[serde(deserialize_with = "object_or_text")]
    pub params: Value,
    /// The result (docs/results-schema.md; JSON text in a version-1 dump).
    #[serde(deserialize_with = "object_or_text")]
    pub result: Value,
    /// Training tokens of the checkpoint (absent in older dumps and for format-1 events).
    #[serde(default)]
    pub tokens: Option<i64>,
}

/// An `evals` row as stored (JSON columns as text).
#[derive(sqlx::FromRow)]
struct EvalText {
    job_id: String,
    eval_index: i64,
    step: i64,
    kind: String,
    params: String,
    result: String,
    tokens: Option<i64>,
}

/// A JSON value, or a string holding one (how a version-1 dump stored JSON columns); the
/// text is parsed with serde_json's nesting limit.
fn object_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => serde_json::from_str(&s).map_err(|e| serde::de::Error::custom(format!("a JSON column holds no JSON: {e}"))),
        v => Ok(v),
    }
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
    /// Jobs as the protocol's job rows (dumps before it carry fewer fields: those read as
    /// defaults; `sweep_jobs` is what places a job in a sweep).
    pub jobs: Vec<JobRecord>,
    pub sweep_jobs: Vec<SweepJobDump>,
    pub attempts: Vec<AttemptRow>,
    /// (job, key, step, value)
    pub metrics: Vec<(String, String, i64, f64)>,
    pub evals: Vec<EvalDump>,
    /// (job, kind, path, step)
    pub artifacts: Vec<(String, String, String, Option<i64>)>,
    /// The adaptive searches' steps (dumps before them have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search_steps: Vec<SearchStep>,
}

impl Dump {
    /// Rounds every float of the evaluation results and the metric values to `digits`
    /// significant digits (1-17); integers, parameters and everything else stay as they are.
    pub fn round_floats(&mut self, digits: u8) {
        for m in &mut self.metrics {
            m.3 = round_significant(m.3, digits);
        }
        for e in &mut self.evals {
            round_value(&mut e.result, digits);
        }
    }
}

/// `x` rounded to `digits` significant digits (non-finite values unchanged).
fn round_significant(x: f64, digits: u8) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    format!("{x:.*e}", usize::from(digits.clamp(1, 17)) - 1).parse().unwrap_or(x)
}

fn round_value(v: &mut Value, digits: u8) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(r) = n.as_f64().and_then(|x| serde_json::Number::from_f64(round_significant(x, digits))) {
                *n = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| round_value(i, digits)),
        Value::Object(o) => o.values_mut().for_each(|i| round_value(i, digits)),
        _ => {}
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    pub sweeps: usize,
    pub jobs: usize,
    pub metrics: usize,
    pub evals: usize,
}

/// A dumped evaluation as the report reads it.
fn eval_record(e: &EvalDump) -> anyhow::Result<EvalRecord> {
    let result = EvalResult::from_value(&e.result).with_context(|| format!("evaluation {} of job {}", e.eval_index, e.job_id))?;
    Ok(EvalRecord { job_id: e.job_id.clone(), eval_index: e.eval_index, step: e.step, tokens: e.tokens, result })
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
        let q_jobs = format!(
            "SELECT {JOB_COLUMNS} FROM jobs j JOIN sweep_jobs sj ON sj.rowid = (SELECT MIN(rowid) FROM sweep_jobs WHERE job_id = j.id)
             WHERE j.id IN ({in_jobs}) ORDER BY j.id"
        );
        let q_attempts = format!("SELECT * FROM attempts WHERE job_id IN ({in_jobs}) ORDER BY job_id, number");
        let q_metrics = format!("SELECT job_id, key, step, value FROM metrics WHERE job_id IN ({in_jobs}) ORDER BY job_id, key, step");
        let q_evals = format!(
            "SELECT job_id, eval_index, step, kind, params, result, tokens FROM evals WHERE job_id IN ({in_jobs}) ORDER BY job_id, eval_index, step"
        );
        let q_artifacts = format!("SELECT job_id, kind, path, step FROM artifacts WHERE job_id IN ({in_jobs}) ORDER BY job_id, kind, path");
        let sweeps = bind_all!(sqlx::query_as::<_, SweepRow>(&q_sweeps)).fetch_all(&self.pool).await?;
        let sj_rows: Vec<(String, String, String, String, i64)> = bind_all!(sqlx::query_as(&q_sj)).fetch_all(&self.pool).await?;
        let jobs = bind_all!(sqlx::query(&q_jobs)).try_map(job_from_row).fetch_all(&self.pool).await?;
        let attempts = bind_all!(sqlx::query_as::<_, AttemptRow>(&q_attempts)).fetch_all(&self.pool).await?;
        let metrics = bind_all!(sqlx::query_as(&q_metrics)).fetch_all(&self.pool).await?;
        let mut evals = Vec::new();
        for e in bind_all!(sqlx::query_as::<_, EvalText>(&q_evals)).fetch_all(&self.pool).await? {
            let json = |what: &str, text: &str| -> anyhow::Result<Value> {
                serde_json::from_str(text)
                    .with_context(|| format!("the stored {what} of evaluation {} of job {} (step {})", e.eval_index, e.job_id, e.step))
            };
            let (params, result) = (json("parameters", &e.params)?, json("result", &e.result)?);
            evals.push(EvalDump {
                params,
                result,
                job_id: e.job_id,
                eval_index: e.eval_index,
                step: e.step,
                kind: e.kind,
                tokens: e.tokens,
            });
        }
        let artifacts = bind_all!(sqlx::query_as(&q_artifacts)).fetch_all(&self.pool).await?;
        let mut search_steps = Vec::new();
        for s in &sweeps {
            search_steps.extend(self.search_steps(&s.name).await?);
        }
        Ok(Dump {
            format: DUMP_FORMAT.into(),
            version: DUMP_VERSION,
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
            search_steps,
        })
    }

    /// Loads a dump; rows already present are replaced by the dump's (importing twice is a no-op).
    pub async fn import(&self, d: &Dump) -> anyhow::Result<ImportSummary> {
        if d.format != DUMP_FORMAT {
            anyhow::bail!("not a stuffed results export (format '{}', expected '{DUMP_FORMAT}')", d.format);
        }
        if !DUMP_VERSIONS.contains(&d.version) {
            anyhow::bail!("results export version {} is not supported (expected 1 to {DUMP_VERSION})", d.version);
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
                   step, total_steps, last_loss, tokens_per_s, peak_mem_gb, created_at, updated_at, finished_at, stopped_early)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&j.id).bind(j.config.to_string()).bind(j.state_size).bind(j.n_params).bind(j.train_len).bind(&j.run_dir).bind(j.status.as_str())
            .bind(j.attempts).bind(&j.error).bind(&j.error_class).bind(j.step).bind(j.total_steps).bind(j.last_loss).bind(j.tokens_per_s)
            .bind(j.peak_mem_gb).bind(&j.created_at).bind(&j.created_at).bind(&j.finished_at).bind(j.stopped_early)
            .execute(&mut *tx).await?;
        }
        for sj in &d.sweep_jobs {
            sqlx::query("INSERT OR REPLACE INTO sweep_jobs (sweep, job_id, label, varied, position) VALUES (?, ?, ?, ?, ?)")
                .bind(&sj.sweep)
                .bind(&sj.job_id)
                .bind(&sj.label)
                .bind(sj.varied.to_string())
                .bind(sj.position)
                .execute(&mut *tx)
                .await?;
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
                .bind(job)
                .bind(key)
                .bind(step)
                .bind(value)
                .execute(&mut *tx)
                .await?;
        }
        for e in &d.evals {
            sqlx::query(
                "INSERT OR REPLACE INTO evals (job_id, eval_index, step, kind, params, result, seq, tokens) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
            )
            .bind(&e.job_id)
            .bind(e.eval_index)
            .bind(e.step)
            .bind(&e.kind)
            .bind(e.params.to_string())
            .bind(e.result.to_string())
            .bind(e.tokens)
            .execute(&mut *tx)
            .await?;
        }
        for (job, kind, path, step) in &d.artifacts {
            sqlx::query("INSERT OR REPLACE INTO artifacts (job_id, kind, path, step, created_at) VALUES (?, ?, ?, ?, '')")
                .bind(job)
                .bind(kind)
                .bind(path)
                .bind(step)
                .execute(&mut *tx)
                .await?;
        }
        let cells: std::collections::BTreeSet<(&str, &str)> = d.search_steps.iter().map(|s| (s.sweep.as_str(), s.cell.as_str())).collect();
        for (sweep, cell) in cells {
            sqlx::query("DELETE FROM search_steps WHERE sweep = ? AND cell = ?").bind(sweep).bind(cell).execute(&mut *tx).await?;
        }
        for s in &d.search_steps {
            super::search::insert_step(&mut tx, s).await?;
        }
        tx.commit().await?;
        Ok(ImportSummary { sweeps: d.sweeps.len(), jobs: d.jobs.len(), metrics: d.metrics.len(), evals: d.evals.len() })
    }

    /// The report's input for the given sweeps (all when empty). Each job's config gets the
    /// resolved model sizes filled in, so figures can label models by d_state, d_model, ...
    pub async fn report_data(&self, sweeps: &[String]) -> anyhow::Result<ReportData> {
        let d = self.dump(sweeps).await?;
        // Final evaluations (each at the last step it ran at) for the figures of finished jobs;
        // every step of the evaluations that ran at two steps or more for those during training.
        let mut last: BTreeMap<(&str, i64), (i64, usize)> = BTreeMap::new();
        for e in &d.evals {
            let l = last.entry((e.job_id.as_str(), e.eval_index)).or_insert((e.step, 0));
            *l = (l.0.max(e.step), l.1 + 1);
        }
        let at = |e: &EvalDump| last.get(&(e.job_id.as_str(), e.eval_index)).copied().unwrap_or_default();
        let final_evals: Vec<&EvalDump> = d.evals.iter().filter(|e| at(e).0 == e.step).collect();
        let history: Vec<&EvalDump> = d.evals.iter().filter(|e| at(e).1 >= 2).collect();
        let jobs_by_id: BTreeMap<&str, &JobRecord> = d.jobs.iter().map(|j| (j.id.as_str(), j)).collect();
        let mut counts: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
        let mut jobs = Vec::new();
        for sj in &d.sweep_jobs {
            let Some(j) = jobs_by_id.get(sj.job_id.as_str()) else { continue };
            *counts.entry(sj.sweep.as_str()).or_default().entry(j.status.to_string()).or_insert(0) += 1;
            let varied = match &sj.varied {
                Value::Object(m) => m.clone(),
                _ => Default::default(),
            };
            jobs.push(JobRecord { sweep: sj.sweep.clone(), label: sj.label.clone(), varied, position: sj.position, ..(*j).clone() });
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
            evals: final_evals.into_iter().map(eval_record).collect::<anyhow::Result<_>>()?,
            eval_history: history.into_iter().map(eval_record).collect::<anyhow::Result<_>>()?,
            metrics: d
                .metrics
                .iter()
                .map(|(job_id, key, step, value)| MetricRecord { job_id: job_id.clone(), step: *step, key: key.clone(), value: *value })
                .collect(),
            search_steps: d.search_steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_to_significant_digits_and_integers_stay() {
        assert_eq!(round_significant(2.512005571566988, 6), 2.51201);
        assert_eq!(round_significant(0.00016269528714474, 3), 0.000163);
        assert_eq!(round_significant(-1234.5678, 2), -1200.0);
        assert_eq!(round_significant(0.0, 4), 0.0);
        assert!(round_significant(f64::NAN, 4).is_nan());
        let mut v = serde_json::json!({"loss": 1.23456789, "n": 8, "buckets": [{"start": 0, "loss": [0.987654321]}]});
        round_value(&mut v, 4);
        assert_eq!(v, serde_json::json!({"loss": 1.235, "n": 8, "buckets": [{"start": 0, "loss": [0.9877]}]}));
    }
}
