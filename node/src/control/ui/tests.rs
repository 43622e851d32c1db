//! The web UI's guard against the real server (a fake daemon behind it): the Host check,
//! the security headers, login codes, sessions and the origin check, over raw HTTP so
//! that nothing on the client side adds or fixes a header.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::super::server::{ControlServer, serve_with};
use super::super::testing::FakeHandler;
use super::super::{CONTROL_FILE, ControlClient, ControlFile};
use super::auth::LoginLimits;
use super::guard::{CONTENT_SECURITY_POLICY, SESSION_EXPIRED};
use super::{APP_JS, INDEX_HTML, LOGIN_FAILED_HTML, UiCodeJson};

struct Daemon {
    addr: SocketAddr,
    token: String,
    _server: ControlServer,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start(limits: LoginLimits) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = serve_with(
        Arc::new(FakeHandler),
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
        async move {
            let _ = stopped.await;
        },
        limits,
    )
    .await
    .unwrap();
    let file: ControlFile =
        serde_json::from_slice(&std::fs::read(dir.path().join(CONTROL_FILE)).unwrap()).unwrap();
    Daemon {
        addr: server.addr(),
        token: file.token,
        _server: server,
        _stop: stop,
        _dir: dir,
    }
}

/// An HTTP answer: status, headers (lower-case names) and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` with exactly `headers` (Host included) and reads the whole answer.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    parse(&raw)
}

