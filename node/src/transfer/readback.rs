//! The final check of a download, done while it runs: a blocking thread reads the partial
//! file back from disk, in order, as far as its pieces are verified, hashes it, and pushes
//! it to the disk; once the last piece is in, only the tail is left to read, hash and sync
//! before the whole file's BLAKE3 is compared with the content id.
//!
//! Why read the file back rather than hash what arrived: bao already checked every byte
//! that arrived against the content id before it was written. What it cannot vouch for is
//! the file on disk: pieces verified by an earlier run (the state file only lists them)
//! and a partial file changed by something else meanwhile. Reading back covers both, so a
//! file only gets its final name if what is on disk hashes to the content id. Doing it as
//! the verified prefix grows, instead of once at the end, takes a whole-file read and hash
//! (and most of the sync) off the time between the last piece and the finished file.
//!
//! 1. [`Readback::start`] with the prefix already verified (a resumed download).
//! 2. The job calls [`Feed::advance`] whenever the verified prefix grows; the thread reads
//!    and hashes up to it, and syncs the file every [`SYNC_EVERY`] bytes so the final sync
//!    has little left to write.
//! 3. [`Readback::finish`] once every piece is verified: the hash of the whole file, with
//!    all of it synced. Dropping the `Readback` instead (the download stopped) stops the
//!    thread.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use bao_tree::blake3;
use superpeer_common::ContentId;
use tokio::task::JoinHandle;

use super::part::PartFile;

/// Bytes read and hashed at a time.
const READ_CHUNK: usize = 1024 * 1024;

/// The file is synced each time this much more was read back, and once at the end.
pub const SYNC_EVERY: u64 = 16 * 1024 * 1024;

/// The thread reading the partial file back.
#[derive(Debug)]
pub struct Readback {
    shared: Arc<Shared>,
    task: Option<JoinHandle<io::Result<ContentId>>>,
}

/// Tells the read-back thread how far the file is verified. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Feed(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    moved: Condvar,
}

#[derive(Debug)]
struct State {
    /// Bytes from the start of the file that are verified.
    ready: u64,
    /// The download stopped: nothing more will be verified.
    stopped: bool,
}

impl Readback {
    /// Starts reading back `part` (`size` bytes), the first `ready` of them verified.
    pub fn start(part: Arc<PartFile>, size: u64, ready: u64) -> Readback {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ready,
                stopped: false,
            }),
            moved: Condvar::new(),
        });
        let task = {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || read_back(&part, size, &shared))
        };
        Readback {
            shared,
            task: Some(task),
        }
    }

    /// The handle the download's job advances.
    pub fn feed(&self) -> Feed {
        Feed(self.shared.clone())
    }

    /// The hash of the whole file as it is on disk, all of it synced. Call once every piece
    /// is verified (and [`Feed::advance`] was told so).
    pub async fn finish(mut self) -> io::Result<ContentId> {
        let Some(task) = self.task.take() else {
            return Err(io::Error::other("the read-back already finished"));
        };
        task.await.map_err(io::Error::other)?
    }
}

impl Drop for Readback {
    fn drop(&mut self) {
        self.shared.state().stopped = true;
        self.shared.moved.notify_all();
    }
}

impl Feed {
    /// The first `ready` bytes of the file are verified and written.
    pub fn advance(&self, ready: u64) {
        let mut state = self.0.state();
        if ready > state.ready {
            state.ready = ready;
            self.0.moved.notify_all();
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until more than `hashed` bytes are verified; `None` if the download stopped.
    fn ready_beyond(&self, hashed: u64) -> Option<u64> {
        let mut state = self.state();
        while state.ready <= hashed && !state.stopped {
            state = self
                .moved
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        (state.ready > hashed).then_some(state.ready)
    }
}

fn read_back(part: &PartFile, size: u64, shared: &Shared) -> io::Result<ContentId> {
    let mut hasher = blake3::Hasher::new();
    // No bigger than the file: a 1 MiB buffer for a small file only feeds the allocator's
    // per-thread pools (the soak saw leaves' RSS creep that way).
    let mut buf = vec![0; usize::try_from(size).map_or(READ_CHUNK, |s| s.clamp(1, READ_CHUNK))];
    let (mut hashed, mut synced) = (0, 0);
    while hashed < size {
        let ready = shared
            .ready_beyond(hashed)
            .ok_or_else(|| io::Error::other("the download stopped"))?;
        while hashed < ready {
            let n = usize::try_from(ready - hashed).map_or(buf.len(), |n| n.min(buf.len()));
            let chunk = buf.get_mut(..n).unwrap_or_default();
            part.read_at(hashed, chunk)?;
            hasher.update(chunk);
            hashed += n as u64;
        }
        if hashed - synced >= SYNC_EVERY {
            part.sync()?;
            synced = hashed;
        }
    }
    part.sync()?;
    Ok(ContentId::from_bytes(*hasher.finalize().as_bytes()))
}
