//! The login protocol against the torus.js wire format: the JSON-RPC
//! envelope, lookups and their errors, the commitment signature (with the
//! generated vector in `crates/crypto/tests/data/torus-compat.json`), the
//! reveal rule on node signatures, the KeyAssign authorization and the
//! encrypted share. Property tests feed arbitrary bytes and JSON to every
//! parser (nothing a client sends may panic a node) and mutated signatures
//! to the reveal rule (only intact signatures of distinct nodes count).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use proptest::prelude::*;
use quorumkey_crypto::address::eth_address;
use quorumkey_crypto::ecies::{self, EciesCiphertext, TorusEncryptedShare};
use quorumkey_crypto::group::{
    NonZeroScalar, PublicKey, Scalar, nonzero_scalar_from_hex, public_key_to_uncompressed, public_key_to_xy_hex,
    require_nonzero, scalar_from_u64, scalar_to_bytes,
};
use quorumkey_crypto::hash::{keccak256, token_commitment, token_commitment_hex};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::signature::RecoverableSignature;
use quorumkey_ledger::{VerifierId, VerifierName};
use quorumkey_login::commitment::{MESSAGE_PREFIX, RECORD_MARGIN_SECS, SignedData, record_key};
use quorumkey_login::error::NOT_ASSIGNED;
use quorumkey_login::key_assign::{MAX_AUTHORIZATION_AGE_SECS, MAX_AUTHORIZATION_SKEW_SECS};
use quorumkey_login::records::RECORD_LIFETIME_SECS;
use quorumkey_login::reveal::{MAX_ID_TOKEN_LEN, MAX_SUB_TOKENS, aggregate_id_token};
use quorumkey_login::rpc::{INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, request_body};
use quorumkey_login::share::{KeyContext, encrypt_share};
use quorumkey_login::{
    CommitmentRecord, CommitmentRequest, CommitmentResult, DELIMITER, KeyAssignAuthorization, KeyLookupResult,
    LoginError, LookupKey, LookupParams, Method, NodeKey, RpcError, RpcRequest, RpcResponse, ShareRequest,
    SignaturePolicy, SignerRequest, required_signatures,
};
use quorumkey_verifier::config::MAX_ACCEPTANCE_SECS;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Map, Value, json};

/// The reference time of most tests (Unix seconds): the vector's.
const NOW: u64 = 1_700_000_000;
const VERIFIER: &str = "test-verifier";
const TOKEN: &str = "tok";
const USER: &str = "alice@example.com";
/// The five-node network (threshold 3) of the reveal tests.
const NODES: usize = 5;
/// `max_signatures` for `ShareRequest::parse` (the node passes its node
/// count; the tests use a roomier bound to hold garbage entries).
const MAX_SIGNATURES: usize = 24;

const VECTORS: &str = include_str!("../../crypto/tests/data/torus-compat.json");

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn secret_hex(hex: &str) -> NonZeroScalar {
    nonzero_scalar_from_hex("test key", hex).unwrap()
}

fn public_of(key: &SigningKey) -> PublicKey {
    PublicKey::from(key.verifying_key())
}

fn temp_key(seed: u64) -> (NonZeroScalar, PublicKey) {
    let secret = NonZeroScalar::generate_from_rng(&mut rng(seed));
    (secret, PublicKey::from_secret_scalar(&secret))
}

fn name(s: &str) -> VerifierName {
    VerifierName::new(s).unwrap()
}

fn user(s: &str) -> VerifierId {
    VerifierId::new(s).unwrap()
}

fn invalid_params<T: std::fmt::Debug>(result: Result<T, LoginError>) -> String {
    match result {
        Err(LoginError::InvalidParams(reason)) => reason,
        other => panic!("expected InvalidParams, got {other:?}"),
    }
}

/// The smallest scalar `k >= from` whose public key `k·G` has an X with a
/// leading zero byte (about one key in 256).
fn key_with_leading_zero_x(from: u64) -> (NonZeroScalar, PublicKey) {
    for k in from..from + 20_000 {
        let secret = require_nonzero("k", scalar_from_u64(k)).unwrap();
        let public = PublicKey::from_secret_scalar(&secret);
        if public_key_to_uncompressed(&public)[1] == 0 {
            return (secret, public);
        }
    }
    panic!("no key with a leading zero byte in X found");
}

// ---------------------------------------------------------------------------
// rpc
// ---------------------------------------------------------------------------

fn parse_err(body: &[u8]) -> (Value, RpcError) {
    match RpcRequest::parse(body) {
        Err(error) => error,
        Ok(request) => panic!("expected an error for {:?}, got {request:?}", String::from_utf8_lossy(body)),
    }
}

#[test]
fn rpc_parses_a_torus_js_lookup() {
    let body = br#"{"jsonrpc":"2.0","method":"VerifierLookupRequest","id":10,"params":{"verifier":"google","verifier_id":"hello@tor.us"}}"#;
    let request = RpcRequest::parse(body).unwrap();
    assert_eq!(request.method, Method::VerifierLookup);
    assert_eq!(request.id, json!(10));
    assert_eq!(request.params, json!({"verifier": "google", "verifier_id": "hello@tor.us"}));
    assert_eq!(request.body.get("jsonrpc"), Some(&json!("2.0")));
    assert_eq!(request.body.len(), 4);
    let params = LookupParams::parse(&request.params).unwrap();
    assert_eq!(params.verifier.as_str(), "google");
    assert_eq!(params.verifier_id.as_str(), "hello@tor.us");
}

