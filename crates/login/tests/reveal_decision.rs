//! The reveal decision (`quorumkey_login::decide`) and the records behind
//! it: each refusal in its order, the nullifiers written only when every
//! other check passed, aggregate sub-tokens bound once at commitment, and,
//! exhaustively for five nodes, that no split of the honest nodes between
//! a user's and an attacker's temporary key, with any two nodes signing
//! both, lets both keys pass the signature rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;

use proptest::prelude::*;
use quorumkey_crypto::group::{
    NonZeroScalar, Point, PublicKey, point_to_bytes, public_key_to_xy_hex, scalar_from_u64, scalar_to_bytes,
};
use quorumkey_crypto::hash::{token_commitment, token_commitment_hex};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_login::commitment::SUB_TOKEN_COMMITMENTS;
use quorumkey_login::records::{RECORD_LIFETIME_SECS, nullifier_key, record_key};
use quorumkey_login::reveal::aggregate_id_token;
use quorumkey_login::{
    CheckedToken, CommitmentRequest, KeyFacts, LoginError, LoginRecord, NodeKey, NullifierRecord, RecordWrite,
    RevealFacts, RevealStep, ShareRequest, SignaturePolicy, decide, required_signatures,
};
use quorumkey_verifier::{TokenIdentity, VerifierConfig};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value, json};
use zeroize::Zeroizing;

const NOW: u64 = 1_700_000_000;
const VERIFIER: &str = "app";
const AGGREGATE: &str = "app-aggregate";
const USER: &str = "alice@example.com";
const TOKEN: &str = "header.payload.signature";
const N: usize = 5;
const T: usize = 3;

static JWT: LazyLock<VerifierConfig> = LazyLock::new(|| {
    VerifierConfig::parse(
        json!({"type": "jwt", "issuer": "https://issuer.example", "audiences": ["app"],
               "keys": {"jwks_url": "https://issuer.example/jwks"}, "verifier_id_claim": "email",
               "max_token_age_secs": 600})
        .to_string()
        .as_bytes(),
    )
    .unwrap()
});

static AGGREGATE_CONFIG: LazyLock<VerifierConfig> = LazyLock::new(|| {
    let jwt: Value = serde_json::from_slice(&JWT.to_bytes()).unwrap();
    VerifierConfig::parse(json!({"type": "aggregate", "sub_verifiers": {"a": jwt, "b": jwt}}).to_string().as_bytes())
        .unwrap()
});

/// Five nodes with their signing keys, a user's and an attacker's
/// temporary keys, and one key shared among the nodes.
struct Network {
    keys: Vec<SigningKey>,
    nodes: Vec<NodeKey>,
    user: PublicKey,
    attacker: PublicKey,
    /// Node 1's share of the key and its public share.
    share: [u8; 32],
    public_share: Vec<u8>,
    public_key: PublicKey,
}

static NET: LazyLock<Network> = LazyLock::new(|| {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let keys: Vec<SigningKey> = (0..N).map(|_| SigningKey::generate_from_rng(&mut rng)).collect();
    let nodes = keys.iter().zip(1u16..).map(|(key, index)| NodeKey { index, public: public(key) }).collect();
    let temp = |rng: &mut ChaCha20Rng| PublicKey::from_secret_scalar(&NonZeroScalar::generate_from_rng(rng));
    let share = scalar_from_u64(123_456_789);
    Network {
        keys,
        nodes,
        user: temp(&mut rng),
        attacker: temp(&mut rng),
        share: scalar_to_bytes(&share),
        public_share: point_to_bytes(&Point::mul_by_generator(&share)).to_vec(),
        public_key: temp(&mut rng),
    }
});

fn public(key: &SigningKey) -> PublicKey {
    PublicKey::from(key.verifying_key())
}

fn commitment_params(token: &str, temp: &PublicKey, verifier: &str) -> Value {
    let (x, y) = public_key_to_xy_hex(temp);
    json!({"messageprefix": "mug00", "tokencommitment": token_commitment_hex(token),
           "temppubx": x, "temppuby": y, "verifieridentifier": verifier})
}

