//! The holder side of transfers: answers `Have` and `Range` requests for shared content, by
//! content id only (the message flow is in the module docs of `transfer`). This file holds
//! what a node's sessions share and the entry point for a connection; one session's
//! request loop is in `session`.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use superpeer_common::wire::{CloseCode, HelloReply, Role};
use superpeer_common::{Connection, ContentId, NodeId, Session};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::debug;

use super::outboards::{FileKey, OutboardCache};
use super::session::serve_transfer;
use super::verified::Outboard;

/// Upload slots of a node unless configured otherwise.
pub const DEFAULT_UPLOAD_SLOTS: usize = 8;

/// Transfer sessions one peer may have open with us at once (a downloader uses one per
/// holder; more is someone trying to take every upload slot).
pub const MAX_SESSIONS_PER_PEER: usize = 2;

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

/// What every transfer session of a node shares: upload slots, sessions per peer, the
/// outboard cache, and what was sent.
#[derive(Debug)]
pub struct Uploads {
    slots: Arc<Semaphore>,
    outboards: Mutex<OutboardCache>,
    sessions: Mutex<HashMap<NodeId, usize>>,
    sent_bytes: AtomicU64,
    pieces_sent: AtomicU64,
}

impl Uploads {
    /// Uploads with `slots` requests served at once.
    pub fn new(slots: usize) -> Uploads {
        Uploads {
            slots: Arc::new(Semaphore::new(slots)),
            outboards: Mutex::new(OutboardCache::default()),
            sessions: Mutex::new(HashMap::new()),
            sent_bytes: AtomicU64::new(0),
            pieces_sent: AtomicU64::new(0),
        }
    }

    /// Content bytes sent since start (the ranges, not their hashes), and in how many pieces.
    pub fn sent(&self) -> (u64, u64) {
        (
            self.sent_bytes.load(Ordering::Relaxed),
            self.pieces_sent.load(Ordering::Relaxed),
        )
    }

    /// Counts a session of `peer`; `None` when it has [`MAX_SESSIONS_PER_PEER`] already.
    fn enter(self: &Arc<Self>, peer: NodeId) -> Option<SessionGuard> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let count = sessions.entry(peer).or_insert(0);
        if *count >= MAX_SESSIONS_PER_PEER {
            return None;
        }
        *count += 1;
        Some(SessionGuard {
            uploads: self.clone(),
            peer,
        })
    }

    /// The outboard of the file `lookup` names for `content_id`, if it still hashes to it.
    pub(super) async fn outboard(
        &self,
        lookup: &impl Fn(&ContentId) -> Option<PathBuf>,
        content_id: &ContentId,
    ) -> Option<(FileKey, Arc<Outboard>)> {
        let path = lookup(content_id)?;
        let meta = tokio::fs::metadata(&path).await.ok()?;
        if !meta.is_file() {
            return None;
        }
        let key = FileKey {
            path,
            size: meta.len(),
            modified: meta.modified().ok(),
        };
        let cached = self.cache().get(&key);
        let outboard = match cached {
            Some(outboard) => outboard,
            None => {
                let path = key.path.clone();
                let computed = tokio::task::spawn_blocking(move || Outboard::of_file(&path))
                    .await
                    .ok()?;
                let outboard = match computed {
                    Ok(outboard) => Arc::new(outboard),
                    Err(e) => {
                        debug!(path = %key.path.display(), error = %e, "cannot hash shared file");
                        return None;
                    }
                };
                self.cache().insert(key.clone(), outboard.clone());
                outboard
            }
        };
        if outboard.root() != *content_id {
            debug!(path = %key.path.display(), %content_id, "file changed since it was shared");
            return None;
        }
        Some((key, outboard))
    }

    /// An upload slot, if one is free.
    pub(super) fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Forgets the outboard of a file that changed under it.
    pub(super) fn forget(&self, key: &FileKey) {
        self.cache().remove(key);
    }

    /// Counts a range sent.
    pub(super) fn count_sent(&self, len: u64) {
        self.sent_bytes.fetch_add(len, Ordering::Relaxed);
        self.pieces_sent.fetch_add(1, Ordering::Relaxed);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, OutboardCache> {
        self.outboards
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One counted session; uncounted when dropped.
struct SessionGuard {
    uploads: Arc<Uploads>,
    peer: NodeId,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let mut sessions = self
            .uploads
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = sessions.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                sessions.remove(&self.peer);
            }
        }
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

impl Default for Uploads {
    fn default() -> Self {
        Uploads::new(DEFAULT_UPLOAD_SLOTS)
    }
}
