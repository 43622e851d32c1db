//! The holder side of transfers: answers `Have` and `Range` requests for shared content, by
//! content id only (the message flow is in the module docs of `transfer`). This file holds
//! the files a node serves and the entry point for a connection; what a node's sessions
//! share is in `uploads`, one session's request loop in `session`.
//!
//! - Only what `lookup` maps the id to is ever read, never a path from the peer, and only if
//!   the file still hashes to the id: its outboard is computed (once per file version,
//!   cached in [`Uploads`]) and its root compared; every block sent is checked against the
//!   outboard again while it is read, so a file changed since it was shared is answered
//!   `NotFound`, never served under its old id.
//! - Upload slots cap the requests served at once across all sessions (hashing a file,
//!   reading and checking a piece, sending it). With no slot free the answer is `Busy`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use superpeer_common::wire::{CloseCode, HelloReply, Intent, Role};
use superpeer_common::{Connection, ContentId, Session};
use tokio::task::JoinSet;

use super::session::serve_transfer;
use super::uploads::{MAX_SESSIONS_PER_PEER, Uploads};

/// The files a node serves, by content id: replaced whole after each scan of the shared
/// folder. Cheap to clone; sessions read it, the folder's owner writes it.
#[derive(Clone, Debug, Default)]
pub struct ServedFiles(Arc<RwLock<HashMap<ContentId, PathBuf>>>);

impl ServedFiles {
    /// Serves exactly `paths` from now on.
    pub fn replace(&self, paths: HashMap<ContentId, PathBuf>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = paths;
    }

    /// The file that holds `id`, if it is shared.
    pub fn lookup(&self, id: &ContentId) -> Option<PathBuf> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }
}

/// How long a transfer connection may sit with no session before the holder closes it.
pub const IDLE_CLOSE: Duration = Duration::from_secs(5);

/// Serves an incoming transfer connection: its first session (hello read, not yet
/// answered), then every later one the downloader opens on it (a download proves the size,
/// then fetches pieces; over a reverse connection or a relay, a new connection costs a
/// round of NAT traversal), until the downloader closes it or leaves it idle for
/// [`IDLE_CLOSE`]. The whole holder side of a connection, for any node that shares files.
pub async fn serve_connection(
    conn: Connection,
    session: Session,
    role: Role,
    files: ServedFiles,
    uploads: Arc<Uploads>,
) {
    serve_sessions(conn, Some(session), role, files, uploads).await;
}

/// Serves the transfer sessions a downloader opens on a connection we made to it (a
/// reverse connection, a hole punch, or through a relay), as [`serve_connection`] does.
pub async fn serve_dialled(
    conn: Connection,
    role: Role,
    files: ServedFiles,
    uploads: Arc<Uploads>,
) {
    serve_sessions(conn, None, role, files, uploads).await;
}

async fn serve_sessions(
    conn: Connection,
    first: Option<Session>,
    role: Role,
    files: ServedFiles,
    uploads: Arc<Uploads>,
) {
    let mut running = JoinSet::new();
    if let Some(session) = first {
        // The connection's only session so far: refused, the connection goes with it.
        let one = serve_session(
            conn.clone(),
            session,
            role,
            files.clone(),
            uploads.clone(),
            true,
        );
        running.spawn(one);
    }
    loop {
        let idle = running.is_empty();
        tokio::select! {
            // Only the stream is taken here (cancel-safe); its hello is read in its task.
            stream = conn.quinn().accept_bi() => {
                let Ok((send, recv)) = stream else { break };
                let conn = conn.clone();
                let (files, uploads) = (files.clone(), uploads.clone());
                running.spawn(async move {
                    let Ok((mut session, hello)) = conn.session_of(send, recv).await else {
                        return;
                    };
                    if hello.intent != Intent::Transfer {
                        let refusal = HelloReply::Refused {
                            reason: "only transfer sessions on a transfer connection".into(),
                            try_instead: Vec::new(),
                        };
                        let _ = session.reply(&refusal).await;
                        return conn.close(CloseCode::ProtocolViolation, "not a transfer session");
                    }
                    serve_session(conn, session, role, files, uploads, false).await;
                });
            }
            Some(_) = running.join_next(), if !idle => {}
            () = tokio::time::sleep(IDLE_CLOSE), if idle => {
                conn.close(CloseCode::Normal, "done");
                break;
            }
        }
    }
    running.abort_all();
}

/// One transfer session: answered (or refused over the peer's session budget: with the
/// connection when it is the connection's first), then served until the downloader
/// finishes it; a protocol error closes the connection.
async fn serve_session(
    conn: Connection,
    mut session: Session,
    role: Role,
    files: ServedFiles,
    uploads: Arc<Uploads>,
    first: bool,
) {
    let Some(_guard) = uploads.enter(conn.peer()) else {
        let refusal = HelloReply::Refused {
            reason: format!("at most {MAX_SESSIONS_PER_PEER} transfer sessions per peer"),
            try_instead: Vec::new(),
        };
        let _ = session.reply(&refusal).await;
        if first {
            conn.finish_and_close(&mut session, CloseCode::Refused, "too many sessions")
                .await;
        } else {
            let _ = session.writer.inner_mut().finish();
        }
        return;
    };
    if session.reply(&HelloReply::Welcome { role }).await.is_err() {
        return;
    }
    if let Err(e) = serve_transfer(&mut session, |id| files.lookup(id), &uploads).await {
        conn.close_for(&e);
    }
}
