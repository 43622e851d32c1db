//! What every transfer session of a node shares, on the holder side: [`Uploads`].
//!
//! - Upload slots cap the requests served at once across all sessions (hashing a file,
//!   reading and checking a piece, sending it). With no slot free the answer is `Busy`.
//! - A peer may hold at most [`MAX_SESSIONS_PER_PEER`] sessions at once.
//! - Outboards are computed once per file version and cached; a file whose outboard's root
//!   is no longer the content id it was shared under is not served.
//! - Content bytes sent are counted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use superpeer_common::{ContentId, NodeId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::debug;

use super::outboard::Outboard;
use super::outboard_cache::{FileKey, OutboardCache};

/// Upload slots of a node unless configured otherwise.
pub const DEFAULT_UPLOAD_SLOTS: usize = 8;

/// Transfer sessions one peer may have open with us at once (a downloader uses one per
/// holder; more is someone trying to take every upload slot).
pub const MAX_SESSIONS_PER_PEER: usize = 2;

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
    pub(super) fn enter(self: &Arc<Self>, peer: NodeId) -> Option<SessionGuard> {
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

impl Default for Uploads {
    fn default() -> Self {
        Uploads::new(DEFAULT_UPLOAD_SLOTS)
    }
}

/// One counted session; uncounted when dropped.
pub(super) struct SessionGuard {
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
