//! The daemon side of the control API: an axum server on a loopback address, the token
//! check, and the life cycle of `control.json`.
//!
//! 1. [`serve`] refuses a non-loopback address, binds, makes a random 32-byte token and
//!    writes `control.json` (address, token, pid) atomically with mode 0600.
//! 2. Every request passes the token check first (constant-time compare), then the route.
//! 3. On shutdown the server stops taking connections, gives running requests
//!    [`SHUTDOWN_GRACE`] to finish, and removes `control.json` if it still holds our token
//!    (a newer daemon on the same state dir may have replaced it).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use serde::Serialize;

use super::{CONTROL_FILE, ControlFile, ControlHandler, ErrorJson, GetRequest, SearchRequest};

/// Largest request body the server reads; a search request is a few hundred bytes.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

/// Searches the control API runs at once; more get 503.
pub const MAX_CONCURRENT_SEARCHES: usize = 16;

/// How long running requests may go on after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Content type of the search answer: one JSON object per line.
const NDJSON: &str = "application/x-ndjson";

/// A running control API.
pub struct ControlServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ControlServer {
    /// The address the API listens on (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the server has shut down and cleaned up `control.json`.
    pub async fn finished(self) {
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "control API task failed");
        }
    }
}

/// Starts the control API on `listen` (loopback only; port 0 picks a free port), writes
/// `STATE_DIR/control.json`, and serves until `shutdown` completes.
pub async fn serve<H: ControlHandler>(
    handler: Arc<H>,
    listen: SocketAddr,
    state_dir: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<ControlServer> {
    if !listen.ip().is_loopback() {
        bail!("the control API listens on 127.0.0.1 only (asked for {listen})");
    }
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for the control API on {listen}"))?;
    let addr = listener
        .local_addr()
        .context("cannot read the control API's address")?;

    let token = hex::encode(rand::random::<[u8; 32]>());
    let control_file = state_dir.join(CONTROL_FILE);
    write_control_file(state_dir, &control_file, addr, &token).await?;

    let app = router(handler, Arc::from(token.as_str()));
    tracing::info!(%addr, file = %control_file.display(), "control API listening");
    let task = tokio::spawn(async move {
        run(listener, app, shutdown).await;
        remove_if_ours(&control_file, &token).await;
    });
    Ok(ControlServer { addr, task })
}

async fn write_control_file(
    state_dir: &Path,
    path: &Path,
    addr: SocketAddr,
    token: &str,
) -> anyhow::Result<()> {
    let contents = ControlFile {
        addr,
        token: token.to_owned(),
        pid: std::process::id(),
    };
    let bytes = serde_json::to_vec_pretty(&contents).context("cannot encode control.json")?;
    let (dir, file) = (state_dir.to_owned(), path.to_owned());
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the state dir {}", dir.display()))?;
        superpeer_common::write_atomic(&file, &bytes, 0o600)
            .with_context(|| format!("cannot write {}", file.display()))
    })
    .await
    .context("the task writing control.json failed")?
}

/// Serves until `shutdown`, then lets running requests finish for a short while.
async fn run(listener: TcpListener, app: Router, shutdown: impl Future<Output = ()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stopped.await;
    });
    let server = server.into_future();
    tokio::pin!(server, shutdown);
    tokio::select! {
        result = &mut server => {
            if let Err(e) = result {
                tracing::warn!(error = %e, "control API stopped");
            }
        }
        () = &mut shutdown => {
            let _ = stop.send(());
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err() {
                tracing::debug!("control requests still running at shutdown; dropped");
            }
        }
    }
}

/// Removes `control.json` unless another daemon has written its own since.
async fn remove_if_ours(path: &Path, token: &str) {
    let Ok(bytes) = tokio::fs::read(path).await else {
        return;
    };
    let ours = serde_json::from_slice::<ControlFile>(&bytes)
        .is_ok_and(|file| constant_time_eq(file.token.as_bytes(), token.as_bytes()));
    if !ours {
        return;
    }
    if let Err(e) = tokio::fs::remove_file(path).await {
        tracing::warn!(error = %e, file = %path.display(), "cannot remove the control file");
    }
}

struct AppState<H> {
    handler: Arc<H>,
    searches: Arc<Semaphore>,
}

// Not derived: a derive would ask for `H: Clone`.
impl<H> Clone for AppState<H> {
    fn clone(&self) -> Self {
        Self {
            handler: Arc::clone(&self.handler),
            searches: Arc::clone(&self.searches),
        }
    }
}

