//! One range's bao encoding, worked with in place: its [`Layout`] (which hash pairs and
//! blocks come in which order, from the size and the range alone), its [`Parts`] (the pairs
//! in one buffer, the data contiguous in another, as the file holds it), and the check of
//! the parts against a root hash.
//!
//! Keeping the data contiguous is what saves the copies: the downloader reads each block
//! off the stream straight to its place, checks the whole piece where it lies and writes it
//! to the file in one call; the holder reads the range from the file in one call, checks it
//! there, and hands quinn the pairs and slices of the data in wire order.
//!
//! The check is the one bao-tree's decoder makes, on the same traversal
//! (`ranges_pre_order_chunks_iter_ref`): a stack of hashes still to match, the content id
//! first; each pair must hash to the top one and pushes the children still needed; each
//! block must hash, at its offset, to the top one.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;

use bao_tree::blake3::hazmat::{HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root};
use bao_tree::io::sync::{Outboard as _, truncate_ranges};
use bao_tree::iter::BaoChunk;
use bao_tree::{ChunkNum, TreeNode, blake3};
use superpeer_common::ContentId;

use super::outboard::Outboard;
use super::span::Span;
use super::verify_error::VerifyError;

/// Bytes of one hash pair in the encoding.
pub const PAIR_LEN: usize = 64;

/// The wire layout of one range's encoding, worked out from the size and the range alone
/// (never from what a peer says).
#[derive(Clone, Debug)]
pub struct Layout {
    span: Span,
    items: Vec<Item>,
    pairs: usize,
}

/// One item of an encoding, in wire order.
#[derive(Clone, Copy, Debug)]
enum Item {
    /// The hash pair of `node`'s children, the `index`-th pair of the encoding. It must
    /// hash to `node`'s hash; then the children still needed (`left`, `right`) are next.
    Pair {
        node: TreeNode,
        is_root: bool,
        left: bool,
        right: bool,
        index: usize,
    },
    /// One block: `len` bytes at `at` from the start of the range.
    Block {
        start_chunk: ChunkNum,
        is_root: bool,
        at: usize,
        len: usize,
    },
}

/// One run of an encoding on the wire: a hash pair of [`Parts`] or a block of its data.
pub enum Segment {
    /// The pair at this index.
    Pair(usize),
    /// These bytes of the data.
    Data(Range<usize>),
}

impl Layout {
    /// The layout of bytes `[start, start + len)` of a `size`-byte file: `start` a multiple
    /// of `BLOCK` inside the file, `len` too unless the range ends at the end of the file.
    pub fn new(size: u64, start: u64, len: u64) -> Result<Layout, VerifyError> {
        let span = Span::new(size, start, len)?;
        let bad = || VerifyError::BadRange { start, len, size };
        let chunks = span.chunks();
        let chunks = truncate_ranges(&chunks, size);
        let (mut items, mut pairs, mut at) = (Vec::new(), 0, 0);
        for chunk in span.tree().ranges_pre_order_chunks_iter_ref(chunks, 0) {
            match chunk {
                BaoChunk::Parent {
                    node,
                    is_root,
                    left,
                    right,
                    ..
                } => {
                    items.push(Item::Pair {
                        node,
                        is_root,
                        left,
                        right,
                        index: pairs,
                    });
                    pairs += 1;
                }
                BaoChunk::Leaf {
                    start_chunk,
                    size: block_len,
                    is_root,
                    ranges,
                } => {
                    // A block-aligned range takes whole blocks, in order, back to back.
                    if !ranges.is_all() || start_chunk.to_bytes() != start + at as u64 {
                        return Err(bad());
                    }
                    items.push(Item::Block {
                        start_chunk,
                        is_root,
                        at,
                        len: block_len,
                    });
                    at += block_len;
                }
            }
        }
        if at != span.data_len()? {
            return Err(bad());
        }
        Ok(Layout { span, items, pairs })
    }

    /// Bytes of the encoding: the hash pairs and the data.
    pub fn encoded_len(&self) -> u64 {
        (self.pairs * PAIR_LEN) as u64 + self.span.len()
    }

    /// The encoding in wire order, as runs of [`Parts`]: what to send, without a copy.
    pub fn segments(&self) -> impl Iterator<Item = Segment> + '_ {
        self.items.iter().map(|item| match *item {
            Item::Pair { index, .. } => Segment::Pair(index),
            Item::Block { at, len, .. } => Segment::Data(at..at + len),
        })
    }
}

/// A range's encoding taken apart: its hash pairs in wire order and its data in one
/// contiguous buffer, as in the file. Reusable from piece to piece: the buffers keep their
/// memory.
#[derive(Debug, Default)]
pub struct Parts {
    pairs: Vec<[u8; PAIR_LEN]>,
    data: Vec<u8>,
}

impl Parts {
    /// The data; verified once [`verify`] accepted it.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Sizes the buffers for `layout` and returns the places the encoding's bytes go, in
    /// wire order: fill each with the next bytes of the stream.
    pub fn slots<'a>(&'a mut self, layout: &'a Layout) -> impl Iterator<Item = &'a mut [u8]> {
        self.pairs.resize(layout.pairs, [0; PAIR_LEN]);
        self.data.resize(layout.span.data_len().unwrap_or(0), 0);
        let mut pairs = self.pairs.iter_mut();
        let mut data: &mut [u8] = &mut self.data;
        layout.items.iter().filter_map(move |item| match item {
            Item::Pair { .. } => pairs.next().map(|pair| &mut pair[..]),
            Item::Block { len, .. } => {
                let (block, rest) = std::mem::take(&mut data).split_at_mut(*len);
                data = rest;
                Some(block)
            }
        })
    }

