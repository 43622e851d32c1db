//! The daemon side of the control API: an axum server on a loopback address, the token
//! check, and the life cycle of `control.json`.
//!
//! 1. [`serve`] refuses a non-loopback address, binds, makes a random 32-byte token and
//!    writes `control.json` (address, token, pid) atomically with mode 0600.
//! 2. Each connection is admitted by the connection table (`connections`: at most
//!    [`MAX_CONNECTIONS`], strangers evicted first) and must send each request head within
//!    [`HEADER_TIMEOUT`] of the server waiting for it (idle keep-alive time included).
//! 3. Every request passes the Host check first (the Host must be our own address: see
//!    `ui::guard`), then, except the web UI's routes (`ui`: a session instead), the token
//!    check (constant-time compare), then the route. A request without the token is
//!    answered 401 and its connection closed; one with it (or with a UI session) marks its
//!    connection as the owner's (never evicted).
//! 4. On shutdown the server stops taking connections, gives running requests
//!    [`SHUTDOWN_GRACE`] to finish, and removes `control.json` if it still holds our token
//!    (a newer daemon on the same state dir may have replaced it).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
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
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use serde::Serialize;

use super::connections::{Admission, Connections, MAX_CONNECTIONS};
use super::ui::{self, Ui, auth::LoginLimits, guard};
use super::{CONTROL_FILE, ControlFile, ControlHandler, ErrorJson, GetRequest, SearchRequest};

/// Largest request body the server reads; a search request is a few hundred bytes.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

/// Searches the control API runs at once; more get 503.
pub const MAX_CONCURRENT_SEARCHES: usize = 16;

/// How long a connection may take to send a request head, from when the server starts
/// waiting for it: a connection that sends nothing, or trickles its headers, is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the accept loop rests after an accept error (out of descriptors, say), so it
/// does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

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
    serve_with(handler, listen, state_dir, shutdown, LoginLimits::default()).await
}

/// [`serve`], with the web UI's login limits (tests shorten them).
pub(super) async fn serve_with<H: ControlHandler>(
    handler: Arc<H>,
    listen: SocketAddr,
    state_dir: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
    logins: LoginLimits,
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

    let app = router(handler, Arc::from(token.as_str()), addr, logins);
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
    let table: Table = Arc::new(Mutex::new(Connections::new(MAX_CONNECTIONS)));
    let (stop, stopping) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Some(connection) = admit(&table, stream, &app, stopping.clone()) {
                        tasks.spawn(connection);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "control API accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::debug!("control requests still running at shutdown; dropped");
    }
}

type Table = Arc<Mutex<Connections<Arc<Notify>>>>;

/// Takes `stream` into the table (closing the connection it evicts); returns the task that
/// serves it, or `None` when it was refused (dropping it closes it).
fn admit(
    table: &Table,
    stream: TcpStream,
    app: &Router,
    mut stopping: watch::Receiver<bool>,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    let evict = Arc::new(Notify::new());
    let admission = lock(table).admit(Arc::clone(&evict));
    let Admission::Admitted { id, evicted } = admission else {
        tracing::debug!("control API full of the owner's connections; refused one");
        return None;
    };
    if let Some(evicted) = evicted {
        evicted.notify_one();
    }
    let service = ConnectionService {
        inner: TowerToHyperService::new(app.clone()),
        mark: OwnerMark {
            table: Arc::clone(table),
            id,
        },
    };
    let table = Arc::clone(table);
    Some(async move {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .keep_alive(true);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => {}
            () = evict.notified() => {}
            () = stopped(&mut stopping) => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
        lock(&table).closed(id);
    })
}

async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await.map(|_| ());
}

fn lock(table: &Table) -> std::sync::MutexGuard<'_, Connections<Arc<Notify>>> {
    table
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Marks its connection as the owner's once a request on it shows the token.
#[derive(Clone)]
struct OwnerMark {
    table: Table,
    id: u64,
}

impl OwnerMark {
    fn set(&self) {
        lock(&self.table).proven(self.id);
    }
}

/// Marks the connection `request` came on as the owner's (a UI session proved it).
pub(super) fn mark_owner(request: &Request) {
    if let Some(mark) = request.extensions().get::<OwnerMark>() {
        mark.set();
    }
}

/// The router, with each request carrying its connection's [`OwnerMark`].
#[derive(Clone)]
struct ConnectionService {
    inner: TowerToHyperService<Router>,
    mark: OwnerMark,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for ConnectionService {
    type Response = <TowerToHyperService<Router> as hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
    >>::Response;
    type Error = <TowerToHyperService<Router> as hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
    >>::Error;
    type Future = <TowerToHyperService<Router> as hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
    >>::Future;

    fn call(&self, mut request: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.mark.clone());
        self.inner.call(request)
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
    ui: Arc<Ui<H>>,
}

// Not derived: a derive would ask for `H: Clone`.
impl<H> Clone for AppState<H> {
    fn clone(&self) -> Self {
        Self {
            handler: Arc::clone(&self.handler),
            searches: Arc::clone(&self.searches),
            ui: Arc::clone(&self.ui),
        }
    }
}

fn router<H: ControlHandler>(
    handler: Arc<H>,
    token: Arc<str>,
    addr: SocketAddr,
    logins: LoginLimits,
) -> Router {
    let searches = Arc::new(Semaphore::new(MAX_CONCURRENT_SEARCHES));
    let ui = Arc::new(Ui::new(
        Arc::clone(&handler),
        addr,
        logins,
        Arc::clone(&searches),
    ));
    let state = AppState {
        handler,
        searches,
        ui: Arc::clone(&ui),
    };
    Router::new()
        .route("/status", get(status::<H>))
        .route("/search", post(search::<H>))
        .route("/get", post(get_content::<H>))
        .route("/downloads", get(downloads::<H>))
        .route("/promote", post(promote::<H>))
        .route("/ui/code", post(ui_code::<H>))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
        // Outside the token API's routes, so that none of them (not even a 404) answers
        // without the token.
        .layer(middleware::from_fn_with_state(token, require_token))
        .with_state(state)
        // The web UI's routes have their own guard (a session).
        .merge(ui::routes(ui))
        .layer(middleware::from_fn(guard::security_headers))
        // Outermost: a request for another host gets nothing else.
        .layer(middleware::from_fn_with_state(addr, guard::host_guard))
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
        // A stranger gets one answer per connection, not a slot to keep.
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return response;
    }
    mark_owner(&request);
    next.run(request).await
}

/// `POST /ui/code`: a one-time login code for the web UI (`superpeer ui`).
async fn ui_code<H: ControlHandler>(State(state): State<AppState<H>>) -> Response {
    Json(state.ui.issue_code()).into_response()
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
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(
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
pub(super) fn ndjson<T: Serialize + Send + 'static>(
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

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = ErrorJson {
        error: message.into(),
    };
    (status, Json(body)).into_response()
}

/// Compares secrets in time that depends only on their lengths, not their contents.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "limits_tests.rs"]
mod limits_tests;
