//! The JSON API behind the pages: sweeps with progress and ETA, a sweep's job table (filtered by
//! job columns and config keys, sorted), one job in full, a job's metric series. The response
//! shapes are documented in `README-section.md`.
use std::cmp::Ordering;
use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult, Param, QueryPairs};
use super::progress::{job_fraction, now_unix, sweep_progress, unix_seconds, JobClock};
use super::{files, seg, AppState};
use stuffed_model::protocol::EvalResult;

use crate::store::{AttemptRow, Cond, Db, JobRow, SweepRow};

/// Lines of the latest attempt's log shown with a job.
const LOG_TAIL_LINES: usize = 40;

pub async fn index(State(st): State<AppState>) -> Json<Value> {
    Json(json!({
        "db": st.opts.db_label,
        "read_only": true,
        "endpoints": [
            "GET /api/sweeps",
            "GET /api/sweeps/{name}",
            "GET /api/sweeps/{name}/jobs?where=KEY OP VALUE&status=S&sort=KEY&order=asc|desc",
            "GET /api/sweeps/{name}/report",
            "GET /api/jobs/{id}",
            "GET /api/jobs/{id}/metrics?key=loss&after=STEP",
            "GET /api/jobs/{id}/log?attempt=N&lines=N",
            "GET /charts/sweeps/{name}/metrics.svg?key=loss",
            "GET /charts/jobs/{id}/metrics.svg?key=loss",
            "GET /charts/jobs/{id}/evals/{index}",
            "GET /charts/jobs/{id}/during.svg",
            "GET /files/jobs/{id}/attempts/{number}/log",
            "GET /files/jobs/{id}/artifacts/{index}[/{name}]"
        ]
    }))
}

/// A sweep by exact name, or 404.
pub(crate) async fn find_sweep(db: &Db, name: &str) -> ApiResult<SweepRow> {
    db.sweep(name).await?.ok_or_else(|| ApiError::not_found(format!("no sweep named '{name}'")))
}

/// A job by id or unique id prefix: 404 when none matches, 409 when several do.
pub(crate) async fn find_job(db: &Db, id: &str) -> ApiResult<JobRow> {
    let ids = if id.is_empty() || id.len() > 200 { Vec::new() } else { db.job_ids_with_prefix(id, 2).await? };
    match ids.as_slice() {
        [] => Err(ApiError::not_found(format!("no job with id '{id}'"))),
        [one] => Ok(db.job(one).await?),
        _ => Err(ApiError::new(StatusCode::CONFLICT, format!("'{id}' matches several jobs: give more of the id"))),
    }
}

/// A sweep with every job and the latest attempt of each.
struct SweepState {
    row: SweepRow,
    jobs: Vec<JobRow>,
    latest: HashMap<String, AttemptRow>,
}

async fn load_sweep(db: &Db, name: &str) -> ApiResult<SweepState> {
    let row = find_sweep(db, name).await?;
    let jobs = db.sweep_jobs(name).await?;
    let latest = db.latest_attempts(name).await?.into_iter().map(|a| (a.job_id.clone(), a)).collect();
    Ok(SweepState { row, jobs, latest })
}

fn total_steps(j: &JobRow) -> Option<i64> {
    j.total_steps.or_else(|| j.config["train"]["steps"].as_i64())
}

fn sweep_json(s: &SweepState) -> Value {
    let mut counts: Map<String, Value> = Map::new();
    for j in &s.jobs {
        let c = counts.entry(j.status.to_string()).or_insert(json!(0));
        *c = json!(c.as_i64().unwrap_or(0) + 1);
    }
    let clocks: Vec<JobClock> = s
        .jobs
        .iter()
        .map(|j| {
            let a = s.latest.get(&j.id);
            JobClock {
                status: j.status.to_string(),
                fraction: job_fraction(j.status.as_str(), j.step, total_steps(j)),
                started: a.and_then(|a| unix_seconds(&a.started_at)),
                ended: a.and_then(|a| a.ended_at.as_deref().and_then(unix_seconds)),
            }
        })
        .collect();
    let p = sweep_progress(&clocks, s.row.cancelled_at.is_some(), now_unix());
    let version: i64 = s.jobs.iter().map(|j| j.last_seq + j.attempts).sum();
    json!({
        "name": s.row.name,
        "description": s.row.description,
        "backend": s.row.backend,
        "created_at": s.row.created_at,
        "updated_at": s.row.updated_at,
        "cancelled": s.row.cancelled_at.is_some(),
        "total": s.jobs.len(),
        "counts": counts,
        "done": p.done,
        "fraction": p.fraction,
        "state": p.state,
        "eta_s": p.eta_s,
        "version": format!("{}-{version}-{}", s.jobs.len(), p.done),
        "url": format!("/sweeps/{}", seg(&s.row.name)),
    })
}

