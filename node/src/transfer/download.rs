//! The downloader's driver: one worker per holder (up to [`MAX_ACTIVE_HOLDERS`] at once,
//! the rest standing by to replace a dropped one), all pulling pieces from one table, the
//! state file saved every few seconds, and the finished file checked whole and put in
//! place.
//!
//! 1. Keep the holders we may dial (`dial`). Prove the size (`size_proof`: the last piece,
//!    verified, from a holder) unless an earlier run's state holds the last piece already;
//!    only then open (or resume) the partial file at that size, and write the last piece
//!    into it. Report `Started`.
//! 2. Run the workers. A holder that fails (unreachable, `NotFound`, wrong size, bad data,
//!    stalled, gone) is reported `HolderDropped`; its pieces go back to the table and a
//!    standby holder takes its place. Meanwhile the file is read back from disk and hashed
//!    as far as it is verified (`readback`).
//! 3. When the workers are gone: with pieces missing, save the state and fail with
//!    [`DownloadError::NoHolders`] (a later call resumes); complete, wait for the read-back
//!    to hash and sync the rest, and if the whole file hashes to the content id give it its
//!    final name and report `Finished`.
//!
//! The caller runs at most one download per content id and folder at a time (both would
//! write the same partial file), and drains the progress channel or drops its receiver.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use superpeer_common::wire::Via;
use superpeer_common::{ContentId, Endpoint, NodeId, PeerAddr};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info};

use super::dial::dialable;
use super::job::Job;
use super::part::PartFile;
use super::pieces::{Piece, Pieces};
use super::readback::Readback;
use super::report::{DownloadError, Progress};
use super::size_proof::{ProvenTail, prove_size};
use super::worker::{self, WorkerEnd};
use crate::nat::{Dialer, Reacher};

/// Holders downloaded from at once.
pub const MAX_ACTIVE_HOLDERS: usize = 8;

/// Largest download accepted (1 TiB): the size comes from other peers, and the piece table
/// and the partial file are sized from it.
pub const MAX_DOWNLOAD_SIZE: u64 = 1 << 40;

/// How often the list of verified pieces is saved while downloading.
const SAVE_EVERY: Duration = Duration::from_secs(2);

/// What to download and from whom. The size is proven before anything is allocated; the
/// holders are filtered before any is dialled (`dial`).
#[derive(Clone, Debug)]
pub struct DownloadPlan {
    /// The content: BLAKE3 of the whole file.
    pub content_id: ContentId,
    /// Its size, as the search result said: proven by the last piece before the partial file
    /// is sized; a holder that says otherwise is dropped.
    pub size: u64,
    /// The name to give it (from the search result; sanitised before use).
    pub name: String,
    /// Who holds it; pin each address so nobody else can answer for it.
    pub holders: Vec<PeerAddr>,
    /// The firewalled holders, and the supernode that reaches each (from the hit).
    pub via: Vec<(NodeId, Via)>,
}

/// Downloads `plan` into `dest_dir` and returns the final path of the verified file.
pub async fn download(
    endpoint: &Endpoint,
    plan: DownloadPlan,
    dest_dir: &Path,
    progress: mpsc::Sender<Progress>,
) -> Result<PathBuf, DownloadError> {
    download_reaching(&Reacher::direct(endpoint.clone()), plan, dest_dir, progress).await
}

/// [`download`], reaching firewalled holders through their supernodes (`nat`).
pub async fn download_reaching(
    reacher: &Reacher,
    plan: DownloadPlan,
    dest_dir: &Path,
    progress: mpsc::Sender<Progress>,
) -> Result<PathBuf, DownloadError> {
    let DownloadPlan {
        content_id,
        size,
        name,
        holders,
        via,
    } = plan;
    let dialer = Arc::new(Dialer::new(reacher.clone(), via));
    if size > MAX_DOWNLOAD_SIZE {
        return Err(DownloadError::TooLarge {
            size,
            max: MAX_DOWNLOAD_SIZE,
        });
    }
    let mut holders = dialable(&holders);
    // The folder first: a download that cannot be written fetches nothing.
    let resumed = {
        let (dir, name) = (dest_dir.to_path_buf(), name.clone());
        blocking(move || {
            std::fs::create_dir_all(&dir)?;
            Ok(PartFile::proves_size(&dir, &name, content_id, size))
        })
        .await
        .map_err(|source| io_error("cannot create a partial file in", dest_dir, source))?
    };
    let tail = if resumed {
        None
    } else {
        let mut dropped = Vec::new();
        let proven = prove_size(&dialer, &holders, content_id, size, |p| dropped.push(p)).await;
        for event in dropped {
            // A holder that failed the proof is not dialled again.
            if let Progress::HolderDropped { node_id, .. } = &event {
                holders.retain(|h| h.node_id != *node_id);
            }
            let _ = progress.send(event).await;
        }
        proven?
    };
    let dir = dest_dir.to_path_buf();
    let opened = blocking(move || {
        std::fs::create_dir_all(&dir)?;
        let (part, verified) = PartFile::open(&dir, &name, content_id, size)?;
        if let Some(ProvenTail { start, data, .. }) = &tail {
            part.write_at(*start, data)?;
        }
        Ok((part, verified, name, tail))
    })
    .await
    .map_err(|source| io_error("cannot create a partial file in", dest_dir, source))?;
    let (part, verified, name, tail) = opened;
    let part = Arc::new(part);
    let pieces = Pieces::new(size, &verified);
    let done_bytes = pieces.done_bytes();
    info!(%content_id, size, done_bytes, holders = holders.len(), "download starting");
    let readback = Readback::start(part.clone(), size, pieces.verified_prefix());
    let job = Arc::new(Job::new(
        content_id,
        pieces,
        part.clone(),
        readback.feed(),
        progress,
    ));
    job.report(Progress::Started { size, done_bytes }).await;
    if let Some(tail) = tail {
        // Written with the file opened; counted as the proving holder's piece.
        let piece = Piece {
            index: tail.index,
            start: tail.start,
            len: tail.data.len() as u64,
        };
        job.stored(piece, tail.from).await;
    }

    let outcome = run_workers(&dialer, &job, &part, holders).await;
    if outcome.is_err() || !job.is_complete() {
        // Keep what was verified, so a later call resumes. A fatal error may be a full
        // disk: then this save fails too and the previous one stands.
        save_quietly(&part, &job).await;
        outcome?;
        return Err(DownloadError::NoHolders {
            missing: job.missing(),
            total: job.count(),
        });
    }
    let path = finish(&job, &part, readback, dest_dir, name).await?;
    info!(%content_id, path = %path.display(), "download complete");
    job.report(Progress::Finished { path: path.clone() }).await;
    Ok(path)
}

