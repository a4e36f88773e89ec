//! `network.json`: everything a client needs to use a network (each
//! node's index, endpoints and secp256k1 key, the threshold, the
//! registered verifiers, and on a devnet the development issuer and the
//! auxiliary hosts). `quorumkey devnet` writes it, every node serves it at
//! `GET /v1/network`, and clients read it.
//!
//! A description a node serves carries the network's genesis (from which
//! anyone recomputes the network id, and so checks every key and the
//! threshold) and the node's **attestation**: its secp256k1 signature over
//! what the description means (bytes decoded from hex, so no spelling of
//! a value changes it). Why a client that collects t attestations can
//! trust the rest (the addresses, which the network id does not cover):
//! the keys are those of the genesis whose id the client compares out of
//! band, at most t − 1 of them are dishonest, so t signatures include one
//! of an honest node, which signs only its network's real description.
//!
//! The node set changes with epochs, while the genesis does not: a node's
//! answer also carries `node_set` ([`NodeSetJson`]), the set in force on
//! its ledger (and the next one while a handover runs), with its own
//! attestation. That attestation is apart from the description's, which
//! keeps covering exactly what it covered before, so clients that do not
//! know `node_set` check descriptions as they did. A client trusts a node
//! set when `t` nodes of a set it already trusts attest it (see
//! `quorumkey_client::network_discovery`).

use commonware_codec::{DecodeExt as _, Encode as _};
use quorumkey_crypto::group::{PublicKey, public_key_from_sec1, public_key_from_xy_hex, public_key_to_xy_hex};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::shamir::majority_threshold;
use quorumkey_crypto::signature::RecoverableSignature;
use quorumkey_ledger::{Genesis, HandoverRecord, HandoverStage, NodeSet};
use serde::{Deserialize, Serialize};

/// The domain of attestation signatures (no other signature of a node key
/// can be taken for one).
const ATTESTATION_NAMESPACE: &[u8] = b"quorumkey/network-description/v1";
/// The domain of node set attestations.
const NODE_SET_NAMESPACE: &[u8] = b"quorumkey/node-set/v1";

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
    /// Its log file (devnets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
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
    /// The genesis, in its canonical encoding, hex (what the network id
    /// hashes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis: Option<String>,
    /// The serving node's signature over the description (as
    /// `GET /v1/network` answers; absent in a file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<NetworkAttestation>,
    /// The development issuer, if the devnet runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_issuer: Option<NetworkJsonDevIssuer>,
    /// The auxiliary hosts, if the devnet runs them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auxiliary: Option<NetworkJsonAuxiliary>,
    /// The node set in force, and the next one while a handover runs (a
    /// node's answer carries it, attested on its own; in a file, the set
    /// the client last trusted). Absent: the genesis set, `nodes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_set: Option<NodeSetJson>,
}

/// One node of an epoch's set, as `node_set` lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EpochNodeJson {
    /// Its index in the set, from 1 (its position: indexes change with the
    /// set).
    pub index: u16,
    /// Its JSON-RPC endpoint.
    pub endpoint: String,
    /// Its HTTP API (the `rpc_url` it advertises).
    pub api: String,
    /// X of its secp256k1 public key, 64 hex digits.
    #[serde(rename = "pub_key_X")]
    pub pub_key_x: String,
    /// Y of its secp256k1 public key, 64 hex digits.
    #[serde(rename = "pub_key_Y")]
    pub pub_key_y: String,
    /// Its ed25519 consensus key, 64 hex digits.
    pub consensus_key: String,
    /// Where its peers reach it.
    pub p2p_address: String,
}

/// The next epoch's set, decided by a `ProposeEpoch` (or a refresh) and
/// being handed every key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NextNodeSetJson {
    /// Its epoch (the one in force plus one).
    pub epoch: u64,
    /// Its threshold.
    pub threshold: usize,
    /// Its nodes, by index.
    pub nodes: Vec<EpochNodeJson>,
    /// The first height it serves, once every key is handed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boundary: Option<u64>,
}

