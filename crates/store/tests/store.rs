//! The node store on a real redb file: genesis, exactly-once application,
//! reopening, and refusing another network's database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorumkey_ledger::testkit::{TEST_VERIFIER, TestNetwork, id, name};
use quorumkey_ledger::{Assignment, LedgerError, LedgerView, MemoryState};
use quorumkey_store::{Applied, NodeStore, StoreError};

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
        let store = NodeStore::open(&path, &net.ledger).unwrap();
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

    let store = NodeStore::open(&path, &net.ledger).unwrap();
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
    drop(NodeStore::open(&path, &TestNetwork::new(4, 1).ledger).unwrap());
    let other = TestNetwork::new(4, 2);
    assert!(matches!(NodeStore::open(&path, &other.ledger), Err(StoreError::WrongNetwork)));
}

#[test]
fn an_unopenable_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = NodeStore::open(&dir.path().join("missing/dir/node.redb"), &TestNetwork::new(4, 1).ledger).unwrap_err();
    assert!(error.to_string().contains("cannot open the node database"), "{error}");
}

/// This node's login records (commitments and nullifiers): insert once,
/// separate kinds, durable, forgotten only after they expire.
mod login_records {
    use std::path::Path;

    use quorumkey_ledger::testkit::TestNetwork;
    use quorumkey_store::{LoginRecord, NodeStore};

    const KINDS: [LoginRecord; 2] = [LoginRecord::Commitment, LoginRecord::Nullifier];

    fn open(path: &Path) -> NodeStore {
        NodeStore::open(path, &TestNetwork::new(4, 1).ledger).unwrap()
    }

