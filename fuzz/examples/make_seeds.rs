//! Writes the seed corpora, `fuzz/corpus/<target>/`: a few valid inputs of
//! each kind (signed with the fixtures' keys, so they pass the checks the
//! fuzzer cannot pass alone) and a few near misses. Deterministic: running
//! it again rewrites the same files.
//!
//! `cd fuzz && cargo run --example make_seeds`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use commonware_codec::Encode;
use quorumkey_crypto::group::public_key_to_xy_hex;
use quorumkey_crypto::hash::token_commitment_hex;
use quorumkey_fuzz::{jwt, ledger, login};
use quorumkey_ledger::{DkgEvent, Effect, SignedTransaction, TransactionBody, VerifierId, VerifierName};
use quorumkey_login::reveal::aggregate_id_token;
use quorumkey_login::rpc::request_body;
use quorumkey_login::{CommitmentRequest, DELIMITER, KeyAssignAuthorization, Method, ShareRequest, SignerRequest};
use serde_json::{Value, json};

fn dir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(dir(target).join(name), bytes).unwrap();
}

fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

fn main() {
    jsonrpc();
    network_json();
    jwt_seeds();
    verifier_config();
    introspection();
    transaction();
    println!("seeds written under {}", Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").display());
}

fn jsonrpc() {
    let fixture = login::fixture();
    let t = "jsonrpc";
    let user = "alice@example.com";
    let lookup = json!({"verifier": login::VERIFIER, "verifier_id": user});
    write(t, "lookup.json", json_bytes(&request_body(Method::VerifierLookup, lookup.clone())));

    // KeyAssign with a valid authorization, and with the placeholder.
    let signer_request = SignerRequest {
        verifier: VerifierName::new(login::VERIFIER).unwrap(),
        verifier_id: VerifierId::new(user).unwrap(),
        node: fixture.nodes[0].public,
    };
    let authorization = KeyAssignAuthorization::sign(&fixture.signer, &signer_request, login::NOW - 5, [7; 16]);
    let mut body = request_body(Method::KeyAssign, lookup.clone());
    for (name, value) in serde_json::to_value(&authorization).unwrap().as_object().unwrap() {
        body[name] = value.clone();
    }
    write(t, "key-assign-signed.json", json_bytes(&body));
    body["torus-signature"] = json!("$S");
    body["torus-timestamp"] = json!(login::NOW.to_string());
    write(t, "key-assign-placeholder.json", json_bytes(&body));
    let placeholder = KeyAssignAuthorization::from_body(body.as_object().unwrap()).unwrap();
    login::sign_authorization(placeholder, &signer_request)
        .check(&fixture.signer_public, &signer_request, login::NOW)
        .unwrap();

    // A commitment, and a reveal with three true node signatures on it.
    let (temp_x, temp_y) = fixture.temp_xy.clone();
    let token = "tok";
    let commitment_params = json!({
        "messageprefix": "mug00",
        "tokencommitment": token_commitment_hex(token),
        "temppubx": temp_x,
        "temppuby": temp_y,
        "verifieridentifier": login::VERIFIER,
    });
    write(t, "commitment.json", json_bytes(&request_body(Method::Commitment, commitment_params.clone())));
    let commitment = CommitmentRequest::parse(&commitment_params).unwrap();
    let signatures: Vec<Value> = (0..4)
        .map(|i| {
            let record = commitment.sign(&fixture.node_keys[i], login::NOW - 5);
            serde_json::to_value(record.result(&fixture.nodes[i].public)).unwrap()
        })
        .collect();
    let share = |token: &str, signatures: Vec<Value>| {
        json!({
            "encrypted": "yes",
            "item": [{
                "idtoken": token,
                "verifieridentifier": login::VERIFIER,
                "verifier_id": user,
                "nodesignatures": signatures,
            }],
        })
    };
    write(t, "share-signed.json", json_bytes(&request_body(Method::Share, share(token, signatures.clone()))));
    let request = ShareRequest::parse(&share(token, signatures.clone()), login::NODES).unwrap();
    let signers = request
        .check_node_signatures(&fixture.nodes, &fixture.temp_public, fixture.required, login::NOW, Default::default())
        .unwrap();
    assert_eq!(signers, [1, 2, 3, 4]);

    // The same with placeholders the target fills in and a null entry (at
    // most five entries: one per node).
    let data = ["mug00", "$C", "$X", "$Y", "$V", "$T"].join(&DELIMITER.to_string());
    let mut placeholders: Vec<Value> = (1..=4)
        .map(|k| json!({"nodepubx": format!("$N{k}"), "nodepuby": "", "data": data, "signature": "$S"}))
        .collect();
    placeholders.insert(1, Value::Null);
    let params = share("other-token", placeholders);
    write(t, "share-placeholders.json", json_bytes(&request_body(Method::Share, params.clone())));
    // Filled in, they are four valid signatures.
    let mut request = ShareRequest::parse(&params, login::NODES).unwrap();
    let commitment_hex = hex::encode(request.commitment);
    for entry in &mut request.node_signatures {
        if let Value::Object(entry) = entry {
            login::fill_in_placeholders(entry, &commitment_hex, login::VERIFIER);
        }
    }
    let signers = request
        .check_node_signatures(&fixture.nodes, &fixture.temp_public, fixture.required, login::NOW, Default::default())
        .unwrap();
    assert_eq!(signers, [1, 2, 3, 4]);
    // Two entries from one node, one from outside the network.
    let mut repeated = vec![signatures[0].clone(), signatures[0].clone()];
    let (x, y) = public_key_to_xy_hex(&login::public(&login::key(9)));
    repeated.push(json!({"nodepubx": x, "nodepuby": y, "data": data, "signature": "$S"}));
    write(t, "share-repeated.json", json_bytes(&request_body(Method::Share, share(token, repeated))));

    // An aggregate login.
    let sub_tokens = ["sub-token-a".to_owned(), "sub-token-b".to_owned()];
    let aggregate = json!({
        "item": [{
            "idtoken": aggregate_id_token(&sub_tokens),
            "verifieridentifier": "aggregate-verifier",
            "verifier_id": user,
            "nodesignatures": [],
            "verify_params": [
                {"verifier_id": user, "idtoken": sub_tokens[0]},
                {"verifier_id": user, "idtoken": sub_tokens[1]},
            ],
            "sub_verifier_ids": ["google", "github"],
        }],
    });
    write(t, "share-aggregate.json", json_bytes(&request_body(Method::Share, aggregate)));

    // Envelope errors.
    write(t, "batch.json", br#"[{"jsonrpc":"2.0","method":"VerifierLookupRequest","id":1,"params":{}}]"#);
    write(t, "string-id.json", br#"{"jsonrpc":"2.0","method":"CommitmentRequest","id":"abc","params":[]}"#);
    write(t, "unknown-method.json", br#"{"jsonrpc":"2.0","method":"GetShareOrKeyAssign","id":null,"params":{}}"#);
    write(t, "not-json.txt", b"{\"jsonrpc\":\"2.0\",");
}

fn network_json() {
    let fixture = login::fixture();
    let t = "network_json";
    let nodes: Vec<Value> = fixture
        .nodes
        .iter()
        .map(|node| {
            let (x, y) = public_key_to_xy_hex(&node.public);
            json!({
                "index": node.index,
                "endpoint": format!("http://127.0.0.1:{}/jrpc", 8000 + node.index),
                "api": format!("http://127.0.0.1:{}", 8100 + node.index),
                "pub_key_X": x,
                "pub_key_Y": y,
                "p2p_address": format!("127.0.0.1:{}", 9000 + node.index),
                "log": format!("node-{}.log", node.index),
            })
        })
        .collect();
    let network = json!({
        "network_id": "00".repeat(32),
        "threshold": 3,
        "nodes": nodes,
        "verifiers": [login::VERIFIER],
        "dev_issuer": null,
    });
    write(t, "network.json", serde_json::to_vec_pretty(&network).unwrap());
    let (x, y) = fixture.temp_xy.clone();
    let data = ["mug00", &token_commitment_hex("tok"), &x, &y, login::VERIFIER, &login::NOW.to_string()]
        .join(&DELIMITER.to_string());
    write(t, "signed-data.txt", data);
}

fn jwt_seeds() {
    let fixture = jwt::fixture();
    let t = "jwt";
    let claims = json!({
        "iss": jwt::ISSUER,
        "aud": jwt::CLIENT,
        "sub": "1234",
        "email": "Alice@Example.com",
        "email_verified": true,
        "iat": jwt::NOW - 10,
        "exp": jwt::NOW + 3600,
    });
    let payload = json_bytes(&claims);
    // Mode 0: tokens as sent, one per algorithm.
    for signer in &fixture.signers {
        let alg = match signer.kid {
            "rsa-1" => "RS256",
            "ec-1" => "ES256",
            _ => "EdDSA",
        };
        let header = format!(r#"{{"alg":"{alg}","kid":"{}","typ":"JWT"}}"#, signer.kid);
        let token = jwt::sign_raw(signer, header.as_bytes(), &payload);
        quorumkey_verifier::verify_jwt(&fixture.config, &fixture.keys, &token, jwt::NOW).unwrap();
        write(t, &format!("raw-{}", signer.kid), [&[0u8][..], token.as_bytes()].concat());
    }
    // alg none and HS256 with a key's id.
    let none = format!("{}.{}.", base64_url(br#"{"alg":"none","kid":"ec-1"}"#), base64_url(&payload));
    write(t, "raw-alg-none", [&[0u8][..], none.as_bytes()].concat());
    let hs = format!("{}.{}.c2ln", base64_url(br#"{"alg":"HS256","kid":"rsa-1"}"#), base64_url(&payload));
    write(t, "raw-hs256", [&[0u8][..], hs.as_bytes()].concat());
    // Modes 1 and 3: the target signs (ES256, EdDSA) the payload, with the
    // usual header or the one before the NUL.
    write(t, "signed-es256", [&[1u8][..], &payload].concat());
    write(t, "signed-eddsa", [&[3u8][..], &payload].concat());
    let list_audience = json!({
        "iss": jwt::ISSUER,
        "aud": ["x", jwt::CLIENT],
        "email": "bob@example.com",
        "email_verified": true,
        "iat": jwt::NOW as f64 - 0.5,
        "nbf": jwt::NOW - 100,
        "exp": jwt::NOW + 60,
    });
    write(
        t,
        "signed-eddsa-header",
        [&[3u8][..], br#"{"alg":"EdDSA","kid":"ed-1"}"#, &[0], &json_bytes(&list_audience)].concat(),
    );
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn verifier_config() {
    let t = "verifier_config";
    write(t, "jwt-url.json", ledger::VERIFIER_CONFIG);
    let jwks: Value = serde_json::from_slice(&jwt::fixture().jwks).unwrap();
    let inline = json!({
        "type": "jwt",
        "issuer": "https://issuer.example",
        "audiences": ["client-1"],
        "keys": {"jwks": jwks},
        "verifier_id_claim": "sub",
        "required_claims": {"email_verified": true, "tenant": "acme", "level": 2, "x": null},
        "max_token_age_secs": 600,
        "clock_skew_secs": 30,
    });
    write(t, "jwt-inline-keys.json", json_bytes(&inline));
    let introspection = json!({
        "type": "introspection",
        "url": "http://127.0.0.1:8080/api/users/@me",
        "user_id_pointer": "/id",
        "issued_at_pointer": "/iat",
        "freshness_secs": 600,
        "lowercase_verifier_id": false,
    });
    write(t, "introspection.json", json_bytes(&introspection));
    let mut sub_jwt = serde_json::from_slice::<Value>(ledger::VERIFIER_CONFIG).unwrap();
    sub_jwt["type"] = json!("jwt");
    let aggregate = json!({
        "type": "aggregate",
        "sub_verifiers": {"google": sub_jwt, "discord": introspection},
        "require_all": true,
    });
    write(t, "aggregate.json", json_bytes(&aggregate));
    // A JWKS document (the target reads every input as one too).
    write(t, "jwks.json", &jwt::fixture().jwks);
}

fn introspection() {
    let t = "introspection";
    write(
        t,
        "numeric.json",
        json_bytes(&json!({"user": {"id": 80351110224678912u64}, "issued_at": 1_800_000_000 - 10})),
    );
    write(t, "rfc3339.json", json_bytes(&json!({"user": {"id": "Nelly"}, "issued_at": "2027-01-15T08:00:00Z"})));
    write(t, "float.json", json_bytes(&json!({"user": {"id": "x"}, "issued_at": 1_799_999_999.5})));
}

fn transaction() {
    let fixture = ledger::fixture();
    let t = "transaction";
    // Each seed is applied on the state the target picks for it; valid
    // ones must be accepted with the effect given.
    let seed = |name: &str, transaction: SignedTransaction, expected: Option<Effect>| {
        let bytes = transaction.encode().to_vec();
        let checked = fixture.ledger.check_transaction(&bytes);
        let (state, height) = fixture.state_for(&transaction.body);
        let outcome = fixture.ledger.apply_block(state, height, ledger::time_ms(height), &[&bytes]).unwrap();
        match expected {
            Some(effect) => {
                checked.unwrap();
                assert_eq!(outcome.receipts[0].result, Ok(effect), "{name}");
            }
            None => assert!(outcome.receipts[0].result.is_err(), "{name}: {:?}", outcome.receipts[0].result),
        }
        write(t, name, bytes);
        outcome
    };
    let verifier = VerifierName::new(ledger::VERIFIER).unwrap();
    let assign = fixture.node_tx(
        1,
        TransactionBody::AssignKey {
            verifier: verifier.clone(),
            verifier_id: VerifierId::new("alice@example.com").unwrap(),
        },
    );
    seed("assign-key", assign.clone(), Some(Effect::AssignmentPending { sequence: 0 }));
    let mut bad_signature = assign.encode().to_vec();
    *bad_signature.last_mut().unwrap() ^= 1;
    assert!(fixture.ledger.check_transaction(&bad_signature).is_err());
    write(t, "assign-key-bad-signature", bad_signature);
    seed(
        "register-verifier",
        fixture.owner_tx(TransactionBody::RegisterVerifier {
            name: VerifierName::new("new-verifier").unwrap(),
            owner: ledger::compressed(&fixture.owner),
            config: Bytes::from_static(ledger::VERIFIER_CONFIG),
        }),
        Some(Effect::VerifierRegistered),
    );
    seed(
        "update-verifier",
        fixture.owner_tx(TransactionBody::UpdateVerifier {
            name: verifier,
            nonce: 1,
            config: Bytes::from_static(ledger::VERIFIER_CONFIG),
            enabled: false,
        }),
        Some(Effect::VerifierUpdated { nonce: 1 }),
    );
    // DKG batch 0: a dealing (dealing phase), a response with a complaint
    // and one without (responding phase), the last public shares
    // (publishing phase), which complete the batch.
    let dealing = fixture.dealings[0].clone();
    seed(
        "dkg-deal",
        fixture.node_tx(1, TransactionBody::DkgDeal { batch: 0, dealing }),
        Some(Effect::DkgDealingAccepted { batch: 0 }),
    );
    seed(
        "dkg-response-empty",
        fixture.node_tx(4, TransactionBody::DkgResponse { batch: 0, complaints: vec![] }),
        Some(Effect::DkgResponseAccepted { batch: 0, upheld: 0 }),
    );
    let complaints = vec![fixture.complaint];
    seed(
        "dkg-response-complaint",
        fixture.node_tx(3, TransactionBody::DkgResponse { batch: 0, complaints }),
        Some(Effect::DkgResponseAccepted { batch: 0, upheld: 0 }),
    );
    let shares = fixture.publications[0].clone();
    let outcome = seed(
        "dkg-public-shares",
        fixture.node_tx(1, TransactionBody::DkgPublicShares { batch: 0, shares }),
        Some(Effect::DkgPublicSharesAccepted { batch: 0 }),
    );
    assert!(
        outcome.dkg_events.iter().any(|event| matches!(event, DkgEvent::BatchFinished { batch: 0, .. })),
        "{:?}",
        outcome.dkg_events
    );
    let mut forged = fixture.publications[0].clone();
    forged.proof[40] ^= 1;
    seed(
        "dkg-public-shares-bad-proof",
        fixture.node_tx(1, TransactionBody::DkgPublicShares { batch: 0, shares: forged }),
        Some(Effect::DkgPublicSharesAccepted { batch: 0 }),
    );
}
