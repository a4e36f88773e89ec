//! The block applier on a real store: exactly once, and halting on a
//! diverged state root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorumkey_ledger::testkit::{TEST_VERIFIER, TestNetwork};
use quorumkey_node::applier::{ApplyError, ApplyReport, BlockApplier, FinalizedBlock};
use quorumkey_node::observability::{HealthCell, NodeStatus};

fn block(height: u64, transactions: Vec<Vec<u8>>) -> FinalizedBlock {
    FinalizedBlock {
        height,
        timestamp_ms: 1_000,
        transactions: transactions.into_iter().map(bytes::Bytes::from).collect(),
    }
}

#[test]
fn applies_each_block_once_and_reports_health() {
    let net = TestNetwork::new(4, 1);
    let dir = tempfile::tempdir().unwrap();
    let health = HealthCell::new(1, *net.ledger.network_id());
    let applier =
        BlockApplier::open(net.ledger.clone(), &dir.path().join("node.redb"), health.clone(), &test_store_options())
            .unwrap();
    assert_eq!(health.get().status, NodeStatus::Ok);
    assert_eq!(health.get().height, 0);

    let first = block(1, vec![net.deal(1, 2, 5), net.assign(2, TEST_VERIFIER, "alice"), b"garbage".to_vec()]);
    let report = applier.apply(&first, 1_040).unwrap();
    let ApplyReport::Applied { accepted, rejected, state_root, .. } = report else { panic!("must apply: {report:?}") };
    assert_eq!((accepted, rejected), (2, 1));
    assert_eq!(applier.apply(&first, 1_050).unwrap(), ApplyReport::AlreadyApplied);
    assert_eq!(health.get().height, 1);
    assert_eq!(health.get().state_root, hex::encode(state_root));
    applier.check_root(1, &state_root).unwrap();
    // Heights this node has not reached are not judged.
    applier.check_root(7, &[0u8; 32]).unwrap();
}

#[test]
fn a_diverged_root_halts_the_node_for_good() {
    let net = TestNetwork::new(4, 2);
    let dir = tempfile::tempdir().unwrap();
    let health = HealthCell::new(2, *net.ledger.network_id());
    let applier =
        BlockApplier::open(net.ledger.clone(), &dir.path().join("node.redb"), health.clone(), &test_store_options())
            .unwrap();
    applier.apply(&block(1, vec![]), 2_000).unwrap();
    let mismatch = applier.check_root(1, &[0xab; 32]).unwrap_err();
    assert_eq!(mismatch.height, 1);
    assert!(matches!(health.get().status, NodeStatus::Halted(ref reason) if reason.contains("diverged")));
    assert!(matches!(applier.apply(&block(2, vec![]), 3_000), Err(ApplyError::Halted(_))));
    assert!(applier.halted().is_some());
}

#[test]
fn a_gap_in_heights_halts_the_node() {
    let net = TestNetwork::new(4, 3);
    let dir = tempfile::tempdir().unwrap();
    let health = HealthCell::new(1, *net.ledger.network_id());
    let applier =
        BlockApplier::open(net.ledger.clone(), &dir.path().join("node.redb"), health.clone(), &test_store_options())
            .unwrap();
    assert!(matches!(applier.apply(&block(5, vec![]), 0), Err(ApplyError::Store(_))));
    assert!(matches!(health.get().status, NodeStatus::Halted(_)));
}

/// The store options of a test node (a fixed key-encryption key).
fn test_store_options() -> quorumkey_store::StoreOptions {
    quorumkey_store::StoreOptions::new(quorumkey_store::Kek::from_bytes(&[0x42; 32]))
}
