//! `network.json`: everything a client needs to use a network (each
//! node's index, endpoints and secp256k1 key, the threshold, the
//! registered verifiers, and on a devnet the development issuer and the
//! auxiliary hosts). `quorumkey devnet` writes it; clients read it.

use quorumkey_crypto::group::{PublicKey, public_key_from_xy_hex};
use quorumkey_crypto::shamir::majority_threshold;
use serde::{Deserialize, Serialize};

/// One node as `network.json` lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkJsonNode {
    /// Index from 1.
    pub index: u16,
    /// The node's JSON-RPC endpoint (what a Torus client calls).
    pub endpoint: String,
    /// The node's HTTP API (`/v1/...`, `/health`, `/metrics`).
    pub api: String,
    /// X of its secp256k1 public key, 64 hex digits.
    #[serde(rename = "pub_key_X")]
    pub pub_key_x: String,
    /// Y of its secp256k1 public key, 64 hex digits.
    #[serde(rename = "pub_key_Y")]
    pub pub_key_y: String,
    /// Where its peers reach it.
    pub p2p_address: String,
    /// Its log file.
    pub log: String,
}

/// The devnet's development issuer, as `network.json` lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkJsonDevIssuer {
    /// Its `iss` and base URL.
    pub issuer: String,
    /// Its JWKS.
    pub jwks_url: String,
    /// Where `quorumkey dev-token` (or a test) mints a token: POST
    /// `{"email": ...}`.
    pub token_endpoint: String,
    /// The verifier registered for it at genesis.
    pub verifier: String,
    /// The client id its tokens carry.
    pub audience: String,
}

/// The auxiliary hosts the Torus client calls, as `network.json` lists
/// them (the devnet serves them next to its development issuer).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkJsonAuxiliary {
    /// torus.js `allowHost`.
    pub allow_host: String,
    /// torus.js `signerHost` (KeyAssign authorizations).
    pub signer_host: String,
    /// torus.js `metadataHost`.
    pub metadata_host: String,
    /// The signer's key (compressed, hex) the nodes require on KeyAssign.
    pub signer_key: String,
}

/// `network.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkJson {
    /// The network id, hex.
    pub network_id: String,
    /// Shares needed to rebuild a key.
    pub threshold: usize,
    /// The nodes.
    pub nodes: Vec<NetworkJsonNode>,
    /// The verifiers registered at genesis, by name.
    #[serde(default)]
    pub verifiers: Vec<String>,
    /// The development issuer, if the devnet runs one.
    #[serde(default)]
    pub dev_issuer: Option<NetworkJsonDevIssuer>,
    /// The auxiliary hosts, if the devnet runs them.
    #[serde(default)]
    pub auxiliary: Option<NetworkJsonAuxiliary>,
}

impl NetworkJson {
    /// Parses and checks a description: at least one node, indexes 1..=n
    /// in order, every key on the curve, the threshold a majority.
    pub fn parse(text: &str) -> Result<Self, String> {
        let network: Self = serde_json::from_str(text).map_err(|e| format!("not a network description: {e}"))?;
        network.node_keys()?;
        Ok(network)
    }

    /// Each node's secp256k1 key, by position (node `i` at `i - 1`), after
    /// checking the description.
    pub fn node_keys(&self) -> Result<Vec<PublicKey>, String> {
        if self.nodes.is_empty() {
            return Err("the network lists no nodes".to_owned());
        }
        let mut keys = Vec::with_capacity(self.nodes.len());
        for (position, node) in self.nodes.iter().enumerate() {
            if usize::from(node.index) != position + 1 {
                return Err(format!(
                    "node {} is listed at position {}; list nodes 1..=n in order",
                    node.index,
                    position + 1
                ));
            }
            keys.push(
                public_key_from_xy_hex(&node.pub_key_x, &node.pub_key_y)
                    .map_err(|e| format!("node {}: pub_key_X/pub_key_Y: {e}", node.index))?,
            );
        }
        let expected = majority_threshold(self.nodes.len() as u32) as usize;
        if self.threshold != expected {
            return Err(format!(
                "threshold {} for {} nodes; quorumkey networks use a majority ({expected})",
                self.threshold,
                self.nodes.len()
            ));
        }
        Ok(keys)
    }
}
