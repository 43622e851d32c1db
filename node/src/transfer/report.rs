//! What a download tells its caller: [`Progress`] while it runs, [`DownloadError`] when it
//! stops short. Below the driver and its workers, which all report through these.

use std::io;
use std::path::PathBuf;

use superpeer_common::{ContentId, NodeId};

use crate::nat::Reached;

/// What a download reports while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The download began; `done_bytes` were verified by an earlier run.
    Started {
        /// Size of the file.
        size: u64,
        /// Bytes already verified.
        done_bytes: u64,
    },
    /// A piece was verified and written.
    Piece {
        /// Bytes verified so far.
        bytes_done: u64,
        /// Size of the file.
        total: u64,
        /// The holder it came from.
        from: NodeId,
    },
    /// A connection to a holder was made, and how (directly, or through its supernode).
    HolderReached {
        /// Who it is.
        node_id: NodeId,
        /// How.
        how: Reached,
    },
    /// A holder was dropped from this download.
    HolderDropped {
        /// Who it was (unknown only for an unpinned holder we could not reach).
        node_id: Option<NodeId>,
        /// Why, for people.
        reason: String,
    },
    /// The file is complete, verified, and at `path`.
    Finished {
        /// Where it is.
        path: PathBuf,
    },
}

/// Why a download did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Every holder was dropped (or none was given) with pieces still missing. The partial
    /// file and its state stay, so a later download of the same content resumes.
    #[error("no holder left to download from ({missing} of {total} pieces missing)")]
    NoHolders {
        /// Pieces still missing.
        missing: u64,
        /// Pieces in the file.
        total: u64,
    },
    /// No holder proved that the content has the size the search result gave (see
    /// `size_proof`): the size is a lie, or its holders are gone. Nothing was allocated.
    #[error("no holder proved the content is {size} bytes ({asked} asked)")]
    SizeUnproven {
        /// The size claimed.
        size: u64,
        /// Holders asked.
        asked: usize,
    },
    /// The size is over [`MAX_DOWNLOAD_SIZE`](crate::transfer::MAX_DOWNLOAD_SIZE).
    #[error("{size} bytes is more than the {max}-byte limit of a download")]
    TooLarge {
        /// The size asked for.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The downloads folder or the partial file could not be created, written or renamed
    /// (not writable, disk full). Verified pieces saved so far stay for a resume.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What failed, for people ("cannot write to").
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Every piece verified, yet the whole file does not hash to the content id: the
    /// partial file changed on disk. It was removed; the next attempt starts over.
    #[error("the assembled file hashes to {actual}, not {expected}; it was discarded")]
    Corrupt {
        /// The content id asked for.
        expected: ContentId,
        /// What the file on disk hashed to.
        actual: ContentId,
    },
}
