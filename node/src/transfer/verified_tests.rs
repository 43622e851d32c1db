use std::fs::File;
use std::io::{Cursor, Write};
use std::path::Path;
use std::time::Instant;

use super::*;

/// Deterministic bytes without a short period, so a swapped or shifted block changes the
/// data.
fn data(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

fn encode(bytes: &[u8], start: u64, len: u64) -> Vec<u8> {
    let outboard = Outboard::of_bytes(bytes);
    encode_range(&mut Cursor::new(bytes), &outboard, start, len).unwrap()
}

fn slice(bytes: &[u8], start: u64, len: u64) -> &[u8] {
    &bytes[start as usize..(start + len) as usize]
}

/// Encodes the range, checks the length against `encoded_len` and that it decodes back to
/// the original bytes; returns the encoding.
fn round_trip(bytes: &[u8], start: u64, len: u64) -> Vec<u8> {
    let size = bytes.len() as u64;
    let encoded = encode(bytes, start, len);
    assert_eq!(
        encoded.len() as u64,
        encoded_len(size, start, len),
        "encoded_len of {len} at {start} of {size}"
    );
    let root = ContentId::of_bytes(bytes);
    let decoded = decode_range(root, size, start, len, &encoded).unwrap();
    assert_eq!(
        decoded,
        slice(bytes, start, len),
        "{len} at {start} of {size}"
    );
    encoded
}

/// Flips one bit at every `step`-th position of the encoding (and at every position of the
/// leading hash pairs) and expects each to be rejected.
fn assert_flips_rejected(bytes: &[u8], start: u64, len: u64, step: usize) {
    let size = bytes.len() as u64;
    let root = ContentId::of_bytes(bytes);
    let encoded = encode(bytes, start, len);
    let mut positions: Vec<usize> = (0..encoded.len()).step_by(step).collect();
    positions.extend(0..encoded.len().min(256));
    positions.push(encoded.len().saturating_sub(1));
    for pos in positions.into_iter().filter(|&p| p < encoded.len()) {
        let mut tampered = encoded.clone();
        tampered[pos] ^= 0x01;
        let result = decode_range(root, size, start, len, &tampered);
        assert!(
            matches!(result, Err(VerifyError::Corrupt { .. })),
            "flip at {pos} of {len} at {start} of {size}: {result:?}"
        );
    }
}

#[test]
fn root_equals_plain_blake3() {
    for size in [
        0,
        1,
        1023,
        1024,
        16383,
        16384,
        16385,
        5 * 16384 + 7,
        (1 << 20) + 1,
    ] {
        let bytes = data(size);
        let outboard = Outboard::of_bytes(&bytes);
        let plain = bao_tree::blake3::hash(&bytes);
        assert_eq!(outboard.root().as_bytes(), plain.as_bytes(), "size {size}");
        assert_eq!(outboard.root(), ContentId::of_bytes(&bytes), "size {size}");
        assert_eq!(outboard.size(), size as u64);
    }
}

#[test]
fn round_trips_typical_ranges() {
    for size in [5 * BLOCK + 7, (1 << 20) + 1] {
        let bytes = data(size as usize);
        let last = size / BLOCK * BLOCK;
        round_trip(&bytes, 0, BLOCK); // first block
        round_trip(&bytes, 2 * BLOCK, BLOCK); // a middle block
        round_trip(&bytes, BLOCK, 3 * BLOCK); // several middle blocks
        round_trip(&bytes, last, size - last); // last, partial block
        round_trip(&bytes, 2 * BLOCK, size - 2 * BLOCK); // from the middle to the end
        round_trip(&bytes, 0, size); // whole file
    }
}

#[test]
fn round_trips_every_aligned_range_of_a_small_file() {
    let size = 5 * BLOCK + 7;
    let bytes = data(size as usize);
    let blocks = size.div_ceil(BLOCK);
    for first in 0..blocks {
        for count in 1..=blocks - first {
            let start = first * BLOCK;
            let len = (count * BLOCK).min(size - start);
            round_trip(&bytes, start, len);
        }
    }
}

#[test]
fn round_trips_small_and_boundary_sizes() {
    for size in [0, 1, 1023, 1024, 1025, 16383, 16384, 16385, 2 * 16384] {
        let bytes = data(size as usize);
        round_trip(&bytes, 0, size);
    }
    // An empty file has no hash pairs and no data; it still checks the root.
    assert_eq!(encoded_len(0, 0, 0), 0);
    assert!(matches!(
        decode_range(ContentId::of_bytes(b"x"), 0, 0, 0, &[]),
        Err(VerifyError::Corrupt { .. })
    ));
}

#[test]
fn encoded_len_counts_hash_pairs() {
    // One block: the data alone, the block's hash is the root.
    assert_eq!(encoded_len(BLOCK, 0, BLOCK), BLOCK);
    assert_eq!(encoded_len(7, 0, 7), 7);
    // Two blocks: one pair, then both blocks.
    assert_eq!(encoded_len(2 * BLOCK, 0, 2 * BLOCK), 64 + 2 * BLOCK);
    assert_eq!(encoded_len(2 * BLOCK, BLOCK, BLOCK), 64 + BLOCK);
    // Invalid ranges have no encoding.
    assert_eq!(encoded_len(2 * BLOCK, 1, BLOCK), 0);
    assert_eq!(encoded_len(2 * BLOCK, 2 * BLOCK, BLOCK), 0);
}

#[test]
fn every_flipped_byte_is_rejected() {
    // Small encodings: every byte.
    for size in [1, 1023, 16384, 16385, 2 * 16384 + 5] {
        let bytes = data(size as usize);
        assert_flips_rejected(&bytes, 0, size, 1);
    }
    let bytes = data(5 * BLOCK as usize + 7);
    assert_flips_rejected(&bytes, BLOCK, BLOCK, 1);
    assert_flips_rejected(&bytes, 5 * BLOCK, 7, 1);
    // Large ones: a sample of positions.
    let size = (1 << 20) + 1;
    let bytes = data(size as usize);
    assert_flips_rejected(&bytes, 0, size, 4099);
    assert_flips_rejected(&bytes, 3 * BLOCK, 8 * BLOCK, 1021);
}

#[test]
fn truncated_or_extended_encodings_are_rejected() {
    let size = 5 * BLOCK + 7;
    let bytes = data(size as usize);
    let root = ContentId::of_bytes(&bytes);
    for (start, len) in [(0, size), (BLOCK, BLOCK), (5 * BLOCK, 7)] {
        let encoded = encode(&bytes, start, len);
        for keep in [0, 1, 63, 64, encoded.len() / 2, encoded.len() - 1] {
            let result = decode_range(root, size, start, len, &encoded[..keep]);
            assert!(matches!(result, Err(VerifyError::Length { .. })), "{keep}");
        }
        for extra in [&[0u8][..], &[0; 64], &encoded[..]] {
            let mut longer = encoded.clone();
            longer.extend_from_slice(extra);
            let result = decode_range(root, size, start, len, &longer);
            assert!(matches!(result, Err(VerifyError::Length { .. })));
        }
    }
}

#[test]
fn wrong_root_is_rejected() {
    let size = 5 * BLOCK + 7;
    let bytes = data(size as usize);
    let mut other = bytes.clone();
    other[3] ^= 1;
    let mut flipped = *ContentId::of_bytes(&bytes).as_bytes();
    flipped[31] ^= 0x80;
    for root in [ContentId::of_bytes(&other), ContentId::from_bytes(flipped)] {
        for (start, len) in [(0, size), (2 * BLOCK, BLOCK), (5 * BLOCK, 7)] {
            let encoded = encode(&bytes, start, len);
            let result = decode_range(root, size, start, len, &encoded);
            assert!(
                matches!(result, Err(VerifyError::Corrupt { .. })),
                "{result:?}"
            );
        }
    }
    // A single-block file: the data is hashed straight against the root.
    let small = data(100);
    let result = decode_range(
        ContentId::of_bytes(&other),
        100,
        0,
        100,
        &encode(&small, 0, 100),
    );
    assert!(matches!(result, Err(VerifyError::Corrupt { .. })));
}

#[test]
fn a_range_passed_off_as_another_is_rejected() {
    let size = 5 * BLOCK + 7;
    let bytes = data(size as usize);
    let root = ContentId::of_bytes(&bytes);
    // Same length, different place: block 1's encoding offered as block 2 or 3.
    let encoded = encode(&bytes, BLOCK, BLOCK);
    for start in [2 * BLOCK, 3 * BLOCK] {
        let result = decode_range(root, size, start, BLOCK, &encoded);
        assert!(result.is_err(), "block 1 accepted as {start}");
    }
    // Identical blocks at different offsets still differ: BLAKE3 hashes the offset.
    let mut repeated = data(BLOCK as usize).repeat(4);
    repeated.extend_from_slice(b"tail");
    let root = ContentId::of_bytes(&repeated);
    let size = repeated.len() as u64;
    let encoded = encode(&repeated, 0, BLOCK);
    assert!(decode_range(root, size, 2 * BLOCK, BLOCK, &encoded).is_err());
}

#[test]
fn wrong_size_fails_the_last_range() {
    let size = 5 * BLOCK + 7;
    let bytes = data(size as usize);
    let root = ContentId::of_bytes(&bytes);
    let encoded = encode(&bytes, 5 * BLOCK, 7);
    for (claimed, len) in [(size + 1, 8), (size - 1, 6)] {
        let mut padded = encoded.clone();
        padded.resize(encoded_len(claimed, 5 * BLOCK, len) as usize, 0);
        assert!(decode_range(root, claimed, 5 * BLOCK, len, &padded).is_err());
    }
}

#[test]
fn bad_ranges_are_rejected_on_both_sides() {
    let size = 5 * BLOCK + 7;
    let bytes = data(size as usize);
    let outboard = Outboard::of_bytes(&bytes);
    let root = outboard.root();
    let bad = [
        (1, BLOCK),          // unaligned start
        (0, BLOCK + 1),      // unaligned end before EOF
        (0, 0),              // empty range of a non-empty file
        (5 * BLOCK, 8),      // past EOF
        (6 * BLOCK, BLOCK),  // starts beyond EOF
        (size, 0),           // starts at EOF
        (BLOCK, u64::MAX),   // overflows
        (u64::MAX - 15, 16), // overflows at the end
        (0, 6 * BLOCK),      // aligned but past EOF
    ];
    for (start, len) in bad {
        let encoded = encode_range(&mut Cursor::new(&bytes), &outboard, start, len);
        assert!(
            matches!(encoded, Err(VerifyError::BadRange { .. })),
            "{start} {len}"
        );
        let decoded = decode_range(root, size, start, len, &[]);
        assert!(
            matches!(decoded, Err(VerifyError::BadRange { .. })),
            "{start} {len}"
        );
        assert_eq!(encoded_len(size, start, len), 0);
    }
    let empty = Outboard::of_bytes(&[]);
    assert!(encode_range(&mut Cursor::new(&[]), &empty, 0, 1).is_err());
}

#[test]
fn a_file_changed_since_hashing_is_not_served() {
    let size = 5 * BLOCK + 7;
    let bytes = data(size as usize);
    let outboard = Outboard::of_bytes(&bytes);
    let mut changed = bytes.clone();
    changed[(2 * BLOCK + 5) as usize] ^= 1;
    let mut file = Cursor::new(&changed);
    let result = encode_range(&mut file, &outboard, 2 * BLOCK, BLOCK);
    assert!(matches!(result, Err(VerifyError::Stale)), "{result:?}");
    // Unchanged blocks of the same file are still served.
    assert!(encode_range(&mut file, &outboard, 0, BLOCK).is_ok());
    // A truncated file.
    let mut short = Cursor::new(&bytes[..(size - 1) as usize]);
    let result = encode_range(&mut short, &outboard, 5 * BLOCK, 7);
    assert!(matches!(result, Err(VerifyError::Stale)), "{result:?}");
}

#[test]
fn of_file_equals_of_bytes() {
    for size in [0, 3 * 1024 * 1024 + 5] {
        let bytes = data(size);
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&bytes).unwrap();
        file.flush().unwrap();
        let from_file = Outboard::of_file(file.path()).unwrap();
        let from_bytes = Outboard::of_bytes(&bytes);
        assert_eq!(from_file.root(), from_bytes.root());
        assert_eq!(from_file.root(), ContentId::of_file(file.path()).unwrap());
        assert_eq!(from_file.size(), size as u64);
        assert_eq!(from_file.tree().data, from_bytes.tree().data);
        // The holder serves straight from the file.
        let mut reader = File::open(file.path()).unwrap();
        let start = (size as u64 / BLOCK / 2) * BLOCK;
        let len = (4 * BLOCK).min(size as u64 - start);
        let encoded = encode_range(&mut reader, &from_file, start, len).unwrap();
        let decoded = decode_range(from_file.root(), size as u64, start, len, &encoded).unwrap();
        assert_eq!(decoded, slice(&bytes, start, len));
    }
    assert!(Outboard::of_file(Path::new("/nonexistent/superpeer/file")).is_err());
}

