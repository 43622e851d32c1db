//! One transfer session on the holder side: the requests of one downloader, answered in
//! order (the message flow is in the module docs of `transfer`).
//!
//! Two halves run side by side in the session's task:
//! 1. `take_requests` reads a request, checks it, takes an upload slot and starts preparing
//!    the answer: a range is read from the file and checked against the outboard on a
//!    blocking thread. The answer goes into a queue of [`PREPARED_AHEAD`], so this half
//!    stops reading requests while the queue is full.
//! 2. `send_answers` takes the answers in order, waits for each range to be ready and hands
//!    it to quinn: the pairs and slices of the data, without a copy.
//!
//! So the next piece is read from disk while the previous one goes out. Requests the
//! downloader pipelines beyond that wait in the stream's flow-control window.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use superpeer_common::wire::{
    DownloaderToHolder, FrameReader, FrameWriter, HolderToDownloader, MAX_FRAME_SIZE, WireError,
};
use superpeer_common::{ContentId, Session};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinHandle;
use tracing::debug;

use super::PIECE;
use super::encoding::{Layout, PAIR_LEN, Parts, Segment, read_range};
use super::outboard::Outboard;
use super::outboard_cache::FileKey;
use super::uploads::{NoOutboard, Uploads};
use super::verify_error::VerifyError;

/// What a `Busy` answer asks the downloader to wait.
const BUSY_RETRY_MS: u32 = 500;

/// A session with no request for this long is ended (the downloader went quiet).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest a downloader may take to accept one piece before the session is ended.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Answers prepared while an earlier one is sent. One is enough to keep the stream busy
/// (a piece is read and checked faster than it is sent); each holds a piece in memory.
const PREPARED_AHEAD: usize = 1;

/// Largest request frame: requests are a few dozen bytes.
const MAX_REQUEST_FRAME: usize = 256;

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
    let (queue, queued) = mpsc::channel(PREPARED_AHEAD);
    let requests = take_requests(&mut session.reader, &lookup, uploads, queue);
    let answers = send_answers(&mut session.writer, uploads, queued);
    tokio::try_join!(requests, answers)?;
    // The downloader is done; a failure to say so changes nothing.
    let _ = session.writer.inner_mut().finish();
    Ok(())
}

/// An answer on its way: ready, or a range still being read and checked.
enum Answer {
    Now(HolderToDownloader),
    Range(Preparing),
}

/// A range being read and checked on a blocking thread.
struct Preparing {
    content_id: ContentId,
    start: u64,
    len: u64,
    key: FileKey,
    parts: JoinHandle<Result<(Layout, Parts), VerifyError>>,
    /// The upload slot, held until the range is sent.
    _slot: OwnedSemaphorePermit,
}

/// The file this session last served from. Its outboard stays good for the session: every
/// range is checked against it again as it is read, and the file is looked up again for
/// each request, so one unshared or moved is not served.
type Current = Option<(PathBuf, FileKey, Arc<Outboard>)>;

/// Reads requests and queues their answers until the downloader finishes the stream or
/// stays quiet.
async fn take_requests(
    reader: &mut FrameReader<quinn::RecvStream>,
    lookup: &impl Fn(&ContentId) -> Option<PathBuf>,
    uploads: &Uploads,
    queue: mpsc::Sender<Answer>,
) -> Result<(), WireError> {
    let mut current: Current = None;
    loop {
        let request = match tokio::time::timeout(IDLE_TIMEOUT, reader.recv()).await {
            Ok(request) => request?,
            Err(_) => {
                debug!("transfer session idle, ending it");
                break;
            }
        };
        let Some(request) = request else { break };
        let answer = match request {
            DownloaderToHolder::Have { content_id } => {
                Answer::Now(answer_have(content_id, lookup, uploads).await)
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
                prepare_range(content_id, start, len, lookup, uploads, &mut current).await?
            }
        };
        // A closed queue means the sending half failed; its error is the session's.
        if queue.send(answer).await.is_err() {
            break;
        }
    }
    Ok(())
}

async fn answer_have(
    content_id: ContentId,
    lookup: &impl Fn(&ContentId) -> Option<PathBuf>,
    uploads: &Uploads,
) -> HolderToDownloader {
    let Some(_slot) = uploads.slot() else {
        return busy();
    };
    match uploads.outboard(lookup, &content_id).await {
        Ok((_, outboard)) => HolderToDownloader::Have {
            content_id,
            size: outboard.size(),
        },
        Err(NoOutboard::Busy) => busy(),
        Err(NoOutboard::NotFound) => HolderToDownloader::NotFound { content_id },
    }
}