/// One row of a sweep's job table.
fn job_json(j: &JobRow, a: Option<&AttemptRow>) -> Value {
    let total = total_steps(j);
    json!({
        "id": j.id,
        "label": j.label,
        "varied": j.varied,
        "status": j.status,
        "step": j.step,
        "total_steps": total,
        "progress": job_fraction(j.status.as_str(), j.step, total),
        "last_loss": j.last_loss,
        "tokens_per_s": j.tokens_per_s,
        "peak_mem_gb": j.peak_mem_gb,
        "gpu": a.and_then(|a| a.gpu.clone()),
        "gpu_name": a.and_then(|a| a.gpu_name.clone()),
        "host": a.and_then(|a| a.host.clone()),
        "device": j.config["train"]["device"],
        "attempts": j.attempts,
        "state_size": j.state_size,
        "n_params": j.n_params,
        "train_len": j.train_len,
        "error": j.error,
        "error_class": j.error_class,
        "stopped_early": j.stopped_early,
        "started_at": a.map(|a| a.started_at.clone()),
        "finished_at": j.finished_at,
        "updated_at": j.updated_at,
        "version": j.last_seq + j.attempts,
        "url": format!("/jobs/{}", seg(&j.id)),
    })
}

pub async fn sweeps(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let mut out = Vec::new();
    for name in st.db.sweep_names().await? {
        out.push(sweep_json(&load_sweep(&st.db, &name).await?));
    }
    Ok(Json(json!({"db": st.opts.db_label, "sweeps": out})))
}

pub async fn sweep(State(st): State<AppState>, Param(name): Param<String>) -> ApiResult<Json<Value>> {
    let s = load_sweep(&st.db, &name).await?;
    Ok(Json(json!({"sweep": sweep_json(&s), "spec": s.row.spec, "source_path": s.row.source_path})))
}

/// Varied keys of a sweep's jobs, in order of first appearance.
fn varied_keys(jobs: &[JobRow]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for j in jobs {
        for k in j.varied.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    keys
}

/// The filters of a job-table request: every `where` (one KEY OP VALUE each) and `status`.
fn conditions(q: &QueryPairs) -> ApiResult<Vec<Cond>> {
    let mut conds = Vec::new();
    for w in q.all("where") {
        conds.push(w.parse::<Cond>().map_err(ApiError::bad_request)?);
    }
    if let Some(s) = q.get("status").filter(|s| !s.is_empty()) {
        conds.push(Cond::eq("status", s));
    }
    Ok(conds)
}

/// Orders JSON values: numbers numerically, then strings and booleans as text; nulls last.
fn cmp_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::Number(x), Value::Number(y)) => x.as_f64().unwrap_or(f64::NAN).total_cmp(&y.as_f64().unwrap_or(f64::NAN)),
        (Value::Number(_), _) => Ordering::Less,
        (_, Value::Number(_)) => Ordering::Greater,
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Sorts rows by a row field or a varied key (`model.d_state`); nulls stay last either way.
pub(crate) fn sort_rows(rows: &mut [Value], key: &str, desc: bool) {
    let get = |r: &Value| -> Value {
        match r.get(key) {
            Some(v) if key != "varied" => v.clone(),
            _ => r["varied"].get(key).cloned().unwrap_or(Value::Null),
        }
    };
    rows.sort_by(|a, b| {
        let (x, y) = (get(a), get(b));
        match (x.is_null(), y.is_null(), desc) {
            (false, false, true) => cmp_values(&y, &x),
            _ => cmp_values(&x, &y),
        }
    });
}

pub async fn sweep_jobs(State(st): State<AppState>, Param(name): Param<String>, q: QueryPairs) -> ApiResult<Json<Value>> {
    let s = load_sweep(&st.db, &name).await?;
    let conds = conditions(&q)?;
    let jobs = if conds.is_empty() {
        s.jobs.clone()
    } else {
        let mut c = conds.clone();
        c.push(Cond::eq("sweep", &name));
        st.db.jobs(&c).await?
    };
    let mut rows: Vec<Value> = jobs.iter().map(|j| job_json(j, s.latest.get(&j.id))).collect();
    let desc = match q.get("order").unwrap_or("asc") {
        "asc" | "" => false,
        "desc" => true,
        other => return Err(ApiError::bad_request(format!("order: expected asc or desc, got '{other}'"))),
    };
    if let Some(key) = q.get("sort").filter(|k| !k.is_empty()) {
        sort_rows(&mut rows, key, desc);
    }
    let filters: Vec<Value> =
        conds.iter().map(|c| json!({"key": c.key, "op": format!("{:?}", c.op).to_lowercase(), "value": c.value})).collect();
    Ok(Json(json!({
        "sweep": sweep_json(&s),
        "varied_keys": varied_keys(&s.jobs),
        "filters": filters,
        "jobs": rows,
    })))
}

