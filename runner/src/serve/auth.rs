//! The optional access token of `stuffed serve` (for a dashboard bound beyond loopback): every
//! request carries it as `Authorization: Bearer TOKEN`, as the `stuffed_token` cookie, or once
//! as `?token=TOKEN` (which sets the cookie, so the pages' own requests carry it). Compared in
//! constant time; a missing or wrong token is a 401 that names no token.
use axum::extract::Request;
use axum::http::{header, HeaderValue};

pub const COOKIE: &str = "stuffed_token";

/// Equal bytes, in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where the request carries a token that matches: None when it carries none that does;
/// `Some(true)` when it came in the query (the answer should set the cookie).
pub fn check(req: &Request, token: &str) -> Option<bool> {
    let t = token.as_bytes();
    for v in req.headers().get_all(header::AUTHORIZATION) {
        if v.to_str().ok().and_then(|s| s.strip_prefix("Bearer ")).is_some_and(|s| same(s.trim().as_bytes(), t)) {
            return Some(false);
        }
    }
    for v in req.headers().get_all(header::COOKIE) {
        let cookies = v.to_str().unwrap_or("");
        if cookies.split(';').filter_map(|c| c.trim().split_once('=')).any(|(k, v)| k == COOKIE && same(v.as_bytes(), t)) {
            return Some(false);
        }
    }
    let query = req.uri().query().unwrap_or("");
    if query.split('&').filter_map(|p| p.split_once('=')).any(|(k, v)| k == "token" && same(v.as_bytes(), t)) {
        return Some(true);
    }
    None
}

/// The cookie that carries `token` for the pages' later requests.
pub fn cookie(token: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict")).ok()
}

/// A token must be long enough to resist guessing and safe in a header and a cookie.
pub fn validate(token: &str) -> Result<(), String> {
    if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')) {
        return Err("the access token must be at least 16 characters of letters, digits, `-`, `_`, `.` and `~`".into());
    }
    Ok(())
}

/// A fresh random token (32 hex digits from the kernel's random source).
pub fn generate() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn req(uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut r = axum::http::Request::builder().uri(uri);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(Body::empty()).unwrap()
    }

    #[test]
    fn token_is_required_in_a_header_a_cookie_or_the_query() {
        let t = "0123456789abcdef0123";
        assert_eq!(check(&req("/api", &[]), t), None);
        assert_eq!(check(&req("/api", &[("authorization", "Bearer 0123456789abcdef0123")]), t), Some(false));
        assert_eq!(check(&req("/api", &[("authorization", "Bearer 0123456789abcdef0124")]), t), None);
        assert_eq!(check(&req("/api", &[("cookie", "a=b; stuffed_token=0123456789abcdef0123")]), t), Some(false));
        assert_eq!(check(&req("/api?x=1&token=0123456789abcdef0123", &[]), t), Some(true));
        assert_eq!(check(&req("/api?token=0123456789abcdef012", &[]), t), None);
        assert!(validate("short").is_err() && validate("a b c d e f g h i j").is_err() && validate(t).is_ok());
        assert_eq!(generate().unwrap().len(), 32);
    }
}
