//! Identity providers and real `quorumkey node` processes: a devnet of
//! three nodes on 127.0.0.1 whose node 1 runs as a production node
//! (`[providers] allow_private_addresses` off, the default outside a
//! devnet), while nodes 2 and 3 keep the devnet's development setting.
//!
//! - the devnet's JWT verifier (its development issuer on 127.0.0.1) and an
//!   introspection verifier on 127.0.0.1: node 1 refuses the token saying
//!   the provider's address is not public, and its provider sees no
//!   request; the development nodes check the token;
//! - a reveal replayed to a node asks the provider once (answer cache);
//!   past the per-verifier budget of provider calls, a precise "rate
//!   limited" JSON-RPC error;
//! - the ledger refuses to register a verifier whose URL is a private,
//!   link-local, unique-local or IPv4-mapped address, or carries user info.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use commonware_codec::Encode as _;
use quorumkey_crypto::group::{Point, point_to_bytes};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_devnet::supervisor::NETWORK_JSON;
use quorumkey_ledger::{SignedTransaction, TransactionBody, VerifierName};
use quorumkey_login::error::NOT_ASSIGNED;
use quorumkey_login::rpc::{RATE_LIMITED, request_body};
use quorumkey_login::{Method, RpcResponse};
use quorumkey_node::config::ProviderSettings;
use quorumkey_node::run::node_config_path;
use serde_json::json;
use support::raw::{Client, TempKey, data_of};
use support::{DevnetSigners, VerifierOwner, devnet_options, small_dkg, start_devnet};

