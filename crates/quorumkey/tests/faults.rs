//! The fault suite, on five real node processes with every node reached
//! through a proxy of this test:
//!
//! - `kill -9` of a node during a load of 1,000 logins: no login of an
//!   existing user fails; the node restarts and reaches the others' state
//!   root;
//! - a hung node (SIGSTOP) during a load: no login fails; after SIGCONT it
//!   catches up;
//! - a Byzantine node answering garbage signatures and garbage shares:
//!   logins succeed and name it;
//! - two of five nodes down: logins stop with a precise error (a reveal
//!   needs four signatures, so that no second key can gather a quorum;
//!   nothing is revealed), a new user's assignment waits (consensus needs
//!   four); once a node returns, both complete.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quorumkey_client::{ClientError, ClientOptions, QuorumkeyClient};
use quorumkey_devnet::supervisor::{Devnet, NetworkJson};
use quorumkey_node::config::{HttpSettings, RpcSettings};
use support::proxy::{Mode, proxy_network};
use support::{devnet_options, mint, small_dkg, start_devnet};

const NODES: u16 = 5;
const USERS: usize = 20;

fn user(i: usize) -> String {
    format!("load-{}@example.com", i % USERS)
}

/// `count` logins of existing users by `concurrency` clients; `during`
/// runs once `trigger` logins are done. Returns (ok, failures).
async fn load<F: std::future::Future<Output = ()>>(
    client: &Arc<QuorumkeyClient>,
    network: &NetworkJson,
    verifier: &str,
    count: usize,
    concurrency: usize,
    trigger: usize,
    during: F,
) -> (usize, Vec<String>) {
    let mut tokens = VecDeque::with_capacity(count);
    for i in 0..count {
        tokens.push_back((user(i), mint(network, &user(i)).await));
    }
    let tokens = Arc::new(Mutex::new(tokens));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (tokens, client, done, verifier) = (tokens.clone(), client.clone(), done.clone(), verifier.to_owned());
            tokio::spawn(async move {
                let (mut ok, mut failures) = (0, Vec::new());
                loop {
                    let next = tokens.lock().unwrap().pop_front();
                    let Some((user, token)) = next else { break };
                    match client.login(&verifier, &user, &token).await {
                        Ok(_) => ok += 1,
                        Err(error) => failures.push(format!("{user}: {error}")),
                    }
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                (ok, failures)
            })
        })
        .collect();
    while done.load(std::sync::atomic::Ordering::Relaxed) < trigger {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    during.await;
    let (mut ok, mut failures) = (0, Vec::new());
    for worker in workers {
        let (o, f) = worker.await.unwrap();
        ok += o;
        failures.extend(f);
    }
    (ok, failures)
}

async fn heights(devnet: &Devnet) -> Vec<Option<u64>> {
    let mut out = Vec::new();
    for node in 1..=NODES {
        out.push(match devnet.client(node).unwrap().status().await {
            Ok(status) => Some(status.height),
            Err(_) => None,
        });
    }
    out
}

/// Waits until node `index` has applied the height the others had when
/// this was called, and checks its root there.
async fn catches_up(devnet: &Devnet, index: u16) {
    let target = heights(devnet).await.into_iter().flatten().max().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = devnet.client(index).unwrap();
    loop {
        if client.status().await.is_ok_and(|s| s.height >= target) {
            break;
        }
        assert!(Instant::now() < deadline, "node {index} did not catch up to height {target}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reference = devnet.client(1 + index % NODES).unwrap().state_root(target).await.unwrap().state_root;
    assert_eq!(client.state_root(target).await.unwrap().state_root, reference, "node {index}'s root at {target}");
}

fn signal(devnet: &Devnet, index: u16, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(devnet.pid(index).unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

#[test]
fn logins_survive_crashes_hangs_byzantine_nodes_and_wait_out_two_nodes_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = devnet_options(dir.path(), NODES, small_dkg());
    // Every login of the load comes from this one address: the limits for
    // real users are tested in login.rs.
    options.rpc = RpcSettings::unlimited();
    options.http = HttpSettings::one_address_load();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (mut devnet, real) = start_devnet(&options, 32).await;
        let (proxied, proxies) = proxy_network(&real).await;
        // A hung node is cut off after 2 s per request.
        let client_options = ClientOptions { request_timeout: Duration::from_secs(2), ..ClientOptions::default() };
        let client = Arc::new(QuorumkeyClient::new(proxied.clone(), client_options).unwrap());
        let verifier = real.dev_issuer.as_ref().unwrap().verifier.clone();
        for i in 0..USERS {
            client.lookup_or_assign(&verifier, &user(i)).await.unwrap();
        }

        // kill -9 of node 3 after 200 of 1,000 logins.
        let (ok, failures) = load(&client, &real, &verifier, 1000, 8, 200, devnet.kill_node(3)).await;
        assert!(failures.is_empty(), "{} failed logins, e.g. {:?}", failures.len(), failures.first());
        assert_eq!(ok, 1000);
        devnet.start_node(3).unwrap();
        catches_up(&devnet, 3).await;

        // Node 2 hangs (SIGSTOP) during 200 logins, then resumes.
        let stop = async { signal(&devnet, 2, rustix::process::Signal::STOP) };
        let (ok, failures) = load(&client, &real, &verifier, 200, 8, 40, stop).await;
        signal(&devnet, 2, rustix::process::Signal::CONT);
        assert!(failures.is_empty(), "{} failed logins with a hung node, e.g. {:?}", failures.len(), failures.first());
        assert_eq!(ok, 200);
        catches_up(&devnet, 2).await;

        // Node 4 answers garbage signatures and shares.
        proxies[3].set(Mode::Garbage);
        for i in 0..10 {
            let login = client.login(&verifier, &user(i), &mint(&real, &user(i)).await).await.unwrap();
            assert!(!login.nodes[3].used, "node 4's garbage share was used");
        }
        proxies[3].set(Mode::Honest);

        // Nodes 4 and 5 down: a login stops before its reveal (three
        // signatures, four needed) and says so; a new assignment waits for
        // consensus; both complete once node 4 is back.
        devnet.kill_node(4).await;
        devnet.kill_node(5).await;
        match client.login(&verifier, &user(0), &mint(&real, &user(0)).await).await {
            Err(ClientError::Quorum { step: "commitment", needed: 4, got: 3, failures }) => {
                let down: Vec<u16> = failures.iter().map(|f| f.node).collect();
                assert_eq!(down, [4, 5], "{failures:?}");
            }
            other => panic!("a login with two of five nodes down: {other:?}"),
        }
        let waiting = {
            let client = client.clone();
            let verifier = verifier.clone();
            tokio::spawn(async move { client.assign(&verifier, "late@example.com").await })
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!waiting.is_finished(), "an assignment finished without a consensus quorum");
        devnet.start_node(4).unwrap();
        let assigned = tokio::time::timeout(Duration::from_secs(90), waiting).await.unwrap().unwrap();
        let key = assigned.expect("the assignment completes once a node is back");
        let late = client.login(&verifier, "late@example.com", &mint(&real, "late@example.com").await).await.unwrap();
        assert_eq!(late.key, key);
        client.login(&verifier, &user(0), &mint(&real, &user(0)).await).await.unwrap();
        devnet.stop().await;
    });
}
