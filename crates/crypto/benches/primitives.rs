//! Micro-benchmarks of every primitive the protocols are built from. Later
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! benchmarks (DKG, login) state their floors in these units.
//!
//! `cargo bench -p quorumkey-crypto --bench primitives` prints the machine,
//! criterion's report per operation, and a closing table in µs/op.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BatchSize, Criterion};
use k256::elliptic_curve::Generate;
use k256::elliptic_curve::ops::LinearCombination;
use quorumkey_crypto::dleq::{DleqProof, DleqStatement};
use quorumkey_crypto::ecies;
use quorumkey_crypto::group::*;
use quorumkey_crypto::hash::token_commitment;
use quorumkey_crypto::shamir::{Polynomial, interpolate_points, reconstruct_secret};
use quorumkey_crypto::signature::RecoverableSignature;
use quorumkey_crypto::transcript::Transcript;
use quorumkey_crypto::vss::{PedersenCommitment, batch_verify_pedersen};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const GROUP: &str = "crypto";

/// (benchmark id, what it measures, operations per iteration)
const BENCHES: &[(&str, &str, f64)] = &[
    ("fixed_base_mul_g", "k·G (precomputed tables)", 1.0),
    ("fixed_base_mul_h", "k·H (H as a variable base)", 1.0),
    ("variable_base_mul", "k·P, P arbitrary", 1.0),
    ("point_add", "P + Q (projective)", 1.0),
    ("msm_256_per_point", "multi-scalar mult., 256 points, per point", 256.0),
    ("keccak_token_commitment", "keccak256 of a 900-byte ID token", 1.0),
    ("ecdsa_sign", "recoverable ECDSA sign over keccak256", 1.0),
    ("ecdsa_verify", "ECDSA verify over keccak256", 1.0),
    ("ecdsa_recover", "ECDSA public-key recovery", 1.0),
    ("ecies_encrypt_share", "ECIES encrypt a 32-byte share", 1.0),
    ("ecies_decrypt_share", "ECIES decrypt a 32-byte share", 1.0),
    ("interpolate_t3", "Lagrange at 0 from t=3 shares (n=5)", 1.0),
    ("interpolate_t5", "Lagrange at 0 from t=5 shares (n=9)", 1.0),
    ("interpolate_points_t3", "Lagrange in the exponent, t=3", 1.0),
    ("pedersen_commit_t3", "Pedersen commitment, degree 2", 1.0),
    ("pedersen_batch_verify_64x_t3", "batch check of 64 Pedersen shares, per share", 64.0),
    ("dleq_prove", "DLEQ proof", 1.0),
    ("dleq_verify", "DLEQ verification", 1.0),
];

fn main() {
    print_machine();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    run(&mut criterion);
    criterion.final_summary();
    if std::env::args().any(|arg| arg == "--bench") {
        print_table();
    }
}

