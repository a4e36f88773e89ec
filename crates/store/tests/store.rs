//! The node store on a real redb file: genesis, exactly-once application,
//! reopening, and refusing another network's database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorumkey_ledger::testkit::{TEST_VERIFIER, TestNetwork, id, name};
use quorumkey_ledger::{Assignment, LedgerError, LedgerView, MemoryState};
use quorumkey_store::{Applied, Kek, NodeStore, StoreError};

fn kek() -> Kek {
    Kek::from_bytes(&[0x42; 32])
}

fn blocks(net: &TestNetwork) -> Vec<Vec<Vec<u8>>> {
    vec![
        vec![net.assign(1, TEST_VERIFIER, "alice"), net.assign(2, TEST_VERIFIER, "bob")],
        vec![],
        vec![net.deal(3, 4, 9), net.assign(4, TEST_VERIFIER, "carol"), net.assign(1, TEST_VERIFIER, "alice")],
    ]
}

#[test]
fn blocks_apply_once_and_survive_reopening() {
    let net = TestNetwork::new(4, 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");

    let mut memory = MemoryState::default();
    memory.commit(&net.ledger.genesis_outcome(&memory).unwrap().writes);
    {
        let store = NodeStore::open(&path, &net.ledger, &kek()).unwrap();
        assert_eq!(net.ledger.height(&store.snapshot().unwrap()).unwrap(), Some(0));
        assert!(store.state_root(0).unwrap().is_some());
        for (height, transactions) in (1u64..).zip(blocks(&net)) {
            let Applied::Applied(outcome) =
                store.apply_finalized(&net.ledger, height, height * 1_000, &transactions).unwrap()
            else {
                panic!("height {height} must apply");
            };
            assert_eq!(store.state_root(height).unwrap(), Some(outcome.state_root));
            // The same block delivered again changes nothing.
            assert!(matches!(
                store.apply_finalized(&net.ledger, height, height * 1_000, &transactions).unwrap(),
                Applied::AlreadyApplied { height: h } if h == height
            ));
            let reference = net.ledger.apply_block(&memory, height, height * 1_000, &transactions).unwrap();
            memory.commit(&reference.writes);
            assert_eq!(reference.state_root, outcome.state_root, "redb and memory agree at height {height}");
        }
        // A gap is refused.
        let empty: [&[u8]; 0] = [];
        assert!(matches!(
            store.apply_finalized(&net.ledger, 9, 9_000, &empty),
            Err(StoreError::Ledger(LedgerError::UnexpectedHeight { expected: 4, got: 9 }))
        ));
    }

    let store = NodeStore::open(&path, &net.ledger, &kek()).unwrap();
    let snapshot = store.snapshot().unwrap();
    assert_eq!(net.ledger.height(&snapshot).unwrap(), Some(3));
    assert_eq!(net.ledger.committed_root(&snapshot).unwrap(), net.ledger.committed_root(&memory).unwrap());
    let view = LedgerView::new(&net.ledger, &snapshot);
    assert_eq!(
        view.assignment(&name(TEST_VERIFIER), &id("alice")).unwrap(),
        Some(Assignment::Assigned { key_index: 0 })
    );
    assert_eq!(
        view.assignment(&name(TEST_VERIFIER), &id("carol")).unwrap(),
        Some(Assignment::Assigned { key_index: 2 })
    );
    assert_eq!(view.ready_keys().unwrap(), 1);
}

#[test]
fn a_database_of_another_network_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    drop(NodeStore::open(&path, &TestNetwork::new(4, 1).ledger, &kek()).unwrap());
    let other = TestNetwork::new(4, 2);
    assert!(matches!(NodeStore::open(&path, &other.ledger, &kek()), Err(StoreError::WrongNetwork)));
}

#[test]
fn an_unopenable_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let error =
        NodeStore::open(&dir.path().join("missing/dir/node.redb"), &TestNetwork::new(4, 1).ledger, &kek()).unwrap_err();
    assert!(error.to_string().contains("cannot open the node database"), "{error}");
}

/// This node's login records (one per token commitment it signed):
/// insert once, durable, forgotten only after they expire.
mod login_records {
    use std::path::Path;

    use quorumkey_ledger::testkit::TestNetwork;
    use quorumkey_store::{NewLoginRecord, NodeStore};

    fn open(path: &Path) -> NodeStore {
        NodeStore::open(path, &TestNetwork::new(4, 1).ledger, &super::kek()).unwrap()
    }

