//! Caps on unexpired login records: per verifier, per client address and
//! in all; what expires frees its place; the per-verifier and total counts
//! come back from the store after a restart. And what a record costs on
//! disk, measured on a real store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::path::Path;
use std::time::Instant;

use quorumkey_crypto::group::{NonZeroScalar, PublicKey, public_key_to_xy_hex};
use quorumkey_crypto::hash::token_commitment_hex;
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_ledger::VerifierName;
use quorumkey_ledger::testkit::TestNetwork;
use quorumkey_login::CommitmentRequest;
use quorumkey_login::records::{NullifierRecord, RECORD_LIFETIME_SECS, nullifier_key};
use quorumkey_node::config::RpcSettings;
use quorumkey_node::http::client_address::ClientAddress;
use quorumkey_node::pending_records::{CapReached, PendingRecordCaps};
use quorumkey_store::{NewLoginRecord, NodeStore};
use quorumkey_verifier::TokenIdentity;
use serde_json::json;

fn address(text: &str) -> ClientAddress {
    ClientAddress::of(text.parse::<IpAddr>().unwrap())
}

fn verifier(name: &str) -> VerifierName {
    VerifierName::new(name).unwrap()
}

fn caps(per_verifier: u64, per_address: u64, total: u64) -> PendingRecordCaps {
    PendingRecordCaps::new(&RpcSettings {
        max_pending_records_per_verifier: per_verifier,
        max_pending_records_per_address: per_address,
        max_pending_records: total,
        ..RpcSettings::default()
    })
}

const NOW: u64 = 1_800_000_000;

#[test]
fn each_cap_refuses_beyond_it_and_others_still_work() {
    let caps = caps(5, 3, 8);
    let (alpha, beta, gamma) = (verifier("alpha"), verifier("beta"), verifier("gamma"));
    let (one, two, three) = (address("192.0.2.1"), address("2001:db8:1:2::1"), address("192.0.2.3"));
    let expires = NOW + RECORD_LIFETIME_SECS;
    for _ in 0..3 {
        caps.reserve(&alpha, one, 1, expires, NOW).unwrap();
    }
    // The address's cap, whatever the verifier.
    let refused = caps.reserve(&beta, one, 1, expires, NOW).unwrap_err();
    assert_eq!(refused, CapReached::Address { address: one, cap: 3 });
    assert!(refused.to_string().contains("client address 192.0.2.1 has reached its cap of 3"), "{refused}");
    // Another address, the same verifier, up to the verifier's cap.
    caps.reserve(&alpha, two, 2, expires, NOW).unwrap();
    let refused = caps.reserve(&alpha, three, 1, expires, NOW).unwrap_err();
    assert_eq!(refused, CapReached::Verifier { verifier: "alpha".into(), cap: 5 });
    assert!(refused.to_string().contains("verifier alpha has reached its cap of 5"), "{refused}");
    // An aggregate commitment's records count together.
    assert!(matches!(caps.reserve(&beta, two, 2, expires, NOW), Err(CapReached::Address { .. })));
    // Another verifier from another address.
    caps.reserve(&beta, three, 3, expires, NOW).unwrap();
    assert_eq!(caps.total_count(NOW), 8);
    // The node's cap.
    let refused = caps.reserve(&gamma, address("192.0.2.4"), 1, expires, NOW).unwrap_err();
    assert_eq!(refused, CapReached::Node { cap: 8 });
    // Records not stored (already there, or a failed write) go back.
    caps.release(&beta, three, 1, expires);
    caps.reserve(&gamma, address("192.0.2.4"), 1, expires, NOW).unwrap();
    assert_eq!(caps.verifier_count(&alpha, NOW), 5);
    assert_eq!(caps.address_count(one, NOW), 3);
}

#[test]
fn expired_records_free_their_place() {
    let caps = caps(2, 2, 100);
    let name = verifier("alpha");
    let client = address("192.0.2.1");
    caps.reserve(&name, client, 1, NOW + 100, NOW).unwrap();
    caps.reserve(&name, client, 1, NOW + 200, NOW).unwrap();
    assert!(caps.reserve(&name, client, 1, NOW + 300, NOW).is_err());
    // A record counts until the sweep would remove it: past the end of its
    // minute of expiry.
    assert!(caps.reserve(&name, client, 1, NOW + 300, NOW + 100).is_err());
    let freed = (NOW + 100).div_ceil(60) * 60 + 1;
    caps.reserve(&name, client, 1, NOW + 300, freed).unwrap();
    assert_eq!(caps.verifier_count(&name, freed), 2);
    caps.forget_expired(NOW + 10_000);
    assert_eq!(caps.verifier_count(&name, NOW + 10_000), 0);
    assert_eq!(caps.address_count(client, NOW + 10_000), 0);
    assert_eq!(caps.total_count(NOW + 10_000), 0);
}

