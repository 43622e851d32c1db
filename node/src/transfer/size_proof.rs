//! Proving a download's size before anything is allocated for it.
//!
//! Only the content id is trusted; the size comes from a search hit, that is from whichever
//! leaf published it. A leaf that republished a content id at 1 TiB used to make every
//! downloader preallocate 1 TiB and drop the honest holders for "the wrong size".
//!
//! The proof is the last piece itself, verified against the content id. BLAKE3 hashes the
//! last chunk with its length and shapes the tree by the total length, so a range holding
//! the last byte verifies under exactly one size: the true one (bao's length check). A
//! range elsewhere proves nothing (it verifies under other sizes whose trees agree along
//! its path). The last piece is needed anyway, so the proof costs one piece fetched first,
//! and it is written to the partial file once that is opened.
//!
//! 1. Holders are asked one after another, at most [`MAX_PROOF_HOLDERS`]: `Have` (the size
//!    must be the one claimed), then a `Range` of the last piece.
//! 2. The first whose piece verifies proves the size; a holder that fails is reported
//!    dropped, like a worker's holder.
//! 3. None does: [`DownloadError::SizeUnproven`]; the caller tries another size, if a search
//!    gave several.

use superpeer_common::wire::{
    CloseCode, DownloaderToHolder, Hello, HelloReply, HolderToDownloader, Intent, Role, WireError,
};
use superpeer_common::{Connection, ContentId, NodeId, PeerAddr};

use super::PIECE;
use super::encoding::{Layout, Parts, verify};
use super::report::{DownloadError, Progress};
use super::worker::{self, HAVE_TIMEOUT, HolderFault, PIECE_TIMEOUT};
use crate::nat::{Dialer, Reached};

/// Holders asked for the proof of one size at most; each failure costs up to a handshake
/// and a piece timeout.
pub const MAX_PROOF_HOLDERS: usize = 4;

/// The last piece of a download, verified: its bytes prove the size.
#[derive(Debug)]
pub struct ProvenTail {
    /// Index of the piece.
    pub index: u64,
    /// Offset of its first byte.
    pub start: u64,
    /// Its bytes.
    pub data: Vec<u8>,
    /// The holder that sent it.
    pub from: NodeId,
}

/// The last piece of the `size`-byte content `content_id`, verified, from the first of
/// `holders` that can give it (see the module docs). Failed holders are reported to
/// `report` as dropped. An empty file proves itself.
pub async fn prove_size(
    dialer: &Dialer,
    holders: &[PeerAddr],
    content_id: ContentId,
    size: u64,
    mut report: impl FnMut(Progress),
) -> Result<Option<ProvenTail>, DownloadError> {
    if size == 0 {
        return if content_id == ContentId::of_bytes(b"") {
            Ok(None)
        } else {
            Err(DownloadError::SizeUnproven { size, asked: 0 })
        };
    }
    let index = (size - 1) / PIECE;
    let start = index * PIECE;
    let layout = Layout::new(size, start, size - start).map_err(|_| {
        // Not reachable for a size under the download limit; refused the same way.
        DownloadError::SizeUnproven { size, asked: 0 }
    })?;
    let mut asked = 0;
    for holder in holders.iter().take(MAX_PROOF_HOLDERS) {
        asked += 1;
        let tail = Tail {
            content_id,
            size,
            start,
            layout: &layout,
        };
        match last_piece(dialer, holder, &tail).await {
            Ok((data, from, how)) => {
                // A one-piece file has no workers after this: say how it came here.
                report(Progress::HolderReached { node_id: from, how });
                return Ok(Some(ProvenTail {
                    index,
                    start,
                    data,
                    from,
                }));
            }
            Err(fault) => report(Progress::HolderDropped {
                node_id: holder.node_id,
                reason: format!("cannot prove the size of {size} bytes: {fault}"),
            }),
        }
    }
    Err(DownloadError::SizeUnproven { size, asked })
}

/// The piece asked for: from `start` to the end of a `size`-byte content.
struct Tail<'a> {
    content_id: ContentId,
    size: u64,
    start: u64,
    layout: &'a Layout,
}

/// Asks `holder` for the last piece and verifies it.
async fn last_piece(
    dialer: &Dialer,
    holder: &PeerAddr,
    tail: &Tail<'_>,
) -> Result<(Vec<u8>, NodeId, Reached), HolderFault> {
    let (conn, reached) = dialer.connect(holder).await?;
    let result = tokio::time::timeout(HAVE_TIMEOUT + PIECE_TIMEOUT, fetch(&conn, tail))
        .await
        .unwrap_or(Err(HolderFault::Stalled(HAVE_TIMEOUT + PIECE_TIMEOUT)));
    let peer = conn.peer();
    match &result {
        // The pieces come next: a connection made through the holder's supernode is kept
        // for them, a direct one closed.
        Ok(_) => dialer.keep(conn, reached),
        Err(fault) => conn.close(CloseCode::Normal, &fault.to_string()),
    }
    result.map(|data| (data, peer, reached))
}

async fn fetch(conn: &Connection, tail: &Tail<'_>) -> Result<Vec<u8>, HolderFault> {
    let Tail {
        content_id,
        size,
        start,
        layout,
    } = *tail;
    let len = size - start;
    let hello = Hello::new(Role::Leaf, Intent::Transfer, None);
    let (mut session, reply) = conn.open_session(&hello).await?;
    if let HelloReply::Refused { reason, .. } = reply {
        return Err(HolderFault::Refused(reason));
    }
    worker::check_have(&mut session, content_id, size).await?;
    session
        .writer
        .send(&DownloaderToHolder::Range {
            content_id,
            start,
            len,
        })
        .await?;
    let mut recv = session.reader.into_inner();
    let answer = tokio::time::timeout(PIECE_TIMEOUT, worker::answer(&mut recv))
        .await
        .map_err(|_| HolderFault::Stalled(PIECE_TIMEOUT))??;
    let HolderToDownloader::RangeFollows {
        content_id: theirs,
        start: their_start,
        len: their_len,
        encoded_len,
    } = answer
    else {
        return Err(match answer {
            HolderToDownloader::NotFound { .. } => HolderFault::NotFound,
            HolderToDownloader::Busy { .. } => HolderFault::Busy,
            _ => HolderFault::Protocol(WireError::Unexpected("an answer to another request")),
        });
    };
    if (theirs, their_start, their_len) != (content_id, start, len) {
        return Err(HolderFault::Protocol(WireError::Unexpected(
            "an answer to another request",
        )));
    }
    let mut parts = Parts::default();
    let received = worker::receive_piece(&mut recv, layout, &mut parts, encoded_len);
    tokio::time::timeout(PIECE_TIMEOUT, received)
        .await
        .map_err(|_| HolderFault::Stalled(PIECE_TIMEOUT))??;
    let checked = {
        let layout = layout.clone();
        tokio::task::spawn_blocking(move || {
            verify(content_id, &layout, &parts).map(|()| parts.data().to_vec())
        })
        .await
    };
    let _ = session.writer.inner_mut().finish();
    match checked {
        Ok(Ok(data)) => Ok(data),
        Ok(Err(e)) => Err(HolderFault::Corrupt(e)),
        Err(e) => Err(HolderFault::CheckFailed(e.to_string())),
    }
}
