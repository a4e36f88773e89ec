//! What operators and clients of a running network do, on five real node
//! processes (a devnet on 127.0.0.1):
//!
//! - every node serves the network's description at `GET /v1/network`,
//!   with the genesis and its own attestation;
//! - `quorumkey network client-config` finds the network from one URL, with
//!   a node down too, and refuses what an attacker at the first URL can
//!   serve: the real description with its addresses changed (the
//!   attestation breaks, and no real node attests it), and a whole made-up
//!   network (accepted only without `--network-id`, which is why the id
//!   must be compared);
//! - a rolling restart (each node in turn stopped with SIGTERM, started,
//!   and waited for until it has caught up) while users keep logging in:
//!   no login fails, and every node ends with the same state root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::routing::get;
use quorumkey_client::{ClientOptions, QuorumkeyClient};
use quorumkey_devnet::supervisor::{Devnet, NETWORK_JSON};
use quorumkey_login::network::NetworkJson;
use quorumkey_node::config::{InitOptions, RpcSettings, init_network};
use quorumkey_node::identity::NodeIdentity;
use support::{devnet_options, mint, small_dkg, start_devnet};

const NODES: u16 = 5;

fn quorumkey(args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_quorumkey")).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A listener for an attacker's server on 127.0.0.1, and its base URL.
async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

/// An attacker's HTTP server: `/v1/network` answers `bootstrap`,
/// `/{name}/v1/network` answers `pages[name]`.
fn serve(listener: tokio::net::TcpListener, bootstrap: String, pages: HashMap<String, String>) {
    let app = axum::Router::new()
        .route("/v1/network", get(move || async move { bootstrap }))
        .route(
            "/{name}/v1/network",
            get(|State(pages): State<Arc<HashMap<String, String>>>, UrlPath(name): UrlPath<String>| async move {
                pages.get(&name).cloned().unwrap_or_default()
            }),
        )
        .with_state(Arc::new(pages));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

/// The attacker's own three-node network, at `base/n1` ... `base/n3`, each
/// description attested by the node it names: consistent in every way but
/// its id.
fn made_up_network(dir: &std::path::Path, base: &str) -> HashMap<String, String> {
    let options = InitOptions {
        nodes: 3,
        p2p_base_port: 1000,
        rpc_base_port: 2000,
        verifiers: vec![],
        dkg: Default::default(),
        policy: Default::default(),
        rpc: RpcSettings { allow_unsigned_key_assign: true, ..Default::default() },
        providers: Default::default(),
        http: Default::default(),
    };
    let mut network = init_network(dir, &options).unwrap();
    for node in &mut network.nodes {
        node.rpc_url = format!("{base}/n{}", node.index).parse().unwrap();
    }
    let description = network.client_description().unwrap();
    (1..=3u16)
        .map(|index| {
            let identity = NodeIdentity::load(&dir.join(format!("node-{index}"))).unwrap();
            let mut attested = description.clone();
            attested.attest(index, &identity.secp256k1).unwrap();
            (format!("n{index}"), serde_json::to_string(&attested).unwrap())
        })
        .collect()
}

async fn client_config_checks(devnet: &mut Devnet, description: &NetworkJson, work: &std::path::Path) {
    let http = reqwest::Client::new();
    // Every node serves the description, attested by itself.
    for node in &description.nodes {
        let served: NetworkJson =
            http.get(format!("{}/v1/network", node.api)).send().await.unwrap().json().await.unwrap();
        assert_eq!(served.attested_by(), Ok(node.index));
        assert!(served.same_as(description).unwrap(), "node {} describes another network", node.index);
        let genesis = served.checked_genesis().unwrap();
        assert_eq!(hex::encode(genesis.network_id()), description.network_id);
        assert!(served.nodes.iter().all(|node| node.log.is_none()), "no devnet-only field is served");
    }
    let id = description.network_id.as_str();

    // From one node's URL, to standard output; then with a node down.
    let (ok, stdout, stderr) =
        quorumkey(&["network", "client-config", "--node", &description.nodes[1].api, "--network-id", id]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("attested by nodes 1, 2, 3, 4, 5 (threshold 3 of 5)"), "{stderr}");
    let found = NetworkJson::parse(&stdout).unwrap();
    assert!(found.same_as(description).unwrap());
    assert!(found.attestation.is_none() && found.dev_issuer.is_none());
    devnet.kill_node(5).await;
    let out = work.join("found.json");
    let (ok, stdout, stderr) =
        quorumkey(&["network", "client-config", "--node", &description.nodes[0].api, "--out", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("attested by nodes 1, 2, 3, 4 (threshold 3 of 5)"), "{stdout}");
    assert!(stdout.contains("node 5 did not:"), "{stdout}");
    assert!(stdout.contains("compare it with the id the operators publish"), "{stdout}");
    let (ok, _, stderr) =
        quorumkey(&["network", "client-config", "--node", &description.nodes[0].api, "--out", out.to_str().unwrap()]);
    assert!(!ok && stderr.contains("exists"), "an existing file is not overwritten: {stderr}");
    devnet.start_node(5).unwrap();

    // An attacker at the first URL serves the real description with every
    // address its own: the attestation no longer verifies.
    let real = http.get(format!("{}/v1/network", description.nodes[0].api)).send().await.unwrap().text().await;
    let mut moved: NetworkJson = serde_json::from_str(&real.unwrap()).unwrap();
    let (listener, attacker) = bind().await;
    for node in &mut moved.nodes {
        node.api = format!("{attacker}/n{}", node.index);
        node.endpoint = format!("{}/jrpc", node.api);
    }
    let pages: HashMap<String, String> =
        (1..=NODES).map(|index| (format!("n{index}"), serde_json::to_string(&moved).unwrap())).collect();
    serve(listener, serde_json::to_string(&moved).unwrap(), pages);
    let (ok, _, stderr) = quorumkey(&["network", "client-config", "--node", &attacker, "--network-id", id]);
    assert!(!ok, "a description with changed addresses was accepted");
    assert!(stderr.contains("does not verify"), "{stderr}");

    // A whole network of the attacker's own, consistent and attested by
    // its own keys at its own addresses: only the network id tells.
    let (listener, served) = bind().await;
    let pages = made_up_network(&work.join("made-up"), &served);
    serve(listener, pages["n1"].clone(), pages);
    let (ok, stdout, stderr) = quorumkey(&["network", "client-config", "--node", &served]);
    assert!(ok, "{stderr}");
    let fake = NetworkJson::parse(&stdout).unwrap();
    assert_ne!(fake.network_id, description.network_id);
    assert!(stderr.contains("compare it with the id the operators publish"), "{stderr}");
    let (ok, _, stderr) = quorumkey(&["network", "client-config", "--node", &served, "--network-id", id]);
    assert!(!ok, "a made-up network passed for the real one");
    assert!(stderr.contains(&format!("not the {id}")), "{stderr}");
}

/// Node `index`'s `/health`, if it answers.
async fn health(http: &reqwest::Client, description: &NetworkJson, index: u16) -> Option<serde_json::Value> {
    let node = &description.nodes[usize::from(index) - 1];
    http.get(format!("{}/health", node.api)).send().await.ok()?.json().await.ok()
}

async fn rolling_restart(devnet: &mut Devnet, description: &NetworkJson) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let network = devnet.dir().join(NETWORK_JSON);
    let options = ClientOptions { request_timeout: Duration::from_secs(5), ..ClientOptions::default() };
    let client = Arc::new(QuorumkeyClient::from_file(&network, options).unwrap());
    let verifier = description.dev_issuer.as_ref().unwrap().verifier.clone();

    // Users keep logging in (a new user every round, then an old one)
    // until the restart is over.
    let done = Arc::new(AtomicBool::new(false));
    let logins = Arc::new(AtomicU64::new(0));
    let users = {
        let (client, done, logins, description) = (client.clone(), done.clone(), logins.clone(), description.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut round = 0u64;
            while !done.load(Ordering::SeqCst) {
                round += 1;
                let email = format!("rolling-{}@example.com", round % 7);
                let token = mint(&description, &email).await;
                match client.lookup_or_assign(&verifier, &email).await {
                    Ok((key, _)) => match client.login(&verifier, &email, &token).await {
                        Ok(login) if login.key.address == key.address => {
                            logins.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(_) => failures.push(format!("{email}: another key")),
                        Err(e) => failures.push(format!("{email}: login: {e}")),
                    },
                    Err(e) => failures.push(format!("{email}: lookup: {e}")),
                }
            }
            failures
        })
    };

    for index in 1..=NODES {
        let started = Instant::now();
        let before = logins.load(Ordering::SeqCst);
        assert!(devnet.stop_node(index, Duration::from_secs(20)).await, "node {index} did not stop on SIGTERM");
        // Logins go on while it is down.
        let deadline = Instant::now() + Duration::from_secs(60);
        while logins.load(Ordering::SeqCst) < before + 2 {
            assert!(Instant::now() < deadline, "no login while node {index} was down");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        devnet.start_node(index).unwrap();
        // The next node only once this one is back: healthy, hearing a
        // quorum, caught up with the others.
        let others = if index == 1 { 2 } else { 1 };
        let target = health(&http, description, others).await.unwrap()["height"].as_u64().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let answer = health(&http, description, index).await;
            let back = answer.as_ref().is_some_and(|h| {
                h["status"] == "ok"
                    && h["height"].as_u64() >= Some(target)
                    && matches!(
                        (h["peers"]["heard"].as_u64(), h["peers"]["needed"].as_u64()),
                        (Some(heard), Some(needed)) if heard >= needed
                    )
            });
            if back {
                break;
            }
            assert!(Instant::now() < deadline, "node {index} did not catch up after its restart: {answer:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("node {index}: stopped, restarted and caught up in {:?}", started.elapsed());
    }
    done.store(true, Ordering::SeqCst);
    let failures = users.await.unwrap();
    assert!(failures.is_empty(), "logins failed during the rolling restart: {failures:#?}");
    let total = logins.load(Ordering::SeqCst);
    assert!(total >= 10, "too few logins to tell: {total}");
    eprintln!("rolling restart of {NODES} nodes: {total} logins, none failed");

    // Every node ends with the same state at a common height.
    let status = devnet.client(1).unwrap().status().await.unwrap();
    let height = status.height;
    let mut roots = Vec::new();
    for index in 1..=NODES {
        let client = devnet.client(index).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let root = loop {
            match client.state_root(height).await {
                Ok(root) => break root.state_root,
                Err(e) => {
                    assert!(Instant::now() < deadline, "node {index} has no root at {height}: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        roots.push(root);
    }
    assert!(roots.windows(2).all(|pair| pair[0] == pair[1]), "state roots differ at {height}: {roots:?}");
}

#[test]
fn clients_find_the_network_and_a_rolling_restart_loses_no_login() {
    let dir = tempfile::tempdir().unwrap();
    let options = devnet_options(dir.path(), NODES, small_dkg());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (mut devnet, description) = start_devnet(&options, 32).await;
        client_config_checks(&mut devnet, &description, dir.path()).await;
        rolling_restart(&mut devnet, &description).await;
        devnet.stop().await;
    });
}