/// `cargo test --release -p superpeer transfer::verified::tests::throughput -- --ignored
/// --nocapture`
#[test]
#[ignore = "timing, not a check"]
fn throughput() {
    const SIZE: usize = 64 * 1024 * 1024;
    const PIECE: u64 = 1024 * 1024;
    let bytes = data(SIZE);
    let mb = SIZE as f64 / 1e6;
    let started = Instant::now();
    let outboard = Outboard::of_bytes(&bytes);
    let outboard_secs = started.elapsed().as_secs_f64();
    let root = outboard.root();
    let size = SIZE as u64;
    let mut file = Cursor::new(&bytes);
    // Timed like a holder works: encode a piece, send it, drop it.
    let started = Instant::now();
    let mut wire = 0;
    for start in (0..size).step_by(PIECE as usize) {
        wire += encode_range(&mut file, &outboard, start, PIECE)
            .unwrap()
            .len();
    }
    let encode_secs = started.elapsed().as_secs_f64();
    let pieces: Vec<(u64, Vec<u8>)> = (0..size)
        .step_by(PIECE as usize)
        .map(|start| {
            (
                start,
                encode_range(&mut file, &outboard, start, PIECE).unwrap(),
            )
        })
        .collect();
    let started = Instant::now();
    for (start, encoded) in &pieces {
        let decoded = decode_range(root, size, *start, PIECE, encoded).unwrap();
        assert_eq!(decoded.len() as u64, PIECE);
    }
    let decode_secs = started.elapsed().as_secs_f64();
    println!(
        "64 MiB in 1 MiB pieces: outboard {:.0} MB/s, encode {:.0} MB/s, decode {:.0} MB/s, \
         overhead {:.3}%",
        mb / outboard_secs,
        mb / encode_secs,
        mb / decode_secs,
        (wire - SIZE) as f64 * 100.0 / SIZE as f64
    );
}
