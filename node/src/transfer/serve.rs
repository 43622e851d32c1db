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

use superpeer_common::wire::{CloseCode, HelloReply, Role};
use superpeer_common::{Connection, ContentId, Session};

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

/// Answers the hello of an incoming transfer session and serves it until it ends: the
/// whole holder side of a connection, for any node that shares files. A peer over its
/// session budget is refused; one that breaks the protocol is closed with the code the
/// error calls for.
pub async fn serve_connection(
    conn: Connection,
    mut session: Session,
    role: Role,
    files: ServedFiles,
    uploads: Arc<Uploads>,
) {
    let Some(_guard) = uploads.enter(conn.peer()) else {
        let refusal = HelloReply::Refused {
            reason: format!("at most {MAX_SESSIONS_PER_PEER} transfer sessions per peer"),
            try_instead: Vec::new(),
        };
        let _ = session.reply(&refusal).await;
        conn.finish_and_close(&mut session, CloseCode::Refused, "too many sessions")
            .await;
        return;
    };
    if session.reply(&HelloReply::Welcome { role }).await.is_err() {
        return;
    }
    match serve_transfer(&mut session, |id| files.lookup(id), &uploads).await {
        // The downloader closes when it is done with us; give it a moment to.
        Ok(()) => {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
            conn.close(CloseCode::Normal, "done");
        }
        Err(e) => conn.close_for(&e),
    }
}
