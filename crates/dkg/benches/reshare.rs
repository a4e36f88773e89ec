//! What a reshare batch costs, step by step, and the keys per second a
//! network could hand over if those steps were all it did: for each shape
//! (a refresh of 5 nodes, 4 → 5, 5 → 4, 5 → 7) with the largest batch whose
//! dealing fits a transaction, one old dealer's dealing, one new node's
//! opening and check of the `t` qualified dealings, the state machine's
//! parse of one dealing (proof included) and its handover computation (the
//! new public shares, every public key checked). The whole network's work
//! per batch, as on a devnet whose nodes share this machine: `t` dealings,
//! `n'` recipients, and every replica of the ledger (the larger set's size)
//! parsing `t` dealings and computing the handover.
//!
//! The floor is the cryptography the protocol cannot skip, measured in the
//! same run: `k·G` for each of the `t·K·(t' − 1)` commitments, and for each
//! recipient one multi-scalar multiplication of the `t·K·t'` points its
//! check sums (64-bit weights times small powers), at that size.
//!
//! `cargo bench -p quorumkey-dkg --bench reshare`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use quorumkey_crypto::group::{AffinePoint, NonZeroScalar, Point, Scalar};
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::shamir::Polynomial;
use quorumkey_dkg::msm::msm;
use quorumkey_dkg::reshare::recipient::DealingToOpen;
use quorumkey_dkg::reshare::{
    ParsedReshareDealing, ReshareContext, ReshareDealing, ReshareParams, ReshareSecrets, combine_reshared,
    handover_keys, open_reshare_dealings,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// The DKG's dealing budget: a transaction less room for its envelope.
const DEALING_BUDGET: usize = 256 * 1024 - 512;

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// Median time of one call over `rounds` calls.
fn time(rounds: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[rounds / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn run(old_nodes: u16, new_nodes: u16, rng: &mut ChaCha20Rng, rounds: usize) {
    let params = ReshareParams::largest_fitting(old_nodes, new_nodes, DEALING_BUDGET).unwrap();
    let keys = usize::from(params.keys());
    let t = params.old_threshold();
    let context = ReshareContext::new([9u8; 32], 1, 0, 0, params);
    let old_degree = usize::from(t) - 1;
    let polynomials: Vec<Polynomial> = (0..keys).map(|_| Polynomial::random(old_degree, rng)).collect();
    let old_shares: Vec<Vec<Scalar>> = (1..=old_nodes)
        .map(|i| polynomials.iter().map(|p| p.evaluate(&Scalar::from(u64::from(i)))).collect())
        .collect();
    let old_public: Vec<Vec<AffinePoint>> =
        old_shares.iter().map(|row| row.iter().map(|s| Point::mul_by_generator(s).to_affine()).collect()).collect();
    let public_keys: Vec<AffinePoint> =
        polynomials.iter().map(|p| Point::mul_by_generator(&p.constant()).to_affine()).collect();
    let new_secrets: Vec<NonZeroScalar> = (0..new_nodes).map(|_| NonZeroScalar::generate_from_rng(&mut *rng)).collect();
    let new_keys: Vec<Point> = new_secrets.iter().map(|s| Point::GENERATOR * s.as_ref()).collect();

    // One dealer's dealing: its polynomials, commitments and ciphertexts.
    let deal_time = time(rounds, || {
        let secrets = ReshareSecrets::new(params, &old_shares[0], &mut *rng).unwrap();
        black_box(secrets.deal(&context, 1, &new_keys, &mut *rng).unwrap());
    });
    let dealings: Vec<(u16, ReshareDealing)> = (1..=t)
        .map(|i| {
            let secrets = ReshareSecrets::new(params, &old_shares[usize::from(i) - 1], &mut *rng).unwrap();
            (i, secrets.deal(&context, i, &new_keys, &mut *rng).unwrap())
        })
        .collect();
    // The state machine's parse of one dealing, its proof included.
    let parse_time = time(rounds, || {
        black_box(dealings[0].1.parse(&context, 1).unwrap());
    });
    let parsed: Vec<ParsedReshareDealing> = dealings.iter().map(|(i, d)| d.parse(&context, *i).unwrap()).collect();
    let to_open: Vec<DealingToOpen<'_>> = dealings
        .iter()
        .zip(&parsed)
        .map(|((i, d), p)| (*i, d, p, old_public[usize::from(*i) - 1].as_slice()))
        .collect();
    // One new node opens and checks every qualified dealing, then combines.
    let open_time = time(rounds, || {
        let received = open_reshare_dealings(&context, &to_open, 1, &new_secrets[0], &mut *rng);
        let received: Vec<_> = received.into_iter().map(Result::unwrap).collect();
        let refs: Vec<_> = received.iter().collect();
        black_box(combine_reshared(&params, &refs).unwrap());
    });
    let qualified: Vec<_> =
        dealings.iter().zip(&parsed).map(|((i, _), p)| (*i, p, old_public[usize::from(*i) - 1].as_slice())).collect();
    let handover_time = time(rounds, || {
        black_box(handover_keys(&params, &qualified, &public_keys).unwrap());
    });

    // The floor: k·G per commitment, and one recipient's check as a bare
    // multi-scalar multiplication of the same size and scalar lengths.
    let commitments = usize::from(t) * keys * params.commitments_per_key();
    let scalar = Scalar::from(rng.next_u64()) * Scalar::from(rng.next_u64()) * Scalar::from(rng.next_u64());
    let kg = time(rounds.max(5), || {
        for _ in 0..256 {
            black_box(Point::mul_by_generator(black_box(&scalar)));
        }
    }) / 256;
    let new_threshold = usize::from(params.new_threshold());
    let check_points = usize::from(t) * keys * new_threshold;
    let terms: Vec<(Point, Scalar)> = (0..check_points)
        .map(|i| {
            let point = Point::from(old_public[i % old_public.len()][i % keys]);
            let power = Scalar::from(1 + (i % new_threshold) as u64);
            (point, Scalar::from(rng.next_u64()) * power)
        })
        .collect();
    let check = time(rounds, || {
        black_box(msm(&terms));
    });

    let replicas = u32::from(old_nodes.max(new_nodes));
    let recipients = u32::from(new_nodes);
    let network =
        deal_time * u32::from(t) + open_time * recipients + (parse_time * u32::from(t) + handover_time) * replicas;
    let floor = kg * commitments as u32 + check * recipients;
    let per_core = keys as f64 / network.as_secs_f64();
    let floor_rate = keys as f64 / floor.as_secs_f64();
    let dealing_bytes: usize =
        params.commitments_len() + dealings[0].1.ciphertexts.iter().map(|c| c.len()).sum::<usize>();
    println!(
        "reshare {old_nodes} -> {new_nodes} nodes (t {t} -> {}), batches of {keys} keys ({} KiB dealings):",
        params.new_threshold(),
        dealing_bytes / 1024
    );
    println!(
        "  one dealing {}, one parse {}, one recipient's open+check+combine {}, the handover {} (per replica)",
        ms(deal_time),
        ms(parse_time),
        ms(open_time),
        ms(handover_time)
    );
    println!(
        "  the network's work per batch {}: {per_core:.0} keys/s per core; floor {} ({floor_rate:.0} keys/s); ratio {:.2}",
        ms(network),
        ms(floor),
        per_core / floor_rate
    );
    println!(
        "  10,000,000 keys with two such cores: {:.0} min (at the floor {:.0} min)",
        1e7 / (2.0 * per_core) / 60.0,
        1e7 / (2.0 * floor_rate) / 60.0
    );
}

fn main() {
    // `cargo test --benches` runs this once without `--bench`: keep it
    // short there.
    let quick = !std::env::args().any(|a| a == "--bench");
    println!("machine: {}", machine());
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    if quick {
        run(4, 5, &mut rng, 1);
        return;
    }
    for (old_nodes, new_nodes) in [(5, 5), (4, 5), (5, 4), (5, 7)] {
        run(old_nodes, new_nodes, &mut rng, 7);
    }
}
