//! Logins against five real `quorumkey node` processes (a devnet on
//! 127.0.0.1, with its development issuer and auxiliary hosts):
//!
//! - the unmodified public `@toruslabs/torus.js` 8.0.1, installed from npm
//!   by this test (pinned by `tests/torusjs/package-lock.json`): a new user
//!   (lookup, KeyAssign through the signer, lookup, then commitment and
//!   reveal) gets a key whose address is the looked-up one; a fresh token
//!   gives the same key; a replayed token is refused; with one node killed
//!   a login still works;
//! - the two front-running attacks, driven at the protocol level: a
//!   front-runner who commits the user's commitment with its own key at
//!   some nodes, and one who replays the reveal to other nodes, get nothing
//!   they can decrypt, and the user still gets the key;
//! - hostile input on every method: a precise error every time, and the
//!   node stays healthy;
//! - commitments survive a `kill -9` and restart; rate limits answer 429.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Duration;

use futures::StreamExt as _;
use quorumkey_crypto::address::eth_address;
use quorumkey_crypto::group::{PublicKey, Scalar, nonzero_scalar_from_hex, public_key_to_xy_hex};
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::signature::RecoverableSignature;
use quorumkey_devnet::dev_issuer::dev_verifier_config;
use quorumkey_devnet::supervisor::NETWORK_JSON;
use quorumkey_login::reveal::aggregate_id_token;
use quorumkey_login::rpc::request_body;
use quorumkey_login::{Method, RpcError};
use quorumkey_node::config::RpcSettings;
use quorumkey_node::identity::NodeIdentity;
use serde_json::{Value, json};
use support::raw::{Client, TempKey, data_of, open, rebuild};
use support::torusjs::torus_js;
use support::{devnet_options, small_dkg, start_devnet};

const NODES: u16 = 5;

#[test]
fn torus_js_and_commit_reveal_on_five_processes() {
    support::torusjs::install();
    let dir = tempfile::tempdir().unwrap();
    // A low per-verifier login limit so the limit can be seen.
    let mut options = devnet_options(dir.path(), NODES, small_dkg());
    options.rpc = RpcSettings { logins_per_second_per_verifier: 20, ..RpcSettings::default() };
    let network = options.dir.join(NETWORK_JSON);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (mut devnet, description) = start_devnet(&options, 32).await;
        let auxiliary = description.auxiliary.clone().expect("network.json lists the auxiliary hosts");
        assert!(auxiliary.signer_host.ends_with("/api/sign"));
        assert!(description.nodes.iter().all(|node| node.endpoint.ends_with("/jrpc")));
        let verifier = description.dev_issuer.as_ref().unwrap().verifier.clone();
        let client = Client { description, http: reqwest::Client::new(), verifier: verifier.clone() };

        // torus.js: a new user, then a fresh token, then a replayed one.
        let token = client.mint("alice@example.com").await;
        let first = torus_js(&network, &verifier, "alice@example.com", Some(&token)).expect("torus.js login");
        let address = first["lookup"]["address"].as_str().unwrap().to_owned();
        assert_eq!(first["login"]["ethAddress"], address.as_str());
        let private_key = first["login"]["privKey"].as_str().unwrap().to_owned();
        let secret = nonzero_scalar_from_hex("privKey", &private_key).unwrap();
        assert_eq!(
            eth_address(&PublicKey::from_secret_scalar(&secret)),
            address,
            "the private key is the looked-up key"
        );
        let fresh = client.mint("alice@example.com").await;
        let second = torus_js(&network, &verifier, "alice@example.com", Some(&fresh)).expect("second login");
        assert_eq!(second["login"]["privKey"], private_key.as_str(), "a fresh token gives the same key");
        let replay = torus_js(&network, &verifier, "alice@example.com", Some(&fresh)).unwrap_err();
        assert!(replay.contains("Duplicate token found"), "a replayed token is refused: {replay}");

        front_runner_commits_with_its_own_key(&client, &network).await;
        front_runner_replays_the_reveal(&client, &network).await;
        hostile_input(&client, devnet.dir()).await;
        aggregate_login(&client, &network).await;

        // A commitment survives kill -9 and restart.
        let token = client.mint("restart@example.com").await;
        let (user, other) = (TempKey::new(), TempKey::new());
        let before = client.commit(&[1], &token, &user).await.remove(0).unwrap();
        devnet.kill_node(1).await;
        devnet.start_node(1).unwrap();
        let health = format!("{}/health", client.description.nodes[0].api);
        for _ in 0..300 {
            if client.http.get(&health).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let after = client.commit(&[1], &token, &user).await.remove(0);
        assert_eq!(after.expect("node 1 answers after its restart"), before, "the same record, the same signature");
        let other_key = client.commit(&[1], &token, &other).await.remove(0);
        assert!(data_of(&other_key).contains("Duplicate token found"), "the binding survived the restart");

        // One node down: torus.js still logs a new user in.
        devnet.kill_node(5).await;
        let token = client.mint("carol@example.com").await;
        let down = torus_js(&network, &verifier, "carol@example.com", Some(&token)).expect("login with a node down");
        assert_eq!(down["login"]["ethAddress"], down["lookup"]["address"]);

        rate_limits(&client).await;
        devnet.stop().await;
    });
}

