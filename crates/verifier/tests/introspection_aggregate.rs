//! Introspection answers and the aggregate rule: each rejection its own
//! error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use quorumkey_verifier::config::{MAX_ACCEPTANCE_SECS, MAX_CLOCK_SKEW_SECS, MAX_WINDOW_SECS, SubVerifierConfig};
use quorumkey_verifier::{
    AggregateConfig, AggregateError, IntrospectionConfig, TokenError, TokenIdentity, VerifierConfig,
    check_aggregate_agreement, check_aggregate_request, check_introspection, check_opaque_token,
};
use serde_json::json;

const NOW: u64 = 1_800_000_000;

fn config() -> IntrospectionConfig {
    IntrospectionConfig {
        url: "https://discord.example/api/users/@me".to_owned(),
        user_id_pointer: "/user/id".to_owned(),
        issued_at_pointer: "/issued_at".to_owned(),
        freshness_secs: 300,
        lowercase_verifier_id: false,
    }
}

fn answer(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn introspection_answers_are_checked() {
    let ok = check_introspection(
        &config(),
        &answer(json!({"user": {"id": "80351110224678912"}, "issued_at": NOW - 10})),
        NOW,
    )
    .unwrap();
    assert_eq!((ok.verifier_id.as_str(), ok.issued_at, ok.expires_at), ("80351110224678912", NOW - 10, NOW + 290));
    // Numeric ids and RFC 3339 times.
    let at = 1_800_000_000u64; // 2027-01-15T08:00:00Z
    let rfc =
        check_introspection(&config(), &answer(json!({"user": {"id": 42}, "issued_at": "2027-01-15T08:00:00Z"})), at);
    assert_eq!(rfc.unwrap().verifier_id, "42");

    let check = |value| check_introspection(&config(), &answer(value), NOW);
    assert!(matches!(check(json!({"user": {"id": "1"}, "issued_at": NOW - 301})), Err(TokenError::TooOld { .. })));
    assert!(matches!(
        check(json!({"user": {"id": "1"}, "issued_at": NOW + 3600})),
        Err(TokenError::NotYetValid { .. })
    ));
    assert_eq!(check(json!({"issued_at": NOW})), Err(TokenError::MissingClaim("/user/id".to_owned())));
    assert_eq!(check(json!({"user": {"id": "1"}})), Err(TokenError::MissingClaim("/issued_at".to_owned())));
    assert!(matches!(check(json!({"user": {"id": [1]}, "issued_at": NOW})), Err(TokenError::InvalidClaim { .. })));
    assert!(matches!(check(json!({"user": {"id": ""}, "issued_at": NOW})), Err(TokenError::InvalidClaim { .. })));
    assert!(matches!(
        check(json!({"user": {"id": "1"}, "issued_at": "yesterday"})),
        Err(TokenError::InvalidClaim { .. })
    ));
    assert!(matches!(check(json!({"user": {"id": "1"}, "issued_at": -5})), Err(TokenError::InvalidClaim { .. })));
    assert!(matches!(check_introspection(&config(), b"<html>", NOW), Err(TokenError::Json { .. })));
    assert!(matches!(check_introspection(&config(), &vec![b' '; 70_000], NOW), Err(TokenError::Oversized { .. })));
}

fn aggregate(require_all: bool) -> AggregateConfig {
    let sub = SubVerifierConfig::Introspection(config());
    AggregateConfig {
        sub_verifiers: BTreeMap::from([("discord".to_owned(), sub.clone()), ("google".to_owned(), sub)]),
        require_all,
    }
}

#[test]
fn aggregate_requests_and_agreement_are_checked() {
    let ids = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    check_aggregate_request(&aggregate(false), &ids(&["google"]), 1).unwrap();
    check_aggregate_request(&aggregate(true), &ids(&["google", "discord"]), 2).unwrap();
    assert_eq!(
        check_aggregate_request(&aggregate(true), &ids(&["google"]), 1),
        Err(AggregateError::Missing("discord".to_owned()))
    );
    assert_eq!(
        check_aggregate_request(&aggregate(false), &ids(&["google", "google"]), 2),
        Err(AggregateError::Duplicate("google".to_owned()))
    );
    assert_eq!(
        check_aggregate_request(&aggregate(false), &ids(&["twitter"]), 1),
        Err(AggregateError::UnknownSubVerifier("twitter".to_owned()))
    );
    assert_eq!(
        check_aggregate_request(&aggregate(false), &ids(&["google"]), 2),
        Err(AggregateError::Mismatched { params: 2, ids: 1 })
    );
    assert!(matches!(check_aggregate_request(&aggregate(false), &[], 0), Err(AggregateError::Count { .. })));
    let many = ids(&["google", "discord", "google"]);
    assert!(matches!(check_aggregate_request(&aggregate(false), &many, 3), Err(AggregateError::Count { .. })));

    check_aggregate_agreement(
        "alice@example.com",
        &[("google", "alice@example.com"), ("discord", "alice@example.com")],
    )
    .unwrap();
    assert!(matches!(
        check_aggregate_agreement(
            "alice@example.com",
            &[("google", "alice@example.com"), ("discord", "bob@example.com")]
        ),
        Err(AggregateError::Disagree { .. })
    ));
}

/// An opaque token is RFC 6750 `b64token` and nothing else, so that no
/// blank, line break or other character gives one token a second spelling
/// a provider might accept.
#[test]
fn opaque_tokens_have_one_spelling() {
    for good in ["abc", "mF_9.B5f-4.1JqM", "a+b/c~d==", "A"] {
        check_opaque_token(good).unwrap();
    }
    for bad in ["", " abc", "abc ", "abc\n", "ab c", "Bearer abc", "abc=d", "=", "=abc", "ab\tc", "é"] {
        assert!(check_opaque_token(bad).is_err(), "{bad:?}");
    }
    assert!(check_opaque_token(&"a".repeat(20_000)).is_err());
}

/// An introspected token's identity is the endpoint, the user id as
/// answered and the issue time: what the provider vouched for, not the
/// token's bytes.
#[test]
fn an_introspected_tokens_identity_is_what_the_provider_answered() {
    let at = |id: &str, issued_at: u64| {
        check_introspection(&config(), &answer(json!({"user": {"id": id}, "issued_at": issued_at})), NOW)
            .unwrap()
            .identity
    };
    assert_eq!(at("1", NOW - 5), TokenIdentity::introspection(&config().url, "1", NOW - 5));
    assert_eq!(at("1", NOW - 5), at("1", NOW - 5));
    assert_ne!(at("1", NOW - 5), at("1", NOW - 6));
    assert_ne!(at("1", NOW - 5), at("2", NOW - 5));
    let mut elsewhere = config();
    elsewhere.url = "https://other.example/me".to_owned();
    let other = check_introspection(&elsewhere, &answer(json!({"user": {"id": "1"}, "issued_at": NOW - 5})), NOW);
    assert_ne!(other.unwrap().identity, at("1", NOW - 5));
}

proptest::proptest! {
    /// No configuration a verifier can be given accepts a token longer
    /// after its issue time than `MAX_ACCEPTANCE_SECS`: nodes keep
    /// nullifiers that long, so no update can revive a swept one.
    #[test]
    fn no_configuration_outlasts_the_network_maximum(
        age in 0u64..=2 * MAX_WINDOW_SECS,
        skew in 0u64..=2 * MAX_CLOCK_SKEW_SECS,
        freshness in 0u64..=2 * MAX_WINDOW_SECS,
    ) {
        let jwt = json!({"type": "jwt", "issuer": "https://i.example", "audiences": ["a"],
            "keys": {"jwks_url": "https://i.example/jwks"}, "verifier_id_claim": "sub",
            "max_token_age_secs": age, "clock_skew_secs": skew});
        let introspection = json!({"type": "introspection", "url": "https://i.example/me",
            "user_id_pointer": "/id", "issued_at_pointer": "/iat", "freshness_secs": freshness});
        let aggregate = json!({"type": "aggregate", "sub_verifiers": {"j": jwt, "i": introspection}});
        for config in [jwt, introspection, aggregate] {
            if let Ok(parsed) = VerifierConfig::parse(&serde_json::to_vec(&config).unwrap()) {
                proptest::prop_assert!(parsed.acceptance_window_secs() <= MAX_ACCEPTANCE_SECS);
            }
        }
    }
}
