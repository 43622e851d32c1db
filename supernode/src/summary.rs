//! Keyword routing summaries: a fixed-size bit table over hashed keywords (like Gnutella's
//! Query Routing Protocol tables). A supernode sends its neighbours the summary of what its
//! index holds; a query goes to a neighbour only if the neighbour's summary has the bit of
//! every query keyword. False positives cost a wasted message; false negatives cannot
//! happen, so routing by summary never loses a result.
//!
//! The hash is part of the protocol: BLAKE3 of the keyword's UTF-8, first 8 bytes little
//! endian, modulo [`SUMMARY_BITS`]. Every node computes the same slots.
//!
//! On the wire a summary is the whole bit table ([`SUMMARY_BYTES`], bit `i` is bit `i % 8`
//! of byte `i / 8`) or, when that is shorter, the set bits as gaps: the first set bit's
//! index, then each next one's distance from the one before (at least 1), each as an
//! unsigned LEB128 varint. A summary is mostly empty (a supernode with a few thousand
//! words sets a few percent of the bits), so the sparse form is usually 5-10x smaller.

use superpeer_common::wire::{SUMMARY_BYTES, WireError};

/// Bits in a summary.
pub const SUMMARY_BITS: usize = SUMMARY_BYTES * 8;

/// The bit a keyword sets.
pub fn keyword_slot(keyword: &str) -> usize {
    let hash = blake3::hash(keyword.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    (u64::from_le_bytes(first) % SUMMARY_BITS as u64) as usize
}

/// A keyword summary.
#[derive(Clone, PartialEq, Eq)]
pub struct KeywordSummary {
    bits: Vec<u8>,
}

impl std::fmt::Debug for KeywordSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeywordSummary({:.1}% full)", self.fill_ratio() * 100.0)
    }
}

impl Default for KeywordSummary {
    fn default() -> Self {
        Self::empty()
    }
}

impl KeywordSummary {
    /// A summary that matches nothing.
    pub fn empty() -> Self {
        Self {
            bits: vec![0; SUMMARY_BYTES],
        }
    }

    /// The summary of `keywords`.
    pub fn from_keywords<'a>(keywords: impl IntoIterator<Item = &'a str>) -> Self {
        let mut summary = Self::empty();
        for keyword in keywords {
            summary.insert(keyword);
        }
        summary
    }

    /// Sets the bit of `keyword`.
    pub fn insert(&mut self, keyword: &str) {
        self.set(keyword_slot(keyword));
    }

    fn has_slot(&self, slot: usize) -> bool {
        self.bits
            .get(slot / 8)
            .is_some_and(|byte| byte & (1 << (slot % 8)) != 0)
    }

    /// True if every keyword's bit is set: the node may hold a name with all of them.
    pub fn may_contain_all<S: AsRef<str>>(&self, keywords: &[S]) -> bool {
        keywords
            .iter()
            .all(|k| self.has_slot(keyword_slot(k.as_ref())))
    }

    /// A summary received from a neighbour, in either form (see the module docs).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, WireError> {
        match bytes.len().cmp(&SUMMARY_BYTES) {
            std::cmp::Ordering::Equal => Ok(Self { bits: bytes }),
            std::cmp::Ordering::Greater => Err(WireError::Invalid(format!(
                "summary of {} bytes, at most {SUMMARY_BYTES}",
                bytes.len()
            ))),
            std::cmp::Ordering::Less => Self::from_gaps(&bytes),
        }
    }

    fn from_gaps(mut bytes: &[u8]) -> Result<Self, WireError> {
        let bad = |why: &str| WireError::Invalid(format!("sparse summary: {why}"));
        let mut summary = Self::empty();
        let mut previous: Option<usize> = None;
        while !bytes.is_empty() {
            let (gap, rest) = read_varint(bytes).ok_or_else(|| bad("bad varint"))?;
            bytes = rest;
            let slot = match previous {
                None => gap,
                Some(_) if gap == 0 => return Err(bad("a bit twice")),
                Some(p) => p.saturating_add(gap),
            };
            if slot >= SUMMARY_BITS {
                return Err(bad("bit out of range"));
            }
            summary.set(slot);
            previous = Some(slot);
        }
        Ok(summary)
    }

    /// The bytes to send: the sparse form when it is shorter than the bit table.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut gaps = Vec::new();
        let mut previous = 0;
        for (i, &byte) in self.bits.iter().enumerate() {
            let mut rest = byte;
            while rest != 0 {
                let slot = i * 8 + rest.trailing_zeros() as usize;
                rest &= rest - 1;
                write_varint(&mut gaps, slot - previous);
                previous = slot;
            }
            if gaps.len() >= SUMMARY_BYTES {
                return self.bits.clone();
            }
        }
        gaps
    }

    fn set(&mut self, slot: usize) {
        if let Some(byte) = self.bits.get_mut(slot / 8) {
            *byte |= 1 << (slot % 8);
        }
    }

    /// Share of bits set: the chance that a random absent keyword looks present.
    pub fn fill_ratio(&self) -> f64 {
        let set: u32 = self.bits.iter().map(|b| b.count_ones()).sum();
        f64::from(set) / SUMMARY_BITS as f64
    }

    /// True if no bit is set (the node holds nothing).
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|b| *b == 0)
    }
}