/// A node's commitment record, as `CommitmentRequest` makes it.
fn commitment_records(node_key: &SigningKey, verifier: &str, token: &str, now: u64) -> Vec<NewLoginRecord> {
    let secret = NonZeroScalar::generate_from_rng(&mut quorumkey_crypto::random::os_rng());
    let (x, y) = public_key_to_xy_hex(&PublicKey::from_secret_scalar(&secret));
    let params = json!({
        "messageprefix": "mug00",
        "tokencommitment": token_commitment_hex(token),
        "temppubx": x,
        "temppuby": y,
        "verifieridentifier": verifier,
    });
    let request = CommitmentRequest::parse(&params).unwrap();
    let record = request.sign(node_key, now);
    request
        .record_writes(&record)
        .into_iter()
        .map(|write| NewLoginRecord { key: write.key, value: write.value, expires_at: write.expires_at })
        .collect()
}

fn open(path: &Path, net: &TestNetwork) -> NodeStore {
    NodeStore::open(path, &net.ledger, &quorumkey_store::Kek::from_bytes(&[0x42; 32])).unwrap()
}

#[test]
fn verifier_and_node_counts_come_back_from_the_store() {
    let net = TestNetwork::new(4, 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let node_key = SigningKey::generate_from_rng(&mut quorumkey_crypto::random::os_rng());
    let now = quorumkey_node::http::v1::wall_clock_ms() / 1000;
    {
        let store = open(&path, &net);
        let mut records = Vec::new();
        for i in 0..30 {
            records.extend(commitment_records(&node_key, "alpha", &format!("a{i}"), now));
        }
        for i in 0..12 {
            records.extend(commitment_records(&node_key, "beta", &format!("b{i}"), now));
        }
        // Expired ones, and a nullifier: not counted.
        for i in 0..5 {
            records.extend(commitment_records(
                &node_key,
                "alpha",
                &format!("old{i}"),
                now - RECORD_LIFETIME_SECS - 120,
            ));
        }
        records.push(NewLoginRecord {
            key: nullifier_key(&TokenIdentity([7; 32])),
            value: serde_json::to_vec(&NullifierRecord { commitment: "00".repeat(32), expires_at: now + 100 }).unwrap(),
            expires_at: now + 100,
        });
        // Half reach redb, the rest stay in the write-ahead log.
        store.insert_login_records(&records[..20]).unwrap();
        store.sweep_login_records(0, 0).unwrap();
        store.insert_login_records(&records[20..]).unwrap();
    }
    // The restart: the same counts, and the caps hold on them.
    let store = open(&path, &net);
    let caps = caps(30, 1_000, 1_000);
    assert_eq!(caps.rebuild(&store, now).unwrap(), 42);
    assert_eq!(caps.verifier_count(&verifier("alpha"), now), 30);
    assert_eq!(caps.verifier_count(&verifier("beta"), now), 12);
    assert_eq!(caps.total_count(now), 42);
    let expires = now + RECORD_LIFETIME_SECS;
    assert!(matches!(
        caps.reserve(&verifier("alpha"), address("192.0.2.1"), 1, expires, now),
        Err(CapReached::Verifier { .. })
    ));
    caps.reserve(&verifier("beta"), address("192.0.2.1"), 1, expires, now).unwrap();
}

/// What one commitment record costs on disk once in redb, and how long a
/// start takes to count them. `cargo test -p quorumkey-node --test
/// pending_records -- --nocapture bytes_per_login_record` prints it; the
/// disk budget in the operators' documentation is this figure times the
/// caps, so the test fails if a record takes more than 2 KiB.
#[test]
fn bytes_per_login_record() {
    const RECORDS: usize = match option_env!("QK_RECORDS") {
        Some(_) => 120_000,
        None => 40_000,
    };
    let net = TestNetwork::new(4, 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let log = NodeStore::login_log_path(&path);
    let node_key = SigningKey::generate_from_rng(&mut quorumkey_crypto::random::os_rng());
    let now = quorumkey_node::http::v1::wall_clock_ms() / 1000;
    let store = open(&path, &net);
    store.sweep_login_records(now, 10).unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    let mut value_bytes = 0usize;
    for chunk in 0..RECORDS / 250 {
        let records: Vec<NewLoginRecord> = (0..250)
            .flat_map(|i| commitment_records(&node_key, "some-app-verifier", &format!("t{chunk}-{i}"), now))
            .collect();
        value_bytes += records.iter().map(|r| r.key.len() + r.value.len()).sum::<usize>();
        store.insert_login_records(&records).unwrap();
        // As the node's writer does: a background checkpoint every 4,096.
        if store.login_checkpoint_due().unwrap() {
            store.checkpoint_login_records().unwrap();
        }
    }
    let log_bytes = std::fs::metadata(&log).map_or(0, |m| m.len());
    store.sweep_login_records(now, 10).unwrap();
    drop(store);
    let after = std::fs::metadata(&path).unwrap().len();
    let per_record = (after - before) as f64 / RECORDS as f64;
    let store = open(&path, &net);
    let started = Instant::now();
    let counted = caps(u64::MAX, u64::MAX, u64::MAX).rebuild(&store, now).unwrap();
    let rebuild = started.elapsed();
    assert_eq!(counted, RECORDS as u64);
    println!(
        "{RECORDS} commitment records: key+value {:.0} B each; redb file +{} B ({per_record:.0} B per record); the log held {log_bytes} B before the checkpoint (at most 32,768 records wait there); counting them at start took {rebuild:?}",
        value_bytes as f64 / RECORDS as f64,
        after - before,
    );
    assert!(per_record > 0.0 && per_record <= 2048.0, "{per_record} B per record");
}
