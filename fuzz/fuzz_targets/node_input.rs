#![no_main]
//! What a user or a local program hands the node: the TOML config file (parsed by the
//! function `--config` uses) and the control API's request bodies (`POST /search` and
//! `POST /get`, and the web UI's search and download bodies, parsed as the server parses
//! them, then validated). A typed error or a
//! value, never a panic; a request that parses re-encodes to JSON that parses to the same.

use libfuzzer_sys::fuzz_target;
use superpeer::control::{ContentRef, GetRequest, SearchRequest, UiSearch};

fn json_roundtrip<T>(body: &[u8]) -> Option<T>
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    let value: T = serde_json::from_slice(body).ok()?;
    let json = serde_json::to_vec(&value).expect("a parsed request encodes");
    let again: T = serde_json::from_slice(&json).expect("an encoded request parses");
    assert_eq!(again, value, "parse, encode, parse gives the same request");
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Ok(text) = std::str::from_utf8(body) {
                let _ = superpeer::parse_config(text);
            }
        }
        1 => {
            if let Some(request) = json_roundtrip::<SearchRequest>(body) {
                let _ = request.validate();
            }
        }
        2 => {
            let _ = json_roundtrip::<GetRequest>(body);
        }
        3 => {
            // What the UI accepts is a search the control API accepts.
            if let Ok(words) = serde_json::from_slice::<UiSearch>(body)
                && let Ok(request) = words.request()
            {
                assert!(request.validate().is_ok(), "{request:?}");
            }
        }
        _ => {
            let _ = serde_json::from_slice::<ContentRef>(body);
        }
    }
});