/// The node set in force on a node's ledger (`node_set` in `GET
/// /v1/network`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeSetJson {
    /// The epoch in force (0: the genesis set).
    pub epoch: u64,
    /// Shares needed to rebuild a key in this set.
    pub threshold: usize,
    /// Its nodes, by index.
    pub nodes: Vec<EpochNodeJson>,
    /// The next epoch's set, while a handover runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextNodeSetJson>,
    /// The serving node's signature over the node sets (absent in a
    /// file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<NodeSetAttestation>,
}

/// A node's signature over a [`NodeSetJson`], by its secp256k1 key (which
/// need not be in either set: a node that left still runs the ledger).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeSetAttestation {
    /// The signing node's compressed secp256k1 key, hex.
    pub node_key: String,
    /// Recoverable ECDSA over keccak256 of the attested content, hex.
    pub signature: String,
}

/// A node's signature over a description.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkAttestation {
    /// The signing node's index.
    pub index: u16,
    /// Recoverable ECDSA over keccak256 of the attested content, hex.
    pub signature: String,
}

/// Why a description is not to be trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DescriptionError {
    /// The description is malformed or inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// It carries no genesis.
    #[error("the description carries no genesis, so its keys cannot be checked against the network id")]
    NoGenesis,
    /// Its genesis does not hash to its network id, or disagrees with it.
    #[error("the description contradicts its own genesis: {0}")]
    Genesis(String),
    /// It carries no attestation.
    #[error("the description is not attested by a node")]
    NotAttested,
    /// The attestation does not verify.
    #[error("the attestation of node {0} does not verify")]
    BadAttestation(u16),
    /// The node set's attestation does not verify.
    #[error("the node set's attestation does not verify")]
    BadNodeSetAttestation,
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
        checked_keys(self.threshold, self.nodes.iter().map(|node| (node.index, &node.pub_key_x, &node.pub_key_y)))
    }
}

/// Each node's key, after checking the list: at least one node, indexes
/// 1..=n in order, every key on the curve, the threshold a majority.
fn checked_keys<'a>(
    threshold: usize,
    nodes: impl ExactSizeIterator<Item = (u16, &'a String, &'a String)>,
) -> Result<Vec<PublicKey>, String> {
    let count = nodes.len();
    if count == 0 {
        return Err("the network lists no nodes".to_owned());
    }
    let mut keys = Vec::with_capacity(count);
    for (position, (index, x, y)) in nodes.enumerate() {
        if usize::from(index) != position + 1 {
            return Err(format!("node {index} is listed at position {}; list nodes 1..=n in order", position + 1));
        }
        keys.push(public_key_from_xy_hex(x, y).map_err(|e| format!("node {index}: pub_key_X/pub_key_Y: {e}"))?);
    }
    let expected = majority_threshold(count as u32) as usize;
    if threshold != expected {
        return Err(format!("threshold {threshold} for {count} nodes; quorumkey networks use a majority ({expected})"));
    }
    Ok(keys)
}

impl NetworkJson {
    /// What an attestation signs: the description's meaning (hex fields as
    /// bytes, each field length-prefixed), without the attestation and the
    /// devnet-only parts (log paths, development issuer, auxiliary hosts).
    pub fn attested_content(&self) -> Result<Vec<u8>, DescriptionError> {
        let invalid = |what: String| DescriptionError::Invalid(what);
        let mut out = Vec::with_capacity(512);
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        field(ATTESTATION_NAMESPACE);
        field(&hex::decode(&self.network_id).map_err(|_| invalid("network_id is not hex".to_owned()))?);
        field(&(self.threshold as u64).to_be_bytes());
        field(&(self.nodes.len() as u64).to_be_bytes());
        let keys = self.node_keys().map_err(invalid)?;
        for (node, key) in self.nodes.iter().zip(&keys) {
            field(&node.index.to_be_bytes());
            field(node.endpoint.as_bytes());
            field(node.api.as_bytes());
            field(&quorumkey_crypto::group::public_key_to_uncompressed(key));
            field(node.p2p_address.as_bytes());
        }
        field(&(self.verifiers.len() as u64).to_be_bytes());
        for verifier in &self.verifiers {
            field(verifier.as_bytes());
        }
        match &self.genesis {
            Some(genesis) => field(&hex::decode(genesis).map_err(|_| invalid("genesis is not hex".to_owned()))?),
            None => field(&[]),
        }
        Ok(out)
    }

