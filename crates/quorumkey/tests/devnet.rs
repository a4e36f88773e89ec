//! Multi-process: five real `quorumkey node` processes on 127.0.0.1 (started
//! by the devnet supervisor, as `quorumkey devnet` does), real TCP, real
//! storage. Transactions finalize; after `kill -9` of one node the other
//! four still finalize; the killed node restarts from its storage, catches
//! up and reaches the same state root. Meanwhile the DKG fills the key pool
//! and every user gets its own key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use quorumkey_client::node_api_client::NodeApiClient;
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::random::os_rng;
use quorumkey_devnet::supervisor::{Devnet, NETWORK_JSON};
use quorumkey_node::jwks_cache::{JwksCache, JwksCachePolicy};
use quorumkey_node::provider_http::ProviderAccess;
use quorumkey_node::token_verifier::{ProviderLimits, TokenVerifier};
use quorumkey_verifier::VerifierConfig;
use support::{DevnetSigners, devnet_options, small_dkg, start_devnet};

const NODES: u16 = 5;
const VERIFIER: &str = "devnet-test";

fn user(i: usize) -> String {
    format!("user-{i}@example.com")
}

/// Submits assignments for `users` to the listed nodes, round robin, and
/// waits for each to finalize.
async fn assign_all(devnet: &Devnet, signers: &DevnetSigners, nodes: &[u16], users: std::ops::Range<usize>) {
    let submissions = users.map(|i| {
        let node = nodes[i % nodes.len()];
        let client = devnet.client(node).unwrap();
        let transaction = signers.assign(node, VERIFIER, &user(i));
        async move {
            let answer = client.submit(&transaction, true).await.unwrap();
            assert_eq!(answer.status, "finalized", "{} via node {node}: {answer:?}", user(i));
        }
    });
    futures::future::join_all(submissions).await;
}

