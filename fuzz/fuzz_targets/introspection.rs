//! An introspection endpoint's answer (`check_introspection`): any bytes,
//! as the provider sends them, against a fixed configuration. Nothing may
//! panic; an answer that passes yields a `verifier_id` the ledger accepts
//! and an issue time within the freshness window.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorumkey_ledger::VerifierId;
use quorumkey_verifier::{IntrospectionConfig, check_introspection};

const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let config = IntrospectionConfig {
        url: "https://provider.example/api/users/@me".to_owned(),
        user_id_pointer: "/user/id".to_owned(),
        issued_at_pointer: "/issued_at".to_owned(),
        freshness_secs: 600,
        lowercase_verifier_id: data.first().is_some_and(|b| b % 2 == 1),
    };
    let Ok(token) = check_introspection(&config, data, NOW) else { return };
    assert!(
        VerifierId::new(&token.verifier_id).is_ok(),
        "verifier_id of {} bytes that the ledger refuses: {:?}",
        token.verifier_id.len(),
        token.verifier_id
    );
    assert!(token.issued_at <= NOW + 60);
    assert!(NOW - token.issued_at.min(NOW) <= config.freshness_secs);
    assert_eq!(token.expires_at, token.issued_at + config.freshness_secs);
});