    fn fresh() -> (tempfile::TempDir, NodeStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("node.redb"));
        (dir, store)
    }

    fn stored(store: &NodeStore, kind: LoginRecord, key: &[u8]) -> Option<Vec<u8>> {
        store.login_record(kind, key).unwrap()
    }

    #[test]
    fn a_record_is_inserted_once() {
        let (_dir, store) = fresh();
        for kind in KINDS {
            assert_eq!(stored(&store, kind, b"key"), None);
            assert_eq!(store.insert_login_record(kind, b"key", b"first", 100).unwrap(), None);
            assert_eq!(stored(&store, kind, b"key").as_deref(), Some(&b"first"[..]));
            // A second insert, with another value and another expiry, gets the
            // first value back and changes nothing.
            assert_eq!(
                store.insert_login_record(kind, b"key", b"second", 900).unwrap().as_deref(),
                Some(&b"first"[..])
            );
            assert_eq!(stored(&store, kind, b"key").as_deref(), Some(&b"first"[..]));
            // The same value again is reported too (a retry).
            assert_eq!(store.insert_login_record(kind, b"key", b"first", 100).unwrap().as_deref(), Some(&b"first"[..]));
            // The second insert did not extend the record's life.
            assert_eq!(store.sweep_login_records(101, 10).unwrap(), 1);
            assert_eq!(stored(&store, kind, b"key"), None);
        }
        // Keys are compared whole: prefixes and extensions are other keys.
        let kind = LoginRecord::Commitment;
        store.insert_login_record(kind, b"ab", b"1", 100).unwrap();
        assert_eq!(store.insert_login_record(kind, b"a", b"2", 100).unwrap(), None);
        assert_eq!(store.insert_login_record(kind, b"abc", b"3", 100).unwrap(), None);
        assert_eq!(store.insert_login_record(kind, b"", b"4", 100).unwrap(), None);
        assert_eq!(stored(&store, kind, b"a").as_deref(), Some(&b"2"[..]));
        assert_eq!(stored(&store, kind, b"ab").as_deref(), Some(&b"1"[..]));
        assert_eq!(stored(&store, kind, b"abc").as_deref(), Some(&b"3"[..]));
        assert_eq!(stored(&store, kind, b"").as_deref(), Some(&b"4"[..]));
        // Empty values are values.
        assert_eq!(store.insert_login_record(kind, b"empty", b"", 100).unwrap(), None);
        assert_eq!(store.insert_login_record(kind, b"empty", b"x", 100).unwrap().as_deref(), Some(&b""[..]));
    }

    #[test]
    fn commitments_and_nullifiers_are_separate() {
        let (_dir, store) = fresh();
        let key = [7u8; 32];
        assert_eq!(store.insert_login_record(LoginRecord::Commitment, &key, b"commitment", 100).unwrap(), None);
        assert_eq!(stored(&store, LoginRecord::Nullifier, &key), None);
        assert_eq!(store.insert_login_record(LoginRecord::Nullifier, &key, b"nullifier", 200).unwrap(), None);
        assert_eq!(stored(&store, LoginRecord::Commitment, &key).as_deref(), Some(&b"commitment"[..]));
        assert_eq!(stored(&store, LoginRecord::Nullifier, &key).as_deref(), Some(&b"nullifier"[..]));
        // Each expires on its own: sweeping the commitment leaves the nullifier.
        assert_eq!(store.sweep_login_records(150, 10).unwrap(), 1);
        assert_eq!(stored(&store, LoginRecord::Commitment, &key), None);
        assert_eq!(stored(&store, LoginRecord::Nullifier, &key).as_deref(), Some(&b"nullifier"[..]));
        assert_eq!(store.sweep_login_records(201, 10).unwrap(), 1);
        assert_eq!(stored(&store, LoginRecord::Nullifier, &key), None);
        // The same key and the same expiry in both kinds: both swept.
        store.insert_login_record(LoginRecord::Commitment, &key, b"c", 300).unwrap();
        store.insert_login_record(LoginRecord::Nullifier, &key, b"n", 300).unwrap();
        assert_eq!(store.sweep_login_records(301, 10).unwrap(), 2);
        for kind in KINDS {
            assert_eq!(stored(&store, kind, &key), None);
        }
    }

    #[test]
    fn login_records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        {
            let store = open(&path);
            store.insert_login_record(LoginRecord::Commitment, b"c", b"commitment", 500).unwrap();
            store.insert_login_record(LoginRecord::Nullifier, b"n", b"nullifier", 100).unwrap();
        }
        let store = open(&path);
        assert_eq!(stored(&store, LoginRecord::Commitment, b"c").as_deref(), Some(&b"commitment"[..]));
        assert_eq!(stored(&store, LoginRecord::Nullifier, b"n").as_deref(), Some(&b"nullifier"[..]));
        assert_eq!(
            store.insert_login_record(LoginRecord::Commitment, b"c", b"other", 900).unwrap().as_deref(),
            Some(&b"commitment"[..])
        );
        // Their expiry survives too.
        assert_eq!(store.sweep_login_records(101, 10).unwrap(), 1);
        drop(store);
        let store = open(&path);
        assert_eq!(stored(&store, LoginRecord::Nullifier, b"n"), None);
        assert_eq!(stored(&store, LoginRecord::Commitment, b"c").as_deref(), Some(&b"commitment"[..]));
        assert_eq!(store.sweep_login_records(501, 10).unwrap(), 1);
        assert_eq!(stored(&store, LoginRecord::Commitment, b"c"), None);
    }

    #[test]
    fn sweeping_forgets_exactly_the_expired_records() {
        let (_dir, store) = fresh();
        // Nothing to sweep in a fresh database (the tables do not exist yet).
        assert_eq!(store.sweep_login_records(u64::MAX, usize::MAX).unwrap(), 0);
        let records: [(LoginRecord, &[u8], u64); 6] = [
            (LoginRecord::Commitment, b"c0", 0),
            (LoginRecord::Commitment, b"c100", 100),
            (LoginRecord::Nullifier, b"n100", 100),
            (LoginRecord::Commitment, b"c200", 200),
            (LoginRecord::Nullifier, b"n300", 300),
            (LoginRecord::Commitment, b"cmax", u64::MAX),
        ];
        for (kind, key, expires_at) in records {
            assert_eq!(store.insert_login_record(kind, key, key, expires_at).unwrap(), None);
        }
        let present = |store: &NodeStore| -> Vec<&[u8]> {
            records
                .iter()
                .filter(|(kind, key, _)| stored(store, *kind, key).is_some())
                .map(|(_, key, _)| *key)
                .collect()
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
        // Inserted out of order, alternating kinds.
        let expiries = [14u64, 10, 13, 11, 12];
        for (i, expires_at) in expiries.into_iter().enumerate() {
            let kind = if i % 2 == 0 { LoginRecord::Commitment } else { LoginRecord::Nullifier };
            store.insert_login_record(kind, &expires_at.to_be_bytes(), b"v", expires_at).unwrap();
        }
        let left = |store: &NodeStore| -> Vec<u64> {
            let mut out: Vec<u64> = expiries
                .into_iter()
                .filter(|at| KINDS.iter().any(|kind| stored(store, *kind, &at.to_be_bytes()).is_some()))
                .collect();
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

    #[test]
    fn a_swept_key_can_be_inserted_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        let store = open(&path);
        for kind in KINDS {
            store.insert_login_record(kind, b"token", b"old", 100).unwrap();
            assert_eq!(store.sweep_login_records(101, 10).unwrap(), 1);
            assert_eq!(store.insert_login_record(kind, b"token", b"new", 500).unwrap(), None);
            assert_eq!(stored(&store, kind, b"token").as_deref(), Some(&b"new"[..]));
            // The new record has the new expiry only: the old one is gone.
            assert_eq!(store.sweep_login_records(500, 10).unwrap(), 0);
            assert_eq!(stored(&store, kind, b"token").as_deref(), Some(&b"new"[..]));
            assert_eq!(store.sweep_login_records(501, 10).unwrap(), 1);
            assert_eq!(stored(&store, kind, b"token"), None);
        }
        drop(store);
        // And the database stays consistent across a reopen.
        let store = open(&path);
        for kind in KINDS {
            assert_eq!(stored(&store, kind, b"token"), None);
        }
        assert_eq!(store.sweep_login_records(u64::MAX, 10).unwrap(), 0);
    }
}