/// An aggregate's commitment params: its `idtoken` and each sub-token.
fn aggregate_commitment_params(sub_tokens: &[&str], temp: &PublicKey) -> Value {
    let owned: Vec<String> = sub_tokens.iter().map(|t| (*t).to_owned()).collect();
    let mut params = commitment_params(&aggregate_id_token(&owned), temp, AGGREGATE);
    params[SUB_TOKEN_COMMITMENTS] = json!(sub_tokens.iter().map(|t| token_commitment_hex(t)).collect::<Vec<_>>());
    params
}

/// Node `i` (0-based) signs `params` at `NOW`: its answer and its records.
fn commit(i: usize, params: &Value) -> (Value, Vec<RecordWrite>) {
    let request = CommitmentRequest::parse(params).unwrap();
    let record = request.sign(&NET.keys[i], NOW);
    let answer = serde_json::to_value(record.result(&NET.nodes[i].public)).unwrap();
    (answer, request.record_writes(&record))
}

fn share_params(id_token: &str, signatures: Vec<Value>) -> Value {
    json!({"encrypted": "yes", "item": [{"idtoken": id_token, "verifieridentifier": VERIFIER,
           "verifier_id": USER, "nodesignatures": signatures}]})
}

fn aggregate_share_params(sub_tokens: &[&str], signatures: Vec<Value>) -> Value {
    let owned: Vec<String> = sub_tokens.iter().map(|t| (*t).to_owned()).collect();
    let ids: Vec<String> = ["a", "b"].iter().take(sub_tokens.len()).map(|s| (*s).to_owned()).collect();
    json!({"encrypted": "yes", "item": [{"idtoken": aggregate_id_token(&owned), "verifieridentifier": AGGREGATE,
           "verifier_id": USER, "nodesignatures": signatures,
           "verify_params": sub_tokens.iter().map(|t| json!({"verifier_id": USER, "idtoken": t})).collect::<Vec<_>>(),
           "sub_verifier_ids": ids}]})
}

fn checked_token(identities: usize) -> CheckedToken {
    CheckedToken {
        verifier_id: USER.to_owned(),
        issued_at: NOW - 5,
        identities: (0..identities as u64).map(|i| TokenIdentity::introspection("u", "1", i)).collect(),
    }
}

fn key() -> KeyFacts {
    KeyFacts::Assigned {
        key_index: 9,
        public_key: NET.public_key,
        own_public_share: NET.public_share.clone(),
        share: Some(Zeroizing::new(NET.share)),
    }
}

/// The facts of node 1 for `request`, given its stored records.
fn facts<'a>(request: &'a ShareRequest, config: &'a VerifierConfig, stored: &[RecordWrite]) -> RevealFacts<'a> {
    let find = |key: &[u8]| stored.iter().find(|write| write.key == key).map(|write| write.value.clone());
    RevealFacts::new(
        request,
        config,
        &NET.nodes,
        required_signatures(N, T),
        NOW,
        SignaturePolicy::default(),
        find(&record_key(&request.commitment)),
        request.sub_token_commitments().iter().map(|c| find(&record_key(c))).collect(),
    )
}

fn refusal(step: Result<RevealStep, LoginError>) -> LoginError {
    match step {
        Err(error) => error,
        Ok(step) => panic!("expected a refusal, got {step:?}"),
    }
}

/// Four signatures of the user's binding, node 1's records.
fn user_login() -> (ShareRequest, Vec<RecordWrite>) {
    let params = commitment_params(TOKEN, &NET.user, VERIFIER);
    let (_, records) = commit(0, &params);
    let signatures = (0..4).map(|i| commit(i, &params).0).collect();
    (ShareRequest::parse(&share_params(TOKEN, signatures), N).unwrap(), records)
}

#[test]
fn a_login_is_granted_after_every_fact_in_order() {
    let (request, records) = user_login();
    let mut facts = facts(&request, &JWT, &records);
    assert!(matches!(decide(&facts), Ok(RevealStep::CheckToken)));
    facts.token = Some(Ok(checked_token(1)));
    assert!(matches!(decide(&facts), Ok(RevealStep::LookUpKey)));
    facts.key = Some(key());
    let Ok(RevealStep::RecordNullifiers(writes)) = decide(&facts) else { panic!("expected nullifiers") };
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].key, nullifier_key(&checked_token(1).identities[0]));
    assert_eq!(writes[0].expires_at, NOW + RECORD_LIFETIME_SECS);
    assert!(NullifierRecord::decode(&writes[0].value).unwrap().serves(&request.commitment));
    // This reveal's nullifier stored, or a retry finding its own.
    for stored in [None, Some(writes[0].value.clone())] {
        facts.nullifiers = Some(vec![stored]);
        let Ok(RevealStep::Grant(grant)) = decide(&facts) else { panic!("expected a grant") };
        assert_eq!(grant.recipient, NET.user, "to the recorded key");
        assert_eq!(grant.key_index, 9);
        assert_eq!(scalar_to_bytes(&grant.share), NET.share);
    }
}

