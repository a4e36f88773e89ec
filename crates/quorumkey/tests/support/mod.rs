//! Shared by the multi-process test and the devnet benchmark: free ports,
//! and signing ledger transactions with a devnet's own node keys.
#![allow(dead_code, reason = "each test and benchmark uses a different part")]

use std::path::Path;
use std::time::{Duration, Instant};

pub mod faketime;
pub mod proxy;
pub mod raw;
pub mod supervisor;
pub mod torusjs;

use commonware_codec::Encode;
use quorumkey_crypto::group::{Point, point_to_bytes};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_devnet::dev_issuer::{MintRequest, request_token};
use quorumkey_devnet::supervisor::{Devnet, DevnetOptions, NetworkJson};
use quorumkey_ledger::{Ledger, SignedTransaction, TransactionBody, VerifierId, VerifierName};
use quorumkey_node::config::{NETWORK_FILE, NetworkDkg, NetworkFile};
use quorumkey_node::identity::NodeIdentity;

/// A valid JWT verifier configuration for the tests' registrations.
pub const TEST_VERIFIER_CONFIG: &str = r#"{"type":"jwt","issuer":"https://issuer.test","audiences":["quorumkey-test"],"keys":{"jwks_url":"https://issuer.test/jwks"},"verifier_id_claim":"email","max_token_age_secs":3600}"#;

/// A new devnet of `nodes` nodes in `dir/devnet`, on free ports, run with
/// this crate's `quorumkey` binary.
pub fn devnet_options(dir: &Path, nodes: u16, dkg: NetworkDkg) -> DevnetOptions {
    DevnetOptions::on_free_ports(nodes, dir.join("devnet"), env!("CARGO_BIN_EXE_quorumkey").into(), dkg)
        .expect("free ports")
}

#[allow(unused_imports, reason = "the benchmarks use them, the tests do not")]
pub use quorumkey::bench::{cores, machine};

/// The DKG of the multi-process tests: 32-key batches keep a debug build
/// quick.
pub fn small_dkg() -> NetworkDkg {
    NetworkDkg { batch_keys: Some(32), pool_target: Some(64), low_water: Some(32), ..NetworkDkg::default() }
}

