//! Applies finalized blocks to the node's ledger, exactly once, and stops
//! the node loudly when its state can no longer be trusted.
//!
//! The consensus layer hands every finalized block here, in height order,
//! at least once; this commits it durably (see `quorumkey_store`) before
//! returning, so consensus may acknowledge it. Two things halt the node for
//! good: a storage failure, and a state root that differs from one the
//! network agreed on at the same height. A halted node applies nothing more
//! and reports itself halted on `/health`, instead of serving wrong answers.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use quorumkey_ledger::{DkgEvent, Ledger, Rejection};
use quorumkey_store::{Applied, NodeStore, StoreError, StoreOptions};
use thiserror::Error;

use crate::observability::{
    HealthCell, METRIC_DKG_ABANDONED, METRIC_DKG_KEYS, METRIC_FINALIZATION_LATENCY, METRIC_TRANSACTIONS,
};
use crate::state::{CommittedState, HaltFlag, ShareStore};

/// A block as consensus finalized it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalizedBlock {
    /// Its height (the genesis is 0 and is never delivered here).
    pub height: u64,
    /// The proposer's timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Its transactions, opaque to consensus.
    pub transactions: Vec<Bytes>,
}

/// What applying a block did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyReport {
    /// Applied now.
    Applied {
        /// Transactions that took effect.
        accepted: usize,
        /// Transactions rejected (recorded the same way on every node).
        rejected: usize,
        /// Each rejected transaction's hash and why.
        rejections: Vec<([u8; 32], Rejection)>,
        /// The state root after the block.
        state_root: [u8; 32],
    },
    /// Applied before; nothing to do.
    AlreadyApplied,
}

/// Why a block was not applied.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// The node is halted.
    #[error("node halted: {0}")]
    Halted(String),
    /// The store failed; the node is now halted.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The node's state root differs from the network's.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("state root at height {height} is {local}, the network's is {network}: this node's state has diverged")]
pub struct RootMismatch {
    /// The height compared.
    pub height: u64,
    /// This node's root, hex.
    pub local: String,
    /// The network's, hex.
    pub network: String,
}

/// Applies finalized blocks to one node's store.
pub struct BlockApplier {
    ledger: Arc<Ledger>,
    store: Arc<NodeStore>,
    health: HealthCell,
    halted: HaltFlag,
    genesis_root: [u8; 32],
    applied: Mutex<(u64, [u8; 32])>,
}

impl std::fmt::Debug for BlockApplier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockApplier").field("health", &self.health.get()).finish_non_exhaustive()
    }
}

impl BlockApplier {
    /// Opens (or creates, with the genesis) the node's database at `path`
    /// (see `NodeStore::open_with` for what it refuses).
    pub fn open(ledger: Ledger, path: &Path, health: HealthCell, options: &StoreOptions) -> Result<Self, StoreError> {
        let store = NodeStore::open_with(path, &ledger, options)?;
        let snapshot = store.snapshot()?;
        let height = ledger.height(&snapshot)?.unwrap_or(0);
        let root = ledger.committed_root(&snapshot)?;
        drop(snapshot);
        let genesis_root = store.state_root(0)?.unwrap_or(root);
        health.applied(height, &root);
        Ok(Self {
            ledger: Arc::new(ledger),
            store: Arc::new(store),
            health,
            halted: HaltFlag::default(),
            genesis_root,
            applied: Mutex::new((height, root)),
        })
    }

    /// Reads of the committed state, for the tasks that answer from it.
    pub fn committed_state(&self) -> CommittedState {
        CommittedState::new(self.ledger.clone(), self.store.clone(), self.halted.clone())
    }

    /// This node's key shares.
    pub fn share_store(&self) -> ShareStore {
        ShareStore::new(self.store.clone())
    }