/// Takes an upload slot and starts reading and checking the range on a blocking thread.
/// A range off the block grid or past the end is a protocol violation.
async fn prepare_range(
    content_id: ContentId,
    start: u64,
    len: u64,
    lookup: &impl Fn(&ContentId) -> Option<PathBuf>,
    uploads: &Uploads,
    current: &mut Current,
) -> Result<Answer, WireError> {
    let Some(slot) = uploads.slot() else {
        return Ok(Answer::Now(busy()));
    };
    let not_found = Answer::Now(HolderToDownloader::NotFound { content_id });
    let Some(path) = lookup(&content_id) else {
        return Ok(not_found);
    };
    let (key, outboard) = match current {
        Some((known, key, outboard)) if *known == path => (key.clone(), outboard.clone()),
        _ => {
            let (key, outboard) = match uploads.outboard(lookup, &content_id).await {
                Ok(found) => found,
                Err(NoOutboard::Busy) => return Ok(Answer::Now(busy())),
                Err(NoOutboard::NotFound) => return Ok(not_found),
            };
            *current = Some((path, key.clone(), outboard.clone()));
            (key, outboard)
        }
    };
    let size = outboard.size();
    let layout = Layout::new(size, start, len).map_err(|_| {
        WireError::Invalid(format!(
            "range of {len} bytes at {start} of a {size}-byte file"
        ))
    })?;
    let path = key.path.clone();
    let parts = tokio::task::spawn_blocking(move || {
        let mut parts = Parts::default();
        read_range(&mut File::open(&path)?, &outboard, &layout, &mut parts)?;
        Ok((layout, parts))
    });
    Ok(Answer::Range(Preparing {
        content_id,
        start,
        len,
        key,
        parts,
        _slot: slot,
    }))
}

/// Sends the queued answers in order until the requesting half is done.
async fn send_answers(
    writer: &mut FrameWriter<quinn::SendStream>,
    uploads: &Uploads,
    mut queued: mpsc::Receiver<Answer>,
) -> Result<(), WireError> {
    while let Some(answer) = queued.recv().await {
        match answer {
            Answer::Now(answer) => writer.send(&answer).await?,
            Answer::Range(range) => send_range(writer, uploads, range).await?,
        }
    }
    Ok(())
}

/// Sends a range once it is read and checked: `RangeFollows` and its encoding, or
/// `NotFound` if the file no longer matches its outboard.
async fn send_range(
    writer: &mut FrameWriter<quinn::SendStream>,
    uploads: &Uploads,
    range: Preparing,
) -> Result<(), WireError> {
    let Preparing {
        content_id,
        start,
        len,
        key,
        parts,
        _slot,
    } = range;
    let prepared = parts
        .await
        .map_err(|e| WireError::Connection(format!("encoding task failed: {e}")))?;
    let (layout, parts) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            debug!(path = %key.path.display(), error = %e, "cannot serve range");
            if matches!(e, VerifyError::Stale) {
                uploads.forget(&key);
            }
            return writer
                .send(&HolderToDownloader::NotFound { content_id })
                .await;
        }
    };
    let header = HolderToDownloader::RangeFollows {
        content_id,
        start,
        len,
        encoded_len: layout.encoded_len(),
    };
    let send = async {
        writer.send(&header).await?;
        send_parts(writer.inner_mut(), &layout, parts).await
    };
    tokio::time::timeout(SEND_TIMEOUT, send)
        .await
        .map_err(|_| WireError::TimedOut("the downloader to take a piece"))??;
    uploads.count_sent(len);
    Ok(())
}

/// Sends a range's encoding as one frame: a 4-byte big-endian length, then the hash pairs
/// and the data in wire order, handed to quinn as slices of the two buffers.
async fn send_parts(
    send: &mut quinn::SendStream,
    layout: &Layout,
    parts: Parts,
) -> Result<(), WireError> {
    let encoded_len = layout.encoded_len();
    let len = u32::try_from(encoded_len)
        .ok()
        .filter(|&len| len as usize <= MAX_FRAME_SIZE)
        .ok_or(WireError::MessageTooLarge {
            len: usize::try_from(encoded_len).unwrap_or(usize::MAX),
            max: MAX_FRAME_SIZE,
        })?;
    let (pairs, data) = parts.into_inner();
    let (pairs, data) = (Bytes::from(pairs.concat()), Bytes::from(data));
    let mut chunks = vec![Bytes::copy_from_slice(&len.to_be_bytes())];
    chunks.extend(layout.segments().map(|segment| match segment {
        Segment::Pair(index) => pairs.slice(index * PAIR_LEN..(index + 1) * PAIR_LEN),
        Segment::Data(range) => data.slice(range),
    }));
    send.write_all_chunks(&mut chunks).await?;
    Ok(())
}

/// Sends an encoded range as one frame: a 4-byte big-endian length, then the bytes (for
/// test holders that tamper with an encoding).
#[cfg(test)]
pub(super) async fn send_encoded(
    send: &mut quinn::SendStream,
    encoded: Vec<u8>,
) -> Result<(), WireError> {
    let len = u32::try_from(encoded.len())
        .ok()
        .filter(|&len| len as usize <= MAX_FRAME_SIZE)
        .ok_or(WireError::MessageTooLarge {
            len: encoded.len(),
            max: MAX_FRAME_SIZE,
        })?;
    let mut chunks = [len.to_be_bytes().to_vec().into(), encoded.into()];
    send.write_all_chunks(&mut chunks).await?;
    Ok(())
}

fn busy() -> HolderToDownloader {
    HolderToDownloader::Busy {
        retry_after_ms: BUSY_RETRY_MS,
    }
}
