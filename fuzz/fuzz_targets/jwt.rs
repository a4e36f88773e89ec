//! JWT checks (`token_header`, `verify_jwt`) against a fixed JWT verifier
//! configuration and the verifier tests' key set (RS256, ES256, EdDSA).
//! Nothing may panic.
//!
//! The first byte picks a mode:
//! - even: the rest is the token, as a client sends it (UTF-8);
//! - odd: the rest is `header NUL payload` (or only a payload, with the
//!   key's usual header), which the target signs with the ES256 or the
//!   EdDSA test key, so that the claim checks behind the signature see
//!   fuzzed claims.
//!
//! A token that passes has a `verifier_id` the ledger accepts (1 to 256
//! bytes, no control characters) and lowercased as configured, and times
//! within the configured bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorumkey_fuzz::jwt::{NOW, fixture, sign_raw};
use quorumkey_ledger::VerifierId;
use quorumkey_verifier::{TokenError, token_header, verify_jwt};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let fixture = fixture();
    let token = if mode % 2 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else { return };
        token.to_owned()
    } else {
        let signer = &fixture.signers[if mode & 2 == 0 { 1 } else { 2 }];
        match rest.iter().position(|b| *b == 0) {
            Some(split) => sign_raw(signer, &rest[..split], &rest[split + 1..]),
            None => {
                let alg = if signer.kid == "ec-1" { "ES256" } else { "EdDSA" };
                let header = format!(r#"{{"alg":"{alg}","kid":"{}","typ":"JWT"}}"#, signer.kid);
                sign_raw(signer, header.as_bytes(), rest)
            }
        }
    };
    let header = token_header(&token);
    let result = verify_jwt(&fixture.config, &fixture.keys, &token, NOW);
    match result {
        Ok(verified) => {
            let header = header.expect("a valid token has a header");
            assert!(matches!(header.alg.as_str(), "RS256" | "ES256" | "EdDSA"), "alg {}", header.alg);
            let config = &fixture.config;
            assert!(
                VerifierId::new(&verified.verifier_id).is_ok(),
                "verifier_id of {} bytes that the ledger refuses: {:?}",
                verified.verifier_id.len(),
                verified.verifier_id
            );
            if config.lowercase_verifier_id {
                assert_eq!(verified.verifier_id, verified.verifier_id.to_lowercase());
            }
            assert!(verified.issued_at <= NOW + config.clock_skew_secs);
            assert!(NOW - verified.issued_at.min(NOW) <= config.max_token_age_secs + config.clock_skew_secs);
            assert!(verified.expires_at.saturating_add(config.clock_skew_secs) >= NOW);
        }
        Err(TokenError::Oversized { .. } | TokenError::NotAJwt) => assert!(header.is_err()),
        Err(_) => {}
    }
});