    /// The store, for the login store actor, which owns its login tables
    /// ([`crate::login_store`]).
    pub(crate) fn login_tables(&self) -> Arc<NodeStore> {
        self.store.clone()
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The store (for the node's tests and tools; tasks take a narrow
    /// handle: [`Self::committed_state`], [`Self::share_store`]).
    pub fn store(&self) -> &NodeStore {
        &self.store
    }

    /// The highest applied height and the state root after it.
    pub fn applied(&self) -> (u64, [u8; 32]) {
        *self.applied.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The state root of the genesis (height 0).
    pub(crate) fn genesis_root(&self) -> [u8; 32] {
        self.genesis_root
    }

    /// Why the node is halted, if it is.
    pub fn halted(&self) -> Option<String> {
        self.halted.reason()
    }

    fn halt(&self, reason: String) {
        tracing::error!(%reason, "halting: this node stops applying blocks and serving answers");
        self.health.halt(reason.clone());
        self.halted.set(reason);
    }

    /// Applies a finalized block, durably, unless it was applied before.
    /// `now_ms` is the local clock, for the latency metric only.
    pub fn apply(&self, block: &FinalizedBlock, now_ms: u64) -> Result<ApplyReport, ApplyError> {
        if let Some(reason) = self.halted() {
            return Err(ApplyError::Halted(reason));
        }
        let outcome =
            match self.store.apply_finalized(&self.ledger, block.height, block.timestamp_ms, &block.transactions) {
                Ok(Applied::Applied(outcome)) => outcome,
                Ok(Applied::AlreadyApplied { .. }) => return Ok(ApplyReport::AlreadyApplied),
                Err(error) => {
                    self.halt(format!("cannot apply height {}: {error}", block.height));
                    return Err(ApplyError::Store(error));
                }
            };
        let mut rejections = Vec::new();
        for receipt in &outcome.receipts {
            if let Err(rejection) = &receipt.result {
                log_rejection(block.height, &receipt.transaction, rejection);
                rejections.push((receipt.transaction, rejection.clone()));
            }
        }
        let rejected = rejections.len();
        log_dkg_events(block.height, &outcome.dkg_events);
        let accepted = outcome.receipts.len() - rejected;
        metrics::counter!(METRIC_TRANSACTIONS, "outcome" => "applied").increment(accepted as u64);
        metrics::counter!(METRIC_TRANSACTIONS, "outcome" => "rejected").increment(rejected as u64);
        let latency_ms = now_ms.saturating_sub(block.timestamp_ms);
        metrics::histogram!(METRIC_FINALIZATION_LATENCY).record(latency_ms as f64 / 1000.0);
        self.health.applied(outcome.height, &outcome.state_root);
        *self.applied.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = (outcome.height, outcome.state_root);
        Ok(ApplyReport::Applied { accepted, rejected, rejections, state_root: outcome.state_root })
    }

    /// Compares this node's root at `height` with the root the network
    /// agreed on there. A mismatch halts the node. A height this node has
    /// not applied yet is not checked.
    pub fn check_root(&self, height: u64, network_root: &[u8; 32]) -> Result<(), RootMismatch> {
        let local = match self.store.state_root(height) {
            Ok(Some(root)) => root,
            Ok(None) => return Ok(()),
            Err(error) => {
                self.halt(format!("cannot read the state root of height {height}: {error}"));
                return Ok(());
            }
        };
        if &local == network_root {
            return Ok(());
        }
        let mismatch = RootMismatch { height, local: hex::encode(local), network: hex::encode(network_root) };
        self.halt(mismatch.to_string());
        Err(mismatch)
    }
}

fn log_dkg_events(height: u64, events: &[DkgEvent]) {
    for event in events {
        match event {
            DkgEvent::BatchOpened { batch } => tracing::info!(height, batch, "DKG batch opened"),
            DkgEvent::QualifiedSetFixed { batch, qualified } => {
                tracing::info!(height, batch, ?qualified, "DKG qualified set fixed");
            }
            DkgEvent::BatchFinished { batch, first_key, keys } => {
                metrics::counter!(METRIC_DKG_KEYS).increment(*keys);
                tracing::info!(height, batch, first_key, keys, "DKG batch finished: keys added to the pool");
            }
            DkgEvent::BatchAbandoned { batch, reason } => {
                metrics::counter!(METRIC_DKG_ABANDONED).increment(1);
                tracing::warn!(height, batch, reason, "DKG batch abandoned");
            }
            DkgEvent::RefreshScheduled { epoch } => {
                tracing::info!(height, epoch, "scheduled refresh of every share decided");
            }
            DkgEvent::HandoverStarted { epoch, keys, batches } => {
                tracing::info!(height, epoch, keys, batches, "handover to the next epoch started");
            }
            DkgEvent::ReshareBatchOpened { epoch, batch } => {
                tracing::info!(height, epoch, batch, "reshare batch opened");
            }
            DkgEvent::ReshareBatchFinished { epoch, batch, first_key, keys, qualified } => {
                tracing::info!(height, epoch, batch, first_key, keys, ?qualified, "reshare batch handed over");
            }
            DkgEvent::HandoverFinished { epoch, boundary } => {
                tracing::info!(height, epoch, boundary, "every key handed over: the new set serves from the boundary");
            }
            DkgEvent::EpochStarted { epoch, height: first } => {
                tracing::info!(height, epoch, first_height = first, "new epoch in force");
            }
        }
    }
}

fn log_rejection(height: u64, transaction: &[u8; 32], rejection: &Rejection) {
    tracing::info!(height, transaction = %hex::encode(transaction), %rejection, "transaction rejected");
}
