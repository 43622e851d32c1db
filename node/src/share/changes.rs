//! [`FolderChanges`]: "rescan the shared folder now" signals, and [`open_watched`], which
//! opens a [`SharedFolder`] so that no change is missed between its first scan and its
//! first signal.
//!
//! Order matters when opening: the watch is registered first, the folder scanned second. A
//! file copied in while the scan runs, or just after it, then leaves an event in the
//! watcher's channel, and the caller's first rescan (it rescans on every signal) picks it
//! up. Scanning first would leave a window in which a new file is neither seen by the scan
//! nor reported by the watch, so it would stay unpublished until some later change.
//!
//! Where the file system cannot be watched, the signal comes from a timer every
//! [`POLL_INTERVAL`] instead: a rescan hashes only what changed, so polling costs a walk of
//! the folder. It needs no thread: nothing happens between two signals, so the timer lives
//! in [`FolderChanges::changed`] itself.
//!
//! Both kinds can be created before a tokio runtime exists (the leaf opens its folder before
//! starting one); `changed` is then awaited inside the runtime. Dropping a `FolderChanges`
//! drops the watcher, which stops notify's thread.

use std::path::Path;
use std::time::Duration;

use notify::RecommendedWatcher;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

use super::SharedFolder;
use super::watch::{Debounce, MAX_DELAY, QUIET, notify_watcher};

/// How often a folder that cannot be watched is rescanned.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Debounced signals that the shared folder may have changed: answer each with
/// [`SharedFolder::rescan`] (in `spawn_blocking`).
#[derive(Debug)]
pub struct FolderChanges {
    source: Source,
}

#[derive(Debug)]
enum Source {
    Watch {
        /// Held for its `Drop`, which stops watching.
        _watcher: RecommendedWatcher,
        signals: Debounce,
    },
    Poll {
        every: Duration,
        /// When the next signal is due. Kept here so that a `changed` dropped half way does
        /// not restart the wait.
        next: Instant,
    },
}

impl FolderChanges {
    /// Watches `dir` recursively; an error if the file system cannot be watched.
    pub fn watch(dir: &Path) -> anyhow::Result<FolderChanges> {
        // One slot: a pending event already means "rescan", more would add nothing.
        let (raw_tx, raw_rx) = mpsc::channel(1);
        let watcher = notify_watcher(dir, raw_tx)?;
        Ok(FolderChanges {
            source: Source::Watch {
                _watcher: watcher,
                signals: Debounce::new(raw_rx, QUIET, MAX_DELAY),
            },
        })
    }

    /// Watches `dir`, or, if it cannot be watched, signals every [`POLL_INTERVAL`] (with a
    /// warning saying why).
    pub fn watch_or_poll(dir: &Path) -> FolderChanges {
        FolderChanges::watch(dir).unwrap_or_else(|e| FolderChanges::poll_because(dir, &e))
    }

    /// A signal every `every`, the first one `every` from now, without watching anything.
    pub fn poll(every: Duration) -> FolderChanges {
        FolderChanges {
            source: Source::Poll {
                every,
                next: Instant::now() + every,
            },
        }
    }

    /// The fallback for a folder that cannot be watched: said once, here, not on every tick.
    fn poll_because(dir: &Path, e: &anyhow::Error) -> FolderChanges {
        warn!(
            "cannot watch {} ({e:#}); rescanning it every {} s instead",
            dir.display(),
            POLL_INTERVAL.as_secs()
        );
        FolderChanges::poll(POLL_INTERVAL)
    }

    /// Whether the signals come from the timer rather than the file system.
    pub fn is_polling(&self) -> bool {
        matches!(self.source, Source::Poll { .. })
    }

    /// Waits for the next signal: `Some` when the folder may have changed, `None` when the
    /// watch has ended (it then stays ended). Cancel safe. Needs a tokio runtime with time
    /// enabled.
    pub async fn changed(&mut self) -> Option<()> {
        match &mut self.source {
            Source::Watch { signals, .. } => signals.next().await,
            Source::Poll { every, next } => {
                tokio::time::sleep_until(*next).await;
                // From now rather than from the missed deadline: a caller busy with a long
                // rescan gets its next signal a full interval later, not at once.
                *next = Instant::now() + *every;
                Some(())
            }
        }
    }
}