fn run(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let scalar = Scalar::generate_from_rng(&mut rng);
    let point = Point::generate_from_rng(&mut rng);
    let other = Point::generate_from_rng(&mut rng);
    let h = generator_h();
    let mut group = c.benchmark_group(GROUP);

    group.bench_function("fixed_base_mul_g", |b| b.iter(|| Point::mul_by_generator(black_box(&scalar))));
    group.bench_function("fixed_base_mul_h", |b| b.iter(|| black_box(h) * black_box(scalar)));
    group.bench_function("variable_base_mul", |b| b.iter(|| black_box(point) * black_box(scalar)));
    group.bench_function("point_add", |b| b.iter(|| black_box(point) + black_box(other)));
    let terms: Vec<(Point, Scalar)> =
        (0..256).map(|_| (Point::generate_from_rng(&mut rng), Scalar::generate_from_rng(&mut rng))).collect();
    group.bench_function("msm_256_per_point", |b| b.iter(|| Point::lincomb_vartime(black_box(terms.as_slice()))));

    let token = "x".repeat(900);
    group.bench_function("keccak_token_commitment", |b| b.iter(|| token_commitment(black_box(&token))));

    let signing_key = k256::ecdsa::SigningKey::generate_from_rng(&mut rng);
    let verifying = PublicKey::from(signing_key.verifying_key());
    let message = b"mug00\x1c7daa7a21f597b73614736f405adf156138637ed7c689bb73226dc818620bf583\x1ctest\x1c1700000000";
    let signature = RecoverableSignature::sign_keccak(&signing_key, message);
    group.bench_function("ecdsa_sign", |b| {
        b.iter(|| RecoverableSignature::sign_keccak(&signing_key, black_box(message)))
    });
    group.bench_function("ecdsa_verify", |b| b.iter(|| signature.verify_keccak(&verifying, black_box(message))));
    group.bench_function("ecdsa_recover", |b| b.iter(|| signature.recover_keccak(black_box(message))));

    let recipient = NonZeroScalar::generate_from_rng(&mut rng);
    let recipient_public = PublicKey::from_secret_scalar(&recipient);
    let share_bytes = scalar_to_bytes(&scalar);
    let ciphertext = ecies::encrypt(&recipient_public, &share_bytes, &mut rng);
    group.bench_function("ecies_encrypt_share", |b| {
        b.iter(|| ecies::encrypt(&recipient_public, black_box(&share_bytes), &mut rng))
    });
    group.bench_function("ecies_decrypt_share", |b| b.iter(|| ecies::decrypt(&recipient, black_box(&ciphertext))));

    for (name, t, n) in [("interpolate_t3", 3usize, 5u32), ("interpolate_t5", 5, 9)] {
        let shares = Polynomial::random(t - 1, &mut rng).shares(n);
        let chosen = &shares[n as usize - t..];
        group.bench_function(name, |b| b.iter(|| reconstruct_secret(black_box(chosen))));
    }
    let polynomial = Polynomial::random(2, &mut rng);
    let public_shares: Vec<(u32, Point)> =
        polynomial.shares(5).iter().skip(2).map(|s| (s.index, Point::mul_by_generator(&s.value))).collect();
    group.bench_function("interpolate_points_t3", |b| {
        b.iter(|| interpolate_points(black_box(&public_shares), &Scalar::ZERO))
    });

    let blinding = Polynomial::random(2, &mut rng);
    group.bench_function("pedersen_commit_t3", |b| b.iter(|| PedersenCommitment::commit(&polynomial, &blinding)));
    let dealt: Vec<(PedersenCommitment, _)> = (0..64)
        .map(|_| {
            let a = Polynomial::random(2, &mut rng);
            let b = Polynomial::random(2, &mut rng);
            (PedersenCommitment::commit(&a, &b).unwrap(), PedersenCommitment::share_of(&a, &b, 3).unwrap())
        })
        .collect();
    let pairs: Vec<_> = dealt.iter().map(|(c, s)| (c, s)).collect();
    group.bench_function("pedersen_batch_verify_64x_t3", |b| b.iter(|| batch_verify_pedersen(&pairs, &mut rng)));

    let witness = NonZeroScalar::generate_from_rng(&mut rng);
    let statement = DleqStatement::from_secret(generator(), point, &witness);
    let proof = DleqProof::prove(&mut Transcript::new(b"bench"), &statement, &witness, &mut rng).unwrap();
    group.bench_function("dleq_prove", |b| {
        b.iter_batched(
            || Transcript::new(b"bench"),
            |mut t| DleqProof::prove(&mut t, &statement, &witness, &mut rng),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("dleq_verify", |b| {
        b.iter_batched(|| Transcript::new(b"bench"), |mut t| proof.verify(&mut t, &statement), BatchSize::SmallInput)
    });
    group.finish();
}

fn print_machine() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name").and_then(|rest| rest.split(':').nth(1)))
        .map_or_else(|| "unknown CPU".to_owned(), |m| m.trim().to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:").map(|rest| rest.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("machine: {model}, {cores} cores, {memory} memory; one thread per benchmark");
}

fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("criterion")
}

fn print_table() {
    let home = criterion_home();
    println!("\n{:<30} {:>12}  what", "operation", "µs/op");
    for (id, what, per_iteration) in BENCHES {
        let path = home.join(GROUP).join(id).join("new/estimates.json");
        let mean_ns = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|json| json["mean"]["point_estimate"].as_f64());
        match mean_ns {
            Some(ns) => println!("{id:<30} {:>12.3}  {what}", ns / 1000.0 / per_iteration),
            None => println!("{id:<30} {:>12}  {what}", "not run"),
        }
    }
}
