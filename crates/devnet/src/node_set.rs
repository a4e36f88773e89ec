//! Changing a running devnet's node set: nodes added, removed or replaced
//! by an epoch change, as operators would make it (`docs/operations.md`,
//! "Changing the node set"), with the keys the devnet holds in its node
//! directories.
//!
//! - The devnet makes a joining node as its operator would: `node keygen`
//!   into `node-K` (the next unused number, free ports on 127.0.0.1, the
//!   client settings of node 1), `network.toml` copied beside it.
//! - The proposal is the set in force (asked of a running node's
//!   `/v1/epoch`; the genesis nodes' addresses from `network.toml`) minus
//!   the node removed, plus the enrollment of the node added; 2f + 1 nodes
//!   of the set in force sign it with their consensus keys (each found at
//!   its index in the set in force by its key), and it is submitted to a
//!   node, which answers once it is decided.
//! - The devnet remembers what it added and removed in [`NODE_SET_FILE`],
//!   so a devnet started again on its directory starts the nodes it added
//!   and leaves the removed ones down; a change whose epoch is not in force
//!   yet is remembered too, and watched again.
//!
//! One change at a time: a second is refused while a handover runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use commonware_codec::DecodeExt as _;
use commonware_cryptography::ed25519;
use quorumkey_client::node_api_client::{ApiClientError, NodeApiClient};
use quorumkey_ledger::{EpochNode, NodeSet, SignedTransaction, TransactionBody};
use quorumkey_login::node_api::{EpochNodeInfo, EpochResponse};
use quorumkey_node::addresses::RpcUrl;
use quorumkey_node::config::{ConfigError, NETWORK_FILE, NetworkFile, NodeConfig};
use quorumkey_node::enrollment::{Enrollment, KeygenOptions, keygen};
use quorumkey_node::identity::NodeIdentity;
use quorumkey_node::run::node_config_path;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::supervisor::{
    Devnet, DevnetError, DevnetNode, EPOCH_QUESTION_LIMIT, STOP_ON_REQUEST_LIMIT, free_port_base, node_dir,
};

/// The file in the devnet directory that remembers the nodes added and
/// removed since the genesis.
pub const NODE_SET_FILE: &str = "node-set.toml";

/// What [`NODE_SET_FILE`] holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSetFile {
    /// Nodes added after the genesis, by number (their directories
    /// `node-K`), in the order they were added.
    #[serde(default)]
    pub added: Vec<u16>,
    /// Nodes removed: an epoch without them is in force and their
    /// processes are not started again.
    #[serde(default)]
    pub removed: Vec<RemovedNode>,
    /// The change decided whose epoch is not in force yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingChange>,
}

/// A node removed from the devnet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovedNode {
    /// Its number.
    pub node: u16,
    /// The first epoch without it.
    pub epoch: u64,
}

/// A change decided by the network whose epoch is not in force yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingChange {
    /// The epoch it starts.
    pub epoch: u64,
    /// The node it adds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<u16>,
    /// The node it removes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<u16>,
}

impl std::fmt::Display for PendingChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.added, self.removed) {
            (Some(added), Some(removed)) => write!(f, "node {added} replaces node {removed}"),
            (Some(added), None) => write!(f, "node {added} joins"),
            (None, Some(removed)) => write!(f, "node {removed} leaves"),
            (None, None) => f.write_str("a refresh"),
        }
    }
}

