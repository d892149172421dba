//! A sweep's report as the static report draws it (figures, fitted laws, derived tables):
//! `stuffed_reports::write_report` into a scratch directory named by a counter (never by anything
//! in the request), redrawn when the sweep has changed and the last drawing is older than
//! `REDRAW`. Only the files that `write_report` says it wrote are served, matched by their exact
//! relative path.
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use stuffed_reports::{write_report, Fit, ReportOptions};

use super::api::find_sweep;
use super::error::{ApiError, ApiResult, Param};
use super::{relative, seg, AppState};
use crate::store::Db;

/// A changed sweep's report is redrawn at most this often (drawing takes seconds).
const REDRAW: Duration = Duration::from_secs(20);

/// One drawing of a sweep's report.
struct Built {
    version: String,
    at: Instant,
    dir: PathBuf,
    /// Every file written, relative to `dir`, `/`-separated.
    files: BTreeSet<String>,
    json: Value,
}

pub struct Reports {
    dir: PathBuf,
    next: AtomicU64,
    built: Mutex<HashMap<String, Arc<Built>>>,
    /// One drawing at a time.
    drawing: tokio::sync::Mutex<()>,
}

fn fit_json(f: &Option<Fit>) -> Value {
    match f {
        Some(f) => json!({"law": f.law(), "equation": f.equation(), "fit": f.to_json()}),
        None => Value::Null,
    }
}

impl Reports {
    pub fn new(dir: PathBuf) -> Reports {
        Reports { dir, next: AtomicU64::new(0), built: Mutex::new(HashMap::new()), drawing: tokio::sync::Mutex::new(()) }
    }

    fn fresh(&self, sweep: &str, version: &str) -> Option<Arc<Built>> {
        let b = self.built.lock().ok()?.get(sweep).cloned()?;
        (b.version == version || b.at.elapsed() < REDRAW).then_some(b)
    }

    /// The current report of `sweep`, drawn now if there is none or it is stale.
    async fn get(&self, db: &Db, sweep: &str) -> ApiResult<Arc<Built>> {
        let version = db.sweep_version(sweep).await?;
        if let Some(b) = self.fresh(sweep, &version) {
            return Ok(b);
        }
        let _one = self.drawing.lock().await;
        if let Some(b) = self.fresh(sweep, &version) {
            return Ok(b);
        }
        let data = db.report_data(&[sweep.to_string()]).await?;
        let dir = self.dir.join(format!("report-{}", self.next.fetch_add(1, Ordering::Relaxed)));
        let opts = ReportOptions { log_scale: false, title: Some(format!("{sweep}: Stuffed Mamba report")) };
        let out = dir.clone();
        let summary = tokio::task::spawn_blocking(move || write_report(&data, &out, &opts))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::internal(format!("drawing the report of {sweep}: {e}")))?;
        let files: Vec<String> = summary.files.iter().filter_map(|p| relative(&dir, p)).collect();
        let base = format!("/sweeps/{}/report/files", seg(sweep));
        let url = |f: &str| format!("{base}/{}", f.split('/').map(seg).collect::<Vec<_>>().join("/"));
        let figures: Vec<Value> = files.iter().filter(|f| f.ends_with(".svg")).map(|f| json!({"file": f, "url": url(f)})).collect();
        let forget: Vec<Value> = summary
            .forget
            .iter()
            .map(|r| {
                json!({"state_size": r.state_size, "t_forget": r.t_forget, "t_forget_text": r.describe(),
                            "lengths_tried": r.lengths_tried, "collapsed_lengths": r.collapsed_lengths})
            })
            .collect();
        let json = json!({
            "sweep": sweep,
            "version": version,
            "generated_at": crate::store::now(),
            "index_url": url("index.html"),
            "figures": figures,
            "fits": {"t_forget": fit_json(&summary.forget_fit), "t_recall": fit_json(&summary.recall_fit)},
            "forget": forget,
            "recalls": summary.recalls,
            "skipped": summary.skipped.iter().map(|(what, why)| json!({"what": what, "why": why})).collect::<Vec<_>>(),
            "files": files.iter().map(|f| json!({"file": f, "url": url(f)})).collect::<Vec<_>>(),
        });
        let built = Arc::new(Built { version, at: Instant::now(), dir, files: files.into_iter().collect(), json });
        let old = self.built.lock().map_err(ApiError::internal)?.insert(sweep.to_string(), built.clone());
        if let Some(old) = old {
            let _ = std::fs::remove_dir_all(&old.dir);
        }
        Ok(built)
    }
}

pub async fn summary(State(st): State<AppState>, Param(name): Param<String>) -> ApiResult<Json<Value>> {
    let sweep = find_sweep(&st.db, &name).await?;
    let b = st.reports.get(&st.db, &sweep.name).await?;
    let mut v = b.json.clone();
    v["age_s"] = json!(b.at.elapsed().as_secs_f64());
    Ok(Json(v))
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit('.').next().unwrap_or("") {
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "html" => "text/html; charset=utf-8",
        "json" => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

/// A file of the sweep's current report, by its exact relative path.
pub async fn file(State(st): State<AppState>, Param((name, path)): Param<(String, String)>) -> ApiResult<Response> {
    let sweep = find_sweep(&st.db, &name).await?;
    let b = st.reports.get(&st.db, &sweep.name).await?;
    if !b.files.contains(&path) {
        return Err(ApiError::not_found(format!("the report of {} has no file '{path}'", sweep.name)));
    }
    let full = b.dir.join(&path);
    let bytes =
        tokio::fs::read(&full).await.map_err(|e| ApiError::not_found(format!("{path}: {e} (the report was just redrawn: reload)")))?;
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&path)));
    Ok(r)
}
