//! `quorumkey network epoch ...`: operators change the node set (or
//! refresh every share) by an epoch proposal that at least 2f + 1 of the
//! current operators sign; the network then hands every key over to the
//! new set (`docs/operations.md`, "Changing the node set").
//!
//! - `propose`: the next set from the one in force (asked of a node),
//!   minus the nodes removed, plus the nodes added from their enrollments
//!   (`node keygen` on the joining operator's machine), written to a
//!   proposal file; with neither, a refresh of every share;
//! - `sign`: this operator's signature of a proposal (offline, with its
//!   node's key);
//! - `submit`: the proposal with the signatures, to a node, waiting until
//!   it is decided;
//! - `show`: the epoch in force and the handover's progress (with
//!   `--watch`, a progress bar until the new epoch is in force).

use std::path::{Path, PathBuf};
use std::time::Duration;

use commonware_codec::{DecodeExt as _, Encode};
use commonware_cryptography::{Signer as _, ed25519};
use quorumkey_client::node_api_client::NodeApiClient;
use quorumkey_ledger::{EpochNode, NodeSet, SignedTransaction, TransactionBody};
use quorumkey_login::node_api::{EpochNodeInfo, EpochResponse};
use quorumkey_node::config::{NetworkFile, NodeConfig};
use quorumkey_node::enrollment::Enrollment;
use quorumkey_node::identity::NodeIdentity;
use serde::{Deserialize, Serialize};

use crate::error::CommandError;
use crate::operator_commands::write_new_file;

/// A proposal file: the next epoch and its nodes, in index order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalFile {
    /// The epoch it starts (the one in force plus one).
    pub epoch: u64,
    /// Its nodes; node `j` is the `j`-th.
    pub nodes: Vec<ProposalNode>,
}

/// One node of a proposal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalNode {
    /// ed25519 public key, hex.
    pub consensus_key: String,
    /// Compressed secp256k1 public key, hex.
    pub secp256k1_key: String,
    /// Where peers reach it.
    pub p2p_address: String,
    /// Where clients reach it.
    pub rpc_url: String,
}

fn bad_proposal(path: &Path, reason: impl Into<String>) -> CommandError {
    CommandError::Proposal { path: path.to_owned(), reason: reason.into() }
}

impl ProposalFile {
    /// Reads and checks a proposal file.
    pub fn load(path: &Path) -> Result<Self, CommandError> {
        let text = std::fs::read_to_string(path).map_err(|e| bad_proposal(path, e.to_string()))?;
        let file: Self = toml::from_str(&text).map_err(|e| bad_proposal(path, e.to_string()))?;
        file.node_set().map_err(|reason| bad_proposal(path, reason))?;
        Ok(file)
    }