    fn fresh() -> (tempfile::TempDir, NodeStore) {
        let (dir, _, store) = fresh_at();
        (dir, store)
    }

    /// A fresh store and its path, for tests that reopen it.
    fn fresh_at() -> (tempfile::TempDir, std::path::PathBuf, NodeStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        let store = open(&path);
        (dir, path, store)
    }

    fn stored(store: &NodeStore, key: &[u8]) -> Option<Vec<u8>> {
        store.login_record(key).unwrap()
    }

    #[test]
    fn a_record_is_inserted_once() {
        let (_dir, store) = fresh();
        assert_eq!(stored(&store, b"key"), None);
        assert_eq!(store.insert_login_record(b"key", b"first", 100).unwrap(), None);
        assert_eq!(stored(&store, b"key").as_deref(), Some(&b"first"[..]));
        // A second insert, with another value and another expiry, gets the
        // first value back and changes nothing.
        assert_eq!(store.insert_login_record(b"key", b"second", 900).unwrap().as_deref(), Some(&b"first"[..]));
        assert_eq!(stored(&store, b"key").as_deref(), Some(&b"first"[..]));
        // The same value again is reported too (a retry).
        assert_eq!(store.insert_login_record(b"key", b"first", 100).unwrap().as_deref(), Some(&b"first"[..]));
        // The second insert did not extend the record's life.
        assert_eq!(store.sweep_login_records(101, 10).unwrap(), 1);
        assert_eq!(stored(&store, b"key"), None);
        // Keys are compared whole: prefixes and extensions are other keys.
        store.insert_login_record(b"ab", b"1", 100).unwrap();
        assert_eq!(store.insert_login_record(b"a", b"2", 100).unwrap(), None);
        assert_eq!(store.insert_login_record(b"abc", b"3", 100).unwrap(), None);
        assert_eq!(store.insert_login_record(b"", b"4", 100).unwrap(), None);
        assert_eq!(stored(&store, b"a").as_deref(), Some(&b"2"[..]));
        assert_eq!(stored(&store, b"ab").as_deref(), Some(&b"1"[..]));
        assert_eq!(stored(&store, b"abc").as_deref(), Some(&b"3"[..]));
        assert_eq!(stored(&store, b"").as_deref(), Some(&b"4"[..]));
        // Empty values are values.
        assert_eq!(store.insert_login_record(b"empty", b"", 100).unwrap(), None);
        assert_eq!(store.insert_login_record(b"empty", b"x", 100).unwrap().as_deref(), Some(&b""[..]));
    }

    fn new(key: &[u8], value: &[u8], expires_at: u64) -> NewLoginRecord {
        NewLoginRecord { key: key.to_vec(), value: value.to_vec(), expires_at }
    }

