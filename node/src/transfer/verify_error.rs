//! [`VerifyError`]: why a range could not be encoded or did not verify, on either side of
//! a transfer.

use std::fmt;
use std::io;

/// Why a range could not be encoded or did not verify.
#[derive(Debug)]
pub enum VerifyError {
    /// The range is not one we serve or accept: it must start on a [`BLOCK`] boundary
    /// inside the file, end on one or at the end of the file, and be empty only for an
    /// empty file.
    ///
    /// [`BLOCK`]: crate::transfer::verified::BLOCK
    BadRange {
        /// First byte asked for.
        start: u64,
        /// Bytes asked for.
        len: u64,
        /// Size of the file.
        size: u64,
    },
    /// The encoded range is not exactly as long as its range requires: truncated, or
    /// extra bytes after it.
    Length {
        /// What the range's encoding takes.
        expected: u64,
        /// What arrived.
        actual: u64,
    },
    /// A hash or data in the encoding does not match the content id: the holder sent
    /// something that is not this content.
    Corrupt {
        /// Start of the tree node or block that failed.
        offset: u64,
    },
    /// Holder side: the file no longer matches the outboard it was hashed into (changed or
    /// truncated since); it has to be re-hashed, not served under the old id.
    Stale,
    /// Holder side: reading the file failed.
    Io(io::Error),
}

// Written out rather than derived: `thiserror` is not a dependency of this crate yet.
impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRange { start, len, size } => {
                write!(
                    f,
                    "invalid range: {len} bytes at {start} of a {size}-byte file"
                )
            }
            Self::Length { expected, actual } => {
                write!(f, "encoded range is {actual} bytes, expected {expected}")
            }
            Self::Corrupt { offset } => write!(f, "verification failed near byte {offset}"),
            Self::Stale => f.write_str("the file changed since it was hashed"),
            Self::Io(e) => write!(f, "reading the file: {e}"),
        }
    }
}

impl std::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for VerifyError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}
