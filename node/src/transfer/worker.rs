//! One holder during a download: connect (pinned), open a transfer session, check the
//! holder's `Have`, then pull pieces from the shared table, ask for them a few at a time
//! ([`PIPELINE`]), read each answer off the stream straight into a reused buffer (each
//! block to its place in the piece), and verify and write it (off the async threads) while
//! the next ones arrive. Ends when no piece is left, or when the holder fails: then every
//! piece it held and did not deliver goes back to the others.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use superpeer_common::wire::{
    CloseCode, DownloaderToHolder, FrameReader, FrameWriter, HelloReply, HolderToDownloader,
    Intent, Role, WireError,
};
use superpeer_common::{ConnectError, Connection, ContentId, NodeId, PeerAddr, Session};
use tokio::task::JoinHandle;

use super::encoding::{Layout, Parts};
use super::job::{CheckError, Claims, Job, Work};
use super::pieces::Piece;
use super::report::{DownloadError, Progress};
use super::verify_error::VerifyError;
use crate::nat::{Dialer, ReachError};

/// Requests a worker keeps outstanding, so the holder always has the next one in hand.
const PIPELINE: usize = 3;

/// Received pieces a worker verifies and writes while it receives the next ones.
const MAX_CHECKS: usize = 2;

/// Largest answer frame accepted: answers are a few dozen bytes; piece data comes apart.
const MAX_ANSWER_FRAME: usize = 1024;

/// Longest wait for the answer to `Have` (the holder may hash a large file first).
pub(super) const HAVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest wait for one piece; a holder slower than that is dropped as stalled.
pub(super) const PIECE_TIMEOUT: Duration = Duration::from_secs(30);

/// `Busy` answers in a row before a holder is given up.
const MAX_BUSY: u32 = 60;

/// Bounds on the wait a `Busy` answer asks for.
const BUSY_WAIT: (u64, u64) = (50, 5_000);

