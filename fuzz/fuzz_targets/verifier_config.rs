//! Verifier configurations as registered on the ledger
//! (`VerifierConfig::parse`) and JWKS documents as fetched from a provider
//! (`KeySet::from_jwks`): any bytes. Nothing may panic, and a configuration
//! that parses has canonical bytes (`to_bytes`) that parse back to the same
//! configuration.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorumkey_verifier::{KeySet, KeySource, SubVerifierConfig, VerifierConfig};

fuzz_target!(|data: &[u8]| {
    if let Ok(keys) = KeySet::from_jwks(data) {
        assert!(keys.len() <= quorumkey_verifier::jwks::MAX_JWKS_KEYS);
        let _ = keys.find(None);
    }
    let Ok(config) = VerifierConfig::parse(data) else { return };
    let _ = config.acceptance_window_secs();
    let canonical = config.to_bytes();
    assert!(!canonical.is_empty());
    match VerifierConfig::parse(&canonical) {
        Ok(again) => assert_eq!(again, config, "canonical bytes parse to another configuration"),
        Err(e) => panic!("canonical bytes do not parse: {e}"),
    }
    // Inline keys that passed the check load.
    let jwts: Vec<_> = match &config {
        VerifierConfig::Jwt(jwt) => vec![jwt],
        VerifierConfig::Introspection(_) => vec![],
        VerifierConfig::Aggregate(aggregate) => aggregate
            .sub_verifiers
            .values()
            .filter_map(|sub| match sub {
                SubVerifierConfig::Jwt(jwt) => Some(jwt),
                SubVerifierConfig::Introspection(_) => None,
            })
            .collect(),
    };
    for jwt in jwts {
        if let KeySource::Jwks(document) = &jwt.keys {
            assert!(!KeySet::from_document(document).expect("checked inline keys load").is_empty());
        }
    }
});
