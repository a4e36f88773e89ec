//! Putting a new epoch's shares in force, in bounded steps.
//!
//! During a handover this node keeps its next-epoch shares per reshare
//! batch in `next_epoch_shares` (one sealed row per batch: the first key's
//! index, then 32 bytes per key), and, in the same transaction, the row's
//! key range in [`NEXT_SHARE_RANGES`] (`(epoch, first key) → (batch,
//! keys)`, not secret). At the epoch boundary those rows must replace
//! every key share in `key_shares`. With millions of keys that cannot be
//! one transaction (gigabytes of entries, in memory and in redb's dirty
//! pages), so an activation runs as a sequence of small durable
//! transactions:
//!
//! 1. **Marker.** One transaction writes the activation marker
//!    ([`ACTIVATION`] in `store_meta`: the epoch, whether this node is a
//!    member, a key cursor and a count of keys moved), sets the share
//!    epoch readers report to the new one, and deletes the DKG batch
//!    shares (a few batches at most). From this commit on the node answers
//!    for the new epoch. It also indexes rows written before the range
//!    table existed (each decrypted once, one at a time).
//! 2. **Moves.** Each step takes the new epoch's rows in key order (the
//!    range table's order), up to a budget of keys
//!    ([`ACTIVATION_CHUNK_KEYS`] by default; at least one row: a reshare
//!    batch holds at most 512 keys): it deletes the old key shares between
//!    the cursor and the row's first key (keys this node holds no new share
//!    of), writes the row's shares into `key_shares`, each sealed as a key
//!    share, deletes the row and its range entry, and moves the cursor past
//!    the row. A non-member moves nothing.
//! 3. **Sweep.** Steps delete the old key shares at or beyond the cursor
//!    (all of them, for a non-member), then the remaining rows and range
//!    entries of this epoch and of older ones (a non-member's, stale ones),
//!    a budget at a time.
//! 4. **Done.** The step that finds nothing left removes the marker.
//!
//! **Reads.** While the marker is set, a key `k` below the cursor has its
//! new share (or none) in `key_shares`; at or beyond it, `key_shares` may
//! still hold the old epoch's share, which is never returned: the share
//! comes from the row whose range holds `k` (found in the range table,
//! the row decrypted), or there is none. A non-member holds no share from
//! the marker on. Each read looks at the marker and the tables in one read
//! transaction, so it sees one step's state. The count of key shares is
//! the keys moved plus the keys in the rows left.
//!
//! **Crashes.** Every step commits durably and leaves a state the next
//! step continues from: the marker is the only progress, and a step redone
//! after a crash finds the rows it moved gone. [`NodeStore::open`]
//! completes an activation a crash interrupted before it returns, and
//! [`NodeStore::activate_epoch`] for the same epoch resumes it; once the
//! marker is gone, activating that epoch (or an older one) again changes
//! nothing. `rekey` re-encrypts the rows and key shares whatever step the
//! activation is at (the marker and the ranges hold no secret).
//!
//! **Memory.** A step holds one decrypted row (at most 512 shares) at a
//! time, and its transaction writes at most the budget plus one row's keys.

use std::sync::atomic::Ordering;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use zeroize::Zeroizing;

use crate::sealed::{self, SecretTable};
use crate::{
    BATCH_SHARES, KEY_SHARES, NEXT_SHARES, NodeStore, SHARE_EPOCH, STORE_META, StoreError, db_error, next_shares_key,
};

/// Where each reshare batch's next-epoch shares start, so that a key's new
/// share can be found while an activation runs: `(epoch, first key) →
/// (batch, keys)`. Not secret (key indexes and counts only).
pub(crate) const NEXT_SHARE_RANGES: TableDefinition<'static, (u64, u64), (u64, u64)> =
    TableDefinition::new("next_epoch_share_ranges");
/// An activation under way, in `store_meta` (absent: none): see
/// [`Activation`].
const ACTIVATION: &str = "share_activation";
/// Keys an activation step moves or deletes, by default (see
/// [`NodeStore::set_activation_chunk`]). A step is one durable
/// transaction: 4,096 keys make about 330 KB of entries.
pub const ACTIVATION_CHUNK_KEYS: usize = 4096;
/// The largest batch index `next_shares_key` takes.
const LAST_BATCH: u64 = (1 << 40) - 1;

