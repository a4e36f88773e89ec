//! Epochs on five real node processes: the operators refresh every share
//! (a proposal for the same node set, signed by 3 of 5 operators with the
//! `quorumkey network epoch` commands) while the Rust client and torus.js
//! 8.0.1 keep logging users in. Afterwards every public key is what it
//! was, every public share changed, every user gets the same private key,
//! no login failed, and node 5, which was stopped across two DKG batches
//! and got its shares of them back as it caught up, holds a new share of
//! every key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use quorumkey_client::{ClientOptions, QuorumkeyClient};
use quorumkey_devnet::supervisor::{Devnet, NetworkJson};
use quorumkey_login::node_api::KeyResponse;
use quorumkey_node::config::{HttpSettings, NetworkDkg, RpcSettings};
use support::torusjs::{install, torus_js};
use support::{devnet_options, mint, small_dkg, start_devnet};

const NODES: u16 = 5;
const USERS: usize = 12;

fn user(i: usize) -> String {
    format!("epoch-{i}@example.com")
}

fn quorumkey(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_quorumkey")).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "quorumkey {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn keys(devnet: &Devnet, node: u16) -> BTreeMap<u64, KeyResponse> {
    let client = devnet.client(node).unwrap();
    let total = client.status().await.unwrap().total_keys;
    let http = reqwest::Client::new();
    let mut out = BTreeMap::new();
    for index in 0..total {
        let url = format!("{}/v1/keys/{index}", client.base());
        let key: KeyResponse = http.get(&url).send().await.unwrap().json().await.unwrap();
        out.insert(index, key);
    }
    out
}

/// Waits until every node runs epoch `epoch` with its shares and holds a
/// share of every key.
async fn every_node_in(devnet: &Devnet, epoch: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    for node in 1..=NODES {
        let client = devnet.client(node).unwrap();
        loop {
            let status = client.status().await;
            if let Ok(status) = &status
                && status.epoch == epoch
                && status.share_epoch == epoch
                && status.key_shares == status.total_keys
            {
                break;
            }
            assert!(Instant::now() < deadline, "node {node} is not in epoch {epoch} with every share: {status:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Logins of the users, in a loop, until `stop`; returns (ok, failures).
async fn login_loop(
    client: Arc<QuorumkeyClient>,
    network: NetworkJson,
    verifier: String,
    expected: Arc<BTreeMap<String, [u8; 32]>>,
    stop: Arc<AtomicBool>,
) -> (usize, Vec<String>) {
    let (mut ok, mut failures) = (0, Vec::new());
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let user = user(i % USERS);
        i += 1;
        let token = mint(&network, &user).await;
        match client.login(&verifier, &user, &token).await {
            Ok(login) if *login.private_key == expected[&user] => ok += 1,
            Ok(_) => failures.push(format!("{user}: another private key")),
            Err(error) => failures.push(format!("{user}: {error}")),
        }
    }
    (ok, failures)
}

fn torus_login(network_file: &Path, verifier: &str, user: &str, token: &str) -> String {
    let answer = torus_js(network_file, verifier, user, Some(token)).expect("torus.js login");
    assert_eq!(answer["login"]["ethAddress"], answer["lookup"]["address"]);
    answer["login"]["privKey"].as_str().unwrap().to_owned()
}

#[test]
fn a_refresh_changes_every_share_and_no_key_while_users_log_in() {
    install();
    let dir = tempfile::tempdir().unwrap();
    // Short DKG phases (a stopped node makes every phase wait for its
    // deadline) and epoch boundaries every 8 blocks.
    let dkg = NetworkDkg {
        phase_min_blocks: Some(3),
        phase_min_ms: Some(1_000),
        epoch_boundary_blocks: Some(8),
        ..small_dkg()
    };
    let mut options = devnet_options(dir.path(), NODES, dkg);
    options.rpc = RpcSettings::unlimited();
    options.http = HttpSettings::one_address_load();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (mut devnet, network) = start_devnet(&options, 64).await;
        let network_file = devnet.write_network_json().unwrap();
        let client = Arc::new(QuorumkeyClient::new(network.clone(), ClientOptions::default()).unwrap());
        let verifier = network.dev_issuer.as_ref().unwrap().verifier.clone();

        // Node 5 is stopped while the pool is used up and refilled: it
        // misses the DKG batches that make the new keys.
        assert!(devnet.stop_node(5, Duration::from_secs(10)).await);
        for i in 0..USERS {
            client.lookup_or_assign(&verifier, &user(i)).await.unwrap();
        }
        let api = devnet.client(1).unwrap();
        let made = api.status().await.unwrap().total_keys;
        let mut filler = 0;
        loop {
            let status = api.status().await.unwrap();
            if status.total_keys >= made + 64 && status.height > 80 && status.pending_assignments == 0 {
                break;
            }
            client.lookup_or_assign(&verifier, &format!("filler-{filler}@example.com")).await.unwrap();
            filler += 1;
            assert!(filler < 400, "the DKG did not make two more batches: {status:?}");
        }
        // More blocks, so that the last batch's dealings are pruned too.
        let height = api.status().await.unwrap().height;
        while api.status().await.unwrap().height < height + 66 {
            client.lookup_or_assign(&verifier, &format!("filler-{filler}@example.com")).await.unwrap();
            filler += 1;
        }
        devnet.start_node(5).unwrap();
        let five = devnet.client(5).unwrap();
        let target = api.status().await.unwrap().height;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !five.status().await.is_ok_and(|s| s.height >= target) {
            assert!(Instant::now() < deadline, "node 5 did not catch up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Catching up, it applies the blocks it missed one by one and
        // recovers its shares of each batch from the dealings the state
        // still held at that height: it gets every share back.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = five.status().await.unwrap();
            if status.key_shares == status.total_keys {
                break;
            }
            assert!(Instant::now() < deadline, "node 5 did not get its shares back: {status:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // Every user's key before the refresh, from the Rust client and
        // from torus.js.
        let mut expected = BTreeMap::new();
        for i in 0..USERS {
            let login = client.login(&verifier, &user(i), &mint(&network, &user(i)).await).await.unwrap();
            expected.insert(user(i), *login.private_key);
        }
        let torus_before = torus_login(&network_file, &verifier, &user(0), &mint(&network, &user(0)).await);
        assert_eq!(torus_before, hex::encode(expected[&user(0)]));
        let before = keys(&devnet, 1).await;
        let expected = Arc::new(expected);

        // Logins go on from here to the end.
        let stop = Arc::new(AtomicBool::new(false));
        let load =
            tokio::spawn(login_loop(client.clone(), network.clone(), verifier.clone(), expected.clone(), stop.clone()));

        // The refresh: a proposal for the same set, signed by 3 of the 5
        // operators, submitted to node 2.
        let node_url = api.base().to_owned();
        let proposal = dir.path().join("proposal.toml");
        let devnet_dir = devnet.dir().to_owned();
        let printed = quorumkey(&[
            "network",
            "epoch",
            "propose",
            "--node",
            &node_url,
            "--network-file",
            devnet_dir.join("network.toml").to_str().unwrap(),
            "--out",
            proposal.to_str().unwrap(),
        ]);
        assert!(printed.contains("epoch 1 proposed: 5 nodes (threshold 3)"), "{printed}");
        let mut signatures = Vec::new();
        for node in 1..=3 {
            let config = devnet_dir.join(format!("node-{node}")).join("node.toml");
            let signature = quorumkey(&[
                "network",
                "epoch",
                "sign",
                "--node-config",
                config.to_str().unwrap(),
                "--proposal",
                proposal.to_str().unwrap(),
                "--node",
                &node_url,
            ]);
            signatures.push(signature.trim().to_owned());
        }
        // Two signatures are not enough.
        let two = Command::new(env!("CARGO_BIN_EXE_quorumkey"))
            .args(["network", "epoch", "submit", "--proposal", proposal.to_str().unwrap(), "--node", &node_url])
            .args(signatures[..2].iter().flat_map(|s| ["--signature", s.as_str()]))
            .output()
            .unwrap();
        assert!(!two.status.success());
        let error = String::from_utf8_lossy(&two.stderr);
        assert!(error.contains("fewer than 2f + 1 operators signed"), "{error}");
        let node_two = devnet.client(2).unwrap().base().to_owned();
        let mut submit =
            vec!["network", "epoch", "submit", "--proposal", proposal.to_str().unwrap(), "--node", &node_two];
        for signature in &signatures {
            submit.extend(["--signature", signature.as_str()]);
        }
        let printed = quorumkey(&submit);
        assert!(printed.contains("epoch 1 decided"), "{printed}");
        // A torus.js login during the handover.
        let during = torus_login(&network_file, &verifier, &user(1), &mint(&network, &user(1)).await);
        assert_eq!(during, hex::encode(expected[&user(1)]));
        // `show --watch` follows the handover to its end.
        let watched = quorumkey(&["network", "epoch", "show", "--watch", "--node", &node_url]);
        assert!(watched.contains("epoch 1 in force"), "{watched}");
        every_node_in(&devnet, 1, Duration::from_secs(120)).await;

        // A few more logins on the new shares, then the load stops.
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let (ok, failures) = load.await.unwrap();
        assert!(
            failures.is_empty(),
            "{} of {} logins failed, e.g. {:?}",
            failures.len(),
            ok + failures.len(),
            failures.first()
        );
        assert!(ok >= USERS, "only {ok} logins ran during the refresh");

        // Every public key is unchanged and every public share changed,
        // as every node records them.
        for node in 1..=NODES {
            let after = keys(&devnet, node).await;
            assert_eq!(after.len(), before.len(), "node {node}");
            for (index, old) in &before {
                let new = &after[index];
                assert_eq!(new.public_key, old.public_key, "key {index}'s public key (node {node})");
                for (j, (a, b)) in old.public_shares.iter().zip(&new.public_shares).enumerate() {
                    assert_ne!(a, b, "key {index}: node {}'s public share did not change", j + 1);
                }
            }
        }
        // Users get their keys, from a fresh client and from torus.js.
        let fresh = QuorumkeyClient::new(network.clone(), ClientOptions::default()).unwrap();
        for i in 0..USERS {
            let login = fresh.login(&verifier, &user(i), &mint(&network, &user(i)).await).await.unwrap();
            assert_eq!(*login.private_key, expected[&user(i)], "{}", user(i));
        }
        let after = torus_login(&network_file, &verifier, &user(2), &mint(&network, &user(2)).await);
        assert_eq!(after, hex::encode(expected[&user(2)]));
        let shown = quorumkey(&["network", "epoch", "show", "--node", &node_url]);
        assert!(shown.starts_with("epoch 1 at height"), "{shown}");
        assert!(shown.contains("no handover under way"), "{shown}");

        devnet.stop().await;
    });
}
