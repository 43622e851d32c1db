//! `GET /ui/events`: the page's live view, as server-sent events.
//!
//! 1. Every [`TICK`] the stream checks the session, then the node's state. A state that
//!    changed goes out as `event: status` with a [`super::UiStateJson`]; an unchanged one
//!    only every [`KEEP_ALIVE`] (so a dead connection is noticed).
//! 2. When the session closes the stream sends `event: expired` and ends; the page says
//!    to run `superpeer ui` again instead of reconnecting.
//! 3. The stream ends when the browser goes (its channel closes). At most
//!    [`super::MAX_UI_STREAMS`] run at once; more get 503.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::super::ControlHandler;
use super::super::server::error;
use super::Ui;
use super::guard::SessionId;

/// How often the stream looks at the node.
const TICK: Duration = Duration::from_secs(1);

/// Longest time between two events, even when nothing changed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn stream<H: ControlHandler>(
    State(ui): State<Arc<Ui<H>>>,
    Extension(SessionId(session)): Extension<SessionId>,
) -> Response {
    let Ok(permit) = Arc::clone(&ui.streams).try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many pages open on this daemon; close one and reload",
        );
    };
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(feed(ui, session, tx));
    let body = Body::from_stream(EventStream {
        events: rx,
        _permit: permit,
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Sends the node's state while the session is open and the browser listens.
async fn feed<H: ControlHandler>(ui: Arc<Ui<H>>, session: String, tx: mpsc::Sender<Bytes>) {
    let mut last: Option<(String, Instant)> = None;
    loop {
        if !ui.session_open(&session) {
            let _ = tx.send(event("expired", "{}")).await;
            return;
        }
        let state = serde_json::to_string(&ui.state().await).unwrap_or_default();
        let due = match &last {
            Some((sent, at)) => *sent != state || at.elapsed() >= KEEP_ALIVE,
            None => true,
        };
        if due {
            if tx.send(event("status", &state)).await.is_err() {
                return;
            }
            last = Some((state, Instant::now()));
        }
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = tx.closed() => return,
        }
    }
}

/// One event. `data` is JSON on one line (serde_json writes no raw newlines).
fn event(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

struct EventStream {
    events: mpsc::Receiver<Bytes>,
    _permit: OwnedSemaphorePermit,
}

impl futures_core::Stream for EventStream {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.events.poll_recv(cx).map(|event| event.map(Ok))
    }
}