/// The activation marker: `epoch (8) ‖ member (1) ‖ cursor (8) ‖ moved
/// (8)`, big-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Activation {
    /// The epoch being put in force.
    pub(crate) epoch: u64,
    /// Whether this node is a member of it (otherwise every share goes).
    pub(crate) member: bool,
    /// Every key below it is done: `key_shares` holds its new share or
    /// none.
    pub(crate) cursor: u64,
    /// New shares written below the cursor.
    pub(crate) moved: u64,
}

const ACTIVATION_LEN: usize = 25;

impl Activation {
    fn encode(&self) -> [u8; ACTIVATION_LEN] {
        let mut out = [0; ACTIVATION_LEN];
        out[..8].copy_from_slice(&self.epoch.to_be_bytes());
        out[8] = u8::from(self.member);
        out[9..17].copy_from_slice(&self.cursor.to_be_bytes());
        out[17..].copy_from_slice(&self.moved.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = || meta_corrupt(format!("{ACTIVATION} is not an activation marker"));
        let bytes: &[u8; ACTIVATION_LEN] = bytes.try_into().map_err(|_| corrupt())?;
        let u64_at = |at: usize| {
            let mut word = [0; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(word)
        };
        let member = match bytes[8] {
            0 => false,
            1 => true,
            _ => return Err(corrupt()),
        };
        Ok(Self { epoch: u64_at(0), member, cursor: u64_at(9), moved: u64_at(17) })
    }
}

fn meta_corrupt(reason: String) -> StoreError {
    StoreError::Open { path: "store_meta".to_owned(), reason }
}

fn table_error(operation: &'static str) -> impl Fn(redb::TableError) -> StoreError {
    move |e| db_error(operation)(e.into())
}

fn storage_error(operation: &'static str) -> impl Fn(redb::StorageError) -> StoreError {
    move |e| db_error(operation)(e.into())
}

/// The activation marker in `meta`, if any.
pub(crate) fn activation_in(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<Activation>, StoreError> {
    let value = meta.get(ACTIVATION).map_err(storage_error("read the share activation"))?;
    value.map(|value| Activation::decode(value.value())).transpose()
}

/// The share epoch in `meta` (absent: 0).
pub(crate) fn share_epoch_in(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u64, StoreError> {
    let Some(value) = meta.get(SHARE_EPOCH).map_err(storage_error("read the share epoch"))? else {
        return Ok(0);
    };
    <[u8; 8]>::try_from(value.value())
        .map(u64::from_be_bytes)
        .map_err(|_| meta_corrupt("share_epoch is not 8 bytes".to_owned()))
}

/// A table of a read transaction; `None` if it was never written.
pub(crate) fn open_read<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    definition: TableDefinition<'static, K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match txn.open_table(definition) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(db_error("open table")(e.into())),
    }
}

/// The activation under way as `txn` sees it.
pub(crate) fn activation_at(txn: &redb::ReadTransaction) -> Result<Option<Activation>, StoreError> {
    match open_read(txn, STORE_META)? {
        Some(meta) => activation_in(&meta),
        None => Ok(None),
    }
}

/// The bounds of epoch `epoch`'s entries in [`NEXT_SHARE_RANGES`].
fn epoch_ranges(epoch: u64) -> std::ops::RangeInclusive<(u64, u64)> {
    (epoch, 0)..=(epoch, u64::MAX)
}

/// A decrypted next-shares row: its first key and its plaintext (8 bytes,
/// then 32 per key), checked.
pub(crate) struct Row {
    pub(crate) first: u64,
    pub(crate) plain: Zeroizing<Vec<u8>>,
}

impl Row {
    pub(crate) fn open(kek: &crate::Kek, key: u64, stored: &[u8]) -> Result<Self, StoreError> {
        let secret = SecretTable::NextShares;
        let plain = sealed::open(kek, secret, key, stored).map_err(StoreError::share(secret, key))?;
        let malformed = |reason: &str| StoreError::Share { table: secret.name(), key, reason: reason.to_owned() };
        if plain.len() < 8 || !(plain.len() - 8).is_multiple_of(32) {
            return Err(malformed("it is not a first key and 32-byte shares"));
        }
        let mut first = [0u8; 8];
        first.copy_from_slice(&plain[..8]);
        let row = Self { first: u64::from_be_bytes(first), plain };
        if row.first.checked_add(row.keys()).is_none() {
            return Err(malformed("its keys run beyond the last key index"));
        }
        Ok(row)
    }

    pub(crate) fn keys(&self) -> u64 {
        ((self.plain.len() - 8) / 32) as u64
    }

    /// The shares, with their key indexes.
    fn shares(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.plain[8..].chunks_exact(32).enumerate().map(|(offset, share)| (self.first + offset as u64, share))
    }

    /// A row that does not say what its range entry says.
    fn check_range(&self, key: u64, first: u64, keys: u64) -> Result<(), StoreError> {
        if self.first == first && self.keys() == keys {
            return Ok(());
        }
        Err(StoreError::Share {
            table: SecretTable::NextShares.name(),
            key,
            reason: format!(
                "it holds keys {}..+{} where its range entry says {first}..+{keys}",
                self.first,
                self.keys()
            ),
        })
    }
}

/// Where key `index`'s share for epoch `epoch` is among the rows `txn`
/// sees: the row's key, its first key and its count.
fn next_share_location(
    txn: &redb::ReadTransaction,
    epoch: u64,
    index: u64,
) -> Result<Option<(u64, u64, u64)>, StoreError> {
    let Some(ranges) = open_read(txn, NEXT_SHARE_RANGES)? else { return Ok(None) };
    let mut below = ranges.range((epoch, 0)..=(epoch, index)).map_err(storage_error("find a next share"))?;
    let Some(entry) = below.next_back() else { return Ok(None) };
    let (key, value) = entry.map_err(storage_error("find a next share"))?;
    let ((_, first), (batch, keys)) = (key.value(), value.value());
    if index - first >= keys {
        return Ok(None);
    }
    Ok(Some((next_shares_key(epoch, batch)?, first, keys)))
}

/// Key `index`'s share for epoch `epoch` from its next-shares row, as
/// `txn` sees it.
pub(crate) fn next_share(
    kek: &crate::Kek,
    txn: &redb::ReadTransaction,
    epoch: u64,
    index: u64,
) -> Result<Option<Zeroizing<[u8; 32]>>, StoreError> {
    let Some((key, first, keys)) = next_share_location(txn, epoch, index)? else { return Ok(None) };
    let Some(rows) = open_read(txn, NEXT_SHARES)? else { return Ok(None) };
    let Some(stored) = rows.get(key).map_err(storage_error("read next shares"))? else { return Ok(None) };
    let row = Row::open(kek, key, stored.value())?;
    row.check_range(key, first, keys)?;
    // Within the row: its keys are the range's, and `index` is in it.
    let at = 8 + 32 * (index - first) as usize;
    let mut share = Zeroizing::new([0u8; 32]);
    share.copy_from_slice(&row.plain[at..at + 32]);
    Ok(Some(share))
}

/// Whether `txn` sees a next-shares row holding key `index` for `epoch`
/// (nothing decrypted).
pub(crate) fn has_next_share(txn: &redb::ReadTransaction, epoch: u64, index: u64) -> Result<bool, StoreError> {
    let Some((key, _, _)) = next_share_location(txn, epoch, index)? else { return Ok(false) };
    let Some(rows) = open_read(txn, NEXT_SHARES)? else { return Ok(false) };
    Ok(rows.get(key).map_err(storage_error("read next shares"))?.is_some())
}

/// The key ranges of epoch `epoch`'s rows `txn` sees: (first, keys).
pub(crate) fn next_share_ranges(txn: &redb::ReadTransaction, epoch: u64) -> Result<Vec<(u64, u64)>, StoreError> {
    let Some(ranges) = open_read(txn, NEXT_SHARE_RANGES)? else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for entry in ranges.range(epoch_ranges(epoch)).map_err(storage_error("list next share ranges"))? {
        let (key, value) = entry.map_err(storage_error("list next share ranges"))?;
        out.push((key.value().1, value.value().1));
    }
    Ok(out)
}

/// In `txn`, the row `(epoch, batch)` becomes `stored` (the sealed `row`):
/// the range entry of the row it replaces goes, the new row's is written.
pub(crate) fn put_row(
    kek: &crate::Kek,
    txn: &redb::WriteTransaction,
    epoch: u64,
    batch: u64,
    (first, keys): (u64, u64),
    stored: &[u8],
) -> Result<(), StoreError> {
    let key = next_shares_key(epoch, batch)?;
    let mut rows = txn.open_table(NEXT_SHARES).map_err(table_error("open next shares table"))?;
    let mut ranges = txn.open_table(NEXT_SHARE_RANGES).map_err(table_error("open next share ranges"))?;
    let replaced = rows.get(key).map_err(storage_error("read next shares"))?.map(|old| old.value().to_vec());
    if let Some(replaced) = replaced {
        let old = Row::open(kek, key, &replaced)?;
        let indexed = ranges.get((epoch, old.first)).map_err(storage_error("read next share ranges"))?;
        if indexed.is_some_and(|value| value.value().0 == batch) {
            ranges.remove((epoch, old.first)).map_err(storage_error("remove a next share range"))?;
        }
    }
    rows.insert(key, stored).map_err(storage_error("write next shares"))?;
    ranges.insert((epoch, first), (batch, keys)).map_err(storage_error("write next share ranges"))?;
    Ok(())
}

/// Removes up to `limit` entries of `table` in `range`; returns how many
/// and the last one removed.
fn remove_some(
    table: &mut redb::Table<'_, u64, &'static [u8]>,
    range: impl std::ops::RangeBounds<u64>,
    limit: usize,
) -> Result<(usize, Option<u64>), StoreError> {
    let mut doomed = Vec::new();
    for entry in table.range(range).map_err(storage_error("list shares"))?.take(limit) {
        let (key, _) = entry.map_err(storage_error("list shares"))?;
        doomed.push(key.value());
    }
    for key in &doomed {
        table.remove(*key).map_err(storage_error("remove a share"))?;
    }
    Ok((doomed.len(), doomed.last().copied()))
}

/// Keys a step may still spend, less `used` (at least 1 for any work, so
/// that even an empty row costs something).
fn spend(budget: usize, used: u64) -> usize {
    budget.saturating_sub(usize::try_from(used.max(1)).unwrap_or(usize::MAX))
}

impl NodeStore {
    /// Epoch `epoch` is in force: if this node is a member, its shares for
    /// it (kept by [`Self::put_next_shares`]) replace every key share it
    /// held; if not, it deletes them all (and the DKG batch shares either
    /// way). Runs [`Self::start_epoch_activation`], then steps until done,
    /// each step one bounded transaction (see the `activation` module).
    /// Idempotent: an activation of `epoch` already under way is resumed,
    /// one already done is not redone. Returns how many key shares this
    /// node holds.
    pub fn activate_epoch(&self, epoch: u64, member: bool) -> Result<u64, StoreError> {
        self.start_epoch_activation(epoch, member)?;
        self.finish_activation()?;
        self.key_share_count()
    }

    /// The first transaction of putting epoch `epoch` in force: writes the
    /// activation marker and the share epoch (from its commit on, reads
    /// answer for `epoch`). An activation of another epoch still under way
    /// is completed first. Nothing is done if `epoch` is under way already
    /// or its shares (or a later epoch's) are in force. [`Self::activation_step`]
    /// does the rest.
    pub fn start_epoch_activation(&self, epoch: u64, member: bool) -> Result<(), StoreError> {
        next_shares_key(epoch, 0)?;
        loop {
            let txn = self.db.begin_write().map_err(|e| db_error("begin write")(e.into()))?;
            {
                let mut meta = txn.open_table(STORE_META).map_err(table_error("open store meta"))?;
                let pending = activation_in(&meta)?;
                let done = match pending {
                    Some(pending) => pending.epoch == epoch,
                    None => share_epoch_in(&meta)? >= epoch,
                };
                if pending.is_some() || done {
                    drop(meta);
                    txn.abort().map_err(|e| db_error("abort")(e.into()))?;
                    if done {
                        return Ok(());
                    }
                    self.finish_activation()?;
                    continue;
                }
                let marker = Activation { epoch, member, cursor: 0, moved: 0 };
                meta.insert(SHARE_EPOCH, epoch.to_be_bytes().as_slice())
                    .map_err(storage_error("write the share epoch"))?;
                meta.insert(ACTIVATION, marker.encode().as_slice())
                    .map_err(storage_error("write the share activation"))?;
            }
            txn.delete_table(BATCH_SHARES).map_err(table_error("clear the batch shares"))?;
            if member {
                self.index_rows(&txn, epoch)?;
            }
            return txn.commit().map_err(|e| db_error("commit")(e.into()));
        }
    }

    /// Gives every row of `epoch` its range entry, in `txn`, if some lack
    /// one (rows stored before the range table existed).
    fn index_rows(&self, txn: &redb::WriteTransaction, epoch: u64) -> Result<(), StoreError> {
        let rows = txn.open_table(NEXT_SHARES).map_err(table_error("open next shares table"))?;
        let mut ranges = txn.open_table(NEXT_SHARE_RANGES).map_err(table_error("open next share ranges"))?;
        let bounds = next_shares_key(epoch, 0)?..=next_shares_key(epoch, LAST_BATCH)?;
        let mut row_count = 0usize;
        for entry in rows.range(bounds.clone()).map_err(storage_error("list next shares"))? {
            entry.map_err(storage_error("list next shares"))?;
            row_count += 1;
        }
        let mut indexed = Vec::new();
        for entry in ranges.range(epoch_ranges(epoch)).map_err(storage_error("list next share ranges"))? {
            indexed.push(entry.map_err(storage_error("list next share ranges"))?.0.value());
        }
        if indexed.len() == row_count {
            return Ok(());
        }
        for key in indexed {
            ranges.remove(key).map_err(storage_error("remove a next share range"))?;
        }
        for entry in rows.range(bounds).map_err(storage_error("list next shares"))? {
            let (key, value) = entry.map_err(storage_error("list next shares"))?;
            let row = Row::open(&self.kek, key.value(), value.value())?;
            ranges
                .insert((epoch, row.first), (key.value() & LAST_BATCH, row.keys()))
                .map_err(storage_error("write next share ranges"))?;
        }
        Ok(())
    }

    /// One step of the activation under way, in one durable transaction
    /// (see the `activation` module). Returns `true` when none is under way
    /// any more. A caller that steps itself writes no key share
    /// ([`Self::assign_batch_shares`]) until the activation is done: one at
    /// or beyond the cursor would be taken for an old one.
    pub fn activation_step(&self) -> Result<bool, StoreError> {
        let budget = self.activation_chunk.load(Ordering::Relaxed).max(1);
        let txn = self.db.begin_write().map_err(|e| db_error("begin write")(e.into()))?;
        {
            let mut meta = txn.open_table(STORE_META).map_err(table_error("open store meta"))?;
            let Some(mut activation) = activation_in(&meta)? else {
                drop(meta);
                txn.abort().map_err(|e| db_error("abort")(e.into()))?;
                return Ok(true);
            };
            let mut keys = txn.open_table(KEY_SHARES).map_err(table_error("open key shares table"))?;
            let mut rows = txn.open_table(NEXT_SHARES).map_err(table_error("open next shares table"))?;
            let mut ranges = txn.open_table(NEXT_SHARE_RANGES).map_err(table_error("open next share ranges"))?;
            let epoch = activation.epoch;
            let to_move = activation.member
                && ranges.range(epoch_ranges(epoch)).map_err(storage_error("list next share ranges"))?.next().is_some();
            let worked = if to_move {
                self.move_rows(&mut activation, &mut keys, &mut rows, &mut ranges, budget)?;
                true
            } else {
                let (old, _) = remove_some(&mut keys, activation.cursor.., budget)?;
                old > 0 || sweep_rows(&mut rows, &mut ranges, epoch, budget)? > 0
            };
            if worked {
                meta.insert(ACTIVATION, activation.encode().as_slice())
                    .map_err(storage_error("write the share activation"))?;
            } else {
                meta.remove(ACTIVATION).map_err(storage_error("remove the share activation"))?;
            }
        }
        txn.commit().map_err(|e| db_error("commit")(e.into()))?;
        Ok(false)
    }

    /// Steps until no activation is under way.
    pub(crate) fn finish_activation(&self) -> Result<(), StoreError> {
        while !self.activation_step()? {}
        Ok(())
    }

    /// The epoch whose activation is under way, if one is.
    pub fn activating_epoch(&self) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| db_error("begin read")(e.into()))?;
        Ok(activation_at(&txn)?.map(|activation| activation.epoch))
    }

