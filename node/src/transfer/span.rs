//! The block grid of verified ranges: [`BLOCK`], and [`Span`], a range of a file checked
//! against the grid, with its place in the bao tree.

use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};

use super::verify_error::VerifyError;

/// Bytes per verified block: BLAKE3 chunk groups of 16 KiB.
pub const BLOCK: u64 = 16 * 1024;

/// [`BLOCK`] as bao-tree spells it: 2^4 BLAKE3 chunks of 1 KiB.
pub(super) const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(4);

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