/// Why [`NODE_SET_FILE`] could not be read or written.
#[derive(Debug, Error)]
pub enum NodeSetFileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not one this devnet wrote.
    #[error("{path}: {reason} (the devnet writes this file when nodes are added or removed; do not edit it)")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl NodeSetFile {
    /// Reads the file in `dir`; none there is an unchanged set.
    /// `genesis_nodes` is the genesis's size: added nodes are numbered
    /// after it.
    pub fn load(dir: &Path, genesis_nodes: usize) -> Result<Self, NodeSetFileError> {
        let path = dir.join(NODE_SET_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(source) if source.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(NodeSetFileError::Io { path, source }),
        };
        let invalid = |reason: String| NodeSetFileError::Invalid { path: path.clone(), reason };
        let file: Self = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        file.check(genesis_nodes).map_err(invalid)?;
        Ok(file)
    }

    /// Numbers that make sense: each added node after the genesis and
    /// once, each removed node known and removed once.
    fn check(&self, genesis_nodes: usize) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for &node in &self.added {
            if usize::from(node) <= genesis_nodes || !seen.insert(node) {
                return Err(format!("node {node} is listed as added twice, or is a genesis node"));
            }
        }
        let known = |node: u16| (node >= 1 && usize::from(node) <= genesis_nodes) || seen.contains(&node);
        let mut removed = std::collections::BTreeSet::new();
        for entry in &self.removed {
            if !known(entry.node) || !removed.insert(entry.node) {
                return Err(format!("node {} is removed twice, or was never part of the devnet", entry.node));
            }
        }
        if let Some(pending) = &self.pending {
            for node in pending.added.iter().chain(&pending.removed) {
                if !known(*node) || removed.contains(node) {
                    return Err(format!("the pending change names node {node}, which is unknown or removed"));
                }
            }
        }
        Ok(())
    }

    /// Writes the file into `dir` (a new file renamed over the old one: a
    /// crash leaves one or the other).
    pub fn save(&self, dir: &Path) -> Result<(), NodeSetFileError> {
        let path = dir.join(NODE_SET_FILE);
        let fresh = dir.join(format!(".{NODE_SET_FILE}.new"));
        let text = toml::to_string_pretty(self)
            .map_err(|e| NodeSetFileError::Invalid { path: path.clone(), reason: e.to_string() })?;
        let header = "# The nodes `quorumkey devnet-node add|remove` added to and removed from this devnet.\n";
        std::fs::write(&fresh, format!("{header}{text}"))
            .and_then(|()| std::fs::rename(&fresh, &path))
            .map_err(|source| NodeSetFileError::Io { path, source })
    }

    /// The epoch from which node `node` is out, if it was removed.
    pub fn removed_in(&self, node: u16) -> Option<u64> {
        self.removed.iter().find(|entry| entry.node == node).map(|entry| entry.epoch)
    }
}

/// One node of the set in force as the ledger's next set lists it: its
/// keys and its addresses (the ledger's, or for a genesis node while the
/// genesis set is in force, `network.toml`'s).
pub fn epoch_node(info: &EpochNodeInfo, network: &NetworkFile) -> Result<EpochNode, String> {
    let consensus_key = hex::decode(&info.consensus_key)
        .ok()
        .and_then(|bytes| ed25519::PublicKey::decode(bytes::Bytes::from(bytes)).ok())
        .ok_or_else(|| format!("node {}'s consensus key from the network is not an ed25519 key", info.index))?;
    let secp256k1_key: [u8; 33] = hex::decode(&info.secp256k1_key)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| format!("node {}'s secp256k1 key from the network is not 33 bytes of hex", info.index))?;
    let (mut p2p_address, mut rpc_url) = (info.p2p_address.clone(), info.rpc_url.clone());
    if p2p_address.is_empty() || rpc_url.is_empty() {
        let listed = network.nodes.iter().find(|node| node.consensus_key == info.consensus_key).ok_or_else(|| {
            format!("node {} of the set in force has no addresses on the ledger nor in network.toml", info.index)
        })?;
        p2p_address = listed.p2p_address.to_string();
        rpc_url = listed.rpc_url.to_string();
    }
    Ok(EpochNode { consensus_key, secp256k1_key, p2p_address, rpc_url })
}