fn router<H: ControlHandler>(handler: Arc<H>, token: Arc<str>) -> Router {
    let state = AppState {
        handler,
        searches: Arc::new(Semaphore::new(MAX_CONCURRENT_SEARCHES)),
    };
    Router::new()
        .route("/status", get(status::<H>))
        .route("/search", post(search::<H>))
        .route("/get", post(get_content::<H>))
        .route("/downloads", get(downloads::<H>))
        .route("/promote", post(promote::<H>))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
        // Outermost, so that nothing (not even a 404) answers without the token.
        .layer(middleware::from_fn_with_state(token, require_token))
        .with_state(state)
}

async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    if !constant_time_eq(presented, token.as_bytes()) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong control token (see control.json in the state dir)",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    next.run(request).await
}

async fn status<H: ControlHandler>(State(state): State<AppState<H>>) -> Response {
    Json(state.handler.status().await).into_response()
}

async fn search<H: ControlHandler>(
    State(state): State<AppState<H>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: SearchRequest = match parse_body(body, "search") {
        Ok(request) => request,
        Err(response) => return *response,
    };
    if let Err(message) = request.validate() {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let Ok(permit) = Arc::clone(&state.searches).try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many searches running at once; try again shortly",
        );
    };
    match state.handler.search(request).await {
        Ok(results) => ndjson(results, Some(permit)),
        Err(message) => error(StatusCode::SERVICE_UNAVAILABLE, message),
    }
}

async fn get_content<H: ControlHandler>(
    State(state): State<AppState<H>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: GetRequest = match parse_body(body, "get") {
        Ok(request) => request,
        Err(response) => return *response,
    };
    match state.handler.get(request).await {
        Ok(events) => ndjson(events, None),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

/// A request body as JSON, or the error answer: the body's own rejection (413 too large)
/// or 400 naming the `what` request.
fn parse_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T, Box<Response>> {
    let body =
        body.map_err(|rejection| Box::new(error(rejection.status(), rejection.body_text())))?;
    serde_json::from_slice(&body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("bad {what} request: {e}"),
        ))
    })
}

async fn downloads<H: ControlHandler>(State(state): State<AppState<H>>) -> Response {
    Json(state.handler.downloads().await).into_response()
}

