//! Server-side SVG charts, drawn by the reports crate so that the dashboard looks like the static
//! report: training-loss curves of a job or of a whole sweep, loss by position of a `loss`
//! evaluation, the heat map of a `passkey` evaluation, the collapse ratio of a job evaluated
//! during training against its training tokens. The reports crate writes files (SVG and
//! PNG to a path stem), so each chart is drawn in the scratch directory on a blocking thread,
//! read back, deleted, and kept in memory under a key that changes with the data.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use stuffed_model::protocol::EvalResult;
use stuffed_reports::figures::{self, Curve, PasskeyGrid};
use stuffed_reports::verdict::eval_verdict;
use stuffed_reports::EvalRecord;

use crate::store::JobRow;

use super::api::{find_job, find_sweep};
use super::error::{ApiError, ApiResult, Param, QueryPairs};
use super::AppState;

/// Charts kept in memory before the cache starts over.
const CACHE_ENTRIES: usize = 256;
/// Points per curve drawn (longer series are thinned evenly; the JSON API has them all).
const MAX_POINTS: usize = 2000;
/// Metrics the training chart draws (its y axis is a loss in nats).
const CHART_KEYS: [&str; 2] = ["loss", "val_loss"];

type Draw = Box<dyn FnOnce(&Path) -> Result<Vec<PathBuf>, stuffed_reports::Error> + Send>;

pub struct Charts {
    dir: PathBuf,
    next: AtomicU64,
    cache: Mutex<HashMap<String, Arc<String>>>,
}

impl Charts {
    pub fn new(dir: PathBuf) -> Charts {
        Charts { dir, next: AtomicU64::new(0), cache: Mutex::new(HashMap::new()) }
    }

    fn cached(&self, key: &str) -> Option<Arc<String>> {
        self.cache.lock().ok()?.get(key).cloned()
    }

    /// The SVG under `key`, drawn by `draw` (given a fresh path stem) when not cached.
    async fn get(&self, key: String, draw: Draw) -> ApiResult<Arc<String>> {
        if let Some(svg) = self.cached(&key) {
            return Ok(svg);
        }
        std::fs::create_dir_all(&self.dir).map_err(ApiError::internal)?;
        let stem = self.dir.join(format!("chart-{}", self.next.fetch_add(1, Ordering::Relaxed)));
        let svg = tokio::task::spawn_blocking(move || -> Result<String, ApiError> {
            let files = draw(&stem).map_err(|e| ApiError::internal(format!("drawing the chart: {e}")))?;
            let svg = files.iter().find(|p| p.extension().is_some_and(|e| e == "svg")).map(std::fs::read_to_string);
            for f in &files {
                let _ = std::fs::remove_file(f);
            }
            match svg {
                Some(Ok(s)) => Ok(s),
                Some(Err(e)) => Err(ApiError::internal(e)),
                None => Err(ApiError::internal("the chart wrote no SVG")),
            }
        })
        .await
        .map_err(ApiError::internal)??;
        let svg = Arc::new(svg);
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHE_ENTRIES {
                c.clear();
            }
            c.insert(key, svg.clone());
        }
        Ok(svg)
    }
}

