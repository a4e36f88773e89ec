//! Narrow handles to what the node keeps, one per way it is used, so that
//! a task holds only what its job needs:
//!
//! - [`CommittedState`]: reads of the committed ledger state (snapshots,
//!   state roots, the ledger's rules) and whether the node is halted. Only
//!   the block applier writes the ledger state.
//! - [`HaltFlag`]: why the node stopped applying blocks, if it did (the
//!   applier sets it once; everything that answers reads it).
//! - [`ShareStore`]: this node's secret key shares, encrypted at rest: the
//!   DKG driver writes them, logins read one at a time.
//!
//! The login records have their own owner, the login store actor
//! ([`crate::login_store`]).

use std::sync::{Arc, Mutex};

use quorumkey_ledger::{Ledger, LedgerView, NodeSets};
use quorumkey_store::{LedgerSnapshot, NodeStore, StoreError};
use zeroize::Zeroizing;

/// Why the node is halted, if it is: set once, by the block applier.
#[derive(Clone, Debug, Default)]
pub(crate) struct HaltFlag(Arc<Mutex<Option<String>>>);

impl HaltFlag {
    /// Why the node is halted, if it is.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Halts the node for `reason` (the first reason stays).
    pub(crate) fn set(&self, reason: String) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get_or_insert(reason);
    }
}

/// Reads of the committed ledger state.
#[derive(Clone, Debug)]
pub struct CommittedState {
    ledger: Arc<Ledger>,
    store: Arc<NodeStore>,
    halt: HaltFlag,
}

impl CommittedState {
    pub(crate) fn new(ledger: Arc<Ledger>, store: Arc<NodeStore>, halt: HaltFlag) -> Self {
        Self { ledger, store, halt }
    }

    /// The ledger's rules (genesis, network id, admission checks).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The state as of the latest committed block.
    pub fn snapshot(&self) -> Result<LedgerSnapshot, StoreError> {
        self.store.snapshot()
    }

    /// `read` over a view of the latest committed state.
    pub fn read<T>(&self, read: impl FnOnce(&LedgerView<'_, LedgerSnapshot>) -> T) -> Result<T, StoreError> {
        let snapshot = self.store.snapshot()?;
        Ok(read(&LedgerView::new(&self.ledger, &snapshot)))
    }

    /// The node set in force and the next one (while a handover runs), as
    /// of the latest committed block: what a transaction's signer is
    /// checked against.
    pub fn node_sets(&self) -> Result<NodeSets, StoreError> {
        let snapshot = self.store.snapshot()?;
        Ok(self.ledger.node_sets(&snapshot)?)
    }

    /// The state root after `height`, if this node applied it.
    pub fn state_root(&self, height: u64) -> Result<Option<[u8; 32]>, StoreError> {
        self.store.state_root(height)
    }

    /// Why the node is halted, if it is.
    pub fn halted(&self) -> Option<String> {
        self.halt.reason()
    }
}

/// This node's secret key shares, encrypted at rest under its
/// key-encryption key (see `quorumkey_store`).
#[derive(Clone, Debug)]
pub struct ShareStore(Arc<NodeStore>);

impl ShareStore {
    pub(crate) fn new(store: Arc<NodeStore>) -> Self {
        Self(store)
    }

    /// This node's share of key `index`, if it holds one (zeroized on
    /// drop).
    pub fn key_share(&self, index: u64) -> Result<Option<Zeroizing<[u8; 32]>>, StoreError> {
        self.0.key_share(index)
    }

    /// Whether this node holds a share of key `index` (nothing decrypted).
    pub fn has_key_share(&self, index: u64) -> Result<bool, StoreError> {
        self.0.has_key_share(index)
    }

    /// This node's stored shares of a batch not yet assigned to keys.
    pub fn batch_shares(&self, batch: u64) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        self.0.batch_shares(batch)
    }

    /// The batches this node holds shares of.
    pub fn batches_with_shares(&self) -> Result<Vec<u64>, StoreError> {
        self.0.batches_with_shares()
    }

    /// Stores this node's shares of a batch.
    pub fn put_batch_shares(&self, batch: u64, shares: &[u8]) -> Result<(), StoreError> {
        self.0.put_batch_shares(batch, shares)
    }

    /// Moves a finished batch's shares to its keys `first_key..`.
    pub fn assign_batch_shares(&self, batch: u64, first_key: u64, key_shares: &[[u8; 32]]) -> Result<(), StoreError> {
        self.0.assign_batch_shares(batch, first_key, key_shares)
    }

    /// Forgets an abandoned batch's shares.
    pub fn drop_batch_shares(&self, batch: u64) -> Result<(), StoreError> {
        self.0.drop_batch_shares(batch)
    }

    /// How many key shares this node holds.
    pub fn key_share_count(&self) -> Result<u64, StoreError> {
        self.0.key_share_count()
    }

    /// The epoch this node's key shares are for.
    pub fn share_epoch(&self) -> Result<u64, StoreError> {
        self.0.share_epoch()
    }

    /// Keeps this node's shares of a reshare batch for the next epoch.
    pub fn put_next_shares(
        &self,
        epoch: u64,
        batch: u64,
        first_key: u64,
        shares: &[[u8; 32]],
    ) -> Result<(), StoreError> {
        self.0.put_next_shares(epoch, batch, first_key, shares)
    }

    /// Whether this node keeps its shares of a reshare batch.
    pub fn has_next_shares(&self, epoch: u64, batch: u64) -> Result<bool, StoreError> {
        self.0.has_next_shares(epoch, batch)
    }

    /// Puts epoch `epoch`'s shares in force (or deletes every share, if
    /// this node is not a member).
    pub fn activate_epoch(&self, epoch: u64, member: bool) -> Result<u64, StoreError> {
        self.0.activate_epoch(epoch, member)
    }
}
