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
//! Not here: framing, QUIC streams, choosing ranges or holders, writing to disk. This
//! module is the public face of verified ranges; the encoding's layout and check live in
//! `encoding`, the hash tree in `outboard`, the block grid in `span`, the error in
//! `verify_error`.

use std::io::{Read, Seek};

use superpeer_common::ContentId;

pub use super::encoding::{Layout, PAIR_LEN, Parts, Segment, read_range, verify};
pub use super::outboard::Outboard;
pub use super::span::BLOCK;
pub use super::verify_error::VerifyError;

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

#[cfg(test)]
#[path = "verified_tests.rs"]
mod tests;