fn svg_response(svg: Arc<String>) -> Response {
    let mut r = (StatusCode::OK, svg.as_str().to_owned()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// At most `max` points, evenly spaced through the series, the last one kept.
fn thin(points: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 2 {
        return points;
    }
    let stride = points.len().div_ceil(max - 1);
    let last = points[points.len() - 1];
    let mut out: Vec<(f64, f64)> = points.into_iter().step_by(stride).collect();
    if out.last() != Some(&last) {
        out.push(last);
    }
    out
}

fn series(rows: Vec<(i64, f64)>) -> Vec<(f64, f64)> {
    thin(rows.into_iter().filter(|r| r.1.is_finite()).map(|(s, v)| (s as f64, v)).collect(), MAX_POINTS)
}

fn chart_key(q: &QueryPairs) -> ApiResult<&str> {
    let key = q.get("key").filter(|k| !k.is_empty()).unwrap_or("loss");
    if CHART_KEYS.contains(&key) {
        Ok(key)
    } else {
        Err(ApiError::bad_request(format!(
            "charts draw {}; other metrics are JSON at /api/jobs/{{id}}/metrics?key={key}",
            CHART_KEYS.join(" and ")
        )))
    }
}

/// A job's training loss (and validation loss with `key=loss`) by optimizer step.
pub async fn job_metrics(State(st): State<AppState>, Param(id): Param<String>, q: QueryPairs) -> ApiResult<Response> {
    let j = find_job(&st.db, &id).await?;
    let key = chart_key(&q)?;
    let mut curves = Vec::new();
    let keys: &[&str] = if key == "loss" { &["loss", "val_loss"] } else { &["val_loss"] };
    for k in keys {
        let points = series(st.db.metrics(&j.id, k).await?);
        if !points.is_empty() {
            let label = if *k == "loss" { "training loss" } else { "validation loss" };
            curves.push(Curve::new(label, points));
        }
    }
    if curves.is_empty() {
        return Err(ApiError::not_found(format!("job {} has no '{key}' metric yet", j.id)));
    }
    let title = format!("{}: {key}", if j.label.is_empty() { &j.id } else { &j.label });
    let cache = format!("job:{}:{key}:{}", j.id, j.last_seq);
    let svg = st.charts.get(cache, Box::new(move |stem| figures::training_curves(&curves, &title, stem))).await?;
    Ok(svg_response(svg))
}

/// Every job of a sweep on one training-loss chart.
pub async fn sweep_metrics(State(st): State<AppState>, Param(name): Param<String>, q: QueryPairs) -> ApiResult<Response> {
    let sweep = find_sweep(&st.db, &name).await?;
    let key = chart_key(&q)?;
    let labels: HashMap<String, String> =
        st.db.sweep_jobs(&sweep.name).await?.into_iter().map(|j| (j.id.clone(), if j.label.is_empty() { j.id } else { j.label })).collect();
    let mut by_job: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (job, step, value) in st.db.sweep_metrics(&sweep.name, key).await? {
        if !by_job.contains_key(&job) {
            order.push(job.clone());
        }
        by_job.entry(job).or_default().push((step, value));
    }
    let curves: Vec<Curve> = order
        .iter()
        .filter_map(|id| {
            let points = series(by_job.remove(id)?);
            (!points.is_empty()).then(|| Curve::new(labels.get(id).cloned().unwrap_or_else(|| id.clone()), points))
        })
        .collect();
    if curves.is_empty() {
        return Err(ApiError::not_found(format!("sweep {} has no '{key}' metric yet", sweep.name)));
    }
    let title = format!("{}: {key}", sweep.name);
    let cache = format!("sweep:{}:{key}:{}", sweep.name, st.db.sweep_version(&sweep.name).await?);
    let svg = st.charts.get(cache, Box::new(move |stem| figures::training_curves(&curves, &title, stem))).await?;
    Ok(svg_response(svg))
}

/// Loss by position of a `loss` evaluation, or the heat map of a `passkey` evaluation.
pub async fn job_eval(State(st): State<AppState>, Param((id, index)): Param<(String, i64)>) -> ApiResult<Response> {
    let j = find_job(&st.db, &id).await?;
    let e = st
        .db
        .evals(&j.id)
        .await?
        .into_iter()
        .find(|e| e.eval_index == index)
        .ok_or_else(|| ApiError::not_found(format!("job {} has no evaluation {index}", j.id)))?;
    let name = if j.label.is_empty() { j.id.clone() } else { j.label.clone() };
    let cache = format!("eval:{}:{index}:{}", j.id, j.last_seq);
    let draw: Draw = match &e.result {
        EvalResult::Loss(r) => {
            let (points, weights) = r.midpoints_and_widths();
            if points.is_empty() {
                return Err(ApiError::not_found(format!("evaluation {index} has no loss buckets")));
            }
            let mark = r.collapse.as_ref().map(|c| c.train_len).or(Some(j.train_len)).map(|t| t as f64);
            let curve = Curve { label: name.clone(), points, mark_x: mark, weights };
            let title = format!("loss by position: {name}");
            Box::new(move |stem| figures::loss_vs_position(&[curve], &title, stem))
        }
        EvalResult::Passkey(r) => {
            let grid = PasskeyGrid::from_result(r);
            if grid.is_empty() {
                return Err(ApiError::not_found(format!("evaluation {index} has no passkey cells")));
            }
            let title = format!("passkey accuracy: {name}");
            Box::new(move |stem| figures::passkey_heatmap(&grid, &title, stem))
        }
        EvalResult::States(_) => {
            return Err(ApiError::not_found("no chart for 'states' evaluations (the JSON is at /api/jobs/{id})".to_string()))
        }
    };
    Ok(svg_response(st.charts.get(cache, draw).await?))
}

/// The points of a job's loss evaluations that ran at two steps or more (`evals_at`), one
/// series per evaluation; empty when there are none.
pub async fn during_series(db: &crate::store::Db, job: &JobRow) -> anyhow::Result<Vec<figures::RatioSeries>> {
    let mut by_index: BTreeMap<i64, Vec<figures::RatioPoint>> = BTreeMap::new();
    for e in db.eval_history(&job.id).await? {
        let record = EvalRecord { job_id: e.job_id, eval_index: e.eval_index, step: e.step, tokens: e.tokens, result: e.result };
        let (Some(v), Some(tokens)) = (eval_verdict(&record, Some(job)), record.tokens) else { continue };
        let Some(ratio) = v.ratio.filter(|r| r.is_finite()) else { continue };
        by_index.entry(e.eval_index).or_default().push(figures::RatioPoint {
            tokens: tokens as f64,
            ratio,
            ratio_ci: v.ratio_ci,
            verdict: Some(v.verdict),
        });
    }
    let name = if job.label.is_empty() { job.id.clone() } else { job.label.clone() };
    Ok(by_index
        .into_iter()
        .filter(|(_, pts)| pts.len() >= 2)
        .map(|(i, points)| figures::RatioSeries { label: format!("{name} #{i}"), points })
        .collect())
}

/// The collapse ratio of a job's loss evaluations during training against training tokens.
pub async fn job_during(State(st): State<AppState>, Param(id): Param<String>) -> ApiResult<Response> {
    let j = find_job(&st.db, &id).await?;
    let series = during_series(&st.db, &j).await?;
    if series.is_empty() {
        return Err(ApiError::not_found(format!("job {} has no loss evaluation at two steps or more", j.id)));
    }
    let title = format!("collapse ratio during training: {}", if j.label.is_empty() { &j.id } else { &j.label });
    let cache = format!("during:{}:{}", j.id, j.last_seq);
    let svg = st.charts.get(cache, Box::new(move |stem| figures::ratio_vs_tokens(&series, &title, stem))).await?;
    Ok(svg_response(svg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_ends_and_bounds_length() {
        let pts: Vec<(f64, f64)> = (0..10_001).map(|i| (i as f64, 1.0)).collect();
        let t = thin(pts, 2000);
        assert!(t.len() <= 2001, "{}", t.len());
        assert_eq!(t.first(), Some(&(0.0, 1.0)));
        assert_eq!(t.last(), Some(&(10_000.0, 1.0)));
        assert_eq!(thin(vec![(0.0, 1.0), (1.0, 2.0)], 2000).len(), 2);
    }
}
