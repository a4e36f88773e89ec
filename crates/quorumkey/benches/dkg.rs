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

use std::hint::black_box;
use std::time::{Duration, Instant};

use quorumkey_crypto::group::{NonZeroScalar, Point, Scalar, generator, pedersen_commit};
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_dkg::dealing::ParsedDealing;
use quorumkey_dkg::msm::msm;
use quorumkey_dkg::{
    AggregateCommitments, BatchContext, BatchParams, DealerSecrets, Dealing, KeyShares, finish_keys, open_dealings,
    verify_public_shares,
};
use quorumkey_ledger::DkgSettings;
use quorumkey_node::config::NetworkDkg;
use quorumkey_node::devnet::Devnet;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use support::{cores, devnet_options, machine};

const NODES: u16 = 5;

/// Time per run of `f`: the median of 9 rounds of `runs` runs (this
/// machine's speed drifts by up to 2x over seconds; the median of short
/// rounds is what the code costs when it gets the core).
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut rounds: Vec<Duration> = (0..9)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..runs {
                black_box(f());
            }
            start.elapsed() / runs as u32
        })
        .collect();
    rounds.sort();
    rounds[rounds.len() / 2]
}

/// Unit costs and the per-key count of each required operation, and the
/// whole protocol's CPU for one batch (every node's part), in process.
struct Floor {
    fixed_base: Duration,
    pedersen: Duration,
    check_point: Duration,
    verify_point: Duration,
    per_key_ops: Duration,
    protocol_per_key: Duration,
}

impl Floor {
    fn mean(&self, other: &Floor) -> Floor {
        let mean = |a: Duration, b: Duration| (a + b) / 2;
        Floor {
            fixed_base: mean(self.fixed_base, other.fixed_base),
            pedersen: mean(self.pedersen, other.pedersen),
            check_point: mean(self.check_point, other.check_point),
            verify_point: mean(self.verify_point, other.verify_point),
            per_key_ops: mean(self.per_key_ops, other.per_key_ops),
            protocol_per_key: mean(self.protocol_per_key, other.protocol_per_key),
        }
    }
}

fn measure_floor(keys: u16) -> Floor {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let params = BatchParams::new(NODES, keys).unwrap();
    let (n, t, k) = (usize::from(NODES), usize::from(params.threshold()), usize::from(keys));
    let dealers = usize::from(params.dealers());
    let scalars: Vec<Scalar> = (0..64).map(|_| Scalar::generate_from_rng(&mut rng)).collect();
    // Both generators' tables are built on first use: warm them up first.
    black_box(pedersen_commit(&scalars[0], &scalars[1]));
    let fixed_base = time(200, || Point::mul_by_generator(&scalars[7]));
    let pedersen = time(200, || pedersen_commit(&scalars[3], &scalars[9]));
    // A recipient's check of all D dealings at once: D·K·t points, 64-bit
    // weights times j^l.
    let check: Vec<(Point, Scalar)> = (0..dealers * k * t)
        .map(|i| (Point::mul_by_generator(&scalars[i % 64]), Scalar::from(rng.next_u64()) * Scalar::from(343u64)))
        .collect();
    let check_point = time(1, || msm(&check)) / (dealers * k * t) as u32;
    // Public share verification: 2t·K points (the aggregate commitments and
    // t publications), 128-bit weights times small powers.
    let verify: Vec<(Point, Scalar)> = (0..2 * t * k)
        .map(|i| {
            let weight = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
            (Point::mul_by_generator(&scalars[i % 64]), Scalar::from(weight) * Scalar::from(1 + (i % 25) as u64))
        })
        .collect();
    let verify_point = time(1, || msm(&verify)) / (2 * t * k) as u32;
    // Per key: the D dealers' commitments (D·t), public shares (n fixed
    // base), every recipient's check of every dealing (n·D·t points), and
    // every node's verification of t publications (2t points per key each).
    let per_key_ops = pedersen * (dealers * t) as u32
        + fixed_base * n as u32
        + check_point * (n * dealers * t) as u32
        + verify_point * (n * 2 * t) as u32;

    // The whole protocol, every node's part, for one batch.
    let context = BatchContext::new([9u8; 32], 0, params);
    let secrets: Vec<NonZeroScalar> = (0..n).map(|_| NonZeroScalar::generate_from_rng(&mut rng)).collect();
    let public: Vec<Point> = secrets.iter().map(|s| generator() * s.as_ref()).collect();
    let mut one_batch = || {
        let dealings: Vec<_> = (1..=params.dealers())
            .map(|i| DealerSecrets::random(params, &mut rng).deal(&context, i, &public, &mut rng).unwrap())
            .collect();
        let parsed: Vec<_> = dealings.iter().zip(1u16..).map(|(d, i)| d.parse(&context, i).unwrap()).collect();
        let items: Vec<(u16, &Dealing, &ParsedDealing)> =
            dealings.iter().zip(&parsed).zip(1u16..).map(|((d, p), i)| (i, d, p)).collect();
        let mut publications = Vec::new();
        for j in 1..=NODES {
            // As a node does: all dealings opened and checked at once.
            let received: Vec<_> = open_dealings(&context, &items, j, &secrets[usize::from(j) - 1], &mut rng)
                .into_iter()
                .map(Result::unwrap)
                .collect();
            let shares = KeyShares::aggregate(&params, j, &received.iter().collect::<Vec<_>>()).unwrap();
            publications.push(shares.prove_public_shares(&context, &mut rng));
        }
        for _ in 0..n {
            // Every node parses the dealings, sums them, verifies and finishes.
            let parsed: Vec<_> = dealings.iter().zip(1u16..).map(|(d, i)| d.parse(&context, i).unwrap()).collect();
            let aggregate = AggregateCommitments::sum(params, &parsed.iter().collect::<Vec<_>>()).unwrap();
            let items: Vec<(u16, &_)> = (1u16..).zip(publications.iter()).collect();
            let verified: Vec<_> = verify_public_shares(&context, &aggregate, &items)
                .into_iter()
                .zip(1u16..)
                .map(|(v, j)| (j, v.unwrap()))
                .collect();
            black_box(finish_keys(&params, &verified).unwrap());
        }
    };
    // The median of three batches.
    let mut rounds: Vec<Duration> = (0..3)
        .map(|_| {
            let start = Instant::now();
            one_batch();
            start.elapsed()
        })
        .collect();
    rounds.sort();
    let protocol_per_key = rounds[1] / k as u32;
    Floor { fixed_base, pedersen, check_point, verify_point, per_key_ops, protocol_per_key }
}

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
    let before = measure_floor(batch_keys);
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
    let after = measure_floor(batch_keys);
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
