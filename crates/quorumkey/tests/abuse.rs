//! Abuse of the ledger by anyone who can reach a node's API, on five real
//! `quorumkey node` processes (issue 24, part 1 and 2):
//!
//! - a flood of verifier updates signed by keys that do not own the
//!   verifier: refused at admission (every check a block would run, against
//!   the latest state), so the mempool stays empty of them and the DKG and
//!   logins go on;
//! - a Byzantine node that signs 10,000 `AssignKey`s for random users: the
//!   ledger's per-node budget gives it at most its share, the pool keeps
//!   keys, and a new user still logs in;
//! - the operators change the policy with `quorumkey network policy`: 2f + 1
//!   signatures are needed, and the new policy binds at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use commonware_codec::Encode;
use futures::StreamExt;
use quorumkey_client::{ClientOptions, QuorumkeyClient};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_devnet::supervisor::{Devnet, DevnetOptions, NETWORK_JSON, NetworkJson};
use quorumkey_ledger::{SignedTransaction, TransactionBody, VerifierName};
use quorumkey_login::node_api::StatusResponse;
use quorumkey_node::config::{NetworkPolicyFile, RpcSettings};
use serde_json::{Value, json};
use support::{DevnetSigners, devnet_options, mint, small_dkg, start_devnet};

const NODES: u16 = 5;

/// One devnet at a time: five node processes already share the two cores.
static ONE_DEVNET: Mutex<()> = Mutex::new(());

fn on_a_devnet<F: std::future::Future<Output = ()>>(
    configure: impl FnOnce(&mut DevnetOptions),
    test: impl FnOnce(Devnet, NetworkJson, DevnetOptions) -> F,
) {
    let _one = ONE_DEVNET.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let mut options = devnet_options(dir.path(), NODES, small_dkg());
    // The floods below come from one address: the per-address limits are
    // not what these tests are about.
    options.rpc = RpcSettings::unlimited();
    configure(&mut options);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (devnet, description) = start_devnet(&options, 16).await;
        test(devnet, description, options).await;
    });
}

async fn statuses(devnet: &Devnet) -> Vec<StatusResponse> {
    let mut all = Vec::new();
    for index in 1..=NODES {
        all.push(devnet.client(index).unwrap().status().await.unwrap());
    }
    all
}

