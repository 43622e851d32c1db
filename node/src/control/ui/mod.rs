//! The web UI, served by the daemon on its control address: pages for search, downloads,
//! sharing and the network, updated live, for a browser on the same machine.
//!
//! Logging in (the control token never reaches the browser, nor a URL):
//! 1. `superpeer ui` sends `POST /ui/code` with the control token and gets back a login URL
//!    `http://ADDR/login?code=CODE`: one use, within a minute ([`auth`]).
//! 2. `GET /login?code=CODE` uses the code up and answers 303 to `/ui/` with a session
//!    cookie (`HttpOnly`, `SameSite=Strict`, named after the port, since cookies do not tell
//!    ports apart).
//! 3. The page (`/ui/`, its script and style) is served to anyone who passes the Host check;
//!    everything under `/ui/api/` and `/ui/events` needs the session, and a state-changing
//!    request also the page's own origin ([`guard`]). A closed session gets 401 and the
//!    page says to run `superpeer ui` again.
//!
//! Routes (besides the token API of [`super::server`]):
//! - `GET /` and `GET /ui` → 303 to `/ui/`; `GET /ui/`, `/ui/app.js`, `/ui/app.css`,
//!   `/ui/icon.svg`: the page, embedded in the binary.
//! - `GET /ui/events`: server-sent events, a `status` event (a [`UiStateJson`]) whenever
//!   it changes (checked every second), an `expired` event when the session closes.
//! - `GET /ui/api/state`: one [`UiStateJson`].
//! - `POST /ui/api/search` `{"words": "..."}` → NDJSON, as `POST /search` answers.
//! - `POST /ui/api/get` `{"content_id": "..."}` → 202 once the download runs (its progress
//!   comes with the status events).
//! - `POST /ui/api/downloads/pause|resume|cancel` `{"content_id": "..."}`.
//! - `POST /ui/api/promote`, `POST /ui/api/demote`, `POST /ui/api/logout`.
//!
//! Everything the pages show that came from the network is text: the script builds the DOM
//! with `textContent` only, and the Content-Security-Policy allows no inline script.
//!
//! Layout:
//! - `mod.rs`: the JSON types, [`Ui`] (what the routes share), the routes.
//! - `auth`: login codes and sessions, a state machine with the clock passed in.
//! - `guard`: the Host check, the security headers, the session and origin checks.
//! - `api`: the session-guarded routes.
//! - `events`: the server-sent events stream.
//! - `assets/`: the page, its script and style.

mod api;
pub(super) mod auth;
mod events;
pub(super) mod guard;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::{ControlHandler, StatusJson};
pub use api::{ContentRef, UiSearch};
use auth::{LoginLimits, Logins};

/// Largest body a UI request may have (a search's words, a content id).
pub const MAX_UI_BODY: usize = 4 * 1024;

/// Longest search, in bytes of its words as typed.
pub const MAX_UI_SEARCH_BYTES: usize = 256;

/// Most words in one search from the UI.
pub const MAX_UI_SEARCH_WORDS: usize = 16;

/// Event streams open at once (a browser tab holds one).
pub const MAX_UI_STREAMS: usize = 8;

/// What `POST /ui/code` answers, for `superpeer ui`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UiCodeJson {
    /// The login URL with its one-time code.
    pub url: String,
    /// Seconds left to use it.
    pub expires_in_secs: u64,
}

/// The shared folder and the uploads, for the UI's sharing page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharingJson {
    /// The folder shared (as given on the command line), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    /// Peers with an upload session open now, and their sessions.
    pub upload_peers: usize,
    pub upload_sessions: usize,
    /// Content bytes and pieces uploaded since start.
    pub uploaded_bytes: u64,
    pub uploaded_pieces: u64,
}

/// A download action from the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownloadAction {
    Pause,
    Resume,
    Cancel,
}

/// What a status event carries: the node's status and its sharing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UiStateJson {
    pub status: StatusJson,
    pub sharing: SharingJson,
}

