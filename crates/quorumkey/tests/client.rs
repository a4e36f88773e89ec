//! The Rust client (`quorumkey-client`) and the `lookup`/`login` commands
//! against five real node processes. Every node is reached through a proxy
//! of this test that can misbehave on command, at the wire:
//!
//! - a node that returns wrong shares (a random share, correctly encrypted
//!   to the client's temporary key, so only the check against the node's
//!   public share on the ledger can catch it): the login succeeds and names
//!   that node;
//! - a node that is down: the login succeeds and names it;
//! - a node that is slow: the login succeeds without waiting for it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use quorumkey_client::{ClientError, ClientOptions, QuorumkeyClient};
use quorumkey_devnet::supervisor::NetworkJson;
use serde_json::Value;
use support::proxy::{Mode, proxy_network};
use support::{devnet_options, mint, small_dkg, start_devnet};

const NODES: u16 = 5;

fn cli(args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_quorumkey")).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn client_survives_a_wrong_a_down_and_a_slow_node() {
    let dir = tempfile::tempdir().unwrap();
    let options = devnet_options(dir.path(), NODES, small_dkg());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (mut devnet, real) = start_devnet(&options, 32).await;
        // The client's view: every node behind a proxy.
        let (proxied, proxies) = proxy_network(&real).await;
        let network_path = dir.path().join("proxied-network.json");
        std::fs::write(&network_path, serde_json::to_string_pretty(&proxied).unwrap()).unwrap();
        let client = QuorumkeyClient::from_file(&network_path, ClientOptions::default()).unwrap();
        let verifier = real.dev_issuer.as_ref().unwrap().verifier.clone();

        // Honest network: a new user, then the same key on a second login.
        let user = "erin@example.com";
        assert!(client.lookup(&verifier, user).await.unwrap().is_none());
        let not_yet = client.login(&verifier, user, &mint(&real, user).await).await.unwrap_err();
        assert!(matches!(not_yet, ClientError::NotAssigned { .. }), "{not_yet}");
        let (key, assigned_now) = client.lookup_or_assign(&verifier, user).await.unwrap();
        assert!(assigned_now);
        let first = client.login(&verifier, user, &mint(&real, user).await).await.unwrap();
        assert_eq!(first.key, key);
        assert_eq!(first.nodes.iter().filter(|n| n.used).count(), 3, "exactly t shares interpolated");
        assert!(first.failed_nodes().is_empty(), "{:?}", first.failed_nodes());

        // Node 2 returns wrong shares, first (the others answer 300 ms later).
        proxies[1].set(Mode::WrongShares);
        for index in [0, 2, 3, 4] {
            proxies[index].set(Mode::Slow(Duration::from_millis(300)));
        }
        let login = client.login(&verifier, user, &mint(&real, user).await).await.unwrap();
        assert_eq!(login.private_key, first.private_key, "the same key despite a wrong share");
        let failed = login.failed_nodes();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].node, 2);
        assert!(failed[0].reason.contains("wrong share"), "{}", failed[0].reason);
        assert!(!login.nodes[1].used);
        for proxy in &proxies {
            proxy.set(Mode::Honest);
        }

        // Node 3 is slow (5 s): the login does not wait for it.
        proxies[2].set(Mode::Slow(Duration::from_secs(5)));
        let started = Instant::now();
        let login = client.login(&verifier, user, &mint(&real, user).await).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(4), "waited for the slow node: {:?}", started.elapsed());
        assert_eq!(login.private_key, first.private_key);
        assert!(!login.nodes[2].used, "the slow node's share was not needed");
        proxies[2].set(Mode::Honest);

        // Node 5 is down: the login succeeds without it (the login waits
        // for t commitments only, so node 5's failure is reported if it
        // came in time, and is never a success).
        devnet.kill_node(5).await;
        let login = client.login(&verifier, user, &mint(&real, user).await).await.unwrap();
        assert_eq!(login.private_key, first.private_key);
        assert!(!login.nodes[4].used);
        assert!(!matches!(login.nodes[4].commitment, Some(Ok(_))), "{:?}", login.nodes[4]);
        assert!(login.failed_nodes().iter().all(|f| f.node == 5), "{:?}", login.failed_nodes());

        // Three wrong nodes: a clear error naming them.
        for index in [0, 1, 2] {
            proxies[index].set(Mode::WrongShares);
        }
        let error = client.login(&verifier, user, &mint(&real, user).await).await.unwrap_err().to_string();
        assert!(error.contains("reveal") && error.contains("node 1: wrong share"), "{error}");
        for proxy in &proxies {
            proxy.set(Mode::Honest);
        }

        cli_smoke(&network_path, &verifier).await;
        devnet.stop().await;
    });
}

/// `quorumkey lookup` and `quorumkey login`, human and JSON.
async fn cli_smoke(network: &Path, verifier: &str) {
    let network = network.to_str().unwrap();
    let (ok, out, err) =
        cli(&["lookup", "--verifier", verifier, "--verifier-id", "frank@example.com", "--network", network]);
    assert!(ok && out.contains("has no key yet"), "{out}{err}");
    let (ok, out, err) = cli(&["login", "--dev-email", "Frank@Example.com", "--network", network]);
    assert!(ok, "{err}");
    for expected in ["key assigned now", "public key", "address     0x", "nodes", "timings", "not shown"] {
        assert!(out.contains(expected), "{expected:?} in {out}");
    }
    let (ok, out, err) =
        cli(&["lookup", "--verifier", verifier, "--verifier-id", "frank@example.com", "--network", network, "--json"]);
    assert!(ok, "{err}");
    let looked_up: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(looked_up["assigned"], true);

    let (ok, out, err) =
        cli(&["login", "--dev-email", "frank@example.com", "--network", network, "--json", "--show-private-key"]);
    assert!(ok, "{err}");
    let login: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(login["address"], looked_up["address"]);
    assert_eq!(login["assigned_now"], false);
    assert_eq!(login["private_key"].as_str().unwrap().len(), 64);
    assert_eq!(login["nodes"].as_array().unwrap().iter().filter(|n| n["used"] == true).count(), 3);

    // A token from a file, for the wrong user: a clear refusal.
    let file = tempfile::NamedTempFile::new().unwrap();
    let network_json: NetworkJson = serde_json::from_str(&std::fs::read_to_string(network).unwrap()).unwrap();
    std::fs::write(file.path(), mint(&network_json, "frank@example.com").await).unwrap();
    let (ok, _, err) = cli(&[
        "login",
        "--verifier-id",
        "erin@example.com",
        "--id-token-file",
        file.path().to_str().unwrap(),
        "--network",
        network,
    ]);
    assert!(!ok && err.contains("another verifier_id"), "{err}");
    let (ok, _, err) = cli(&["login", "--network", network]);
    assert!(!ok && err.contains("--id-token"), "{err}");
    let (ok, _, err) = cli(&["lookup", "--verifier", verifier, "--verifier-id", "x", "--network", "/nonexistent.json"]);
    assert!(!ok && err.contains("/nonexistent.json"), "{err}");
}