/// Why a holder was dropped from a download.
#[derive(Debug, thiserror::Error)]
pub enum HolderFault {
    /// It could not be reached.
    #[error("cannot connect: {0}")]
    Connect(#[from] ConnectError),
    /// It is firewalled and could not be reached through its supernode either.
    #[error("cannot connect: {0}")]
    Unreachable(String),
    /// It refused the transfer session.
    #[error("refused the session: {0}")]
    Refused(String),
    /// It does not share the content (or no longer: the file changed).
    #[error("does not have the content")]
    NotFound,
    /// It holds content of another size under this id.
    #[error("says the content is {theirs} bytes, expected {ours}")]
    WrongSize {
        /// The size we expect (from the search result).
        ours: u64,
        /// The size it says.
        theirs: u64,
    },
    /// It answered `Busy` too many times in a row.
    #[error("stayed busy")]
    Busy,
    /// It sent a range that does not verify against the content id.
    #[error("sent data that failed verification: {0}")]
    Corrupt(VerifyError),
    /// It sent something the protocol does not allow here.
    #[error("broke the protocol: {0}")]
    Protocol(WireError),
    /// The connection failed or closed.
    #[error("connection lost: {0}")]
    Lost(WireError),
    /// Verifying its data did not finish (a bug on our side; the piece goes to another).
    #[error("verifying its data failed: {0}")]
    CheckFailed(String),
    /// It did not answer in time.
    #[error("stalled: no answer within {0:?}")]
    Stalled(Duration),
}

impl From<ReachError> for HolderFault {
    fn from(e: ReachError) -> Self {
        match e {
            ReachError::Connect(e) => HolderFault::Connect(e),
            ReachError::Traversal(why) => HolderFault::Unreachable(why),
        }
    }
}

impl HolderFault {
    fn close_code(&self) -> CloseCode {
        match self {
            HolderFault::Corrupt(_) | HolderFault::Protocol(_) => CloseCode::ProtocolViolation,
            _ => CloseCode::Normal,
        }
    }
}

impl From<WireError> for HolderFault {
    fn from(e: WireError) -> Self {
        match e.close_code() {
            CloseCode::ProtocolViolation
            | CloseCode::FrameTooLarge
            | CloseCode::VersionMismatch
                if !matches!(e, WireError::Truncated) =>
            {
                HolderFault::Protocol(e)
            }
            _ => HolderFault::Lost(e),
        }
    }
}

/// How a worker ended, when not with the download complete.
#[derive(Debug)]
pub enum WorkerEnd {
    /// The holder failed; the download goes on without it.
    Dropped {
        /// Who it was, once known.
        node_id: Option<NodeId>,
        /// Why.
        fault: HolderFault,
    },
    /// Something on our side failed (the disk): the whole download stops.
    Fatal(DownloadError),
}

/// Downloads from `holder` until no piece is left for it.
pub async fn run(dialer: Arc<Dialer>, holder: PeerAddr, job: Arc<Job>) -> Result<(), WorkerEnd> {
    let (conn, reached) = dialer
        .connect(&holder)
        .await
        .map_err(|e| WorkerEnd::Dropped {
            node_id: holder.node_id,
            fault: e.into(),
        })?;
    job.report(Progress::HolderReached {
        node_id: conn.peer(),
        how: reached,
    })
    .await;
    let result = transfer(&conn, &job).await;
    match &result {
        Ok(()) => conn.close(CloseCode::Normal, "done"),
        Err(Stop::Holder(fault)) => conn.close(fault.close_code(), &fault.to_string()),
        Err(Stop::Fatal(_)) => conn.close(CloseCode::Normal, "download stopped"),
    }
    result.map_err(|stop| match stop {
        Stop::Holder(fault) => WorkerEnd::Dropped {
            node_id: Some(conn.peer()),
            fault,
        },
        Stop::Fatal(e) => WorkerEnd::Fatal(e),
    })
}

enum Stop {
    Holder(HolderFault),
    Fatal(DownloadError),
}

impl From<HolderFault> for Stop {
    fn from(fault: HolderFault) -> Self {
        Stop::Holder(fault)
    }
}

impl From<WireError> for Stop {
    fn from(e: WireError) -> Self {
        Stop::Holder(e.into())
    }
}

async fn transfer(conn: &Connection, job: &Arc<Job>) -> Result<(), Stop> {
    let hello = superpeer_common::wire::Hello::new(Role::Leaf, Intent::Transfer, None);
    let (mut session, reply) = conn.open_session(&hello).await?;
    if let HelloReply::Refused { reason, .. } = reply {
        return Err(HolderFault::Refused(reason).into());
    }
    check_have(&mut session, job.content_id, job.size).await?;
    // From here on pieces are read straight off the stream into their buffers.
    let Session { reader, writer } = session;
    let mut link = Link {
        recv: reader.into_inner(),
        writer,
    };
    let mut hand = InHand {
        claims: Claims::new(job.clone()),
        checks: VecDeque::new(),
        spare: Vec::new(),
        from: conn.peer(),
    };
    let result = exchange(&mut link, job, &mut hand).await;
    if let Err(Stop::Holder(_)) = result {
        // Pieces that arrived before the holder failed verify on their own: keep those
        // that do. A disk failure meanwhile outranks the holder's.
        while !hand.checks.is_empty() {
            if let Err(Stop::Fatal(e)) = hand.settle_oldest(job).await {
                return Err(Stop::Fatal(e));
            }
        }
    }
    result
}

/// The session's stream after `Have`: answers are read frame by frame, piece encodings
/// item by item into their buffers.
struct Link {
    recv: quinn::RecvStream,
    writer: FrameWriter<quinn::SendStream>,
}

/// A piece being verified and written; gives back its buffers.
type Check = JoinHandle<(Parts, Result<(), CheckError>)>;

/// What a worker holds: claimed pieces, and the checks of the pieces received.
struct InHand {
    claims: Claims,
    /// Pieces received and being verified and written, oldest first.
    checks: VecDeque<(Piece, Check)>,
    /// Buffers of finished checks, for the next pieces.
    spare: Vec<Parts>,
    /// The holder's node id.
    from: NodeId,
}

impl InHand {
    /// Waits for the oldest check and stores its piece.
    async fn settle_oldest(&mut self, job: &Job) -> Result<(), Stop> {
        let Some((piece, check)) = self.checks.pop_front() else {
            return Ok(());
        };
        let result = match check.await {
            Ok((parts, checked)) => {
                self.spare.push(parts);
                match checked {
                    Ok(()) => {
                        job.stored(piece, self.from).await;
                        Ok(())
                    }
                    Err(CheckError::Corrupt(e)) => Err(HolderFault::Corrupt(e).into()),
                    Err(CheckError::Write(e)) => Err(Stop::Fatal(e)),
                }
            }
            // A panic while verifying: never trust the piece, let another holder send it.
            Err(e) => Err(HolderFault::CheckFailed(e.to_string()).into()),
        };
        self.claims.checked(piece);
        result
    }
}

/// Asks for pieces and receives them until none is left for this holder.
async fn exchange(link: &mut Link, job: &Arc<Job>, hand: &mut InHand) -> Result<(), Stop> {
    let mut busy = 0;
    loop {
        while hand.claims.asked() < PIPELINE {
            let Some(piece) = hand.claims.claim() else {
                break;
            };
            let range = DownloaderToHolder::Range {
                content_id: job.content_id,
                start: piece.start,
                len: piece.len,
            };
            link.writer.send(&range).await?;
        }
        // Settle checks when enough run at once, or when nothing else is left to wait for.
        while hand.checks.len() >= MAX_CHECKS
            || (hand.claims.asked() == 0 && !hand.checks.is_empty())
        {
            hand.settle_oldest(job).await?;
        }
        let Some(piece) = hand.claims.oldest() else {
            match job.wait_for_work().await {
                Work::Available => continue,
                Work::Complete => break,
            }
        };
        let answer = tokio::time::timeout(PIECE_TIMEOUT, answer(&mut link.recv))
            .await
            .map_err(|_| HolderFault::Stalled(PIECE_TIMEOUT))??;
        match answer {
            HolderToDownloader::RangeFollows {
                content_id,
                start,
                len,
                encoded_len,
            } if content_id == job.content_id && start == piece.start && len == piece.len => {
                let mut parts = hand.spare.pop().unwrap_or_default();
                let layout = Layout::new(job.size, piece.start, piece.len)
                    .map_err(|e| HolderFault::CheckFailed(e.to_string()))?;
                let received = receive_piece(&mut link.recv, &layout, &mut parts, encoded_len);
                tokio::time::timeout(PIECE_TIMEOUT, received)
                    .await
                    .map_err(|_| HolderFault::Stalled(PIECE_TIMEOUT))??;
                hand.claims.arrived();
                let job = job.clone();
                let check = tokio::task::spawn_blocking(move || {
                    let checked = job.check_and_write(piece, &layout, &parts);
                    (parts, checked)
                });
                hand.checks.push_back((piece, check));
                busy = 0;
            }
            HolderToDownloader::Busy { retry_after_ms } => {
                hand.claims.give_back_oldest();
                busy += 1;
                if busy > MAX_BUSY {
                    return Err(HolderFault::Busy.into());
                }
                let (min, max) = BUSY_WAIT;
                let wait = u64::from(retry_after_ms).clamp(min, max);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            HolderToDownloader::NotFound { .. } => return Err(HolderFault::NotFound.into()),
            _ => return Err(WireError::Unexpected("an answer to another request").into()),
        }
    }
    // Tell the holder we are done; its loop ends on the finished stream.
    let _ = link.writer.inner_mut().finish();
    Ok(())
}

/// Asks `Have` until the holder answers something other than `Busy`; Ok when it holds
/// `content_id` at `size`.
pub(super) async fn check_have(
    session: &mut Session,
    content_id: ContentId,
    size: u64,
) -> Result<(), HolderFault> {
    let mut busy = 0;
    loop {
        session
            .writer
            .send(&DownloaderToHolder::Have { content_id })
            .await?;
        let answer = tokio::time::timeout(HAVE_TIMEOUT, session.reader.recv_required())
            .await
            .map_err(|_| HolderFault::Stalled(HAVE_TIMEOUT))??;
        match answer {
            HolderToDownloader::Have {
                content_id: theirs,
                size: their_size,
            } if theirs == content_id => {
                if their_size != size {
                    return Err(HolderFault::WrongSize {
                        ours: size,
                        theirs: their_size,
                    });
                }
                return Ok(());
            }
            HolderToDownloader::NotFound { .. } => return Err(HolderFault::NotFound),
            HolderToDownloader::Busy { retry_after_ms } => {
                busy += 1;
                if busy > MAX_BUSY {
                    return Err(HolderFault::Busy);
                }
                let (min, max) = BUSY_WAIT;
                let wait = u64::from(retry_after_ms).clamp(min, max);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            _ => return Err(WireError::Unexpected("an answer to another request").into()),
        }
    }
}

/// The holder's next answer: one small frame.
pub(super) async fn answer(recv: &mut quinn::RecvStream) -> Result<HolderToDownloader, WireError> {
    let mut reader = FrameReader::new(recv);
    reader.limit_frames(MAX_ANSWER_FRAME);
    reader.recv_required().await
}

/// Reads the encoded range after a `RangeFollows` into `parts`: its length prefix must be
/// the length the layout computes (whatever `claimed` says), then each hash pair and block
/// goes straight to its place.
pub(super) async fn receive_piece(
    recv: &mut quinn::RecvStream,
    layout: &Layout,
    parts: &mut Parts,
    claimed: u64,
) -> Result<(), HolderFault> {
    let expected = layout.encoded_len();
    let mut prefix = [0; 4];
    recv.read_exact(&mut prefix)
        .await
        .map_err(WireError::from)?;
    let framed = u64::from(u32::from_be_bytes(prefix));
    for actual in [claimed, framed] {
        if actual != expected {
            return Err(HolderFault::Corrupt(VerifyError::Length {
                expected,
                actual,
            }));
        }
    }
    for slot in parts.slots(layout) {
        recv.read_exact(slot).await.map_err(WireError::from)?;
    }
    Ok(())
}
