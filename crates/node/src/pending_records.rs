//! Caps on the login records that commitments make a node keep.
//!
//! A `CommitmentRequest` for any token, valid or not, costs the node one
//! durable record (and one per sub-token of an aggregate login) kept for
//! `quorumkey_login::records::RECORD_LIFETIME_SECS` (a day and 40
//! minutes): the token is only checked at the reveal. Without a bound, a
//! client that commits random tokens fills the node's disk at the rate
//! limits' pace. So the records not yet expired are counted per verifier,
//! per client address ([`ClientAddress`]: an IPv4 address or an IPv6 /64)
//! and in all, and a commitment that would take a count over its cap is
//! refused (`[rpc] max_pending_records_per_verifier`,
//! `max_pending_records_per_address`, `max_pending_records`).
//!
//! Counts are kept in memory, per minute of expiry (a record counts until
//! the end of the minute it expires in; a commitment's records expire
//! together). The per-verifier and total counts are rebuilt from the store
//! at start ([`PendingRecordCaps::rebuild`]: one read of every record); the
//! per-address counts are not (the store does not know addresses), so a
//! restart forgets them. Expired minutes are forgotten as each count is
//! touched and by the node's sweep ([`PendingRecordCaps::forget_expired`]).
//! Nullifier records (written at a reveal, one per verified token) are not
//! counted: a valid token is what they cost.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use quorumkey_ledger::VerifierName;
use quorumkey_login::records::RECORD_LIFETIME_SECS;
use quorumkey_store::{NodeStore, StoreError};

use crate::config::RpcSettings;
use crate::http::client_address::ClientAddress;

/// Unexpired login records counted against the caps (gauge, set at each
/// sweep).
pub(crate) const METRIC_PENDING_RECORDS: &str = "quorumkey_login_records_pending";

/// The width of one count bucket, in seconds of expiry time.
const BUCKET_SECS: u64 = 60;

/// Unexpired records by the minute they expire in.
#[derive(Debug, Default)]
struct Expiring {
    /// Bucket (expiry minute, rounded up) → records.
    buckets: BTreeMap<u64, u64>,
    total: u64,
}

impl Expiring {
    fn bucket(expires_at: u64) -> u64 {
        expires_at.div_ceil(BUCKET_SECS)
    }

    /// Forgets the buckets every record of which a sweep at `now` removes
    /// (those expired before `now`).
    fn forget_expired(&mut self, now: u64) {
        while let Some((&bucket, &count)) = self.buckets.first_key_value() {
            if bucket.saturating_mul(BUCKET_SECS) >= now {
                break;
            }
            self.buckets.remove(&bucket);
            self.total = self.total.saturating_sub(count);
        }
    }

    fn add(&mut self, expires_at: u64, count: u64) {
        *self.buckets.entry(Self::bucket(expires_at)).or_insert(0) += count;
        self.total = self.total.saturating_add(count);
    }

    fn remove(&mut self, expires_at: u64, count: u64) {
        let bucket = Self::bucket(expires_at);
        if let Some(held) = self.buckets.get_mut(&bucket) {
            let taken = count.min(*held);
            *held -= taken;
            self.total = self.total.saturating_sub(taken);
            if *held == 0 {
                self.buckets.remove(&bucket);
            }
        }
    }
}

/// The verifier a stored record under a commitment names.
#[derive(serde::Deserialize)]
struct Named<'a> {
    #[serde(borrow)]
    verifier: std::borrow::Cow<'a, str>,
}

/// Which cap a commitment hit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapReached {
    /// The verifier's.
    #[error(
        "verifier {verifier} has reached its cap of {cap} unexpired login records on this node ([rpc] max_pending_records_per_verifier); commitments for it are refused until some expire (a record is kept {RECORD_LIFETIME_SECS} s)"
    )]
    Verifier {
        /// The verifier.
        verifier: String,
        /// Its cap.
        cap: u64,
    },
    /// The client address's.
    #[error(
        "client address {address} has reached its cap of {cap} unexpired login records on this node ([rpc] max_pending_records_per_address); its commitments are refused until some expire (a record is kept {RECORD_LIFETIME_SECS} s)"
    )]
    Address {
        /// The address (group).
        address: ClientAddress,
        /// Its cap.
        cap: u64,
    },
    /// The node's.
    #[error(
        "this node holds its cap of {cap} unexpired login records ([rpc] max_pending_records); commitments are refused until some expire"
    )]
    Node {
        /// The cap.
        cap: u64,
    },
}

/// Unexpired records per client address: few bytes per address, since an
/// attacker with many addresses (an IPv6 block holds millions of /64s)
/// makes one entry each.
#[derive(Debug, Default)]
struct AddressCounts {
    totals: HashMap<ClientAddress, u64>,
    /// Bucket (expiry minute, rounded up) → records of each address.
    expiring: BTreeMap<u64, HashMap<ClientAddress, u64>>,
}

impl AddressCounts {
    fn forget_expired(&mut self, now: u64) {
        while let Some((&bucket, _)) = self.expiring.first_key_value() {
            if bucket.saturating_mul(BUCKET_SECS) >= now {
                break;
            }
            for (address, count) in self.expiring.remove(&bucket).unwrap_or_default() {
                self.take(address, count);
            }
        }
    }

    fn take(&mut self, address: ClientAddress, count: u64) {
        if let Some(total) = self.totals.get_mut(&address) {
            *total = total.saturating_sub(count);
            if *total == 0 {
                self.totals.remove(&address);
            }
        }
    }

    fn total(&self, address: ClientAddress) -> u64 {
        self.totals.get(&address).copied().unwrap_or(0)
    }

