//! Verifier scripts on five real node processes (a devnet on 127.0.0.1):
//!
//! - the two example scripts (AssemblyScript, built by the test setup) are
//!   published with `quorumkey verifier publish-script` and log users in
//!   end to end with the Rust client: (a) two logins of the development
//!   issuer naming the same email, (b) one login plus an Ethereum wallet's
//!   signature over a message naming the token's nonce, whose user is the
//!   wallet's address;
//! - the same module on every node: a script login revealed to all five
//!   nodes is served by all five, and their shares rebuild the user's key;
//! - evidence changed after the commitment is refused by every node;
//! - modules that import anything else or use floats are refused by the
//!   ledger; an infinite loop, a memory bomb and a 1 MB verifier_id are
//!   refused at login with the same error by every node, which stays
//!   healthy;
//! - an update of the verifier to another module changes logins from the
//!   next block on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use quorumkey_client::node_api_client::NodeApiClient;
use quorumkey_client::registry::{self, VerifierChange};
use quorumkey_client::{ClientOptions, QuorumkeyClient};
use quorumkey_crypto::address::eth_address;
use quorumkey_crypto::group::PublicKey;
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::signature::RecoverableSignature;
use quorumkey_devnet::dev_issuer::{DEV_AUDIENCE, MintRequest, dev_verifier_config, request_token};
use quorumkey_devnet::supervisor::NETWORK_JSON;
use quorumkey_login::RpcError;
use quorumkey_login::reveal::script_id_token;
use quorumkey_node::identity::load_owner_key;
use serde_json::{Value, json};
use support::raw::{Client, TempKey, open, rebuild};
use support::{devnet_options, small_dkg, start_devnet};

const NODES: u16 = 5;
const ALL: [u16; 5] = [1, 2, 3, 4, 5];

fn quorumkey(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_quorumkey")).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The compiled example script `name` (built with npm if missing).
fn example(name: &str) -> PathBuf {
    let guest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest/assemblyscript");
    let wasm = guest.join("build").join(format!("{name}.wasm"));
    if !wasm.exists() {
        let npm = |args: &[&str]| Command::new("npm").args(args).current_dir(&guest).status().unwrap();
        if !guest.join("node_modules/assemblyscript/package.json").exists() {
            assert!(npm(&["ci", "--no-audit", "--no-fund", "--loglevel=error"]).success());
        }
        assert!(npm(&["run", "build"]).success());
    }
    wasm
}

/// A script verifier's configuration: `module`, the development issuer's
/// JWT configuration under each of `subs`, and the `evidence` it takes.
fn script_config(module: &str, issuer: &str, subs: &[&str], evidence: &[&str]) -> Vec<u8> {
    let jwt: Value = serde_json::from_str(&dev_verifier_config(issuer, DEV_AUDIENCE)).unwrap();
    let subs: serde_json::Map<String, Value> = subs.iter().map(|name| ((*name).to_owned(), jwt.clone())).collect();
    json!({"type": "script", "module": module, "fuel": 2_000_000, "memory_pages": 4, "sub_verifiers": subs,
           "evidence": evidence})
    .to_string()
    .into_bytes()
}

async fn mint(endpoint: &str, email: &str, nonce: Option<&str>) -> String {
    let mut request = MintRequest::for_email(email);
    request.nonce = nonce.map(str::to_owned);
    request_token(endpoint, &request).await.unwrap().id_token
}

/// A fresh 18-character nonce.
fn fresh_nonce() -> String {
    let mut bytes = [0u8; 8];
    rand_core::Rng::fill_bytes(&mut quorumkey_crypto::random::os_rng(), &mut bytes);
    format!("n-{}", hex::encode(bytes))
}

/// `personal_sign` of `message` by `wallet`, as 0x-hex.
fn personal_sign(wallet: &SigningKey, message: &str) -> String {
    let mut prefixed = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
    prefixed.extend_from_slice(message.as_bytes());
    format!("0x{}", hex::encode(RecoverableSignature::sign_keccak(wallet, &prefixed).to_bytes()))
}

/// A script login at the protocol level: commits at every node with
/// `temp`, then reveals to every node with `reveal_evidence` (the
/// committed evidence unless the test changes it).
struct RawScriptLogin<'a> {
    client: &'a Client,
    user: &'a str,
    subs: Vec<(String, String)>,
    evidence: BTreeMap<String, String>,
}

