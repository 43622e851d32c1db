//! Watching the shared folder: a debounced "something changed" signal, so that added,
//! changed and removed files are published within a second or so instead of at the next
//! periodic rescan.
//!
//! The signal says only that the folder changed, not what: the caller answers it with
//! [`SharedFolder::rescan`](super::SharedFolder::rescan) (in `spawn_blocking`), which finds
//! out from the disk. That keeps this side simple and makes lost or merged events harmless,
//! since a rescan always sees the whole folder.
//!
//! Flow:
//! 1. notify's thread calls our handler for every file-system event. The handler drops
//!    events that cannot change what is shared (opens, reads, access times: hashing the
//!    folder causes those) and does a non-blocking `try_send` into a channel of one slot,
//!    so a burst of events costs no memory and never blocks notify.
//! 2. A tokio task waits for the first event, then for [`QUIET`] without events, and sends
//!    one `()` to the caller. A folder that never goes quiet (a log file written every
//!    100 ms) is still signalled [`MAX_DELAY`] after the burst began.
//! 3. The caller's channel also has one slot: if a signal is already waiting, another
//!    would add nothing.
//!
//! If the watcher cannot be created (no inotify instances left, too many folders for the
//! watch limit, an unsupported file system), [`watch`] returns an error and the caller falls
//! back to rescanning on a timer. Dropping the watcher ends the task and closes the channel.
//!
//! [`FolderChanges`](super::FolderChanges) is the same signal without the task (step 2
//! runs inside its `changed`), so it can be created before a runtime exists; it also owns
//! the timer fallback.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::Instant;
use tracing::warn;

/// How long the folder must be quiet before the signal: long enough to merge the events of
/// one copy or save, short enough that a change is published promptly.
pub const QUIET: Duration = Duration::from_millis(300);

/// The longest a signal waits while events keep coming.
pub const MAX_DELAY: Duration = Duration::from_secs(3);

/// Watches `dir` recursively. Keep the returned watcher alive for as long as signals are
/// wanted; each `()` means "rescan". Needs a tokio runtime (the debounce is a task).
pub fn watch(dir: &Path) -> anyhow::Result<(RecommendedWatcher, mpsc::Receiver<()>)> {
    let runtime = tokio::runtime::Handle::try_current()
        .context("watching the shared folder needs a tokio runtime")?;
    let (raw_tx, raw_rx) = mpsc::channel(1);
    let watcher = notify_watcher(dir, raw_tx)?;
    let (tx, rx) = mpsc::channel(1);
    runtime.spawn(debounce(raw_rx, tx, QUIET, MAX_DELAY));
    Ok((watcher, rx))
}

/// Watches `dir` recursively, sending `()` to `raw` for every event that may change what is
/// shared (step 1 of the module docs). Needs no runtime: `try_send` works from any thread.
pub(super) fn notify_watcher(
    dir: &Path,
    raw: mpsc::Sender<()>,
) -> anyhow::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(event) => may_change_shares(&event.kind),
            Err(e) => {
                // Lost events (a queue overflow) or a broken watch: a rescan sees everything.
                warn!("watching the shared folder: {e}");
                true
            }
        };
        if relevant {
            // Full: a signal is already pending. Closed: nobody listens any more.
            let _ = raw.try_send(());
        }
    })
    .with_context(|| format!("cannot watch {}", dir.display()))?;
    watcher
        .watch(dir, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    Ok(watcher)
}

/// Whether an event of this kind may change which files are shared or what they hold.
fn may_change_shares(kind: &EventKind) -> bool {
    match kind {
        // A file closed after writing: its content is final now.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        _ => true,
    }
}

/// Turns bursts on `raw` into single signals on `out` (see the module docs). Ends when
/// either side is closed.
async fn debounce(
    raw: mpsc::Receiver<()>,
    out: mpsc::Sender<()>,
    quiet: Duration,
    max_delay: Duration,
) {
    let mut signals = Debounce::new(raw, quiet, max_delay);
    while signals.next().await.is_some() {
        match out.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Closed(())) => return,
        }
    }
}

/// Step 2 of the module docs as a value: each [`Debounce::next`] waits for a burst of raw
/// events to end.
#[derive(Debug)]
pub(super) struct Debounce {
    raw: mpsc::Receiver<()>,
    quiet: Duration,
    max_delay: Duration,
    /// When the burst being merged began. Kept here rather than in `next`, so that a `next`
    /// dropped half way (a `select!` that took another branch) loses no event: the next
    /// call carries on with the same burst.
    burst_began: Option<Instant>,
}

impl Debounce {
    pub(super) fn new(raw: mpsc::Receiver<()>, quiet: Duration, max_delay: Duration) -> Debounce {
        Debounce {
            raw,
            quiet,
            max_delay,
            burst_began: None,
        }
    }

