//! What every request to the control address passes before its route.
//!
//! 1. [`host_guard`] (the whole server, token API included): the `Host` header must be the
//!    daemon's own address, `127.0.0.1:PORT` as it listens. A web page whose domain was
//!    rebound to 127.0.0.1 sends its own name as Host and gets 421, so it can neither read
//!    the page nor use a session.
//! 2. [`security_headers`] (every answer): a Content-Security-Policy that allows only the
//!    daemon's own script, style and images (no inline script or style, no frames, no
//!    form or fetch elsewhere), `nosniff`, no referrer, no caching.
//! 3. [`require_session`] (the UI's API and events): the session cookie must name an open
//!    session (else 401, "session expired"); a request that is not GET or HEAD must also
//!    come from the page itself (`Origin` the daemon's own, `Sec-Fetch-Site` if sent
//!    `same-origin`) and carry JSON (a form from elsewhere cannot), else 403.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::super::ControlHandler;
use super::super::server::{error, mark_owner};
use super::Ui;

/// The policy: the daemon's own script, style and images, and nothing inline.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What a closed or missing session is told (the page shows it as it is).
pub const SESSION_EXPIRED: &str = "session expired: run superpeer ui again";

/// Refuses a request whose `Host` is not `addr` (see the module docs).
pub async fn host_guard(State(addr): State<SocketAddr>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(HeaderValue::as_bytes);
    if host != Some(addr.to_string().as_bytes()) {
        let mut response = error(
            StatusCode::MISDIRECTED_REQUEST,
            format!("this is the superpeer daemon at {addr}; use that address"),
        );
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return response;
    }
    next.run(request).await
}

/// Adds the security headers to every answer.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// The session a request shows, if any: the value of our cookie.
pub fn session_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// The session a request was let in with, for the route.
#[derive(Clone, Debug)]
pub struct SessionId(pub String);

/// Lets in requests with an open session, and state-changing ones only from the page.
pub async fn require_session<H: ControlHandler>(
    State(ui): State<Arc<Ui<H>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes_state {
        if let Err(why) = same_origin(request.headers(), &ui.origin()) {
            return error(StatusCode::FORBIDDEN, why);
        }
    }
    let session = session_cookie(request.headers(), &ui.cookie_name());
    let Some(session) = session.filter(|s| ui.session_open(s)) else {
        return error(StatusCode::UNAUTHORIZED, SESSION_EXPIRED);
    };
    mark_owner(&request);
    request.extensions_mut().insert(SessionId(session));
    next.run(request).await
}

/// Whether a state-changing request comes from the page itself.
fn same_origin(headers: &HeaderMap, origin: &str) -> Result<(), &'static str> {
    let from = headers.get(header::ORIGIN).map(HeaderValue::as_bytes);
    if from != Some(origin.as_bytes()) {
        return Err("refused: this request did not come from the superpeer page");
    }
    let site = headers.get("sec-fetch-site").map(HeaderValue::as_bytes);
    if site.is_some_and(|site| site != b"same-origin") {
        return Err("refused: this request did not come from the superpeer page");
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json {
        return Err("refused: the UI's requests carry JSON");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[
            ("cookie", "a=1; superpeer_session_80=abc"),
            ("cookie", "b=2"),
        ]);
        assert_eq!(
            session_cookie(&h, "superpeer_session_80").as_deref(),
            Some("abc")
        );
        assert_eq!(session_cookie(&h, "superpeer_session_81"), None);
        assert_eq!(session_cookie(&headers(&[]), "x"), None);
    }

    #[test]
    fn only_the_page_itself_changes_state() {
        let origin = "http://127.0.0.1:80";
        let ok = [
            ("origin", "http://127.0.0.1:80"),
            ("content-type", "application/json"),
        ];
        assert!(same_origin(&headers(&ok), origin).is_ok());
        let with_site = [
            ("origin", "http://127.0.0.1:80"),
            ("sec-fetch-site", "same-origin"),
            ("content-type", "application/json"),
        ];
        assert!(same_origin(&headers(&with_site), origin).is_ok());
        for bad in [
            &[("content-type", "application/json")][..],
            &[
                ("origin", "http://evil.example"),
                ("content-type", "application/json"),
            ],
            &[
                ("origin", "http://127.0.0.1:81"),
                ("content-type", "application/json"),
            ],
            &[("origin", "null"), ("content-type", "application/json")],
            &[
                ("origin", "http://127.0.0.1:80"),
                ("sec-fetch-site", "cross-site"),
                ("content-type", "application/json"),
            ],
            &[
                ("origin", "http://127.0.0.1:80"),
                ("content-type", "text/plain"),
            ],
        ] {
            assert!(same_origin(&headers(bad), origin).is_err(), "{bad:?}");
        }
    }
}