fn parse(raw: &str) -> Answer {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

impl Daemon {
    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn cookie_name(&self) -> String {
        format!("superpeer_session_{}", self.addr.port())
    }

    /// A login URL from `POST /ui/code`, as `superpeer ui` gets it.
    async fn code(&self) -> UiCodeJson {
        let (addr, token, dir) = (self.addr, self.token.clone(), self._dir.path().to_owned());
        tokio::task::spawn_blocking(move || {
            ControlClient::new(addr, token, Path::new(&dir))
                .ui_code()
                .unwrap()
        })
        .await
        .unwrap()
    }

    async fn get(&self, path: &str, extra: &[(&str, &str)]) -> Answer {
        let host = self.host();
        let mut headers = vec![("Host", host.as_str())];
        headers.extend_from_slice(extra);
        http(self.addr, "GET", path, &headers, "").await
    }

    /// Logs in with a fresh code; returns the `Cookie` header value.
    async fn login(&self) -> String {
        let url = self.code().await.url;
        let path = url.strip_prefix(&self.origin()).unwrap().to_string();
        let answer = self.get(&path, &[]).await;
        assert_eq!(answer.status, 303, "{answer:?}");
        let set = answer.header("set-cookie").unwrap();
        set.split(';').next().unwrap().to_string()
    }

    /// A POST from the page: session cookie, own origin, JSON.
    async fn post_from_page(&self, path: &str, cookie: &str, body: &str) -> Answer {
        let (host, origin) = (self.host(), self.origin());
        let headers = [
            ("Host", host.as_str()),
            ("Origin", origin.as_str()),
            ("Sec-Fetch-Site", "same-origin"),
            ("Content-Type", "application/json"),
            ("Cookie", cookie),
        ];
        http(self.addr, "POST", path, &headers, body).await
    }
}

/// Whether `html` has an attribute like ` onclick=`.
fn has_inline_handler(html: &str) -> bool {
    html.split(" on").skip(1).any(|rest| {
        let name = rest.chars().take_while(char::is_ascii_alphabetic).count();
        name > 0 && rest[name..].starts_with('=')
    })
}

fn a_content_id() -> String {
    format!(r#"{{"content_id":"{}"}}"#, "ab".repeat(32))
}

#[tokio::test]
async fn only_our_own_host_is_answered() {
    let d = start(LoginLimits::default()).await;
    let token = format!("Bearer {}", d.token);
    for host in [
        "evil.example".to_string(),
        format!("evil.example:{}", d.addr.port()),
        format!("localhost:{}", d.addr.port()),
        "127.0.0.1".to_string(),
        format!("127.0.0.1:{}", d.addr.port() ^ 1),
    ] {
        for path in ["/ui/", "/ui/app.js", "/login?code=x", "/status"] {
            let headers = [("Host", host.as_str()), ("Authorization", token.as_str())];
            let answer = http(d.addr, "GET", path, &headers, "").await;
            assert_eq!(answer.status, 421, "{host} {path}: {answer:?}");
            assert!(!answer.body.contains("<html"), "{answer:?}");
            assert!(!answer.body.contains("node_id"), "{answer:?}");
        }
    }
    let no_host = http(d.addr, "GET", "/ui/", &[], "").await;
    assert_eq!(no_host.status, 421);
    // Our own address gets the page, and the CLI's token API works as before.
    assert_eq!(d.get("/ui/", &[]).await.status, 200);
    let status = d.get("/status", &[("Authorization", token.as_str())]).await;
    assert_eq!(status.status, 200, "{status:?}");
}

#[tokio::test]
async fn every_answer_has_a_strict_content_security_policy() {
    let d = start(LoginLimits::default()).await;
    for path in [
        "/ui/",
        "/ui/app.js",
        "/ui/app.css",
        "/login?code=nope",
        "/status",
    ] {
        let answer = d.get(path, &[]).await;
        let csp = answer.header("content-security-policy").unwrap_or_default();
        assert_eq!(csp, CONTENT_SECURITY_POLICY, "{path}");
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(answer.header("referrer-policy"), Some("no-referrer"));
    }
    for rule in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(CONTENT_SECURITY_POLICY.contains(rule), "{rule}");
    }
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    let page = d.get("/ui/", &[]).await;
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    // No inline script or style in the page: the policy would block it anyway.
    for html in [INDEX_HTML, LOGIN_FAILED_HTML] {
        let scripts = html.matches("<script").count();
        let with_src = html.matches("<script src=\"/ui/app.js\"").count();
        assert_eq!(scripts, with_src);
        assert!(!html.contains("style=") && !html.contains("<style"));
        assert!(!has_inline_handler(html), "no inline handlers");
    }
    // The script builds the DOM from text only.
    for sink in [
        ".innerHTML",
        ".outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!APP_JS.contains(sink), "{sink}");
    }
}

#[tokio::test]
async fn a_login_code_works_once_and_gives_a_strict_http_only_cookie() {
    let d = start(LoginLimits::default()).await;
    // Codes come only with the control token.
    let refused = http(
        d.addr,
        "POST",
        "/ui/code",
        &[("Host", d.host().as_str())],
        "",
    )
    .await;
    assert_eq!(refused.status, 401);

    let code = d.code().await;
    assert!(code.expires_in_secs <= 60);
    let path = code.url.strip_prefix(&d.origin()).unwrap().to_string();
    assert!(path.starts_with("/login?code="), "{path}");
    assert!(
        !code.url.contains(&d.token),
        "the token never goes in a URL"
    );
    let first = d.get(&path, &[]).await;
    assert_eq!(first.status, 303);
    assert_eq!(first.header("location"), Some("/ui/"));
    let cookie = first.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with(&format!("{}=", d.cookie_name())),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains(&d.token));

    let second = d.get(&path, &[]).await;
    assert_eq!(second.status, 403, "a code works once");
    assert!(second.header("set-cookie").is_none());
    assert!(second.body.contains("superpeer ui"));
    for bad in ["/login", "/login?code=", "/login?code=00"] {
        assert_eq!(d.get(bad, &[]).await.status, 403, "{bad}");
    }

    let session = cookie.split(';').next().unwrap();
    let state = d.get("/ui/api/state", &[("Cookie", session)]).await;
    assert_eq!(state.status, 200, "{state:?}");
    assert!(state.body.contains("\"sharing\""));
}

#[tokio::test]
async fn a_login_code_expires() {
    let limits = LoginLimits {
        code_ttl: Duration::from_millis(300),
        ..LoginLimits::default()
    };
    let d = start(limits).await;
    let code = d.code().await;
    let path = code.url.strip_prefix(&d.origin()).unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let late = d.get(&path, &[]).await;
    assert_eq!(late.status, 403);
    assert!(late.header("set-cookie").is_none());
}

#[tokio::test]
async fn without_an_open_session_the_ui_api_answers_401_session_expired() {
    let limits = LoginLimits {
        session_idle: Duration::from_millis(500),
        ..LoginLimits::default()
    };
    let d = start(limits).await;
    let token = format!("Bearer {}", d.token);
    let cookie = d.login().await;
    assert_eq!(
        d.get("/ui/api/state", &[("Cookie", &cookie)]).await.status,
        200
    );
    let stranger = format!("{}={}", d.cookie_name(), "ab".repeat(32));
    let other_port = format!("superpeer_session_1={}", cookie.split('=').nth(1).unwrap());
    for refused in [
        vec![],
        vec![("Cookie", stranger.as_str())],
        vec![("Cookie", other_port.as_str())],
        // The control token is no session.
        vec![("Authorization", token.as_str())],
    ] {
        for path in ["/ui/api/state", "/ui/events"] {
            let answer = d.get(path, &refused).await;
            assert_eq!(answer.status, 401, "{path} {refused:?}");
            assert!(answer.body.contains(SESSION_EXPIRED), "{answer:?}");
        }
    }
    // Idle past its time, the session is closed and says so.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stale = d.get("/ui/api/state", &[("Cookie", &cookie)]).await;
    assert_eq!(stale.status, 401);
    assert!(stale.body.contains(SESSION_EXPIRED), "{stale:?}");
    let post = d
        .post_from_page("/ui/api/get", &cookie, &a_content_id())
        .await;
    assert_eq!(post.status, 401);
}