    /// Signs the description as node `index` (replacing any attestation).
    pub fn attest(&mut self, index: u16, key: &SigningKey) -> Result<(), DescriptionError> {
        let content = self.attested_content()?;
        let signature = RecoverableSignature::sign_keccak(key, &content);
        self.attestation = Some(NetworkAttestation { index, signature: hex::encode(signature.to_bytes()) });
        Ok(())
    }

    /// The index of the node that attested this description, after
    /// checking its signature against the key the description lists for
    /// it.
    pub fn attested_by(&self) -> Result<u16, DescriptionError> {
        let attestation = self.attestation.as_ref().ok_or(DescriptionError::NotAttested)?;
        let bad = DescriptionError::BadAttestation(attestation.index);
        let keys = self.node_keys().map_err(DescriptionError::Invalid)?;
        let key = usize::from(attestation.index).checked_sub(1).and_then(|i| keys.get(i)).ok_or(bad.clone())?;
        let content = self.attested_content()?;
        hex::decode(&attestation.signature)
            .ok()
            .and_then(|bytes| RecoverableSignature::from_bytes(&bytes).ok())
            .and_then(|signature| signature.verify_keccak(key, &content).ok())
            .ok_or(bad)?;
        Ok(attestation.index)
    }

    /// Whether two descriptions mean the same network at the same
    /// addresses (attestations and devnet-only parts aside).
    pub fn same_as(&self, other: &Self) -> Result<bool, DescriptionError> {
        Ok(self.attested_content()? == other.attested_content()?)
    }

    /// The genesis this description carries, after checking that it hashes
    /// to the network id and lists the same node keys, threshold and
    /// verifiers as the description.
    pub fn checked_genesis(&self) -> Result<Genesis, DescriptionError> {
        let text = self.genesis.as_deref().ok_or(DescriptionError::NoGenesis)?;
        let wrong = |what: String| DescriptionError::Genesis(what);
        let bytes = hex::decode(text).map_err(|_| wrong("genesis is not hex".to_owned()))?;
        let genesis = Genesis::decode(bytes::Bytes::from(bytes.clone()))
            .map_err(|e| wrong(format!("genesis does not decode: {e}")))?;
        genesis.validate().map_err(|e| wrong(format!("genesis is not valid: {e}")))?;
        // The encoding is canonical: what decodes re-encodes to the same
        // bytes, so the id below is the id of exactly these bytes.
        if genesis.encode().as_ref() != bytes.as_slice() {
            return Err(wrong("genesis is not in its canonical encoding".to_owned()));
        }
        let id =
            hex::decode(&self.network_id).map_err(|_| DescriptionError::Invalid("network_id is not hex".to_owned()))?;
        if id != genesis.network_id() {
            return Err(wrong(format!(
                "it hashes to network id {}, not {}",
                hex::encode(genesis.network_id()),
                self.network_id
            )));
        }
        let keys = self.node_keys().map_err(DescriptionError::Invalid)?;
        if keys.len() != genesis.node_count() {
            return Err(wrong(format!("{} nodes listed, {} in the genesis", keys.len(), genesis.node_count())));
        }
        for (key, node) in keys.iter().zip(&genesis.nodes) {
            let genesis_key = public_key_from_sec1(&node.secp256k1_key)
                .map_err(|e| wrong(format!("node {}: key: {e}", node.index)))?;
            if &genesis_key != key {
                return Err(wrong(format!("node {}: the listed key is not the genesis key", node.index)));
            }
        }
        let names: Vec<&str> = genesis.verifiers.iter().map(|verifier| verifier.name.as_str()).collect();
        if names != self.verifiers.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(wrong("the verifiers listed are not the genesis verifiers".to_owned()));
        }
        Ok(genesis)
    }
}

