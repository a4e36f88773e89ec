//! The JSON-RPC API as a node receives it: any bytes as a request body,
//! then the request's params through the parser of its method and, when
//! they parse, through the check that follows in the node (the KeyAssign
//! authorization, the commitment signature, the reveal's node signatures
//! against a fixed five-node network). Nothing may panic, and:
//!
//! - an error answer has a known code and an id the node may echo;
//! - a `CommitmentRequest` a node signs yields a record whose signed string
//!   parses back to the same commitment, key and verifier;
//! - the reveal rule only ever counts `required` distinct network nodes.
//!
//! A fuzzer cannot forge signatures, so a reveal's entries and the KeyAssign
//! fields may hold placeholders that the target fills in before a second
//! check (the first check always sees the entries as sent; see
//! `quorumkey_fuzz::login::fill_in_placeholders`):
//! - `nodepubx` `"$N<k>"`: X and Y of key `k·G` (nodes are `k` = 1..=5);
//! - in `data`: `$C` the request's commitment, `$X`/`$Y` the recorded
//!   temporary key, `$V` the verifier, `$T` the node's clock;
//! - `signature` `"$S"`: the signature of `data` by the key of `nodepubx`;
//! - `torus-signature` `"$S"`: the signer's signature of the authorization.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorumkey_crypto::signature::RecoverableSignature;
use quorumkey_fuzz::login::{NODES, NOW, fill_in_placeholders, fixture, sign_authorization};
use quorumkey_login::commitment::SignedData;
use quorumkey_login::key_assign::{MAX_AUTHORIZATION_AGE_SECS, MAX_AUTHORIZATION_SKEW_SECS};
use quorumkey_login::rpc::{INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR};
use quorumkey_login::{
    CommitmentRequest, KeyAssignAuthorization, LoginError, LookupParams, Method, RpcRequest, RpcResponse, ShareRequest,
    SignaturePolicy, SignerRequest,
};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let request = match RpcRequest::parse(data) {
        Ok(request) => request,
        Err((id, error)) => {
            assert!(
                [PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS].contains(&error.code),
                "unexpected code {}",
                error.code
            );
            match &id {
                Value::Null | Value::Number(_) => {}
                Value::String(text) => assert!(text.len() <= 128, "an overlong id is echoed"),
                other => panic!("echoed id {other:?}"),
            }
            serde_json::to_vec(&RpcResponse::error(id, error)).expect("an error answer serializes");
            return;
        }
    };
    assert!(request.params.is_object());
    match request.method {
        Method::VerifierLookup => {
            let _ = LookupParams::parse(&request.params).map_err(|e| e.to_rpc());
        }
        Method::KeyAssign => key_assign(&request),
        Method::Commitment => commitment(&request.params),
        Method::Share => share(&request.params),
    }
});

fn key_assign(request: &RpcRequest) {
    let Ok(params) = LookupParams::parse(&request.params) else { return };
    let fixture = fixture();
    let signer_request =
        SignerRequest { verifier: params.verifier, verifier_id: params.verifier_id, node: fixture.nodes[0].public };
    let authorization = match KeyAssignAuthorization::from_body(&request.body) {
        Ok(authorization) => authorization,
        Err(error) => {
            assert!(matches!(error, LoginError::KeyAssignUnauthorized(_)));
            return;
        }
    };
    let checked = authorization.check(&fixture.signer_public, &signer_request, NOW);
    if authorization.signature != "$S" {
        return;
    }
    // The placeholder: the signer's true signature of these fields.
    let signed = sign_authorization(authorization, &signer_request);
    let result = signed.check(&fixture.signer_public, &signer_request, NOW);
    assert!(checked.is_err(), "a placeholder signature passed");
    // A fresh authorization with the signer's signature passes, any other
    // is refused.
    let fresh = signed
        .timestamp
        .parse::<u64>()
        .is_ok_and(|at| at <= NOW + MAX_AUTHORIZATION_SKEW_SECS && NOW - at.min(NOW) <= MAX_AUTHORIZATION_AGE_SECS);
    assert_eq!(result.is_ok(), fresh, "timestamp {:?}: {result:?}", signed.timestamp);
}

fn commitment(params: &Value) {
    let Ok(request) = CommitmentRequest::parse(params) else { return };
    let fixture = fixture();
    let record = request.sign(&fixture.node_keys[0], NOW);
    assert!(record.binds(&request));
    assert_eq!(record.temp_public().expect("the record's key parses"), request.temp_public);
    // What a node signs is what the reveal rule reads back.
    let signed = SignedData::parse(&record.data).expect("a node's signed string parses");
    assert!(signed.commitment.eq_ignore_ascii_case(&hex::encode(request.commitment)));
    assert_eq!(signed.verifier, request.verifier.as_str());
    assert_eq!(signed.timestamp, NOW);
    let temp = quorumkey_crypto::group::public_key_from_xy_hex(signed.temp_x, signed.temp_y)
        .expect("the signed temporary key parses");
    assert_eq!(temp, request.temp_public);
    let signature = RecoverableSignature::from_torus_hex(&record.signature).expect("the signature parses");
    signature.verify_keccak(&fixture.nodes[0].public, record.data.as_bytes()).expect("the signature verifies");
}

fn share(params: &Value) {
    let fixture = fixture();
    let Ok(mut request) = ShareRequest::parse(params, NODES) else { return };
    assert!(request.node_signatures.len() <= NODES);
    let policy = SignaturePolicy::default();
    let check = |request: &ShareRequest| {
        let result = request.check_node_signatures(&fixture.nodes, &fixture.temp_public, fixture.required, NOW, policy);
        if let Ok(signers) = &result {
            assert_eq!(signers.len(), fixture.required);
            for (position, index) in signers.iter().enumerate() {
                assert!((1..=NODES as u16).contains(index), "node {index}");
                assert!(!signers[..position].contains(index), "node {index} counted twice");
            }
        }
        result
    };
    let _ = check(&request);
    let commitment = hex::encode(request.commitment);
    let verifier = request.verifier.as_str().to_owned();
    let mut replaced = false;
    for entry in &mut request.node_signatures {
        if let Value::Object(entry) = entry {
            replaced |= fill_in_placeholders(entry, &commitment, &verifier);
        }
    }
    if replaced {
        let _ = check(&request);
    }
}
