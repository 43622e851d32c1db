#![no_main]
//! Bao range verification against a root (node/src/transfer/verified.rs, what a downloader
//! runs on every range). Two modes:
//! - tamper: a genuine encoding of a range of a small multi-block file, with bytes the
//!   fuzzer picks flipped, cut or appended. If `decode_range` accepts it, the bytes it
//!   returns are exactly the file's bytes of that range; the untouched encoding is accepted.
//! - raw: arbitrary encoded bytes for an arbitrary range of a content whose id is known.
//!   If accepted, the bytes are the content's bytes of that range.

use libfuzzer_sys::fuzz_target;
use std::io::Cursor;
use superpeer::transfer::verified::{BLOCK, Outboard, decode_range, encode_range};
use superpeer_common::ContentId;

/// A file of `size` bytes whose content depends on `seed`.
fn content(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// A range that `Layout::new` accepts most of the time (block-aligned start, len aligned
/// or to the end), or an odd one when the fuzzer asks.
fn range(size: u64, a: u8, b: u8, odd: bool) -> (u64, u64) {
    let blocks = size.div_ceil(BLOCK).max(1);
    let start = (u64::from(a) % blocks) * BLOCK;
    let len = match u64::from(b) % (blocks + 1) {
        0 => size.saturating_sub(start),
        n => (n * BLOCK).min(size.saturating_sub(start)),
    };
    if odd {
        (start + u64::from(a % 7), len + u64::from(b % 5))
    } else {
        (start, len)
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let (head, tail) = data.split_at(6);
    // Up to 5 blocks and a bit, so the tree has a few levels.
    let size =
        (usize::from(u16::from_le_bytes([head[1], head[2]])) * 3) % (5 * BLOCK as usize + 100);
    let file = content(size, head[3]);
    let root = ContentId::of_bytes(&file);
    let (start, len) = range(size as u64, head[4], head[5], head[0] & 0x80 != 0);
    let genuine = |s: u64, l: u64| file[s as usize..(s + l) as usize].to_vec();

    if head[0] & 1 == 0 {
        // tamper
        let outboard = Outboard::of_bytes(&file);
        let Ok(encoded) = encode_range(&mut Cursor::new(&file), &outboard, start, len) else {
            return;
        };
        let mut wire = encoded.clone();
        // Edits: pairs of (position, xor mask); a mask of 0 cuts the encoding there, a
        // position past the end appends the mask.
        for edit in tail.chunks(3) {
            if edit.len() < 3 {
                break;
            }
            let at = usize::from(u16::from_le_bytes([edit[0], edit[1]]));
            match (wire.get_mut(at), edit[2]) {
                (Some(_), 0) => wire.truncate(at),
                (Some(byte), mask) => *byte ^= mask,
                (None, mask) => wire.push(mask),
            }
        }
        match decode_range(root, size as u64, start, len, &wire) {
            Ok(bytes) => assert_eq!(bytes, genuine(start, len), "accepted bytes not of the file"),
            Err(e) => assert!(wire != encoded, "the genuine encoding was refused: {e}"),
        }
    } else {
        // raw
        if let Ok(bytes) = decode_range(root, size as u64, start, len, tail) {
            assert_eq!(
                bytes,
                genuine(start, len),
                "accepted bytes not of the content"
            );
        }
    }
});
