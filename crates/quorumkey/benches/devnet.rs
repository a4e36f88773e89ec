//! Finalization latency and assignments per second on a 5-node devnet on
//! this machine: five real `quorumkey node` processes (release build), real
//! TCP and storage, all sharing this machine's cores.
//!
//! `cargo bench -p quorumkey --bench devnet`
//!
//! - latency: one `AssignKey` at a time, to a random node, with `wait`;
//!   the time from sending it to the node answering that it is finalized.
//! - throughput: many `AssignKey` in flight at once, round robin over the
//!   nodes, each waited for; assignments finalized per second.
//! - floor: every node must check each transaction's ed25519 signature at
//!   least once, and apply it; measured here in process, that bounds the
//!   devnet at `cores / (nodes * (check + apply))` assignments per second.
//!
//! It first waits for the DKG to fill the initial pool (1,024 keys); the
//! throughput run uses the pool up, so the DKG refills it meanwhile.
//!
//! Under `cargo test` (no `--bench`) it runs a short smoke version.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use quorumkey::bench::percentile;
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::random::os_rng;
use quorumkey_devnet::supervisor::Devnet;
use quorumkey_ledger::MemoryState;
use quorumkey_node::config::{NetworkDkg, NetworkPolicyFile};
use support::{DevnetSigners, cores, devnet_options, machine};

const NODES: u16 = 5;
const VERIFIER: &str = "bench";

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// In-process cost of checking and applying one new assignment.
fn floor_per_assignment(signers: &DevnetSigners, register: &[u8], samples: usize) -> (Duration, Duration) {
    let ledger = &signers.ledger;
    let transactions: Vec<Vec<u8>> = (0..samples).map(|i| signers.assign(1, VERIFIER, &format!("floor-{i}"))).collect();
    let sets = ledger.node_sets(&MemoryState::default()).unwrap();
    let start = Instant::now();
    for transaction in &transactions {
        assert!(ledger.check_transaction(transaction, &sets).is_ok());
    }
    let check = start.elapsed() / samples as u32;
    let mut state = MemoryState::default();
    state.commit(&ledger.genesis_outcome(&state).unwrap().writes);
    state.commit(&ledger.apply_block(&state, 1, 1_000, &[register]).unwrap().writes);
    let start = Instant::now();
    ledger.apply_block(&state, 2, 2_000, &transactions).unwrap();
    let apply = start.elapsed() / samples as u32;
    (check, apply)
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (latency_samples, throughput_count, in_flight) = if full { (300, 4000, 256) } else { (10, 100, 32) };
    let dir = tempfile::tempdir().unwrap();
    let mut options = devnet_options(dir.path(), NODES, NetworkDkg::default());
    // This measures the ledger's throughput: the policy's assignment
    // budgets (which a real network keeps far below it) are lifted.
    options.policy = NetworkPolicyFile {
        assignments_per_verifier: Some(u32::MAX),
        assignments_per_node: Some(u32::MAX),
        assignments_per_window: Some(u32::MAX),
        ..NetworkPolicyFile::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut devnet = Devnet::launch(&options).unwrap();
        devnet.wait_for_height(1, Duration::from_secs(120)).await.unwrap();
        let signers = DevnetSigners::load(&options.dir);
        let owner = SigningKey::generate_from_rng(&mut os_rng());
        let register = signers.register(VERIFIER, &owner);
        let answer = devnet.client(1).unwrap().submit(&register, true).await.unwrap();
        assert_eq!(answer.status, "finalized");
        let clients: Vec<_> = (1..=NODES).map(|i| devnet.client(i).unwrap()).collect();
        // Finalized at node 1; every node admits assignments only once it
        // has applied the registration too.
        let deadline = Instant::now() + Duration::from_secs(60);
        for client in &clients {
            while client.verifier(VERIFIER).await.unwrap().is_none() {
                assert!(Instant::now() < deadline, "a node never applied the registration");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Let the DKG fill the initial pool first, so that the latency
        // figures are not those of a network busy making keys (the
        // throughput run then uses up the pool and runs alongside refills).
        let deadline = Instant::now() + Duration::from_secs(600);
        let initial_pool = if full { 1024 } else { 0 };
        while clients[0].status().await.unwrap().ready_keys < initial_pool {
            assert!(Instant::now() < deadline, "the DKG did not fill the pool");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        // Latency: one at a time.
        let mut latencies = Vec::with_capacity(latency_samples);
        for i in 0..latency_samples {
            let node = 1 + (i as u16 * 7 + 3) % NODES;
            let transaction = signers.assign(node, VERIFIER, &format!("latency-{i}"));
            let start = Instant::now();
            let answer = clients[usize::from(node) - 1].submit(&transaction, true).await.unwrap();
            assert_eq!(answer.status, "finalized");
            latencies.push(start.elapsed());
        }
        latencies.sort();

        // Throughput: many in flight.
        let transactions: Vec<(u16, Vec<u8>)> = (0..throughput_count)
            .map(|i| {
                let node = 1 + (i % usize::from(NODES)) as u16;
                (node, signers.assign(node, VERIFIER, &format!("throughput-{i}")))
            })
            .collect();
        let start = Instant::now();
        let finalized = futures::stream::iter(transactions.iter().map(|(node, transaction)| {
            let client = clients[usize::from(*node) - 1].clone();
            async move { client.submit(transaction, true).await.map(|answer| answer.status == "finalized") }
        }))
        .buffer_unordered(in_flight)
        .filter(|outcome| futures::future::ready(matches!(outcome, Ok(true))))
        .count()
        .await;
        let elapsed = start.elapsed();
        assert_eq!(finalized, throughput_count, "every assignment finalizes");
        let per_second = throughput_count as f64 / elapsed.as_secs_f64();
        let height = clients[0].status().await.unwrap().height;
        devnet.stop().await;

        let (check, apply) = floor_per_assignment(&signers, &register, 2000);
        let cores = cores() as f64;
        let floor = cores / (f64::from(NODES) * (check + apply).as_secs_f64());
        println!("devnet benchmark ({} nodes, one process each, on {})", NODES, machine());
        println!(
            "  finalization latency (submit -> finalized, {latency_samples} sequential): p50 {}  p99 {}  max {}",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            ms(*latencies.last().unwrap())
        );
        println!(
            "  throughput: {throughput_count} assignments, {in_flight} in flight: {:.2} s, {per_second:.0} assignments/s (height {height})",
            elapsed.as_secs_f64()
        );
        println!(
            "  floor: check {:.1} us + apply {:.1} us per assignment per node, x{NODES} nodes on {cores} cores = {floor:.0} assignments/s",
            check.as_secs_f64() * 1e6,
            apply.as_secs_f64() * 1e6
        );
        println!("  ratio to the floor: {:.3}", per_second / floor);
    });
}