/// Runs a worker per holder until the download is complete or no holder is left. Errs
/// only when our side failed.
async fn run_workers(
    dialer: &Arc<Dialer>,
    job: &Arc<Job>,
    part: &Arc<PartFile>,
    holders: Vec<PeerAddr>,
) -> Result<(), DownloadError> {
    let mut seen = HashSet::new();
    let mut standby: Vec<PeerAddr> = holders
        .into_iter()
        .filter(|h| seen.insert((h.node_id, h.addr)))
        .collect();
    // Started in the order given: take from the front.
    standby.reverse();
    let mut workers = JoinSet::new();
    let start = |workers: &mut JoinSet<_>, holder: PeerAddr| {
        let (dialer, job) = (dialer.clone(), job.clone());
        workers.spawn(worker::run(dialer, holder, job));
    };
    while workers.len() < MAX_ACTIVE_HOLDERS && !job.is_complete() {
        let Some(holder) = standby.pop() else { break };
        start(&mut workers, holder);
    }
    let mut save_tick = tokio::time::interval(SAVE_EVERY);
    save_tick.tick().await;
    let mut saved = Vec::new();
    loop {
        tokio::select! {
            ended = workers.join_next() => {
                let Some(ended) = ended else { return Ok(()) };
                let (node_id, reason) = match ended {
                    Ok(Ok(())) => continue,
                    Ok(Err(WorkerEnd::Fatal(e))) => {
                        workers.abort_all();
                        return Err(e);
                    }
                    Ok(Err(WorkerEnd::Dropped { node_id, fault })) => {
                        (node_id, printable(&fault.to_string()))
                    }
                    Err(e) => (None, format!("worker failed: {e}")),
                };
                debug!(?node_id, %reason, "holder dropped");
                job.report(Progress::HolderDropped { node_id, reason }).await;
                if !job.is_complete() {
                    if let Some(holder) = standby.pop() {
                        start(&mut workers, holder);
                    }
                }
            }
            _ = save_tick.tick() => {
                let runs = job.verified_runs();
                if runs == saved {
                    continue;
                }
                // A failed periodic save only means more to fetch after a crash.
                match save(part, runs.clone()).await {
                    Ok(()) => saved = runs,
                    Err(e) => debug!(error = %e, "cannot save download state"),
                }
            }
        }
    }
}

async fn save(part: &Arc<PartFile>, runs: Vec<[u64; 2]>) -> Result<(), DownloadError> {
    let part = part.clone();
    let path = part.state_path().to_path_buf();
    blocking(move || part.save(runs))
        .await
        .map_err(|source| io_error("cannot save", &path, source))
}

/// Waits for the read-back of the complete file (hashed and synced) and, if it hashes to
/// the content id, moves it to its final name.
async fn finish(
    job: &Job,
    part: &Arc<PartFile>,
    readback: Readback,
    dest_dir: &Path,
    name: String,
) -> Result<PathBuf, DownloadError> {
    let expected = job.content_id;
    let actual = match readback.finish().await {
        Ok(actual) => actual,
        Err(source) => {
            save_quietly(part, job).await;
            return Err(io_error("cannot read back", part.path(), source));
        }
    };
    if actual != expected {
        let part = part.clone();
        let _ = blocking(move || {
            part.discard();
            Ok(())
        })
        .await;
        return Err(DownloadError::Corrupt { expected, actual });
    }
    let (placing, dir) = (part.clone(), dest_dir.to_path_buf());
    let placed = blocking(move || placing.place(&dir, &name)).await;
    if placed.is_err() {
        // Complete and checked: a later call goes straight to the final check.
        save_quietly(part, job).await;
    }
    placed.map_err(|source| io_error("cannot move the finished file into", dest_dir, source))
}

/// Saves the verified pieces; a failure only means more to fetch after a crash.
async fn save_quietly(part: &Arc<PartFile>, job: &Job) {
    if let Err(e) = save(part, job.verified_runs()).await {
        debug!(error = %e, "cannot save download state");
    }
}

/// A reason that may quote a peer (close reasons, refusals), safe to print: no control
/// characters, bounded.
fn printable(reason: &str) -> String {
    reason
        .chars()
        .take(300)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)
        .and_then(|result| result)
}

fn io_error(what: &'static str, path: &Path, source: io::Error) -> DownloadError {
    DownloadError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}
