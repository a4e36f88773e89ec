//! `network.json` as a client reads it (`NetworkJson::parse`) and the
//! signed commitment string a reveal carries (`SignedData::parse`): any
//! bytes. Nothing may panic; a description that parses lists nodes 1..=n,
//! each with a key, and serializes back to one that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorumkey_login::commitment::SignedData;
use quorumkey_login::network::NetworkJson;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = SignedData::parse(text);
    let Ok(network) = NetworkJson::parse(text) else { return };
    let keys = network.node_keys().expect("a parsed description checks");
    assert_eq!(keys.len(), network.nodes.len());
    let again = serde_json::to_string(&network).expect("serializes");
    assert_eq!(NetworkJson::parse(&again).expect("parses again"), network);
});
