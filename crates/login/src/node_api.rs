//! The wire formats of a node's `/v1` HTTP API (operators' and tools'
//! API: transactions, status, state roots, assignments, keys, verifiers,
//! the policy), shared by the node that serves them and the clients that
//! read them. Pure serde types: no I/O.

use quorumkey_ledger::types::PointBytes;
use quorumkey_ledger::{NetworkPolicy, RegistrationRule};
use serde::{Deserialize, Serialize};

/// `POST /v1/transactions` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The encoded transaction, hex.
    pub transaction: String,
    /// Answer only once it is finalized (up to 30 s).
    #[serde(default)]
    pub wait: bool,
}

/// `POST /v1/transactions` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// The transaction's hash, hex.
    pub hash: String,
    /// `added`, `already_pending`, `already_finalized`, or, with `wait`,
    /// `finalized` (applied), `rejected` (in a block, which rejected it) or
    /// `pending` (not finalized within the wait).
    pub status: String,
    /// With `wait`, `finalized` or `rejected`: the height of its block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// With `rejected`: why the ledger rejected it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<String>,
}

/// `GET /v1/policy` answer: the network's abuse policy in force.
#[derive(Debug, Serialize, Deserialize)]
pub struct PolicyResponse {
    /// Its nonce (0: the genesis policy); a change carries this plus one.
    pub nonce: u64,
    /// The policy, every field written out.
    pub policy: NetworkPolicyFile,
}

/// `GET /v1/status` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusResponse {
    /// This node's index in the node set in force (0: not in it, as a
    /// node joining or removed).
    pub index: u16,
    /// The network id, hex.
    pub network_id: String,
    /// The highest applied height.
    pub height: u64,
    /// The state root there, hex.
    pub state_root: String,
    /// Transactions waiting in the mempool.
    pub mempool_transactions: usize,
    /// Peers heard from in the last 10 s.
    pub connected_peers: usize,
    /// Keys the DKG has made so far (assigned or not).
    #[serde(default)]
    pub total_keys: u64,
    /// Keys ready for new users.
    #[serde(default)]
    pub ready_keys: u64,
    /// Users waiting for the next DKG batch.
    #[serde(default)]
    pub pending_assignments: u64,
    /// The epoch in force on the ledger.
    #[serde(default)]
    pub epoch: u64,
    /// The epoch this node's key shares are for (behind `epoch` only
    /// between a handover's boundary and this node's next block).
    #[serde(default)]
    pub share_epoch: u64,
    /// Keys this node holds a share of (`total_keys` when it holds all).
    #[serde(default)]
    pub key_shares: u64,
    /// Why the node is halted, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
}

/// `GET /v1/state-roots/{height}` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct StateRootResponse {
    /// The height.
    pub height: u64,
    /// The state root after it, hex.
    pub state_root: String,
}

/// `GET /v1/assignment` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentQuery {
    /// The verifier's name.
    pub verifier: String,
    /// The user's id at that verifier.
    pub verifier_id: String,
}

/// `GET /v1/assignment` answer.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AssignmentResponse {
    /// `assigned` or `pending` (waiting for the key pool).
    pub status: String,
    /// With `assigned`: the key's index in the pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_index: Option<u64>,
    /// With `assigned`: the key's public key, compressed, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// With `pending`: its place in the queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
}

/// One node of an epoch, as `GET /v1/epoch` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochNodeInfo {
    /// Its index in the epoch.
    pub index: u16,
    /// Its ed25519 consensus key, hex.
    pub consensus_key: String,
    /// Its compressed secp256k1 key, hex.
    pub secp256k1_key: String,
    /// Where peers reach it (empty for a genesis node: see the network's
    /// configuration).
    pub p2p_address: String,
    /// Where clients reach it (empty for a genesis node).
    pub rpc_url: String,
}

