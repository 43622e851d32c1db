//! Verified ranges: BLAKE3 verified streaming (the bao format, `bao-tree` crate) with chunk
//! groups of [`BLOCK`] bytes, so every downloaded byte is checked against the content id
//! before anyone sees it.
//!
//! The content id stays the plain BLAKE3 hash of the file (what `b3sum` prints): the bao
//! tree is BLAKE3's own hash tree, cut off at 16 KiB groups instead of 1 KiB chunks.
//!
//! Message flow of one range (the framing around it lives elsewhere):
//! 1. The holder hashes each shared file once ([`Outboard::of_file`]) and keeps the
//!    outboard: the hash tree without the data, 64 bytes per 16 KiB (1/256 of the file).
//! 2. The downloader knows the content id and, from the holder's Have answer, the size. It
//!    asks for bytes `[start, start + len)`: `start` a multiple of [`BLOCK`], `len` too
//!    unless the range ends at the end of the file.
//! 3. The holder calls [`read_range`]: it reads only that part of the file, checks it
//!    against the outboard (a file changed since it was hashed is [`VerifyError::Stale`],
//!    never served under the old id) and sends the bao encoding after a RangeFollows
//!    header: the 64-byte hash pair of each tree node from the root down to the range, in
//!    pre-order, interleaved with the 16 KiB groups of data.
//! 4. The downloader works out the encoding's [`Layout`] itself (never trusting a length
//!    the peer claims), reads it into [`Parts`] and calls [`verify`]: every hash pair is
//!    checked against the hash above it, starting from the content id, and every group
//!    against its leaf hash (which covers its offset too). It writes the bytes only if all
//!    of them check out.
//!
//! [`encode_range`] and [`decode_range`] do 3 and 4 on one contiguous buffer.
//!
//! The size is part of the tree's shape. A wrong size makes a range that holds the last
//! block fail; a range before it may still verify, but then its bytes are the content's
//! genuine bytes at that offset, so nothing false is ever returned.
//!
//! Not here: framing, QUIC streams, choosing ranges or holders, writing to disk. The
//! encoding's layout and check live in `encoding`.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

use bao_tree::io::outboard::PostOrderMemOutboard;
use bao_tree::io::sync::outboard_post_order;
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};
use superpeer_common::ContentId;

pub use super::encoding::{Layout, PAIR_LEN, Parts, Segment, read_range, verify};

/// Bytes per verified block: BLAKE3 chunk groups of 16 KiB.
pub const BLOCK: u64 = 16 * 1024;

/// [`BLOCK`] as bao-tree spells it: 2^4 BLAKE3 chunks of 1 KiB.
const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(4);

/// Read buffer while building an outboard; large reads keep syscalls rare.
const READ_BUFFER: usize = 256 * 1024;

/// Why a range could not be encoded or did not verify.
#[derive(Debug)]
pub enum VerifyError {
    /// The range is not one we serve or accept: it must start on a [`BLOCK`] boundary
    /// inside the file, end on one or at the end of the file, and be empty only for an
    /// empty file.
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

/// The bao outboard (the hash tree without the data) of a file, computed once per file.
#[derive(Clone)]
pub struct Outboard {
    /// Post-order hash pairs of the whole file; its root is the content id.
    inner: PostOrderMemOutboard,
}

impl Outboard {
    /// Hashes the file at `path` (streaming, constant memory apart from the tree,
    /// ~size/16KiB*64 bytes) and builds its outboard.
    pub fn of_file(path: &Path) -> io::Result<Outboard> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        let mut reader = BufReader::with_capacity(READ_BUFFER, file);
        let tree = BaoTree::new(size, BLOCK_SIZE);
        // Only a capacity hint: a tree too large for memory fails when it grows.
        let mut data = Vec::with_capacity(usize::try_from(tree.outboard_size()).unwrap_or(0));
        let root = outboard_post_order(&mut reader, tree, &mut data).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                changed_while_hashing()
            } else {
                e
            }
        })?;
        // A file that grew while we read it would otherwise get the id of a prefix.
        let mut probe = Vec::new();
        if reader.take(1).read_to_end(&mut probe)? != 0 {
            return Err(changed_while_hashing());
        }
        Ok(Outboard {
            inner: PostOrderMemOutboard { root, tree, data },
        })
    }

    /// The outboard of bytes in memory (tests and small files).
    pub fn of_bytes(data: &[u8]) -> Outboard {
        Outboard {
            inner: PostOrderMemOutboard::create(data, BLOCK_SIZE),
        }
    }

    /// The content id: the plain BLAKE3 hash of the file, equal to
    /// [`ContentId::of_file`].
    pub fn root(&self) -> ContentId {
        ContentId::from_bytes(*self.inner.root.as_bytes())
    }

    /// Size of the file in bytes.
    pub fn size(&self) -> u64 {
        self.inner.tree.size()
    }

    /// The hash tree, for encoding ranges.
    pub(super) fn tree(&self) -> &PostOrderMemOutboard {
        &self.inner
    }
}