const ALL: [u16; 3] = [1, 2, 3];

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// An introspection endpoint on 127.0.0.1 that counts its requests:
/// `Bearer user-N` is user `user-N`, issued now; anything else is 401.
async fn serve_introspection(hits: Arc<AtomicU64>) -> std::net::SocketAddr {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/me",
        axum::routing::get(move |headers: HeaderMap| async move {
            hits.fetch_add(1, Ordering::SeqCst);
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            match auth.strip_prefix("Bearer ") {
                Some(user) if user.starts_with("user-") => {
                    axum::Json(json!({"id": user, "iat": now()})).into_response()
                }
                _ => StatusCode::UNAUTHORIZED.into_response(),
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// Commits `token` at every node and reveals it at `nodes`.
async fn login(client: &Client, token: &str, user: &str, nodes: &[u16]) -> Vec<String> {
    let temp = TempKey::new();
    let signatures = client.commit(&ALL, token, &temp).await;
    assert!(signatures.iter().all(Result::is_ok), "{signatures:?}");
    let params = client.share_params(token, user, &signatures);
    client.reveal(nodes, &params).await.iter().map(data_of).collect()
}

#[test]
fn a_production_node_refuses_loopback_and_private_providers() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = devnet_options(dir.path(), 3, small_dkg());
    // One provider call per second per verifier, so the budget is seen.
    options.providers = ProviderSettings {
        calls_per_second_per_verifier: 1,
        call_burst_per_verifier: 1,
        ..ProviderSettings::development()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (mut devnet, description) = start_devnet(&options, 0).await;

        // Node 1 becomes a production node: restarted with the development
        // setting off.
        devnet.kill_node(1).await;
        let path = node_config_path(devnet.dir(), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("allow_private_addresses = true"), "the devnet turns it on:\n{text}");
        std::fs::write(&path, text.replace("allow_private_addresses = true", "allow_private_addresses = false"))
            .unwrap();
        devnet.start_node(1).unwrap();
        let status = devnet.client(1).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while status.status().await.is_err() {
            devnet.check_alive().unwrap();
            assert!(Instant::now() < deadline, "node 1 did not come back");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // The devnet's JWT verifier: its keys are on 127.0.0.1.
        let verifier = description.dev_issuer.as_ref().unwrap().verifier.clone();
        let client = Client { description: description.clone(), http: reqwest::Client::new(), verifier };
        let token = client.mint("alice@example.com").await;
        let answers = login(&client, &token, "alice@example.com", &ALL).await;
        assert!(
            answers[0].contains("address is not public (a loopback address)")
                && answers[0].contains("public addresses only"),
            "node 1: {}",
            answers[0]
        );
        for answer in &answers[1..] {
            assert!(answer.contains(NOT_ASSIGNED), "a development node checked the token: {answer}");
        }

        // An introspection verifier on 127.0.0.1.
        let hits = Arc::new(AtomicU64::new(0));
        let address = serve_introspection(hits.clone()).await;
        let owner = VerifierOwner::new(&options.dir.join(NETWORK_JSON));
        owner.submit(
            "register",
            "opaque",
            &json!({"type": "introspection", "url": format!("http://{address}/me"), "user_id_pointer": "/id",
                    "issued_at_pointer": "/iat", "freshness_secs": 600}),
        );
        let opaque =
            Client { description: description.clone(), http: reqwest::Client::new(), verifier: "opaque".into() };
        let answers = login(&opaque, "user-1", "user-1", &[1]).await;
        assert!(answers[0].contains("address is not public"), "node 1: {}", answers[0]);
        assert_eq!(hits.load(Ordering::SeqCst), 0, "the production node sent the provider nothing");

        // Node 2 asks the provider once, however often the reveal is
        // replayed to it.
        let temp = TempKey::new();
        let signatures = opaque.commit(&ALL, "user-2", &temp).await;
        let params = opaque.share_params("user-2", "user-2", &signatures);
        for _ in 0..10 {
            let answer = opaque.reveal(&[2], &params).await.remove(0);
            assert!(data_of(&answer).contains(NOT_ASSIGNED), "{answer:?}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "one provider call for ten reveals");

        // Past the budget of provider calls (1 per second): a precise
        // "rate limited" error, without a call.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let mut refused = None;
        for user in ["user-3", "user-4", "user-5"] {
            let temp = TempKey::new();
            let signatures = opaque.commit(&ALL, user, &temp).await;
            let body = request_body(Method::Share, opaque.share_params(user, user, &signatures));
            let (status, answer) = opaque.post(2, body.to_string().into_bytes()).await;
            let answer: RpcResponse = serde_json::from_value(answer).unwrap();
            if status == 429 {
                refused = answer.error;
                break;
            }
        }
        let refused = refused.expect("the budget of provider calls ran out");
        assert_eq!(refused.code, RATE_LIMITED);
        assert!(
            refused.data.contains("verifier opaque") && refused.data.contains("identity provider (1 per second)"),
            "{refused:?}"
        );
        assert!(hits.load(Ordering::SeqCst) <= 3);

        // The ledger refuses verifiers at private addresses or with user
        // info, whoever submits them (a transaction signed by hand is
        // finalized as refused), and the CLI says why before submitting.
        let signers = DevnetSigners::load(devnet.dir());
        let owner_key = SigningKey::generate_from_rng(&mut quorumkey_crypto::random::os_rng());
        let key_file = dir.path().join("owner.key");
        quorumkey_node::identity::save_owner_key(&key_file, &owner_key).unwrap();
        let node = devnet.client(2).unwrap();
        for (index, (url, reason)) in [
            ("http://localhost:1@10.0.0.1/jwks", "user name or password"),
            ("https://10.0.0.1/jwks", "private address"),
            ("https://192.168.1.1/jwks", "private address"),
            ("https://169.254.169.254/latest/meta-data/", "link-local"),
            ("https://[fd00::1]/jwks", "unique-local"),
            ("https://[::ffff:10.0.0.1]/jwks", "private address"),
            ("http://issuer.example/jwks", "must use https"),
        ]
        .into_iter()
        .enumerate()
        {
            let name = format!("private-{index}");
            let config = json!({"type": "jwt", "issuer": "https://issuer.example", "audiences": ["app"],
                "keys": {"jwks_url": url}, "verifier_id_claim": "email", "max_token_age_secs": 3600});
            let body = TransactionBody::RegisterVerifier {
                name: VerifierName::new(&name).unwrap(),
                owner: point_to_bytes(&Point::from(*owner_key.verifying_key().as_affine())),
                config: bytes::Bytes::from(config.to_string().into_bytes()),
            };
            let transaction =
                SignedTransaction::sign_as_owner(signers.ledger.network_id(), body, &owner_key).encode().to_vec();
            let _ = node.submit(&transaction, true).await;
            assert!(node.verifier(&name).await.unwrap().is_none(), "{url} was registered");

            let file = dir.path().join(format!("{name}.json"));
            std::fs::write(&file, config.to_string()).unwrap();
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_quorumkey"))
                .args(["verifier", "register", "--name", &name, "--config"])
                .arg(&file)
                .arg("--owner-key")
                .arg(&key_file)
                .arg("--network")
                .arg(options.dir.join(NETWORK_JSON))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success() && stderr.contains(reason), "{url}: {stderr}");
        }
        devnet.stop().await;
    });
}
