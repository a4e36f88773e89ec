//! A corrupt login-log entry loses only itself: the store replays every
//! other record, reports the damaged entry (where, never what), and
//! refuses to open while a record it answered for could still matter,
//! unless the operator accepts the loss.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use quorumkey_ledger::testkit::TestNetwork;
use quorumkey_store::{Kek, NewLoginRecord, NodeStore, StoreError, StoreOptions};

fn options(accept: bool) -> StoreOptions {
    StoreOptions { accept_lost_login_records: accept, ..StoreOptions::new(Kek::from_bytes(&[0x42; 32])) }
}

fn open(path: &Path, accept: bool) -> Result<NodeStore, StoreError> {
    NodeStore::open_with(path, &TestNetwork::new(4, 1).ledger, &options(accept))
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Bytes of the log entry of a record with a `key_len`-byte key and a
/// `value_len`-byte value.
fn entry_len(key_len: usize, value_len: usize) -> usize {
    8 + 12 + key_len + value_len
}

/// Three appends of two records each (keys `a0 a1`, `b0 b1`, `c0 c1`,
/// values of 100 bytes), all expiring at `expires_at`, left in the log
/// (no checkpoint); returns the database path.
fn logged(dir: &Path, expires_at: u64) -> PathBuf {
    let path = dir.join("node.redb");
    let store = open(&path, false).unwrap();
    for group in ["a", "b", "c"] {
        let records: Vec<NewLoginRecord> = (0..2)
            .map(|i| NewLoginRecord { key: format!("{group}{i}").into_bytes(), value: vec![7; 100], expires_at })
            .collect();
        store.insert_login_records(&records).unwrap();
    }
    path
}

/// Flips a bit of the payload of entry `entry` (0 to 5) of the log.
fn corrupt(path: &Path, entry: usize) -> u64 {
    let log = NodeStore::login_log_path(path);
    let mut bytes = std::fs::read(&log).unwrap();
    let offset = entry * entry_len(2, 100);
    bytes[offset + 8 + 12 + 1] ^= 0x10;
    std::fs::write(&log, bytes).unwrap();
    offset as u64
}

fn present(store: &NodeStore) -> Vec<String> {
    ["a0", "a1", "b0", "b1", "c0", "c1"]
        .into_iter()
        .filter(|key| store.login_record(key.as_bytes()).unwrap().is_some())
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_lost_record_that_could_still_matter_stops_the_store_until_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let until = now() + 3_600;
    let path = logged(dir.path(), until);
    let offset = corrupt(&path, 1);
    let error = open(&path, false).unwrap_err();
    match &error {
        StoreError::LostLoginRecords { path: log, offset: at, until: text } => {
            assert_eq!(log, &NodeStore::login_log_path(&path).display().to_string());
            assert_eq!(*at, offset);
            assert!(text.contains(&until.to_string()), "{text}");
        }
        other => panic!("{other}"),
    }
    assert!(error.to_string().contains("--accept-lost-login-records"), "{error}");
    // Refused again: nothing was replayed or emptied.
    assert!(open(&path, false).is_err());

    let store = open(&path, true).unwrap();
    let damage = store.login_log_damage();
    assert_eq!(damage.len(), 1);
    assert_eq!((damage[0].offset, damage[0].acknowledged, damage[0].lost_until), (offset, true, Some(until)));
    assert_eq!(damage[0].len, entry_len(2, 100) as u64);
    assert_eq!(present(&store), ["a0", "b0", "b1", "c0", "c1"], "every other record survives");
    drop(store);
    // Accepted once: the log was emptied into redb, the next start is clean.
    let store = open(&path, false).unwrap();
    assert!(store.login_log_damage().is_empty());
    assert_eq!(present(&store), ["a0", "b0", "b1", "c0", "c1"]);
}

#[test]
fn a_lost_record_that_expired_is_only_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = logged(dir.path(), 1_000);
    let offset = corrupt(&path, 2);
    let store = open(&path, false).unwrap();
    let damage = store.login_log_damage();
    assert_eq!(damage.len(), 1);
    assert_eq!((damage[0].offset, damage[0].acknowledged, damage[0].lost_until), (offset, true, Some(1_000)));
    assert_eq!(present(&store), ["a0", "a1", "b1", "c0", "c1"]);
}

#[test]
fn damage_in_the_last_write_is_a_torn_write_not_a_loss() {
    let dir = tempfile::tempdir().unwrap();
    let path = logged(dir.path(), now() + 3_600);
    // The first entry of the last append: its write may not have
    // completed, so no client was answered for it.
    let offset = corrupt(&path, 4);
    let store = open(&path, false).unwrap();
    let damage = store.login_log_damage();
    assert_eq!(damage.len(), 1);
    assert_eq!((damage[0].offset, damage[0].acknowledged), (offset, false));
    assert_eq!(present(&store), ["a0", "a1", "b0", "b1", "c1"]);
}