#[test]
fn each_refusal_in_its_order() {
    let (request, records) = user_login();
    // No record: the commitment was never signed here.
    assert_eq!(refusal(decide(&facts(&request, &JWT, &[]))), LoginError::NoCommitment);
    // The request's shape must fit the verifier's kind.
    let error = refusal(decide(&facts(&request, &AGGREGATE_CONFIG, &records)));
    assert!(error.to_string().contains("aggregate verifier"), "{error}");
    // Committed for another verifier.
    let (_, elsewhere) = commit(0, &commitment_params(TOKEN, &NET.user, "other"));
    assert!(matches!(refusal(decide(&facts(&request, &JWT, &elsewhere))), LoginError::TokenUsed(_)));
    // Committed as a sub-token of an aggregate login.
    let (_, as_sub) = commit(0, &aggregate_commitment_params(&[TOKEN, "other.sub.token"], &NET.user));
    let error = refusal(decide(&facts(&request, &JWT, &as_sub)));
    assert_eq!(error, LoginError::TokenUsed("it was committed as a sub-token of an aggregate login"));
    // Too few signatures: three of the four needed.
    let params = commitment_params(TOKEN, &NET.user, VERIFIER);
    let three = ShareRequest::parse(&share_params(TOKEN, (0..3).map(|i| commit(i, &params).0).collect()), N).unwrap();
    assert!(matches!(
        refusal(decide(&facts(&three, &JWT, &records))),
        LoginError::NotEnoughSignatures { valid: 3, required: 4, .. }
    ));
    // The token's check, its user, its window.
    let mut all = facts(&request, &JWT, &records);
    all.token = Some(Err(LoginError::TokenRejected { verifier: VERIFIER.into(), reason: "expired".into() }));
    assert!(matches!(refusal(decide(&all)), LoginError::TokenRejected { .. }));
    let mut other_user = checked_token(1);
    other_user.verifier_id = "mallory@example.com".to_owned();
    all.token = Some(Ok(other_user));
    assert_eq!(refusal(decide(&all)), LoginError::WrongUser);
    let mut late = checked_token(1);
    late.issued_at = NOW + RECORD_LIFETIME_SECS;
    all.token = Some(Ok(late));
    assert_eq!(refusal(decide(&all)), LoginError::OutlivesCommitment);
    // The key: not assigned, no share here, a share that is not the ledger's.
    all.token = Some(Ok(checked_token(1)));
    all.key = Some(KeyFacts::NotAssigned);
    assert_eq!(refusal(decide(&all)), LoginError::NotAssigned);
    all.key = Some(KeyFacts::Assigned {
        key_index: 9,
        public_key: NET.public_key,
        own_public_share: NET.public_share.clone(),
        share: None,
    });
    assert!(matches!(refusal(decide(&all)), LoginError::Unavailable(_)));
    all.key = Some(KeyFacts::Assigned {
        key_index: 9,
        public_key: NET.public_key,
        own_public_share: NET.public_share.clone(),
        share: Some(Zeroizing::new(scalar_to_bytes(&scalar_from_u64(5)))),
    });
    assert!(matches!(refusal(decide(&all)), LoginError::Internal(_)));
    // A nullifier of another login: the same token in another spelling, revealed first.
    all.key = Some(key());
    let other = NullifierRecord::write(&checked_token(1).identities[0], &token_commitment("another spelling"), NOW);
    all.nullifiers = Some(vec![Some(other.value)]);
    assert!(matches!(refusal(decide(&all)), LoginError::TokenUsed(_)));
}

