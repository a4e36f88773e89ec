//! DKG keys per second on a 5-node devnet on this machine: five real
//! `quorumkey node` processes (bench build), real TCP and storage, sharing
//! this machine's cores, with the pool target set so that batches run back
//! to back. Next to it, the floor: the cryptographic work one batch needs
//! across all five nodes, measured in this process in the same run.
//!
//! `cargo bench -p quorumkey --bench dkg`
//!
//! Under `cargo test` (no `--bench`) it runs a short smoke version with
//! small batches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use quorumkey::floors::dkg_floor;
use quorumkey_devnet::supervisor::Devnet;
use quorumkey_ledger::DkgSettings;
use quorumkey_node::config::NetworkDkg;
use support::{cores, devnet_options, machine};

const NODES: u16 = 5;

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    // The network's default batch size (16 keys in the short form under
    // `cargo test`); QUORUMKEY_BENCH_BATCH_KEYS measures another.
    let (default_keys, window) = if full {
        (DkgSettings::default_for(usize::from(NODES)).batch_keys, Duration::from_secs(90))
    } else {
        (16, Duration::from_secs(5))
    };
    let batch_keys =
        std::env::var("QUORUMKEY_BENCH_BATCH_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(default_keys);
    // The floor before and after the devnet runs (this machine's speed
    // drifts; the ratio uses their mean).
    let before = dkg_floor(NODES, batch_keys).unwrap();
    eprintln!(
        "floor measured ({:.0} us per key); starting the devnet, then {} s of batches",
        before.per_key_ops.as_secs_f64() * 1e6,
        window.as_secs()
    );
    let dir = tempfile::tempdir().unwrap();
    // Always below the low-water mark: batches run back to back.
    let dkg = NetworkDkg {
        batch_keys: Some(batch_keys),
        pool_target: Some(u32::MAX),
        low_water: Some(u32::MAX),
        ..NetworkDkg::default()
    };
    let options = devnet_options(dir.path(), NODES, dkg);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (keys, elapsed, batches_height) = runtime.block_on(async {
        let mut devnet = Devnet::launch(&options).unwrap();
        devnet.wait_for_height(1, Duration::from_secs(120)).await.unwrap();
        let client = devnet.client(1).unwrap();
        // Warm up: the first batch done.
        let deadline = Instant::now() + Duration::from_secs(300);
        let first = loop {
            let status = client.status().await.unwrap();
            if status.total_keys > 0 {
                break status.total_keys;
            }
            assert!(Instant::now() < deadline, "no DKG batch finished: {status:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let start = Instant::now();
        let mut last = first;
        // Count whole batches: from the first completion to the last one
        // seen within the window.
        let mut last_at = start;
        while start.elapsed() < window {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let status = client.status().await.unwrap();
            if status.total_keys > last {
                last = status.total_keys;
                last_at = Instant::now();
            }
        }
        let height = client.status().await.unwrap().height;
        devnet.stop().await;
        (last - first, last_at - start, height)
    });
    let after = dkg_floor(NODES, batch_keys).unwrap();
    let floor = before.mean(&after);
    let per_second = keys as f64 / elapsed.as_secs_f64().max(1e-9);
    let cores = cores() as f64;
    let floor_rate = cores / floor.per_key_ops.as_secs_f64();
    let protocol_rate = cores / floor.protocol_per_key.as_secs_f64();
    println!("DKG benchmark ({NODES} nodes, one process each, batches of {batch_keys} keys, on {})", machine());
    println!(
        "  devnet: {keys} keys in {:.1} s = {per_second:.0} keys/s (height {batches_height})",
        elapsed.as_secs_f64()
    );
    println!(
        "  unit costs: fixed-base mul {:.1} us, Pedersen commitment {:.1} us, MSM {:.2} us/point (share checks of all dealings, 73-bit) and {:.2} us/point (public share verification, 128-bit)",
        floor.fixed_base.as_secs_f64() * 1e6,
        floor.pedersen.as_secs_f64() * 1e6,
        floor.check_point.as_secs_f64() * 1e6,
        floor.verify_point.as_secs_f64() * 1e6,
    );
    println!(
        "  floor (required scalar multiplications, all {NODES} nodes, per key): {:.0} us -> {floor_rate:.0} keys/s on {cores} cores (mean of {:.0} us before and {:.0} us after the devnet)",
        floor.per_key_ops.as_secs_f64() * 1e6,
        before.per_key_ops.as_secs_f64() * 1e6,
        after.per_key_ops.as_secs_f64() * 1e6,
    );
    println!(
        "  whole protocol in process (all nodes' crypto, per key): {:.0} us -> {protocol_rate:.0} keys/s on {cores} cores",
        floor.protocol_per_key.as_secs_f64() * 1e6
    );
    println!("  ratio to the floor: {:.3}", per_second / floor_rate);
}