impl RawScriptLogin<'_> {
    fn id_token(&self, evidence: &BTreeMap<String, String>) -> String {
        let tokens: Vec<String> = self.subs.iter().map(|(_, token)| token.clone()).collect();
        script_id_token(&tokens, evidence)
    }

    async fn commit(&self, temp: &TempKey) -> Vec<Result<Value, RpcError>> {
        let tokens: Vec<&str> = self.subs.iter().map(|(_, token)| token.as_str()).collect();
        let params = self.client.aggregate_commitment_params(&self.id_token(&self.evidence), &tokens, temp);
        self.client.commit_params(&ALL, &params).await
    }

    fn reveal_params(
        &self,
        signatures: &[Result<Value, RpcError>],
        id_token: &str,
        evidence: &BTreeMap<String, String>,
    ) -> Value {
        let mut params = self.client.share_params(id_token, self.user, signatures);
        let item = &mut params["item"][0];
        item["verify_params"] = json!(
            self.subs.iter().map(|(_, token)| json!({"verifier_id": self.user, "idtoken": token})).collect::<Vec<_>>()
        );
        item["sub_verifier_ids"] = json!(self.subs.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>());
        item["script_params"] = json!(evidence);
        params
    }
}

fn errors(answers: &[Result<quorumkey_login::ShareRequestResult, RpcError>]) -> Vec<String> {
    answers
        .iter()
        .map(|answer| match answer {
            Err(error) => error.data.clone(),
            Ok(_) => "served".to_owned(),
        })
        .collect()
}