#[test]
fn aggregate_logins_reveal_exactly_the_sub_tokens_they_committed() {
    let subs = ["sub.token.one", "sub.token.two"];
    let params = aggregate_commitment_params(&subs, &NET.user);
    let (_, records) = commit(0, &params);
    assert_eq!(records.len(), 3, "the aggregate's record and one per sub-token");
    let signatures: Vec<Value> = (0..4).map(|i| commit(i, &params).0).collect();
    let request = ShareRequest::parse(&aggregate_share_params(&subs, signatures.clone()), N).unwrap();
    let mut all = facts(&request, &AGGREGATE_CONFIG, &records);
    assert!(matches!(decide(&all), Ok(RevealStep::CheckToken)));
    all.token = Some(Ok(checked_token(2)));
    all.key = Some(key());
    let Ok(RevealStep::RecordNullifiers(writes)) = decide(&all) else { panic!("expected nullifiers") };
    assert_eq!(writes.len(), 2, "one per sub-token");

    // A subset of the committed sub-tokens is another login: its
    // commitment, if signed, does not list them.
    let subset = ShareRequest::parse(&aggregate_share_params(&subs[..1], signatures), N).unwrap();
    let (_, subset_records) = commit(0, &aggregate_commitment_params(&subs[..1], &NET.attacker));
    let mut stored = records.clone();
    stored.extend(subset_records);
    // The sub-token's record is the user's login's: refused.
    assert!(matches!(refusal(decide(&facts(&subset, &AGGREGATE_CONFIG, &stored))), LoginError::TokenUsed(_)));
    // A sub-token's record missing: refused.
    let missing: Vec<RecordWrite> = records.iter().take(2).cloned().collect();
    assert_eq!(refusal(decide(&facts(&request, &AGGREGATE_CONFIG, &missing))), LoginError::NoCommitment);
}

/// At commitment, a token and each sub-token are bound once: a retry of
/// the same binding is answered again, anything else refused.
#[test]
fn commitments_bind_tokens_and_sub_tokens_once() {
    let subs = ["sub.token.one", "sub.token.two"];
    let user = CommitmentRequest::parse(&aggregate_commitment_params(&subs, &NET.user)).unwrap();
    let record = user.sign(&NET.keys[0], NOW);
    let stored: Vec<Option<Vec<u8>>> = user.record_writes(&record).into_iter().map(|w| Some(w.value)).collect();
    // A retry: the same answer.
    assert_eq!(user.outcome(user.sign(&NET.keys[0], NOW + 3), &stored).unwrap(), record);
    // Nothing stored before: this record.
    assert_eq!(user.outcome(record.clone(), &[None, None, None]).unwrap(), record);
    // Another temporary key for the same aggregate.
    let attacker = CommitmentRequest::parse(&aggregate_commitment_params(&subs, &NET.attacker)).unwrap();
    assert_eq!(attacker.outcome(attacker.sign(&NET.keys[0], NOW), &stored), Err(LoginError::DuplicateCommitment));
    // A sub-token already bound to another login (a subset, a mix, a reuse).
    let mix =
        CommitmentRequest::parse(&aggregate_commitment_params(&[subs[0], "sub.token.three"], &NET.attacker)).unwrap();
    let mix_writes = mix.record_writes(&mix.sign(&NET.keys[0], NOW));
    let found: Vec<Option<Vec<u8>>> = mix_writes
        .iter()
        .map(|w| user.record_writes(&record).into_iter().find(|u| u.key == w.key).map(|u| u.value))
        .collect();
    assert_eq!(mix.outcome(mix.sign(&NET.keys[0], NOW), &found), Err(LoginError::DuplicateSubToken));
    // A sub-token alone, with a single verifier.
    let alone = CommitmentRequest::parse(&commitment_params(subs[0], &NET.attacker, VERIFIER)).unwrap();
    let under_sub = user.record_writes(&record).into_iter().find(|w| w.key == alone.record_key()).unwrap();
    assert_eq!(
        alone.outcome(alone.sign(&NET.keys[0], NOW), &[Some(under_sub.value)]),
        Err(LoginError::DuplicateCommitment)
    );
    // A token used alone first, then as a sub-token.
    let single = CommitmentRequest::parse(&commitment_params(subs[0], &NET.user, VERIFIER)).unwrap();
    let single_record = LoginRecord::Commitment(single.sign(&NET.keys[0], NOW)).encode();
    let found: Vec<Option<Vec<u8>>> = user
        .record_writes(&record)
        .iter()
        .map(|w| (w.key == single.record_key()).then(|| single_record.clone()))
        .collect();
    assert_eq!(user.outcome(user.sign(&NET.keys[0], NOW), &found), Err(LoginError::DuplicateSubToken));
}

