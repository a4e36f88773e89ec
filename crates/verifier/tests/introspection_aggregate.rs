//! Introspection answers and the aggregate rule: each rejection its own
//! error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use quorumkey_verifier::config::SubVerifierConfig;
use quorumkey_verifier::{
    AggregateConfig, AggregateError, IntrospectionConfig, TokenError, check_aggregate_agreement,
    check_aggregate_request, check_introspection,
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