/// Appends `value` as an unsigned LEB128 varint.
fn write_varint(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// An unsigned LEB128 varint of at most 3 bytes (enough for any bit index) and the rest.
fn read_varint(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut value = 0usize;
    for (i, byte) in bytes.iter().enumerate().take(3) {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, bytes.get(i + 1..)?));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let words: Vec<String> = (0..5_000).map(|i| format!("word{i}")).collect();
        let summary = KeywordSummary::from_keywords(words.iter().map(String::as_str));
        assert!(words.iter().all(|w| summary.may_contain_all(&[w])));
        assert!(summary.may_contain_all(&words[..10]));
        let absent = (0..10_000)
            .filter(|i| summary.may_contain_all(&[format!("other{i}")]))
            .count();
        // 5,000 words in 262,144 bits: about 1.9% false positives.
        assert!(absent < 400, "{absent} false positives in 10,000");
        assert!(!KeywordSummary::empty().may_contain_all(&["word1"]));
    }

    #[test]
    fn slot_is_stable_across_nodes() {
        // Part of the protocol: a change here breaks routing between versions. The values
        // were computed outside Rust (Python's blake3 package) from the rule in the docs.
        assert_eq!(keyword_slot("abba"), 187_783);
        assert_eq!(keyword_slot("mp3"), 49_101);
    }

    #[test]
    fn bad_summaries_are_refused() {
        assert!(KeywordSummary::from_bytes(vec![0; SUMMARY_BYTES + 1]).is_err());
        // Sparse: the same bit twice, a bit past the table, a cut varint, an overlong one.
        assert!(KeywordSummary::from_bytes(vec![0; 10]).is_err());
        assert!(KeywordSummary::from_bytes(vec![0x80, 0x80, 0x10]).is_err());
        assert!(KeywordSummary::from_bytes(vec![5, 0x80]).is_err());
        assert!(KeywordSummary::from_bytes(vec![0x80, 0x80, 0x80, 0x01]).is_err());
    }

    #[test]
    fn both_forms_round_trip_and_the_smaller_is_sent() {
        let empty = KeywordSummary::empty();
        assert!(empty.to_bytes().is_empty());
        assert_eq!(KeywordSummary::from_bytes(Vec::new()).unwrap(), empty);
        let s = KeywordSummary::from_keywords(["x"]);
        assert_eq!(KeywordSummary::from_bytes(s.to_bytes()).unwrap(), s);
        // The first and the last bit.
        let mut edges = KeywordSummary::empty();
        edges.set(0);
        edges.set(SUMMARY_BITS - 1);
        assert_eq!(edges.to_bytes(), vec![0, 0xff, 0xff, 0x0f]);
        assert_eq!(KeywordSummary::from_bytes(edges.to_bytes()).unwrap(), edges);
        // 5,000 words: about 2% of the bits, a fraction of the table.
        let words: Vec<String> = (0..5_000).map(|i| format!("word{i}")).collect();
        let sparse = KeywordSummary::from_keywords(words.iter().map(String::as_str));
        let bytes = sparse.to_bytes();
        assert!(bytes.len() < SUMMARY_BYTES / 3, "{} bytes", bytes.len());
        assert_eq!(KeywordSummary::from_bytes(bytes).unwrap(), sparse);
        // Half the bits set: the table itself is shorter.
        let mut dense = KeywordSummary::empty();
        for slot in (0..SUMMARY_BITS).step_by(2) {
            dense.set(slot);
        }
        assert_eq!(dense.to_bytes().len(), SUMMARY_BYTES);
        assert_eq!(KeywordSummary::from_bytes(dense.to_bytes()).unwrap(), dense);
    }
}