    /// The proposal as the ledger's node set, checked as the ledger checks
    /// it.
    pub fn node_set(&self) -> Result<NodeSet, String> {
        let nodes = self
            .nodes
            .iter()
            .enumerate()
            .map(|(position, node)| {
                let consensus = hex::decode(&node.consensus_key)
                    .ok()
                    .and_then(|bytes| ed25519::PublicKey::decode(bytes::Bytes::from(bytes)).ok())
                    .ok_or_else(|| format!("node {}: consensus_key is not an ed25519 key", position + 1))?;
                let secp: [u8; 33] = hex::decode(&node.secp256k1_key)
                    .ok()
                    .and_then(|bytes| bytes.try_into().ok())
                    .ok_or_else(|| format!("node {}: secp256k1_key is not 33 bytes of hex", position + 1))?;
                Ok(EpochNode {
                    consensus_key: consensus,
                    secp256k1_key: secp,
                    p2p_address: node.p2p_address.clone(),
                    rpc_url: node.rpc_url.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let set = NodeSet { epoch: self.epoch, nodes };
        set.validate().map_err(|e| e.to_string())?;
        Ok(set)
    }

    /// The transaction the operators sign.
    pub fn body(&self) -> Result<TransactionBody, String> {
        let set = self.node_set()?;
        Ok(TransactionBody::ProposeEpoch { epoch: set.epoch, nodes: set.nodes })
    }
}

/// The addresses of a node in force: the ledger's (epochs after the first),
/// or the network file's (genesis nodes, whose addresses the ledger does not
/// hold).
fn with_addresses(node: &EpochNodeInfo, network: Option<&NetworkFile>) -> Result<ProposalNode, CommandError> {
    let (mut p2p_address, mut rpc_url) = (node.p2p_address.clone(), node.rpc_url.clone());
    if p2p_address.is_empty() || rpc_url.is_empty() {
        let listed = network
            .and_then(|network| network.nodes.iter().find(|n| n.consensus_key == node.consensus_key))
            .ok_or(CommandError::Usage(
            "the nodes in force are the genesis nodes, whose addresses only network.toml has: pass --network-file",
        ))?;
        p2p_address = listed.p2p_address.to_string();
        rpc_url = listed.rpc_url.to_string();
    }
    Ok(ProposalNode {
        consensus_key: node.consensus_key.clone(),
        secp256k1_key: node.secp256k1_key.clone(),
        p2p_address,
        rpc_url,
    })
}

/// `propose`: the next set from the one in force, minus `remove` (indexes
/// in force), plus the enrolled nodes `add`; written to `out`.
pub async fn propose(
    client: &NodeApiClient,
    network_file: Option<&Path>,
    add: &[PathBuf],
    remove: &[u16],
    out: &Path,
) -> Result<ProposalFile, CommandError> {
    let answer = client.epoch().await?;
    if let Some(handover) = &answer.handover {
        return Err(CommandError::Epoch(format!(
            "the handover to epoch {} is under way ({}); propose the next change once it is in force",
            handover.epoch, handover.stage
        )));
    }
    let network = network_file.map(NetworkFile::load).transpose()?;
    for index in remove {
        if !answer.nodes.iter().any(|node| node.index == *index) {
            return Err(CommandError::Epoch(format!(
                "node {index} is not in epoch {} (it has {} nodes)",
                answer.epoch,
                answer.nodes.len()
            )));
        }
    }
    let mut nodes = Vec::new();
    for node in answer.nodes.iter().filter(|node| !remove.contains(&node.index)) {
        nodes.push(with_addresses(node, network.as_ref())?);
    }
    for path in add {
        let enrollment = Enrollment::load(path)?;
        enrollment.verify()?;
        nodes.push(ProposalNode {
            consensus_key: enrollment.consensus_key.clone(),
            secp256k1_key: enrollment.secp256k1_key.clone(),
            p2p_address: enrollment.p2p_address.to_string(),
            rpc_url: enrollment.rpc_url.to_string(),
        });
    }
    let proposal = ProposalFile { epoch: answer.epoch + 1, nodes };
    proposal.node_set().map_err(|reason| bad_proposal(out, reason))?;
    write_new_file(out, &toml::to_string_pretty(&proposal)?)?;
    Ok(proposal)
}

/// `sign`: this operator's signature of the proposal, `INDEX:HEX`, its
/// index being its node's in the epoch in force (from `client` if given,
/// else from network.toml, which lists the genesis set).
pub async fn sign(
    node_config: &Path,
    proposal: &ProposalFile,
    client: Option<&NodeApiClient>,
) -> Result<String, CommandError> {
    let config = NodeConfig::load(node_config)?;
    let network = NetworkFile::load(&config.network_file)?;
    let genesis = network.genesis().map_err(CommandError::Genesis)?;
    let identity = NodeIdentity::load(&config.key_dir)?;
    let consensus_key = hex::encode(identity.consensus.public_key().as_ref());
    let index = match client {
        Some(client) => {
            let answer = client.epoch().await?;
            answer.nodes.iter().find(|node| node.consensus_key == consensus_key).map(|node| node.index).ok_or_else(
                || CommandError::Epoch(format!("this node is not in epoch {}, so it cannot sign", answer.epoch)),
            )?
        }
        None => network
            .nodes
            .iter()
            .find(|node| node.consensus_key == consensus_key)
            .map(|node| node.index)
            .ok_or_else(|| CommandError::NotEnrolled(config.network_file.clone()))?,
    };
    let body = proposal.body().map_err(CommandError::Epoch)?;
    let signature = SignedTransaction::operator_signature(&genesis.network_id(), &body, &identity.consensus);
    Ok(format!("{index}:{}", hex::encode(signature.encode())))
}

/// `submit`: the proposal with the operators' signatures, to the node
/// behind `client`; returns once it is decided.
pub async fn submit(
    client: &NodeApiClient,
    proposal: &ProposalFile,
    signatures: &[String],
) -> Result<u64, CommandError> {
    let signatures = crate::operator_commands::parse_signatures(signatures)?;
    let body = proposal.body().map_err(CommandError::Epoch)?;
    let transaction = SignedTransaction::from_operators(body, signatures);
    let answer = client.submit(&transaction.encode(), true).await?;
    match answer.status.as_str() {
        "finalized" | "already_finalized" => Ok(answer.height.unwrap_or(0)),
        "rejected" => Err(CommandError::Epoch(format!(
            "the network rejected the proposal: {}",
            answer.rejection.unwrap_or_else(|| "no reason given".to_owned())
        ))),
        other => Err(CommandError::Epoch(format!(
            "the proposal was not finalized in time (status {other}); check with `quorumkey network epoch show`"
        ))),
    }
}

/// The epoch and handover, for people.
pub fn describe(answer: &EpochResponse) -> String {
    let mut out = format!("epoch {} at height {}: {} nodes\n", answer.epoch, answer.height, answer.nodes.len());
    for node in &answer.nodes {
        out.push_str(&format!("  node {:<3} {}  {}\n", node.index, &node.consensus_key, node.rpc_url));
    }
    match &answer.handover {
        None => out.push_str("no handover under way\n"),
        Some(handover) => {
            out.push_str(&format!(
                "handover to epoch {} ({} nodes), decided at height {}: {}\n",
                handover.epoch,
                handover.nodes.len(),
                handover.decided_height,
                progress(handover)
            ));
        }
    }
    out
}

fn progress(handover: &quorumkey_login::node_api::HandoverInfo) -> String {
    const WIDTH: u64 = 30;
    match handover.stage.as_str() {
        "draining" => "waiting for the DKG's batches in flight to end".to_owned(),
        stage => {
            let filled = (handover.batches_finished * WIDTH).checked_div(handover.batches).unwrap_or(WIDTH);
            let bar: String = (0..WIDTH).map(|i| if i < filled { '#' } else { '.' }).collect();
            let tail = match handover.boundary {
                Some(boundary) => format!("; the new set serves from height {boundary}"),
                None => String::new(),
            };
            format!(
                "{stage} [{bar}] {}/{} batches, {} keys{tail}",
                handover.batches_finished, handover.batches, handover.keys
            )
        }
    }
}

/// `show --watch`: a progress bar of the handover (batches handed over,
/// on a terminal; lines otherwise), every `interval`, until an epoch after
/// the current one is in force (or no handover runs).
pub async fn watch(client: &NodeApiClient, interval: Duration) -> Result<EpochResponse, CommandError> {
    use indicatif::{ProgressBar, ProgressStyle};
    let first = client.epoch().await?;
    print!("{}", describe(&first));
    if first.handover.is_none() {
        return Ok(first);
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} handover: {pos}/{len} batches {bar:30} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    loop {
        let answer = client.epoch().await?;
        match &answer.handover {
            Some(handover) if answer.epoch == first.epoch => {
                bar.set_length(handover.batches);
                bar.set_position(handover.batches_finished);
                bar.set_message(match (handover.stage.as_str(), handover.boundary) {
                    ("draining", _) => "waiting for the DKG's batches in flight".to_owned(),
                    (_, Some(boundary)) => {
                        format!("{} keys handed over; new set from height {boundary}", handover.keys)
                    }
                    (stage, None) => format!("{stage}, {} keys", handover.keys),
                });
            }
            _ => {
                bar.finish_and_clear();
                println!("epoch {} in force (height {})", answer.epoch, answer.height);
                return Ok(answer);
            }
        }
        tokio::time::sleep(interval).await;
    }
}
