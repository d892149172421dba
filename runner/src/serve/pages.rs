//! The HTML pages: small server-rendered shells (title, navigation, the ids the script fills in)
//! whose content `assets/app.js` draws from the JSON API and keeps current by polling it. The
//! script and style sheet are compiled into the binary: the pages work offline.
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::api::{find_job, find_sweep};
use super::error::{ApiError, ApiResult, Param};
use super::{seg, AppState};

const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Escapes text for HTML content and attribute values (the static report's escaping).
pub(crate) use stuffed_reports::report::html_escape as esc;

/// A page: `kind` and `attrs` (already escaped `name="value"` pairs) tell the script what to
/// draw; `crumbs` are (text, link) pairs of the navigation line.
fn page(st: &AppState, title: &str, kind: &str, attrs: &str, crumbs: &[(String, Option<String>)]) -> Html<String> {
    let mut nav = String::from("<a href=\"/\">sweeps</a>");
    for (text, link) in crumbs {
        nav.push_str(" / ");
        match link {
            Some(l) => nav.push_str(&format!("<a href=\"{}\">{}</a>", esc(l), esc(text))),
            None => nav.push_str(&esc(text)),
        }
    }
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · stuffed</title><link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\n\
         <body><header><span class=\"brand\">stuffed</span> <nav>{nav}</nav>\
         <span class=\"db\" title=\"results database (read-only)\">{db}</span>\
         <span id=\"live\" class=\"live\">connecting…</span></header>\n\
         <main id=\"app\" data-page=\"{kind}\" {attrs}><p class=\"muted\">Loading…</p>\
         <noscript>This page draws itself from the JSON API at <a href=\"/api\">/api</a>: enable JavaScript.</noscript></main>\n\
         <script src=\"/assets/app.js\"></script></body></html>\n",
        title = esc(title),
        db = esc(&st.opts.db_label),
    ))
}

pub async fn sweeps(State(st): State<AppState>) -> Html<String> {
    page(&st, "Sweeps", "sweeps", "", &[])
}

pub async fn sweep(State(st): State<AppState>, Param(name): Param<String>) -> ApiResult<Html<String>> {
    let s = find_sweep(&st.db, &name).await?;
    let attrs = format!("data-sweep=\"{}\"", esc(&s.name));
    Ok(page(&st, &s.name, "sweep", &attrs, &[(s.name.clone(), None)]))
}

pub async fn report(State(st): State<AppState>, Param(name): Param<String>) -> ApiResult<Html<String>> {
    let s = find_sweep(&st.db, &name).await?;
    let attrs = format!("data-sweep=\"{}\"", esc(&s.name));
    let crumbs = [(s.name.clone(), Some(format!("/sweeps/{}", seg(&s.name)))), ("report".to_string(), None)];
    Ok(page(&st, &format!("{}: report", s.name), "report", &attrs, &crumbs))
}

pub async fn job(State(st): State<AppState>, Param(id): Param<String>) -> ApiResult<Html<String>> {
    let j = find_job(&st.db, &id).await?;
    let attrs = format!("data-job=\"{}\"", esc(&j.id));
    let short = j.id.chars().take(12).collect::<String>();
    let crumbs = [(j.sweep.clone(), Some(format!("/sweeps/{}", seg(&j.sweep)))), (format!("{short} {}", j.label), None)];
    Ok(page(&st, &format!("{} {}", j.label, short), "job", &attrs, &crumbs))
}

pub async fn asset(Param(file): Param<String>) -> ApiResult<Response> {
    let (body, ctype) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        _ => return Err(ApiError::not_found(format!("no asset '{file}'"))),
    };
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