/// The next set: the one in force (`in_force`) without the node at index
/// `remove`, with `add` last; checked as the ledger checks it.
pub fn next_set(
    in_force: &EpochResponse,
    network: &NetworkFile,
    remove: Option<u16>,
    add: Option<&Enrollment>,
) -> Result<NodeSet, String> {
    let mut nodes = Vec::with_capacity(in_force.nodes.len() + 1);
    for info in in_force.nodes.iter().filter(|info| Some(info.index) != remove) {
        nodes.push(epoch_node(info, network)?);
    }
    if let Some(enrollment) = add {
        enrollment.verify().map_err(|e| format!("the new node's enrollment: {e}"))?;
        let info = EpochNodeInfo {
            index: 0,
            consensus_key: enrollment.consensus_key.clone(),
            secp256k1_key: enrollment.secp256k1_key.clone(),
            p2p_address: enrollment.p2p_address.to_string(),
            rpc_url: enrollment.rpc_url.to_string(),
        };
        nodes.push(epoch_node(&info, network)?);
    }
    let set = NodeSet { epoch: in_force.epoch + 1, nodes };
    set.validate().map_err(|e| e.to_string())?;
    Ok(set)
}

/// The `ProposeEpoch` for `next`, signed by `signers` (each with its index
/// in the set in force).
pub fn signed_proposal(network_id: &[u8; 32], next: NodeSet, signers: &[(u16, &NodeIdentity)]) -> SignedTransaction {
    let body = TransactionBody::ProposeEpoch { epoch: next.epoch, nodes: next.nodes };
    let signatures = signers
        .iter()
        .map(|(index, identity)| {
            (*index, SignedTransaction::operator_signature(network_id, &body, &identity.consensus))
        })
        .collect();
    SignedTransaction::from_operators(body, signatures)
}

/// A change of the node set, decided by the network
/// ([`Devnet::add_node`], [`Devnet::remove_node`], [`Devnet::replace_node`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSetChange {
    /// The epoch that has the new set.
    pub epoch: u64,
    /// The height of the block that decided it.
    pub decided_height: u64,
    /// The node added (started already), and its index in the new set.
    pub added: Option<(u16, u16)>,
    /// The node removed (it runs until the new epoch is in force).
    pub removed: Option<u16>,
    /// Nodes in the new set.
    pub nodes: usize,
    /// The node the proposal was submitted to.
    pub submitted_to: String,
}

impl std::fmt::Display for NodeSetChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "epoch {} decided at height {}: {} nodes", self.epoch, self.decided_height, self.nodes)?;
        if let Some((node, index)) = self.added {
            write!(f, ", node {node} joins as index {index}")?;
        }
        if let Some(node) = self.removed {
            write!(f, ", node {node} leaves")?;
        }
        Ok(())
    }
}

/// A change whose epoch has come into force ([`Devnet::finish_change`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedChange {
    /// The epoch now in force.
    pub epoch: u64,
    /// The node that joined.
    pub added: Option<u16>,
    /// The node removed (its process stopped).
    pub removed: Option<u16>,
    /// Whether the removed node said it holds no key share any more
    /// before it was stopped.
    pub removed_shares_deleted: Option<bool>,
}

/// Adding, removing and replacing nodes of a running devnet.
impl Devnet {
    /// Adds a node to the network: a new node `node-K` (K the next number,
    /// free ports on 127.0.0.1), proposed as the last of the next epoch's
    /// set with the signatures of 2f + 1 nodes of the set in force,
    /// submitted, and started once the proposal is decided (an observer
    /// until the new epoch is in force). Returns when the proposal is
    /// decided; [`Self::change_watch`] then follows the handover and
    /// [`Self::finish_change`] completes it.
    pub async fn add_node(&mut self) -> Result<NodeSetChange, DevnetError> {
        self.change_set(true, None).await
    }

    /// Removes node `number` from the network: the next epoch's set is the
    /// one in force without it. Its process runs until that epoch is in
    /// force ([`Self::finish_change`] stops it), then it is not started
    /// again.
    pub async fn remove_node(&mut self, number: u16) -> Result<NodeSetChange, DevnetError> {
        self.change_set(false, Some(number)).await
    }

    /// Replaces node `number` by a new node, in one proposal (as
    /// [`Self::add_node`] and [`Self::remove_node`] together).
    pub async fn replace_node(&mut self, number: u16) -> Result<NodeSetChange, DevnetError> {
        self.change_set(true, Some(number)).await
    }

