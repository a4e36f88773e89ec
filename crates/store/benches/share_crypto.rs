//! Shares at rest: what encrypting them costs.
//!
//! `cargo bench -p quorumkey-store --bench share_crypto`
//!
//! - a login's read of its key share (`NodeStore::key_share`: a redb read
//!   and an XChaCha20-Poly1305 decryption), against the same entry read
//!   from redb without decrypting: the difference is what encryption adds
//!   to a login (one share read per reveal);
//! - a finished DKG batch's shares stored (`assign_batch_shares`, one
//!   encryption per key, one durable transaction), per key;
//! - `rekey` of the whole store (every share decrypted and encrypted again
//!   in one transaction), per share;
//! - an epoch's activation (`NodeStore::activate_epoch`: next-epoch shares
//!   stored per reshare batch of 512 replace every key share, in steps of
//!   `ACTIVATION_CHUNK_KEYS` keys, one durable transaction each), per key,
//!   and its first transaction (from whose commit reads answer for the
//!   new epoch).
//!
//! Each read figure is the median of 9 rounds over every key. Under
//! `cargo test` (no `--bench`) it runs a smoke version with fewer keys and
//! checks that every share reads back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use quorumkey_ledger::testkit::TestNetwork;
use quorumkey_store::{ACTIVATION_CHUNK_KEYS, Kek, NodeStore, rekey};
use redb::{ReadableDatabase, TableDefinition};

/// Keys in the store (the full benchmark), in batches of 512.
const KEYS: u64 = 100 * 512;
const SMOKE_KEYS: u64 = 4 * 512;
const BATCH: u64 = 512;

const KEY_SHARES: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("key_shares");

fn share(index: u64) -> [u8; 32] {
    let mut out = [7u8; 32];
    out[..8].copy_from_slice(&index.to_be_bytes());
    out
}

/// The median over 9 rounds of `f` run on every key, per key.
fn median_per_key(keys: u64, mut f: impl FnMut(u64)) -> Duration {
    let mut rounds: Vec<Duration> = (0..9)
        .map(|_| {
            let start = Instant::now();
            for index in 0..keys {
                f(index);
            }
            start.elapsed() / keys as u32
        })
        .collect();
    rounds.sort();
    rounds[rounds.len() / 2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let keys = if full { KEYS } else { SMOKE_KEYS };
    println!("machine: {}", common::cpu_and_cores());
    if !full {
        println!("smoke run (cargo test): few keys; `cargo bench` measures");
    }
    let net = TestNetwork::new(4, 1);
    // Next to the repository (the disk a devnet's nodes use), not a tmpfs.
    let dir = tempfile::Builder::new().prefix("quorumkey-shares-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("node.redb");
    let (old, new) = (Kek::from_bytes(&[1; 32]), Kek::from_bytes(&[2; 32]));

    let store = NodeStore::open(&path, &net.ledger, &old).unwrap();
    let mut stored = Duration::ZERO;
    for batch in 0..keys / BATCH {
        let shares: Vec<[u8; 32]> = (batch * BATCH..(batch + 1) * BATCH).map(share).collect();
        let start = Instant::now();
        store.assign_batch_shares(batch, batch * BATCH, &shares).unwrap();
        stored += start.elapsed();
    }
    for index in [0, keys / 2, keys - 1] {
        assert_eq!(*store.key_share(index).unwrap().unwrap(), share(index));
    }
    let decrypted = median_per_key(keys, |index| {
        black_box(store.key_share(black_box(index)).unwrap());
    });
    drop(store);

    let db = redb::Database::create(&path).unwrap();
    let raw = median_per_key(keys, |index| {
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(KEY_SHARES).unwrap();
        black_box(table.get(black_box(index)).unwrap().unwrap().value().len());
    });
    drop(db);

    let start = Instant::now();
    let report = rekey(&path, Some(&old), &new).unwrap();
    let rekeyed = start.elapsed();
    assert_eq!(report.key_shares, keys);
    let store = NodeStore::open(&path, &net.ledger, &new).unwrap();
    assert_eq!(*store.key_share(keys - 1).unwrap().unwrap(), share(keys - 1));

    // The next epoch's shares, per reshare batch, then their activation.
    let next_share = |index: u64| {
        let mut out = share(index);
        out[31] = 9;
        out
    };
    for batch in 0..keys / BATCH {
        let shares: Vec<[u8; 32]> = (batch * BATCH..(batch + 1) * BATCH).map(next_share).collect();
        store.put_next_shares(1, batch, batch * BATCH, &shares).unwrap();
    }
    let start = Instant::now();
    store.start_epoch_activation(1, true).unwrap();
    let marked = start.elapsed();
    let paused = Instant::now();
    assert_eq!(*store.key_share(keys - 1).unwrap().unwrap(), next_share(keys - 1));
    // Before any move: every share read from its reshare batch's row.
    let from_rows = median_per_key(BATCH, |index| {
        black_box(store.key_share(black_box(index)).unwrap());
    });
    let start = start + paused.elapsed();
    assert_eq!(store.activate_epoch(1, true).unwrap(), keys);
    let activated = start.elapsed();
    for index in [0, keys / 2, keys - 1] {
        assert_eq!(*store.key_share(index).unwrap().unwrap(), next_share(index));
    }

    println!("{keys} key shares in batches of {BATCH}");
    println!(
        "read a key share (a login's reveal): {:.1} µs decrypted, {:.1} µs the same entry read raw: encryption adds {:.1} µs",
        micros(decrypted),
        micros(raw),
        micros(decrypted.saturating_sub(raw)),
    );
    println!(
        "store a finished batch's shares: {:.1} µs per key (encryption and one durable transaction per batch)",
        micros(stored / keys as u32)
    );
    println!(
        "rekey: {:.2} s for {keys} shares, {:.1} µs per share (one transaction, then compaction)",
        rekeyed.as_secs_f64(),
        micros(rekeyed / keys as u32)
    );
    println!(
        "activate an epoch: {:.2} s for {keys} shares, {:.1} µs per key, in steps of {ACTIVATION_CHUNK_KEYS} keys; its first transaction {:.1} ms",
        activated.as_secs_f64(),
        micros(activated / keys as u32),
        marked.as_secs_f64() * 1e3,
    );
    println!(
        "read a key share during an activation, not moved yet: {:.1} µs (its batch's row of {BATCH} decrypted)",
        micros(from_rows)
    );
}