    /// An encoding received as one buffer, taken apart (the caller checked its length).
    pub fn from_wire(layout: &Layout, wire: &[u8]) -> Parts {
        let mut parts = Parts::default();
        let mut rest = wire;
        for item in &layout.items {
            let len = match item {
                Item::Pair { .. } => PAIR_LEN,
                Item::Block { len, .. } => *len,
            };
            let (bytes, after) = rest.split_at_checked(len).unwrap_or((rest, &[]));
            rest = after;
            match item {
                Item::Pair { .. } => {
                    let mut pair = [0; PAIR_LEN];
                    if let Some(to) = pair.get_mut(..bytes.len()) {
                        to.copy_from_slice(bytes);
                    }
                    parts.pairs.push(pair);
                }
                Item::Block { .. } => parts.data.extend_from_slice(bytes),
            }
        }
        parts
    }

    /// Takes the buffers apart: the hash pairs and the data.
    pub fn into_inner(self) -> (Vec<[u8; PAIR_LEN]>, Vec<u8>) {
        (self.pairs, self.data)
    }

    /// The encoding as one buffer, as it goes on the wire.
    pub fn wire(&self, layout: &Layout) -> Vec<u8> {
        let mut wire = Vec::new();
        for segment in layout.segments() {
            let bytes = match segment {
                Segment::Pair(index) => self.pairs.get(index).map(|pair| &pair[..]),
                Segment::Data(range) => self.data.get(range),
            };
            wire.extend_from_slice(bytes.unwrap_or_default());
        }
        wire
    }
}

/// Checks every hash pair of `parts` against the hash above it, starting from `root` (the
/// content id), and every block against its leaf hash, which covers its offset too: the
/// data is the content's at that offset unless this fails. In place, without a copy.
pub fn verify(root: ContentId, layout: &Layout, parts: &Parts) -> Result<(), VerifyError> {
    let data_len = layout.span.data_len()?;
    if parts.pairs.len() != layout.pairs || parts.data.len() != data_len {
        return Err(VerifyError::Length {
            expected: layout.encoded_len(),
            actual: (parts.pairs.len() * PAIR_LEN + parts.data.len()) as u64,
        });
    }
    let mut expected = vec![blake3::Hash::from_bytes(*root.as_bytes())];
    for item in &layout.items {
        let want = expected.pop();
        match *item {
            Item::Pair {
                node,
                is_root,
                left,
                right,
                index,
            } => {
                let corrupt = || VerifyError::Corrupt {
                    offset: node.chunk_range().start.to_bytes(),
                };
                let pair = parts.pairs.get(index).ok_or_else(corrupt)?;
                let (l, r) = pair.split_at(32);
                let l: [u8; 32] = l.try_into().map_err(|_| corrupt())?;
                let r: [u8; 32] = r.try_into().map_err(|_| corrupt())?;
                if want != Some(parent_hash(&l, &r, is_root)) {
                    return Err(corrupt());
                }
                if right {
                    expected.push(blake3::Hash::from_bytes(r));
                }
                if left {
                    expected.push(blake3::Hash::from_bytes(l));
                }
            }
            Item::Block {
                start_chunk,
                is_root,
                at,
                len,
            } => {
                let block = parts.data.get(at..at + len).unwrap_or_default();
                if want != Some(block_hash(start_chunk, block, is_root)) {
                    return Err(VerifyError::Corrupt {
                        offset: start_chunk.to_bytes(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Holder side: reads the range `layout` describes into `parts`: its bytes from the file
/// (only that part of the file, in one read), its hash pairs from the outboard, and checks
/// them against the outboard: a file changed since it was hashed is [`VerifyError::Stale`],
/// never served under its old id.
pub fn read_range(
    file: &mut (impl Read + Seek),
    outboard: &Outboard,
    layout: &Layout,
    parts: &mut Parts,
) -> Result<(), VerifyError> {
    if layout.span.size() != outboard.size() {
        return Err(VerifyError::Stale);
    }
    let data_len = layout.span.data_len()?;
    parts.data.clear();
    parts.data.reserve_exact(data_len);
    file.seek(SeekFrom::Start(layout.span.start()))?;
    // Into the spare capacity: no zeroing first.
    file.take(data_len as u64).read_to_end(&mut parts.data)?;
    if parts.data.len() != data_len {
        // Shorter than when it was hashed.
        return Err(VerifyError::Stale);
    }
    parts.pairs.clear();
    for item in &layout.items {
        if let Item::Pair { node, .. } = item {
            let (l, r) = outboard.tree().load(*node)?.ok_or(VerifyError::Stale)?;
            let mut pair = [0; PAIR_LEN];
            let (left, right) = pair.split_at_mut(32);
            left.copy_from_slice(l.as_bytes());
            right.copy_from_slice(r.as_bytes());
            parts.pairs.push(pair);
        }
    }
    verify(outboard.root(), layout, parts).map_err(|e| match e {
        VerifyError::Corrupt { .. } => VerifyError::Stale,
        other => other,
    })
}

/// BLAKE3's hash of a block starting at `start_chunk` (the root hash if the block is the
/// whole file), as bao-tree computes it.
fn block_hash(start_chunk: ChunkNum, data: &[u8], is_root: bool) -> blake3::Hash {
    if is_root {
        return blake3::hash(data);
    }
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(start_chunk.to_bytes());
    hasher.update(data);
    blake3::Hash::from(hasher.finalize_non_root())
}

/// BLAKE3's hash of a parent node from its children's.
fn parent_hash(left: &[u8; 32], right: &[u8; 32], is_root: bool) -> blake3::Hash {
    if is_root {
        merge_subtrees_root(left, right, Mode::Hash)
    } else {
        blake3::Hash::from(merge_subtrees_non_root(left, right, Mode::Hash))
    }
}
