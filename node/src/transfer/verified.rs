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
//! 3. The holder calls [`encode_range`]: it reads only that part of the file, checks it
//!    against the outboard (a file changed since it was hashed is [`VerifyError::Stale`],
//!    never served under the old id) and sends the bao encoding after a RangeFollows
//!    header: the 64-byte hash pair of each tree node from the root down to the range, in
//!    pre-order, interleaved with the 16 KiB groups of data.
//! 4. The downloader reads at most [`encoded_len`] bytes (never trusting a length the peer
//!    claims) and calls [`decode_range`]: every hash pair is checked against the hash above
//!    it, starting from the content id, and every group against its leaf hash (which
//!    covers its offset too). It gets the bytes only if all of them check out.
//!
//! The size is part of the tree's shape. A wrong size makes a range that holds the last
//! block fail; a range before it may still verify, but then its bytes are the content's
//! genuine bytes at that offset, so nothing false is ever returned.
//!
//! Not here: framing, QUIC streams, choosing ranges or holders, writing to disk.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use bao_tree::io::outboard::PostOrderMemOutboard;
use bao_tree::io::sync::{
    DecodeResponseIter, ReadAt, encode_ranges_validated, outboard_post_order, truncate_ranges,
};
use bao_tree::io::{BaoContentItem, DecodeError, EncodeError};
use bao_tree::iter::BaoChunk;
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges, blake3};
use superpeer_common::ContentId;

/// Bytes per verified block: BLAKE3 chunk groups of 16 KiB.
pub const BLOCK: u64 = 16 * 1024;

/// [`BLOCK`] as bao-tree spells it: 2^4 BLAKE3 chunks of 1 KiB.
const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(4);

/// Read buffer while building an outboard; large reads keep syscalls rare.
const READ_BUFFER: usize = 256 * 1024;

/// Bytes of one hash pair in the encoding.
const PAIR_LEN: u64 = 64;

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
/// multiples of BLOCK, except len may end at EOF), i.e. what goes on the wire after a
/// RangeFollows header. Reads only the needed part of the file.
pub fn encode_range(
    file: &mut (impl Read + Seek),
    outboard: &Outboard,
    start: u64,
    len: u64,
) -> Result<Vec<u8>, VerifyError> {
    let span = Span::new(outboard.size(), start, len)?;
    let mut bytes = vec![0; span.len_usize()?];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut bytes).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            VerifyError::Stale
        } else {
            VerifyError::Io(e)
        }
    })?;
    let window = Window { start, bytes };
    // Only a capacity hint; the encoder grows the buffer if needed.
    let mut encoded = Vec::with_capacity(usize::try_from(span.encoded_len()).unwrap_or(0));
    // Validated: a block that no longer matches the outboard is never sent.
    encode_ranges_validated(window, &outboard.inner, &span.chunks(), &mut encoded).map_err(
        |e| match e {
            EncodeError::Io(e) => VerifyError::Io(e),
            _ => VerifyError::Stale,
        },
    )?;
    Ok(encoded)
}

/// Downloader side: checks an encoded range against the content id and the file size
/// (known from the holder's Have answer) and returns the verified bytes of
/// [start, start+len). Nothing unverified is returned: any tampering (flipped byte
/// anywhere, truncated, extra bytes, wrong range) is an error.
pub fn decode_range(
    root: ContentId,
    size: u64,
    start: u64,
    len: u64,
    encoded: &[u8],
) -> Result<Vec<u8>, VerifyError> {
    let span = Span::new(size, start, len)?;
    let expected = span.encoded_len();
    let actual = encoded.len() as u64;
    if actual != expected {
        return Err(VerifyError::Length { expected, actual });
    }
    let mut out = Vec::with_capacity(span.len_usize()?);
    let chunks = span.chunks();
    let root = blake3::Hash::from_bytes(*root.as_bytes());
    for item in DecodeResponseIter::new(root, span.tree(), encoded, &chunks) {
        match item.map_err(|e| decode_error(e, actual))? {
            BaoContentItem::Parent(_) => {}
            BaoContentItem::Leaf(leaf) => {
                // The decoder yields the range's blocks in order; check it anyway, since
                // these bytes go straight into the file.
                if leaf.offset != start + out.len() as u64 {
                    return Err(VerifyError::Corrupt {
                        offset: leaf.offset,
                    });
                }
                out.extend_from_slice(&leaf.data);
            }
        }
    }
    if out.len() as u64 != len {
        return Err(VerifyError::Corrupt {
            offset: start + out.len() as u64,
        });
    }
    Ok(out)
}

