#![no_main]
//! Every wire message enum decoded from arbitrary bytes: a typed error or a message that
//! validates or not, never a panic; a message that decodes encodes to bytes that decode to
//! the same message (not always the same bytes: postcard reads an over-long varint too).

use libfuzzer_sys::fuzz_target;
use superpeer_common::wire::*;

fn check<T: Message + serde::Serialize + PartialEq + std::fmt::Debug>(body: &[u8]) {
    if let Ok(msg) = decode::<T>(body) {
        let frame = encode(&msg).expect("a decoded message encodes");
        let again = decode::<T>(&frame[LENGTH_PREFIX..]).expect("an encoded message decodes");
        assert_eq!(again, msg, "decode, encode, decode gives the same message");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 15 {
        0 => check::<LeafToSupernode>(body),
        1 => check::<SupernodeToLeaf>(body),
        2 => check::<SupernodeToSupernode>(body),
        3 => check::<ToListServer>(body),
        4 => check::<ListServerToNode>(body),
        5 => check::<DownloaderToHolder>(body),
        6 => check::<HolderToDownloader>(body),
        7 => check::<ProbeRequest>(body),
        8 => check::<ProbeReply>(body),
        9 => check::<Hello>(body),
        10 => check::<HelloReply>(body),
        11 => check::<ToRendezvous>(body),
        12 => check::<RendezvousReply>(body),
        13 => check::<RelayLegRequest>(body),
        _ => {
            if let Ok(query) = decode::<LeafToSupernode>(body)
                && let LeafToSupernode::Query(query) = query
            {
                let _ = query.validate();
            }
        }
    }
});