/// Attack 1: a front-runner sees the commitment and forwards it with its
/// own temporary key to a node first. That node refuses the user's key
/// (one key per commitment) and the user reveals with the four signatures
/// of the others; the front-runner, even holding the token then, gets no
/// share it can decrypt and cannot bind more nodes. The user gets the key,
/// and later logs in with torus.js and a new token. A front-runner that
/// gets to two nodes first stops that login (four signatures are needed)
/// and gets nothing either.
async fn front_runner_commits_with_its_own_key(client: &Client, network: &Path) {
    let user_id = "front-1@example.com";
    let lookup = torus_js(network, &client.verifier, user_id, None).expect("KeyAssign through torus.js");
    let address = lookup["lookup"]["address"].as_str().unwrap().to_owned();
    let token = client.mint(user_id).await;
    let (user, attacker) = (TempKey::new(), TempKey::new());
    let attacker_signatures = client.commit(&[1], &token, &attacker).await;
    assert!(attacker_signatures.iter().all(Result::is_ok), "the front-runner got there first at node 1");
    let signatures = client.commit(&[1, 2, 3, 4, 5], &token, &user).await;
    assert!(data_of(&signatures[0]).contains("Duplicate token found"), "{:?}", signatures[0]);
    assert!(signatures[1..].iter().all(Result::is_ok));

    // The user reveals to every node with the four signatures it has.
    let reveal = client.share_params(&token, user_id, &signatures);
    let answers = client.reveal(&[1, 2, 3, 4, 5], &reveal).await;
    assert!(data_of(&answers[0]).contains("another temporary key"), "{:?}", answers[0]);
    let shares: Vec<(u16, Scalar)> = answers
        .iter()
        .zip(1..)
        .filter_map(|(a, i)| a.as_ref().ok().and_then(|a| open(a, &user)).map(|s| (i, s)))
        .collect();
    assert_eq!(rebuild(&shares), address, "the user still gets its key");

    // The front-runner now holds the token. With its own signature and the
    // user's four, every node either refuses or answers to the user's key.
    let mut mixed = attacker_signatures.clone();
    mixed.extend(signatures[1..].iter().cloned());
    let stolen = client.share_params(&token, user_id, &mixed);
    for (answer, node) in client.reveal(&[1, 2, 3, 4, 5], &stolen).await.iter().zip(1..) {
        match answer {
            Ok(answer) => {
                assert!(node > 1, "node {node} recorded the front-runner's key and must refuse");
                assert!(open(answer, &attacker).is_none(), "node {node}'s share opens with the front-runner's key");
                assert!(open(answer, &user).is_some());
            }
            Err(error) => assert!(error.data.contains("usable node signatures"), "node {node}: {error:?}"),
        }
    }
    for refused in client.commit(&[2, 3, 4, 5], &token, &attacker).await {
        assert!(data_of(&refused).contains("Duplicate token found"));
    }

    // Two nodes front-run: the user has three signatures, too few to
    // reveal; nothing opens for anyone.
    let token = client.mint(user_id).await;
    let attacker_signatures = client.commit(&[1, 2], &token, &attacker).await;
    let signatures = client.commit(&[1, 2, 3, 4, 5], &token, &user).await;
    assert_eq!(signatures.iter().filter(|s| s.is_ok()).count(), 3);
    for (signatures, temp) in [(&signatures, &user), (&attacker_signatures, &attacker)] {
        let reveal = client.share_params(&token, user_id, signatures);
        for answer in client.reveal(&[1, 2, 3, 4, 5], &reveal).await {
            assert!(answer.as_ref().map_or(true, |a| open(a, temp).is_none()), "{answer:?}");
            assert!(data_of(&answer).contains("4 needed"), "{answer:?}");
        }
    }

    let fresh = client.mint(user_id).await;
    let login = torus_js(network, &client.verifier, user_id, Some(&fresh)).expect("the user logs in with a new token");
    assert_eq!(login["login"]["ethAddress"], address.as_str());
}

