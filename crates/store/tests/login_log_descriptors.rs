//! The login log goes on when the process runs out of file descriptors
//! (a flood of connections): records are taken while none is left,
//! checkpoints still move them into redb, and once descriptors return the
//! log rotates again. Alone in its test binary: it lowers the process's
//! RLIMIT_NOFILE and takes every descriptor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorumkey_ledger::testkit::TestNetwork;
use quorumkey_store::{Kek, NewLoginRecord, NodeStore};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

fn group(phase: &str, group: u32, size: u32) -> Vec<NewLoginRecord> {
    (0..size)
        .map(|i| NewLoginRecord {
            key: format!("{phase}-{group}-{i}").into_bytes(),
            value: vec![1; 200],
            expires_at: u64::MAX,
        })
        .collect()
}

/// Inserts `groups` groups of 500 records, running a background
/// checkpoint whenever one is due, as the node's checkpoint thread does.
fn load(store: &NodeStore, phase: &str, groups: u32) -> usize {
    let mut checkpoints = 0;
    for g in 0..groups {
        store.insert_login_records(&group(phase, g, 500)).unwrap();
        if store.login_checkpoint_due().unwrap() {
            store.checkpoint_login_records().unwrap();
            checkpoints += 1;
        }
    }
    checkpoints
}

#[test]
fn records_are_taken_while_descriptors_run_out_and_the_log_rotates_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let kek = Kek::from_bytes(&[0x42; 32]);
    let ledger = TestNetwork::new(4, 1).ledger;
    let store = NodeStore::open(&path, &ledger, &kek).unwrap();
    load(&store, "before", 2);

    let limit = getrlimit(Resource::Nofile);
    setrlimit(Resource::Nofile, Rlimit { current: Some(256), maximum: limit.maximum }).unwrap();
    let mut hog = Vec::new();
    let exhausted = loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => hog.push(file),
            Err(e) => break e,
        }
    };
    assert_eq!(exhausted.raw_os_error(), Some(rustix::io::Errno::MFILE.raw_os_error()), "{exhausted}");

    // No descriptor left: background checkpoints (each seal takes the
    // spare opened ahead; the old log's descriptor, closed, opens the next
    // spare), a sweep, and every record taken.
    assert!(load(&store, "starved", 20) >= 2);
    assert_eq!(store.take_login_log_rotation_failure(), None, "every rotation sealed");
    assert_eq!(store.sweep_login_records(0, 0).unwrap(), 0);
    store.insert_login_records(&group("starved-after-sweep", 0, 10)).unwrap();

    // Descriptors come back: the log rotates again.
    drop(hog);
    setrlimit(Resource::Nofile, limit).unwrap();
    assert!(load(&store, "after", 20) >= 2);
    assert_eq!(store.take_login_log_rotation_failure(), None, "every rotation sealed");
    assert!(!NodeStore::sealed_login_log_path(&path).exists());

    drop(store);
    let store = NodeStore::open(&path, &ledger, &kek).unwrap();
    for key in
        ["before-0-0", "before-1-499", "starved-0-0", "starved-19-499", "starved-after-sweep-0-9", "after-19-499"]
    {
        assert_eq!(store.login_record(key.as_bytes()).unwrap().as_deref(), Some(&[1; 200][..]), "{key}");
    }
}