    fn add(&mut self, address: ClientAddress, expires_at: u64, count: u64) {
        *self.totals.entry(address).or_insert(0) += count;
        *self.expiring.entry(Expiring::bucket(expires_at)).or_default().entry(address).or_insert(0) += count;
    }

    fn remove(&mut self, address: ClientAddress, expires_at: u64, count: u64) {
        let bucket = Expiring::bucket(expires_at);
        let Some(of_bucket) = self.expiring.get_mut(&bucket) else { return };
        let Some(held) = of_bucket.get_mut(&address) else { return };
        let taken = count.min(*held);
        *held -= taken;
        if *held == 0 {
            of_bucket.remove(&address);
            if of_bucket.is_empty() {
                self.expiring.remove(&bucket);
            }
        }
        self.take(address, taken);
    }
}

#[derive(Debug, Default)]
struct Counts {
    verifiers: HashMap<VerifierName, Expiring>,
    addresses: AddressCounts,
    all: Expiring,
}

/// The counts and caps of unexpired login records.
#[derive(Debug)]
pub struct PendingRecordCaps {
    per_verifier: u64,
    per_address: u64,
    total: u64,
    counts: Mutex<Counts>,
}

impl PendingRecordCaps {
    /// Empty counts with the caps of `settings`.
    pub fn new(settings: &RpcSettings) -> Self {
        Self {
            per_verifier: settings.max_pending_records_per_verifier,
            per_address: settings.max_pending_records_per_address,
            total: settings.max_pending_records,
            counts: Mutex::new(Counts::default()),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts the records in `store` that a sweep at `now` would keep, per
    /// verifier and in all (before the node takes commitments). Returns
    /// how many it counted.
    pub fn rebuild(&self, store: &NodeStore, now: u64) -> Result<u64, StoreError> {
        let mut counts = self.counts();
        let mut counted = 0u64;
        store.for_each_login_record(now, |key, value, expires_at| {
            // Commitment records are keyed by a 32-byte commitment;
            // nullifiers (33 bytes) are not counted.
            if key.len() != 32 {
                return;
            }
            // Both kinds of record under a commitment name their verifier
            // (`LoginRecord`); reading that field alone is several times
            // faster than decoding the whole record.
            let Ok(Named { verifier }) = serde_json::from_slice::<Named<'_>>(value) else { return };
            if let Ok(verifier) = VerifierName::new(&verifier) {
                counts.verifiers.entry(verifier).or_default().add(expires_at, 1);
                counts.all.add(expires_at, 1);
                counted += 1;
            }
        })?;
        Ok(counted)
    }

    /// Takes `records` records expiring at `expires_at` from the budgets of
    /// `verifier`, `address` and the node, or refuses if one would go over
    /// its cap. Give back what ends up not stored with [`Self::release`].
    pub fn reserve(
        &self,
        verifier: &VerifierName,
        address: ClientAddress,
        records: u64,
        expires_at: u64,
        now: u64,
    ) -> Result<(), CapReached> {
        let mut counts = self.counts();
        counts.all.forget_expired(now);
        if counts.all.total.saturating_add(records) > self.total {
            return Err(CapReached::Node { cap: self.total });
        }
        let verifier_total = counts.verifiers.get_mut(verifier).map_or(0, |held| {
            held.forget_expired(now);
            held.total
        });
        if verifier_total.saturating_add(records) > self.per_verifier {
            return Err(CapReached::Verifier { verifier: verifier.as_str().to_owned(), cap: self.per_verifier });
        }
        counts.addresses.forget_expired(now);
        if counts.addresses.total(address).saturating_add(records) > self.per_address {
            return Err(CapReached::Address { address, cap: self.per_address });
        }
        counts.all.add(expires_at, records);
        counts.verifiers.entry(verifier.clone()).or_default().add(expires_at, records);
        counts.addresses.add(address, expires_at, records);
        Ok(())
    }

    /// Gives back `records` of a [`Self::reserve`] with the same
    /// arguments (records that were stored before, or a failed write).
    pub fn release(&self, verifier: &VerifierName, address: ClientAddress, records: u64, expires_at: u64) {
        if records == 0 {
            return;
        }
        let mut counts = self.counts();
        counts.all.remove(expires_at, records);
        if let Some(held) = counts.verifiers.get_mut(verifier) {
            held.remove(expires_at, records);
        }
        counts.addresses.remove(address, expires_at, records);
    }

    /// Forgets what expired before `now` everywhere, and the verifiers and
    /// addresses left with nothing (the sweep's part: memory stays bounded
    /// by the records held).
    pub fn forget_expired(&self, now: u64) {
        let mut counts = self.counts();
        counts.all.forget_expired(now);
        counts.addresses.forget_expired(now);
        for held in counts.verifiers.values_mut() {
            held.forget_expired(now);
        }
        counts.verifiers.retain(|_, held| held.total > 0);
    }

    /// Unexpired records counted for `verifier` at `now`.
    pub fn verifier_count(&self, verifier: &VerifierName, now: u64) -> u64 {
        let mut counts = self.counts();
        counts.verifiers.get_mut(verifier).map_or(0, |held| {
            held.forget_expired(now);
            held.total
        })
    }

    /// Unexpired records counted for `address` at `now`.
    pub fn address_count(&self, address: ClientAddress, now: u64) -> u64 {
        let mut counts = self.counts();
        counts.addresses.forget_expired(now);
        counts.addresses.total(address)
    }

    /// Unexpired records counted in all at `now`.
    pub fn total_count(&self, now: u64) -> u64 {
        let mut counts = self.counts();
        counts.all.forget_expired(now);
        counts.all.total
    }
}
