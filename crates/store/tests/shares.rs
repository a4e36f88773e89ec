//! This node's shares at rest: encrypted with the key-encryption key
//! (nothing plain in the file), bound to their table and key, refused
//! under another KEK, re-keyed all at once, and a database written before
//! encryption refused until it is encrypted. The database and its logs
//! are private files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use quorumkey_ledger::testkit::TestNetwork;
use quorumkey_store::{Kek, NodeStore, StoreError, rekey};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const KEY_SHARES: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("key_shares");
const PLAIN_KEY_SHARES: TableDefinition<'static, u64, &'static [u8; 32]> = TableDefinition::new("key_shares");
const BATCH_SHARES: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("dkg_batch_shares");
const STORE_META: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("store_meta");

fn kek(byte: u8) -> Kek {
    Kek::from_bytes(&[byte; 32])
}

/// 32 bytes unlike any other test value (a share).
fn secret(seed: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for byte in &mut out {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = x as u8;
    }
    out
}

/// A batch's stored shares: pairs (value, blinding) of 32 bytes each.
fn batch_blob(batch: u64) -> Vec<u8> {
    (0..6).flat_map(|i| secret(1_000 * batch + i)).collect()
}

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    (dir, path)
}

fn open(path: &Path, kek: &Kek) -> Result<NodeStore, StoreError> {
    NodeStore::open(path, &TestNetwork::new(4, 1).ledger, kek)
}

/// Key shares 100..103 (from batch 7) and batch 8's shares, pending.
fn with_shares(path: &Path, kek: &Kek) {
    let store = open(path, kek).unwrap();
    store.put_batch_shares(7, &batch_blob(7)).unwrap();
    store.put_batch_shares(8, &batch_blob(8)).unwrap();
    store.assign_batch_shares(7, 100, &[secret(100), secret(101), secret(102)]).unwrap();
}

fn check_shares(store: &NodeStore) {
    assert_eq!(store.key_share_indexes().unwrap(), [100, 101, 102]);
    for index in 100..103 {
        assert_eq!(*store.key_share(index).unwrap().unwrap(), secret(index), "key {index}");
    }
    assert_eq!(store.key_share(103).unwrap(), None);
    assert_eq!(store.batches_with_shares().unwrap(), [8]);
    assert_eq!(&store.batch_shares(8).unwrap().unwrap()[..], &batch_blob(8)[..]);
    assert_eq!(store.batch_shares(7).unwrap(), None);
}

/// Every 32-byte secret written, found anywhere in the files of `dir`.
fn plain_secrets_in(dir: &Path) -> Vec<String> {
    let secrets: Vec<[u8; 32]> = (100..103).map(secret).chain((0..6).map(|i| secret(8_000 + i))).collect();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for (i, s) in secrets.iter().enumerate() {
            if bytes.windows(32).any(|w| w == s) {
                found.push(format!("secret {i} in {}", path.display()));
            }
        }
    }
    found
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn shares_are_encrypted_at_rest_and_read_back() {
    let (dir, path) = fresh();
    with_shares(&path, &kek(1));
    assert_eq!(plain_secrets_in(dir.path()), Vec::<String>::new());
    let store = open(&path, &kek(1)).unwrap();
    assert_eq!(store.kek_id(), kek(1).id());
    check_shares(&store);
    // Every entry names the KEK; none is shorter than its plaintext plus
    // the overhead.
    drop(store);
    let db = redb::Database::create(&path).unwrap();
    let txn = db.begin_read().unwrap();
    for (index, entry) in txn.open_table(KEY_SHARES).unwrap().iter().unwrap().map(Result::unwrap) {
        assert_eq!(entry.value().len(), 32 + quorumkey_store::SEALED_OVERHEAD, "key {}", index.value());
        assert_eq!(&entry.value()[1..9], kek(1).id().as_bytes());
    }
}

#[test]
fn the_database_and_its_logs_are_private_files() {
    let (dir, path) = fresh();
    // A database file an older version left readable by others.
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = open(&path, &kek(1)).unwrap();
    store.insert_login_record(b"k", b"v", 1).unwrap();
    drop(store);
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let file = entry.unwrap().path();
        assert_eq!(mode(&file), 0o600, "{}", file.display());
        files += 1;
    }
    assert!(files >= 2, "the database and the log");
}