/// Attack 2: a front-runner replays the user's reveal to the nodes the
/// user had not reached yet. It gets shares encrypted to the user's key
/// only; the user's own requests to those nodes are answered too.
async fn front_runner_replays_the_reveal(client: &Client, network: &Path) {
    let user_id = "front-2@example.com";
    let lookup = torus_js(network, &client.verifier, user_id, None).expect("KeyAssign through torus.js");
    let address = lookup["lookup"]["address"].as_str().unwrap().to_owned();
    let token = client.mint(user_id).await;
    let (user, attacker) = (TempKey::new(), TempKey::new());
    let signatures = client.commit(&[1, 2, 3, 4, 5], &token, &user).await;
    assert!(signatures.iter().all(Result::is_ok));
    let reveal = client.share_params(&token, user_id, &signatures);
    let first = client.reveal(&[1, 2, 3], &reveal).await;
    let replayed = client.reveal(&[4, 5], &reveal).await;
    for answer in &replayed {
        let answer = answer.as_ref().expect("the replay is answered");
        assert!(open(answer, &attacker).is_none(), "the replayed share must not open with the front-runner's key");
    }
    // Its own key cannot be bound anywhere now.
    for refused in client.commit(&[1, 2, 3, 4, 5], &token, &attacker).await {
        assert!(data_of(&refused).contains("Duplicate token found"));
    }
    // The user's own requests to nodes 4 and 5 are the same login.
    let late = client.reveal(&[4, 5], &reveal).await;
    let mut shares: Vec<(u16, Scalar)> = Vec::new();
    for (answer, node) in first.iter().chain(&late).zip([1, 2, 3, 4, 5]) {
        shares.push((node, open(answer.as_ref().unwrap(), &user).expect("opens with the user's key")));
    }
    assert_eq!(rebuild(&shares[..3]), address);
    assert_eq!(rebuild(&shares[2..]), address, "every share lies on the key's polynomial");
}

/// An aggregate verifier (one sub-verifier: the development issuer),
/// registered with the CLI: torus.js assigns the key; the commitment names
/// its sub-token (`sub_token_commitments`), and the reveal carries the
/// sub-token with `idtoken` = keccak256 of the sorted sub-tokens, as Torus'
/// customauth sends it.
async fn aggregate_login(client: &Client, network: &Path) {
    let dev = client.description.dev_issuer.as_ref().unwrap();
    let sub: Value = serde_json::from_str(&dev_verifier_config(&dev.issuer, &dev.audience)).unwrap();
    let owner = support::VerifierOwner::new(network);
    owner.submit(
        "register",
        "dev-aggregate",
        &json!({"type": "aggregate", "sub_verifiers": {"dev": sub}, "require_all": true}),
    );
    let aggregate =
        Client { description: client.description.clone(), http: client.http.clone(), verifier: "dev-aggregate".into() };
    let user_id = "dana@example.com";
    let lookup = torus_js(network, &aggregate.verifier, user_id, None).expect("KeyAssign on the aggregate verifier");
    let address = lookup["lookup"]["address"].as_str().unwrap().to_owned();
    let sub_token = client.mint(user_id).await;
    let id_token = aggregate_id_token(std::slice::from_ref(&sub_token));
    let temp = TempKey::new();
    // Without the sub-token's commitment, the commitment is refused.
    let refused = aggregate.commit(&[1], &id_token, &temp).await.remove(0);
    assert!(data_of(&refused).contains("sub_token_commitments"), "{refused:?}");
    let params = aggregate.aggregate_commitment_params(&id_token, &[&sub_token], &temp);
    let signatures = aggregate.commit_params(&[1, 2, 3, 4, 5], &params).await;
    let mut reveal = aggregate.share_params(&id_token, user_id, &signatures);
    reveal["item"][0]["verify_params"] = json!([{"verifier_id": user_id, "idtoken": sub_token}]);
    reveal["item"][0]["sub_verifier_ids"] = json!(["dev"]);
    let answers = aggregate.reveal(&[1, 2, 3], &reveal).await;
    let shares: Vec<(u16, Scalar)> = answers
        .iter()
        .zip(1..)
        .map(|(a, i)| (i, open(a.as_ref().expect("aggregate reveal"), &temp).unwrap()))
        .collect();
    assert_eq!(rebuild(&shares), address);
    // A sub-token the idtoken does not bind is refused.
    let mut unbound = reveal.clone();
    unbound["item"][0]["verify_params"][0]["idtoken"] = json!(client.mint(user_id).await);
    let refused = aggregate.reveal(&[4], &unbound).await.remove(0);
    assert!(data_of(&refused).contains("sub-tokens"), "{refused:?}");
}

