#![no_main]
//! Every state file, parsed by the function the daemon loads it with: the list server's
//! `registry.json`, the leaf's `hash-cache.json`, a partial download's state record and
//! `supernodes.json`. A typed error or the entries, never a panic; a partial-download
//! record accepted for a content says only verified runs within that content's pieces
//! when the runs are well formed (the record is checked again before use: see part.rs).

use libfuzzer_sys::fuzz_target;
use superpeer_common::ContentId;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let _ = superpeer_bootstrap_list::parse_registry(body);
        }
        1 => {
            let _ = superpeer::share::parse_hash_cache(body);
        }
        2 => {
            // The content the seeds were written for (fuzz/seeds/make.py).
            let id = ContentId::from_bytes([7; 32]);
            let _ = superpeer::transfer::parse_part_state(body, id, 1 << 20);
        }
        _ => {
            if let Ok(list) = superpeer::leaf::parse_supernode_cache(body) {
                let json = serde_json::to_vec(&list).expect("a parsed list encodes");
                let again: Vec<superpeer_common::wire::SupernodeInfo> =
                    serde_json::from_slice(&json).expect("an encoded list parses");
                assert_eq!(again, list);
            }
        }
    }
});
