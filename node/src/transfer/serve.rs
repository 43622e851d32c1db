//! The holder side of a transfer session: answers `Have` and `Range` requests for shared
//! content, by content id only (the message flow is in the module docs of `transfer`).
//!
//! - Only what `lookup` maps the id to is ever read, never a path from the peer, and only if
//!   the file still hashes to the id: its outboard is computed (once per file version,
//!   cached in [`Uploads`]) and its root compared; every block sent is checked against the
//!   outboard again while it is encoded, so a file changed since it was shared is answered
//!   `NotFound`, never served under its old id.
//! - Upload slots cap the requests served at once across all sessions (hashing a file,
//!   reading and encoding a piece, sending it). With no slot free the answer is `Busy`.
//! - One session has one request in progress at a time; requests it pipelines wait in the
//!   stream's flow-control window, which bounds them.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use superpeer_common::wire::{
    CloseCode, DownloaderToHolder, HelloReply, HolderToDownloader, MAX_FRAME_SIZE, Role, WireError,
};
use superpeer_common::{Connection, ContentId, NodeId, Session};
use tokio::sync::Semaphore;
use tracing::debug;

use super::PIECE;
use super::outboards::{FileKey, OutboardCache};
use super::verified::{Outboard, VerifyError, encode_range};

/// Upload slots of a node unless configured otherwise.
pub const DEFAULT_UPLOAD_SLOTS: usize = 8;

/// What a `Busy` answer asks the downloader to wait.
const BUSY_RETRY_MS: u32 = 500;

/// A session with no request for this long is ended (the downloader went quiet).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest a downloader may take to accept one piece before the session is ended.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest request frame: requests are a few dozen bytes.
const MAX_REQUEST_FRAME: usize = 256;

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
    async fn outboard(
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

/// Serves one transfer session (after the Welcome reply) until the downloader finishes
/// the stream or stays quiet for a minute. `lookup` says which shared file holds a content
/// id. An error means the session broke or the downloader broke the protocol; the caller
/// closes the connection with [`WireError::close_code`].
pub async fn serve_transfer(
    session: &mut Session,
    lookup: impl Fn(&ContentId) -> Option<PathBuf>,
    uploads: &Uploads,
) -> Result<(), WireError> {
    session.reader.limit_frames(MAX_REQUEST_FRAME);
    loop {
        let request = match tokio::time::timeout(IDLE_TIMEOUT, session.reader.recv()).await {
            Ok(request) => request?,
            Err(_) => {
                debug!("transfer session idle, ending it");
                break;
            }
        };
        let Some(request) = request else { break };
        match request {
            DownloaderToHolder::Have { content_id } => {
                let answer = answer_have(content_id, &lookup, uploads).await;
                session.writer.send(&answer).await?;
            }
            DownloaderToHolder::Range {
                content_id,
                start,
                len,
            } => {
                if len > PIECE {
                    return Err(WireError::Invalid(format!(
                        "range of {len} bytes, more than a piece of {PIECE}"
                    )));
                }
                serve_range(session, content_id, start, len, &lookup, uploads).await?;
            }
        }
    }
    // The downloader is done; a failure to say so changes nothing.
    let _ = session.writer.inner_mut().finish();
    Ok(())
}

async fn answer_have(
    content_id: ContentId,
    lookup: &impl Fn(&ContentId) -> Option<PathBuf>,
    uploads: &Uploads,
) -> HolderToDownloader {
    let Ok(_slot) = uploads.slots.try_acquire() else {
        return busy();
    };
    match uploads.outboard(lookup, &content_id).await {
        Some((_, outboard)) => HolderToDownloader::Have {
            content_id,
            size: outboard.size(),
        },
        None => HolderToDownloader::NotFound { content_id },
    }
}

async fn serve_range(
    session: &mut Session,
    content_id: ContentId,
    start: u64,
    len: u64,
    lookup: &impl Fn(&ContentId) -> Option<PathBuf>,
    uploads: &Uploads,
) -> Result<(), WireError> {
    let Ok(_slot) = uploads.slots.try_acquire() else {
        return session.writer.send(&busy()).await;
    };
    let Some((key, outboard)) = uploads.outboard(lookup, &content_id).await else {
        return session
            .writer
            .send(&HolderToDownloader::NotFound { content_id })
            .await;
    };
    let path = key.path.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        let mut file = File::open(&path)?;
        encode_range(&mut file, &outboard, start, len)
    })
    .await
    .map_err(|e| WireError::Connection(format!("encoding task failed: {e}")))?;
    let encoded = match encoded {
        Ok(encoded) => encoded,
        Err(VerifyError::BadRange { start, len, size }) => {
            return Err(WireError::Invalid(format!(
                "range of {len} bytes at {start} of a {size}-byte file"
            )));
        }
        Err(e) => {
            debug!(path = %key.path.display(), error = %e, "cannot serve range");
            if matches!(e, VerifyError::Stale) {
                uploads.cache().remove(&key);
            }
            return session
                .writer
                .send(&HolderToDownloader::NotFound { content_id })
                .await;
        }
    };
    let header = HolderToDownloader::RangeFollows {
        content_id,
        start,
        len,
        encoded_len: encoded.len() as u64,
    };
    let send = async {
        session.writer.send(&header).await?;
        send_encoded(session, encoded).await
    };
    tokio::time::timeout(SEND_TIMEOUT, send)
        .await
        .map_err(|_| WireError::TimedOut("the downloader to take a piece"))??;
    uploads.sent_bytes.fetch_add(len, Ordering::Relaxed);
    uploads.pieces_sent.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Sends an encoded range as one frame: a 4-byte big-endian length, then the bytes.
/// The bytes are handed to quinn as they are, without another copy.
pub(super) async fn send_encoded(session: &mut Session, encoded: Vec<u8>) -> Result<(), WireError> {
    let len = u32::try_from(encoded.len())
        .ok()
        .filter(|&len| len as usize <= MAX_FRAME_SIZE)
        .ok_or(WireError::MessageTooLarge {
            len: encoded.len(),
            max: MAX_FRAME_SIZE,
        })?;
    let mut chunks = [len.to_be_bytes().to_vec().into(), encoded.into()];
    session
        .writer
        .inner_mut()
        .write_all_chunks(&mut chunks)
        .await?;
    Ok(())
}

fn busy() -> HolderToDownloader {
    HolderToDownloader::Busy {
        retry_after_ms: BUSY_RETRY_MS,
    }
}