/// Posts `transactions` to the nodes' `/v1/transactions` (round robin, 16
/// at a time); returns each answer's HTTP status and body.
async fn flood(description: &NetworkJson, nodes: &[u16], transactions: Vec<Vec<u8>>) -> Vec<(u16, Value)> {
    let http = reqwest::Client::new();
    let urls: Vec<String> = nodes
        .iter()
        .map(|&index| {
            let node = description.nodes.iter().find(|node| node.index == index).unwrap();
            format!("{}/v1/transactions", node.api)
        })
        .collect();
    futures::stream::iter(transactions.into_iter().enumerate())
        .map(|(i, transaction)| {
            let (http, url) = (http.clone(), urls[i % urls.len()].clone());
            async move {
                let response =
                    http.post(&url).json(&json!({ "transaction": hex::encode(transaction) })).send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.unwrap_or(Value::Null))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Logs a new user in with the Rust client (lookup, KeyAssign through the
/// devnet's signer, commitment, reveal), and returns the key's address.
async fn new_user_logs_in(description: &NetworkJson, dir: &Path, email: &str) -> String {
    let client = QuorumkeyClient::from_file(&dir.join(NETWORK_JSON), ClientOptions::default()).unwrap();
    let verifier = description.dev_issuer.as_ref().unwrap().verifier.clone();
    let (key, assigned) = client.lookup_or_assign(&verifier, email).await.unwrap();
    assert!(assigned, "{email} is a new user");
    let token = mint(description, email).await;
    let login = client.login(&verifier, email, &token).await.unwrap();
    assert_eq!(login.key, key);
    login.key.address
}

/// Keys handed out so far: owned by a pair, or promised to a waiting one.
fn assigned(status: &StatusResponse) -> u64 {
    status.total_keys - status.ready_keys + status.pending_assignments
}

#[test]
fn a_flood_of_badly_signed_updates_is_refused_at_admission() {
    on_a_devnet(
        |_| {},
        |devnet, description, options| async move {
            let signers = DevnetSigners::load(&options.dir);
            let verifier = description.dev_issuer.as_ref().unwrap().verifier.clone();
            // 2,000 updates of the devnet's verifier, each signed by a
            // stranger's key and carrying 15 KiB: well formed, so only a
            // check against the verifier's record (its owner) refuses them.
            let filler = "x".repeat(15 * 1024);
            let transactions: Vec<Vec<u8>> = (0..2_000u32)
                .map(|i| {
                    let stranger = SigningKey::generate_from_rng(&mut quorumkey_crypto::random::os_rng());
                    let body = TransactionBody::UpdateVerifier {
                        name: VerifierName::new(&verifier).unwrap(),
                        nonce: 1,
                        config: format!("{{\"flood\":{i},\"pad\":\"{filler}\"}}").into_bytes().into(),
                        enabled: false,
                    };
                    SignedTransaction::sign_as_owner(signers.ledger.network_id(), body, &stranger).encode().to_vec()
                })
                .collect();
            let started = Instant::now();
            let answers = flood(&description, &[1, 2, 3, 4, 5], transactions).await;
            let took = started.elapsed();
            let refused = answers
                .iter()
                .filter(|(status, body)| {
                    *status == 403
                        && body["error"].as_str().is_some_and(|e| e.contains("refused") && e.contains("owner"))
                })
                .count();
            assert_eq!(refused, answers.len(), "every update refused at admission; first answers: {:?}", &answers[..3]);
            eprintln!("2,000 badly signed updates refused in {took:?}");
            // Nothing of it waits in any mempool.
            for status in statuses(&devnet).await {
                assert!(status.mempool_transactions < 50, "node {}: {}", status.index, status.mempool_transactions);
            }
            // The DKG still makes keys: drain the pool below its low-water
            // mark and watch it refill.
            let before = statuses(&devnet).await[0].total_keys;
            let drain: Vec<Vec<u8>> =
                (0..48).map(|i| signers.assign(1 + (i % NODES), &verifier, &format!("drain{i}@example.com"))).collect();
            let answers = flood(&description, &[1], drain).await;
            assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
            let deadline = Instant::now() + Duration::from_secs(120);
            while devnet.client(1).unwrap().status().await.unwrap().total_keys <= before {
                assert!(Instant::now() < deadline, "the DKG made no key within 120 s of the flood");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            // And a new user logs in; the verifier is as its owner left it.
            new_user_logs_in(&description, &options.dir, "after-flood@example.com").await;
            let info = devnet.client(2).unwrap().verifier(&verifier).await.unwrap().unwrap();
            assert!(info.enabled);
            assert_eq!(info.nonce, 0);
            devnet.stop().await;
        },
    );
}

#[test]
fn a_node_assigning_keys_for_random_users_stays_within_its_budget() {
    const NODE_BUDGET: u64 = 300;
    const WINDOW_SECS: u64 = 3_600;
    on_a_devnet(
        |options| {
            // A long window, so the whole flood falls in one.
            options.policy = NetworkPolicyFile {
                assignments_per_node: Some(NODE_BUDGET as u32),
                window_secs: Some(WINDOW_SECS),
                ..NetworkPolicyFile::default()
            };
        },
        |devnet, description, options| async move {
            let signers = DevnetSigners::load(&options.dir);
            let verifier = description.dev_issuer.as_ref().unwrap().verifier.clone();
            let baseline = assigned(&statuses(&devnet).await[0]);
            // Node 5 is Byzantine: it signs 10,000 assignments for random
            // users and submits them to itself and to node 1.
            let unix_secs = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            let first_window = unix_secs() / WINDOW_SECS;
            let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
            let transactions: Vec<Vec<u8>> = (0..10_000u32)
                .map(|i| signers.assign(5, &verifier, &format!("random-{run}-{i}@example.com")))
                .collect();
            let started = Instant::now();
            let answers = flood(&description, &[5, 1], transactions).await;
            let budget_refusals = answers
                .iter()
                .filter(|(status, body)| {
                    *status == 429 && body["error"].as_str().is_some_and(|e| e.contains("node 5's assignment budget"))
                })
                .count();
            eprintln!(
                "10,000 assignments from one node answered in {:?}: {budget_refusals} refused at admission for the budget",
                started.elapsed()
            );
            // Let every admitted one reach a block.
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let all = statuses(&devnet).await;
                if all.iter().all(|status| status.mempool_transactions == 0) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "mempools did not drain: {:?}",
                    all.iter().map(|s| s.mempool_transactions).collect::<Vec<_>>()
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let taken = assigned(&statuses(&devnet).await[0]) - baseline;
            // Windows are fixed (block time divided by their length): a
            // flood that straddles a boundary gets each window's budget.
            let windows = unix_secs() / WINDOW_SECS - first_window + 1;
            eprintln!(
                "the Byzantine node got {taken} keys assigned (budget {NODE_BUDGET} in each of {windows} windows)"
            );
            assert!(
                taken <= NODE_BUDGET * windows,
                "{taken} new assignments from one node, budget {NODE_BUDGET} in each of {windows} windows"
            );
            assert!(budget_refusals > 0, "the budget refuses at admission once spent");
            // A new user, through the honest nodes and the signer, logs in.
            new_user_logs_in(&description, &options.dir, "new-user@example.com").await;
            devnet.stop().await;
        },
    );
}

#[test]
fn operators_change_the_policy_with_two_thirds_of_their_signatures() {
    on_a_devnet(
        |_| {},
        |devnet, description, options| async move {
            let binary = env!("CARGO_BIN_EXE_quorumkey");
            let run = |args: &[&str]| {
                let output = std::process::Command::new(binary).args(args).output().unwrap();
                (
                    output.status.success(),
                    String::from_utf8_lossy(&output.stdout).into_owned(),
                    String::from_utf8_lossy(&output.stderr).into_owned(),
                )
            };
            let network = options.dir.join(NETWORK_JSON);
            let network = network.to_str().unwrap();
            let (ok, shown, stderr) = run(&["network", "policy", "show", "--network", network]);
            assert!(ok, "{stderr}");
            assert!(shown.contains("# policy nonce 0"), "{shown}");
            assert!(shown.contains("assignments_per_node = 300"), "{shown}");
            // Registrations only for one owner, and one assignment per
            // verifier a window.
            let work = tempfile::tempdir().unwrap();
            let allowed = SigningKey::generate_from_rng(&mut quorumkey_crypto::random::os_rng());
            let allowed_hex = hex::encode(quorumkey_node::identity::owner_public_bytes(&allowed));
            let policy_file = work.path().join("policy.toml");
            std::fs::write(
                &policy_file,
                format!("allowed_owners = [\"{allowed_hex}\"]\nassignments_per_verifier = 1\nwindow_secs = 3600\n"),
            )
            .unwrap();
            let policy = policy_file.to_str().unwrap();
            let sign = |node: u16| {
                let config = options.dir.join(format!("node-{node}")).join("node.toml");
                let (ok, out, stderr) = run(&[
                    "network",
                    "policy",
                    "sign",
                    "--node-config",
                    config.to_str().unwrap(),
                    "--policy",
                    policy,
                    "--nonce",
                    "1",
                ]);
                assert!(ok, "{stderr}");
                out.trim().to_owned()
            };
            let signatures: Vec<String> = [1, 2, 4].into_iter().map(sign).collect();
            assert!(signatures[2].starts_with("4:"), "{}", signatures[2]);
            let submit = |signatures: &[String]| {
                let mut args =
                    vec!["network", "policy", "submit", "--policy", policy, "--nonce", "1", "--network", network];
                for signature in signatures {
                    args.extend(["--signature", signature.as_str()]);
                }
                run(&args)
            };
            // Two of five operators are not enough (2f + 1 = 3).
            let (ok, _, stderr) = submit(&signatures[..2]);
            assert!(!ok);
            assert!(stderr.contains("fewer than 2f + 1 operators signed"), "{stderr}");
            let (ok, out, stderr) = submit(&signatures);
            assert!(ok, "{stderr}");
            assert!(out.contains("policy changed") && out.contains("# policy nonce 1"), "{out}");
            assert!(out.contains(&allowed_hex), "{out}");
            // In force on every node: a stranger's registration is refused
            // at admission; the same signatures cannot be replayed.
            let signers = DevnetSigners::load(&options.dir);
            let stranger = SigningKey::generate_from_rng(&mut quorumkey_crypto::random::os_rng());
            let answers = flood(&description, &[3], vec![signers.register("stranger-app", &stranger)]).await;
            assert_eq!(answers[0].0, 403, "{answers:?}");
            assert!(answers[0].1["error"].as_str().unwrap().contains("allow list"), "{answers:?}");
            let (ok, _, stderr) = submit(&signatures);
            assert!(!ok);
            assert!(stderr.contains("must carry nonce 2"), "{stderr}");
            for index in 1..=NODES {
                assert_eq!(devnet.client(index).unwrap().policy().await.unwrap().nonce, 1);
            }
            // One new assignment per verifier and window now: the first
            // new user gets a key, the second is told to wait.
            let verifier = description.dev_issuer.as_ref().unwrap().verifier.clone();
            new_user_logs_in(&description, &options.dir, "first@example.com").await;
            let client = QuorumkeyClient::from_file(&options.dir.join(NETWORK_JSON), ClientOptions::default()).unwrap();
            let error = client.assign(&verifier, "second@example.com").await.unwrap_err().to_string();
            assert!(error.contains("assignment budget"), "{error}");
            devnet.stop().await;
        },
    );
}