async fn promote<H: ControlHandler>(State(state): State<AppState<H>>) -> Response {
    match state.handler.promote().await {
        Ok(answer) => Json(answer).into_response(),
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

/// A streamed answer: one JSON object per line, sent as each arrives, until the handler
/// closes the channel. A search's permit lives as long as the body, so it counts against
/// [`MAX_CONCURRENT_SEARCHES`] while it streams; a client that hangs up drops the body and
/// with it the receiver, which tells the handler to stop (a download goes on: it belongs
/// to the daemon).
fn ndjson<T: Serialize + Send + 'static>(
    items: mpsc::Receiver<T>,
    permit: Option<OwnedSemaphorePermit>,
) -> Response {
    let stream = NdjsonStream {
        items,
        _permit: permit,
    };
    (
        [(header::CONTENT_TYPE, NDJSON)],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

struct NdjsonStream<T> {
    items: mpsc::Receiver<T>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<T: Serialize> futures_core::Stream for NdjsonStream<T> {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.items
            .poll_recv(cx)
            .map(|item| item.map(|item| Ok(Bytes::from(ndjson_line(&item)))))
    }
}

fn ndjson_line(item: &impl Serialize) -> Vec<u8> {
    // Serialising plain strings and numbers cannot fail; an empty line is skipped by readers.
    let mut line = serde_json::to_vec(item).unwrap_or_default();
    line.push(b'\n');
    line
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such control API route")
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = ErrorJson {
        error: message.into(),
    };
    (status, Json(body)).into_response()
}

/// Compares secrets in time that depends only on their lengths, not their contents.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::super::testing::{self, raw_agent};
    use super::super::{ControlClient, StatusJson};
    use super::super::{GetEventJson, GetRequest, SearchResultJson};
    use super::*;

    fn read_control_file(dir: &Path) -> ControlFile {
        serde_json::from_slice(&std::fs::read(dir.join(CONTROL_FILE)).unwrap()).unwrap()
    }

    /// A raw HTTP/1.1 exchange, so nothing on the client side adds or fixes headers.
    async fn raw_http(addr: SocketAddr, request: String) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn control_file_has_address_token_pid_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _stop) = testing::start(dir.path()).await;
        let file = read_control_file(dir.path());
        assert_eq!(file.addr, server.addr());
        assert_ne!(file.addr.port(), 0);
        assert_eq!(file.token.len(), 64);
        assert!(hex::decode(&file.token).is_ok());
        assert_eq!(file.pid, std::process::id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CONTROL_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Two daemons never share a token.
        let other = tempfile::tempdir().unwrap();
        let (_server2, _stop2) = testing::start(other.path()).await;
        assert_ne!(read_control_file(other.path()).token, file.token);
    }

    #[tokio::test]
    async fn a_non_loopback_address_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for listen in ["0.0.0.0:0", "192.0.2.1:0", "[::]:0"] {
            let result = serve(
                Arc::new(testing::FakeHandler),
                listen.parse().unwrap(),
                dir.path(),
                std::future::pending(),
            )
            .await;
            let error = result.err().unwrap().to_string();
            assert!(error.contains("127.0.0.1 only"), "{listen}: {error}");
        }
        assert!(!dir.path().join(CONTROL_FILE).exists());
    }

    #[tokio::test]
    async fn requests_without_or_with_a_wrong_token_get_401() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _stop) = testing::start(dir.path()).await;
        let addr = server.addr();
        let token = read_control_file(dir.path()).token;

        let no_token = raw_http(
            addr,
            "GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into(),
        )
        .await;
        assert!(no_token.starts_with("HTTP/1.1 401"), "{no_token}");
        assert!(no_token.contains("\"error\""), "{no_token}");
        assert!(!no_token.contains("node_id"), "{no_token}");

        // Unknown routes answer 401 too, not 404, so nothing leaks without the token.
        let unknown = raw_http(
            addr,
            "GET /nope HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into(),
        )
        .await;
        assert!(unknown.starts_with("HTTP/1.1 401"), "{unknown}");

        let mut wrong = token.clone().into_bytes();
        wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
        let wrong = String::from_utf8(wrong).unwrap();
        let bad_headers = [
            format!("Bearer {wrong}"),
            format!("Bearer {}", &token[..63]),
            format!("Bearer {token}0"),
            format!("Basic {token}"),
            token.clone(),
            "Bearer ".into(),
        ];
        tokio::task::spawn_blocking(move || {
            let agent = raw_agent();
            for value in bad_headers {
                let status = agent
                    .get(format!("http://{addr}/status"))
                    .header("Authorization", &value)
                    .call()
                    .unwrap()
                    .status();
                assert_eq!(status, 401, "{value}");
                let search = agent
                    .post(format!("http://{addr}/search"))
                    .header("Authorization", &value)
                    .send_json(SearchRequest {
                        keywords: vec!["a".into()],
                        want: 1,
                    })
                    .unwrap()
                    .status();
                assert_eq!(search, 401, "{value}");
            }
            let mut ok = agent
                .get(format!("http://{addr}/status"))
                .header("Authorization", &format!("Bearer {token}"))
                .call()
                .unwrap();
            assert_eq!(ok.status(), 200);
            let status: StatusJson = ok.body_mut().read_json().unwrap();
            assert_eq!(status, testing::fixed_status());
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn bad_requests_get_400_404_405_413_with_a_json_error() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _stop) = testing::start(dir.path()).await;
        let addr = server.addr();
        let bearer = format!("Bearer {}", read_control_file(dir.path()).token);
        tokio::task::spawn_blocking(move || {
            let agent = raw_agent();
            let post = |body: Vec<u8>| {
                let mut response = agent
                    .post(format!("http://{addr}/search"))
                    .header("Authorization", &bearer)
                    .header("Content-Type", "application/json")
                    .send(body)
                    .unwrap();
                let status = response.status().as_u16();
                let text = response.body_mut().read_to_string().unwrap();
                (status, text)
            };
            for body in [
                r#"{"keywords":[],"want":5}"#,
                r#"{"keywords":["  "],"want":5}"#,
                r#"{"keywords":["a"],"want":0}"#,
                r#"{"keywords":["a"],"want":1001}"#,
                r#"{"keywords":"a","want":5}"#,
                r#"{"want":5}"#,
                "not json",
            ] {
                let (status, text) = post(body.as_bytes().to_vec());
                assert_eq!(status, 400, "{body}: {text}");
                let error: ErrorJson = serde_json::from_str(&text).unwrap();
                assert!(!error.error.is_empty());
            }
            let mut huge = br#"{"keywords":[""#.to_vec();
            huge.extend(std::iter::repeat_n(b'a', MAX_REQUEST_BODY));
            huge.extend(br#""],"want":5}"#);
            let (status, text) = post(huge);
            assert_eq!(status, 413, "{text}");

            let mut unknown = agent
                .get(format!("http://{addr}/nope"))
                .header("Authorization", &bearer)
                .call()
                .unwrap();
            assert_eq!(unknown.status(), 404);
            let error: ErrorJson = unknown.body_mut().read_json().unwrap();
            assert!(error.error.contains("no such"));

            let wrong_method = agent
                .get(format!("http://{addr}/search"))
                .header("Authorization", &bearer)
                .call()
                .unwrap();
            assert_eq!(wrong_method.status(), 405);
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn search_answers_ndjson_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _stop) = testing::start(dir.path()).await;
        let addr = server.addr();
        let bearer = format!("Bearer {}", read_control_file(dir.path()).token);
        tokio::task::spawn_blocking(move || {
            let mut response = raw_agent()
                .post(format!("http://{addr}/search"))
                .header("Authorization", &bearer)
                .send_json(SearchRequest {
                    keywords: vec!["song".into()],
                    want: 3,
                })
                .unwrap();
            assert_eq!(response.status(), 200);
            let content_type = response.headers().get("content-type").unwrap();
            assert_eq!(content_type, NDJSON);
            let text = response.body_mut().read_to_string().unwrap();
            let results: Vec<SearchResultJson> = text
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
            let expected: Vec<_> = (0..3).map(|i| testing::fake_result("song", i)).collect();
            assert_eq!(results, expected);
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn get_streams_events_and_refusals_are_400() {
        let dir = tempfile::tempdir().unwrap();
        let (server, _stop) = testing::start(dir.path()).await;
        let addr = server.addr();
        let bearer = format!("Bearer {}", read_control_file(dir.path()).token);
        tokio::task::spawn_blocking(move || {
            let post = |content_id: &str| {
                raw_agent()
                    .post(format!("http://{addr}/get"))
                    .header("Authorization", &bearer)
                    .send_json(GetRequest {
                        content_id: content_id.into(),
                        out: None,
                    })
                    .unwrap()
            };
            let mut response = post(&"ab".repeat(32));
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers().get("content-type").unwrap(), NDJSON);
            let text = response.body_mut().read_to_string().unwrap();
            let events: Vec<GetEventJson> = text
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
            assert_eq!(
                events,
                [
                    GetEventJson::Searching {
                        content_id: "ab".repeat(32)
                    },
                    GetEventJson::Failed {
                        error: "no holder".into()
                    }
                ]
            );
            assert!(text.contains(r#""event":"searching""#), "{text}");
            let mut refused = post("nope");
            assert_eq!(refused.status(), 400);
            assert!(
                refused
                    .body_mut()
                    .read_to_string()
                    .unwrap()
                    .contains("error")
            );
            let downloads = raw_agent()
                .get(format!("http://{addr}/downloads"))
                .header("Authorization", &bearer)
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap();
            assert_eq!(downloads, "[]");
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn shutdown_removes_control_json() {
        let dir = tempfile::tempdir().unwrap();
        let (server, stop) = testing::start(dir.path()).await;
        let addr = server.addr();
        assert!(dir.path().join(CONTROL_FILE).exists());
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server.finished())
            .await
            .unwrap();
        assert!(!dir.path().join(CONTROL_FILE).exists());
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn shutdown_waits_briefly_for_a_running_search() {
        let dir = tempfile::tempdir().unwrap();
        let (server, stop) = testing::start(dir.path()).await;
        let client = ControlClient::from_state_dir(dir.path()).unwrap();
        let search = tokio::task::spawn_blocking(move || {
            let mut seen = Vec::new();
            let request = SearchRequest {
                keywords: vec!["slow".into()],
                want: 3,
            };
            client
                .search(&request, |result| seen.push(result))
                .map(|()| seen)
        });
        tokio::time::sleep(testing::RESULT_DELAY / 2).await;
        let start = Instant::now();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server.finished())
            .await
            .unwrap();
        assert!(start.elapsed() < SHUTDOWN_GRACE + Duration::from_secs(1));
        // The search was running when shutdown began and is short enough to finish.
        assert_eq!(search.await.unwrap().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn shutdown_leaves_a_control_json_written_by_another_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let (server, stop) = testing::start(dir.path()).await;
        let other = ControlFile {
            addr: "127.0.0.1:9".parse().unwrap(),
            token: "ab".repeat(32),
            pid: 1,
        };
        std::fs::write(
            dir.path().join(CONTROL_FILE),
            serde_json::to_vec(&other).unwrap(),
        )
        .unwrap();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server.finished())
            .await
            .unwrap();
        assert_eq!(read_control_file(dir.path()), other);
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