/// `quorumkey verifier ...` against the running devnet: an owner key, a
/// registration, the list, an update, disable and enable, and clear errors
/// for a bad configuration and a key that is not the owner's.
async fn verifier_cli_round_trip(devnet_dir: &std::path::Path) {
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_quorumkey")).args(args).output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let network = devnet_dir.join(NETWORK_JSON);
    let network = network.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("owner.key");
    let other = work.path().join("other.key");
    let config = work.path().join("app.json");
    let bad = work.path().join("bad.json");
    std::fs::write(&config, support::TEST_VERIFIER_CONFIG).unwrap();
    std::fs::write(&bad, r#"{"type":"jwt","issuer":"https://x"}"#).unwrap();
    let (ok, out, err) = cli(&["verifier", "owner-key", "--out", key.to_str().unwrap()]);
    assert!(ok && out.contains("public key"), "{out}{err}");
    assert!(cli(&["verifier", "owner-key", "--out", other.to_str().unwrap()]).0);

    // `quorumkey verifier COMMAND --name NAME [--config FILE] --owner-key KEY --network …`
    let change = |command: &str, name: &str, config: Option<&std::path::Path>, owner: &std::path::Path| {
        let mut args = vec!["verifier", command, "--name", name];
        if let Some(config) = config {
            args.extend(["--config", config.to_str().unwrap()]);
        }
        args.extend(["--owner-key", owner.to_str().unwrap(), "--network", network]);
        cli(&args)
    };

    let (ok, _, err) = change("register", "cli-app", Some(&bad), &key);
    assert!(!ok && err.contains("missing field"), "{err}");
    let (ok, out, err) = change("register", "cli-app", Some(&config), &key);
    assert!(ok && out.contains("registered cli-app") && out.contains("jwt"), "{out}{err}");
    let (ok, _, err) = change("register", "cli-app", Some(&config), &other);
    assert!(!ok && err.contains("already registered"), "{err}");

    let (ok, out, _) = cli(&["verifier", "list", "--network", network]);
    assert!(ok && out.contains("quorumkey-dev") && out.contains("cli-app"), "{out}");
    let (ok, out, _) = cli(&["verifier", "list", "--json", "--network", network]);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(ok && listed.as_array().unwrap().len() == 2, "{out}");

    let (ok, _, err) = change("disable", "cli-app", None, &other);
    assert!(!ok && err.contains("does not own"), "{err}");
    let (ok, out, err) = change("disable", "cli-app", None, &key);
    assert!(ok && out.contains("disabled") && out.contains("nonce 1"), "{out}{err}");
    let (ok, out, err) = change("update", "cli-app", Some(&config), &key);
    assert!(ok && out.contains("updated") && out.contains("nonce 2") && out.contains("disabled"), "{out}{err}");
    let (ok, out, err) = change("enable", "cli-app", None, &key);
    assert!(ok && out.contains("enabled") && out.contains("nonce 3"), "{out}{err}");
    let (ok, _, err) = change("enable", "nobody", None, &key);
    assert!(!ok && err.contains("not registered"), "{err}");
}

async fn roots_agree(devnet: &Devnet, height: u64) {
    let mut roots = Vec::new();
    for node in 1..=NODES {
        roots.push(devnet.client(node).unwrap().state_root(height).await.unwrap().state_root);
    }
    assert!(roots.windows(2).all(|pair| pair[0] == pair[1]), "roots at height {height} differ: {roots:?}");
}

#[test]
fn five_processes_finalize_survive_kill_and_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    // Small batches keep the DKG quick in a debug build.
    let options = devnet_options(dir.path(), NODES, small_dkg());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (mut devnet, description) = start_devnet(&options, 0).await;
        assert_eq!(description.nodes.len(), usize::from(NODES));
        assert!(description.nodes.iter().all(|node| node.pub_key_x.len() == 64 && node.pub_key_y.len() == 64));

        // The devnet runs the development issuer and registered its
        // verifier at genesis: `quorumkey dev-token` gets a token from it,
        // and the registered configuration accepts it.
        let dev = description.dev_issuer.clone().expect("network.json lists the development issuer");
        assert_eq!(description.verifiers, vec![dev.verifier.clone()]);
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_quorumkey"))
            .args(["dev-token", "--email", "Zoe@Example.com", "--network"])
            .arg(options.dir.join(NETWORK_JSON))
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        let registered = &devnet.network().verifiers[0];
        let VerifierConfig::Jwt(config) = VerifierConfig::parse(registered.config.as_bytes()).unwrap() else {
            panic!("the dev verifier is a JWT verifier");
        };
        let access = ProviderAccess::development();
        let checker = TokenVerifier::new(
            Arc::new(JwksCache::new(JwksCachePolicy::default(), &access).unwrap()),
            &access,
            ProviderLimits::default(),
        )
        .unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(checker.verify_jwt(&config, &token, now).await.unwrap().verifier_id, "zoe@example.com");

        // The verifier registry from the command line, against node 1.
        verifier_cli_round_trip(&options.dir).await;

        let signers = DevnetSigners::load(&options.dir);
        let owner = SigningKey::generate_from_rng(&mut os_rng());
        let registered = devnet.client(1).unwrap().submit(&signers.register(VERIFIER, &owner), true).await.unwrap();
        assert_eq!(registered.status, "finalized");

        // All five up: assignments submitted to every node finalize.
        assign_all(&devnet, &signers, &[1, 2, 3, 4, 5], 0..40).await;

        // kill -9 node 5: the other four still finalize.
        devnet.kill_node(5).await;
        assign_all(&devnet, &signers, &[1, 2, 3, 4], 40..70).await;
        // Node 1 stops counting node 5 as connected once it has not heard
        // from it for the liveness window (10 s).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let status = devnet.client(1).unwrap().status().await.unwrap();
            if status.connected_peers == 3 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "node 5 is dead but still counted: {status:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        // Restart it from its storage: it catches up to the same root.
        devnet.start_node(5).unwrap();
        let target = devnet.client(1).unwrap().status().await.unwrap().height + 1;
        devnet.wait_for_height(target, Duration::from_secs(120)).await.unwrap();
        roots_agree(&devnet, target).await;
        let restarted = devnet.client(5).unwrap();
        // And it takes part again: a transaction submitted to it finalizes.
        assign_all(&devnet, &signers, &[5], 70..75).await;
        let status = NodeApiClient::new(restarted.base()).status().await.unwrap();
        assert!(status.halted.is_none());

        // The DKG fills the pool through all this: every user ends up with
        // its own key, and every node agrees on the pool.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let status = restarted.status().await.unwrap();
            if status.pending_assignments == 0 && status.total_keys >= 75 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the DKG did not serve every user: {status:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut keys = std::collections::HashSet::new();
        for i in 0..75 {
            let record = restarted.assignment(VERIFIER, &user(i)).await.unwrap().expect("known on node 5");
            assert_eq!(record.status, "assigned", "{}: {record:?}", user(i));
            assert!(keys.insert(record.key_index.unwrap()), "{} shares a key", user(i));
        }
        let target = devnet.client(1).unwrap().status().await.unwrap().height + 1;
        devnet.wait_for_height(target, Duration::from_secs(60)).await.unwrap();
        roots_agree(&devnet, target).await;
        devnet.stop().await;
    });
}