/// A handover to the next epoch, as `GET /v1/epoch` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverInfo {
    /// The epoch being handed over to.
    pub epoch: u64,
    /// `draining` (the DKG's batches in flight end first), `resharing`
    /// or `ready` (every key handed over; the new set serves from
    /// `boundary`).
    pub stage: String,
    /// Height of the block that decided it.
    pub decided_height: u64,
    /// Keys to hand over (known once draining ended).
    pub keys: u64,
    /// Reshare batches it takes.
    pub batches: u64,
    /// Reshare batches finished.
    pub batches_finished: u64,
    /// The first height of the new epoch, once ready.
    pub boundary: Option<u64>,
    /// The next epoch's nodes.
    pub nodes: Vec<EpochNodeInfo>,
}

impl EpochNodeInfo {
    /// The nodes of a set, by index.
    pub fn from_set(set: &quorumkey_ledger::NodeSet) -> Vec<Self> {
        set.nodes
            .iter()
            .zip(1u16..)
            .map(|(node, index)| Self {
                index,
                consensus_key: hex::encode(node.consensus_key.as_ref()),
                secp256k1_key: hex::encode(node.secp256k1_key),
                p2p_address: node.p2p_address.clone(),
                rpc_url: node.rpc_url.clone(),
            })
            .collect()
    }
}

impl HandoverInfo {
    /// A handover record as the API shows it.
    pub fn from_record(record: &quorumkey_ledger::HandoverRecord) -> Self {
        use quorumkey_ledger::HandoverStage;
        let (stage, keys, batches, batches_finished, boundary) = match record.stage {
            HandoverStage::Draining => ("draining", 0, 0, 0, None),
            HandoverStage::Resharing { keys, batch_keys, oldest_open, .. } => {
                ("resharing", keys, keys.div_ceil(u64::from(batch_keys)), oldest_open, None)
            }
            HandoverStage::Ready { keys, batch_keys, boundary, .. } => {
                let batches = keys.div_ceil(u64::from(batch_keys));
                ("ready", keys, batches, batches, Some(boundary))
            }
        };
        Self {
            epoch: record.next.epoch,
            stage: stage.to_owned(),
            decided_height: record.decided_height,
            keys,
            batches,
            batches_finished,
            boundary,
            nodes: EpochNodeInfo::from_set(&record.next),
        }
    }
}

/// `GET /v1/epoch`: the node set in force and the handover under way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochResponse {
    /// The epoch in force (0: the genesis set).
    pub epoch: u64,
    /// The height this answer reflects.
    pub height: u64,
    /// Its nodes.
    pub nodes: Vec<EpochNodeInfo>,
    /// The handover to the next epoch, while one runs.
    pub handover: Option<HandoverInfo>,
}

/// `GET /v1/keys/{index}` answer: a key's public data from the ledger.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyResponse {
    /// The key's index in the pool.
    pub key_index: u64,
    /// The key's public key, compressed, hex.
    pub public_key: String,
    /// Each node's public share `s_j·G` (node j at position j - 1),
    /// compressed, hex: a client checks the share node j returns against it.
    pub public_shares: Vec<String>,
}

/// Most verifiers one `GET /v1/verifiers` lists.
pub const MAX_VERIFIERS_PER_PAGE: u64 = 100;

/// `GET /v1/verifiers` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifiersQuery {
    /// Skip this many (registration order).
    #[serde(default)]
    pub offset: u64,
    /// At most this many (default and maximum 100).
    #[serde(default)]
    pub limit: Option<u64>,
}

/// A registered verifier, as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerifierInfo {
    /// Its name.
    pub name: String,
    /// `jwt`, `introspection` or `aggregate`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its owner's compressed secp256k1 key, hex.
    pub owner: String,
    /// Whether it takes assignments and logins.
    pub enabled: bool,
    /// Updates so far (the next update carries this plus one).
    pub nonce: u64,
    /// Its configuration (with `GET /v1/verifiers/{name}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
}

