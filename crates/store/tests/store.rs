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