    #[test]
    fn a_group_of_records_is_one_durable_insert_with_the_same_rules() {
        let (_dir, path, store) = fresh_at();
        store.insert_login_record(b"old", b"stored before", 100).unwrap();
        let answers = store
            .insert_login_records(&[
                new(b"a", b"1", 100),
                new(b"old", b"other", 900),
                new(b"b", b"2", 300),
                // The same key twice in one group: the first wins, the
                // second is told about it.
                new(b"a", b"3", 900),
            ])
            .unwrap();
        assert_eq!(answers, vec![None, Some(b"stored before".to_vec()), None, Some(b"1".to_vec())]);
        // Only existing keys: nothing written, every one reported.
        let again = store.insert_login_records(&[new(b"b", b"x", 1), new(b"old", b"y", 1)]).unwrap();
        assert_eq!(again, vec![Some(b"2".to_vec()), Some(b"stored before".to_vec())]);
        assert_eq!(store.insert_login_records(&[]).unwrap(), Vec::<Option<Vec<u8>>>::new());
        drop(store);
        // Durable, with the first value's expiry.
        let store = open(&path);
        assert_eq!(stored(&store, b"a").as_deref(), Some(&b"1"[..]));
        assert_eq!(stored(&store, b"b").as_deref(), Some(&b"2"[..]));
        assert_eq!(store.sweep_login_records(101, 10).unwrap(), 2);
        assert_eq!(stored(&store, b"a"), None);
        assert_eq!(stored(&store, b"old"), None);
        assert_eq!(stored(&store, b"b").as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn login_records_survive_reopening() {
        let (_dir, path, store) = fresh_at();
        store.insert_login_record(b"c", b"commitment", 500).unwrap();
        store.insert_login_record(b"n", b"second", 100).unwrap();
        drop(store);
        let store = open(&path);
        assert_eq!(stored(&store, b"c").as_deref(), Some(&b"commitment"[..]));
        assert_eq!(stored(&store, b"n").as_deref(), Some(&b"second"[..]));
        assert_eq!(store.insert_login_record(b"c", b"other", 900).unwrap().as_deref(), Some(&b"commitment"[..]));
        // Their expiry survives too.
        assert_eq!(store.sweep_login_records(101, 10).unwrap(), 1);
        drop(store);
        let store = open(&path);
        assert_eq!(stored(&store, b"n"), None);
        assert_eq!(stored(&store, b"c").as_deref(), Some(&b"commitment"[..]));
        assert_eq!(store.sweep_login_records(501, 10).unwrap(), 1);
        assert_eq!(stored(&store, b"c"), None);
    }

    #[test]
    fn sweeping_forgets_exactly_the_expired_records() {
        let (_dir, store) = fresh();
        // Nothing to sweep in a fresh database (the tables do not exist yet).
        assert_eq!(store.sweep_login_records(u64::MAX, usize::MAX).unwrap(), 0);
        let records: [(&[u8], u64); 6] =
            [(b"c0", 0), (b"c100", 100), (b"n100", 100), (b"c200", 200), (b"n300", 300), (b"cmax", u64::MAX)];
        for (key, expires_at) in records {
            assert_eq!(store.insert_login_record(key, key, expires_at).unwrap(), None);
        }
        let present = |store: &NodeStore| -> Vec<&[u8]> {
            records.iter().filter(|(key, _)| stored(store, key).is_some()).map(|(key, _)| *key).collect()
        };
        // `now` 0 expires nothing, not even a record that expires at 0.
        assert_eq!(store.sweep_login_records(0, 10).unwrap(), 0);
        assert_eq!(present(&store).len(), 6);
        // A record expiring at `now` is kept; before `now`, forgotten.
        assert_eq!(store.sweep_login_records(100, 10).unwrap(), 1);
        assert_eq!(present(&store), [&b"c100"[..], b"n100", b"c200", b"n300", b"cmax"]);
        assert_eq!(store.sweep_login_records(100, 10).unwrap(), 0);
        assert_eq!(store.sweep_login_records(101, 10).unwrap(), 2);
        assert_eq!(present(&store), [&b"c200"[..], b"n300", b"cmax"]);
        assert_eq!(store.sweep_login_records(200, 10).unwrap(), 0);
        assert_eq!(store.sweep_login_records(u64::MAX, 10).unwrap(), 2);
        assert_eq!(present(&store), [&b"cmax"[..]]);
        // Nothing left to sweep: the record expiring at u64::MAX stays.
        assert_eq!(store.sweep_login_records(u64::MAX, 10).unwrap(), 0);
        assert_eq!(present(&store), [&b"cmax"[..]]);
    }

    #[test]
    fn sweeping_respects_the_limit_oldest_first() {
        let (_dir, store) = fresh();
        // Inserted out of order.
        let expiries = [14u64, 10, 13, 11, 12];
        for expires_at in expiries {
            store.insert_login_record(&expires_at.to_be_bytes(), b"v", expires_at).unwrap();
        }
        let left = |store: &NodeStore| -> Vec<u64> {
            let mut out: Vec<u64> =
                expiries.into_iter().filter(|at| stored(store, &at.to_be_bytes()).is_some()).collect();
            out.sort_unstable();
            out
        };
        assert_eq!(store.sweep_login_records(1_000, 0).unwrap(), 0);
        assert_eq!(left(&store), [10, 11, 12, 13, 14]);
        assert_eq!(store.sweep_login_records(1_000, 2).unwrap(), 2);
        assert_eq!(left(&store), [12, 13, 14]);
        assert_eq!(store.sweep_login_records(1_000, 1).unwrap(), 1);
        assert_eq!(left(&store), [13, 14]);
        // The limit counts only expired records.
        assert_eq!(store.sweep_login_records(14, 5).unwrap(), 1);
        assert_eq!(left(&store), [14]);
        assert_eq!(store.sweep_login_records(1_000, 5).unwrap(), 1);
        assert_eq!(left(&store), Vec::<u64>::new());
        assert_eq!(store.sweep_login_records(1_000, 5).unwrap(), 0);
    }

    fn group(group: u32, size: u32) -> Vec<NewLoginRecord> {
        (0..size).map(|i| new(format!("{group}-{i}").as_bytes(), &[1; 200], 1_000)).collect()
    }

    #[test]
    fn a_background_checkpoint_moves_the_pending_records_into_the_database() {
        let (_dir, path, store) = fresh_at();
        let log = NodeStore::login_log_path(&path);
        let sealed = NodeStore::sealed_login_log_path(&path);
        for g in 0..40u32 {
            store.insert_login_records(&group(g, 100)).unwrap();
            // Due from 4,096 pending records on; nothing moves by itself.
            assert_eq!(store.login_checkpoint_due().unwrap(), (g + 1) * 100 >= 4_096, "group {g}");
        }
        let full = std::fs::metadata(&log).unwrap().len();
        store.insert_login_records(&group(40, 1_000)).unwrap();
        assert!(std::fs::metadata(&log).unwrap().len() > full, "the log only grew");
        assert!(store.login_checkpoint_due().unwrap());

        assert_eq!(store.checkpoint_login_records().unwrap(), 5_000);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0, "a new, empty log");
        assert!(!sealed.exists(), "the sealed log is gone");
        assert!(!store.login_checkpoint_due().unwrap());
        assert_eq!(store.checkpoint_login_records().unwrap(), 0, "nothing left to move");
        for key in ["0-0", "39-99", "40-999"] {
            assert_eq!(stored(&store, key.as_bytes()).as_deref(), Some(&[1; 200][..]));
        }
        assert_eq!(store.insert_login_record(b"0-0", b"other", 1).unwrap().as_deref(), Some(&[1; 200][..]));
        store.insert_login_record(b"after", b"in the new log", 1_000).unwrap();
        drop(store);
        let store = open(&path);
        assert_eq!(stored(&store, b"10-10").as_deref(), Some(&[1; 200][..]));
        assert_eq!(stored(&store, b"after").as_deref(), Some(&b"in the new log"[..]));
        // A sweep is a (full) checkpoint too: the log is empty after it.
        assert_eq!(store.sweep_login_records(1_001, 10_000).unwrap(), 5_001);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        assert_eq!(stored(&store, b"40-0"), None);
    }

    #[test]
    fn inserts_go_on_while_a_checkpoint_runs_and_lose_nothing() {
        let (_dir, path, store) = fresh_at();
        let store = std::sync::Arc::new(store);
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpoints = {
            let (store, done) = (store.clone(), done.clone());
            std::thread::spawn(move || {
                let mut moved = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    moved += store.checkpoint_login_records().unwrap();
                }
                moved
            })
        };
        for g in 0..300u32 {
            // Each group also offers a new value for a key of the group
            // before: the first value stays, wherever it is by then.
            let mut records = group(g, 20);
            if g > 0 {
                records.push(new(format!("{}-0", g - 1).as_bytes(), b"second", 1_000));
            }
            let stored = store.insert_login_records(&records).unwrap();
            assert!(stored[..20].iter().all(Option::is_none));
            if g > 0 {
                assert_eq!(stored[20].as_deref(), Some(&[1; 200][..]), "group {g}");
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let moved = checkpoints.join().unwrap();
        assert!(moved <= 6_000);
        let check = |store: &NodeStore| {
            for g in 0..300u32 {
                for i in [0, 19] {
                    let key = format!("{g}-{i}");
                    assert_eq!(stored(store, key.as_bytes()).as_deref(), Some(&[1; 200][..]), "{key}");
                }
            }
        };
        check(&store);
        drop(store);
        let store = open(&path);
        check(&store);
        assert_eq!(store.sweep_login_records(1_001, 10_000).unwrap(), 6_000);
    }

    #[test]
    fn a_sealed_log_left_by_a_crash_is_replayed_before_the_log() {
        // Two logs as a crash during a background checkpoint leaves them:
        // made by two stores, then put in place for a third.
        let (_a_dir, a_path, a) = fresh_at();
        a.insert_login_records(&[new(b"both", b"sealed", 1_000), new(b"sealed only", b"s", 1_000)]).unwrap();
        drop(a);
        let (_b_dir, b_path, b) = fresh_at();
        b.insert_login_records(&[new(b"both", b"log", 1_000), new(b"log only", b"l", 1_000)]).unwrap();
        drop(b);
        let (_dir, path, store) = fresh_at();
        store.insert_login_record(b"in redb", b"r", 1_000).unwrap();
        store.sweep_login_records(0, 0).unwrap();
        drop(store);
        std::fs::copy(NodeStore::login_log_path(&a_path), NodeStore::sealed_login_log_path(&path)).unwrap();
        std::fs::copy(NodeStore::login_log_path(&b_path), NodeStore::login_log_path(&path)).unwrap();

        let store = open(&path);
        assert_eq!(stored(&store, b"both").as_deref(), Some(&b"sealed"[..]), "the older record wins");
        assert_eq!(stored(&store, b"sealed only").as_deref(), Some(&b"s"[..]));
        assert_eq!(stored(&store, b"log only").as_deref(), Some(&b"l"[..]));
        assert_eq!(stored(&store, b"in redb").as_deref(), Some(&b"r"[..]));
        assert!(!NodeStore::sealed_login_log_path(&path).exists());
        assert_eq!(std::fs::metadata(NodeStore::login_log_path(&path)).unwrap().len(), 0);
        assert_eq!(store.sweep_login_records(1_001, 10).unwrap(), 4);
    }

    #[test]
    fn a_log_that_cannot_be_sealed_is_checkpointed_in_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        // No spare next log can be made (as when descriptors run out).
        let next = NodeStore::next_login_log_path(&path);
        std::fs::create_dir(&next).unwrap();
        let store = open(&path);
        for g in 0..5u32 {
            store.insert_login_records(&group(g, 1_000)).unwrap();
        }
        assert!(store.login_checkpoint_due().unwrap());
        assert_eq!(store.checkpoint_login_records().unwrap(), 5_000, "moved all the same");
        assert!(store.take_login_log_rotation_failure().is_some());
        assert!(!NodeStore::sealed_login_log_path(&path).exists());
        assert_eq!(std::fs::metadata(NodeStore::login_log_path(&path)).unwrap().len(), 0, "emptied");
        assert_eq!(stored(&store, b"4-999").as_deref(), Some(&[1; 200][..]));
        // The way is clear again: the next checkpoint seals.
        std::fs::remove_dir(&next).unwrap();
        for g in 5..10u32 {
            store.insert_login_records(&group(g, 1_000)).unwrap();
        }
        assert_eq!(store.checkpoint_login_records().unwrap(), 5_000);
        assert_eq!(store.take_login_log_rotation_failure(), None);
        drop(store);
        let store = open(&path);
        assert_eq!(stored(&store, b"0-0").as_deref(), Some(&[1; 200][..]));
        assert_eq!(stored(&store, b"9-999").as_deref(), Some(&[1; 200][..]));
    }

    #[test]
    fn without_background_checkpoints_an_insert_runs_one_at_the_pending_limit() {
        let (_dir, path, store) = fresh_at();
        let log = NodeStore::login_log_path(&path);
        let mut log_sizes = Vec::new();
        for g in 0..34u32 {
            store.insert_login_records(&group(g, 1_000)).unwrap();
            log_sizes.push(std::fs::metadata(&log).unwrap().len());
        }
        // 34,000 records: the log grew until 32,768 were pending, was
        // emptied by the insert that reached it, and holds only the rest.
        let emptied: Vec<usize> = (1..log_sizes.len()).filter(|&i| log_sizes[i] < log_sizes[i - 1]).collect();
        assert_eq!(emptied, [32], "{log_sizes:?}");
        assert_eq!(log_sizes[32], 0, "{log_sizes:?}");
        assert!(!NodeStore::sealed_login_log_path(&path).exists());
        assert_eq!(stored(&store, b"0-0").as_deref(), Some(&[1; 200][..]));
        assert_eq!(stored(&store, b"33-999").as_deref(), Some(&[1; 200][..]));
    }

    #[test]
    fn a_swept_key_can_be_inserted_again() {
        let (_dir, path, store) = fresh_at();
        store.insert_login_record(b"token", b"old", 100).unwrap();
        assert_eq!(store.sweep_login_records(101, 10).unwrap(), 1);
        assert_eq!(store.insert_login_record(b"token", b"new", 500).unwrap(), None);
        assert_eq!(stored(&store, b"token").as_deref(), Some(&b"new"[..]));
        // The new record has the new expiry only: the old one is gone.
        assert_eq!(store.sweep_login_records(500, 10).unwrap(), 0);
        assert_eq!(stored(&store, b"token").as_deref(), Some(&b"new"[..]));
        assert_eq!(store.sweep_login_records(501, 10).unwrap(), 1);
        assert_eq!(stored(&store, b"token"), None);
        drop(store);
        // And the database stays consistent across a reopen.
        let store = open(&path);
        assert_eq!(stored(&store, b"token"), None);
        assert_eq!(store.sweep_login_records(u64::MAX, 10).unwrap(), 0);
    }
}
