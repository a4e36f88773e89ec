//! Login records survive a crash: a child process inserts records (each
//! group made durable by the write-ahead log, redb's commits non-durable)
//! and aborts; the store reopened in this process has every one of them,
//! with the value first stored under its key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use quorumkey_ledger::testkit::TestNetwork;
use quorumkey_store::{Kek, NewLoginRecord, NodeStore};
use redb::{ReadableDatabase, TableDefinition};

const CHILD_DB: &str = "QUORUMKEY_LOGIN_LOG_CRASH_DB";
const GROUPS: u32 = 40;

fn open(path: &Path) -> NodeStore {
    NodeStore::open(path, &TestNetwork::new(4, 1).ledger, &Kek::from_bytes(&[0x42; 32])).unwrap()
}

fn record(group: u32, i: u32, value: &str) -> NewLoginRecord {
    NewLoginRecord { key: format!("key-{group}-{i}").into_bytes(), value: value.as_bytes().to_vec(), expires_at: 1_000 }
}

/// The child: groups of three records, the third a second value for the
/// group's first key (must lose), then an abort: no destructor, no
/// shutdown, as in a crash (a kill -9 after the last answer).
fn child(path: &Path) -> ! {
    let store = open(path);
    for group in 0..GROUPS {
        let stored = store
            .insert_login_records(&[record(group, 0, "first"), record(group, 1, "first"), record(group, 0, "second")])
            .unwrap();
        assert_eq!(stored[2].as_deref(), Some(&b"first"[..]));
    }
    std::process::abort();
}

#[test]
fn login_records_survive_a_crash_between_durable_commits() {
    if let Ok(path) = std::env::var(CHILD_DB) {
        child(Path::new(&path));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    run_aborting_child("login_records_survive_a_crash_between_durable_commits", CHILD_DB, &path);
    let log = NodeStore::login_log_path(&path);
    assert!(std::fs::metadata(&log).unwrap().len() > 0, "the records are in the log");

    // redb alone lost at least the last group (its commits were
    // non-durable): what follows is the log's doing.
    {
        const COMMITMENTS: TableDefinition<'static, &'static [u8], &'static [u8]> =
            TableDefinition::new("login_commitments");
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let last = record(GROUPS - 1, 1, "");
        let in_redb = match txn.open_table(COMMITMENTS) {
            Ok(table) => table.get(last.key.as_slice()).unwrap().is_some(),
            Err(redb::TableError::TableDoesNotExist(_)) => false,
            Err(e) => panic!("{e}"),
        };
        assert!(!in_redb, "redb alone kept the last non-durable commit: this test shows nothing");
    }

    let store = open(&path);
    for group in 0..GROUPS {
        for i in 0..2 {
            let key = record(group, i, "").key;
            assert_eq!(store.login_record(&key).unwrap().as_deref(), Some(&b"first"[..]), "group {group} record {i}");
        }
    }
    // Replayed into redb durably, then the log was emptied.
    assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
    // Insert-once still holds for the replayed records.
    assert_eq!(
        store.insert_login_record(&record(0, 0, "").key, b"third", 1_000).unwrap().as_deref(),
        Some(&b"first"[..])
    );
    // And a sweep removes them for good (durably, with the log emptied).
    assert_eq!(store.sweep_login_records(1_001, 1_000).unwrap(), 80);
    drop(store);
    let store = open(&path);
    assert_eq!(store.login_record(&record(0, 0, "").key).unwrap(), None);
}

const CHECKPOINTING_CHILD_DB: &str = "QUORUMKEY_LOGIN_LOG_CHECKPOINT_CRASH_DB";
const CHECKPOINTING_GROUPS: u32 = 400;

/// The child: as [`child`], with background checkpoints running in a loop
/// on another thread, so the abort may come at any step of one (sealed,
/// redb committing, sealed log being deleted).
fn checkpointing_child(path: &Path) -> ! {
    let store = std::sync::Arc::new(open(path));
    let checkpoints = store.clone();
    std::thread::spawn(move || {
        loop {
            checkpoints.checkpoint_login_records().unwrap();
        }
    });
    for group in 0..CHECKPOINTING_GROUPS {
        let stored = store
            .insert_login_records(&[record(group, 0, "first"), record(group, 1, "first"), record(group, 0, "second")])
            .unwrap();
        assert_eq!(stored[2].as_deref(), Some(&b"first"[..]));
        if group > 0 {
            let again = store.insert_login_record(&record(group - 1, 1, "").key, b"third", 1_000).unwrap();
            assert_eq!(again.as_deref(), Some(&b"first"[..]));
        }
    }
    std::process::abort();
}

#[test]
fn login_records_survive_a_crash_during_background_checkpoints() {
    if let Ok(path) = std::env::var(CHECKPOINTING_CHILD_DB) {
        checkpointing_child(Path::new(&path));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    run_aborting_child("login_records_survive_a_crash_during_background_checkpoints", CHECKPOINTING_CHILD_DB, &path);

    let store = open(&path);
    for group in 0..CHECKPOINTING_GROUPS {
        for i in 0..2 {
            let key = record(group, i, "").key;
            assert_eq!(store.login_record(&key).unwrap().as_deref(), Some(&b"first"[..]), "group {group} record {i}");
        }
    }
    assert!(!NodeStore::sealed_login_log_path(&path).exists());
    assert_eq!(store.sweep_login_records(1_001, 10_000).unwrap(), 2 * CHECKPOINTING_GROUPS as usize);
}

/// Runs this test binary's test `test` again as a child process, with `env`
/// naming the store at `path` (so that it plays the crashing node), and
/// checks that it aborted.
fn run_aborting_child(test: &str, env: &str, path: &Path) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env, path)
        .status()
        .unwrap();
    assert!(!status.success(), "the child must abort, not exit");
}