    /// `Some` once a burst has ended, `None` when the source is gone and nothing is pending.
    /// Needs a tokio runtime with time enabled.
    pub(super) async fn next(&mut self) -> Option<()> {
        loop {
            let Some(began) = self.burst_began else {
                self.raw.recv().await?;
                self.burst_began = Some(Instant::now());
                continue;
            };
            let until = (Instant::now() + self.quiet).min(began + self.max_delay);
            match tokio::time::timeout_at(until, self.raw.recv()).await {
                Ok(Some(())) => {}
                // A source gone mid-burst still owes the caller the rescan for that burst.
                Ok(None) | Err(_) => {
                    self.burst_began = None;
                    return Some(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, RemoveKind, RenameMode};
    use tokio::time::timeout;

    /// Bound for anything that should happen within a second.
    const BOUND: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_new_file_is_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let (_watcher, mut rx) = watch(dir.path()).unwrap();
        std::fs::write(dir.path().join("new.txt"), b"hello").unwrap();
        assert_eq!(timeout(BOUND, rx.recv()).await, Ok(Some(())));
    }

    #[tokio::test]
    async fn changes_in_subfolders_are_signalled() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let (_watcher, mut rx) = watch(dir.path()).unwrap();
        std::fs::write(dir.path().join("a/b/deep.txt"), b"deep").unwrap();
        assert_eq!(timeout(BOUND, rx.recv()).await, Ok(Some(())));
    }

    #[tokio::test]
    async fn a_missing_folder_is_an_error() {
        let err = watch(Path::new("/nonexistent/superpeer-watch")).unwrap_err();
        assert!(format!("{err:#}").contains("cannot watch"), "{err:#}");
    }

    #[test]
    fn watching_needs_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        assert!(watch(dir.path()).is_err());
    }

    #[tokio::test]
    async fn a_burst_is_one_signal() {
        let (raw_tx, raw_rx) = mpsc::channel(1);
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(debounce(
            raw_rx,
            tx,
            Duration::from_millis(100),
            Duration::from_secs(10),
        ));
        for _ in 0..50 {
            let _ = raw_tx.try_send(());
        }
        let sent = Instant::now();
        assert_eq!(timeout(BOUND, rx.recv()).await, Ok(Some(())));
        assert!(
            sent.elapsed() >= Duration::from_millis(100),
            "waited for quiet"
        );
        // Nothing more happened, so nothing more is signalled.
        assert!(
            timeout(Duration::from_millis(500), rx.recv())
                .await
                .is_err()
        );
        // The next event is signalled again; closing the source ends the stream.
        raw_tx.try_send(()).unwrap();
        assert_eq!(timeout(BOUND, rx.recv()).await, Ok(Some(())));
        drop(raw_tx);
        assert_eq!(timeout(BOUND, rx.recv()).await, Ok(None));
    }

    #[tokio::test]
    async fn a_folder_that_never_goes_quiet_is_still_signalled() {
        let (raw_tx, raw_rx) = mpsc::channel(1);
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(debounce(
            raw_rx,
            tx,
            Duration::from_millis(300),
            Duration::from_millis(600),
        ));
        let feeder = tokio::spawn(async move {
            // Events every 50 ms for 4 s: never quiet for 300 ms.
            for _ in 0..80 {
                let _ = raw_tx.try_send(());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        // Well before the events stop.
        assert_eq!(
            timeout(Duration::from_secs(3), rx.recv()).await,
            Ok(Some(()))
        );
        feeder.abort();
    }

    #[tokio::test]
    async fn a_cancelled_wait_loses_no_event() {
        let (raw_tx, raw_rx) = mpsc::channel(1);
        let mut signals = Debounce::new(raw_rx, Duration::from_millis(200), BOUND);
        raw_tx.try_send(()).unwrap();
        // Cut off while waiting for quiet, after the event was taken from the channel.
        let cut = timeout(Duration::from_millis(50), signals.next()).await;
        assert!(cut.is_err());
        // No event will come again: the signal can only come from the burst begun above.
        drop(raw_tx);
        assert_eq!(timeout(BOUND, signals.next()).await, Ok(Some(())));
        assert_eq!(timeout(BOUND, signals.next()).await, Ok(None));
    }

    #[test]
    fn reads_do_not_count_as_changes() {
        assert!(!may_change_shares(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!may_change_shares(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!may_change_shares(&EventKind::Modify(
            ModifyKind::Metadata(MetadataKind::AccessTime)
        )));
        assert!(may_change_shares(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(may_change_shares(&EventKind::Create(CreateKind::File)));
        assert!(may_change_shares(&EventKind::Remove(RemoveKind::Any)));
        assert!(may_change_shares(&EventKind::Modify(ModifyKind::Name(
            RenameMode::Both
        ))));
        assert!(may_change_shares(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::Permissions
        ))));
    }
}