/// `GET /v1/verifiers` answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerifiersResponse {
    /// Verifiers ever registered.
    pub total: u64,
    /// This page.
    pub verifiers: Vec<VerifierInfo>,
}

/// The `[policy]` section of `network.toml` (and the file operators sign
/// to change it, `quorumkey network policy`): the network's abuse policy
/// (`quorumkey_ledger::NetworkPolicy`). Every field is optional; an
/// absent one takes the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicyFile {
    /// Only these owners (compressed secp256k1 keys, hex) may register
    /// verifiers; absent: anyone.
    pub allowed_owners: Option<Vec<String>>,
    /// Most verifiers one owner may hold (default 16).
    pub verifiers_per_owner: Option<u32>,
    /// Largest verifier configuration, in bytes (default and most: 16384).
    pub max_config_len: Option<u32>,
    /// Registrations the network takes per window (default 10).
    pub registrations_per_window: Option<u32>,
    /// New assignments one verifier gets per window (default 600).
    pub assignments_per_verifier: Option<u32>,
    /// New assignments one node may sign per window (default 300).
    pub assignments_per_node: Option<u32>,
    /// New assignments the network makes per window (default 3,000).
    pub assignments_per_window: Option<u32>,
    /// The window, in seconds of block time (default 60).
    pub window_secs: Option<u64>,
}

impl NetworkPolicyFile {
    /// The section that describes `policy`, every field written out.
    pub fn from_policy(policy: &NetworkPolicy) -> Self {
        Self {
            allowed_owners: match &policy.registration {
                RegistrationRule::Open => None,
                RegistrationRule::AllowList(owners) => Some(owners.iter().map(hex::encode).collect()),
            },
            verifiers_per_owner: Some(policy.verifiers_per_owner),
            max_config_len: Some(policy.max_config_len),
            registrations_per_window: Some(policy.registrations_per_window),
            assignments_per_verifier: Some(policy.assignments_per_verifier),
            assignments_per_node: Some(policy.assignments_per_node),
            assignments_per_window: Some(policy.assignments_per_window),
            window_secs: Some(policy.window_ms / 1000),
        }
    }

    /// The policy this section describes (checked).
    pub fn policy(&self) -> Result<NetworkPolicy, String> {
        let defaults = NetworkPolicy::default();
        let registration = match &self.allowed_owners {
            None => RegistrationRule::Open,
            Some(owners) => {
                // However the file lists them (order, repeats, hex case),
                // the same owners make the same policy.
                let mut keys = owners
                    .iter()
                    .map(|owner| parse_point(owner).map_err(|e| format!("policy: allowed owner {owner:?}: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                keys.sort_unstable();
                keys.dedup();
                RegistrationRule::AllowList(keys)
            }
        };
        let policy = NetworkPolicy {
            registration,
            verifiers_per_owner: self.verifiers_per_owner.unwrap_or(defaults.verifiers_per_owner),
            max_config_len: self.max_config_len.unwrap_or(defaults.max_config_len),
            registrations_per_window: self.registrations_per_window.unwrap_or(defaults.registrations_per_window),
            assignments_per_verifier: self.assignments_per_verifier.unwrap_or(defaults.assignments_per_verifier),
            assignments_per_node: self.assignments_per_node.unwrap_or(defaults.assignments_per_node),
            assignments_per_window: self.assignments_per_window.unwrap_or(defaults.assignments_per_window),
            window_ms: self.window_secs.map_or(defaults.window_ms, |secs| secs.saturating_mul(1000)),
        };
        policy.validate().map_err(|e| e.to_string())?;
        Ok(policy)
    }
}

fn parse_point(hex_digits: &str) -> Result<PointBytes, String> {
    let bytes = hex::decode(hex_digits).map_err(|_| "not hex".to_owned())?;
    quorumkey_crypto::group::public_key_from_sec1(&bytes).map_err(|e| e.to_string())?;
    bytes.try_into().map_err(|_| "not a 33-byte compressed point".to_owned())
}