    /// Sets the keys an activation step moves or deletes (default
    /// [`ACTIVATION_CHUNK_KEYS`]; at least 1). For tests and benchmarks.
    #[doc(hidden)]
    pub fn set_activation_chunk(&self, keys: usize) {
        self.activation_chunk.store(keys.max(1), Ordering::Relaxed);
    }

    /// The moves of a step: rows in key order until `budget` keys are
    /// spent (at least one row, unless old shares before it take the whole
    /// budget).
    fn move_rows(
        &self,
        activation: &mut Activation,
        keys: &mut redb::Table<'_, u64, &'static [u8]>,
        rows: &mut redb::Table<'_, u64, &'static [u8]>,
        ranges: &mut redb::Table<'_, (u64, u64), (u64, u64)>,
        mut budget: usize,
    ) -> Result<(), StoreError> {
        let epoch = activation.epoch;
        while budget > 0 {
            let next = {
                let mut listed = ranges.range(epoch_ranges(epoch)).map_err(storage_error("list next share ranges"))?;
                match listed.next() {
                    Some(entry) => {
                        let (key, value) = entry.map_err(storage_error("list next share ranges"))?;
                        Some((key.value().1, value.value()))
                    }
                    None => None,
                }
            };
            let Some((first, (batch, count))) = next else { break };
            if activation.cursor < first {
                // Old shares of keys this node holds no new share of.
                let (removed, last) = remove_some(keys, activation.cursor..first, budget)?;
                budget -= removed;
                if budget == 0 {
                    if let Some(last) = last {
                        activation.cursor = last + 1;
                    }
                    break;
                }
                activation.cursor = first;
            }
            ranges.remove((epoch, first)).map_err(storage_error("remove a next share range"))?;
            budget = spend(budget, count);
            let key = next_shares_key(epoch, batch)?;
            let stored = rows.remove(key).map_err(storage_error("remove next shares"))?.map(|row| row.value().to_vec());
            let Some(stored) = stored else { continue };
            let row = Row::open(&self.kek, key, &stored)?;
            row.check_range(key, first, count)?;
            for (index, share) in row.shares() {
                let entry = sealed::seal(&self.kek, SecretTable::KeyShares, index, share)
                    .map_err(StoreError::share(SecretTable::KeyShares, index))?;
                keys.insert(index, entry.as_slice()).map_err(storage_error("write key share"))?;
                if index >= activation.cursor {
                    activation.moved += 1;
                }
            }
            activation.cursor = activation.cursor.max(first + count);
        }
        Ok(())
    }
}

/// Deletes up to `budget` rows and range entries of epochs up to `epoch`;
/// returns how many.
fn sweep_rows(
    rows: &mut redb::Table<'_, u64, &'static [u8]>,
    ranges: &mut redb::Table<'_, (u64, u64), (u64, u64)>,
    epoch: u64,
    budget: usize,
) -> Result<usize, StoreError> {
    let (removed, _) = remove_some(rows, ..=next_shares_key(epoch, LAST_BATCH)?, budget)?;
    let mut doomed = Vec::new();
    for entry in
        ranges.range(..=(epoch, u64::MAX)).map_err(storage_error("list next share ranges"))?.take(budget - removed)
    {
        doomed.push(entry.map_err(storage_error("list next share ranges"))?.0.value());
    }
    for key in &doomed {
        ranges.remove(*key).map_err(storage_error("remove a next share range"))?;
    }
    Ok(removed + doomed.len())
}