#[test]
fn verifier_scripts_log_users_in_on_five_processes() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = devnet_options(dir.path(), NODES, small_dkg());
    // Publications spend the registration budget as registrations do; this
    // test makes a dozen of both in well under a window.
    options.policy.registrations_per_window = Some(100);
    let network = options.dir.join(NETWORK_JSON);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (devnet, description) = start_devnet(&options, 32).await;
        let dev = description.dev_issuer.clone().unwrap();
        let owner_file = dir.path().join("owner.key");
        let (ok, _, stderr) = quorumkey(&["verifier", "owner-key", "--out", owner_file.to_str().unwrap()]);
        assert!(ok, "{stderr}");
        let owner = load_owner_key(&owner_file).unwrap();
        let node = NodeApiClient::new(description.nodes[0].api.clone());
        let network_arg = network.to_str().unwrap();

        // Publish the examples with the command line.
        let mut modules = BTreeMap::new();
        for name in ["same-email", "wallet-with-oauth"] {
            let wasm = example(name);
            let (ok, stdout, stderr) = quorumkey(&[
                "verifier",
                "publish-script",
                "--module",
                wasm.to_str().unwrap(),
                "--owner-key",
                owner_file.to_str().unwrap(),
                "--network",
                network_arg,
            ]);
            assert!(ok, "{stderr}");
            let id = stdout.split_whitespace().nth(2).unwrap().to_owned();
            assert_eq!(id.len(), 64, "{stdout}");
            modules.insert(name, id);
        }
        let register = |name: &'static str, config: Vec<u8>| {
            let (node, owner) = (node.clone(), owner.clone());
            async move { registry::register(&node, name, &config, &owner).await.unwrap() }
        };
        // With the command line: the module published and named by
        // `register --script`.
        let config_file = dir.path().join("both-logins.json");
        std::fs::write(&config_file, script_config(&"0".repeat(64), &dev.issuer, &["google", "github"], &[])).unwrap();
        let (ok, stdout, stderr) = quorumkey(&[
            "verifier",
            "register",
            "--name",
            "both-logins",
            "--config",
            config_file.to_str().unwrap(),
            "--script",
            example("same-email").to_str().unwrap(),
            "--owner-key",
            owner_file.to_str().unwrap(),
            "--network",
            network_arg,
        ]);
        assert!(ok, "{stderr}");
        assert!(stdout.contains(&modules["same-email"]), "{stdout}");
        register(
            "wallet-login",
            script_config(&modules["wallet-with-oauth"], &dev.issuer, &["google"], &["message", "signature"]),
        )
        .await;

        let client = QuorumkeyClient::from_file(&network, ClientOptions::default()).unwrap();
        let endpoint = dev.token_endpoint.clone();

        // (a) Two logins naming the same email.
        let (alice, _) = client.lookup_or_assign("both-logins", "alice@example.com").await.unwrap();
        let subs = vec![
            ("google".to_owned(), mint(&endpoint, "Alice@Example.com", None).await),
            ("github".to_owned(), mint(&endpoint, "alice@example.com", None).await),
        ];
        let login = client.login_script("both-logins", "alice@example.com", &subs, &BTreeMap::new()).await.unwrap();
        assert_eq!(login.key.address, alice.address);
        // The command line's login, with a file per sub-token.
        let (first, second) = (dir.path().join("google.token"), dir.path().join("github.token"));
        std::fs::write(&first, mint(&endpoint, "alice@example.com", None).await).unwrap();
        std::fs::write(&second, mint(&endpoint, "ALICE@example.com", None).await).unwrap();
        let (ok, stdout, stderr) = quorumkey(&[
            "login",
            "--network",
            network_arg,
            "--verifier",
            "both-logins",
            "--verifier-id",
            "alice@example.com",
            "--sub-token",
            &format!("google={}", first.display()),
            "--sub-token",
            &format!("github={}", second.display()),
            "--json",
        ]);
        assert!(ok, "{stderr}");
        let answer: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(answer["address"], alice.address.as_str(), "{stdout}");
        let mixed = vec![
            ("google".to_owned(), mint(&endpoint, "alice@example.com", None).await),
            ("github".to_owned(), mint(&endpoint, "mallory@example.com", None).await),
        ];
        let refused = client.login_script("both-logins", "alice@example.com", &mixed, &BTreeMap::new()).await;
        let refused = format!("{:?}", refused.unwrap_err());
        assert!(refused.contains("the two logins name different emails"), "{refused}");

        // (b) A login plus a wallet's signature over its nonce.
        let wallet = SigningKey::generate_from_rng(&mut quorumkey_crypto::random::os_rng());
        let address = eth_address(&PublicKey::from(wallet.verifying_key())).to_lowercase();
        let nonce = fresh_nonce();
        let token = mint(&endpoint, "bob@example.com", Some(&nonce)).await;
        let message = format!("Sign in to the wallet app\nnonce: {nonce}");
        let evidence: BTreeMap<String, String> =
            [("message".to_owned(), message.clone()), ("signature".to_owned(), personal_sign(&wallet, &message))].into();
        let (key, _) = client.lookup_or_assign("wallet-login", &address).await.unwrap();
        let login = client
            .login_script("wallet-login", &address, &[("google".to_owned(), token)], &evidence)
            .await
            .unwrap();
        assert_eq!(login.key.address, key.address);
        // Evidence the verifier does not take never reaches its script.
        let mut extra = evidence.clone();
        extra.insert("referrer".to_owned(), "anything".to_owned());
        let nonce = fresh_nonce();
        let token = mint(&endpoint, "bob@example.com", Some(&nonce)).await;
        let refused = client.login_script("wallet-login", &address, &[("google".to_owned(), token)], &extra).await;
        let refused = format!("{:?}", refused.unwrap_err());
        assert!(refused.contains("takes no evidence field") && refused.contains("referrer"), "{refused}");

        // The command line, with the evidence as arguments and a file.
        let nonce = fresh_nonce();
        let token_file = dir.path().join("wallet.token");
        std::fs::write(&token_file, mint(&endpoint, "bob@example.com", Some(&nonce)).await).unwrap();
        let message = format!("Sign in to the wallet app\nnonce: {nonce}");
        let message_file = dir.path().join("message.txt");
        std::fs::write(&message_file, &message).unwrap();
        let (ok, stdout, stderr) = quorumkey(&[
            "login",
            "--network",
            network_arg,
            "--verifier",
            "wallet-login",
            "--verifier-id",
            &address,
            "--sub-token",
            &format!("google={}", token_file.display()),
            "--evidence",
            &format!("signature={}", personal_sign(&wallet, &message)),
            "--evidence-file",
            &format!("message={}", message_file.display()),
            "--json",
        ]);
        assert!(ok, "{stderr}");
        let answer: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(answer["address"], key.address.as_str(), "{stdout}");

        // Every node runs the module alike: all five serve a share, and
        // any three rebuild the user's key.
        let raw = Client {
            description: description.clone(),
            http: reqwest::Client::new(),
            verifier: "wallet-login".to_owned(),
        };
        let nonce = fresh_nonce();
        let message = format!("Sign in to the wallet app\nnonce: {nonce}");
        let login = RawScriptLogin {
            client: &raw,
            user: &address,
            subs: vec![("google".to_owned(), mint(&endpoint, "bob@example.com", Some(&nonce)).await)],
            evidence: [("message".to_owned(), message.clone()), ("signature".to_owned(), personal_sign(&wallet, &message))]
                .into(),
        };
        let temp = TempKey::new();
        let signatures = login.commit(&temp).await;
        assert!(signatures.iter().all(Result::is_ok), "{signatures:?}");
        // Evidence changed after the commitment (another wallet's
        // signature): refused by every node, as committed or as recomputed.
        let other = SigningKey::generate_from_rng(&mut quorumkey_crypto::random::os_rng());
        let mut swapped = login.evidence.clone();
        swapped.insert("signature".to_owned(), personal_sign(&other, &message));
        let committed_id = login.id_token(&login.evidence);
        let answers = raw.reveal(&ALL, &login.reveal_params(&signatures, &committed_id, &swapped)).await;
        assert!(errors(&answers).iter().all(|e| e.contains("not what was committed")), "{:?}", errors(&answers));
        let answers = raw.reveal(&ALL, &login.reveal_params(&signatures, &login.id_token(&swapped), &swapped)).await;
        assert!(answers.iter().all(Result::is_err), "{:?}", errors(&answers));
        // The login as committed: served by all five.
        let answers = raw.reveal(&ALL, &login.reveal_params(&signatures, &committed_id, &login.evidence)).await;
        let shares: Vec<(u16, _)> =
            answers.iter().zip(ALL).map(|(answer, node)| (node, open(answer.as_ref().unwrap(), &temp).unwrap())).collect();
        assert_eq!(rebuild(&shares[2..]), key.address);
        assert_eq!(rebuild(&shares[..3]), key.address);
        // The same evidence in another spelling (an escaped character,
        // blanks): the same login, answered again by every node, since
        // nodes bind the evidence by what it means.
        let params = login.reveal_params(&signatures, &committed_id, &login.evidence);
        let body = quorumkey_login::rpc::request_body(quorumkey_login::Method::Share, params).to_string();
        let respelled = body.replacen("\"signature\":\"0x", "\"signature\" : \"\\u0030x", 1);
        assert_ne!(respelled, body);
        for node in ALL {
            let (status, answer) = raw.post(node, respelled.clone().into_bytes()).await;
            assert_eq!(status, 200);
            let answer: quorumkey_login::ShareRequestResult = serde_json::from_value(answer["result"].clone())
                .unwrap_or_else(|_| panic!("node {node} refused the respelled evidence: {answer}"));
            assert_eq!(open(&answer, &temp), Some(shares[usize::from(node) - 1].1), "node {node}");
        }

        // The ledger refuses modules that are not scripts, on every node.
        for (what, text, reason) in [
            ("an import", r#"(module (import "env" "fetch" (func)) (memory (export "memory") 1) (func (export "verify") (result i32) i32.const 0))"#, "not a host function"),
            ("floats", r#"(module (memory (export "memory") 1) (func (export "verify") (result i32) f64.const 2 i32.trunc_f64_s))"#, "not valid WebAssembly"),
        ] {
            let module = wat::parse_str(text).unwrap();
            // Refused at admission by whichever node is asked, as a block
            // would be by all.
            for node in &description.nodes {
                let node = NodeApiClient::new(node.api.clone());
                let refused = registry::publish_script(&node, &module, &owner).await.unwrap_err().to_string();
                assert!(refused.contains(reason), "{what}: {refused}");
            }
            let path = dir.path().join("bad.wasm");
            std::fs::write(&path, &module).unwrap();
            let (ok, _, stderr) = quorumkey(&[
                "verifier", "publish-script", "--module", path.to_str().unwrap(),
                "--owner-key", owner_file.to_str().unwrap(), "--network", network_arg,
            ]);
            assert!(!ok && !stderr.is_empty(), "{what}");
        }

        // Scripts that misbehave at login: the same error on every node,
        // and every node stays healthy.
        let misbehaving = [
            ("loops", r#"(module (memory (export "memory") 1) (func (export "verify") (result i32) (loop (br 0)) i32.const 0))"#, "ran out of fuel"),
            ("grows", r#"(module (memory (export "memory") 1) (func (export "verify") (result i32)
                (loop (br_if 0 (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable))"#, "failed"),
            ("huge-id", r#"(module (import "quorumkey" "accept" (func $a (param i32 i32))) (memory (export "memory") 1)
                (func (export "verify") (result i32) (call $a (i32.const 0) (i32.const 1048576)) i32.const 0))"#, "longer than 256"),
        ];
        for (name, text, expected) in misbehaving {
            let module = wat::parse_str(text).unwrap();
            let id = hex::encode(registry::publish_script(&node, &module, &owner).await.unwrap());
            let verifier: &'static str = Box::leak(format!("bad-{name}").into_boxed_str());
            register(verifier, script_config(&id, &dev.issuer, &["google"], &[])).await;
            let raw = Client { description: description.clone(), http: reqwest::Client::new(), verifier: verifier.to_owned() };
            let login = RawScriptLogin {
                client: &raw,
                user: "carol@example.com",
                subs: vec![("google".to_owned(), mint(&endpoint, "carol@example.com", None).await)],
                evidence: BTreeMap::new(),
            };
            let temp = TempKey::new();
            let signatures = login.commit(&temp).await;
            let id_token = login.id_token(&login.evidence);
            let answers = raw.reveal(&ALL, &login.reveal_params(&signatures, &id_token, &login.evidence)).await;
            let errors = errors(&answers);
            assert!(errors.iter().all(|e| e.contains(expected) && *e == errors[0]), "{name}: {errors:?}");
        }
        for node in &description.nodes {
            let health: Value = reqwest::get(format!("{}/health", node.api)).await.unwrap().json().await.unwrap();
            assert_eq!(health["status"], "ok", "node {}: {health}", node.index);
        }

        // An update to another module binds from the next block on.
        let closed = wat::parse_str(
            r#"(module (import "quorumkey" "refuse" (func $r (param i32 i32))) (memory (export "memory") 1)
                 (data (i32.const 0) "closed for maintenance")
                 (func (export "verify") (result i32) (call $r (i32.const 0) (i32.const 22)) i32.const 1))"#,
        )
        .unwrap();
        let closed = hex::encode(registry::publish_script(&node, &closed, &owner).await.unwrap());
        let change = VerifierChange {
            config: Some(script_config(&closed, &dev.issuer, &["google", "github"], &[])),
            enabled: None,
        };
        registry::update(&node, "both-logins", &change, &owner).await.unwrap();
        let subs = vec![
            ("google".to_owned(), mint(&endpoint, "alice@example.com", None).await),
            ("github".to_owned(), mint(&endpoint, "alice@example.com", None).await),
        ];
        let refused = client.login_script("both-logins", "alice@example.com", &subs, &BTreeMap::new()).await;
        let refused = format!("{:?}", refused.unwrap_err());
        assert!(refused.contains("closed for maintenance"), "{refused}");
        devnet.stop().await;
    });
}