/// [`SharedFolder::open`] together with the [`FolderChanges`] that keep it up to date:
/// registers the watch before the first scan, so that every change made after this is
/// called is signalled (see the module docs). Falls back to polling when `dir` cannot be
/// watched; an error only when the folder cannot be opened.
pub fn open_watched(
    dir: &Path,
    state_dir: &Path,
    progress: bool,
) -> anyhow::Result<(SharedFolder, FolderChanges)> {
    open_watched_with(dir, state_dir, progress, || {})
}

/// [`open_watched`], running `after_scan` right after the first scan: tests change the
/// folder there, in the window the watch has to cover.
fn open_watched_with(
    dir: &Path,
    state_dir: &Path,
    progress: bool,
    after_scan: impl FnOnce(),
) -> anyhow::Result<(SharedFolder, FolderChanges)> {
    let watched = FolderChanges::watch(dir);
    let folder = SharedFolder::open(dir, state_dir, progress)?;
    after_scan();
    // The fallback is decided only now, so that a folder that cannot be opened at all gets
    // its own error and no warning about watching. Polling needs no early start: its first
    // signal comes after the scan anyway, and a rescan sees everything.
    let changes = watched.unwrap_or_else(|e| FolderChanges::poll_because(dir, &e));
    Ok((folder, changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::timeout;

    /// Bound for a signal that should come within a second.
    const BOUND: Duration = Duration::from_secs(5);

    /// A runtime started after the watch, as the leaf does.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn a_file_added_right_after_the_first_scan_is_signalled() {
        let share = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        std::fs::write(share.path().join("old.txt"), b"old").unwrap();
        let late = share.path().join("late.txt");
        let (mut folder, mut changes) =
            open_watched_with(share.path(), state.path(), false, || {
                std::fs::write(&late, b"copied in just after the scan").unwrap();
            })
            .unwrap();
        assert!(!changes.is_polling());
        assert_eq!(folder.len(), 1, "the scan ran before the file was written");

        let signal = runtime().block_on(async { timeout(BOUND, changes.changed()).await });
        assert_eq!(signal, Ok(Some(())), "no change signal for late.txt");
        let delta = folder.rescan().unwrap();
        let added: Vec<_> = delta.added.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(added, ["late.txt"]);
        assert!(delta.removed.is_empty());
    }

    #[test]
    fn a_folder_that_cannot_be_opened_is_an_error() {
        let state = tempfile::tempdir().unwrap();
        let missing = Path::new("/nonexistent/superpeer-share");
        let err = open_watched(missing, state.path(), false).unwrap_err();
        assert!(format!("{err:#}").contains("cannot share"), "{err:#}");
    }

    #[test]
    fn the_state_dir_cannot_be_shared_watched_or_not() {
        let state = tempfile::tempdir().unwrap();
        let err = open_watched(state.path(), state.path(), false).unwrap_err();
        assert!(format!("{err:#}").contains("state dir"), "{err:#}");
    }

    #[test]
    fn an_unwatchable_folder_falls_back_to_polling() {
        let changes = FolderChanges::watch_or_poll(Path::new("/nonexistent/superpeer-watch"));
        assert!(changes.is_polling());
    }

    #[test]
    fn polling_signals_on_every_interval() {
        // Created outside a runtime, like the watcher.
        let mut changes = FolderChanges::poll(Duration::from_millis(100));
        runtime().block_on(async {
            let started = Instant::now();
            for _ in 0..3 {
                assert_eq!(timeout(BOUND, changes.changed()).await, Ok(Some(())));
            }
            assert!(
                started.elapsed() >= Duration::from_millis(300),
                "one per interval"
            );
        });
    }

    #[test]
    fn a_cancelled_wait_keeps_its_deadline() {
        let mut changes = FolderChanges::poll(Duration::from_millis(600));
        runtime().block_on(async {
            let started = Instant::now();
            // Cut off twice before the deadline: the third wait still ends at 600 ms, not a
            // full interval after the last cut (1,100 ms).
            for _ in 0..2 {
                let cut = timeout(Duration::from_millis(250), changes.changed()).await;
                assert!(cut.is_err());
            }
            assert_eq!(timeout(BOUND, changes.changed()).await, Ok(Some(())));
            assert!(started.elapsed() < Duration::from_millis(1000));
        });
    }

    #[test]
    fn watching_works_without_a_runtime_until_awaited() {
        let dir = tempfile::tempdir().unwrap();
        let mut changes = FolderChanges::watch(dir.path()).unwrap();
        std::fs::write(dir.path().join("new.txt"), b"hello").unwrap();
        let signal = runtime().block_on(async { timeout(BOUND, changes.changed()).await });
        assert_eq!(signal, Ok(Some(())));
    }
}
