//! Keyword routing summaries: a fixed-size bit table over hashed keywords (like Gnutella's
//! Query Routing Protocol tables). A supernode sends its neighbours the summary of what its
//! index holds; a query goes to a neighbour only if the neighbour's summary has the bit of
//! every query keyword. False positives cost a wasted message; false negatives cannot
//! happen, so routing by summary never loses a result.
//!
//! The hash is part of the protocol: BLAKE3 of the keyword's UTF-8, first 8 bytes little
//! endian, modulo [`SUMMARY_BITS`]. Every node computes the same slots.

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
        let slot = keyword_slot(keyword);
        if let Some(byte) = self.bits.get_mut(slot / 8) {
            *byte |= 1 << (slot % 8);
        }
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

    /// A summary received from a neighbour; any other size is a protocol error.
    pub fn from_bytes(bits: Vec<u8>) -> Result<Self, WireError> {
        if bits.len() != SUMMARY_BYTES {
            return Err(WireError::Invalid(format!(
                "summary of {} bytes, expected {SUMMARY_BYTES}",
                bits.len()
            )));
        }
        Ok(Self { bits })
    }

    /// The bytes to send.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bits.clone()
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
    fn wrong_size_is_refused() {
        assert!(KeywordSummary::from_bytes(vec![0; 10]).is_err());
        assert!(KeywordSummary::from_bytes(vec![0; SUMMARY_BYTES + 1]).is_err());
        let s = KeywordSummary::from_keywords(["x"]);
        assert_eq!(KeywordSummary::from_bytes(s.to_bytes()).unwrap(), s);
    }
}
