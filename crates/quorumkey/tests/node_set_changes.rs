//! Node-set changes on real processes, through the `quorumkey devnet`
//! command and `quorumkey devnet-node add|remove`: a devnet of five nodes
//! whose pool holds keys of 1,000 users (a), replaces node 5 by a new node
//! 6 (one proposal), then (b) grows to six nodes with a new node 7, while
//! the Rust client logs users in without a pause (following `network.json`
//! as the devnet rewrites it) and torus.js 8.0.1 logs users in before,
//! during and after each change. (torus.js 8.0.1 reveals with ⌊n/4⌋·3 + 1
//! commitment answers: on six nodes that is 4, short of the nodes' reveal
//! quorum of 5, so there its login is expected to be refused, with that
//! reason; on five it logs in.) Afterwards: no login failed, each user
//! always got the same private key, every public key is what it was, every
//! node of the new set holds a share of every key (its `/v1/status`), the
//! removed node holds none, a second change is refused while a handover
//! runs, and a devnet started again on the directory starts the added
//! nodes and not the removed one. At the end, every share in the stores of
//! the final set's nodes, read with their key-encryption keys, matches its
//! public share, and the removed node's store holds no share.
//!
//! About three minutes in a debug build on two cores (187 s in its last
//! run), a third of it the 64 blocks the ledger waits after an epoch
//! began before it takes the next proposal; so it is not gated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use quorumkey_client::node_api_client::NodeApiClient;
use quorumkey_client::{ClientOptions, QuorumkeyClient};
use quorumkey_devnet::control_socket::{NodeChange, NodeReport, NodeState};
use quorumkey_devnet::supervisor::{NETWORK_JSON, NetworkJson, prepare_network};
use quorumkey_login::node_api::KeyResponse;
use quorumkey_node::config::{HttpSettings, NETWORK_FILE, NetworkDkg, NetworkFile, NetworkPolicyFile, RpcSettings};
use rustix::process::Signal;
use support::supervisor::Supervisor;
use support::torusjs::{install, torus_js};
use support::{devnet_options, mint};

const NODES: u16 = 5;
/// Users assigned a key before the changes.
const USERS: usize = 1_000;
/// Of them, those who log in throughout (their private keys known).
const LOGIN_USERS: usize = 16;
/// Keys per DKG batch, and per reshare batch of a handover.
const BATCH_KEYS: u16 = 64;

fn user(i: usize) -> String {
    format!("member-{i}@example.com")
}

