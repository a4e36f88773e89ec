//! `GET /v1/network`: the network's description (`network.json`, with the
//! genesis, attested by this node at start) and the node sets on this
//! node's ledger (`node_set`: the epoch in force, the next one while a
//! handover runs), attested apart. The description is made once; the
//! node sets are read from the committed state at each request, and signed
//! again only when they changed.

use std::sync::Mutex;

use bytes::Bytes;
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_login::network::{DescriptionError, NetworkJson, NodeSetJson};

use crate::state::CommittedState;

/// Why the description could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    /// The committed state could not be read.
    #[error("cannot read the committed state: {0}")]
    Store(#[from] quorumkey_store::StoreError),
    /// The ledger's node sets could not be read.
    #[error("cannot read the node sets: {0}")]
    Ledger(#[from] quorumkey_ledger::LedgerError),
    /// The node sets could not be described.
    #[error("cannot describe the node sets: {0}")]
    Describe(#[from] DescriptionError),
    /// The description could not be serialized.
    #[error("cannot serialize the description: {0}")]
    Json(#[from] serde_json::Error),
}

/// The description this node serves, with the node sets as of the latest
/// committed block.
pub struct NetworkDescription {
    /// The network's description, attested by this node.
    base: NetworkJson,
    /// This node's secp256k1 key, which attests the node sets.
    key: SigningKey,
    /// The node sets last described (unattested) and the answer made of
    /// them.
    last: Mutex<Option<(NodeSetJson, Bytes)>>,
}

impl std::fmt::Debug for NetworkDescription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkDescription").field("network_id", &self.base.network_id).finish_non_exhaustive()
    }
}

impl NetworkDescription {
    /// Serves `base` (already attested) with node sets attested by `key`.
    pub fn new(base: NetworkJson, key: SigningKey) -> Self {
        Self { base, key, last: Mutex::new(None) }
    }

    /// The description with the node sets of the latest committed state,
    /// as JSON.
    pub fn render(&self, state: &CommittedState) -> Result<Bytes, DescribeError> {
        let snapshot = state.snapshot()?;
        let view = state.ledger().epoch_view(&snapshot);
        let (current, handover) = (view.current()?, view.handover()?);
        let sets = NodeSetJson::from_ledger(&current, handover.as_ref(), &self.base.nodes)?;
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((described, answer)) = last.as_ref()
            && described == &sets
        {
            return Ok(answer.clone());
        }
        let mut attested = sets.clone();
        attested.attest(&self.base.network_id, &self.key)?;
        let mut description = self.base.clone();
        description.node_set = Some(attested);
        let answer = Bytes::from(serde_json::to_vec(&description)?);
        *last = Some((sets, answer.clone()));
        Ok(answer)
    }
}