#[test]
fn another_kek_is_refused_with_both_ids() {
    let (_dir, path) = fresh();
    with_shares(&path, &kek(1));
    let error = open(&path, &kek(2)).unwrap_err();
    match &error {
        StoreError::WrongKek { stored, given, .. } => {
            assert_eq!(stored, &kek(1).id().to_string());
            assert_eq!(given, &kek(2).id().to_string());
        }
        other => panic!("{other}"),
    }
    assert!(error.to_string().contains("QUORUMKEY_KEK"), "{error}");
    check_shares(&open(&path, &kek(1)).unwrap());
}

#[test]
fn an_entry_moved_to_another_key_or_batch_does_not_decrypt() {
    let (_dir, path) = fresh();
    with_shares(&path, &kek(1));
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut keys = txn.open_table(KEY_SHARES).unwrap();
            let entry = keys.get(100).unwrap().unwrap().value().to_vec();
            keys.insert(101, entry.as_slice()).unwrap();
            let mut batches = txn.open_table(BATCH_SHARES).unwrap();
            let entry = batches.get(8).unwrap().unwrap().value().to_vec();
            batches.insert(9, entry.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = open(&path, &kek(1)).unwrap();
    assert_eq!(*store.key_share(100).unwrap().unwrap(), secret(100));
    let error = store.key_share(101).unwrap_err();
    assert!(matches!(error, StoreError::Share { table: "key_shares", key: 101, .. }), "{error}");
    assert!(error.to_string().contains("does not authenticate"), "{error}");
    assert!(matches!(store.batch_shares(9), Err(StoreError::Share { table: "dkg_batch_shares", key: 9, .. })));
}

#[test]
fn a_rekey_reencrypts_every_share_at_once() {
    let (dir, path) = fresh();
    with_shares(&path, &kek(1));
    // A running node holds the database.
    let running = open(&path, &kek(1)).unwrap();
    assert!(matches!(rekey(&path, Some(&kek(1)), &kek(2)), Err(StoreError::InUse { .. })));
    drop(running);
    // The current KEK must be given, and be the right one; the new one must
    // be new.
    assert!(matches!(rekey(&path, None, &kek(2)), Err(StoreError::WrongKek { .. })));
    assert!(matches!(rekey(&path, Some(&kek(3)), &kek(2)), Err(StoreError::WrongKek { .. })));
    assert!(rekey(&path, Some(&kek(1)), &kek(1)).unwrap_err().to_string().contains("is the current one"));

    let report = rekey(&path, Some(&kek(1)), &kek(2)).unwrap();
    assert_eq!(report.from, Some(kek(1).id()));
    assert_eq!(report.to, kek(2).id());
    assert_eq!((report.key_shares, report.batch_shares, report.compacted), (3, 1, true));
    assert!(matches!(open(&path, &kek(1)), Err(StoreError::WrongKek { .. })), "the old KEK is refused");
    check_shares(&open(&path, &kek(2)).unwrap());
    assert_eq!(plain_secrets_in(dir.path()), Vec::<String>::new());
    let db = redb::Database::create(&path).unwrap();
    let txn = db.begin_read().unwrap();
    for table in [KEY_SHARES, BATCH_SHARES] {
        for (_, entry) in txn.open_table(table).unwrap().iter().unwrap().map(Result::unwrap) {
            assert_eq!(&entry.value()[1..9], kek(2).id().as_bytes(), "every entry under the new KEK");
        }
    }
}

/// Turns the database at `path` into one as a version before encryption
/// left it: no KEK check, key shares of 32 plain bytes, plain batch
/// shares.
fn make_plain(path: &Path) {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.delete_table(STORE_META).unwrap();
    txn.delete_table(KEY_SHARES).unwrap();
    {
        let mut keys = txn.open_table(PLAIN_KEY_SHARES).unwrap();
        for index in 100..103 {
            keys.insert(index, &secret(index)).unwrap();
        }
        let mut batches = txn.open_table(BATCH_SHARES).unwrap();
        batches.insert(8, batch_blob(8).as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn a_database_with_plain_shares_is_refused_until_encrypted() {
    let (dir, path) = fresh();
    with_shares(&path, &kek(1));
    make_plain(&path);
    assert!(!plain_secrets_in(dir.path()).is_empty(), "the test's plain database holds its shares");
    let error = open(&path, &kek(1)).unwrap_err();
    assert!(matches!(error, StoreError::PlainShares { count: 4, .. }), "{error}");
    assert!(error.to_string().contains("quorumkey node rekey"), "{error}");

    let report = rekey(&path, None, &kek(5)).unwrap();
    assert_eq!((report.from, report.key_shares, report.batch_shares), (None, 3, 1));
    check_shares(&open(&path, &kek(5)).unwrap());
    assert!(matches!(open(&path, &kek(1)), Err(StoreError::WrongKek { .. })));
}

#[test]
fn a_database_made_before_encryption_without_shares_opens() {
    let (_dir, path) = fresh();
    drop(open(&path, &kek(1)).unwrap());
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(STORE_META).unwrap();
        txn.open_table(PLAIN_KEY_SHARES).unwrap();
        txn.commit().unwrap();
    }
    let store = open(&path, &kek(2)).unwrap();
    store.assign_batch_shares(1, 0, &[secret(0)]).unwrap();
    assert_eq!(*store.key_share(0).unwrap().unwrap(), secret(0));
    drop(store);
    assert!(matches!(open(&path, &kek(1)), Err(StoreError::WrongKek { .. })));
}

/// A handover's shares wait apart, encrypted, and take over every key share
/// at once when their epoch comes into force; a node that leaves deletes
/// everything.
#[test]
fn next_epoch_shares_replace_every_key_share_at_activation() {
    let (dir, path) = fresh();
    with_shares(&path, &kek(1));
    let store = open(&path, &kek(1)).unwrap();
    assert_eq!(store.share_epoch().unwrap(), 0);
    // Epoch 1: keys 100..102 in reshare batch 0, key 200 in batch 1.
    store.put_next_shares(1, 0, 100, &[secret(9_100), secret(9_101), secret(9_102)]).unwrap();
    assert!(store.has_next_shares(1, 0).unwrap());
    assert!(!store.has_next_shares(1, 1).unwrap());
    assert!(!store.has_next_shares(2, 0).unwrap());
    store.put_next_shares(1, 1, 200, &[secret(9_200)]).unwrap();
    // Until then, the current shares serve.
    check_shares(&store);
    drop(store);
    // At rest, the next shares are encrypted too.
    let bytes = std::fs::read(&path).unwrap();
    for s in [secret(9_100), secret(9_200)] {
        assert!(!bytes.windows(32).any(|w| w == s), "a next-epoch share in the clear");
    }
    // A rekey carries them over.
    rekey(&path, Some(&kek(1)), &kek(2)).unwrap();
    let store = open(&path, &kek(2)).unwrap();
    assert_eq!(store.activate_epoch(1, true).unwrap(), 4);
    assert_eq!(store.share_epoch().unwrap(), 1);
    assert_eq!(store.key_share_indexes().unwrap(), [100, 101, 102, 200]);
    for (index, seed) in [(100, 9_100), (101, 9_101), (102, 9_102), (200, 9_200)] {
        assert_eq!(*store.key_share(index).unwrap().unwrap(), secret(seed), "key {index}");
    }
    assert_eq!(store.batches_with_shares().unwrap(), Vec::<u64>::new());
    assert!(!store.has_next_shares(1, 0).unwrap());
    drop(store);
    // Reopened, the epoch and the shares stay.
    let store = open(&path, &kek(2)).unwrap();
    assert_eq!(store.share_epoch().unwrap(), 1);
    // A node that is not in epoch 2 deletes every share it has.
    store.put_next_shares(2, 0, 100, &[secret(5)]).unwrap();
    assert_eq!(store.activate_epoch(2, false).unwrap(), 0);
    assert_eq!(store.key_share_indexes().unwrap(), Vec::<u64>::new());
    assert!(!store.has_next_shares(2, 0).unwrap());
    assert_eq!(store.share_epoch().unwrap(), 2);
    drop(dir);
}

/// The next-share rows' key ranges (see the store's `activation` module).
const NEXT_SHARE_RANGES: TableDefinition<'static, (u64, u64), (u64, u64)> =
    TableDefinition::new("next_epoch_share_ranges");

/// The share of key `index` in epoch `epoch` (epoch 0: the DKG's).
fn share_in(epoch: u64, index: u64) -> [u8; 32] {
    secret(1_000_000 * (epoch + 1) + index)
}

/// A node before a handover: the keys it holds a share of, and its
/// next-epoch rows (batch, first key, keys).
struct Handover {
    epoch: u64,
    member: bool,
    old: Vec<u64>,
    rows: Vec<(u64, u64, u64)>,
}

impl Handover {
    /// Keys 0..50 and 100..103 held; epoch 1's rows of 5 keys for 0..40
    /// without 10..15 (a batch sat out), 60..65 (keys not held before) and
    /// 100..102.
    fn typical(member: bool) -> Self {
        let mut rows: Vec<(u64, u64, u64)> = (0..8).filter(|b| *b != 2).map(|b| (b, 5 * b, 5)).collect();
        rows.push((12, 60, 5));
        rows.push((20, 100, 2));
        Self { epoch: 1, member, old: (0..50).chain(100..103).collect(), rows }
    }

    /// Writes it to a new store at `path`.
    fn prepare(&self, path: &Path, kek: &Kek) -> NodeStore {
        let store = open(path, kek).unwrap();
        // Old shares in runs of consecutive keys, a DKG batch each.
        let mut runs: Vec<Vec<u64>> = Vec::new();
        for index in &self.old {
            match runs.last_mut() {
                Some(run) if run.last() == Some(&(index - 1)) => run.push(*index),
                _ => runs.push(vec![*index]),
            }
        }
        for (batch, run) in runs.iter().enumerate() {
            let shares: Vec<[u8; 32]> = run.iter().map(|index| share_in(0, *index)).collect();
            store.assign_batch_shares(batch as u64, run[0], &shares).unwrap();
        }
        // A DKG batch under way, and a stale row of an older epoch.
        store.put_batch_shares(99, &batch_blob(99)).unwrap();
        store.put_next_shares(self.epoch - 1, 3, 500, &[share_in(self.epoch - 1, 500)]).unwrap();
        for (batch, first, keys) in &self.rows {
            let shares: Vec<[u8; 32]> = (*first..first + keys).map(|index| share_in(self.epoch, index)).collect();
            store.put_next_shares(self.epoch, *batch, *first, &shares).unwrap();
        }
        store
    }

    /// The shares the node holds once the epoch is in force.
    fn expected(&self) -> std::collections::BTreeMap<u64, [u8; 32]> {
        if !self.member {
            return Default::default();
        }
        let keys = self.rows.iter().flat_map(|(_, first, keys)| *first..first + keys);
        keys.map(|index| (index, share_in(self.epoch, index))).collect()
    }

    /// Every key a test looks at.
    fn universe(&self) -> std::ops::Range<u64> {
        0..120
    }

    /// What every read says is what the node holds in the new epoch.
    fn check_reads(&self, store: &NodeStore, when: &str) {
        let expected = self.expected();
        for index in self.universe() {
            let share = store.key_share(index).unwrap().map(|share| *share);
            assert_eq!(share, expected.get(&index).copied(), "{when}: key {index}");
            assert_eq!(store.has_key_share(index).unwrap(), expected.contains_key(&index), "{when}: key {index}");
        }
        assert_eq!(store.key_share_indexes().unwrap(), expected.keys().copied().collect::<Vec<_>>(), "{when}");
        assert_eq!(store.key_share_count().unwrap(), expected.len() as u64, "{when}");
        assert_eq!(store.share_epoch().unwrap(), self.epoch, "{when}");
    }

    /// Once done: the new shares only, nothing left behind.
    fn check_done(&self, store: &NodeStore) {
        self.check_reads(store, "done");
        assert_eq!(store.activating_epoch().unwrap(), None);
        assert_eq!(store.batches_with_shares().unwrap(), Vec::<u64>::new());
        assert!(!store.has_next_shares(self.epoch - 1, 3).unwrap(), "a stale row stays");
        for (batch, _, _) in &self.rows {
            assert!(!store.has_next_shares(self.epoch, *batch).unwrap());
        }
    }
}

/// Steps until done; returns how many.
fn step_to_end(store: &NodeStore, mut each: impl FnMut(&NodeStore, usize)) -> usize {
    let mut steps = 0;
    while !store.activation_step().unwrap() {
        steps += 1;
        each(store, steps);
        assert!(steps < 10_000, "the activation does not end");
    }
    steps
}

/// The rows and range entries left in the file at `path`.
fn rows_left(path: &Path) -> (u64, u64) {
    use redb::ReadableTableMetadata;
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_read().unwrap();
    let rows = txn.open_table(TableDefinition::<u64, &[u8]>::new("next_epoch_shares")).unwrap().len().unwrap();
    let ranges = txn.open_table(NEXT_SHARE_RANGES).unwrap().len().unwrap();
    (rows, ranges)
}

/// An activation runs in steps of a bounded number of keys; from its
/// first transaction on, every read gives the new epoch's share (from the
/// row not yet moved, or from the key shares) and never the old one's,
/// and the count and the epoch are the new epoch's. Rows of a later epoch
/// stay.
#[test]
fn an_activation_moves_the_shares_in_bounded_steps_and_reads_only_new_shares() {
    let (_dir, path) = fresh();
    let handover = Handover::typical(true);
    let store = handover.prepare(&path, &kek(1));
    store.put_next_shares(2, 0, 0, &[share_in(2, 0)]).unwrap();
    store.set_activation_chunk(3);
    store.start_epoch_activation(1, true).unwrap();
    assert_eq!(store.activating_epoch().unwrap(), Some(1));
    handover.check_reads(&store, "after the marker");
    // Started again: nothing changes.
    store.start_epoch_activation(1, true).unwrap();
    let steps = step_to_end(&store, |store, step| {
        if store.activating_epoch().unwrap().is_some() {
            handover.check_reads(store, &format!("after step {step}"));
        }
    });
    // 38 new shares, 15 old ones without one, 8 rows, 3 keys a step.
    assert!(steps >= 15, "{steps} steps");
    handover.check_done(&store);
    assert!(store.has_next_shares(2, 0).unwrap(), "a later epoch's row is kept");
    drop(store);
    assert_eq!(rows_left(&path), (1, 1));
    let store = open(&path, &kek(1)).unwrap();
    handover.check_done(&store);
    // The next epoch takes over the same way.
    assert_eq!(store.activate_epoch(2, true).unwrap(), 1);
    assert_eq!(store.key_share_indexes().unwrap(), [0]);
    assert_eq!(*store.key_share(0).unwrap().unwrap(), share_in(2, 0));
}

/// A crash after any step: the store completes the activation when it
/// opens, with the result of one that was never interrupted; activating
/// the epoch again changes nothing.
#[test]
fn an_activation_stopped_after_any_step_completes_on_reopening() {
    let handover = Handover::typical(true);
    let (_dir, path) = fresh();
    let store = handover.prepare(&path, &kek(1));
    assert_eq!(store.activate_epoch(1, true).unwrap(), handover.expected().len() as u64);
    handover.check_done(&store);
    let steps = {
        let (_dir, path) = fresh();
        let store = handover.prepare(&path, &kek(1));
        store.set_activation_chunk(3);
        store.start_epoch_activation(1, true).unwrap();
        step_to_end(&store, |_, _| {})
    };
    for stop in [0, 1, 2, steps / 2, steps - 1, steps] {
        let (_dir, path) = fresh();
        let store = handover.prepare(&path, &kek(1));
        store.set_activation_chunk(3);
        store.start_epoch_activation(1, true).unwrap();
        for _ in 0..stop {
            assert!(!store.activation_step().unwrap());
        }
        drop(store);
        let store = open(&path, &kek(1)).unwrap();
        handover.check_done(&store);
        assert_eq!(store.activate_epoch(1, true).unwrap(), handover.expected().len() as u64, "stop {stop}");
        assert_eq!(store.activate_epoch(0, true).unwrap(), handover.expected().len() as u64, "stop {stop}");
        handover.check_done(&store);
        drop(store);
        assert_eq!(rows_left(&path), (0, 0), "stop {stop}");
    }
}

/// A node that is not in the new epoch holds no share from the marker
/// on, and ends with none, and no row.
#[test]
fn a_node_outside_the_new_epoch_ends_with_no_share() {
    let (_dir, path) = fresh();
    let handover = Handover::typical(false);
    let store = handover.prepare(&path, &kek(1));
    store.set_activation_chunk(2);
    store.start_epoch_activation(1, false).unwrap();
    handover.check_reads(&store, "after the marker");
    let steps = step_to_end(&store, |store, step| handover.check_reads(store, &format!("after step {step}")));
    assert!(steps > 25, "{steps} steps");
    handover.check_done(&store);
    drop(store);
    assert_eq!(rows_left(&path), (0, 0));
    let db = redb::Database::create(&path).unwrap();
    let txn = db.begin_read().unwrap();
    assert_eq!(txn.open_table(KEY_SHARES).unwrap().iter().unwrap().count(), 0);
}

/// A rekey between two steps re-encrypts what is where it is; the
/// activation completes under the new KEK.
#[test]
fn a_rekey_during_an_activation_carries_it_over() {
    let (dir, path) = fresh();
    let handover = Handover::typical(true);
    let store = handover.prepare(&path, &kek(1));
    store.set_activation_chunk(3);
    store.start_epoch_activation(1, true).unwrap();
    for _ in 0..4 {
        assert!(!store.activation_step().unwrap());
    }
    handover.check_reads(&store, "before the rekey");
    drop(store);
    let report = rekey(&path, Some(&kek(1)), &kek(2)).unwrap();
    assert!(report.key_shares > 0 && report.batch_shares > 0, "{report:?}");
    assert!(matches!(open(&path, &kek(1)), Err(StoreError::WrongKek { .. })));
    let store = open(&path, &kek(2)).unwrap();
    handover.check_done(&store);
    drop(store);
    let bytes = std::fs::read(&path).unwrap();
    for index in [0, 39, 60] {
        assert!(!bytes.windows(32).any(|w| w == share_in(1, index)), "key {index} in the clear");
    }
    drop(dir);
}

/// Rows stored before their key ranges were (an older version, mid
/// handover) are indexed when the activation starts.
#[test]
fn rows_without_key_ranges_are_indexed_at_activation() {
    let (_dir, path) = fresh();
    let handover = Handover::typical(true);
    drop(handover.prepare(&path, &kek(1)));
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(NEXT_SHARE_RANGES).unwrap();
        txn.commit().unwrap();
    }
    let store = open(&path, &kek(1)).unwrap();
    store.set_activation_chunk(4);
    store.start_epoch_activation(1, true).unwrap();
    handover.check_reads(&store, "after the marker");
    step_to_end(&store, |store, step| {
        if store.activating_epoch().unwrap().is_some() {
            handover.check_reads(store, &format!("after step {step}"));
        }
    });
    handover.check_done(&store);
}

/// A row stored again for the same batch replaces the first, key range
/// included.
#[test]
fn next_shares_stored_again_replace_their_key_range() {
    let (_dir, path) = fresh();
    let store = open(&path, &kek(1)).unwrap();
    store.put_next_shares(1, 0, 10, &[share_in(1, 10), share_in(1, 11)]).unwrap();
    store.put_next_shares(1, 0, 20, &[share_in(1, 20)]).unwrap();
    store.set_activation_chunk(1);
    store.start_epoch_activation(1, true).unwrap();
    assert_eq!(store.key_share_indexes().unwrap(), [20]);
    assert_eq!(store.key_share(10).unwrap(), None);
    assert_eq!(store.activate_epoch(1, true).unwrap(), 1);
    assert_eq!(*store.key_share(20).unwrap().unwrap(), share_in(1, 20));
}

mod activation_model {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Any keys held, any batches kept, member or not, any step size,
        /// a crash after any step: every read during the activation and
        /// the result after reopening are the new epoch's shares only.
        #[test]
        fn any_activation_stopped_anywhere_ends_as_the_model_says(
            held in proptest::collection::vec(any::<bool>(), 48),
            kept in proptest::collection::vec(any::<bool>(), 12),
            member in any::<bool>(),
            chunk in 1usize..9,
            stop in 0usize..40,
        ) {
            let handover = Handover {
                epoch: 3,
                member,
                old: (0..48).filter(|index| held[*index as usize]).collect(),
                rows: (0..12).filter(|b| kept[*b as usize]).map(|b| (b + 7, 4 * b, 4)).collect(),
            };
            let (_dir, path) = fresh();
            let store = handover.prepare(&path, &kek(1));
            store.set_activation_chunk(chunk);
            store.start_epoch_activation(3, member).unwrap();
            for step in 0..stop {
                handover.check_reads(&store, &format!("before step {step}"));
                if store.activation_step().unwrap() {
                    break;
                }
            }
            drop(store);
            let store = open(&path, &kek(1)).unwrap();
            handover.check_done(&store);
        }
    }
}
