//! What the per-address counts of unexpired login records cost in memory
//! when every record comes from another address (an attacker with an IPv6
//! block has millions of /64s): measured as this process's resident memory
//! (its own test binary, one test, so nothing else allocates meanwhile).
//! `cargo test -p quorumkey-node --test pending_records_memory -- --nocapture`
//! prints the figure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv6Addr};

use quorumkey_ledger::VerifierName;
use quorumkey_login::records::RECORD_LIFETIME_SECS;
use quorumkey_node::config::RpcSettings;
use quorumkey_node::http::client_address::ClientAddress;
use quorumkey_node::pending_records::PendingRecordCaps;

/// Resident memory of this process, in bytes.
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn per_address_counts_stay_small() {
    const RECORDS: u64 = 1_000_000;
    const NOW: u64 = 1_800_000_000;
    let caps = PendingRecordCaps::new(&RpcSettings {
        max_pending_records_per_verifier: u64::MAX,
        max_pending_records_per_address: u64::MAX,
        max_pending_records: u64::MAX,
        ..RpcSettings::default()
    });
    let verifier = VerifierName::new("flooded").unwrap();
    let before = resident();
    for i in 0..RECORDS {
        // A new /64 each, arriving over a day: expiries spread over every
        // minute of the records' lifetime.
        let address = IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) | (u128::from(i) << 64)));
        let now = NOW + i * 86_400 / RECORDS;
        caps.reserve(&verifier, ClientAddress::of(address), 1, now + RECORD_LIFETIME_SECS, now).unwrap();
    }
    let per_record = (resident() - before) as f64 / RECORDS as f64;
    println!("per-address counts of {RECORDS} records from as many addresses: {per_record:.0} B of memory per record");
    assert!(per_record < 256.0, "{per_record} B per record");
    assert_eq!(caps.total_count(NOW + 86_400), RECORDS);
}