/// The encoded size of a range, so a receiver can cap what it accepts (never trust the
/// peer's length beyond this). Zero for a range [`decode_range`] rejects.
pub fn encoded_len(size: u64, start: u64, len: u64) -> u64 {
    Span::new(size, start, len).map_or(0, |span| span.encoded_len())
}

fn decode_error(e: DecodeError, actual: u64) -> VerifyError {
    match e {
        DecodeError::ParentHashMismatch(node) => VerifyError::Corrupt {
            offset: node.chunk_range().start.to_bytes(),
        },
        DecodeError::LeafHashMismatch(chunk) => VerifyError::Corrupt {
            offset: chunk.to_bytes(),
        },
        // Cannot happen after the length check; reported as what it would mean.
        DecodeError::ParentNotFound(_) | DecodeError::LeafNotFound(_) | DecodeError::Io(_) => {
            VerifyError::Length {
                expected: actual.saturating_add(1),
                actual,
            }
        }
    }
}

/// A checked range `[start, end)` of a file of `size` bytes.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u64,
    end: u64,
    size: u64,
}

impl Span {
    fn new(size: u64, start: u64, len: u64) -> Result<Span, VerifyError> {
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

    fn len_usize(&self) -> Result<usize, VerifyError> {
        usize::try_from(self.end - self.start).map_err(|_| VerifyError::BadRange {
            start: self.start,
            len: self.end - self.start,
            size: self.size,
        })
    }

    fn tree(&self) -> BaoTree {
        BaoTree::new(self.size, BLOCK_SIZE)
    }

    /// The range in BLAKE3 chunks. A range that reaches the end is open, so the last
    /// (possibly short) chunk is included, and an empty file still checks its one empty
    /// leaf against the root.
    fn chunks(&self) -> ChunkRanges {
        let first = ChunkNum::full_chunks(self.start);
        if self.end == self.size {
            ChunkRanges::from(first..)
        } else {
            ChunkRanges::from(first..ChunkNum::full_chunks(self.end))
        }
    }

    /// Walks the same pre-order traversal the encoder and decoder use: a hash pair per
    /// parent node on the way, the data of each block in range.
    fn encoded_len(&self) -> u64 {
        let chunks = self.chunks();
        let chunks = truncate_ranges(&chunks, self.size);
        self.tree()
            .ranges_pre_order_chunks_iter_ref(chunks, 0)
            .map(|item| match item {
                BaoChunk::Parent { .. } => PAIR_LEN,
                BaoChunk::Leaf { size, .. } => size as u64,
            })
            .sum()
    }
}

/// The part of the file an encoding needs, read once and addressed by file offset.
struct Window {
    start: u64,
    bytes: Vec<u8>,
}

impl ReadAt for Window {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        let available = pos
            .checked_sub(self.start)
            .and_then(|offset| usize::try_from(offset).ok())
            .and_then(|offset| self.bytes.get(offset..))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "read outside the encoded range",
                )
            })?;
        let n = available.len().min(buf.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..n), available.get(..n)) {
            to.copy_from_slice(from);
        }
        Ok(n)
    }
}

#[cfg(test)]
#[path = "verified_tests.rs"]
mod tests;