/// Hostile input on every method: a precise error each time, then the node
/// still serves.
async fn hostile_input(client: &Client, devnet_dir: &Path) {
    let raw = |body: &str| body.as_bytes().to_vec();
    let expect = |answer: (u16, Value), status: u16, code: i64, text: &str| {
        assert_eq!(answer.0, status, "{}", answer.1);
        assert_eq!(answer.1["error"]["code"], code, "{}", answer.1);
        let data = answer.1["error"]["data"].as_str().unwrap();
        assert!(data.contains(text), "expected {text:?} in {data:?}");
    };
    expect(client.post(1, raw("not json")).await, 200, -32700, "not JSON");
    expect(client.post(1, raw("[]")).await, 200, -32600, "batch");
    expect(client.post(1, raw(r#"{"jsonrpc":"2.0","method":"Nope","id":1,"params":{}}"#)).await, 200, -32601, "Nope");
    expect(
        client.post(1, raw(r#"{"jsonrpc":"1.0","method":"KeyAssign","id":1,"params":{}}"#)).await,
        200,
        -32600,
        "2.0",
    );
    expect(
        client.post(1, raw(r#"{"jsonrpc":"2.0","method":"ShareRequest","id":1,"params":[]}"#)).await,
        200,
        -32602,
        "object",
    );
    expect(client.post(1, vec![b' '; 300 * 1024]).await, 413, -32600, "bytes");

    let call = |method: Method, params: Value| client.call(1, method, params);
    let lookup = |params: Value| call(Method::VerifierLookup, params);
    assert!(data_of(&lookup(json!({"verifier": 5, "verifier_id": "x"})).await).contains("must be a string"));
    assert!(data_of(&lookup(json!({"verifier": client.verifier})).await).contains("`verifier_id` is missing"));
    assert!(data_of(&lookup(json!({"verifier": "no such", "verifier_id": "x"})).await).contains("verifier name"));
    assert!(
        data_of(&lookup(json!({"verifier": "nobody", "verifier_id": "x"})).await).contains("Verifier not supported")
    );
    let unassigned = lookup(json!({"verifier": client.verifier, "verifier_id": "nobody@example.com"})).await;
    assert_eq!(
        unassigned.unwrap_err(),
        RpcError::new(-32602, "Input Error", "Verifier + VerifierID has not yet been assigned")
    );

    let assign = json!({"verifier": client.verifier, "verifier_id": "mallory@example.com"});
    assert!(data_of(&call(Method::KeyAssign, assign.clone()).await).contains("ask the signer host"));
    let forged = json!({"jsonrpc": "2.0", "method": "KeyAssign", "id": 10, "params": assign,
        "torus-timestamp": "1", "torus-nonce": "00", "torus-signature": "AAAA"});
    let (_, body) = client.post(1, forged.to_string().into_bytes()).await;
    assert!(body["error"]["data"].as_str().unwrap().contains("s old"), "{body}");

    let token = client.mint("hostile@example.com").await;
    let temp = TempKey::new();
    let mut bad = client.commitment_params(&token, &temp);
    bad["tokencommitment"] = json!("zz");
    assert!(data_of(&call(Method::Commitment, bad).await).contains("64 hex digits"));
    let mut bad = client.commitment_params(&token, &temp);
    bad["temppubx"] = json!("1");
    bad["temppuby"] = json!("1");
    assert!(data_of(&call(Method::Commitment, bad).await).contains("not a point"));
    let mut bad = client.commitment_params(&token, &temp);
    bad["messageprefix"] = json!("mug01");
    assert!(data_of(&call(Method::Commitment, bad).await).contains("mug00"));

    let share = |entries: Value| {
        json!({"encrypted": "yes", "item": [{"verifier_id": "hostile@example.com", "idtoken": token,
            "nodesignatures": entries, "verifieridentifier": client.verifier}]})
    };
    assert!(data_of(&call(Method::Share, share(json!([]))).await).contains("send CommitmentRequest"));
    let huge = share(Value::Array(vec![Value::Null; 10_000]));
    assert!(data_of(&call(Method::Share, huge).await).contains("at most 5"));
    let mut two = share(json!([]));
    two["item"] = json!([two["item"][0], two["item"][0]]);
    assert!(data_of(&call(Method::Share, two).await).contains("at most 1"));

    // Now committed at node 1; forged and misused signatures.
    let signatures = client.commit(&[1, 2, 3, 4], &token, &temp).await;
    let good: Vec<Value> = signatures.into_iter().map(Result::unwrap).collect();
    let stranger =
        quorumkey_crypto::k256::ecdsa::SigningKey::generate_from_rng(&mut quorumkey_crypto::random::os_rng());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let sign_as = |key: &quorumkey_crypto::k256::ecdsa::SigningKey, at: u64| {
        let data = good[0]["data"].as_str().unwrap();
        let data = format!("{}\u{1c}{at}", data.rsplit_once('\u{1c}').unwrap().0);
        let (x, y) = public_key_to_xy_hex(&PublicKey::from(key.verifying_key()));
        json!({"signature": RecoverableSignature::sign_keccak(key, data.as_bytes()).to_torus_hex(),
            "data": data, "nodepubx": x, "nodepuby": y})
    };
    let strangers = json!([sign_as(&stranger, now), sign_as(&stranger, now), good[0], good[1]]);
    assert!(data_of(&call(Method::Share, share(strangers)).await).contains("not a node of this network"));
    let repeated = json!([good[0], good[0], good[0], good[1]]);
    assert!(data_of(&call(Method::Share, share(repeated)).await).contains("a second signature from node"));
    let node_key = |index: u16| NodeIdentity::load(&devnet_dir.join(format!("node-{index}"))).unwrap().secp256k1;
    let stale = json!([sign_as(&node_key(1), now - 3600), sign_as(&node_key(2), now - 3600), good[2], good[3]]);
    assert!(data_of(&call(Method::Share, share(stale)).await).contains("s ago"));
    let mut broken = good.clone();
    broken[1]["signature"] = json!("xyz");
    broken[2]["nodepubx"] = json!(["not", "a", "string"]);
    assert!(data_of(&call(Method::Share, share(json!(broken))).await).contains("`signature`"));
    let wrong_user = json!({"encrypted": "yes", "item": [{"verifier_id": "someone-else@example.com", "idtoken": token,
        "nodesignatures": good, "verifieridentifier": client.verifier}]});
    assert!(data_of(&call(Method::Share, wrong_user).await).contains("another verifier_id"));
    let not_a_token = json!({"encrypted": "yes", "item": [{"verifier_id": "hostile@example.com", "idtoken": "x.y.z",
        "nodesignatures": good, "verifieridentifier": client.verifier}]});
    assert!(data_of(&call(Method::Share, not_a_token).await).contains("send CommitmentRequest"));

    // Still healthy, still serving.
    let health = client.http.get(format!("{}/health", client.description.nodes[0].api)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let still = lookup(json!({"verifier": client.verifier, "verifier_id": "alice@example.com"})).await;
    assert!(still.is_ok(), "{still:?}");
}

/// The per-verifier login limit (20/s here) and the per-IP limit answer
/// 429 with a JSON-RPC error and Retry-After.
async fn rate_limits(client: &Client) {
    let temp = TempKey::new();
    let bodies: Vec<Vec<u8>> = (0..80)
        .map(|i| {
            request_body(Method::Commitment, client.commitment_params(&format!("rate-{i}"), &temp))
                .to_string()
                .into_bytes()
        })
        .collect();
    let answers = futures::future::join_all(bodies.into_iter().map(|body| client.post(2, body))).await;
    let limited: Vec<_> = answers.iter().filter(|(status, _)| *status == 429).collect();
    assert!(!limited.is_empty(), "80 commitments at once for one verifier exceed 20/s with a burst of 40");
    assert!(limited[0].1["error"]["data"].as_str().unwrap().contains("for verifier"));

    let lookup =
        request_body(Method::VerifierLookup, json!({"verifier": client.verifier, "verifier_id": "x@example.com"}));
    // 64 at a time: one address may hold 128 connections to a node.
    let answers: Vec<_> = futures::stream::iter(0..600)
        .map(|_| client.post(3, lookup.to_string().into_bytes()))
        .buffer_unordered(64)
        .collect()
        .await;
    let limited: Vec<_> = answers.iter().filter(|(status, _)| *status == 429).collect();
    assert!(!limited.is_empty(), "600 requests in quick succession from one address exceed 100/s with a burst of 200");
    assert!(limited[0].1["error"]["data"].as_str().unwrap().contains("too many requests from"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, _) = client.post(3, lookup.to_string().into_bytes()).await;
    assert_eq!(status, 200, "the limit lets the client back in");
}
