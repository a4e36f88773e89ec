//! The example scripts of `guest/assemblyscript` (the AssemblyScript SDK),
//! compiled by the AssemblyScript compiler from npm as the README's test
//! command does, validated as the ledger would and run on sample logins:
//! (a) two OAuth logins naming the same email, (b) an OAuth login plus an
//! Ethereum wallet's signature over a message naming the token's nonce.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use quorumkey_crypto::address::eth_address;
use quorumkey_crypto::group::PublicKey;
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::signature::RecoverableSignature;
use quorumkey_script::{ScriptBudget, ScriptError, ScriptInput, ScriptModule, SubTokenInput, run_script};
use serde_json::json;

const BUDGET: ScriptBudget = ScriptBudget { fuel: 2_000_000, memory_pages: 4 };

fn guest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest/assemblyscript")
}

/// The compiled example `name` (installing the compiler and building the
/// examples first if needed).
fn example(name: &str) -> Vec<u8> {
    let dir = guest_dir();
    let wasm = dir.join("build").join(format!("{name}.wasm"));
    if !wasm.exists() {
        if !dir.join("node_modules/assemblyscript/package.json").exists() {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .status()
                .expect("npm is needed to build the example scripts");
            assert!(status.success(), "npm ci in {} failed", dir.display());
        }
        let status = Command::new("npm").args(["run", "build"]).current_dir(&dir).status().unwrap();
        assert!(status.success(), "building the example scripts failed");
    }
    std::fs::read(wasm).unwrap()
}

fn token(name: &str, verifier_id: &str, claims: serde_json::Value) -> SubTokenInput {
    SubTokenInput {
        name: name.to_owned(),
        verifier_id: verifier_id.to_owned(),
        claims: claims.as_object().unwrap().clone(),
    }
}

fn login(sub_tokens: Vec<SubTokenInput>, params: serde_json::Value) -> ScriptInput {
    ScriptInput {
        sub_tokens,
        params: serde_json::from_value(params).unwrap(),
        issued_at: 1_700_000_000,
        now: 1_700_000_030,
    }
}

#[test]
fn same_email_accepts_two_logins_naming_one_verified_email() {
    let script = ScriptModule::compile(&example("same-email")).unwrap();
    let google = token("google", "Alice@Example.com", json!({"email": "Alice@Example.com", "email_verified": true}));
    let github = token("github", "alice@example.com", json!({"email": "alice@example.com", "email_verified": true}));
    let outcome = run_script(&script, &login(vec![google.clone(), github.clone()], json!({})), BUDGET).unwrap();
    assert_eq!(outcome.verifier_id, "alice@example.com");
    println!("same-email: {} fuel", outcome.fuel_used);

    let mallory =
        token("github", "mallory@example.com", json!({"email": "mallory@example.com", "email_verified": true}));
    let refused = |input| match run_script(&script, &input, BUDGET) {
        Err(ScriptError::Refused(reason)) => reason,
        other => panic!("{other:?}"),
    };
    assert_eq!(refused(login(vec![google.clone(), mallory], json!({}))), "the two logins name different emails");
    assert_eq!(refused(login(vec![google.clone()], json!({}))), "sign in with both providers");
    let unverified =
        token("github", "alice@example.com", json!({"email": "alice@example.com", "email_verified": false}));
    assert_eq!(refused(login(vec![google, unverified], json!({}))), "both emails must be verified by their provider");
}

#[test]
fn wallet_with_oauth_names_the_wallet_that_signed_the_tokens_nonce() {
    let script = ScriptModule::compile(&example("wallet-with-oauth")).unwrap();
    let wallet = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let address = eth_address(&PublicKey::from(wallet.verifying_key())).to_lowercase();
    let nonce = "n-8f3a2c91d0b74e65";
    let message = format!("Sign in to Example App\nnonce: {nonce}");
    let sign = |message: &str| {
        let mut prefixed = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
        prefixed.extend_from_slice(message.as_bytes());
        format!("0x{}", hex::encode(RecoverableSignature::sign_keccak(&wallet, &prefixed).to_bytes()))
    };
    let oauth = token("google", "alice@example.com", json!({"email": "alice@example.com", "nonce": nonce}));
    let input = login(vec![oauth.clone()], json!({"message": message, "signature": sign(&message)}));
    let outcome = run_script(&script, &input, BUDGET).unwrap();
    assert_eq!(outcome.verifier_id, address);

    println!("wallet-with-oauth: {} fuel", outcome.fuel_used);

    let refused = |input| match run_script(&script, &input, BUDGET) {
        Err(ScriptError::Refused(reason)) => reason,
        other => panic!("{other:?}"),
    };
    // A signature over a message for another login's nonce.
    let other = "Sign in to Example App\nnonce: n-0000000000000000";
    assert_eq!(
        refused(login(vec![oauth.clone()], json!({"message": other, "signature": sign(other)}))),
        "the signed message does not name this login's nonce"
    );
    // The right message with a signature of another message: another
    // address, so another user, never this wallet's.
    let swapped =
        run_script(&script, &login(vec![oauth.clone()], json!({"message": message, "signature": sign(other)})), BUDGET);
    assert!(swapped.as_ref().map_or(true, |outcome| outcome.verifier_id != address), "{swapped:?}");
    assert_eq!(
        refused(login(vec![oauth], json!({"message": message}))),
        "the login must carry the wallet's message and signature"
    );
}

/// The sample inputs beside the examples (`quorumkey verifier test-script`
/// runs them; docs/verifiers.md shows them) give the ids they document.
#[test]
fn the_sample_inputs_give_their_documented_ids() {
    // The wallet of the sample is the secret key 0x4242…42.
    let wallet = SigningKey::from_slice(&[0x42; 32]).unwrap();
    let wallet = eth_address(&PublicKey::from(wallet.verifying_key())).to_lowercase();
    for (name, id) in [("same-email", "alice@example.com"), ("wallet-with-oauth", wallet.as_str())] {
        let script = ScriptModule::compile(&example(name)).unwrap();
        let input = std::fs::read_to_string(guest_dir().join("examples").join(format!("{name}.input.json"))).unwrap();
        let input: ScriptInput = serde_json::from_str(&input).unwrap();
        assert_eq!(run_script(&script, &input, BUDGET).unwrap().verifier_id, id, "{name}");
    }
}