#[test]
fn sub_token_commitments_are_checked() {
    let params = aggregate_commitment_params(&["b.b.b", "a.a.a"], &NET.user);
    let request = CommitmentRequest::parse(&params).unwrap();
    let mut sorted = vec![token_commitment("a.a.a"), token_commitment("b.b.b")];
    sorted.sort();
    assert_eq!(request.sub_tokens, sorted);
    request.check_kind(true).unwrap();
    assert!(request.check_kind(false).unwrap_err().to_string().contains("not an aggregate verifier"));
    let plain = CommitmentRequest::parse(&commitment_params(TOKEN, &NET.user, VERIFIER)).unwrap();
    assert!(plain.check_kind(true).unwrap_err().to_string().contains(SUB_TOKEN_COMMITMENTS));
    plain.check_kind(false).unwrap();
    let with = |value: Value| {
        let mut params = params.clone();
        params[SUB_TOKEN_COMMITMENTS] = value;
        CommitmentRequest::parse(&params)
    };
    let one = token_commitment_hex("a.a.a");
    let own = params["tokencommitment"].clone();
    for bad in
        [json!([]), json!("x"), json!([1]), json!(["zz"]), json!([one, one]), json!([own]), json!(vec![one.clone(); 9])]
    {
        assert!(matches!(with(bad.clone()), Err(LoginError::InvalidParams(_))), "{bad}");
    }
    // Upper-case hex is the same commitment.
    assert_eq!(with(json!([one.to_uppercase()])).unwrap().sub_tokens, vec![token_commitment("a.a.a")]);
}

/// For five nodes and threshold three, every choice of two nodes that
/// sign anything and every split of the three others between the user's
/// key, an attacker's key and neither: if the user's reveal passes the
/// signature rule at an honest node, the attacker's passes at none (its
/// best request carries every signature it can get).
#[test]
fn no_split_lets_two_keys_pass_the_signature_rule() {
    let params = |temp: &PublicKey| commitment_params(TOKEN, temp, VERIFIER);
    let signed: Vec<[Value; 2]> =
        (0..N).map(|i| [commit(i, &params(&NET.user)).0, commit(i, &params(&NET.attacker)).0]).collect();
    let records: Vec<[Vec<RecordWrite>; 2]> =
        (0..N).map(|i| [commit(i, &params(&NET.user)).1, commit(i, &params(&NET.attacker)).1]).collect();
    let passes = |node: usize, binding: usize, signers: &[(usize, usize)]| {
        let signatures = signers.iter().map(|&(i, key)| signed[i][key].clone()).collect();
        let request = ShareRequest::parse(&share_params(TOKEN, signatures), N).unwrap();
        matches!(decide(&facts(&request, &JWT, &records[node][binding])), Ok(RevealStep::CheckToken))
    };
    let mut cases = 0;
    for byzantine in 0..(1u32 << N) {
        if byzantine.count_ones() as usize != T - 1 {
            continue;
        }
        let honest: Vec<usize> = (0..N).filter(|i| byzantine & (1 << i) == 0).collect();
        for split in 0..3usize.pow(honest.len() as u32) {
            // 0: the user's key, 1: the attacker's, 2: neither.
            let bound: Vec<(usize, usize)> =
                honest.iter().enumerate().map(|(k, &i)| (i, split / 3usize.pow(k as u32) % 3)).collect();
            let signers = |key: usize| -> Vec<(usize, usize)> {
                let mut signers: Vec<(usize, usize)> =
                    bound.iter().filter(|(_, b)| *b == key).map(|&(i, _)| (i, key)).collect();
                signers.extend((0..N).filter(|i| byzantine & (1 << i) != 0).map(|i| (i, key)));
                signers
            };
            let served = |key: usize| bound.iter().filter(|&&(i, b)| b == key && passes(i, key, &signers(key))).count();
            let (user, attacker) = (served(0), served(1));
            assert!(user == 0 || attacker == 0, "byzantine {byzantine:05b}, split {bound:?}: {user} and {attacker}");
            cases += 1;
        }
    }
    assert_eq!(cases, 10 * 27);
}

