//! What every transfer session of a node shares, on the holder side: [`Uploads`].
//!
//! - Upload slots cap the requests served at once across all sessions (hashing a file,
//!   reading and checking a piece, sending it). With no slot free the answer is `Busy`.
//! - A peer may hold at most [`MAX_SESSIONS_PER_PEER`] sessions at once.
//! - Outboards come from memory (a small LRU), else from the [`OutboardStore`] on disk,
//!   where the sharing scan saved them; a request never hashes a whole file while the
//!   store has its outboard. A file the store lacks (saving failed, a test without a
//!   store) is hashed on request at most [`MAX_HASHING`] at a time node-wide (the others
//!   are answered `Busy`), and its outboard saved, so each file version is hashed at most
//!   once whatever the requests. [`Uploads::full_hashes`] counts them.
//! - A file whose outboard's root is no longer the content id it was shared under is not
//!   served.
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
use super::outboard_store::OutboardStore;

/// Upload slots of a node unless configured otherwise.
pub const DEFAULT_UPLOAD_SLOTS: usize = 8;

/// Whole files hashed on request at once, node-wide (see the module docs).
pub const MAX_HASHING: usize = 1;

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
    store: Option<OutboardStore>,
    hashing: Arc<Semaphore>,
    full_hashes: AtomicU64,
}

/// Why no outboard is at hand for a content id.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NoOutboard {
    /// Not shared, or the file no longer hashes to the id.
    NotFound,
    /// It would need a whole-file hash and [`MAX_HASHING`] run already: ask again later.
    Busy,
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
            store: None,
            hashing: Arc::new(Semaphore::new(MAX_HASHING)),
            full_hashes: AtomicU64::new(0),
        }
    }

    /// Uploads with `slots` requests served at once, taking outboards from `store`.
    pub fn with_store(slots: usize, store: OutboardStore) -> Uploads {
        Uploads {
            store: Some(store),
            ..Uploads::new(slots)
        }
    }

    /// Whole files hashed to answer requests since start (not the sharing scan's).
    pub fn full_hashes(&self) -> u64 {
        self.full_hashes.load(Ordering::Relaxed)
    }

    /// Content bytes sent since start (the ranges, not their hashes), and in how many pieces.
    pub fn sent(&self) -> (u64, u64) {
        (
            self.sent_bytes.load(Ordering::Relaxed),
            self.pieces_sent.load(Ordering::Relaxed),
        )
    }

    /// Peers with a transfer session open with us now, and their sessions: the uploads in
    /// progress (a session stays open a short while after its last piece).
    pub fn open_sessions(&self) -> (usize, usize) {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        (sessions.len(), sessions.values().sum())
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

    /// The outboard of the file `lookup` names for `content_id`, if it still hashes to it:
    /// from memory, from the store, or (at most [`MAX_HASHING`] at once) by hashing it.
    pub(super) async fn outboard(
        &self,
        lookup: &impl Fn(&ContentId) -> Option<PathBuf>,
        content_id: &ContentId,
    ) -> Result<(FileKey, Arc<Outboard>), NoOutboard> {
        let path = lookup(content_id).ok_or(NoOutboard::NotFound)?;
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|_| NoOutboard::NotFound)?;
        if !meta.is_file() {
            return Err(NoOutboard::NotFound);
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
                let outboard = Arc::new(self.load_or_hash(&key, *content_id).await?);
                self.cache().insert(key.clone(), outboard.clone());
                outboard
            }
        };
        if outboard.root() != *content_id {
            debug!(path = %key.path.display(), %content_id, "file changed since it was shared");
            return Err(NoOutboard::NotFound);
        }
        Ok((key, outboard))
    }

    /// The store's outboard of the file, else a whole-file hash if one may run now (saved
    /// to the store for next time).
    async fn load_or_hash(&self, key: &FileKey, id: ContentId) -> Result<Outboard, NoOutboard> {
        if let Some(store) = self.store.clone() {
            let size = key.size;
            let loaded = tokio::task::spawn_blocking(move || store.load(&id, size)).await;
            if let Ok(Some(outboard)) = loaded {
                return Ok(outboard);
            }
        }
        let Ok(_hashing) = self.hashing.clone().try_acquire_owned() else {
            return Err(NoOutboard::Busy);
        };
        self.full_hashes.fetch_add(1, Ordering::Relaxed);
        let (path, store) = (key.path.clone(), self.store.clone());
        let computed = tokio::task::spawn_blocking(move || {
            let outboard = Outboard::of_file(&path)?;
            // Only the file shared under this id is worth keeping.
            if let Some(store) = store.filter(|_| outboard.root() == id) {
                if let Err(e) = store.save(&outboard) {
                    debug!(error = %e, "cannot save an outboard");
                }
            }
            Ok::<_, std::io::Error>(outboard)
        })
        .await
        .map_err(|_| NoOutboard::NotFound)?;
        computed.map_err(|e| {
            debug!(path = %key.path.display(), error = %e, "cannot hash shared file");
            NoOutboard::NotFound
        })
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
