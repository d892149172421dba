//! File routes, limited to what the database records: the log of an attempt
//! (`attempts.log_path`) and a job's artifacts (`artifacts` rows, addressed by their index in the
//! job's list, never by a path taken from the request). An artifact that is a directory (a
//! checkpoint) is listed, and each regular file directly in it is served by its exact name as
//! the listing gives it. Only files that resolve inside the runs directory are served
//! (`super::resolve`): a recorded path is provenance, never an order; every file that cannot be
//! served, whatever the reason, gets the same 404 (`NO_FILE`), so the answer says nothing
//! about what exists outside. Large files are refused, not streamed.
use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::api::find_job;
use super::error::{ApiError, ApiResult, Param, QueryPairs};
use super::{resolve, seg, AppState, Options};
use crate::store::AttemptRow;

/// Largest file served whole (artifacts); larger ones are named, not sent.
const MAX_FILE: u64 = 64 << 20;
/// How much of a log's end is read for a tail (and served as the "full" log at most).
const TAIL_BYTES: u64 = 256 << 10;
const LOG_BYTES: u64 = 16 << 20;
/// The one answer for a file that is not served: missing, outside the runs directory,
/// recorded on another machine, not a regular file.
pub(crate) const NO_FILE: &str = "no such file in the runs directory";

fn no_file() -> ApiError {
    ApiError::not_found(NO_FILE)
}

/// The last `max` bytes of a regular file (never through a symlink), and whether it was cut.
fn read_end(path: &Path, max: u64) -> std::io::Result<(Vec<u8>, bool)> {
    use std::io::{Read, Seek, SeekFrom};
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let cut = len > max;
    if cut {
        f.seek(SeekFrom::Start(len - max))?;
    }
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok((buf, cut))
}

async fn read_end_async(path: PathBuf, max: u64) -> std::io::Result<(Vec<u8>, bool)> {
    tokio::task::spawn_blocking(move || read_end(&path, max)).await.map_err(std::io::Error::other)?
}

/// The last `lines` lines of an attempt's log as JSON: `{attempt, path, lines, truncated}`
/// (with `error` instead of `lines` when the log cannot be read).
pub(crate) async fn tail_json(opts: &Options, a: &AttemptRow, lines: usize) -> Value {
    let Some(path) = a.log_path.clone() else {
        return json!({"attempt": a.number, "path": null, "lines": [], "truncated": false});
    };
    let read = match resolve(opts, &path) {
        Some(p) => read_end_async(p, TAIL_BYTES).await.map_err(|_| ()),
        None => Err(()),
    };
    match read {
        Ok((bytes, cut)) => {
            let text = String::from_utf8_lossy(&bytes);
            let mut all: Vec<&str> = text.lines().collect();
            if cut && !all.is_empty() {
                all.remove(0); // a partial first line
            }
            let skip = all.len().saturating_sub(lines);
            json!({"attempt": a.number, "path": path, "lines": &all[skip..], "truncated": cut || skip > 0})
        }
        Err(()) => json!({"attempt": a.number, "path": path, "lines": [], "truncated": false, "error": NO_FILE}),
    }
}