#[tokio::test]
async fn a_state_changing_request_needs_the_session_and_the_page_origin() {
    let d = start(LoginLimits::default()).await;
    let cookie = d.login().await;
    let (host, origin) = (d.host(), d.origin());
    let body = a_content_id();
    let base = [
        ("Host", host.as_str()),
        ("Origin", origin.as_str()),
        ("Content-Type", "application/json"),
        ("Cookie", cookie.as_str()),
    ];
    let without = |name: &str| -> Vec<(&str, &str)> {
        base.iter().copied().filter(|(n, _)| *n != name).collect()
    };
    let with = |name: &'static str, value: &'static str| -> Vec<(&str, &str)> {
        let mut headers = without(name);
        headers.push((name, value));
        headers
    };
    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (without("Origin"), 403),
        (with("Origin", "http://evil.example"), 403),
        (with("Origin", "null"), 403),
        (with("Origin", "http://localhost"), 403),
        (
            [&base[..], &[("Sec-Fetch-Site", "cross-site")]].concat(),
            403,
        ),
        (
            [&base[..], &[("Sec-Fetch-Site", "same-site")]].concat(),
            403,
        ),
        (with("Content-Type", "text/plain"), 403),
        (without("Content-Type"), 403),
        (without("Cookie"), 401),
    ];
    for path in ["/ui/api/get", "/ui/api/promote", "/ui/api/downloads/pause"] {
        for (headers, status) in &cases {
            let answer = http(d.addr, "POST", path, headers, &body).await;
            assert_eq!(answer.status, *status, "{path} {headers:?}: {answer:?}");
        }
    }
    // From the page itself it goes through.
    let ok = d.post_from_page("/ui/api/get", &cookie, &body).await;
    assert_eq!(ok.status, 202, "{ok:?}");
    // A bad content id is the handler's 400, with its message.
    let bad = d
        .post_from_page("/ui/api/get", &cookie, r#"{"content_id":"x"}"#)
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("error"));
}

#[tokio::test]
async fn searches_stream_and_search_words_and_bodies_are_capped() {
    let d = start(LoginLimits::default()).await;
    let cookie = d.login().await;
    let answer = d
        .post_from_page("/ui/api/search", &cookie, r#"{"words":"  song  "}"#)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/x-ndjson"));
    // Three results, one line each (the body is chunked as they arrive).
    assert_eq!(
        answer.body.matches("\"content_id\"").count(),
        3,
        "{answer:?}"
    );
    let long = format!(r#"{{"words":"{}"}}"#, "a".repeat(300));
    let answer = d.post_from_page("/ui/api/search", &cookie, &long).await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("too long"));
    let huge = format!(r#"{{"words":"{}"}}"#, "a ".repeat(4000));
    let answer = d.post_from_page("/ui/api/search", &cookie, &huge).await;
    assert_eq!(answer.status, 413);
}

/// Reads from `stream` into `seen` until it holds `needle` (within a bound).
async fn read_until(stream: &mut TcpStream, seen: &mut String, needle: &str) {
    let mut buf = [0u8; 4096];
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while !seen.contains(needle) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before {needle}: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    assert!(found.is_ok(), "no {needle} in {seen}");
}

#[tokio::test]
async fn events_stream_the_state_and_end_when_the_session_does() {
    let d = start(LoginLimits::default()).await;
    let cookie = d.login().await;
    let mut stream = TcpStream::connect(d.addr).await.unwrap();
    let request = format!(
        "GET /ui/events HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n\r\n",
        d.host()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "event: status\ndata: {").await;
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert!(seen.contains("\"node_id\""), "{seen}");
    let out = d.post_from_page("/ui/api/logout", &cookie, "{}").await;
    assert_eq!(out.status, 200);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    read_until(&mut stream, &mut seen, "event: expired").await;
    assert_eq!(
        d.get("/ui/api/state", &[("Cookie", &cookie)]).await.status,
        401
    );
}
