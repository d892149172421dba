//! `stuffed serve`: the local, read-only web dashboard over the results database. axum on the
//! tokio runtime that also drives sqlx; HTML pages are shells that poll the JSON API (no CDN,
//! no external asset); charts are SVGs drawn server-side by the reports crate. There is no write
//! endpoint: every request that is not GET or HEAD is refused, every query binds its values, and
//! file routes serve only what the database records (artifacts, attempt logs) or what this
//! server generated itself (report figures).
mod api;
mod auth;
mod charts;
mod error;
mod files;
mod pages;
mod progress;
mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub use auth::{generate as generate_token, validate as validate_token};
pub use error::ApiError;

use crate::store::Db;

/// How the dashboard runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Shown in the pages and `/api` (the database path as given).
    pub db_label: String,
    /// Refuse requests whose Host is not a loopback name (against DNS rebinding); set when the
    /// server listens on a loopback address.
    pub loopback_only: bool,
    /// Where charts and reports are drawn (created; removed when the server stops).
    pub scratch: PathBuf,
    /// Directories that relative paths recorded in the database (logs, artifacts, written
    /// relative to where `sweep run` ran) are resolved against, in order.
    pub base_dirs: Vec<PathBuf>,
    /// The runs directories (canonical): the only places files are served from. A recorded
    /// path that resolves anywhere else (an imported dump's `/etc/passwd`, a `..`, a symlink
    /// out) is answered like a missing file.
    pub runs_dirs: Vec<PathBuf>,
    /// When set, every request must carry it (`Authorization: Bearer TOKEN` or `?token=`).
    pub token: Option<String>,
}

/// Removes the scratch directory when the last handle on the state goes.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) struct Inner {
    pub db: Db,
    pub opts: Options,
    pub charts: charts::Charts,
    pub reports: report::Reports,
    _scratch: Scratch,
}

/// Shared state of every handler.
pub(crate) type AppState = Arc<Inner>;

/// The dashboard's routes over `db`.
pub fn router(db: Db, opts: Options) -> anyhow::Result<Router> {
    std::fs::create_dir_all(&opts.scratch)?;
    let state: AppState = Arc::new(Inner {
        charts: charts::Charts::new(opts.scratch.join("charts")),
        reports: report::Reports::new(opts.scratch.join("reports")),
        _scratch: Scratch(opts.scratch.clone()),
        db,
        opts,
    });
    let app = Router::new()
        .route("/", get(pages::sweeps))
        .route("/sweeps/{name}", get(pages::sweep))
        .route("/sweeps/{name}/report", get(pages::report))
        .route("/sweeps/{name}/report/files/{*path}", get(report::file))
        .route("/jobs/{id}", get(pages::job))
        .route("/assets/{file}", get(pages::asset))
        .route("/api", get(api::index))
        .route("/api/sweeps", get(api::sweeps))
        .route("/api/sweeps/{name}", get(api::sweep))
        .route("/api/sweeps/{name}/jobs", get(api::sweep_jobs))
        .route("/api/sweeps/{name}/report", get(report::summary))
        .route("/api/jobs/{id}", get(api::job))
        .route("/api/jobs/{id}/metrics", get(api::metrics))
        .route("/api/jobs/{id}/log", get(files::log_tail))
        .route("/charts/sweeps/{name}/metrics.svg", get(charts::sweep_metrics))
        .route("/charts/jobs/{id}/metrics.svg", get(charts::job_metrics))
        .route("/charts/jobs/{id}/evals/{index}", get(charts::job_eval))
        .route("/charts/jobs/{id}/during.svg", get(charts::job_during))
        .route("/files/jobs/{id}/attempts/{number}/log", get(files::log_file))
        .route("/files/jobs/{id}/artifacts/{index}", get(files::artifact))
        .route("/files/jobs/{id}/artifacts/{index}/{name}", get(files::artifact_entry))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state);
    Ok(app)
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

/// A scratch directory of this process under the system temp dir.
pub fn default_scratch() -> PathBuf {
    std::env::temp_dir().join(format!("stuffed-serve-{}", std::process::id()))
}