/// What the UI's routes share.
pub(super) struct Ui<H> {
    handler: Arc<H>,
    logins: Mutex<Logins>,
    /// The control API's address: the only Host (and origin) the UI answers.
    addr: SocketAddr,
    searches: Arc<Semaphore>,
    streams: Arc<Semaphore>,
}

impl<H: ControlHandler> Ui<H> {
    pub(super) fn new(
        handler: Arc<H>,
        addr: SocketAddr,
        limits: LoginLimits,
        searches: Arc<Semaphore>,
    ) -> Ui<H> {
        Ui {
            handler,
            logins: Mutex::new(Logins::new(limits)),
            addr,
            searches,
            streams: Arc::new(Semaphore::new(MAX_UI_STREAMS)),
        }
    }

    /// A fresh login code, as the URL to open.
    pub(super) fn issue_code(&self) -> UiCodeJson {
        let code = random_secret();
        let mut logins = self.logins();
        logins.issue_code(Instant::now(), code.clone());
        UiCodeJson {
            url: format!("http://{}/login?code={code}", self.addr),
            expires_in_secs: logins.limits().code_ttl.as_secs(),
        }
    }

    /// The page's origin, as a browser sends it in `Origin`.
    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The session cookie's name: cookies are shared by every port of a host, so two
    /// daemons on one machine each need their own.
    fn cookie_name(&self) -> String {
        format!("superpeer_session_{}", self.addr.port())
    }

    fn logins(&self) -> MutexGuard<'_, Logins> {
        self.logins.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `session` is open (using it keeps it open).
    fn session_open(&self, session: &str) -> bool {
        self.logins().check(Instant::now(), session)
    }

    async fn state(&self) -> UiStateJson {
        UiStateJson {
            status: self.handler.status().await,
            sharing: self.handler.sharing().await,
        }
    }
}

/// 32 random bytes, hex: login codes and session ids.
fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The UI's routes: the page for anyone past the Host check, the rest behind the session.
pub(super) fn routes<H: ControlHandler>(ui: Arc<Ui<H>>) -> Router {
    let private = Router::new()
        .route("/ui/events", get(events::stream::<H>))
        .route("/ui/api/state", get(api::state::<H>))
        .route("/ui/api/search", post(api::search::<H>))
        .route("/ui/api/get", post(api::get_content::<H>))
        .route("/ui/api/downloads/{action}", post(api::download::<H>))
        .route("/ui/api/promote", post(api::promote::<H>))
        .route("/ui/api/demote", post(api::demote::<H>))
        .route("/ui/api/logout", post(api::logout::<H>))
        .layer(DefaultBodyLimit::max(MAX_UI_BODY))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&ui),
            guard::require_session::<H>,
        ));
    Router::new()
        .route("/", get(to_ui))
        .route("/ui", get(to_ui))
        .route("/ui/", get(page))
        .route("/ui/app.js", get(script))
        .route("/ui/app.css", get(style))
        .route("/ui/icon.svg", get(icon))
        .route("/login", get(login::<H>))
        .merge(private)
        .with_state(ui)
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const LOGIN_FAILED_HTML: &str = include_str!("assets/login-failed.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const ICON_SVG: &str = include_str!("assets/icon.svg");

async fn to_ui() -> Response {
    redirect("/ui/")
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON_SVG)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn redirect(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

/// Longest login code read from a URL (ours are 64 hex digits).
const MAX_CODE_BYTES: usize = 128;

/// `GET /login?code=CODE`: uses the code up; a good one opens a session.
async fn login<H: ControlHandler>(State(ui): State<Arc<Ui<H>>>, request: Request) -> Response {
    let code = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("code="))
        .filter(|code| code.len() <= MAX_CODE_BYTES)
        .unwrap_or_default();
    let session = random_secret();
    if code.is_empty() || !ui.logins().redeem(Instant::now(), code, session.clone()) {
        let page = asset("text/html; charset=utf-8", LOGIN_FAILED_HTML);
        return (StatusCode::FORBIDDEN, page).into_response();
    }
    let max_age = ui.logins().limits().session_max_age.as_secs();
    let cookie = format!(
        "{}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}",
        ui.cookie_name()
    );
    let mut response = redirect("/ui/");
    if let Ok(value) = header::HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
