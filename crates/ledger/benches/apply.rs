//! Cost of the ledger state machine per transaction, the floor for the
//! devnet's assignments per second: decoding, the node's ed25519 signature
//! check, the state changes and the LtHash root update.
//!
//! `cargo bench -p quorumkey-ledger --features test-dealer --bench apply`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use quorumkey_ledger::MemoryState;
use quorumkey_ledger::testkit::{TEST_VERIFIER, TestNetwork};

const BLOCK: usize = 256;

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20)
        .configure_from_args();
    let net = TestNetwork::new(5, 1);
    let mut state = MemoryState::default();
    state.commit(&net.ledger.genesis_outcome(&state).unwrap().writes);
    let deal = net.deal(1, 100_000, 7);
    state.commit(&net.ledger.apply_block(&state, 1, 1_000, &[deal]).unwrap().writes);
    let block: Vec<Vec<u8>> =
        (0..BLOCK).map(|i| net.assign(1 + (i % 5) as u16, TEST_VERIFIER, &format!("user{i}@example.com"))).collect();

    let mut group = criterion.benchmark_group("ledger");
    group.throughput(Throughput::Elements(BLOCK as u64));
    let sets = net.ledger.node_sets(&state).unwrap();
    group.bench_function("check_transaction", |b| {
        b.iter(|| block.iter().filter(|tx| net.ledger.check_transaction(black_box(tx), &sets).is_ok()).count())
    });
    group.bench_function("apply_block_256_new_assignments", |b| {
        b.iter_batched(
            || state.clone(),
            |s| net.ledger.apply_block(&s, 2, 2_000, black_box(&block)).unwrap(),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}
