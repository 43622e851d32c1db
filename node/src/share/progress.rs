//! The progress bar shown while a large shared folder is hashed.
//!
//! Hashing runs at disk speed, so a first run over hundreds of gigabytes takes minutes; a
//! user at a terminal should see that the node is working and when it will be done. A small
//! folder hashes in a blink and a daemon's stderr is usually a log file, so the bar appears
//! only when asked for, on a terminal, and for more than [`PROGRESS_THRESHOLD`] bytes.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Below this many bytes to hash there is no bar (64 MiB: well under a second on an SSD).
pub const PROGRESS_THRESHOLD: u64 = 64 * 1024 * 1024;

const TEMPLATE: &str =
    "hashing {msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}";

/// A progress bar on stderr, or nothing. Cleared when dropped.
pub struct HashProgress(Option<ProgressBar>);

impl HashProgress {
    /// A bar for hashing `files` files of `total_bytes` in all, if `wanted`, stderr is a
    /// terminal and the work is large enough to be worth one.
    pub fn start(wanted: bool, files: usize, total_bytes: u64) -> Self {
        if !wanted || total_bytes <= PROGRESS_THRESHOLD || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("{files} files"));
        Self(Some(bar))
    }

    /// `bytes` more were hashed.
    pub fn inc(&self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(bytes);
        }
    }

    /// Whether a bar is shown.
    #[cfg(test)]
    pub fn is_shown(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for HashProgress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_bar_unless_wanted_and_large() {
        assert!(!HashProgress::start(false, 10, u64::MAX).is_shown());
        assert!(!HashProgress::start(true, 10, PROGRESS_THRESHOLD).is_shown());
        // Large and wanted: shown exactly when stderr is a terminal (not under `cargo test`
        // capturing output, usually).
        let large = HashProgress::start(true, 10, PROGRESS_THRESHOLD + 1);
        assert_eq!(large.is_shown(), std::io::stderr().is_terminal());
        large.inc(1);
    }
}
