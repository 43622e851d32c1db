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

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use superpeer_common::wire::{DownloaderToHolder, HolderToDownloader, MAX_FRAME_SIZE, WireError};
use superpeer_common::{ContentId, Session};
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

/// What every transfer session of a node shares: upload slots and the outboard cache.
#[derive(Debug)]
pub struct Uploads {
    slots: Arc<Semaphore>,
    outboards: Mutex<OutboardCache>,
}

impl Uploads {
    /// Uploads with `slots` requests served at once.
    pub fn new(slots: usize) -> Uploads {
        Uploads {
            slots: Arc::new(Semaphore::new(slots)),
            outboards: Mutex::new(OutboardCache::default()),
        }
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
        .map_err(|_| WireError::TimedOut("the downloader to take a piece"))?
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
