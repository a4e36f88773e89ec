//! Where the ledger's state lives: a key-value view the state machine reads
//! through ([`StateRead`]), and the set of writes one block produces
//! ([`WriteSet`]), which the caller persists atomically. The state machine
//! itself does no I/O: the node implements [`StateRead`] over `redb`, tests
//! over [`MemoryState`].
//!
//! Keys are a one-byte table tag followed by the table's own key bytes.

use std::collections::BTreeMap;

use crate::lthash::LtHash;

/// The tables of the ledger state. The tag is the first byte of every key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Table {
    /// Counters: height, key pool cursors, pending queue cursors.
    Meta = 0,
    /// Key index (u64 big-endian) → [`crate::KeyRecord`].
    Keys = 1,
    /// (verifier, verifier_id) → [`crate::Assignment`].
    Assignments = 2,
    /// Pending sequence number (u64 big-endian) → (verifier, verifier_id).
    Pending = 3,
    /// Verifier name → [`crate::VerifierRecord`].
    Verifiers = 4,
    /// Key index (u64 big-endian) → (verifier, verifier_id) it is assigned to.
    KeyOwners = 5,
    /// DKG batch (u64 big-endian) → [`crate::dkg::BatchRecord`].
    DkgBatches = 6,
    /// (batch, dealer) → its accepted dealing, kept a while after the batch.
    DkgDealings = 7,
    /// Batch → the qualified set's summed commitments, while publishing.
    DkgAggregates = 8,
    /// (batch, node) → its public shares, while publishing.
    DkgPublications = 9,
    /// Registration order (u64 big-endian) → verifier name, to list them.
    VerifierIndex = 10,
    /// Owner key (compressed) → verifiers it registered (u64 big-endian).
    OwnerVerifiers = 11,
    /// The policy's budgets: `r` (the network's registrations), `a` (its
    /// new assignments), `v` + verifier name, `n` + node index (u16
    /// big-endian) → the current window (u64) and its use (u32).
    AssignmentBudgets = 12,
    /// Module id (sha-256) → a verifier script's module (WebAssembly).
    Scripts = 13,
    /// (epoch, key index), both u64 big-endian → the key's public shares in
    /// that epoch, written by the handover into it.
    PublicShares = 14,
    /// (epoch, batch) → [`crate::handover::ReshareBatchRecord`] of the
    /// handover into that epoch.
    ReshareBatches = 15,
    /// (epoch, batch, dealer u16) → its accepted reshare dealing, kept a
    /// while after the batch.
    ReshareDealings = 16,
    /// Not hashed into the state root: the root's own accumulator.
    Root = 255,
}

/// A full key: table tag then the table's key.
pub fn state_key(table: Table, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(table as u8);
    out.extend_from_slice(key);
    out
}

/// The key of the root accumulator.
pub(crate) fn root_key() -> Vec<u8> {
    state_key(Table::Root, b"lthash")
}

/// The store behind [`StateRead`] failed (I/O, corruption). Never treated
/// as "missing": the block is not applied and the node stops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state storage failed: {0}")]
pub struct StorageError(pub String);

/// Read access to the committed state.
pub trait StateRead {
    /// The value stored under a full key (see [`state_key`]).
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
}

impl<T: StateRead + ?Sized> StateRead for &T {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        (**self).get(key)
    }
}

/// The writes of one block (`None` deletes), in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteSet {
    pub(crate) changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl WriteSet {
    /// Every change, in key order.
    pub fn changes(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.changes.iter().map(|(k, v)| (k.as_slice(), v.as_deref()))
    }

    /// Number of changed keys.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// True if nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// A block's writes on top of the committed state: reads see the writes.
pub(crate) struct Overlay<'a, S: StateRead + ?Sized> {
    base: &'a S,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a, S: StateRead + ?Sized> Overlay<'a, S> {
    pub(crate) fn new(base: &'a S) -> Self {
        Self { base, writes: BTreeMap::new() }
    }

    pub(crate) fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let full = state_key(table, key);
        match self.writes.get(&full) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(&full),
        }
    }

    pub(crate) fn put(&mut self, table: Table, key: &[u8], value: Vec<u8>) {
        self.writes.insert(state_key(table, key), Some(value));
    }

    pub(crate) fn delete(&mut self, table: Table, key: &[u8]) {
        self.writes.insert(state_key(table, key), None);
    }

    /// Folds the writes into the root accumulator and returns them with the
    /// new accumulator.
    pub(crate) fn finish(self) -> Result<(WriteSet, LtHash), StorageError> {
        let mut accumulator = read_accumulator(self.base)?;
        let mut changes = BTreeMap::new();
        for (key, new) in self.writes {
            let old = self.base.get(&key)?;
            if old == new {
                continue;
            }
            if let Some(old) = &old {
                accumulator.remove(&key, old);
            }
            if let Some(new) = &new {
                accumulator.insert(&key, new);
            }
            changes.insert(key, new);
        }
        changes.insert(root_key(), Some(accumulator.to_bytes()));
        Ok((WriteSet { changes }, accumulator))
    }
}

/// Reads through an overlay see the block's writes first.
impl<S: StateRead + ?Sized> StateRead for Overlay<'_, S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        match self.writes.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(key),
        }
    }
}

/// The root accumulator of a committed state (empty before genesis).
pub(crate) fn read_accumulator<S: StateRead + ?Sized>(state: &S) -> Result<LtHash, StorageError> {
    match state.get(&root_key())? {
        None => Ok(LtHash::default()),
        Some(bytes) => {
            LtHash::from_bytes(&bytes).ok_or_else(|| StorageError("the root accumulator is not 2048 bytes".to_owned()))
        }
    }
}

/// An in-memory state, for tests and tools.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryState {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemoryState {
    /// Applies a block's writes.
    pub fn commit(&mut self, writes: &WriteSet) {
        for (key, value) in writes.changes() {
            match value {
                Some(value) => self.entries.insert(key.to_vec(), value.to_vec()),
                None => self.entries.remove(key),
            };
        }
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// The LtHash of every hashed entry, computed from scratch (to check
    /// the incremental one).
    pub fn recompute_lthash(&self) -> LtHash {
        let mut accumulator = LtHash::default();
        for (key, value) in self.entries() {
            if key.first() != Some(&(Table::Root as u8)) {
                accumulator.insert(key, value);
            }
        }
        accumulator
    }
}

impl StateRead for MemoryState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.entries.get(key).cloned())
    }
}