#[test]
fn rpc_request_body_round_trips_for_every_method() {
    for method in Method::ALL {
        let body = serde_json::to_vec(&request_body(method, json!({"a": 1}))).unwrap();
        let request = RpcRequest::parse(&body).unwrap();
        assert_eq!(request.method, method);
        assert_eq!(request.id, json!(10));
        assert_eq!(request.params, json!({"a": 1}));
    }
    // String and null ids are echoed too.
    let request = RpcRequest::parse(br#"{"jsonrpc":"2.0","method":"ShareRequest","id":"abc","params":{}}"#).unwrap();
    assert_eq!(request.id, json!("abc"));
    let request = RpcRequest::parse(br#"{"jsonrpc":"2.0","method":"ShareRequest","params":{}}"#).unwrap();
    assert_eq!(request.id, Value::Null);
}

#[test]
fn rpc_body_that_is_not_json_is_a_parse_error() {
    for body in [&b"not json"[..], b"", b"{\"jsonrpc\":", b"\xff\xfe", b"{\"a\":1} trailing"] {
        let (id, error) = parse_err(body);
        assert_eq!(id, Value::Null);
        assert_eq!(error.code, PARSE_ERROR, "{error:?}");
        assert_eq!(error.code, -32700);
    }
}

#[test]
fn rpc_batch_is_refused() {
    let (id, error) = parse_err(br#"[{"jsonrpc":"2.0","method":"ShareRequest","id":1,"params":{}}]"#);
    assert_eq!(id, Value::Null);
    assert_eq!(error.code, INVALID_REQUEST);
    assert_eq!(error.code, -32600);
    assert!(error.data.contains("batch"), "{error:?}");
    // Other non-objects are invalid requests too.
    for body in [&b"1"[..], b"\"x\"", b"null", b"true"] {
        assert_eq!(parse_err(body).1.code, INVALID_REQUEST);
    }
}

#[test]
fn rpc_missing_or_wrong_version_echoes_the_id() {
    for (body, expected_id) in [
        (&br#"{"method":"ShareRequest","id":7,"params":{}}"#[..], json!(7)),
        (br#"{"jsonrpc":"1.0","method":"ShareRequest","id":"x-1","params":{}}"#, json!("x-1")),
        (br#"{"jsonrpc":2.0,"method":"ShareRequest","id":8,"params":{}}"#, json!(8)),
        (br#"{"jsonrpc":null,"method":"ShareRequest","id":9,"params":{}}"#, json!(9)),
    ] {
        let (id, error) = parse_err(body);
        assert_eq!(id, expected_id);
        assert_eq!(error.code, -32600);
        assert_eq!(error.message, "Invalid Request");
        assert!(error.data.contains("jsonrpc"), "{error:?}");
    }
}

#[test]
fn rpc_unknown_method_is_method_not_found() {
    let (id, error) = parse_err(br#"{"jsonrpc":"2.0","method":"GetShareOrKeyAssign","id":11,"params":{}}"#);
    assert_eq!(id, json!(11));
    assert_eq!(error.code, METHOD_NOT_FOUND);
    assert_eq!(error.code, -32601);
    assert!(error.data.contains("GetShareOrKeyAssign"), "{error:?}");
    // Names are case-sensitive.
    assert_eq!(parse_err(br#"{"jsonrpc":"2.0","method":"sharerequest","id":1,"params":{}}"#).1.code, -32601);
    // A method that is not a string is an invalid request.
    let (id, error) = parse_err(br#"{"jsonrpc":"2.0","method":5,"id":12,"params":{}}"#);
    assert_eq!((id, error.code), (json!(12), -32600));
    let (id, error) = parse_err(br#"{"jsonrpc":"2.0","id":13,"params":{}}"#);
    assert_eq!((id, error.code), (json!(13), -32600));
}

#[test]
fn rpc_params_must_be_an_object() {
    for params in ["[]", "[1,2]", "\"x\"", "1", "null", "true"] {
        let body = format!(r#"{{"jsonrpc":"2.0","method":"CommitmentRequest","id":3,"params":{params}}}"#);
        let (id, error) = parse_err(body.as_bytes());
        assert_eq!(id, json!(3));
        assert_eq!(error.code, INVALID_PARAMS, "{params}");
        assert_eq!(error.code, -32602);
        assert_eq!(error.message, "Input Error");
    }
    let (id, error) = parse_err(br#"{"jsonrpc":"2.0","method":"CommitmentRequest","id":4}"#);
    assert_eq!((id, error.code), (json!(4), -32602));
}

#[test]
fn rpc_oversized_or_odd_ids_are_refused_without_echo() {
    let ok = format!(r#"{{"jsonrpc":"2.0","method":"KeyAssign","id":"{}","params":{{}}}}"#, "i".repeat(128));
    assert_eq!(RpcRequest::parse(ok.as_bytes()).unwrap().id, json!("i".repeat(128)));
    let long = format!(r#"{{"jsonrpc":"2.0","method":"KeyAssign","id":"{}","params":{{}}}}"#, "i".repeat(129));
    let (id, error) = parse_err(long.as_bytes());
    assert_eq!(id, Value::Null);
    assert_eq!(error.code, -32600);
    assert!(error.data.contains("id"), "{error:?}");
    for odd in ["[1]", "{}", "true"] {
        let body = format!(r#"{{"jsonrpc":"2.0","method":"KeyAssign","id":{odd},"params":{{}}}}"#);
        let (id, error) = parse_err(body.as_bytes());
        assert_eq!((id, error.code), (Value::Null, -32600), "{odd}");
    }
}

#[test]
fn method_names_round_trip() {
    let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(names, ["VerifierLookupRequest", "KeyAssign", "CommitmentRequest", "ShareRequest"]);
    for method in Method::ALL {
        assert_eq!(Method::from_name(method.name()), Some(method));
    }
    assert_eq!(Method::from_name(""), None);
    assert_eq!(Method::from_name("keyassign"), None);
    assert_eq!(Method::from_name("KeyAssign "), None);
}

#[test]
fn rpc_responses_have_either_result_or_error() {
    let ok = serde_json::to_value(RpcResponse::result(json!(10), json!({"keys": []}))).unwrap();
    assert_eq!(ok, json!({"jsonrpc": "2.0", "id": 10, "result": {"keys": []}}));
    let error = RpcResponse::error(json!(10), LoginError::NotAssigned.to_rpc());
    let error = serde_json::to_value(error).unwrap();
    assert_eq!(
        error,
        json!({"jsonrpc": "2.0", "id": 10, "error": {"code": -32602, "message": "Input Error", "data": NOT_ASSIGNED}})
    );
}

// ---------------------------------------------------------------------------
// lookup
// ---------------------------------------------------------------------------

#[test]
fn lookup_params_ignore_extra_fields() {
    let params = json!({
        "verifier": "torus-test-health", "verifier_id": "hello@tor.us",
        "key_type": "secp256k1", "client_time": "1700000000", "extended_verifier_id": null
    });
    let parsed = LookupParams::parse(&params).unwrap();
    assert_eq!(parsed.verifier, name("torus-test-health"));
    assert_eq!(parsed.verifier_id, user("hello@tor.us"));
}

#[test]
fn lookup_params_errors() {
    let reason = invalid_params(LookupParams::parse(&json!({"verifier": "google"})));
    assert!(reason.contains("verifier_id") && reason.contains("missing"), "{reason}");
    let reason = invalid_params(LookupParams::parse(&json!({"verifier_id": "a"})));
    assert!(reason.contains("verifier") && reason.contains("missing"), "{reason}");
    let reason = invalid_params(LookupParams::parse(&json!({"verifier": "google", "verifier_id": 42})));
    assert!(reason.contains("verifier_id") && reason.contains("number"), "{reason}");
    let reason = invalid_params(LookupParams::parse(&json!({"verifier": "goo gle", "verifier_id": "a"})));
    assert!(reason.contains("verifier"), "{reason}");
    let long = "v".repeat(65);
    for bad in ["", "a/b", "ünï", "x\u{1c}y", long.as_str()] {
        invalid_params(LookupParams::parse(&json!({"verifier": bad, "verifier_id": "a"})));
    }
    let reason = invalid_params(LookupParams::parse(&json!({"verifier": "google", "verifier_id": ""})));
    assert!(reason.contains("verifier_id"), "{reason}");
    // The field separator (a control character) can never reach a signed string.
    invalid_params(LookupParams::parse(&json!({"verifier": "google", "verifier_id": "a\u{1c}b"})));
    invalid_params(LookupParams::parse(&json!({"verifier": "google", "verifier_id": "x".repeat(257)})));
    LookupParams::parse(&json!({"verifier": "google", "verifier_id": "x".repeat(256)})).unwrap();
    invalid_params(LookupParams::parse(&json!(["google", "a"])));
}

#[test]
fn lookup_key_formats_every_field_one_way() {
    let (_, public) = key_with_leading_zero_x(1);
    let key = LookupKey::new(0x1f, &public);
    assert_eq!(key.key_index, "1f");
    let uncompressed = public_key_to_uncompressed(&public);
    assert!(key.pub_key_x.starts_with("00"), "X is zero-padded: {}", key.pub_key_x);
    assert_eq!(key.pub_key_x, hex::encode(&uncompressed[1..33]));
    assert_eq!(key.pub_key_y, hex::encode(&uncompressed[33..65]));
    for coordinate in [&key.pub_key_x, &key.pub_key_y] {
        assert_eq!(coordinate.len(), 64);
        assert!(coordinate.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{coordinate}");
    }
    assert_eq!(key.address, eth_address(&public));
    assert_eq!(LookupKey::new(0, &public).key_index, "0");
    assert_eq!(LookupKey::new(4096, &public).key_index, "1000");

    // The Torus field names, and the eth_address vector.
    let public = PublicKey::from_secret_scalar(&secret_hex(&"01".repeat(32)));
    let result = KeyLookupResult { keys: vec![LookupKey::new(1, &public)] };
    assert_eq!(
        serde_json::to_value(&result).unwrap(),
        json!({"keys": [{
            "key_index": "1",
            "pub_key_X": "1b84c5567b126440995d3ed5aaba0565d71e1834604819ff9c17f5e9d5dd078f",
            "pub_key_Y": "70beaf8f588b541507fed6a642c5ab42dfdf8120a7f639de5122d47a69a8e8d1",
            "address": "0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1",
        }]})
    );
}

#[test]
fn not_assigned_is_the_text_torus_js_matches() {
    let error = LoginError::NotAssigned.to_rpc();
    assert_eq!(error.code, -32602);
    assert_eq!(error.message, "Input Error");
    assert!(error.data.contains("Verifier + VerifierID has not yet been assigned"), "{error:?}");
    assert_eq!(error.data, NOT_ASSIGNED);

    let error = LoginError::UnknownVerifier("nope".to_owned()).to_rpc();
    assert_eq!(error.code, -32602);
    assert!(error.data.contains("Verifier not supported"), "{error:?}");
    let error = LoginError::DisabledVerifier("off".to_owned()).to_rpc();
    assert!(error.data.contains("Verifier not supported"), "{error:?}");
    // A few other classes.
    assert_eq!(LoginError::InvalidParams("x".to_owned()).to_rpc(), RpcError::new(-32602, "Input Error", "x"));
    assert_eq!(LoginError::TokenUsed("it was committed for another verifier").to_rpc().code, -32001);
    assert_eq!(LoginError::DuplicateCommitment.to_rpc().code, -32001);
    assert!(LoginError::DuplicateCommitment.to_rpc().data.contains("Duplicate token found"));
    assert_eq!(LoginError::Unavailable("later".to_owned()).to_rpc().code, -32002);
    assert_eq!(LoginError::RateLimited("slow".to_owned()).to_rpc().code, -32005);
    assert_eq!(LoginError::Internal("oops".to_owned()).to_rpc().code, -32603);
}

// ---------------------------------------------------------------------------
// commitment
// ---------------------------------------------------------------------------

fn commitment_params(token: &str, temp: &PublicKey, verifier: &str) -> Value {
    let (x, y) = public_key_to_xy_hex(temp);
    json!({
        "messageprefix": "mug00",
        "tokencommitment": token_commitment_hex(token),
        "temppubx": x,
        "temppuby": y,
        "verifieridentifier": verifier,
    })
}

fn commitment_vector() -> Value {
    let all: Value = serde_json::from_str(VECTORS).unwrap();
    all["commitment_signature"][0].clone()
}

fn vector_text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap()
}

#[test]
fn commitment_signature_matches_the_torus_vector() {
    let v = commitment_vector();
    let node_key = SigningKey::from(secret_hex(vector_text(&v, "node_private_key")));
    let node_public = public_of(&node_key);
    assert_eq!(vector_text(&v, "node_private_key"), "11".repeat(32));
    let temp = PublicKey::from_secret_scalar(&secret_hex(&"aa".repeat(32)));
    let fields: Vec<&str> = v["data_fields"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    let expected_data = fields.join("\u{1c}");

    let params = commitment_params("dummy.id.token", &temp, VERIFIER);
    assert_eq!(params["tokencommitment"], fields[1]);
    assert_eq!(params["temppubx"], fields[2]);
    assert_eq!(params["temppuby"], fields[3]);
    let request = CommitmentRequest::parse(&params).unwrap();
    assert_eq!(request.verifier.as_str(), VERIFIER);
    assert_eq!(request.commitment, token_commitment("dummy.id.token"));
    assert_eq!(request.temp_public, temp);
    assert_eq!(request.signed_data(NOW), expected_data);
    assert_eq!(
        hex::encode(keccak256(expected_data.as_bytes())),
        "071ea69f4f25ffab40d2f2dc1f5427c55638fcdc9dbcb4f42d5b17df403fed3f"
    );
    assert_eq!(hex::encode(keccak256(expected_data.as_bytes())), vector_text(&v, "keccak256_data"));

    let record = request.sign(&node_key, NOW);
    assert_eq!(record.data, expected_data);
    assert_eq!(record.created_at, NOW);
    assert_eq!(record.expires_at, NOW + RECORD_LIFETIME_SECS);
    assert_eq!(record.temp_public, hex::encode(public_key_to_uncompressed(&temp)));
    assert_eq!(record.temp_public().unwrap(), temp);
    assert_eq!(record.signature.len(), 130);
    let signature = RecoverableSignature::from_torus_hex(&record.signature).unwrap();
    signature.verify_keccak(&node_public, expected_data.as_bytes()).unwrap();
    assert_eq!(signature.recover_keccak(expected_data.as_bytes()).unwrap(), node_public);
    // RFC 6979 is deterministic: the same bytes as the generated vector.
    assert_eq!(record.signature, vector_text(&v, "signature_rsv"));
    // The documented signature verifies on our data string as well.
    RecoverableSignature::from_torus_hex(vector_text(&v, "signature_rsv"))
        .unwrap()
        .verify_keccak(&node_public, request.signed_data(NOW).as_bytes())
        .unwrap();

    let result = record.result(&node_public);
    assert_eq!(result.nodepubx, vector_text(&v, "nodepubx"));
    assert_eq!(result.nodepuby, vector_text(&v, "nodepuby"));
    assert_eq!(result.nodepubx, "4f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa");
    assert_eq!(result.nodepuby, "385b6b1b8ead809ca67454d9683fcf2ba03456d6fe2c4abe2b07f0fbdbb2f1c1");
    assert_eq!(result.signature, record.signature);
    assert_eq!(result.data, record.data);
    // The Torus result shape: exactly these four fields.
    let wire = serde_json::to_value(&result).unwrap();
    let keys: BTreeSet<&str> = wire.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["signature", "data", "nodepubx", "nodepuby"]));
    // The record round-trips through its stored form.
    let stored = serde_json::to_vec(&record).unwrap();
    assert_eq!(serde_json::from_slice::<CommitmentRecord>(&stored).unwrap(), record);
}

#[test]
fn commitment_params_accept_extra_fields_and_keep_coordinates_as_sent() {
    let (_, temp) = temp_key(5);
    let mut params = commitment_params(TOKEN, &temp, VERIFIER);
    params["keytype"] = json!("secp256k1");
    params["verifier_id"] = json!(USER);
    params["is_import_key_flow"] = json!(true);
    let request = CommitmentRequest::parse(&params).unwrap();
    assert_eq!(request.temp_public, temp);

    // Upper-case hex is accepted; the signed string holds the coordinates
    // as sent and the commitment in lower case.
    let (x, y) = public_key_to_xy_hex(&temp);
    let mut upper = commitment_params(TOKEN, &temp, VERIFIER);
    upper["temppubx"] = json!(x.to_uppercase());
    upper["temppuby"] = json!(y.to_uppercase());
    upper["tokencommitment"] = json!(token_commitment_hex(TOKEN).to_uppercase());
    let request = CommitmentRequest::parse(&upper).unwrap();
    assert_eq!(request.temp_public, temp);
    let data = request.signed_data(NOW);
    let signed = SignedData::parse(&data).unwrap();
    assert_eq!(signed.commitment, token_commitment_hex(TOKEN));
    assert_eq!(signed.temp_x, x.to_uppercase());
    assert_eq!(signed.temp_y, y.to_uppercase());
}

#[test]
fn commitment_params_errors() {
    let (_, temp) = temp_key(5);
    let good = commitment_params(TOKEN, &temp, VERIFIER);
    CommitmentRequest::parse(&good).unwrap();
    let with = |field: &str, value: Value| {
        let mut params = good.clone();
        params[field] = value;
        params
    };
    let without = |field: &str| {
        let mut params = good.clone();
        params.as_object_mut().unwrap().remove(field);
        params
    };

    for prefix in ["mug01", "", "MUG00", "mug00 "] {
        let reason = invalid_params(CommitmentRequest::parse(&with("messageprefix", json!(prefix))));
        assert!(reason.contains("messageprefix"), "{reason}");
    }
    let commitment = token_commitment_hex(TOKEN);
    let (longer, prefixed, not_hex) = (format!("{commitment}0"), format!("0x{}", &commitment[2..]), "zz".repeat(32));
    for bad in [&commitment[..63], longer.as_str(), prefixed.as_str(), not_hex.as_str(), ""] {
        let reason = invalid_params(CommitmentRequest::parse(&with("tokencommitment", json!(bad))));
        assert!(reason.contains("tokencommitment"), "{reason}");
    }
    // Not on the curve: Y + 1.
    let (x, y) = public_key_to_xy_hex(&temp);
    let mut y_bytes = hex::decode(&y).unwrap();
    y_bytes[31] ^= 1;
    let reason = invalid_params(CommitmentRequest::parse(&with("temppuby", json!(hex::encode(y_bytes)))));
    assert!(reason.contains("temppub"), "{reason}");
    invalid_params(CommitmentRequest::parse(&with("temppubx", json!(format!("{x}00")))));
    invalid_params(CommitmentRequest::parse(&with("temppubx", json!("0"))));
    invalid_params(CommitmentRequest::parse(&with("temppubx", json!(x.replace(|c: char| c.is_ascii_digit(), "g")))));
    let long = "v".repeat(65);
    for verifier in ["bad verifier", "", "a\u{1c}b", long.as_str()] {
        let reason = invalid_params(CommitmentRequest::parse(&with("verifieridentifier", json!(verifier))));
        assert!(reason.contains("verifieridentifier"), "{reason}");
    }
    for field in ["messageprefix", "tokencommitment", "temppubx", "temppuby", "verifieridentifier"] {
        let reason = invalid_params(CommitmentRequest::parse(&without(field)));
        assert!(reason.contains(field) && reason.contains("missing"), "{reason}");
        let reason = invalid_params(CommitmentRequest::parse(&with(field, json!(1))));
        assert!(reason.contains(field) && reason.contains("number"), "{reason}");
    }
    invalid_params(CommitmentRequest::parse(&json!([good])));
}

#[test]
fn commitment_records_bind_one_temporary_key() {
    let (_, temp) = temp_key(5);
    let (_, other) = temp_key(6);
    let node = SigningKey::generate_from_rng(&mut rng(1));
    let request = CommitmentRequest::parse(&commitment_params(TOKEN, &temp, VERIFIER)).unwrap();
    let record = request.sign(&node, NOW);
    assert!(record.binds(&request));
    // A retry with the same key, even with differently written coordinates.
    let (x, y) = public_key_to_xy_hex(&temp);
    let mut upper = commitment_params(TOKEN, &temp, VERIFIER);
    upper["temppubx"] = json!(x.to_uppercase());
    upper["temppuby"] = json!(y.to_uppercase());
    assert!(record.binds(&CommitmentRequest::parse(&upper).unwrap()));
    let front_runner = CommitmentRequest::parse(&commitment_params(TOKEN, &other, VERIFIER)).unwrap();
    assert!(!record.binds(&front_runner));
    // Both requests have the same record key: the store sees the conflict.
    assert_eq!(request.record_key(), front_runner.record_key());
    assert_eq!(request.record_key(), token_commitment(TOKEN).to_vec());
    assert_eq!(record_key(&token_commitment(TOKEN)), token_commitment(TOKEN).to_vec());
    // The record is the token's nullifier: under another verifier the same
    // token meets the same record, which does not bind it.
    let other_verifier = CommitmentRequest::parse(&commitment_params(TOKEN, &temp, "other-verifier")).unwrap();
    assert_eq!(other_verifier.record_key(), request.record_key());
    assert!(!record.binds(&other_verifier));
    assert_eq!(record.verifier, VERIFIER);
}

/// A record is kept for the longest any verifier configuration can accept
/// a token, plus the margin, whatever its verifier's window is now: no
/// later update can make a swept token acceptable again.
#[test]
fn commitment_records_outlive_every_configuration() {
    let (_, temp) = temp_key(5);
    let node = SigningKey::generate_from_rng(&mut rng(1));
    let request = CommitmentRequest::parse(&commitment_params(TOKEN, &temp, VERIFIER)).unwrap();
    assert_eq!(RECORD_MARGIN_SECS, 1_800);
    assert_eq!(RECORD_LIFETIME_SECS, MAX_ACCEPTANCE_SECS + RECORD_MARGIN_SECS);
    assert_eq!(MAX_ACCEPTANCE_SECS, 86_400 + 600);
    for now in [NOW, NOW + 17, 0] {
        let record = request.sign(&node, now);
        assert_eq!(record.created_at, now);
        assert_eq!(record.expires_at, now + RECORD_LIFETIME_SECS);
        assert_eq!(SignedData::parse(&record.data).unwrap().timestamp, now);
    }
    // Saturates rather than wrapping.
    assert_eq!(request.sign(&node, u64::MAX - 5).expires_at, u64::MAX);
}

#[test]
fn signed_data_round_trip_and_errors() {
    let (_, temp) = temp_key(5);
    let request = CommitmentRequest::parse(&commitment_params(TOKEN, &temp, VERIFIER)).unwrap();
    let data = request.signed_data(NOW);
    assert_eq!(data.matches(DELIMITER).count(), 5);
    let signed = SignedData::parse(&data).unwrap();
    let (x, y) = public_key_to_xy_hex(&temp);
    let commitment = token_commitment_hex(TOKEN);
    assert_eq!(
        signed,
        SignedData { commitment: &commitment, temp_x: &x, temp_y: &y, verifier: VERIFIER, timestamp: NOW }
    );

    let join = |fields: &[&str]| fields.join("\u{1c}");
    let five = join(&[MESSAGE_PREFIX, &commitment, &x, &y, VERIFIER]);
    assert!(SignedData::parse(&five).unwrap_err().contains("5 fields"));
    let seven = join(&[MESSAGE_PREFIX, &commitment, &x, &y, VERIFIER, "1700000000", "extra"]);
    assert!(SignedData::parse(&seven).unwrap_err().contains("7 fields"));
    let eight = join(&[MESSAGE_PREFIX, &commitment, &x, &y, VERIFIER, "1", "2", "3"]);
    SignedData::parse(&eight).unwrap_err();
    for time in ["soon", "", "-1", "1.5", "0x10", "18446744073709551616"] {
        let data = join(&[MESSAGE_PREFIX, &commitment, &x, &y, VERIFIER, time]);
        let error = SignedData::parse(&data).unwrap_err();
        assert!(error.contains("Unix seconds"), "{time}: {error}");
    }
    let error = SignedData::parse(&join(&["mug01", &commitment, &x, &y, VERIFIER, "1"])).unwrap_err();
    assert!(error.contains("mug00"), "{error}");
    assert!(SignedData::parse("").is_err());
    assert_eq!(SignedData::parse(&join(&[MESSAGE_PREFIX, "", "", "", "", "0"])).unwrap().timestamp, 0);
}

// ---------------------------------------------------------------------------
// reveal
// ---------------------------------------------------------------------------

/// A network: node `i` (0-based) has index `i + 1` and secp256k1 key
/// `keys[i]`.
struct Network {
    keys: Vec<SigningKey>,
    nodes: Vec<NodeKey>,
}

impl Network {
    fn new(n: usize, seed: u64) -> Self {
        let mut r = rng(seed);
        let keys: Vec<SigningKey> = (0..n).map(|_| SigningKey::generate_from_rng(&mut r)).collect();
        Self::from_keys(keys)
    }

    fn from_keys(keys: Vec<SigningKey>) -> Self {
        let nodes = keys.iter().zip(1u16..).map(|(key, index)| NodeKey { index, public: public_of(key) }).collect();
        Self { keys, nodes }
    }

    /// Node `i`'s answer to a `CommitmentRequest` at time `at`.
    fn sign(&self, i: usize, token: &str, temp: &PublicKey, verifier: &str, at: u64) -> Value {
        let request = CommitmentRequest::parse(&commitment_params(token, temp, verifier)).unwrap();
        serde_json::to_value(request.sign(&self.keys[i], at).result(&self.nodes[i].public)).unwrap()
    }

    /// Node `i` signs `TOKEN` for `temp` now.
    fn good(&self, i: usize, temp: &PublicKey) -> Value {
        self.sign(i, TOKEN, temp, VERIFIER, NOW)
    }

    /// The reveal rule on `signatures`, for a node that recorded `recorded`,
    /// needing [`REQUIRED`] of them.
    fn check(&self, signatures: Vec<Value>, recorded: &PublicKey) -> Result<Vec<u16>, LoginError> {
        let request = ShareRequest::parse(&share_params(TOKEN, signatures), MAX_SIGNATURES).unwrap();
        request.check_node_signatures(&self.nodes, recorded, REQUIRED, NOW, SignaturePolicy::default())
    }
}

fn share_params(token: &str, signatures: Vec<Value>) -> Value {
    json!({
        "encrypted": "yes",
        "item": [{
            "idtoken": token,
            "verifieridentifier": VERIFIER,
            "verifier_id": USER,
            "nodesignatures": signatures,
        }],
    })
}

fn not_enough(result: Result<Vec<u16>, LoginError>) -> (usize, Vec<String>) {
    match result {
        Err(LoginError::NotEnoughSignatures { valid, required, problems }) => {
            assert_eq!(required, 3);
            (valid, problems)
        }
        other => panic!("expected NotEnoughSignatures, got {other:?}"),
    }
}

/// Two good signatures and one more entry: the third decides.
fn with_third(net: &Network, temp: &PublicKey, third: Value) -> Result<Vec<u16>, LoginError> {
    net.check(vec![net.good(0, temp), net.good(1, temp), third], temp)
}

fn assert_third_refused(net: &Network, temp: &PublicKey, third: Value, problem: &str) {
    let (valid, problems) = not_enough(with_third(net, temp, third));
    assert_eq!(valid, 2);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("entry 2: "), "{problems:?}");
    assert!(problems[0].contains(problem), "expected {problem:?} in {problems:?}");
}

/// How many signatures the tests of the signature rule ask for: which
/// entries count does not depend on it (`required_signatures` has tests of
/// its own below).
const REQUIRED: usize = 3;

static NET: LazyLock<Network> = LazyLock::new(|| Network::new(NODES, 2024));
static TEMP: LazyLock<(NonZeroScalar, PublicKey)> = LazyLock::new(|| temp_key(77));

#[test]
fn required_signatures_examples() {
    // ⌈(n + t) / 2⌉: four of five for the default network.
    assert_eq!(required_signatures(5, 3), 4);
    assert_eq!(required_signatures(4, 3), 4);
    assert_eq!(required_signatures(7, 4), 6);
    assert_eq!(required_signatures(9, 5), 7);
    assert_eq!(required_signatures(1, 1), 1);
    assert_eq!(required_signatures(3, 2), 3);
    assert_eq!(required_signatures(5, 2), 4);
    assert_eq!(required_signatures(4, 2), 3);
    assert_eq!(required_signatures(5, 1), 3);
    // What torus.js 8.0.1 waits for before it reveals, ⌊n/4⌋·3 + 1
    // commitment answers, meets it exactly when n is 0 or 1 modulo 4.
    for n in 1..=64usize {
        let t = n / 2 + 1;
        let torus_js = n / 4 * 3 + 1;
        assert_eq!(torus_js >= required_signatures(n, t), n % 4 <= 1, "n = {n}");
    }
}

proptest! {
    /// Any two sets of `required_signatures` nodes share at least `t`
    /// nodes, so with at most `t − 1` nodes signing anything, one honest
    /// node would have to have signed both: a second temporary key never
    /// gathers a quorum once the user's has. And the quorum is never
    /// larger than the network (with every node up, a login can finish).
    #[test]
    fn two_quorums_share_a_threshold(n in 1usize..200, t_offset in 0usize..200) {
        let t = 1 + t_offset % n;
        let q = required_signatures(n, t);
        prop_assert!(q >= t && q <= n);
        prop_assert!(2 * q >= n + t, "two quorums of {q} in {n} share {} < {t}", 2 * q - n);
        // And no smaller number would do: two sets of q − 1 can share fewer than t.
        prop_assert!(q == t || 2 * (q - 1) < n + t);
    }
}

#[test]
fn three_distinct_node_signatures_count() {
    let (net, temp) = (&*NET, &TEMP.1);
    assert_eq!(net.nodes.iter().map(|n| n.index).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    let signatures = vec![net.good(0, temp), net.good(1, temp), net.good(2, temp)];
    assert_eq!(net.check(signatures, temp).unwrap(), [1, 2, 3]);
    // Any three, in any order.
    let signatures = vec![net.good(4, temp), net.good(1, temp), net.good(3, temp)];
    assert_eq!(net.check(signatures, temp).unwrap(), [5, 2, 4]);
    // All five: checking stops at three.
    let all: Vec<Value> = (0..NODES).map(|i| net.good(i, temp)).collect();
    assert_eq!(net.check(all, temp).unwrap(), [1, 2, 3]);
    // Checking stops once enough count: garbage after them is not looked at.
    let signatures = vec![net.good(0, temp), net.good(1, temp), net.good(2, temp), json!("junk")];
    assert_eq!(net.check(signatures, temp).unwrap(), [1, 2, 3]);
    // Two are not enough.
    let (valid, problems) = not_enough(net.check(vec![net.good(0, temp), net.good(1, temp)], temp));
    assert_eq!((valid, problems.len()), (2, 0));
    let error = LoginError::NotEnoughSignatures { valid: 2, required: 3, problems: vec![] };
    assert_eq!(error.to_rpc().code, -32001);
    let (valid, _) = not_enough(net.check(vec![], temp));
    assert_eq!(valid, 0);
}

#[test]
fn null_entries_are_tolerated() {
    let (net, temp) = (&*NET, &TEMP.1);
    let signatures =
        vec![Value::Null, net.good(0, temp), Value::Null, net.good(3, temp), Value::Null, net.good(4, temp)];
    assert_eq!(net.check(signatures, temp).unwrap(), [1, 4, 5]);
    // Nulls are not problems.
    let (valid, problems) = not_enough(net.check(vec![Value::Null, net.good(0, temp), Value::Null], temp));
    assert_eq!((valid, problems.len()), (1, 0));
}

#[test]
fn the_same_node_counts_once() {
    let (net, temp) = (&*NET, &TEMP.1);
    let (valid, problems) = not_enough(net.check(vec![net.good(0, temp), net.good(0, temp), net.good(1, temp)], temp));
    assert_eq!(valid, 2);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("second signature"), "{problems:?}");
    assert!(problems[0].contains("entry 1") && problems[0].contains("node 1"), "{problems:?}");
    // Another signature of the same node (at another time) is still the same node.
    let again = net.sign(0, TOKEN, temp, VERIFIER, NOW - 5);
    assert_ne!(again, net.good(0, temp));
    let (valid, problems) = not_enough(net.check(vec![net.good(0, temp), again.clone(), net.good(1, temp)], temp));
    assert_eq!(valid, 2);
    assert!(problems[0].contains("second signature"), "{problems:?}");
    // With a third distinct node it passes, the duplicate not counted.
    let signatures = vec![net.good(0, temp), again, net.good(1, temp), net.good(2, temp)];
    assert_eq!(net.check(signatures, temp).unwrap(), [1, 2, 3]);
}

#[test]
fn signatures_of_keys_outside_the_network_do_not_count() {
    let (net, temp) = (&*NET, &TEMP.1);
    let outsider = Network::new(1, 999);
    let entry = outsider.sign(0, TOKEN, temp, VERIFIER, NOW);
    assert_third_refused(net, temp, entry.clone(), "not a node");
    // Three outsiders are not three nodes.
    let outsiders = Network::new(3, 999);
    assert_eq!(outsiders.sign(0, TOKEN, temp, VERIFIER, NOW), entry);
    let entries: Vec<Value> = (0..3).map(|i| outsiders.sign(i, TOKEN, temp, VERIFIER, NOW)).collect();
    let (valid, problems) = not_enough(net.check(entries, temp));
    assert_eq!((valid, problems.len()), (0, 3));
    // A real node's key with an outsider's signature.
    let mut forged = outsider.sign(0, TOKEN, temp, VERIFIER, NOW);
    forged["nodepubx"] = net.good(2, temp)["nodepubx"].clone();
    forged["nodepuby"] = net.good(2, temp)["nodepuby"].clone();
    assert_third_refused(net, temp, forged, "not node 3's signature");
}

#[test]
fn signatures_on_another_temporary_key_do_not_count() {
    let (net, temp) = (&*NET, &TEMP.1);
    let (_, front_runner) = temp_key(78);
    assert_third_refused(net, temp, net.good(2, &front_runner), "another temporary key");
    // A node that recorded the front-runner's key counts only that one.
    let signatures = vec![net.good(0, temp), net.good(1, temp), net.good(2, &front_runner)];
    let (valid, problems) = not_enough(net.check(signatures, &front_runner));
    assert_eq!((valid, problems.len()), (1, 2));
}

#[test]
fn stale_and_future_signatures_do_not_count() {
    let (net, temp) = (&*NET, &TEMP.1);
    assert_eq!(SignaturePolicy::default(), SignaturePolicy { max_age_secs: 600, max_future_secs: 60 });
    assert_third_refused(net, temp, net.sign(2, TOKEN, temp, VERIFIER, NOW - 601), "601 s ago");
    assert_third_refused(net, temp, net.sign(2, TOKEN, temp, VERIFIER, NOW + 61), "61 s in the future");
    assert_third_refused(net, temp, net.sign(2, TOKEN, temp, VERIFIER, 0), "ago");
    assert_third_refused(net, temp, net.sign(2, TOKEN, temp, VERIFIER, u64::MAX), "future");
    // The limits themselves are accepted.
    assert_eq!(with_third(net, temp, net.sign(2, TOKEN, temp, VERIFIER, NOW - 600)).unwrap(), [1, 2, 3]);
    assert_eq!(with_third(net, temp, net.sign(2, TOKEN, temp, VERIFIER, NOW + 60)).unwrap(), [1, 2, 3]);
    // Another policy moves the limits.
    let request = ShareRequest::parse(
        &share_params(TOKEN, vec![net.good(0, temp), net.good(1, temp), net.sign(2, TOKEN, temp, VERIFIER, NOW - 100)]),
        MAX_SIGNATURES,
    )
    .unwrap();
    let strict = SignaturePolicy { max_age_secs: 99, max_future_secs: 0 };
    not_enough(request.check_node_signatures(&net.nodes, temp, 3, NOW, strict));
    let lax = SignaturePolicy { max_age_secs: 100, max_future_secs: 0 };
    assert_eq!(request.check_node_signatures(&net.nodes, temp, 3, NOW, lax).unwrap(), [1, 2, 3]);
}

#[test]
fn signatures_on_another_commitment_or_verifier_do_not_count() {
    let (net, temp) = (&*NET, &TEMP.1);
    assert_third_refused(net, temp, net.sign(2, "other.token", temp, VERIFIER, NOW), "another token commitment");
    assert_third_refused(net, temp, net.sign(2, TOKEN, temp, "other-verifier", NOW), "other-verifier");
    // A commitment written in upper case still matches.
    let mut upper = net.good(2, temp);
    let data = upper["data"].as_str().unwrap().to_owned();
    let commitment = token_commitment_hex(TOKEN);
    let signing_key = &net.keys[2];
    let upper_data = data.replace(&commitment, &commitment.to_uppercase());
    upper["data"] = json!(upper_data);
    upper["signature"] = json!(RecoverableSignature::sign_keccak(signing_key, upper_data.as_bytes()).to_torus_hex());
    assert_eq!(with_third(net, temp, upper).unwrap(), [1, 2, 3]);
}

#[test]
fn tampered_entries_do_not_count() {
    let (net, temp) = (&*NET, &TEMP.1);
    let good = net.good(2, temp);
    let signature = good["signature"].as_str().unwrap().to_owned();

    // A flipped bit in r.
    let mut bytes = hex::decode(&signature).unwrap();
    bytes[5] ^= 0x01;
    let mut tampered = good.clone();
    tampered["signature"] = json!(hex::encode(&bytes));
    let (valid, _) = not_enough(with_third(net, temp, tampered));
    assert_eq!(valid, 2);
    // A flipped bit in s (which may also make s high).
    let mut bytes = hex::decode(&signature).unwrap();
    bytes[40] ^= 0x80;
    let mut tampered = good.clone();
    tampered["signature"] = json!(hex::encode(&bytes));
    assert_eq!(not_enough(with_third(net, temp, tampered)).0, 2);
    // Another v.
    let mut bytes = hex::decode(&signature).unwrap();
    bytes[64] = 0;
    let mut tampered = good.clone();
    tampered["signature"] = json!(hex::encode(&bytes));
    assert_third_refused(net, temp, tampered, "signature");
    // Another node's signature of the same data.
    let mut swapped = good.clone();
    swapped["signature"] = net.good(1, temp)["signature"].clone();
    assert_third_refused(net, temp, swapped, "not node 3's signature");
    // The data changed under the signature (a second later).
    let mut moved = good.clone();
    moved["data"] = net.sign(2, TOKEN, temp, VERIFIER, NOW + 1)["data"].clone();
    assert_third_refused(net, temp, moved, "not node 3's signature");
    // Untouched, it counts.
    assert_eq!(with_third(net, temp, good).unwrap(), [1, 2, 3]);
}

#[test]
fn garbage_entries_do_not_count_and_do_not_panic() {
    let (net, temp) = (&*NET, &TEMP.1);
    let good = net.good(2, temp);
    let mut long_x = good.clone();
    long_x["nodepubx"] = json!(format!("0{}", good["nodepubx"].as_str().unwrap()));
    let mut missing_data = good.clone();
    missing_data.as_object_mut().unwrap().remove("data");
    let mut missing_signature = good.clone();
    missing_signature.as_object_mut().unwrap().remove("signature");
    let mut numeric = good.clone();
    numeric["nodepuby"] = json!(12);
    let mut long_data = good.clone();
    long_data["data"] = json!("m".repeat(513));
    let mut short_signature = good.clone();
    short_signature["signature"] = json!("00");
    let mut not_hex = good.clone();
    not_hex["signature"] = json!("zz".repeat(65));
    let mut off_curve = good.clone();
    off_curve["nodepuby"] = json!("1");
    let garbage = vec![
        json!(42),
        json!("a signature"),
        json!(true),
        json!([good.clone()]),
        json!({}),
        json!({"nodepubx": "", "nodepuby": ""}),
        long_x,
        missing_data,
        missing_signature,
        numeric,
        long_data,
        short_signature,
        not_hex,
        off_curve,
    ];
    let count = garbage.len();
    let mut signatures = vec![net.good(0, temp), net.good(1, temp)];
    signatures.extend(garbage.clone());
    let (valid, problems) = not_enough(net.check(signatures, temp));
    assert_eq!(valid, 2);
    assert_eq!(problems.len(), count, "{problems:?}");
    for (i, problem) in problems.iter().enumerate() {
        assert!(problem.starts_with(&format!("entry {}: ", i + 2)), "{problem}");
    }
    assert!(problems[0].contains("a number"), "{problems:?}");
    assert!(problems[6].contains("longer than 64"), "{problems:?}");
    // The error text shows every reason (the client collects it).
    let text = LoginError::NotEnoughSignatures { valid, required: 3, problems: problems.clone() }.to_string();
    for problem in &problems {
        assert!(text.contains(problem.as_str()), "{text}");
    }
    // With a third good signature after the garbage, the request passes.
    let mut signatures = garbage;
    signatures.extend([net.good(0, temp), net.good(1, temp), good]);
    assert_eq!(net.check(signatures, temp).unwrap(), [1, 2, 3]);
}

#[test]
fn unpadded_and_upper_case_node_keys_are_the_same_node() {
    // The Go node sends nodepubx unpadded; a key with a leading zero byte in
    // X shows the difference.
    let (secret, public) = key_with_leading_zero_x(1_000);
    let mut keys: Vec<SigningKey> = NET.keys.clone();
    keys[2] = SigningKey::from(secret);
    let net = Network::from_keys(keys);
    assert_eq!(net.nodes[2].public, public);
    let temp = &TEMP.1;
    let mut entry = net.good(2, temp);
    let x = entry["nodepubx"].as_str().unwrap().to_owned();
    assert!(x.starts_with("00"), "{x}");
    entry["nodepubx"] = json!(x.trim_start_matches('0'));
    assert_eq!(with_third(&net, temp, entry.clone()).unwrap(), [1, 2, 3]);
    entry["nodepubx"] = json!(x.to_uppercase());
    entry["nodepuby"] = json!(entry["nodepuby"].as_str().unwrap().to_uppercase());
    entry["signature"] = json!(entry["signature"].as_str().unwrap().to_uppercase());
    assert_eq!(with_third(&net, temp, entry).unwrap(), [1, 2, 3]);
}

#[test]
fn share_request_params_errors() {
    let (net, temp) = (&*NET, &TEMP.1);
    let three = vec![net.good(0, temp), net.good(1, temp), net.good(2, temp)];
    let good = share_params(TOKEN, three.clone());
    let parsed = ShareRequest::parse(&good, 5).unwrap();
    assert_eq!(parsed.verifier, name(VERIFIER));
    assert_eq!(parsed.verifier_id, user(USER));
    assert_eq!(parsed.id_token, TOKEN);
    assert_eq!(parsed.commitment, token_commitment(TOKEN));
    assert_eq!(parsed.node_signatures, three);
    assert_eq!(parsed.aggregate, None);
    // Tokens never show in debug output.
    assert!(!format!("{parsed:?}").contains("\"tok\""), "{parsed:?}");

    // `encrypted` may be absent.
    let mut absent = good.clone();
    absent.as_object_mut().unwrap().remove("encrypted");
    ShareRequest::parse(&absent, 5).unwrap();
    for encrypted in [json!("no"), json!(true), json!("YES"), Value::Null] {
        let mut params = good.clone();
        params["encrypted"] = encrypted.clone();
        let reason = invalid_params(ShareRequest::parse(&params, 5));
        assert!(reason.contains("encrypted"), "{encrypted}: {reason}");
    }
    // More entries than the network has nodes.
    let six: Vec<Value> = (0..6).map(|_| Value::Null).collect();
    let reason = invalid_params(ShareRequest::parse(&share_params(TOKEN, six.clone()), 5));
    assert!(reason.contains("nodesignatures") && reason.contains('6'), "{reason}");
    ShareRequest::parse(&share_params(TOKEN, six), 6).unwrap();
    // `item` holds exactly one login.
    let mut two = good.clone();
    let item = two["item"][0].clone();
    two["item"] = json!([item.clone(), item.clone()]);
    let reason = invalid_params(ShareRequest::parse(&two, 5));
    assert!(reason.contains("item"), "{reason}");
    let mut none = good.clone();
    none["item"] = json!([]);
    invalid_params(ShareRequest::parse(&none, 5));
    let mut scalar = good.clone();
    scalar["item"] = item.clone();
    invalid_params(ShareRequest::parse(&scalar, 5));
    let mut number = good.clone();
    number["item"] = json!([1]);
    invalid_params(ShareRequest::parse(&number, 5));
    // Token size.
    let reason = invalid_params(ShareRequest::parse(&share_params(&"t".repeat(MAX_ID_TOKEN_LEN + 1), vec![]), 5));
    assert!(reason.contains("idtoken"), "{reason}");
    assert_eq!(MAX_ID_TOKEN_LEN, 16 * 1024);
    ShareRequest::parse(&share_params(&"t".repeat(MAX_ID_TOKEN_LEN), vec![]), 5).unwrap();
    invalid_params(ShareRequest::parse(&share_params("", vec![]), 5));
    // Missing or mistyped fields of the item.
    for field in ["idtoken", "verifieridentifier", "verifier_id", "nodesignatures"] {
        let mut params = good.clone();
        params["item"][0].as_object_mut().unwrap().remove(field);
        let reason = invalid_params(ShareRequest::parse(&params, 5));
        assert!(reason.contains(field), "{reason}");
        let mut params = good.clone();
        params["item"][0][field] = json!({"x": 1});
        invalid_params(ShareRequest::parse(&params, 5));
    }
    let mut params = good.clone();
    params["item"][0]["verifieridentifier"] = json!("no spaces");
    invalid_params(ShareRequest::parse(&params, 5));
    invalid_params(ShareRequest::parse(&json!([good]), 5));
}

fn aggregate_params(id_token: &str, verify_params: Value, sub_verifier_ids: Value) -> Value {
    let mut params = share_params(id_token, vec![]);
    params["item"][0]["verify_params"] = verify_params;
    params["item"][0]["sub_verifier_ids"] = sub_verifier_ids;
    params
}

#[test]
fn aggregate_id_token_sorts_and_joins() {
    let expected = hex::encode(keccak256("a\u{1d}b".as_bytes()));
    assert_eq!(aggregate_id_token(&["b".to_owned(), "a".to_owned()]), expected);
    assert_eq!(aggregate_id_token(&["a".to_owned(), "b".to_owned()]), expected);
    assert_eq!(aggregate_id_token(&["only".to_owned()]), hex::encode(keccak256(b"only")));
    // Not joined with the commitment separator 0x1C, nor unsorted.
    assert_ne!(expected, hex::encode(keccak256("a\u{1c}b".as_bytes())));
    assert_ne!(expected, hex::encode(keccak256("b\u{1d}a".as_bytes())));
}

#[test]
fn aggregate_logins() {
    let tokens = ["sub.token.b".to_owned(), "sub.token.a".to_owned()];
    let id_token = aggregate_id_token(&tokens);
    let verify_params = json!([
        {"verifier_id": USER, "idtoken": tokens[0]},
        {"verifier_id": USER, "idtoken": tokens[1]},
    ]);
    let ids = json!(["google", "github"]);
    let parsed = ShareRequest::parse(&aggregate_params(&id_token, verify_params.clone(), ids.clone()), 5).unwrap();
    let aggregate = parsed.aggregate.clone().unwrap();
    assert_eq!(aggregate.tokens, tokens);
    assert_eq!(aggregate.sub_verifier_ids, ["google", "github"]);
    assert_eq!(parsed.id_token, id_token);
    assert_eq!(parsed.commitment, token_commitment(&id_token));
    // One spelling only: upper-case hex would be another commitment for the
    // same sub-tokens.
    let upper = id_token.to_uppercase();
    match ShareRequest::parse(&aggregate_params(&upper, verify_params.clone(), ids.clone()), 5) {
        Err(LoginError::CommitmentMismatch(reason)) => assert!(reason.contains("lower-case"), "{reason}"),
        other => panic!("expected CommitmentMismatch, got {other:?}"),
    }
    assert_eq!(parsed.sub_token_commitments(), {
        let mut sorted = vec![token_commitment(&tokens[0]), token_commitment(&tokens[1])];
        sorted.sort();
        sorted
    });

    // A token that does not bind the sub-tokens.
    for wrong in [token_commitment_hex("sub.token.a"), aggregate_id_token(&[tokens[0].clone()]), "x".to_owned()] {
        match ShareRequest::parse(&aggregate_params(&wrong, verify_params.clone(), ids.clone()), 5) {
            Err(LoginError::CommitmentMismatch(reason)) => assert!(reason.contains("0x1D"), "{reason}"),
            other => panic!("expected CommitmentMismatch, got {other:?}"),
        }
    }
    // Sub-logins of another user.
    let other_user = json!([
        {"verifier_id": USER, "idtoken": tokens[0]},
        {"verifier_id": "mallory@example.com", "idtoken": tokens[1]},
    ]);
    let reason = invalid_params(ShareRequest::parse(&aggregate_params(&id_token, other_user, ids.clone()), 5));
    assert!(reason.contains("verify_params[1].verifier_id"), "{reason}");
    // Only one of the two fields.
    let mut only_params = aggregate_params(&id_token, verify_params.clone(), ids.clone());
    only_params["item"][0].as_object_mut().unwrap().remove("sub_verifier_ids");
    let reason = invalid_params(ShareRequest::parse(&only_params, 5));
    assert!(reason.contains("both"), "{reason}");
    let mut only_ids = aggregate_params(&id_token, verify_params.clone(), ids.clone());
    only_ids["item"][0].as_object_mut().unwrap().remove("verify_params");
    assert!(invalid_params(ShareRequest::parse(&only_ids, 5)).contains("both"));
    // Lengths, shapes and sizes.
    invalid_params(ShareRequest::parse(&aggregate_params(&id_token, verify_params.clone(), json!(["google"])), 5));
    invalid_params(ShareRequest::parse(&aggregate_params(&aggregate_id_token(&[]), json!([]), json!([])), 5));
    invalid_params(ShareRequest::parse(&aggregate_params(&id_token, json!({}), ids.clone()), 5));
    invalid_params(ShareRequest::parse(&aggregate_params(&id_token, verify_params.clone(), json!(["google", 1])), 5));
    invalid_params(ShareRequest::parse(&aggregate_params(&id_token, verify_params.clone(), json!(["google", ""])), 5));
    let long_id = "s".repeat(65);
    invalid_params(ShareRequest::parse(&aggregate_params(&id_token, verify_params.clone(), json!(["g", long_id])), 5));
    invalid_params(ShareRequest::parse(
        &aggregate_params(&id_token, json!([{"verifier_id": USER, "idtoken": tokens[0]}, 7]), ids.clone()),
        5,
    ));
    invalid_params(ShareRequest::parse(
        &aggregate_params(&id_token, json!([{"verifier_id": USER}, {"verifier_id": USER, "idtoken": "x"}]), ids),
        5,
    ));
    let many: Vec<String> = (0..=MAX_SUB_TOKENS).map(|i| format!("t{i}")).collect();
    let many_params: Vec<Value> = many.iter().map(|t| json!({"verifier_id": USER, "idtoken": t})).collect();
    let many_ids: Vec<String> = (0..=MAX_SUB_TOKENS).map(|i| format!("v{i}")).collect();
    invalid_params(ShareRequest::parse(
        &aggregate_params(&aggregate_id_token(&many), json!(many_params), json!(many_ids)),
        5,
    ));
    let most = &many[..MAX_SUB_TOKENS];
    ShareRequest::parse(
        &aggregate_params(
            &aggregate_id_token(most),
            json!(many_params[..MAX_SUB_TOKENS]),
            json!(many_ids[..MAX_SUB_TOKENS]),
        ),
        5,
    )
    .unwrap();
}

// ---------------------------------------------------------------------------
// key_assign
// ---------------------------------------------------------------------------

fn signer_request(node: &PublicKey, verifier_id: &str) -> SignerRequest {
    SignerRequest { verifier: name(VERIFIER), verifier_id: user(verifier_id), node: *node }
}

fn unauthorized(result: Result<(), LoginError>) -> String {
    match result {
        Err(LoginError::KeyAssignUnauthorized(reason)) => reason,
        other => panic!("expected KeyAssignUnauthorized, got {other:?}"),
    }
}

#[test]
fn key_assign_authorization() {
    let signer = SigningKey::generate_from_rng(&mut rng(31));
    let signer_public = public_of(&signer);
    let net = &*NET;
    let request = signer_request(&net.nodes[0].public, USER);
    let auth = KeyAssignAuthorization::sign(&signer, &request, NOW, [7; 16]);
    assert_eq!(auth.timestamp, NOW.to_string());
    assert_eq!(auth.nonce, "07".repeat(16));
    assert_eq!(BASE64.decode(&auth.signature).unwrap().len(), 65);

    assert_eq!(MAX_AUTHORIZATION_AGE_SECS, 60);
    assert_eq!(MAX_AUTHORIZATION_SKEW_SECS, 30);
    auth.check(&signer_public, &request, NOW).unwrap();
    auth.check(&signer_public, &request, NOW + 60).unwrap();
    let reason = unauthorized(auth.check(&signer_public, &request, NOW + 61));
    assert!(reason.contains("61 s old"), "{reason}");
    // Dated ahead of the node's clock.
    auth.check(&signer_public, &request, NOW - 30).unwrap();
    let reason = unauthorized(auth.check(&signer_public, &request, NOW - 31));
    assert!(reason.contains("future"), "{reason}");
    let ahead = KeyAssignAuthorization::sign(&signer, &request, NOW + 31, [7; 16]);
    assert!(unauthorized(ahead.check(&signer_public, &request, NOW)).contains("31 s in the future"));

    // Another node, user, verifier or signer.
    let reason = unauthorized(auth.check(&signer_public, &signer_request(&net.nodes[1].public, USER), NOW));
    assert!(reason.contains("torus-signature"), "{reason}");
    unauthorized(auth.check(&signer_public, &signer_request(&net.nodes[0].public, "bob@example.com"), NOW));
    let other_verifier = SignerRequest { verifier: name("other-verifier"), ..request.clone() };
    unauthorized(auth.check(&signer_public, &other_verifier, NOW));
    unauthorized(auth.check(&net.nodes[0].public, &request, NOW));
    // Tampered fields.
    let mut bytes = BASE64.decode(&auth.signature).unwrap();
    bytes[3] ^= 0x04;
    let tampered = KeyAssignAuthorization { signature: BASE64.encode(&bytes), ..auth.clone() };
    unauthorized(tampered.check(&signer_public, &request, NOW));
    let mut chars: Vec<char> = auth.signature.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    let tampered = KeyAssignAuthorization { signature: chars.into_iter().collect(), ..auth.clone() };
    unauthorized(tampered.check(&signer_public, &request, NOW));
    let not_base64 = KeyAssignAuthorization { signature: "!!!!".to_owned(), ..auth.clone() };
    assert!(unauthorized(not_base64.check(&signer_public, &request, NOW)).contains("base64"));
    let short = KeyAssignAuthorization { signature: BASE64.encode([1u8; 64]), ..auth.clone() };
    unauthorized(short.check(&signer_public, &request, NOW));
    let other_nonce = KeyAssignAuthorization { nonce: "08".repeat(16), ..auth.clone() };
    unauthorized(other_nonce.check(&signer_public, &request, NOW));
    // Another timestamp under the same signature (even one that still
    // parses to the same number) is refused.
    let later = KeyAssignAuthorization { timestamp: (NOW + 1).to_string(), ..auth.clone() };
    unauthorized(later.check(&signer_public, &request, NOW));
    let padded = KeyAssignAuthorization { timestamp: format!("0{NOW}"), ..auth.clone() };
    unauthorized(padded.check(&signer_public, &request, NOW));
    for timestamp in ["", "soon", "-5", "1.0"] {
        let bad = KeyAssignAuthorization { timestamp: timestamp.to_owned(), ..auth.clone() };
        assert!(unauthorized(bad.check(&signer_public, &request, NOW)).contains("Unix seconds"), "{timestamp}");
    }
    assert_eq!(LoginError::KeyAssignUnauthorized("x".into()).to_rpc().code, -32001);
}

#[test]
fn key_assign_authorization_from_the_request_body() {
    let signer = SigningKey::generate_from_rng(&mut rng(31));
    let request = signer_request(&NET.nodes[0].public, USER);
    let auth = KeyAssignAuthorization::sign(&signer, &request, NOW, [1; 16]);
    let fields = serde_json::to_value(&auth).unwrap();
    let fields = fields.as_object().unwrap();
    let names: BTreeSet<&str> = fields.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["torus-timestamp", "torus-nonce", "torus-signature"]));
    // As torus.js sends it: the signer's fields at the top level of the body.
    let mut body = request_body(Method::KeyAssign, json!({"verifier": VERIFIER, "verifier_id": USER}));
    body.as_object_mut().unwrap().extend(fields.clone());
    let parsed = RpcRequest::parse(&serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(parsed.method, Method::KeyAssign);
    let from_body = KeyAssignAuthorization::from_body(&parsed.body).unwrap();
    assert_eq!(from_body, auth);
    from_body.check(&public_of(&signer), &request, NOW).unwrap();

    for missing in ["torus-timestamp", "torus-nonce", "torus-signature"] {
        let mut partial: Map<String, Value> = parsed.body.clone();
        partial.remove(missing);
        match KeyAssignAuthorization::from_body(&partial) {
            Err(LoginError::KeyAssignUnauthorized(reason)) => {
                assert!(reason.contains(missing), "{reason}");
                assert!(reason.contains("signer host") && reason.contains("signerHost"), "{reason}");
            }
            other => panic!("expected KeyAssignUnauthorized, got {other:?}"),
        }
        let mut mistyped = parsed.body.clone();
        mistyped.insert(missing.to_owned(), json!(1_700_000_000));
        assert!(matches!(KeyAssignAuthorization::from_body(&mistyped), Err(LoginError::KeyAssignUnauthorized(_))));
        let mut long = parsed.body.clone();
        long.insert(missing.to_owned(), json!("x".repeat(257)));
        assert!(matches!(KeyAssignAuthorization::from_body(&long), Err(LoginError::KeyAssignUnauthorized(_))));
    }
}

// ---------------------------------------------------------------------------
// share
// ---------------------------------------------------------------------------

#[test]
fn encrypted_share_decrypts_to_the_32_byte_share() {
    let (temp_secret, temp_public) = temp_key(41);
    let key_secret = NonZeroScalar::generate_from_rng(&mut rng(42));
    let key_public = PublicKey::from_secret_scalar(&key_secret);
    let verifier = name(VERIFIER);
    let verifier_id = user(USER);
    let context =
        KeyContext { key_index: 0x2a, public_key: &key_public, verifier: &verifier, verifier_id: &verifier_id };
    // A small share: still 32 bytes of plaintext (torus.js pads the
    // ciphertext hex, not the plaintext).
    for share in [scalar_from_u64(0x1234), *NonZeroScalar::generate_from_rng(&mut rng(43)).as_ref(), Scalar::ZERO] {
        let result = encrypt_share(&share, &temp_public, &context, &mut rng(44));
        assert_eq!(result.keys.len(), 1);
        let key = &result.keys[0];
        assert_eq!(key.index, "2a");
        let (x, y) = public_key_to_xy_hex(&key_public);
        assert_eq!((key.public_key.x.as_str(), key.public_key.y.as_str()), (x.as_str(), y.as_str()));
        assert_eq!(key.public_key.x.len(), 64);
        assert_eq!(key.public_key.y.len(), 64);
        assert_eq!(key.threshold, 1);
        assert_eq!(key.verifiers.len(), 1);
        assert_eq!(key.verifiers[VERIFIER], [USER]);
        assert_eq!(key.metadata.mode, "AES256");

        let wire = TorusEncryptedShare { share: key.share.clone(), metadata: key.metadata.clone() };
        let ciphertext = EciesCiphertext::try_from(&wire).unwrap();
        assert_eq!(ciphertext.ciphertext.len(), 48);
        // The client's decoding: base64, then ASCII hex.
        let ascii_hex = BASE64.decode(&key.share).unwrap();
        assert_eq!(hex::decode(ascii_hex).unwrap(), ciphertext.ciphertext);
        let plaintext = ecies::decrypt(&temp_secret, &ciphertext).unwrap();
        assert_eq!(plaintext.len(), 32);
        assert_eq!(plaintext.as_slice(), scalar_to_bytes(&share));
        // Only the temporary key opens it.
        ecies::decrypt(&temp_key(45).0, &ciphertext).unwrap_err();
    }
    // Fresh randomness per call.
    let share = scalar_from_u64(7);
    let a = encrypt_share(&share, &temp_public, &context, &mut rng(1));
    let b = encrypt_share(&share, &temp_public, &context, &mut rng(2));
    assert_ne!(a.keys[0].share, b.keys[0].share);
    assert_ne!(a.keys[0].metadata.ephem_public_key, b.keys[0].metadata.ephem_public_key);
}

#[test]
fn share_result_has_the_torus_field_names() {
    let (_, temp_public) = temp_key(41);
    let (_, key_public) = key_with_leading_zero_x(1);
    let verifier = name(VERIFIER);
    let verifier_id = user(USER);
    let context =
        KeyContext { key_index: 255, public_key: &key_public, verifier: &verifier, verifier_id: &verifier_id };
    let result = encrypt_share(&scalar_from_u64(99), &temp_public, &context, &mut rng(3));
    let wire = serde_json::to_value(&result).unwrap();
    let keys_of = |value: &Value| -> BTreeSet<String> { value.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys_of(&wire), BTreeSet::from(["keys".to_owned()]));
    let keys = wire["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(
        keys_of(key),
        BTreeSet::from(["Index", "PublicKey", "Threshold", "Verifiers", "Share", "Metadata"].map(str::to_owned))
    );
    assert_eq!(keys_of(&key["PublicKey"]), BTreeSet::from(["X", "Y"].map(str::to_owned)));
    assert_eq!(keys_of(&key["Metadata"]), BTreeSet::from(["iv", "ephemPublicKey", "mac", "mode"].map(str::to_owned)));
    assert_eq!(key["Index"], "ff");
    assert_eq!(key["Threshold"], json!(1));
    assert_eq!(key["Verifiers"], json!({VERIFIER: [USER]}));
    let x = key["PublicKey"]["X"].as_str().unwrap();
    assert_eq!(x.len(), 64);
    assert!(x.starts_with("00"), "{x}");
    assert_eq!(key["Metadata"]["mode"], "AES256");
    assert_eq!(key["Metadata"]["iv"].as_str().unwrap().len(), 32);
    assert_eq!(key["Metadata"]["mac"].as_str().unwrap().len(), 64);
    let ephemeral = key["Metadata"]["ephemPublicKey"].as_str().unwrap();
    assert_eq!(ephemeral.len(), 130);
    assert!(ephemeral.starts_with("04"));
    // And it reads back.
    assert_eq!(serde_json::from_value::<quorumkey_login::ShareRequestResult>(wire).unwrap(), result);
}

// ---------------------------------------------------------------------------
// properties
// ---------------------------------------------------------------------------

/// Field names and values a fuzzer should hit often.
const FIELD_NAMES: &[&str] = &[
    "jsonrpc",
    "method",
    "id",
    "params",
    "messageprefix",
    "tokencommitment",
    "temppubx",
    "temppuby",
    "verifieridentifier",
    "verifier",
    "verifier_id",
    "encrypted",
    "item",
    "idtoken",
    "nodesignatures",
    "verify_params",
    "sub_verifier_ids",
    "nodepubx",
    "nodepuby",
    "data",
    "signature",
    "torus-timestamp",
    "torus-nonce",
    "torus-signature",
];

const INTERESTING: &[&str] = &[
    "",
    "2.0",
    "mug00",
    "yes",
    "no",
    "test-verifier",
    "ShareRequest",
    "CommitmentRequest",
    "KeyAssign",
    "VerifierLookupRequest",
    "7daa7a21f597b73614736f405adf156138637ed7c689bb73226dc818620bf583",
    "6a04ab98d9e4774ad806e302dddeb63bea16b5cb5f223ee77478e861bb583eb3",
    "36b6fbcb60b5b3d4f1551ac45e5ffc4936466e7d98f6c7c0ec736539f74691a6",
    "4f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa",
    "385b6b1b8ead809ca67454d9683fcf2ba03456d6fe2c4abe2b07f0fbdbb2f1c1",
    "mug00\u{1c}7daa7a21f597b73614736f405adf156138637ed7c689bb73226dc818620bf583\u{1c}6a04ab98d9e4774ad806e302dddeb63bea16b5cb5f223ee77478e861bb583eb3\u{1c}36b6fbcb60b5b3d4f1551ac45e5ffc4936466e7d98f6c7c0ec736539f74691a6\u{1c}test-verifier\u{1c}1700000000",
    "1a3bce6145c47986c130c4a06b9f228da9d30e541e7eef72fee5fcff0f4431472be43dc3af5fded1af96c9db235278581a5c10c557d38e450e281f122a9e24091c",
    "\u{1c}\u{1c}\u{1c}\u{1c}\u{1c}",
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
];

fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(INTERESTING).prop_map(str::to_owned),
        2 => ".{0,40}",
        2 => "[0-9a-fA-F]{0,70}",
        1 => "[\\x00-\\x1fa-z]{0,10}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![3 => prop::sample::select(FIELD_NAMES).prop_map(str::to_owned), 1 => "[a-z_-]{0,8}"];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value that is often the right shape for a `ShareRequest`.
fn share_like() -> impl Strategy<Value = Value> {
    let good_signatures: Vec<Value> = (0..NODES).map(|i| NET.good(i, &TEMP.1)).collect();
    let entry = prop_oneof![
        3 => prop::sample::select(good_signatures),
        1 => Just(Value::Null),
        2 => json_value(),
    ];
    let field = |plausible: BoxedStrategy<Value>| prop_oneof![4 => plausible, 1 => json_value()];
    (
        field(Just(json!("yes")).boxed()),
        field(prop_oneof![Just(json!(TOKEN)), json_string().prop_map(Value::String)].boxed()),
        field(prop_oneof![Just(json!(VERIFIER)), json_string().prop_map(Value::String)].boxed()),
        field(Just(json!(USER)).boxed()),
        field(prop::collection::vec(entry, 0..8).prop_map(Value::Array).boxed()),
        prop::option::of(json_value()),
        prop::option::of(json_value()),
    )
        .prop_map(|(encrypted, idtoken, verifier, verifier_id, signatures, verify_params, sub_ids)| {
            let mut item = json!({
                "idtoken": idtoken, "verifieridentifier": verifier, "verifier_id": verifier_id,
                "nodesignatures": signatures,
            });
            if let Some(v) = verify_params {
                item["verify_params"] = v;
            }
            if let Some(v) = sub_ids {
                item["sub_verifier_ids"] = v;
            }
            json!({"encrypted": encrypted, "item": [item]})
        })
}

/// How to break one field of a good signature entry: every change here
/// makes it fail (a different `data` string, an unparsable field or another
/// key), so a mutated entry must never count.
#[derive(Clone, Debug)]
enum Mutation {
    /// Replace the character at a position with a non-hex letter.
    Replace(usize),
    /// Cut the field at a position.
    Truncate(usize),
    /// Add a digit at the end.
    Append,
    /// Insert the field separator at a position.
    Separator(usize),
    /// Replace the whole field with an arbitrary value.
    Value(Value),
    /// Remove the field.
    Remove,
}

fn mutate(entry: &Value, field: &str, mutation: &Mutation) -> Value {
    let mut out = entry.clone();
    let text = entry[field].as_str().unwrap().to_owned();
    let at = |p: usize| p % text.len();
    let object = out.as_object_mut().unwrap();
    let changed = match mutation {
        Mutation::Replace(p) => {
            let mut chars: Vec<char> = text.chars().collect();
            let i = at(*p);
            chars[i] = if chars[i] == 'g' { 'h' } else { 'g' };
            Value::String(chars.into_iter().collect())
        }
        Mutation::Truncate(p) => Value::String(text[..at(*p)].to_owned()),
        Mutation::Append => Value::String(format!("{text}0")),
        Mutation::Separator(p) => {
            let mut s = text.clone();
            s.insert(at(*p), DELIMITER);
            Value::String(s)
        }
        Mutation::Value(value) => value.clone(),
        Mutation::Remove => {
            object.remove(field);
            return out;
        }
    };
    object.insert(field.to_owned(), changed);
    out
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Replace),
        any::<usize>().prop_map(Mutation::Truncate),
        Just(Mutation::Append),
        any::<usize>().prop_map(Mutation::Separator),
        // Never a string equal to the original: no string has these.
        json_value().prop_filter("not the original", |v| !v.is_string()).prop_map(Mutation::Value),
        Just(Mutation::Remove),
    ]
}

/// One entry: intact from a node, mutated from a node, or garbage.
#[derive(Clone, Debug)]
enum Entry {
    Intact(usize),
    Mutated(usize, &'static str, Mutation),
    Garbage(Value),
    Null,
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        3 => (0..NODES).prop_map(Entry::Intact),
        3 => (0..NODES, prop::sample::select(vec!["nodepubx", "nodepuby", "data", "signature"]), mutation())
            .prop_map(|(node, field, m)| Entry::Mutated(node, field, m)),
        1 => json_value().prop_map(Entry::Garbage),
        1 => Just(Entry::Null),
    ]
}

static GOOD: LazyLock<Vec<Value>> = LazyLock::new(|| (0..NODES).map(|i| NET.good(i, &TEMP.1)).collect());

proptest! {
    #[test]
    fn rpc_parse_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = RpcRequest::parse(&body);
    }

    #[test]
    fn rpc_parse_never_panics_on_json(value in json_value(), method in prop::sample::select(Method::ALL.to_vec())) {
        let text = value.to_string();
        let _ = RpcRequest::parse(text.as_bytes());
        // serde_json does not round-trip every float exactly: compare with
        // the value read from the same text.
        let value: Value = serde_json::from_str(&text).unwrap();
        // As params of a well-formed envelope: accepted exactly when an object.
        let body = format!(r#"{{"jsonrpc":"2.0","method":"{}","id":10,"params":{text}}}"#, method.name());
        match RpcRequest::parse(body.as_bytes()) {
            Ok(request) => {
                prop_assert!(value.is_object());
                prop_assert_eq!(request.method, method);
                prop_assert_eq!(request.params, value);
            }
            Err((id, error)) => {
                prop_assert!(!value.is_object());
                prop_assert_eq!(id, json!(10));
                prop_assert_eq!(error.code, INVALID_PARAMS);
            }
        }
    }

    #[test]
    fn params_parsers_never_panic(value in json_value()) {
        let _ = CommitmentRequest::parse(&value);
        let _ = LookupParams::parse(&value);
        if let Ok(request) = ShareRequest::parse(&value, MAX_SIGNATURES) {
            let _ = request.check_node_signatures(&NET.nodes, &TEMP.1, 3, NOW, SignaturePolicy::default());
        }
        if let Value::Object(body) = &value {
            let _ = KeyAssignAuthorization::from_body(body);
        }
        let _ = SignedData::parse(&value.to_string());
        let _ = serde_json::from_value::<CommitmentResult>(value);
    }

    #[test]
    fn commitment_parse_never_panics_on_fields(
        prefix in json_string(), commitment in json_string(), x in json_string(), y in json_string(),
        verifier in json_string(),
    ) {
        let params = json!({
            "messageprefix": prefix, "tokencommitment": commitment, "temppubx": x, "temppuby": y,
            "verifieridentifier": verifier,
        });
        if let Ok(request) = CommitmentRequest::parse(&params) {
            // Whatever is accepted signs a string that parses back.
            let data = request.signed_data(NOW);
            let signed = SignedData::parse(&data).unwrap();
            prop_assert_eq!(signed.timestamp, NOW);
            prop_assert_eq!(signed.verifier, request.verifier.as_str());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn share_parse_never_panics_on_plausible_requests(params in share_like()) {
        if let Ok(request) = ShareRequest::parse(&params, MAX_SIGNATURES) {
            let _ = request.check_node_signatures(&NET.nodes, &TEMP.1, 3, NOW, SignaturePolicy::default());
        }
    }

    #[test]
    fn only_intact_signatures_of_distinct_nodes_count(entries in prop::collection::vec(entry(), 0..10)) {
        let values: Vec<Value> = entries
            .iter()
            .map(|entry| match entry {
                Entry::Intact(node) => GOOD[*node].clone(),
                Entry::Mutated(node, field, mutation) => mutate(&GOOD[*node], field, mutation),
                Entry::Garbage(value) => value.clone(),
                Entry::Null => Value::Null,
            })
            .collect();
        let intact: BTreeSet<u16> = entries
            .iter()
            .filter_map(|entry| match entry {
                Entry::Intact(node) => Some(NET.nodes[*node].index),
                _ => None,
            })
            .collect();
        match NET.check(values, &TEMP.1) {
            Ok(signers) => {
                prop_assert!(intact.len() >= 3, "accepted with only {:?} intact", intact);
                prop_assert_eq!(signers.len(), 3);
                let distinct: BTreeSet<u16> = signers.iter().copied().collect();
                prop_assert_eq!(distinct.len(), 3);
                prop_assert!(distinct.is_subset(&intact));
            }
            Err(LoginError::NotEnoughSignatures { valid, required, .. }) => {
                prop_assert_eq!(required, 3);
                prop_assert!(intact.len() < 3, "refused with {:?} intact", intact);
                prop_assert_eq!(valid, intact.len());
            }
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }
}

/// What a client checks before counting a node's commitment answer.
#[test]
fn a_client_counts_only_commitment_signatures_the_nodes_will_accept() {
    let (net, temp) = (&*NET, &TEMP.1);
    let commitment = token_commitment_hex(TOKEN);
    let check = |entry: &Value, node: usize| {
        quorumkey_login::check_commitment_signature(entry, &net.nodes[node], &commitment, VERIFIER, temp)
    };
    assert_eq!(check(&net.good(0, temp), 0), Ok(()));
    // Any age: each node judges freshness by its own clock.
    assert_eq!(check(&net.sign(0, TOKEN, temp, VERIFIER, 0), 0), Ok(()));
    // Node 2's answer is not node 1's.
    assert_eq!(check(&net.good(1, temp), 0), Err("not signed by node 1's key".to_owned()));
    // Garbage, another temporary key, commitment or verifier, a signature
    // that does not verify.
    assert!(check(&json!("garbage"), 0).unwrap_err().contains("not a signed commitment"));
    assert!(check(&json!({"data": "x"}), 0).is_err());
    assert!(check(&net.good(0, &temp_key(78).1), 0).unwrap_err().contains("another temporary key"));
    assert!(check(&net.sign(0, "other.token", temp, VERIFIER, NOW), 0).unwrap_err().contains("token commitment"));
    assert!(check(&net.sign(0, TOKEN, temp, "other-verifier", NOW), 0).unwrap_err().contains("other-verifier"));
    let mut forged = net.good(0, temp);
    forged["signature"] = net.good(1, temp)["signature"].clone();
    assert!(check(&forged, 0).unwrap_err().contains("not node 1's signature"));
}

#[test]
fn script_logins_bind_their_evidence_in_the_idtoken() {
    use quorumkey_login::reveal::{canonical_evidence, script_id_token};
    use std::collections::BTreeMap;
    let tokens = ["sub.token.a".to_owned()];
    let evidence: BTreeMap<String, String> =
        [("signature".to_owned(), "0xabc".to_owned()), ("message".to_owned(), "nonce: 1\n\"q\"".to_owned())].into();
    // One spelling: sorted keys, compact, serde_json's escapes.
    assert_eq!(canonical_evidence(&evidence), r#"{"message":"nonce: 1\n\"q\"","signature":"0xabc"}"#);
    let id_token = script_id_token(&tokens, &evidence);
    assert_eq!(
        id_token,
        hex::encode(keccak256(format!("sub.token.a\u{1e}{}", canonical_evidence(&evidence)).as_bytes()))
    );
    assert_ne!(id_token, aggregate_id_token(&tokens), "a script login is never an aggregate login's commitment");
    // The sub-token names a wallet's user, not the login's: allowed here.
    let verify_params = json!([{"verifier_id": "someone-else", "idtoken": tokens[0]}]);
    let script = |id_token: &str, evidence: Value| {
        let mut params = aggregate_params(id_token, verify_params.clone(), json!(["google"]));
        params["item"][0]["script_params"] = evidence;
        ShareRequest::parse(&params, 5)
    };
    // The client may spell the evidence any way: the same meaning, the
    // same idtoken.
    let respelled =
        serde_json::from_str::<Value>("{ \"signature\" : \"0xabc\",\n \"message\": \"nonce: 1\\n\\\"q\\\"\" }")
            .unwrap();
    let parsed = script(&id_token, respelled).unwrap();
    assert_eq!(parsed.aggregate.unwrap().evidence, Some(evidence.clone()));
    // Evidence other than what the idtoken (and so the commitment) binds.
    let mut swapped = evidence.clone();
    swapped.insert("signature".to_owned(), "0xdef".to_owned());
    match script(&id_token, serde_json::to_value(&swapped).unwrap()) {
        Err(LoginError::CommitmentMismatch(reason)) => assert!(reason.contains("not what was committed"), "{reason}"),
        other => panic!("expected CommitmentMismatch, got {other:?}"),
    }
    // Not strings, too many, too large.
    let reason = invalid_params(script(&id_token, json!({"n": 1})));
    assert!(reason.contains("must be a string"), "{reason}");
    let many: serde_json::Map<String, Value> = (0..17).map(|i| (format!("f{i}"), json!("x"))).collect();
    assert!(invalid_params(script(&id_token, Value::Object(many))).contains("at most 16"));
    let huge = json!({"blob": "x".repeat(40_000)});
    assert!(invalid_params(script(&id_token, huge)).contains("more than"));
    assert!(invalid_params(script(&id_token, json!(["not", "an", "object"]))).contains("object"));
    // Evidence without sub-tokens.
    let mut params = share_params(&id_token, vec![]);
    params["item"][0]["script_params"] = json!({});
    invalid_params(ShareRequest::parse(&params, 5));
}
