//! Hashing progress: the bar shown on a terminal while a large shared folder is hashed,
//! and the counters status, the web UI and `/metrics` read while any scan hashes.
//!
//! Hashing runs at disk speed, so a first run over hundreds of gigabytes takes minutes; a
//! user at a terminal should see that the node is working and when it will be done. A small
//! folder hashes in a blink and a daemon's stderr is usually a log file, so the bar appears
//! only when asked for, on a terminal, and for more than [`PROGRESS_THRESHOLD`] bytes.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Below this many bytes to hash there is no bar (64 MiB: well under a second on an SSD).
pub const PROGRESS_THRESHOLD: u64 = 64 * 1024 * 1024;

const TEMPLATE: &str =
    "hashing {msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}";

/// What the scan under way has to hash and has hashed, shared with the threads that show
/// it. Written by one scan at a time (the folder's lock), read at any time: a reader may
/// see one file's count a moment before its bytes, which is fine for a progress display.
#[derive(Debug, Default)]
pub struct Hashing {
    files: AtomicU64,
    files_done: AtomicU64,
    bytes: AtomicU64,
    bytes_done: AtomicU64,
    /// Bytes hashed since the node started, over every scan.
    hashed_total: AtomicU64,
}

/// A reading of [`Hashing`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashingNow {
    /// Files the scan under way has to hash (0 when no scan is hashing).
    pub files: u64,
    pub files_done: u64,
    /// Their bytes, and how many of those are hashed.
    pub bytes: u64,
    pub bytes_done: u64,
    /// Bytes hashed since the node started.
    pub hashed_total: u64,
}

impl Hashing {
    /// The counters now.
    pub fn now(&self) -> HashingNow {
        HashingNow {
            files: self.files.load(Ordering::Relaxed),
            files_done: self.files_done.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            hashed_total: self.hashed_total.load(Ordering::Relaxed),
        }
    }
}

/// One scan's hashing: a progress bar on stderr (or nothing) and the shared counters.
/// Dropping it ends the scan's hashing: the bar is cleared and the counters say idle.
pub struct HashProgress {
    bar: Option<ProgressBar>,
    shared: Arc<Hashing>,
}

impl HashProgress {
    /// Hashing `files` files of `total_bytes` in all. A bar is shown if `wanted`, stderr is
    /// a terminal and the work is large enough to be worth one.
    pub fn start(wanted: bool, files: usize, total_bytes: u64, shared: Arc<Hashing>) -> Self {
        shared.files_done.store(0, Ordering::Relaxed);
        shared.bytes_done.store(0, Ordering::Relaxed);
        shared.bytes.store(total_bytes, Ordering::Relaxed);
        shared.files.store(files as u64, Ordering::Relaxed);
        let bar = (wanted && total_bytes > PROGRESS_THRESHOLD && std::io::stderr().is_terminal())
            .then(|| {
                let bar =
                    ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
                if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_message(format!("{files} files"));
                bar
            });
        Self { bar, shared }
    }

    /// `bytes` more were hashed.
    pub fn inc(&self, bytes: u64) {
        self.shared.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.shared.hashed_total.fetch_add(bytes, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// One more file is done with (hashed, or skipped as unreadable or changing).
    pub fn file_done(&self) {
        self.shared.files_done.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a bar is shown.
    #[cfg(test)]
    pub fn is_shown(&self) -> bool {
        self.bar.is_some()
    }
}

impl Drop for HashProgress {
    fn drop(&mut self) {
        for counter in [&self.shared.files, &self.shared.files_done] {
            counter.store(0, Ordering::Relaxed);
        }
        for counter in [&self.shared.bytes, &self.shared.bytes_done] {
            counter.store(0, Ordering::Relaxed);
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters() -> Arc<Hashing> {
        Arc::new(Hashing::default())
    }

    #[test]
    fn no_bar_unless_wanted_and_large() {
        assert!(!HashProgress::start(false, 10, u64::MAX, counters()).is_shown());
        assert!(!HashProgress::start(true, 10, PROGRESS_THRESHOLD, counters()).is_shown());
        // Large and wanted: shown exactly when stderr is a terminal (not under `cargo test`
        // capturing output, usually).
        let large = HashProgress::start(true, 10, PROGRESS_THRESHOLD + 1, counters());
        assert_eq!(large.is_shown(), std::io::stderr().is_terminal());
        large.inc(1);
    }

    #[test]
    fn the_counters_follow_a_scan_and_say_idle_after_it() {
        let shared = counters();
        let scan = HashProgress::start(false, 2, 300, shared.clone());
        scan.inc(100);
        scan.file_done();
        assert_eq!(
            shared.now(),
            HashingNow {
                files: 2,
                files_done: 1,
                bytes: 300,
                bytes_done: 100,
                hashed_total: 100,
            }
        );
        scan.inc(200);
        drop(scan);
        // Idle, and the total carries over to the next scan.
        assert_eq!(
            shared.now(),
            HashingNow {
                hashed_total: 300,
                ..HashingNow::default()
            }
        );
        HashProgress::start(false, 1, 5, shared.clone()).inc(5);
        assert_eq!(shared.now().hashed_total, 305);
    }
}
