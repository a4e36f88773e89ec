//! Shared by the multi-process test and the devnet benchmark: free ports,
//! and signing ledger transactions with a devnet's own node keys.
#![allow(dead_code, reason = "each test and benchmark uses a different part")]

use std::path::Path;

pub mod proxy;

use commonware_codec::Encode;
use quorumkey_crypto::group::{Point, point_to_bytes};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_ledger::{Ledger, SignedTransaction, TransactionBody, VerifierId, VerifierName};
use quorumkey_node::config::{NETWORK_FILE, NetworkDkg, NetworkFile};
use quorumkey_node::devnet::DevnetOptions;
use quorumkey_node::identity::NodeIdentity;

/// A base port for `nodes` nodes (see `quorumkey_node::devnet::free_port_base`).
pub fn free_port_base(nodes: u16, avoid: u16) -> u16 {
    quorumkey_node::devnet::free_port_base(nodes, avoid).expect("free ports")
}

/// A valid JWT verifier configuration for the tests' registrations.
pub const TEST_VERIFIER_CONFIG: &str = r#"{"type":"jwt","issuer":"https://issuer.test","audiences":["quorumkey-test"],"keys":{"jwks_url":"https://issuer.test/jwks"},"verifier_id_claim":"email","max_token_age_secs":3600}"#;

/// A new devnet of `nodes` nodes in `dir/devnet`, on free ports, run with
/// this crate's `quorumkey` binary.
pub fn devnet_options(dir: &Path, nodes: u16, dkg: NetworkDkg) -> DevnetOptions {
    let p2p = free_port_base(nodes, 0);
    let rpc = free_port_base(nodes, p2p);
    DevnetOptions {
        nodes,
        dir: dir.join("devnet"),
        p2p_base_port: p2p,
        rpc_base_port: rpc,
        binary: env!("CARGO_BIN_EXE_quorumkey").into(),
        dkg,
        rpc: Default::default(),
    }
}

/// This machine's cores.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU model and core count, for benchmark reports.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpu}, {} cores", cores())
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