/// Appends one length-prefixed field.
fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The nodes of `set` as `node_set` lists them. A genesis node carries no
/// address in the ledger (epoch 0, and the refreshes of the genesis set):
/// its addresses are those `listed` (the network's configuration) gives
/// for its key.
fn epoch_nodes(
    set: &NodeSet,
    listed: &[(PublicKey, &NetworkJsonNode)],
) -> Result<Vec<EpochNodeJson>, DescriptionError> {
    set.nodes
        .iter()
        .zip(1u16..)
        .map(|(node, index)| {
            let key = public_key_from_sec1(&node.secp256k1_key)
                .map_err(|e| DescriptionError::Invalid(format!("node {index} of epoch {}: {e}", set.epoch)))?;
            let (pub_key_x, pub_key_y) = public_key_to_xy_hex(&key);
            let (endpoint, api, p2p_address) = if node.rpc_url.is_empty() || node.p2p_address.is_empty() {
                match listed.iter().find(|(listed_key, _)| listed_key == &key) {
                    Some((_, entry)) => (entry.endpoint.clone(), entry.api.clone(), entry.p2p_address.clone()),
                    None => (String::new(), String::new(), String::new()),
                }
            } else {
                let api = node.rpc_url.trim_end_matches('/').to_owned();
                (format!("{api}/jrpc"), api, node.p2p_address.clone())
            };
            Ok(EpochNodeJson {
                index,
                endpoint,
                api,
                pub_key_x,
                pub_key_y,
                consensus_key: hex::encode(node.consensus_key.as_ref()),
                p2p_address,
            })
        })
        .collect()
}

/// What an attestation signs of one set: its epoch, threshold and nodes.
fn set_content(
    out: &mut Vec<u8>,
    epoch: u64,
    threshold: usize,
    nodes: &[EpochNodeJson],
) -> Result<Vec<PublicKey>, DescriptionError> {
    let invalid = |what: String| DescriptionError::Invalid(format!("node set of epoch {epoch}: {what}"));
    let keys = checked_keys(threshold, nodes.iter().map(|node| (node.index, &node.pub_key_x, &node.pub_key_y)))
        .map_err(invalid)?;
    field(out, &epoch.to_be_bytes());
    field(out, &(threshold as u64).to_be_bytes());
    field(out, &(nodes.len() as u64).to_be_bytes());
    for (node, key) in nodes.iter().zip(&keys) {
        let consensus = hex::decode(&node.consensus_key)
            .ok()
            .filter(|bytes| bytes.len() == 32)
            .ok_or_else(|| invalid(format!("node {}: consensus_key is not 64 hex digits", node.index)))?;
        field(out, &node.index.to_be_bytes());
        field(out, node.endpoint.as_bytes());
        field(out, node.api.as_bytes());
        field(out, &quorumkey_crypto::group::public_key_to_uncompressed(key));
        field(out, &consensus);
        field(out, node.p2p_address.as_bytes());
    }
    Ok(keys)
}

impl NodeSetJson {
    /// The node set in force (`current`) and, while `handover` runs, the
    /// next one, as a node describes them; `listed` is the network's
    /// description, whose addresses serve for genesis nodes.
    pub fn from_ledger(
        current: &NodeSet,
        handover: Option<&HandoverRecord>,
        listed: &[NetworkJsonNode],
    ) -> Result<Self, DescriptionError> {
        let listed: Vec<(PublicKey, &NetworkJsonNode)> = listed
            .iter()
            .filter_map(|node| public_key_from_xy_hex(&node.pub_key_x, &node.pub_key_y).ok().map(|key| (key, node)))
            .collect();
        let next = handover
            .map(|handover| {
                Ok::<_, DescriptionError>(NextNodeSetJson {
                    epoch: handover.next.epoch,
                    threshold: handover.next.threshold(),
                    nodes: epoch_nodes(&handover.next, &listed)?,
                    boundary: match handover.stage {
                        HandoverStage::Ready { boundary, .. } => Some(boundary),
                        HandoverStage::Draining | HandoverStage::Resharing { .. } => None,
                    },
                })
            })
            .transpose()?;
        Ok(Self {
            epoch: current.epoch,
            threshold: current.threshold(),
            nodes: epoch_nodes(current, &listed)?,
            next,
            attestation: None,
        })
    }