/// Where relative paths recorded in the database may start from: the current directory, the
/// database's directory and the one above it (`results/stuffed.db` next to `results/runs/`).
pub fn default_base_dirs(db: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    if let Some(dir) = std::fs::canonicalize(db).ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
        dirs.extend(dir.parent().map(Path::to_path_buf));
        dirs.push(dir);
    }
    dirs.dedup();
    dirs
}

/// The runs directories a database's files may be served from: `results/runs` under the
/// current directory and `runs` beside the database (`results/stuffed.db` next to
/// `results/runs/`), those that exist, canonical.
pub fn default_runs_dirs(db: &Path) -> Vec<PathBuf> {
    // Absolute, not canonical: they may not exist yet (a sweep started after `serve` creates
    // its runs directory); `resolve` canonicalizes them at each request.
    let cwd = std::env::current_dir().unwrap_or_default();
    let db_dir = cwd.join(db.parent().unwrap_or(Path::new("")));
    let mut dirs: Vec<PathBuf> = vec![cwd.join("results/runs"), db_dir.join("runs"), db_dir.join("results/runs")];
    dirs.dedup();
    dirs
}

/// The existing directories of `dirs`, canonical, without repeats.
pub fn canonical_dirs(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = dirs.iter().filter_map(|d| std::fs::canonicalize(d).ok()).filter(|d| d.is_dir()).collect();
    out.dedup();
    out
}

/// A path recorded in the database, if it names a file inside a runs directory: a relative
/// path (without `..`) under a base directory, or an absolute one, canonicalized (symlinks
/// resolved) and kept only when it lies strictly inside one of `opts.runs_dirs`. Everything
/// else (paths of another machine in an imported dump, `..`, symlinks leading out, missing
/// files) is None: the caller answers all of them with the same 404.
pub(crate) fn resolve(opts: &Options, recorded: &str) -> Option<PathBuf> {
    crate::safety::resolve_inside(&opts.runs_dirs, &opts.base_dirs, recorded)
}

/// Whether `addr` only accepts connections from this machine.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no page or endpoint at {}", req.uri().path()))
}

/// Whether a Host header names this machine (`localhost`, `127.x.y.z`, `[::1]`, with an
/// optional numeric port and nothing else: `127.0.0.1:evil.com` is not this machine).
fn loopback_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((name, after)) => match after {
                "" => (name, None),
                a => match a.strip_prefix(':') {
                    Some(p) => (name, Some(p)),
                    None => return false,
                },
            },
            None => return false,
        }
    } else {
        match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    let name = name.to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Read-only and same-machine guard, and the security headers of every response.
async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "the dashboard is read-only: only GET and HEAD requests are served")
            .into_response();
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if st.opts.loopback_only {
        // Every Host header must name this machine (a second one is not a way around the first).
        let hosts: Vec<&str> = req.headers().get_all(header::HOST).iter().map(|h| h.to_str().unwrap_or("")).collect();
        let host = hosts.first().copied().unwrap_or("");
        if hosts.len() != 1 || !loopback_host(host) {
            let shown: String = host.chars().take(80).collect();
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!("host '{}' is not this machine: the dashboard listens on loopback only", shown.escape_debug()),
            )
            .into_response();
        }
    }
    let mut set_cookie = None;
    if let Some(token) = &st.opts.token {
        match auth::check(&req, token) {
            None => {
                let mut r = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "this dashboard needs its access token: open it with ?token=TOKEN once, or send Authorization: Bearer TOKEN",
                )
                .into_response();
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
            Some(from_query) => set_cookie = from_query.then(|| auth::cookie(token)).flatten(),
        }
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if let Some(c) = set_cookie {
        h.insert(header::SET_COOKIE, c);
    }
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// A path relative to `base`, as `/`-separated text (None when `path` is not under it).
pub(crate) fn relative(base: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(base).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// Percent-encodes a path segment (sweep names and ids in URLs).
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "localhost:8765", "127.0.0.1:80", "127.1.2.3", "[::1]:8765", "app.localhost:1"] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "",
            "evil.example",
            "evil.example:8765",
            "10.0.0.1:8765",
            "localhost.evil.example",
            "[::2]:1",
            "127.0.0.1:evil.com",
            "localhost:80:evil.com",
            "[::1]evil",
            "[::1]:x",
            "localhost:",
            "127.0.0.1:123456",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(seg("grid"), "grid");
        assert_eq!(seg("a b/../c"), "a%20b%2F..%2Fc");
    }
}