impl fmt::Debug for Outboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outboard")
            .field("root", &self.root())
            .field("size", &self.size())
            .field("tree_bytes", &self.inner.data.len())
            .finish()
    }
}

fn changed_while_hashing() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the file changed while it was hashed",
    )
}

/// Holder side: the bao encoding of bytes [start, start+len) of the file (start and len
/// multiples of BLOCK, except len may end at EOF) as one buffer, i.e. what goes on the wire
/// after a RangeFollows header. Reads only that part of the file, and checks it against
/// the outboard (see [`read_range`]). A holder sends [`Parts`] without this copy.
pub fn encode_range(
    file: &mut (impl Read + Seek),
    outboard: &Outboard,
    start: u64,
    len: u64,
) -> Result<Vec<u8>, VerifyError> {
    let layout = Layout::new(outboard.size(), start, len)?;
    let mut parts = Parts::default();
    read_range(file, outboard, &layout, &mut parts)?;
    Ok(parts.wire(&layout))
}

/// Downloader side: checks an encoded range against the content id and the file size
/// (known from the holder's Have answer) and returns the verified bytes of
/// [start, start+len). Nothing unverified is returned: any tampering (flipped byte
/// anywhere, truncated, extra bytes, wrong range) is an error. A downloader reads into
/// [`Parts`] and calls [`verify`] without these copies.
pub fn decode_range(
    root: ContentId,
    size: u64,
    start: u64,
    len: u64,
    encoded: &[u8],
) -> Result<Vec<u8>, VerifyError> {
    let layout = Layout::new(size, start, len)?;
    let (expected, actual) = (layout.encoded_len(), encoded.len() as u64);
    if actual != expected {
        return Err(VerifyError::Length { expected, actual });
    }
    let parts = Parts::from_wire(&layout, encoded);
    verify(root, &layout, &parts)?;
    Ok(parts.into_inner().1)
}

/// The encoded size of a range, so a receiver can cap what it accepts (never trust the
/// peer's length beyond this). Zero for a range [`decode_range`] rejects.
pub fn encoded_len(size: u64, start: u64, len: u64) -> u64 {
    Layout::new(size, start, len).map_or(0, |layout| layout.encoded_len())
}

/// A checked range `[start, end)` of a file of `size` bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    start: u64,
    end: u64,
    size: u64,
}

impl Span {
    /// The range `[start, start + len)` if it is one we serve or accept: on the block grid,
    /// inside the file, empty only for an empty file.
    pub(super) fn new(size: u64, start: u64, len: u64) -> Result<Span, VerifyError> {
        let bad = VerifyError::BadRange { start, len, size };
        let Some(end) = start.checked_add(len) else {
            return Err(bad);
        };
        let aligned = start % BLOCK == 0 && (end % BLOCK == 0 || end == size);
        let non_empty = len > 0 || size == 0;
        if !aligned || !non_empty || end > size {
            return Err(bad);
        }
        Ok(Span { start, end, size })
    }

    pub(super) fn start(&self) -> u64 {
        self.start
    }

    pub(super) fn len(&self) -> u64 {
        self.end - self.start
    }

    pub(super) fn size(&self) -> u64 {
        self.size
    }

    /// The length as a buffer size.
    pub(super) fn data_len(&self) -> Result<usize, VerifyError> {
        usize::try_from(self.len()).map_err(|_| VerifyError::BadRange {
            start: self.start,
            len: self.len(),
            size: self.size,
        })
    }

    pub(super) fn tree(&self) -> BaoTree {
        BaoTree::new(self.size, BLOCK_SIZE)
    }

    /// The range in BLAKE3 chunks. A range that reaches the end is open, so the last
    /// (possibly short) chunk is included, and an empty file still checks its one empty
    /// leaf against the root.
    pub(super) fn chunks(&self) -> ChunkRanges {
        let first = ChunkNum::full_chunks(self.start);
        if self.end == self.size {
            ChunkRanges::from(first..)
        } else {
            ChunkRanges::from(first..ChunkNum::full_chunks(self.end))
        }
    }
}

#[cfg(test)]
#[path = "verified_tests.rs"]
mod tests;