    /// Each node's key in the set in force, by position, after checking
    /// the list (as [`NetworkJson::node_keys`]).
    pub fn node_keys(&self) -> Result<Vec<PublicKey>, String> {
        checked_keys(self.threshold, self.nodes.iter().map(|node| (node.index, &node.pub_key_x, &node.pub_key_y)))
    }

    /// What the set in force means (epoch, threshold, each node's fields,
    /// keys as points): equal for two descriptions of the same set,
    /// whatever their hex spelling.
    pub fn current_content(&self) -> Result<Vec<u8>, DescriptionError> {
        let mut out = Vec::with_capacity(256);
        set_content(&mut out, self.epoch, self.threshold, &self.nodes)?;
        Ok(out)
    }

    /// What the next set means (without its boundary, which moves as the
    /// handover goes on), if there is one.
    pub fn next_content(&self) -> Result<Option<Vec<u8>>, DescriptionError> {
        self.next
            .as_ref()
            .map(|next| {
                let mut out = Vec::with_capacity(256);
                set_content(&mut out, next.epoch, next.threshold, &next.nodes)?;
                Ok(out)
            })
            .transpose()
    }

    /// What an attestation signs: the namespace, the network id (hex, as
    /// bytes), the set in force, and the next set with its boundary if
    /// any. A next set must be the following epoch.
    pub fn attested_content(&self, network_id: &str) -> Result<Vec<u8>, DescriptionError> {
        let id = hex::decode(network_id).map_err(|_| DescriptionError::Invalid("network_id is not hex".to_owned()))?;
        let mut out = Vec::with_capacity(512);
        field(&mut out, NODE_SET_NAMESPACE);
        field(&mut out, &id);
        out.extend_from_slice(&self.current_content()?);
        match &self.next {
            None => field(&mut out, &[0]),
            Some(next) => {
                if Some(next.epoch) != self.epoch.checked_add(1) {
                    return Err(DescriptionError::Invalid(format!(
                        "the next node set is epoch {}, not epoch {} + 1",
                        next.epoch, self.epoch
                    )));
                }
                field(&mut out, &[1]);
                set_content(&mut out, next.epoch, next.threshold, &next.nodes)?;
                match next.boundary {
                    None => field(&mut out, &[0]),
                    Some(boundary) => field(&mut out, &boundary.to_be_bytes()),
                }
            }
        }
        Ok(out)
    }

    /// Signs the node sets with `key` for network `network_id` (replacing
    /// any attestation).
    pub fn attest(&mut self, network_id: &str, key: &SigningKey) -> Result<(), DescriptionError> {
        let content = self.attested_content(network_id)?;
        let signature = RecoverableSignature::sign_keccak(key, &content);
        let node_key =
            hex::encode(quorumkey_crypto::group::point_to_bytes(&PublicKey::from(key.verifying_key()).to_projective()));
        self.attestation = Some(NodeSetAttestation { node_key, signature: hex::encode(signature.to_bytes()) });
        Ok(())
    }

    /// The key that attested these node sets for network `network_id`,
    /// after checking its signature. Whose key it is, the caller checks.
    pub fn attested_by(&self, network_id: &str) -> Result<PublicKey, DescriptionError> {
        let attestation = self.attestation.as_ref().ok_or(DescriptionError::NotAttested)?;
        let bad = DescriptionError::BadNodeSetAttestation;
        let key = hex::decode(&attestation.node_key)
            .ok()
            .and_then(|bytes| public_key_from_sec1(&bytes).ok())
            .ok_or(bad.clone())?;
        let content = self.attested_content(network_id)?;
        hex::decode(&attestation.signature)
            .ok()
            .and_then(|bytes| RecoverableSignature::from_bytes(&bytes).ok())
            .and_then(|signature| signature.verify_keccak(&key, &content).ok())
            .ok_or(bad)?;
        Ok(key)
    }
}