    async fn change_set(&mut self, add: bool, remove: Option<u16>) -> Result<NodeSetChange, DevnetError> {
        let refuse = |reason: String| Err(DevnetError::Change(reason));
        if let Some(pending) = &self.node_set.pending {
            return refuse(format!(
                "the change to epoch {} ({pending}) is under way; one change at a time: wait until epoch {} is in force (`quorumkey devnet-node status` shows it)",
                pending.epoch, pending.epoch
            ));
        }
        if let Some(number) = remove {
            if !self.nodes.iter().any(|node| node.number == number) {
                return refuse(format!("node {number} does not exist (this devnet has {} nodes)", self.nodes.len()));
            }
            if let Some(epoch) = self.node_set.removed_in(number) {
                return refuse(format!("node {number} was removed already (epoch {epoch} is in force without it)"));
            }
        }
        let (client, in_force) = self.ask_epoch(None).await?;
        if let Some(handover) = &in_force.handover {
            return refuse(format!(
                "the handover to epoch {} is under way ({}); one change at a time: wait until it is in force (`quorumkey network epoch show --watch --node {}`)",
                handover.epoch,
                handover.stage,
                client.base()
            ));
        }
        // The nodes in force whose keys the devnet holds, and the index of
        // the one removed.
        let mut signers = Vec::new();
        let mut removed_index = None;
        for info in &in_force.nodes {
            let Some(number) = self.number_of(&info.consensus_key) else { continue };
            if Some(number) == remove {
                removed_index = Some(info.index);
            }
            signers.push((info.index, number));
        }
        if let (Some(number), None) = (remove, removed_index) {
            return refuse(format!("node {number} is not in the set of epoch {}, which is in force", in_force.epoch));
        }
        let quorum = {
            let n = in_force.nodes.len();
            (2 * (n.saturating_sub(1) / 3) + 1).min(n)
        };
        if signers.len() < quorum {
            return refuse(format!(
                "the devnet holds the keys of {} nodes of epoch {}, and a change needs {quorum} operators' signatures",
                signers.len(),
                in_force.epoch
            ));
        }
        signers.truncate(quorum);
        let identities = signers
            .iter()
            .map(|&(index, number)| {
                NodeIdentity::load(&node_dir(&self.dir, number))
                    .map(|identity| (index, identity))
                    .map_err(|e| DevnetError::Change(format!("node {number}'s keys: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let genesis = self
            .network
            .genesis()
            .map_err(|reason| ConfigError::Invalid { path: self.dir.join(NETWORK_FILE), reason })?;

        let added = if add { Some(self.make_node()?) } else { None };
        let next = match next_set(&in_force, &self.network, removed_index, added.as_ref().map(|(_, e)| e)) {
            Ok(next) => next,
            Err(reason) => {
                self.discard_new_node(added.as_ref());
                return refuse(format!("the next set is not valid: {reason}"));
            }
        };
        let epoch = next.epoch;
        let nodes = next.nodes.len();
        let keys: Vec<String> = next.nodes.iter().map(|node| hex::encode(node.consensus_key.as_ref())).collect();
        let signer_refs: Vec<(u16, &NodeIdentity)> = identities.iter().map(|(index, id)| (*index, id)).collect();
        let transaction = signed_proposal(&genesis.network_id(), next, &signer_refs);
        let encoded = commonware_codec::Encode::encode(&transaction);
        let decided_height = match self.submit_proposal(&client, &encoded, epoch, &keys).await {
            Ok(height) => height,
            Err(error) => {
                self.discard_new_node(added.as_ref());
                return Err(error);
            }
        };

        let added_number = added.as_ref().map(|(node, _)| node.number);
        if let Some((node, _)) = added {
            self.node_set.added.push(node.number);
            self.nodes.push(node);
        }
        self.node_set.pending = Some(PendingChange { epoch, added: added_number, removed: remove });
        self.node_set.save(&self.dir)?;
        if let Some(number) = added_number {
            self.start_node(number)?;
        }
        let added_index = u16::try_from(nodes).unwrap_or(u16::MAX);
        Ok(NodeSetChange {
            epoch,
            decided_height,
            added: added_number.map(|number| (number, added_index)),
            removed: remove,
            nodes,
            submitted_to: client.base().to_owned(),
        })
    }

    /// Submits the proposal and waits until it is decided: the height that
    /// decided it. When the node's answer leaves it open (no answer in
    /// time), the network's handover says whether this proposal was taken.
    async fn submit_proposal(
        &self,
        client: &NodeApiClient,
        encoded: &[u8],
        epoch: u64,
        keys: &[String],
    ) -> Result<u64, DevnetError> {
        let unclear = match client.submit(encoded, true).await {
            Ok(answer) => match answer.status.as_str() {
                "finalized" | "already_finalized" => return Ok(answer.height.unwrap_or(0)),
                "rejected" => {
                    return Err(DevnetError::Change(format!(
                        "the network rejected the proposal of epoch {epoch}: {}",
                        answer.rejection.unwrap_or_else(|| "no reason given".to_owned())
                    )));
                }
                other => format!("status {other}"),
            },
            Err(ApiClientError::Node { status, message, .. }) => {
                return Err(DevnetError::Change(format!(
                    "{} refused the proposal of epoch {epoch} (HTTP {status}): {message}",
                    client.base()
                )));
            }
            Err(error) => error.to_string(),
        };
        let answer = tokio::time::timeout(EPOCH_QUESTION_LIMIT, client.epoch()).await;
        if let Ok(Ok(answer)) = answer
            && let Some(handover) = &answer.handover
            && handover.epoch == epoch
            && handover.nodes.iter().map(|node| &node.consensus_key).eq(keys.iter())
        {
            return Ok(handover.decided_height);
        }
        Err(DevnetError::Change(format!(
            "the proposal of epoch {epoch} was not decided ({unclear}); nothing changed, try again"
        )))
    }

    /// A new node's directory, as its operator would make it with `node
    /// keygen` (the client settings of the first genesis node, so that it
    /// answers as the others do), with `network.toml` copied beside it.
    fn make_node(&self) -> Result<(DevnetNode, Enrollment), DevnetError> {
        let number = self.nodes.iter().map(|node| node.number).max().unwrap_or(0).saturating_add(1);
        let dir = node_dir(&self.dir, number);
        if dir.exists() {
            return Err(DevnetError::Change(format!(
                "{} exists but is not a node of this devnet (left by an add that was interrupted?); remove it and add again",
                dir.display()
            )));
        }
        let used: Vec<u16> =
            self.nodes.iter().flat_map(|node| [node.p2p_address.port(), node.rpc_url_port()]).collect();
        let port = |kind: &str, preferred: Option<u16>| {
            preferred
                .filter(|port| !used.contains(port) && std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
                .or_else(|| (0..20).find_map(|_| free_port_base(0, 0).filter(|port| !used.contains(port))))
                .ok_or_else(|| DevnetError::Change(format!("no free {kind} port on 127.0.0.1 for node {number}")))
        };
        // Next to the genesis nodes' ports when free: node k on base + k.
        let first = self.nodes.first();
        let offset = |base: Option<u16>| base.and_then(|base| base.checked_sub(1)?.checked_add(number));
        let p2p = port("p2p", offset(first.map(|node| node.p2p_address.port())))?;
        let rpc = port("API", offset(first.map(DevnetNode::rpc_url_port)))?;
        let template = NodeConfig::load(&node_config_path(&self.dir, first.map_or(1, |node| node.number)))?;
        let options = KeygenOptions {
            listen: Default::default(),
            rpc: template.rpc,
            providers: template.providers,
            http: template.http,
        };
        let rpc_url = RpcUrl::parse(&format!("http://127.0.0.1:{rpc}"))
            .map_err(|reason| ConfigError::Invalid { path: dir.clone(), reason })?;
        let enrollment = keygen(&dir, SocketAddr::from(([127, 0, 0, 1], p2p)), &rpc_url, &options)?;
        let copied = dir.join(NETWORK_FILE);
        if let Err(source) = std::fs::copy(self.dir.join(NETWORK_FILE), &copied) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(DevnetError::Io { path: copied, source });
        }
        let node = DevnetNode {
            number,
            consensus_key: enrollment.consensus_key.clone(),
            secp256k1_key: enrollment.secp256k1_key.clone(),
            p2p_address: enrollment.p2p_address,
            rpc_url: enrollment.rpc_url.clone(),
        };
        Ok((node, enrollment))
    }

    /// Removes the directory of a new node whose proposal failed (it never
    /// ran and no epoch names it).
    fn discard_new_node(&self, added: Option<&(DevnetNode, Enrollment)>) {
        if let Some((node, _)) = added {
            let _ = std::fs::remove_dir_all(node_dir(&self.dir, node.number));
        }
    }

    /// What follows the pending change to its end, if one is pending: to
    /// run apart from the devnet (it only asks the nodes), then to give to
    /// [`Self::finish_change`].
    pub fn change_watch(&self) -> Option<ChangeWatch> {
        let pending = self.node_set.pending.clone()?;
        let client = |number: Option<u16>| number.and_then(|number| self.client(number));
        let members = self
            .nodes
            .iter()
            .filter(|node| {
                Some(node.number) != pending.removed
                    && Some(node.number) != pending.added
                    && self.node_set.removed_in(node.number).is_none()
            })
            .map(|node| NodeApiClient::new(node.rpc_url.to_string()))
            .collect();
        Some(ChangeWatch { members, joining: client(pending.added), leaving: client(pending.removed), pending })
    }

    /// The pending change's epoch is in force (`answer`, from
    /// [`ChangeWatch::wait_in_force`]): `network.json` describes the new
    /// set from now on. The change stays pending until
    /// [`Self::finish_change`].
    pub fn epoch_in_force(&mut self, answer: EpochResponse) -> Result<PathBuf, DevnetError> {
        self.in_force = Some(answer);
        self.write_network_json()
    }

    /// Completes the pending change once its epoch is in force (`in_force`,
    /// from [`ChangeWatch::wait`]): stops the removed node and records it
    /// as removed, and writes `network.json` for the new set.
    pub async fn finish_change(&mut self, in_force: Watched) -> Result<CompletedChange, DevnetError> {
        let Some(pending) = self.node_set.pending.clone() else {
            return Err(DevnetError::Change("no change is pending".to_owned()));
        };
        if in_force.epoch.epoch < pending.epoch {
            return Err(DevnetError::Change(format!(
                "epoch {} is not in force yet (epoch {} is)",
                pending.epoch, in_force.epoch.epoch
            )));
        }
        if let Some(number) = pending.removed {
            self.stop_node(number, STOP_ON_REQUEST_LIMIT).await;
            self.node_set.removed.push(RemovedNode { node: number, epoch: pending.epoch });
        }
        self.node_set.pending = None;
        self.node_set.save(&self.dir)?;
        self.in_force = Some(in_force.epoch);
        self.write_network_json()?;
        Ok(CompletedChange {
            epoch: pending.epoch,
            added: pending.added,
            removed: pending.removed,
            removed_shares_deleted: in_force.leaving_shares_deleted,
        })
    }

    /// Follows the pending change until its epoch is in force and completes
    /// it ([`Self::change_watch`], [`Self::finish_change`]); `None` if no
    /// change is pending.
    pub async fn wait_for_change(&mut self, limit: Duration) -> Result<Option<CompletedChange>, DevnetError> {
        let Some(watch) = self.change_watch() else { return Ok(None) };
        let epoch = watch.pending.epoch;
        let answer = tokio::time::timeout(limit, watch.wait_in_force())
            .await
            .map_err(|_| DevnetError::Change(format!("epoch {epoch} did not come into force within {limit:?}")))?;
        self.epoch_in_force(answer.clone())?;
        let leaving_shares_deleted = watch.wait_switched().await;
        self.finish_change(Watched { epoch: answer, leaving_shares_deleted }).await.map(Some)
    }
}

/// How long [`ChangeWatch::wait`] waits for the joining and the leaving
/// node to switch once the new epoch is in force.
const SWITCH_LIMIT: Duration = Duration::from_secs(60);

/// Follows a pending change until its epoch is in force
/// ([`Devnet::change_watch`]); asks the nodes only, so it runs apart from
/// the devnet.
#[derive(Clone, Debug)]
pub struct ChangeWatch {
    pending: PendingChange,
    /// Nodes that stay (the new set's, but the joining one).
    members: Vec<NodeApiClient>,
    joining: Option<NodeApiClient>,
    leaving: Option<NodeApiClient>,
}

/// What [`ChangeWatch::wait`] saw.
#[derive(Clone, Debug)]
pub struct Watched {
    /// The set in force, from a node that stays.
    pub epoch: EpochResponse,
    /// Whether the leaving node said it holds no key share any more (in
    /// the new epoch, before [`SWITCH_LIMIT`]).
    pub leaving_shares_deleted: Option<bool>,
}

impl ChangeWatch {
    /// The change followed.
    pub fn pending(&self) -> &PendingChange {
        &self.pending
    }

    /// Waits until a node that stays has the new epoch in force: its
    /// answer. Never fails: it asks again until a node answers.
    pub async fn wait_in_force(&self) -> EpochResponse {
        let epoch = self.pending.epoch;
        loop {
            for client in &self.members {
                if let Ok(Ok(answer)) = tokio::time::timeout(EPOCH_QUESTION_LIMIT, client.epoch()).await
                    && answer.epoch >= epoch
                {
                    return answer;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Once the new epoch is in force: waits (at most [`SWITCH_LIMIT`])
    /// until the joining node has it in force too, and the leaving node
    /// has it and has deleted its shares; whether the leaving node did
    /// (`None`: no node leaves).
    pub async fn wait_switched(&self) -> Option<bool> {
        let epoch = self.pending.epoch;
        let deadline = Instant::now() + SWITCH_LIMIT;
        let switched = |client: &NodeApiClient, leaving: bool| {
            let client = client.clone();
            async move {
                loop {
                    if let Ok(Ok(status)) = tokio::time::timeout(EPOCH_QUESTION_LIMIT, client.status()).await
                        && status.epoch >= epoch
                        && (!leaving || status.key_shares == 0)
                    {
                        return true;
                    }
                    if Instant::now() > deadline {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        };
        if let Some(joining) = &self.joining {
            switched(joining, false).await;
        }
        match &self.leaving {
            Some(leaving) => Some(switched(leaving, true).await),
            None => None,
        }
    }

    /// [`Self::wait_in_force`], then [`Self::wait_switched`].
    pub async fn wait(self) -> Watched {
        let epoch = self.wait_in_force().await;
        let leaving_shares_deleted = self.wait_switched().await;
        Watched { epoch, leaving_shares_deleted }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use quorumkey_node::addresses::RpcUrl;
    use quorumkey_node::config::{InitOptions, init_network};

    fn network(dir: &Path, nodes: u16) -> NetworkFile {
        init_network(
            dir,
            &InitOptions {
                nodes,
                p2p_base_port: 27000,
                rpc_base_port: 17000,
                verifiers: Vec::new(),
                dkg: Default::default(),
                policy: Default::default(),
                rpc: quorumkey_node::config::RpcSettings { allow_unsigned_key_assign: true, ..Default::default() },
                providers: Default::default(),
                http: Default::default(),
            },
        )
        .unwrap()
    }

    /// `/v1/epoch` of the genesis set, as a node answers it (no addresses).
    fn genesis_answer(network: &NetworkFile) -> EpochResponse {
        let set = NodeSet::from_genesis(&network.genesis().unwrap());
        EpochResponse { epoch: 0, height: 9, nodes: EpochNodeInfo::from_set(&set), handover: None }
    }

    #[test]
    fn the_file_round_trips_and_refuses_what_the_devnet_never_wrote() {
        let work = tempfile::tempdir().unwrap();
        assert_eq!(NodeSetFile::load(work.path(), 5).unwrap(), NodeSetFile::default());
        let file = NodeSetFile {
            added: vec![6, 7],
            removed: vec![RemovedNode { node: 5, epoch: 1 }],
            pending: Some(PendingChange { epoch: 2, added: Some(7), removed: None }),
        };
        file.save(work.path()).unwrap();
        assert_eq!(NodeSetFile::load(work.path(), 5).unwrap(), file);
        assert_eq!(file.removed_in(5), Some(1));
        assert_eq!(file.removed_in(6), None);
        assert_eq!(file.pending.as_ref().unwrap().to_string(), "node 7 joins");

        for bad in [
            "added = [3]\n",
            "added = [6, 6]\n",
            "removed = [{ node = 9, epoch = 1 }]\n",
            "removed = [{ node = 2, epoch = 1 }, { node = 2, epoch = 2 }]\n",
            "removed = [{ node = 2, epoch = 1 }]\n[pending]\nepoch = 2\nremoved = 2\n",
            "surprise = 1\n",
        ] {
            std::fs::write(work.path().join(NODE_SET_FILE), bad).unwrap();
            let error = NodeSetFile::load(work.path(), 5).unwrap_err();
            assert!(error.to_string().contains("do not edit it"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_next_set_keeps_the_order_in_force_drops_the_removed_node_and_appends_the_new_one() {
        let work = tempfile::tempdir().unwrap();
        let network = network(&work.path().join("net"), 5);
        let answer = genesis_answer(&network);
        let joining = work.path().join("joining");
        let enrollment = quorumkey_node::enrollment::keygen(
            &joining,
            "127.0.0.1:27006".parse().unwrap(),
            &RpcUrl::parse("http://127.0.0.1:17006").unwrap(),
            &quorumkey_node::enrollment::KeygenOptions {
                rpc: quorumkey_node::config::RpcSettings { allow_unsigned_key_assign: true, ..Default::default() },
                ..Default::default()
            },
        )
        .unwrap();

        // Replace node 5: nodes 1-4 keep their indexes, the new node is 5th,
        // and the genesis nodes' addresses come from network.toml.
        let next = next_set(&answer, &network, Some(5), Some(&enrollment)).unwrap();
        assert_eq!(next.epoch, 1);
        assert_eq!(next.nodes.len(), 5);
        for (node, listed) in next.nodes.iter().zip(&network.nodes[..4]) {
            assert_eq!(hex::encode(node.consensus_key.as_ref()), listed.consensus_key);
            assert_eq!(node.p2p_address, listed.p2p_address.to_string());
            assert_eq!(node.rpc_url, listed.rpc_url.to_string());
        }
        assert_eq!(hex::encode(next.nodes[4].consensus_key.as_ref()), enrollment.consensus_key);
        assert_eq!(next.nodes[4].rpc_url, "http://127.0.0.1:17006");

        // Signed by three operators, the proposal verifies as the ledger
        // checks it: a quorum of the set in force.
        let genesis = network.genesis().unwrap();
        let identities: Vec<NodeIdentity> =
            (1..=3).map(|i| NodeIdentity::load(&work.path().join("net").join(format!("node-{i}"))).unwrap()).collect();
        let signers: Vec<(u16, &NodeIdentity)> = identities.iter().zip(1u16..).map(|(id, i)| (i, id)).collect();
        let transaction = signed_proposal(&genesis.network_id(), next.clone(), &signers);
        let ledger = quorumkey_ledger::Ledger::new(genesis).unwrap();
        let encoded = commonware_codec::Encode::encode(&transaction);
        let sets = ledger.node_sets(&quorumkey_ledger::MemoryState::default()).unwrap();
        ledger.check_transaction(&encoded, &sets).unwrap();
        // Two signatures are not a quorum.
        let short = signed_proposal(ledger.network_id(), next.clone(), &signers[..2]);
        assert!(ledger.check_transaction(&commonware_codec::Encode::encode(&short), &sets).is_err());

        // An enrollment whose address was changed after signing is refused.
        let mut altered = enrollment.clone();
        altered.p2p_address = "127.0.0.1:27999".parse().unwrap();
        let error = next_set(&answer, &network, None, Some(&altered)).unwrap_err();
        assert!(error.contains("enrollment"), "{error}");
        // A genesis node the network file does not list has no address.
        let other = self::network(&work.path().join("other"), 4);
        let error = next_set(&answer, &other, None, None).unwrap_err();
        assert!(error.contains("no addresses"), "{error}");
    }
}
