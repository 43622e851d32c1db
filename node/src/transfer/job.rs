//! What the workers of one download share: the piece table, the partial file, the
//! read-back of what is verified, the progress channel. Workers pull pieces (so a faster
//! holder takes more), and a [`Claims`] guard gives back whatever a worker still holds when
//! it ends, however it ends.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use superpeer_common::{ContentId, NodeId};
use tokio::sync::{Notify, mpsc};

use super::encoding::{Layout, Parts, verify};
use super::part::PartFile;
use super::pieces::{Piece, Pieces};
use super::readback::Feed;
use super::report::{DownloadError, Progress};
use super::verify_error::VerifyError;

/// One download in progress.
#[derive(Debug)]
pub struct Job {
    /// What is downloaded.
    pub content_id: ContentId,
    /// Its size in bytes.
    pub size: u64,
    pieces: Mutex<Pieces>,
    /// Told when a piece is given back or the download completes.
    changed: Notify,
    part: Arc<PartFile>,
    /// Told how far the file is verified from the start, to read it back.
    readback: Feed,
    progress: mpsc::Sender<Progress>,
}

/// Why a piece was not stored.
#[derive(Debug)]
pub enum CheckError {
    /// The holder's encoding does not verify.
    Corrupt(VerifyError),
    /// Our disk failed.
    Write(DownloadError),
}

/// What a worker with nothing in hand should do.
pub enum Work {
    /// Pieces are waiting: claim one.
    Available,
    /// Every piece is verified.
    Complete,
}

impl Job {
    /// A download of `content_id` into `part`, with the pieces in `pieces` already done.
    pub fn new(
        content_id: ContentId,
        pieces: Pieces,
        part: Arc<PartFile>,
        readback: Feed,
        progress: mpsc::Sender<Progress>,
    ) -> Job {
        Job {
            content_id,
            size: pieces.size(),
            pieces: Mutex::new(pieces),
            changed: Notify::new(),
            part,
            readback,
            progress,
        }
    }

    /// Waits until a piece can be claimed or the download is complete (other workers
    /// hold the rest; one of them may give its pieces back).
    pub async fn wait_for_work(&self) -> Work {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a change right after the look is not missed.
            changed.as_mut().enable();
            {
                let mut pieces = self.pieces();
                if pieces.is_complete() {
                    return Work::Complete;
                }
                if pieces.has_pending() {
                    return Work::Available;
                }
            }
            changed.await;
        }
    }

    /// Verifies a received piece against the content id and writes its bytes at their
    /// offset. Blocking: run it with `spawn_blocking`. Nothing is written unless all of it
    /// verifies.
    pub fn check_and_write(
        &self,
        piece: Piece,
        layout: &Layout,
        parts: &Parts,
    ) -> Result<(), CheckError> {
        verify(self.content_id, layout, parts).map_err(CheckError::Corrupt)?;
        self.part
            .write_at(piece.start, parts.data())
            .map_err(|source| {
                CheckError::Write(DownloadError::Io {
                    what: "cannot write to",
                    path: self.part.path().to_path_buf(),
                    source,
                })
            })
    }

    /// Marks a piece written by [`Job::check_and_write`] done, tells the read-back how far
    /// the file is verified, and reports the piece.
    pub async fn stored(&self, piece: Piece, from: NodeId) {
        let (new, bytes_done, complete, prefix) = {
            let mut pieces = self.pieces();
            let new = pieces.finish(piece.index);
            let prefix = pieces.verified_prefix();
            (new, pieces.done_bytes(), pieces.is_complete(), prefix)
        };
        self.readback.advance(prefix);
        if complete {
            self.changed.notify_waiters();
        }
        if !new {
            return;
        }
        self.report(Progress::Piece {
            bytes_done,
            total: self.size,
            from,
        })
        .await;
    }

    /// The verified pieces, for the state file.
    pub fn verified_runs(&self) -> Vec<[u64; 2]> {
        self.pieces().verified_runs()
    }

    /// True once every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.pieces().is_complete()
    }

    /// Pieces not verified yet.
    pub fn missing(&self) -> u64 {
        self.pieces().missing()
    }

    /// Pieces in the file.
    pub fn count(&self) -> u64 {
        self.pieces().count()
    }

    /// Sends a progress event. A receiver that went away stops nothing.
    pub async fn report(&self, event: Progress) {
        let _ = self.progress.send(event).await;
    }

    fn pieces(&self) -> MutexGuard<'_, Pieces> {
        self.pieces.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The pieces one worker holds: asked for and not answered yet (oldest first, the order
/// answers come in), and answered but still being verified. Dropping it gives back every
/// piece not stored.
pub struct Claims {
    job: Arc<Job>,
    asked: VecDeque<Piece>,
    checking: Vec<Piece>,
}

impl Claims {
    /// No pieces yet.
    pub fn new(job: Arc<Job>) -> Claims {
        Claims {
            job,
            asked: VecDeque::new(),
            checking: Vec::new(),
        }
    }

    /// Claims the next piece to ask for, if one is waiting.
    pub fn claim(&mut self) -> Option<Piece> {
        let piece = self.job.pieces().next()?;
        self.asked.push_back(piece);
        Some(piece)
    }

    /// Pieces asked for and not answered yet.
    pub fn asked(&self) -> usize {
        self.asked.len()
    }

    /// The oldest piece asked for: the one the next answer is about.
    pub fn oldest(&self) -> Option<Piece> {
        self.asked.front().copied()
    }

    /// The oldest piece arrived and is being verified.
    pub fn arrived(&mut self) {
        if let Some(piece) = self.asked.pop_front() {
            self.checking.push(piece);
        }
    }

    /// The oldest piece will not come from this holder (busy): someone else may take it.
    pub fn give_back_oldest(&mut self) {
        if let Some(piece) = self.asked.pop_front() {
            self.give_back(&[piece]);
        }
    }

    /// The check of a piece ended: forget it, giving it back unless it was stored.
    pub fn checked(&mut self, piece: Piece) {
        self.checking.retain(|p| p.index != piece.index);
        self.give_back(&[piece]);
    }

    fn give_back(&self, pieces: &[Piece]) {
        let mut released = false;
        {
            let mut table = self.job.pieces();
            for piece in pieces {
                released |= table.release(piece.index);
            }
        }
        if released {
            self.job.changed.notify_waiters();
        }
    }
}

impl Drop for Claims {
    fn drop(&mut self) {
        let mut held: Vec<Piece> = self.asked.drain(..).collect();
        held.append(&mut self.checking);
        self.give_back(&held);
    }
}
