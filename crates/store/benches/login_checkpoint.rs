//! Login-record checkpoints: how long an insert waits while redb takes
//! the records over.
//!
//! `cargo bench -p quorumkey-store --bench login_checkpoint`
//!
//! A checkpoint moves the records pending in the log into redb in one
//! durable transaction: tens of milliseconds for 4,096 records, growing
//! with the table. Two runs on fresh stores, the same inserts in each:
//! - `inline`: the inserting thread runs the checkpoint itself once one is
//!   due, as the login-records writer did before background checkpoints
//!   (the requests of that group, and every one queued behind it, wait);
//! - `background`: a thread of its own runs it, woken as the node's
//!   `login-checkpoints` thread is, while inserts go on.
//!
//! Inserts are single records of 400 bytes (a commitment record's size)
//! under random 32-byte keys, arriving at [`RATE`] per second (about five
//! times one node's share of the sustained login benchmark), for
//! [`RECORDS`] records: six checkpoints. An insert's latency runs from its
//! arrival, so one that waits behind a checkpoint counts the wait. It
//! prints the inserts' latency (p50, p99, p99.9, max), the checkpoints'
//! durations, and the floor: one append and `fdatasync` of a record alone
//! (the p50 of the first 1,000 inserts, before any checkpoint).
//!
//! Under `cargo test` (no `--bench`) it runs a smoke version: one
//! checkpoint per mode, inserts unpaced, and checks that each mode ran
//! its checkpoint and every insert was new.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use quorumkey_ledger::testkit::TestNetwork;
use quorumkey_store::{Kek, NewLoginRecord, NodeStore};

/// Inserts per run, and how many arrive per second (the full benchmark).
const RECORDS: u64 = 6 * 4096 + 100;
const RATE: u64 = 2_000;
/// The smoke version: one checkpoint, as fast as the store goes.
const SMOKE_RECORDS: u64 = 4096 + 100;
const SMOKE_RATE: u64 = 1_000_000;

#[derive(Clone, Copy, Debug)]
enum Checkpoints {
    Inline,
    Background,
}

struct Run {
    inserts_ms: Vec<f64>,
    checkpoints_ms: Vec<f64>,
}

fn run(mode: Checkpoints, records: u64, rate: u64) -> Run {
    let net = TestNetwork::new(4, 1);
    // Next to the repository (the disk a devnet's nodes use), not a tmpfs.
    let dir = tempfile::Builder::new().prefix("quorumkey-checkpoint-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store =
        Arc::new(NodeStore::open(&dir.path().join("node.redb"), &net.ledger, &Kek::from_bytes(&[0x42; 32])).unwrap());
    let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
    let background = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut durations = Vec::new();
            while woken.recv().is_ok() {
                if store.login_checkpoint_due().unwrap() {
                    let started = Instant::now();
                    store.checkpoint_login_records().unwrap();
                    durations.push(started.elapsed().as_secs_f64() * 1e3);
                }
            }
            durations
        })
    };
    let mut inserts_ms = Vec::with_capacity(records as usize);
    let mut inline_ms = Vec::new();
    let start = Instant::now();
    let mut state = 0x5eed_u64;
    for i in 0..records {
        let due_at = start + Duration::from_micros(i * 1_000_000 / rate);
        if let Some(wait) = due_at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut key = [0u8; 32];
        for chunk in key.chunks_mut(8) {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            chunk.copy_from_slice(&mix(state).to_le_bytes());
        }
        let record = NewLoginRecord { key: key.to_vec(), value: vec![7; 400], expires_at: u64::MAX };
        assert_eq!(store.insert_login_records(std::slice::from_ref(&record)).unwrap(), [None]);
        if store.login_checkpoint_due().unwrap() {
            match mode {
                Checkpoints::Inline => {
                    let checkpoint = Instant::now();
                    store.checkpoint_login_records().unwrap();
                    inline_ms.push(checkpoint.elapsed().as_secs_f64() * 1e3);
                }
                Checkpoints::Background => {
                    let _ = wake.try_send(());
                }
            }
        }
        // The request is answered here; it arrived at `due_at` (an insert
        // that could not start on time was queued behind the one before).
        inserts_ms.push(due_at.elapsed().as_secs_f64() * 1e3);
    }
    drop(wake);
    let background_ms = background.join().unwrap();
    Run { inserts_ms, checkpoints_ms: if inline_ms.is_empty() { background_ms } else { inline_ms } }
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (records, rate) = if full { (RECORDS, RATE) } else { (SMOKE_RECORDS, SMOKE_RATE) };
    println!("machine: {}", common::cpu_and_cores());
    if !full {
        println!("smoke run (cargo test): unpaced, so the latencies below mean nothing; `cargo bench` measures");
    }
    println!("{records} inserts of one 400-byte record each, paced at {rate}/s; a checkpoint is due at 4,096 pending");
    let mut floor = f64::NAN;
    for mode in [Checkpoints::Inline, Checkpoints::Background] {
        let Run { inserts_ms, checkpoints_ms } = run(mode, records, rate);
        assert_eq!(checkpoints_ms.len() as u64, records / 4096, "{mode:?}: one checkpoint per 4,096 records");
        let mut first = inserts_ms[..1_000].to_vec();
        sort(&mut first);
        if floor.is_nan() {
            floor = first[first.len() / 2];
        }
        let mut sorted = inserts_ms.clone();
        sort(&mut sorted);
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        let slow = inserts_ms.iter().filter(|&&ms| ms > 10.0 * floor).count();
        println!(
            "{:<10} insert p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.2} ms, max {:.2} ms ({:.0}x the floor); {slow} inserts over 10x the floor",
            format!("{mode:?}").to_lowercase(),
            at(0.5),
            at(0.99),
            at(0.999),
            at(1.0),
            at(1.0) / floor,
        );
        let durations: Vec<String> = checkpoints_ms.iter().map(|ms| format!("{ms:.0}")).collect();
        println!("{:<10} checkpoints: {} ms", "", durations.join(", "));
    }
    println!("floor: one append and fdatasync alone, p50 {floor:.3} ms");
}

fn sort(values: &mut [f64]) {
    values.sort_by(f64::total_cmp);
}

/// SplitMix64's finalizer: random-looking keys, reproducibly.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