/// `quorumkey ARGS`: success, stdout, stderr.
fn quorumkey(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_quorumkey")).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `quorumkey devnet-node status --json`.
fn status(dir: &str) -> Vec<NodeReport> {
    let (ok, out, err) = quorumkey(&["devnet-node", "status", "--json", "--dir", dir]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn read_network(dir: &Path) -> NetworkJson {
    NetworkJson::parse(&std::fs::read_to_string(dir.join(NETWORK_JSON)).unwrap()).unwrap()
}

/// Every key's public data as the node at `api` holds it, by index.
async fn keys(api: &str) -> BTreeMap<u64, KeyResponse> {
    let total = NodeApiClient::new(api.to_owned()).status().await.unwrap().total_keys;
    let http = reqwest::Client::new();
    futures::stream::iter(0..total)
        .map(|index| {
            let (http, url) = (http.clone(), format!("{api}/v1/keys/{index}"));
            async move { (index, http.get(&url).send().await.unwrap().json::<KeyResponse>().await.unwrap()) }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Logs the users in, one after the other, until `stop`, with a client of
/// the network `network.json` describes (made again whenever the devnet
/// rewrites it): (logins, failures).
async fn login_loop(
    dir: PathBuf,
    verifier: String,
    expected: Arc<BTreeMap<String, [u8; 32]>>,
    stop: Arc<AtomicBool>,
    started: Instant,
) -> (usize, Vec<String>) {
    let (mut ok, mut failures) = (0, Vec::new());
    let mut current: Option<(String, QuorumkeyClient, NetworkJson)> = None;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let text = std::fs::read_to_string(dir.join(NETWORK_JSON)).unwrap();
        if current.as_ref().is_none_or(|(known, _, _)| *known != text) {
            let network = NetworkJson::parse(&text).unwrap();
            let client = QuorumkeyClient::new(network.clone(), ClientOptions::default()).unwrap();
            current = Some((text, client, network));
        }
        let Some((_, client, network)) = &current else { continue };
        let user = user(i % LOGIN_USERS);
        i += 1;
        let token = mint(network, &user).await;
        let at = format!("{:.1} s, {} nodes", started.elapsed().as_secs_f64(), network.nodes.len());
        match client.login(&verifier, &user, &token).await {
            Ok(login) if *login.private_key == expected[&user] => ok += 1,
            Ok(_) => failures.push(format!("{user} ({at}): another private key")),
            Err(error) => failures.push(format!("{user} ({at}): {error}")),
        }
    }
    (ok, failures)
}

/// Logins that failed or gave another key, reported together at the end
/// (so that everything else is checked first).
#[derive(Default)]
struct LoginFailures(Vec<String>);

impl LoginFailures {
    /// A torus.js 8.0.1 login of `user` (whose key is `expected`) with the
    /// devnet's current `network.json`, `when`.
    async fn torus(&mut self, dir: &Path, verifier: &str, user: &str, expected: &[u8; 32], when: &str) {
        let network = read_network(dir);
        let token = mint(&network, user).await;
        let (file, verifier_name, user_id) = (dir.join(NETWORK_JSON), verifier.to_owned(), user.to_owned());
        let answer =
            tokio::task::spawn_blocking(move || torus_js(&file, &verifier_name, &user_id, Some(&token))).await.unwrap();
        let nodes = network.nodes.len();
        // torus.js 8.0.1 reveals once ⌊n/4⌋·3 + 1 commitment answers came,
        // with those; the nodes need ⌈(n + t)/2⌉ (docs/api.md, "The reveal
        // quorum"). For n ≡ 2 or 3 (mod 4) that is fewer, and the nodes
        // refuse the reveal unless more answers happened to arrive first:
        // the refusal, and only it, is what is expected then.
        let waits_for = nodes / 4 * 3 + 1;
        let short = waits_for < quorumkey_login::required_signatures(nodes, nodes / 2 + 1);
        match answer {
            Ok(answer) => {
                assert_eq!(answer["login"]["ethAddress"], answer["lookup"]["address"]);
                if answer["login"]["privKey"].as_str() != Some(hex::encode(expected).as_str()) {
                    self.0.push(format!("torus.js {when}, {user} ({nodes} nodes): another private key"));
                }
            }
            Err(error) if short && error.contains("usable node signatures on this commitment and temporary key") => {
                eprintln!(
                    "torus.js {when}, {user} ({nodes} nodes): refused as expected (it reveals with {waits_for} commitment answers): {error}"
                );
            }
            Err(error) => self.0.push(format!("torus.js {when}, {user} ({nodes} nodes): {error}")),
        }
    }
}

/// Waits until the devnet reports no change under way (`limit`).
fn wait_for_change_end(dir: &str, limit: Duration) -> Vec<NodeReport> {
    let deadline = Instant::now() + limit;
    loop {
        let nodes = status(dir);
        if nodes.iter().all(|node| node.change.is_none()) {
            return nodes;
        }
        assert!(Instant::now() < deadline, "the change did not end within {limit:?}: {nodes:#?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The checks after a change to epoch `epoch`: `network.json` lists the
/// nodes `numbers` (devnet numbers, in index order); each of them has the
/// epoch in force with its shares of every key; every public key is the
/// one in `before`. Returns every key as node 1 holds it now.
async fn check_new_set(
    dir: &Path,
    reports: &[NodeReport],
    epoch: u64,
    numbers: &[u16],
    before: &BTreeMap<u64, KeyResponse>,
) -> BTreeMap<u64, KeyResponse> {
    let network = read_network(dir);
    assert_eq!(network.nodes.len(), numbers.len(), "{network:#?}");
    assert_eq!(network.threshold, numbers.len() / 2 + 1);
    for (position, (node, number)) in network.nodes.iter().zip(numbers).enumerate() {
        assert_eq!(usize::from(node.index), position + 1);
        let report = &reports[usize::from(*number) - 1];
        assert_eq!(node.api, report.rpc_url, "index {} is node {number}", node.index);
        assert!(node.log.as_deref().is_some_and(|log| log.ends_with(&format!("node-{number}/node.log"))));
    }
    let mut first = None;
    for (node, number) in network.nodes.iter().zip(numbers) {
        let client = NodeApiClient::new(node.api.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = client.status().await.unwrap();
            if status.epoch == epoch && status.share_epoch == epoch && status.key_shares == status.total_keys {
                break;
            }
            assert!(Instant::now() < deadline, "node {number} lacks shares of epoch {epoch}: {status:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let now = keys(&node.api).await;
        assert_eq!(now.len(), before.len(), "node {number}: keys");
        for (index, old) in before {
            let new = &now[index];
            assert_eq!(new.public_key, old.public_key, "key {index}'s public key (node {number})");
            assert_eq!(new.public_shares.len(), numbers.len(), "key {index}: one public share per node");
        }
        if first.is_none() {
            first = Some(now);
        } else {
            assert_eq!(first.as_ref(), Some(&now), "node {number} records other public shares than node 1");
        }
    }
    first.unwrap()
}

#[test]
fn nodes_are_replaced_and_added_while_users_log_in() {
    install();
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    // Small batches; the pool is filled once, above the users' keys, and
    // not refilled (so that no DKG batch delays a handover); epoch
    // boundaries every 8 blocks.
    let pool = (USERS as u32).div_ceil(u32::from(BATCH_KEYS)) * u32::from(BATCH_KEYS) + u32::from(BATCH_KEYS);
    let dkg = NetworkDkg {
        batch_keys: Some(BATCH_KEYS),
        pool_target: Some(pool),
        low_water: Some(32),
        epoch_boundary_blocks: Some(8),
        ..NetworkDkg::default()
    };
    let mut options = devnet_options(work.path(), NODES, dkg);
    options.rpc = RpcSettings::unlimited();
    options.http = HttpSettings::one_address_load();
    options.policy = NetworkPolicyFile {
        assignments_per_verifier: Some(100_000),
        assignments_per_node: Some(100_000),
        assignments_per_window: Some(100_000),
        ..NetworkPolicyFile::default()
    };
    prepare_network(&options).unwrap();
    let devnet_dir = options.dir.clone();
    let dir = devnet_dir.to_str().unwrap().to_owned();
    let mut supervisor = Supervisor::start(&devnet_dir, NODES, work.path(), "devnet");
    supervisor.wait_ready(Duration::from_secs(120));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let phase = |what: &str| eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());

    let (final_keys, mut failed) = runtime.block_on(async {
        let network = read_network(&devnet_dir);
        let verifier = network.dev_issuer.as_ref().unwrap().verifier.clone();
        let client = Arc::new(QuorumkeyClient::new(network.clone(), ClientOptions::default()).unwrap());
        let api = NodeApiClient::new(network.nodes[0].api.clone());
        let deadline = Instant::now() + Duration::from_secs(600);
        while !api.status().await.is_ok_and(|status| status.ready_keys >= u64::from(pool)) {
            assert!(Instant::now() < deadline, "the pool did not fill: {:?}", api.status().await);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        phase(&format!("pool of {pool} keys ready"));

        // 1,000 users, 32 assignments at a time.
        let assigned: Vec<_> = futures::stream::iter(0..USERS)
            .map(|i| {
                let (client, verifier) = (client.clone(), verifier.clone());
                async move { client.lookup_or_assign(&verifier, &user(i)).await.map(|(key, _)| key) }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let failed: Vec<_> = assigned.iter().filter_map(|result| result.as_ref().err()).collect();
        assert!(failed.is_empty(), "{} assignments failed, e.g. {}", failed.len(), failed[0]);
        phase("1,000 users assigned");

        let mut expected = BTreeMap::new();
        for i in 0..LOGIN_USERS {
            let login = client.login(&verifier, &user(i), &mint(&network, &user(i)).await).await.unwrap();
            expected.insert(user(i), *login.private_key);
        }
        let expected = Arc::new(expected);
        let mut failed = LoginFailures::default();
        failed.torus(&devnet_dir, &verifier, &user(0), &expected[&user(0)], "before the changes").await;
        assert!(failed.0.is_empty(), "{:?}", failed.0);
        let genesis_keys = keys(&network.nodes[0].api).await;
        assert_eq!(genesis_keys.len() as u64, u64::from(pool));
        phase("logins before the changes");

        let stop = Arc::new(AtomicBool::new(false));
        let load =
            tokio::spawn(login_loop(devnet_dir.clone(), verifier.clone(), expected.clone(), stop.clone(), started));

        // (a) Node 6 replaces node 5: one proposal.
        let (ok, out, err) = quorumkey(&["devnet-node", "add", "--replace", "5", "--dir", &dir]);
        assert!(ok, "{err}");
        assert!(
            out.contains("epoch 1 decided at height ")
                && out.contains("5 nodes, node 6 joins as index 5, node 5 leaves"),
            "{out}"
        );
        assert!(out.contains("node 6 started (pid "), "{out}");
        // One change at a time.
        let (ok, _, err) = quorumkey(&["devnet-node", "add", "--dir", &dir]);
        assert!(!ok && err.contains("is under way; one change at a time"), "{err}");
        let (ok, _, err) = quorumkey(&["devnet-node", "remove", "--node", "1", "--dir", &dir]);
        assert!(!ok && err.contains("is under way; one change at a time"), "{err}");
        let during = status(&dir);
        assert_eq!(during.len(), 6);
        assert_eq!(during[4].change, Some(NodeChange::Leaving { epoch: 1 }));
        assert_eq!(during[5].change, Some(NodeChange::Joining { epoch: 1 }));
        assert!(matches!(during[5].state, NodeState::Running { .. }));
        failed.torus(&devnet_dir, &verifier, &user(1), &expected[&user(1)], "during the replacement").await;
        phase("replacement decided");
        let after = wait_for_change_end(&dir, Duration::from_secs(600));
        phase("epoch 1 in force");
        assert_eq!(after[4].state, NodeState::Removed { epoch: 1 });
        assert_eq!(after[4].pid, None);
        let (ok, _, err) = quorumkey(&["devnet-node", "start", "--node", "5", "--dir", &dir]);
        assert!(!ok && err.contains("node 5 was removed from the network (epoch 1 is in force without it)"), "{err}");
        let epoch_one = check_new_set(&devnet_dir, &after, 1, &[1, 2, 3, 4, 6], &genesis_keys).await;
        for (index, key) in &epoch_one {
            assert_ne!(key.public_shares, genesis_keys[index].public_shares, "key {index}: the shares changed");
        }
        failed.torus(&devnet_dir, &verifier, &user(2), &expected[&user(2)], "after the replacement").await;
        phase("checked epoch 1");

        // (b) Node 7 joins: six nodes. The ledger takes the next proposal
        // only 64 blocks after an epoch began; until then the devnet says
        // why, and keeps nothing of the attempt.
        let add = loop {
            let command_dir = dir.clone();
            let add = tokio::task::spawn_blocking(move || {
                quorumkey(&["devnet-node", "add", "--wait", "--dir", &command_dir])
            });
            // Decided (node 7 appears), or refused (the command ends).
            let deadline = Instant::now() + Duration::from_secs(60);
            while status(&dir).len() < 7 && !add.is_finished() {
                assert!(Instant::now() < deadline, "no answer to devnet-node add");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if status(&dir).len() == 7 {
                break add;
            }
            let (ok, _, err) = add.await.unwrap();
            assert!(!ok && err.contains("began less than 64 blocks ago"), "{err}");
            assert!(!devnet_dir.join("node-7").exists(), "a refused add leaves no node directory");
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        let during = status(&dir);
        assert_eq!(during[6].change, Some(NodeChange::Joining { epoch: 2 }));
        failed.torus(&devnet_dir, &verifier, &user(3), &expected[&user(3)], "while node 7 joins").await;
        phase("node 7's addition decided");
        let (ok, out, err) = tokio::time::timeout(Duration::from_secs(600), add).await.unwrap().unwrap();
        assert!(ok, "{err}");
        assert!(
            out.contains("epoch 2 decided at height ") && out.contains("6 nodes, node 7 joins as index 6"),
            "{out}"
        );
        assert!(out.contains("node 7 joined: epoch 2 is in force"), "{out}");
        let after = wait_for_change_end(&dir, Duration::from_secs(60));
        phase("epoch 2 in force");
        let epoch_two = check_new_set(&devnet_dir, &after, 2, &[1, 2, 3, 4, 6, 7], &genesis_keys).await;
        failed.torus(&devnet_dir, &verifier, &user(4), &expected[&user(4)], "after node 7 joined").await;

        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let (ok, failures) = load.await.unwrap();
        phase(&format!("checked epoch 2; {ok} Rust client logins during the changes, {} failed", failures.len()));
        if !failures.is_empty() {
            failed.0.push(format!(
                "{} of {} Rust client logins failed, e.g. {:#?}",
                failures.len(),
                ok + failures.len(),
                &failures[..failures.len().min(10)]
            ));
        }
        assert!(ok >= 2 * LOGIN_USERS, "only {ok} logins ran during the changes");
        (epoch_two, failed)
    });

    eprintln!("the devnet's output:\n{}{}", supervisor.stdout(), supervisor.stderr());
    // The devnet remembers the nodes added and removed.
    supervisor.signal(Signal::TERM);
    assert!(supervisor.wait(Duration::from_secs(60)).is_some_and(|status| status.success()), "{}", supervisor.stderr());
    let mut again = Supervisor::start(&devnet_dir, NODES, work.path(), "again");
    again.wait_ready(Duration::from_secs(120));
    let out = again.stdout();
    assert!(out.contains("threshold   4 of 6 (epoch 2)"), "{out}");
    assert!(out.contains("removed from the network in epoch 1; not started"), "{out}");
    let nodes = status(&dir);
    assert_eq!(nodes[4].state, NodeState::Removed { epoch: 1 });
    for number in [1, 2, 3, 4, 6, 7] {
        assert!(matches!(nodes[number - 1].state, NodeState::Running { .. }), "node {number}: {nodes:#?}");
    }
    runtime.block_on(async {
        let network = read_network(&devnet_dir);
        assert_eq!(network.nodes.len(), 6);
        let verifier = network.dev_issuer.as_ref().unwrap().verifier.clone();
        let client = QuorumkeyClient::new(network.clone(), ClientOptions::default()).unwrap();
        let user = user(LOGIN_USERS);
        if let Err(error) = client.login(&verifier, &user, &mint(&network, &user).await).await {
            failed.0.push(format!("Rust client after the devnet started again, {user}: {error}"));
        }
    });
    again.signal(Signal::TERM);
    assert!(again.wait(Duration::from_secs(60)).is_some_and(|status| status.success()), "{}", again.stderr());

    // At rest: each node of the final set holds a share of every key that
    // matches its public share; the removed node holds none.
    let network = NetworkFile::load(&devnet_dir.join(NETWORK_FILE)).unwrap();
    let ledger = quorumkey_ledger::Ledger::new(network.genesis().unwrap()).unwrap();
    let open = |number: u16| {
        let node = devnet_dir.join(format!("node-{number}"));
        let kek = quorumkey_node::kek::read_kek_file(&node.join(quorumkey_node::kek::KEK_FILE)).unwrap();
        quorumkey_store::NodeStore::open(&node.join("data").join(quorumkey_node::run::LEDGER_FILE), &ledger, &kek)
            .unwrap()
    };
    for (position, number) in [1u16, 2, 3, 4, 6, 7].into_iter().enumerate() {
        let store = open(number);
        assert_eq!(store.share_epoch().unwrap(), 2, "node {number}");
        assert_eq!(store.key_share_count().unwrap(), final_keys.len() as u64, "node {number}");
        for (index, key) in &final_keys {
            let share = store.key_share(*index).unwrap().unwrap();
            let scalar = quorumkey_crypto::group::scalar_from_bytes(&*share).unwrap();
            let public = quorumkey_crypto::group::point_to_bytes(&(quorumkey_crypto::group::generator() * scalar));
            assert_eq!(hex::encode(public), key.public_shares[position], "node {number}'s share of key {index}");
        }
    }
    assert_eq!(open(5).key_share_count().unwrap(), 0, "the removed node deleted its shares");
    eprintln!("the whole test took {:?}", started.elapsed());
    assert!(failed.0.is_empty(), "logins failed:\n{}", failed.0.join("\n"));
}
