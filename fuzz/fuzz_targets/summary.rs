#![no_main]
//! Keyword summaries in both wire forms (the whole bit table and the sparse gaps): a typed
//! error or a summary, never a panic; a summary that decodes re-encodes (in whichever form
//! is shorter) to bytes that decode to the same summary, and never longer than the table.

use libfuzzer_sys::fuzz_target;
use superpeer_common::wire::SUMMARY_BYTES;
use superpeer_supernode::KeywordSummary;

fuzz_target!(|data: &[u8]| {
    // A short input grown to the table's size reaches the dense form too.
    let bytes = match data.split_first() {
        Some((&0, rest)) => {
            let mut dense = rest.to_vec();
            dense.resize(SUMMARY_BYTES, 0);
            dense
        }
        _ => data.to_vec(),
    };
    if let Ok(summary) = KeywordSummary::from_bytes(bytes) {
        let wire = summary.to_bytes();
        assert!(
            wire.len() <= SUMMARY_BYTES,
            "an encoding longer than the table"
        );
        let again = KeywordSummary::from_bytes(wire).expect("an encoded summary decodes");
        assert_eq!(
            again, summary,
            "decode, encode, decode gives the same summary"
        );
    }
});