proptest! {
    /// Whatever a request carries, a node gets to the token check only
    /// with `required` distinct, valid signatures of the key it recorded,
    /// and writes nothing before every other check passed.
    #[test]
    fn nothing_passes_without_a_quorum_on_the_recorded_key(
        entries in prop::collection::vec((0..N, 0..3usize), 0..=N),
    ) {
        let params = |temp: &PublicKey| commitment_params(TOKEN, temp, VERIFIER);
        let signatures: Vec<Value> = entries
            .iter()
            .map(|&(i, kind)| match kind {
                0 => commit(i, &params(&NET.user)).0,
                1 => commit(i, &params(&NET.attacker)).0,
                _ => Value::Null,
            })
            .collect();
        let request = ShareRequest::parse(&share_params(TOKEN, signatures), N).unwrap();
        let (_, records) = commit(0, &params(&NET.user));
        let mut all = facts(&request, &JWT, &records);
        let mut signers: Vec<usize> = entries.iter().filter(|(_, kind)| *kind == 0).map(|(i, _)| *i).collect();
        signers.sort();
        signers.dedup();
        let enough = signers.len() >= required_signatures(N, T);
        match decide(&all) {
            Ok(RevealStep::CheckToken) => prop_assert!(enough),
            Err(LoginError::NotEnoughSignatures { .. }) => prop_assert!(!enough),
            other => prop_assert!(false, "{:?}", other),
        }
        all.token = Some(Ok(checked_token(1)));
        all.key = Some(key());
        match decide(&all) {
            Ok(RevealStep::RecordNullifiers(_)) => prop_assert!(enough),
            Err(_) => prop_assert!(!enough),
            Ok(other) => prop_assert!(false, "{:?}", other),
        }
    }
}

/// A script verifier takes script logins only (sub-tokens and evidence),
/// an aggregate verifier never, and a script login carries only the
/// evidence its verifier declares: each checked before anything else.
#[test]
fn script_logins_fit_their_verifier_and_carry_only_declared_evidence() {
    use quorumkey_login::reveal::script_id_token;
    let jwt: Value = serde_json::from_slice(&JWT.to_bytes()).unwrap();
    let script_config = VerifierConfig::parse(
        json!({"type": "script", "module": "ab".repeat(32), "fuel": 1000, "memory_pages": 1,
               "sub_verifiers": {"a": jwt, "b": jwt}, "evidence": ["signature"]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let subs = ["sub.token.one".to_owned(), "sub.token.two".to_owned()];
    let script_params = |evidence: Value| {
        let map: std::collections::BTreeMap<String, String> = serde_json::from_value(evidence.clone()).unwrap();
        let mut params = aggregate_share_params(&["sub.token.one", "sub.token.two"], vec![]);
        params["item"][0]["idtoken"] = json!(script_id_token(&subs, &map));
        params["item"][0]["script_params"] = evidence;
        ShareRequest::parse(&params, N).unwrap()
    };
    let invalid = |step| match refusal(step) {
        LoginError::InvalidParams(reason) => reason,
        other => panic!("expected InvalidParams, got {other:?}"),
    };
    // The declared evidence: the shape passes, and the next check (the
    // records, none here) decides.
    let declared = script_params(json!({"signature": "0x01"}));
    assert_eq!(refusal(decide(&facts(&declared, &script_config, &[]))), LoginError::NoCommitment);
    // Another field.
    let other = script_params(json!({"signature": "0x01", "referrer": "x"}));
    assert!(invalid(decide(&facts(&other, &script_config, &[]))).contains("takes no evidence field \"referrer\""));
    // An aggregate login at a script verifier, a script login at an
    // aggregate verifier, a single token at either.
    let aggregate =
        ShareRequest::parse(&aggregate_share_params(&["sub.token.one", "sub.token.two"], vec![]), N).unwrap();
    assert!(invalid(decide(&facts(&aggregate, &script_config, &[]))).contains("is a script verifier"));
    assert!(invalid(decide(&facts(&declared, &AGGREGATE_CONFIG, &[]))).contains("is an aggregate verifier"));
    let (single, _) = user_login();
    assert!(invalid(decide(&facts(&single, &script_config, &[]))).contains("is a script verifier"));
    assert!(invalid(decide(&facts(&declared, &JWT, &[]))).contains("send no `verify_params`"));
}