pub async fn job(State(st): State<AppState>, Param(id): Param<String>) -> ApiResult<Json<Value>> {
    let db = &st.db;
    let j = find_job(db, &id).await?;
    let attempts = db.attempts(&j.id).await?;
    let jid = seg(&j.id);
    let attempts_json: Vec<Value> = attempts
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
            v["log_url"] = a.log_path.as_ref().map_or(Value::Null, |_| json!(format!("/files/jobs/{jid}/attempts/{}/log", a.number)));
            v
        })
        .collect();
    let mut latest = Map::new();
    for (key, step, value) in db.latest_metrics(&j.id).await? {
        latest.insert(key, json!({"step": step, "value": value}));
    }
    let evals: Vec<Value> = db
        .evals(&j.id)
        .await?
        .into_iter()
        .map(|e| {
            let summary: Map<String, Value> = e.result.headline().into_iter().collect();
            let chart = matches!(e.result, EvalResult::Loss(_) | EvalResult::Passkey(_))
                .then(|| format!("/charts/jobs/{jid}/evals/{}", e.eval_index));
            json!({"index": e.eval_index, "step": e.step, "kind": e.result.kind(), "params": e.result.params_json(),
                   "summary": summary, "chart": chart, "result": e.result})
        })
        .collect();
    let artifacts: Vec<Value> = db
        .artifacts(&j.id)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, (kind, path, step))| json!({"index": i, "kind": kind, "path": path, "step": step, "url": format!("/files/jobs/{jid}/artifacts/{i}")}))
        .collect();
    let log = match attempts.last() {
        Some(a) => files::tail_json(&st.opts, a, LOG_TAIL_LINES).await,
        None => Value::Null,
    };
    let keys = db.metric_keys(&j.id).await?;
    let training = keys.iter().any(|k| k == "loss").then(|| format!("/charts/jobs/{jid}/metrics.svg?key=loss&v={}", j.last_seq));
    let during = super::charts::during_series(db, &j).await?;
    let during_chart = (!during.is_empty()).then(|| format!("/charts/jobs/{jid}/during.svg?v={}", j.last_seq));
    let during_json: Vec<Value> = during
        .iter()
        .map(|s| {
            let pts: Vec<Value> = s
                .points
                .iter()
                .map(|p| json!({"tokens": p.tokens, "ratio": p.ratio, "ratio_ci": p.ratio_ci, "verdict": p.verdict}))
                .collect();
            json!({"label": s.label, "points": pts})
        })
        .collect();
    let config = &j.config;
    Ok(Json(json!({
        "job": job_json(&j, attempts.last()),
        "sweeps": db.job_sweeps(&j.id).await?,
        "run_dir": j.run_dir,
        "config": config,
        "config_yaml": stuffed_model::yaml::to_string(config).unwrap_or_default(),
        "attempts": attempts_json,
        "latest_metrics": latest,
        "metric_keys": keys,
        "evals": evals,
        "evals_during_training": during_json,
        "artifacts": artifacts,
        "log": log,
        "charts": {"training": training, "during_training": during_chart},
    })))
}

pub async fn metrics(State(st): State<AppState>, Param(id): Param<String>, q: QueryPairs) -> ApiResult<Json<Value>> {
    let j = find_job(&st.db, &id).await?;
    let key = q.get("key").filter(|k| !k.is_empty()).unwrap_or("loss");
    let after = q.int("after", -1, i64::MIN, i64::MAX)?;
    let points: Vec<Value> = st.db.metrics_after(&j.id, key, after).await?.into_iter().map(|(s, v)| json!([s, v])).collect();
    Ok(Json(json!({"job": j.id, "key": key, "keys": st.db.metric_keys(&j.id).await?, "points": points})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_by_fields_and_varied_keys_with_nulls_last() {
        let mut rows = vec![
            json!({"id": "a", "step": 5, "varied": {"model.d_state": 16}}),
            json!({"id": "b", "step": null, "varied": {"model.d_state": 4}}),
            json!({"id": "c", "step": 12, "varied": {"model.d_state": 8}}),
        ];
        let ids = |r: &[Value]| r.iter().map(|v| v["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        sort_rows(&mut rows, "step", false);
        assert_eq!(ids(&rows), ["a", "c", "b"]);
        sort_rows(&mut rows, "step", true);
        assert_eq!(ids(&rows), ["c", "a", "b"]);
        sort_rows(&mut rows, "model.d_state", false);
        assert_eq!(ids(&rows), ["b", "c", "a"]);
    }
}
