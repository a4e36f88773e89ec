//! Token verifications per second for RS256, ES256 and EdDSA ID tokens,
//! next to the raw signature verification of the same token measured in
//! the same run (the floor: everything else a check does is parsing and
//! claim checks).
//!
//! `cargo bench -p quorumkey-verifier --bench tokens`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use quorumkey_verifier::{JwtConfig, KeySet, KeySource, verify_jwt};
use serde_json::json;

const NOW: u64 = 1_800_000_000;

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// Median time per call over 9 rounds of `runs` calls.
fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut rounds: Vec<Duration> = (0..9)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..runs {
                f();
            }
            start.elapsed() / runs as u32
        })
        .collect();
    rounds.sort();
    rounds[4]
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let runs = if full { 200 } else { 3 };
    let keys = [
        (
            "RS256",
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(include_bytes!("../tests/fixtures/rsa-test-key.pem")).unwrap(),
        ),
        (
            "ES256",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(include_bytes!("../tests/fixtures/es256-test-key.pem")).unwrap(),
        ),
        (
            "EdDSA",
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(include_bytes!("../tests/fixtures/ed25519-test-key.pem")).unwrap(),
        ),
    ];
    let jwks: Vec<Jwk> = keys
        .iter()
        .map(|(name, alg, key)| {
            let mut jwk = Jwk::from_encoding_key(key, *alg).unwrap();
            jwk.common.key_id = Some((*name).to_owned());
            jwk
        })
        .collect();
    let set = KeySet::from_jwks(&serde_json::to_vec(&JwkSet { keys: jwks }).unwrap()).unwrap();
    let config = JwtConfig {
        issuer: "https://issuer.example".to_owned(),
        audiences: vec!["client".to_owned()],
        keys: KeySource::JwksUrl("https://issuer.example/jwks".to_owned()),
        verifier_id_claim: "email".to_owned(),
        lowercase_verifier_id: true,
        required_claims: [("email_verified".to_owned(), json!(true))].into(),
        max_token_age_secs: 3600,
        clock_skew_secs: 60,
    };
    // A typical Google-sized ID token payload.
    let claims = json!({
        "iss": "https://issuer.example", "aud": "client", "azp": "client", "sub": "110169484474386276334",
        "email": "Alice.Example@gmail.com", "email_verified": true, "at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q",
        "name": "Alice Example", "picture": "https://lh3.googleusercontent.com/a/ACg8ocJ0000000000000000000000000",
        "given_name": "Alice", "family_name": "Example", "locale": "en", "iat": NOW - 5, "exp": NOW + 3595,
        "nonce": "0394852-3190485-2490358",
    });
    println!("token verification ({}, one thread, on {})", if full { "full" } else { "short" }, machine());
    for (name, alg, key) in &keys {
        let mut header = Header::new(*alg);
        header.kid = Some((*name).to_owned());
        let token = jsonwebtoken::encode(&header, &claims, key).unwrap();
        verify_jwt(&config, &set, &token, NOW).unwrap();
        let (signed, signature) = token.rsplit_once('.').unwrap();
        // The same public key, used directly by the signature primitive.
        let raw_key = jsonwebtoken::DecodingKey::from_jwk(&Jwk::from_encoding_key(key, *alg).unwrap()).unwrap();
        assert!(jsonwebtoken::crypto::verify(signature, signed.as_bytes(), &raw_key, *alg).unwrap());
        let check = time(runs, || {
            black_box(verify_jwt(&config, &set, black_box(&token), NOW).unwrap());
        });
        let raw = time(runs, || {
            black_box(jsonwebtoken::crypto::verify(signature, signed.as_bytes(), &raw_key, *alg).unwrap());
        });
        println!(
            "  {name}: {:.1} us per token = {:.0} tokens/s per core; raw signature verification {:.1} us; ratio to the floor {:.2} ({} bytes)",
            check.as_secs_f64() * 1e6,
            1.0 / check.as_secs_f64(),
            raw.as_secs_f64() * 1e6,
            raw.as_secs_f64() / check.as_secs_f64(),
            token.len()
        );
    }
}