/// Launches the devnet, waits until every node finalized a block and (if
/// `keys` > 0) until node 1 has that many ready keys; writes
/// `network.json` and returns it.
pub async fn start_devnet(options: &DevnetOptions, keys: u64) -> (Devnet, NetworkJson) {
    let mut devnet = Devnet::launch(options).unwrap();
    devnet.wait_for_height(1, Duration::from_secs(120)).await.unwrap();
    let path = devnet.write_network_json().unwrap();
    let description: NetworkJson = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let status = devnet.client(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while keys > 0 && !status.status().await.is_ok_and(|s| s.ready_keys >= keys) {
        assert!(Instant::now() < deadline, "no {keys} ready keys within 120 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (devnet, description)
}

/// An ID token for `email` from the devnet's development issuer.
pub async fn mint(network: &NetworkJson, email: &str) -> String {
    let dev = network.dev_issuer.as_ref().unwrap();
    request_token(&dev.token_endpoint, &MintRequest::for_email(email)).await.unwrap().id_token
}

/// Signs transactions as a devnet's nodes, with the keys `network init`
/// wrote into its directory.
pub struct DevnetSigners {
    /// The network's ledger (for the network id and checks).
    pub ledger: Ledger,
    nodes: Vec<NodeIdentity>,
}

impl DevnetSigners {
    /// Loads the network and every node's keys from `dir`.
    pub fn load(dir: &Path) -> Self {
        let network = NetworkFile::load(&dir.join(NETWORK_FILE)).unwrap();
        let ledger = Ledger::new(network.genesis().unwrap()).unwrap();
        let nodes = network
            .nodes
            .iter()
            .map(|node| NodeIdentity::load(&dir.join(format!("node-{}", node.index))).unwrap())
            .collect();
        Self { ledger, nodes }
    }

    /// `AssignKey` for `user` of `verifier`, signed by node `node` (from 1).
    pub fn assign(&self, node: u16, verifier: &str, user: &str) -> Vec<u8> {
        let body = TransactionBody::AssignKey {
            verifier: VerifierName::new(verifier).unwrap(),
            verifier_id: VerifierId::new(user).unwrap(),
        };
        let key = &self.nodes[usize::from(node) - 1].consensus;
        SignedTransaction::sign_as_node(self.ledger.network_id(), body, node, key).encode().to_vec()
    }

    /// `RegisterVerifier` for `verifier`, owned and signed by `owner`.
    pub fn register(&self, verifier: &str, owner: &SigningKey) -> Vec<u8> {
        let body = TransactionBody::RegisterVerifier {
            name: VerifierName::new(verifier).unwrap(),
            owner: point_to_bytes(&Point::from(*owner.verifying_key().as_affine())),
            config: bytes::Bytes::from_static(TEST_VERIFIER_CONFIG.as_bytes()),
        };
        SignedTransaction::sign_as_owner(self.ledger.network_id(), body, owner).encode().to_vec()
    }
}

/// An ID token from the devnet's development issuer, as `request` asks.
pub async fn mint_with(network: &NetworkJson, request: &MintRequest) -> String {
    let dev = network.dev_issuer.as_ref().unwrap();
    request_token(&dev.token_endpoint, request).await.unwrap().id_token
}

/// A verifier owner of a running devnet, acting through the `quorumkey
/// verifier` command (as an application's developer would).
pub struct VerifierOwner {
    work: tempfile::TempDir,
    network: std::path::PathBuf,
}

impl VerifierOwner {
    /// A new owner key, for the network described by `network_json`.
    pub fn new(network_json: &Path) -> Self {
        let owner = Self { work: tempfile::tempdir().unwrap(), network: network_json.to_owned() };
        owner.run(&["verifier", "owner-key", "--out", owner.key().to_str().unwrap()]);
        owner
    }

    fn key(&self) -> std::path::PathBuf {
        self.work.path().join("owner.key")
    }

    fn run(&self, args: &[&str]) {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_quorumkey")).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// The nonce of `name` as node `api` lists it (`quorumkey verifier
    /// list`), if it lists it.
    fn nonce_at(&self, api: &str, name: &str) -> Option<u64> {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_quorumkey"))
            .args(["verifier", "list", "--json", "--node", api])
            .output()
            .ok()?;
        let list: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).ok()?;
        list.iter().find(|info| info["name"] == name).and_then(|info| info["nonce"].as_u64())
    }

    /// `quorumkey verifier register` (`command` "register") or `update`
    /// of `name` with `config`, waiting until it is finalized and every
    /// node has applied it (the command reads it back from one node; the
    /// others may be a block behind, and a lookup asks t of them).
    pub fn submit(&self, command: &str, name: &str, config: &serde_json::Value) {
        let description: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&self.network).unwrap()).unwrap();
        let apis: Vec<String> = description["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|node| node["api"].as_str().unwrap().to_owned())
            .collect();
        let before = self.nonce_at(&apis[0], name);
        self.submit_once(command, name, config);
        let expected = before.map_or(0, |nonce| nonce + 1);
        let deadline = Instant::now() + Duration::from_secs(30);
        for api in &apis {
            while self.nonce_at(api, name) != Some(expected) {
                assert!(Instant::now() < deadline, "{api} never applied {command} {name}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn submit_once(&self, command: &str, name: &str, config: &serde_json::Value) {
        let file = self.work.path().join(format!("{name}.json"));
        std::fs::write(&file, config.to_string()).unwrap();
        let (key, network) = (self.key(), self.network.clone());
        self.run(&[
            "verifier",
            command,
            "--name",
            name,
            "--config",
            file.to_str().unwrap(),
            "--owner-key",
            key.to_str().unwrap(),
            "--network",
            network.to_str().unwrap(),
        ]);
    }
}