pub async fn log_tail(State(st): State<AppState>, Param(id): Param<String>, q: QueryPairs) -> ApiResult<Json<Value>> {
    let j = find_job(&st.db, &id).await?;
    let attempts = st.db.attempts(&j.id).await?;
    let a = match q.get("attempt") {
        None | Some("") => attempts.last(),
        Some(_) => {
            let n = q.int("attempt", 0, 1, i64::MAX)?;
            attempts.iter().find(|a| a.number == n)
        }
    };
    let a = a.ok_or_else(|| ApiError::not_found(format!("job {} has no such attempt", j.id)))?;
    let lines = q.int("lines", 200, 1, 5000)? as usize;
    Ok(Json(json!({"job": j.id, "log": tail_json(&st.opts, a, lines).await})))
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "json" => "application/json",
        "txt" | "log" | "out" | "err" | "yaml" | "yml" | "jsonl" | "md" | "csv" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A file's bytes with its type; binary types download as attachments.
fn file_response(name: &str, bytes: Vec<u8>) -> Response {
    let ctype = content_type(name);
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if ctype == "application/octet-stream" {
        let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    r
}

pub async fn log_file(State(st): State<AppState>, Param((id, number)): Param<(String, i64)>) -> ApiResult<Response> {
    let j = find_job(&st.db, &id).await?;
    let attempts = st.db.attempts(&j.id).await?;
    let a =
        attempts.iter().find(|a| a.number == number).ok_or_else(|| ApiError::not_found(format!("job {} has no attempt {number}", j.id)))?;
    let path = a.log_path.clone().ok_or_else(no_file)?;
    let (bytes, _) = read_end_async(resolve(&st.opts, &path).ok_or_else(no_file)?, LOG_BYTES).await.map_err(|_| no_file())?;
    Ok(file_response("worker.log", bytes))
}

/// The artifact at `index` of a job's list: (kind, path, step).
async fn artifact_row(st: &AppState, id: &str, index: usize) -> ApiResult<(String, String, String, Option<i64>)> {
    let j = find_job(&st.db, id).await?;
    let rows = st.db.artifacts(&j.id).await?;
    let (kind, path, step) =
        rows.into_iter().nth(index).ok_or_else(|| ApiError::not_found(format!("job {} has no artifact {index}", j.id)))?;
    Ok((j.id, kind, path, step))
}

/// Regular files directly in `dir`: (name, bytes), by name.
fn list_dir(dir: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let meta = std::fs::symlink_metadata(e.path())?;
        if let (true, Some(name)) = (meta.is_file(), e.file_name().to_str()) {
            out.push((name.to_string(), meta.len()));
        }
    }
    out.sort();
    Ok(out)
}

async fn serve_file(path: PathBuf, name: &str) -> ApiResult<Response> {
    let meta = std::fs::symlink_metadata(&path).map_err(|_| no_file())?;
    if !meta.is_file() {
        return Err(no_file());
    }
    if meta.len() > MAX_FILE {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{name} is {} MiB: too large to serve (limit {} MiB); copy it from disk", meta.len() >> 20, MAX_FILE >> 20),
        ));
    }
    let (bytes, _) = read_end_async(path.clone(), MAX_FILE).await.map_err(|_| no_file())?;
    Ok(file_response(name, bytes))
}

pub async fn artifact(State(st): State<AppState>, Param((id, index)): Param<(String, usize)>) -> ApiResult<Response> {
    let (job, kind, path, step) = artifact_row(&st, &id, index).await?;
    let p = resolve(&st.opts, &path).ok_or_else(no_file)?;
    let meta = std::fs::symlink_metadata(&p).map_err(|_| no_file())?;
    if meta.is_dir() {
        let entries = list_dir(&p).map_err(|_| no_file())?;
        let base = format!("/files/jobs/{}/artifacts/{index}", seg(&job));
        let entries: Vec<Value> = entries
            .into_iter()
            .map(|(name, bytes)| json!({"name": name, "bytes": bytes, "url": format!("{base}/{}", seg(&name))}))
            .collect();
        return Ok(Json(json!({"job": job, "index": index, "kind": kind, "path": path, "step": step, "entries": entries})).into_response());
    }
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("artifact").to_string();
    serve_file(p, &name).await
}

pub async fn artifact_entry(State(st): State<AppState>, Param((id, index, name)): Param<(String, usize, String)>) -> ApiResult<Response> {
    let (_, _, path, _) = artifact_row(&st, &id, index).await?;
    let dir = resolve(&st.opts, &path).ok_or_else(no_file)?;
    if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        return Err(no_file());
    }
    let entries = list_dir(&dir).map_err(|_| no_file())?;
    // Only a name the listing gave, compared exactly: no separators, no `..`.
    let (found, _) = entries.into_iter().find(|(n, _)| *n == name).ok_or_else(no_file)?;
    serve_file(dir.join(&found), &found).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_end_of_regular_files_only() {
        let d = std::env::temp_dir().join(format!("stuffed-serve-files-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("log");
        std::fs::write(&f, "one\ntwo\nthree\n").unwrap();
        assert_eq!(read_end(&f, 100).unwrap(), (b"one\ntwo\nthree\n".to_vec(), false));
        assert_eq!(read_end(&f, 6).unwrap(), (b"three\n".to_vec(), true));
        assert!(read_end(&d, 10).is_err());
        std::os::unix::fs::symlink(&f, d.join("link")).unwrap();
        assert!(read_end(&d.join("link"), 10).is_err());
        assert_eq!(list_dir(&d).unwrap(), vec![("log".to_string(), 14)]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
