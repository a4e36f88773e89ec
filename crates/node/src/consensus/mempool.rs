//! Transactions waiting for a block: deduplicated, bounded in count and in
//! bytes, served oldest first within each class and the classes in order of
//! urgency, and removed only once they are finalized (a proposal that gets
//! nullified must not lose them).
//!
//! Three classes ([`TransactionClass`]): the DKG's messages, assignments,
//! and client transactions (verifier registrations and updates, policies).
//! Assignments and client transactions each have their own, smaller limits
//! inside the mempool's, so however many of them arrive the DKG keeps room
//! (at least `max_transactions − max_assignments − max_client` and the
//! matching bytes); a proposal takes DKG messages first, then assignments,
//! then client transactions. Client transactions also hold a *slot*: one
//! pending registration per verifier name, one pending update per verifier,
//! one pending policy; a second one for a taken slot is refused, so an owner
//! (or anyone replaying an owner's signature over other bytes) cannot queue
//! many versions of which a block would reject all but one.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use quorumkey_ledger::{TransactionBody, TransactionClass, transaction_hash};
use thiserror::Error;
use tokio::sync::Notify;

/// A transaction's hash, as the ledger names it.
pub type TransactionHash = [u8; 32];

/// How much the mempool holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MempoolLimits {
    /// The most pending transactions, of every class.
    pub max_transactions: usize,
    /// The most pending bytes, of every class.
    pub max_bytes: usize,
    /// The most pending assignments (within `max_transactions`).
    pub max_assignments: usize,
    /// The most pending assignment bytes (within `max_bytes`).
    pub max_assignment_bytes: usize,
    /// The most pending client transactions (within `max_transactions`).
    pub max_client: usize,
    /// The most pending client bytes (within `max_bytes`).
    pub max_client_bytes: usize,
    /// How many finalized hashes are remembered, so that a transaction
    /// gossiped again after its block finalized is not proposed twice.
    pub finalized_memory: usize,
}

impl Default for MempoolLimits {
    /// 20,000 transactions and 64 MiB in all, of which at most 8,192
    /// assignments (4 MiB) and 1,024 client transactions (8 MiB): the DKG
    /// always has 10,784 transactions and 52 MiB.
    fn default() -> Self {
        Self {
            max_transactions: 20_000,
            max_bytes: 64 * 1024 * 1024,
            max_assignments: 8_192,
            max_assignment_bytes: 4 * 1024 * 1024,
            max_client: 1_024,
            max_client_bytes: 8 * 1024 * 1024,
            finalized_memory: 100_000,
        }
    }
}

impl MempoolLimits {
    /// The limits of one class (count, bytes); the DKG has only the whole
    /// mempool's.
    fn of(&self, class: TransactionClass) -> (usize, usize) {
        match class {
            TransactionClass::Dkg => (self.max_transactions, self.max_bytes),
            TransactionClass::Assignment => (self.max_assignments, self.max_assignment_bytes),
            TransactionClass::Client => (self.max_client, self.max_client_bytes),
        }
    }
}

/// What became of a transaction offered to the mempool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Now pending.
    Added,
    /// Already pending; nothing changed.
    AlreadyPending,
    /// Already in a finalized block; nothing changed.
    AlreadyFinalized,
}

/// Why a transaction was not admitted.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MempoolError {
    /// The mempool, or its part for this class, is at its limit; retry later.
    #[error("the mempool is full for {class} ({transactions} transactions, {bytes} bytes pending); retry later")]
    Full {
        /// The class whose limit was hit (or "all transactions").
        class: &'static str,
        /// Pending transactions of that class.
        transactions: usize,
        /// Pending bytes of that class.
        bytes: usize,
    },
    /// Another transaction for the same slot is pending.
    #[error("{0} is already pending; wait until it is in a block")]
    SlotTaken(String),
}

/// The slot a client transaction holds while pending, and how to name it.
pub(crate) fn transaction_slot(body: &TransactionBody) -> Option<(Vec<u8>, String)> {
    match body {
        TransactionBody::RegisterVerifier { name, .. } => {
            Some(([b"r", name.as_str().as_bytes()].concat(), format!("a registration of verifier {}", name.as_str())))
        }
        TransactionBody::UpdateVerifier { name, .. } => {
            Some(([b"u", name.as_str().as_bytes()].concat(), format!("an update of verifier {}", name.as_str())))
        }
        TransactionBody::SetPolicy { .. } => Some((b"p".to_vec(), "a policy change".to_owned())),
        _ => None,
    }
}

fn class_name(class: TransactionClass) -> &'static str {
    match class {
        TransactionClass::Dkg => "DKG messages",
        TransactionClass::Assignment => "assignments",
        TransactionClass::Client => "client transactions",
    }
}

const CLASSES: [TransactionClass; 3] = [TransactionClass::Dkg, TransactionClass::Assignment, TransactionClass::Client];

#[derive(Debug)]
struct Entry {
    class: TransactionClass,
    sequence: u64,
    slot: Option<Vec<u8>>,
    transaction: Bytes,
}

#[derive(Debug, Default)]
struct Pending {
    next_sequence: u64,
    /// Per class (in `CLASSES` order): sequence → hash, oldest first.
    by_sequence: [BTreeMap<u64, TransactionHash>; 3],
    /// Per class: (transactions, bytes).
    usage: [(usize, usize); 3],
    by_hash: HashMap<TransactionHash, Entry>,
    slots: HashSet<Vec<u8>>,
    bytes: usize,
    finalized: HashSet<TransactionHash>,
    finalized_order: VecDeque<TransactionHash>,
}

fn class_index(class: TransactionClass) -> usize {
    match class {
        TransactionClass::Dkg => 0,
        TransactionClass::Assignment => 1,
        TransactionClass::Client => 2,
    }
}

/// The pending transactions, shared by the submission paths (local API,
/// peer gossip) and the block proposer.
#[derive(Clone, Debug)]
pub struct Mempool {
    limits: MempoolLimits,
    pending: Arc<Mutex<Pending>>,
    arrivals: Arc<Notify>,
}

impl Mempool {
    /// An empty mempool.
    pub fn new(limits: MempoolLimits) -> Self {
        Self { limits, pending: Arc::default(), arrivals: Arc::new(Notify::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // The state stays consistent under every early return, so a
        // poisoned lock (a panic elsewhere) is still safe to use.
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Offers an encoded transaction of `class` (already checked by the
    /// ledger) holding `slot` while pending (see [`transaction_slot`]).
    pub fn insert(
        &self,
        transaction: Bytes,
        class: TransactionClass,
        slot: Option<(Vec<u8>, String)>,
    ) -> Result<(TransactionHash, Admission), MempoolError> {
        let hash = transaction_hash(&transaction);
        let mut pending = self.lock();
        if pending.finalized.contains(&hash) {
            return Ok((hash, Admission::AlreadyFinalized));
        }
        if pending.by_hash.contains_key(&hash) {
            return Ok((hash, Admission::AlreadyPending));
        }
        if pending.by_hash.len() >= self.limits.max_transactions
            || pending.bytes + transaction.len() > self.limits.max_bytes
        {
            return Err(MempoolError::Full {
                class: "all transactions",
                transactions: pending.by_hash.len(),
                bytes: pending.bytes,
            });
        }
        let index = class_index(class);
        let (max_count, max_bytes) = self.limits.of(class);
        let (count, bytes) = pending.usage[index];
        if count >= max_count || bytes + transaction.len() > max_bytes {
            return Err(MempoolError::Full { class: class_name(class), transactions: count, bytes });
        }
        let slot = match slot {
            Some((key, description)) => {
                if pending.slots.contains(&key) {
                    return Err(MempoolError::SlotTaken(description));
                }
                pending.slots.insert(key.clone());
                Some(key)
            }
            None => None,
        };
        let sequence = pending.next_sequence;
        pending.next_sequence += 1;
        pending.bytes += transaction.len();
        pending.usage[index].0 += 1;
        pending.usage[index].1 += transaction.len();
        pending.by_sequence[index].insert(sequence, hash);
        pending.by_hash.insert(hash, Entry { class, sequence, slot, transaction });
        drop(pending);
        self.arrivals.notify_waiters();
        Ok((hash, Admission::Added))
    }

    /// Pending transactions not in `exclude`, DKG messages first, then
    /// assignments, then client transactions, each class oldest first; at
    /// most `max_count` of them and `max_bytes` in total. They stay pending.
    pub fn select(&self, max_count: usize, max_bytes: usize, exclude: &HashSet<TransactionHash>) -> Vec<Bytes> {
        let pending = self.lock();
        let mut selected = Vec::new();
        let mut bytes = 0;
        for class in CLASSES {
            for hash in pending.by_sequence[class_index(class)].values() {
                if selected.len() >= max_count {
                    return selected;
                }
                if exclude.contains(hash) {
                    continue;
                }
                let Some(entry) = pending.by_hash.get(hash) else { continue };
                if bytes + entry.transaction.len() > max_bytes {
                    continue;
                }
                bytes += entry.transaction.len();
                selected.push(entry.transaction.clone());
            }
        }
        selected
    }

    /// Forgets transactions that a finalized block carried, and remembers
    /// their hashes (up to the configured memory).
    pub(crate) fn remove_finalized(&self, hashes: impl IntoIterator<Item = TransactionHash>) {
        let mut pending = self.lock();
        for hash in hashes {
            if let Some(entry) = pending.by_hash.remove(&hash) {
                let index = class_index(entry.class);
                pending.by_sequence[index].remove(&entry.sequence);
                pending.bytes -= entry.transaction.len();
                pending.usage[index].0 -= 1;
                pending.usage[index].1 -= entry.transaction.len();
                if let Some(slot) = entry.slot {
                    pending.slots.remove(&slot);
                }
            }
            if pending.finalized.insert(hash) {
                pending.finalized_order.push_back(hash);
            }
        }
        while pending.finalized_order.len() > self.limits.finalized_memory {
            if let Some(old) = pending.finalized_order.pop_front() {
                pending.finalized.remove(&old);
            }
        }
    }

    /// Pending transactions.
    pub fn len(&self) -> usize {
        self.lock().by_hash.len()
    }

    /// Pending transactions of one class (for the tests of the classes'
    /// bounds).
    #[cfg(test)]
    pub(crate) fn len_of(&self, class: TransactionClass) -> usize {
        self.lock().usage[class_index(class)].0
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pending bytes.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Resolves once a transaction is added after this call (or was, if
    /// something is already pending).
    pub(crate) async fn wait_for_transactions(&self) {
        let arrival = self.arrivals.notified();
        if !self.is_empty() {
            return;
        }
        arrival.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DKG: TransactionClass = TransactionClass::Dkg;
    const ASSIGN: TransactionClass = TransactionClass::Assignment;
    const CLIENT: TransactionClass = TransactionClass::Client;

    fn tx(i: u8, len: usize) -> Bytes {
        Bytes::from(vec![i; len])
    }

    fn slot(name: &str) -> Option<(Vec<u8>, String)> {
        Some((name.as_bytes().to_vec(), format!("slot {name}")))
    }

    #[test]
    fn deduplicates_and_serves_oldest_first() {
        let mempool = Mempool::new(MempoolLimits::default());
        assert_eq!(mempool.insert(tx(1, 10), DKG, None).unwrap().1, Admission::Added);
        assert_eq!(mempool.insert(tx(2, 10), DKG, None).unwrap().1, Admission::Added);
        assert_eq!(mempool.insert(tx(1, 10), DKG, None).unwrap().1, Admission::AlreadyPending);
        assert_eq!(mempool.len(), 2);
        assert_eq!(mempool.select(10, 1000, &HashSet::new()), vec![tx(1, 10), tx(2, 10)]);
        assert_eq!(mempool.select(1, 1000, &HashSet::new()), vec![tx(1, 10)]);
        let first = transaction_hash(&tx(1, 10));
        assert_eq!(mempool.select(10, 1000, &HashSet::from([first])), vec![tx(2, 10)]);
        assert_eq!(mempool.select(10, 15, &HashSet::new()), vec![tx(1, 10)]);
    }

    #[test]
    fn finalized_transactions_leave_and_are_not_readmitted() {
        let mempool = Mempool::new(MempoolLimits::default());
        let (hash, _) = mempool.insert(tx(1, 10), DKG, None).unwrap();
        mempool.remove_finalized([hash]);
        assert!(mempool.is_empty());
        assert_eq!(mempool.bytes(), 0);
        assert_eq!(mempool.insert(tx(1, 10), DKG, None).unwrap().1, Admission::AlreadyFinalized);
    }

    #[test]
    fn limits_hold() {
        let limits = MempoolLimits { max_transactions: 2, max_bytes: 25, finalized_memory: 1, ..Default::default() };
        let mempool = Mempool::new(limits);
        mempool.insert(tx(1, 10), DKG, None).unwrap();
        assert!(matches!(mempool.insert(tx(2, 20), DKG, None), Err(MempoolError::Full { .. })));
        mempool.insert(tx(3, 10), DKG, None).unwrap();
        assert!(matches!(mempool.insert(tx(4, 1), DKG, None), Err(MempoolError::Full { .. })));
        // The finalized memory is bounded: the oldest hash is forgotten.
        mempool.remove_finalized([transaction_hash(&tx(1, 10)), transaction_hash(&tx(3, 10))]);
        assert_eq!(mempool.insert(tx(1, 10), DKG, None).unwrap().1, Admission::Added);
    }

    #[test]
    fn a_flood_of_client_transactions_leaves_room_for_the_dkg_and_is_served_last() {
        let limits =
            MempoolLimits { max_transactions: 10, max_assignments: 3, max_client: 2, ..MempoolLimits::default() };
        let mempool = Mempool::new(limits);
        for i in 0..5u8 {
            let result = mempool.insert(tx(100 + i, 10), CLIENT, None);
            assert_eq!(result.is_ok(), i < 2, "{result:?}");
        }
        for i in 0..5u8 {
            let result = mempool.insert(tx(50 + i, 10), ASSIGN, None);
            assert_eq!(result.is_ok(), i < 3, "{result:?}");
        }
        assert!(matches!(
            mempool.insert(tx(99, 10), CLIENT, None),
            Err(MempoolError::Full { class: "client transactions", .. })
        ));
        // Five places are left, and the DKG gets every one of them.
        for i in 0..5u8 {
            mempool.insert(tx(i, 10), DKG, None).unwrap();
        }
        assert_eq!(mempool.len_of(DKG), 5);
        // Proposals: DKG first, then assignments, then client transactions.
        let order = mempool.select(7, 10_000, &HashSet::new());
        assert_eq!(order, vec![tx(0, 10), tx(1, 10), tx(2, 10), tx(3, 10), tx(4, 10), tx(50, 10), tx(51, 10)]);
    }

    #[test]
    fn a_slot_holds_one_pending_transaction() {
        let mempool = Mempool::new(MempoolLimits::default());
        mempool.insert(tx(1, 10), CLIENT, slot("u-app")).unwrap();
        assert_eq!(mempool.insert(tx(2, 10), CLIENT, slot("u-app")), Err(MempoolError::SlotTaken("slot u-app".into())));
        mempool.insert(tx(3, 10), CLIENT, slot("u-other")).unwrap();
        // The same bytes again are only "already pending".
        assert_eq!(mempool.insert(tx(1, 10), CLIENT, slot("u-app")).unwrap().1, Admission::AlreadyPending);
        mempool.remove_finalized([transaction_hash(&tx(1, 10))]);
        mempool.insert(tx(2, 10), CLIENT, slot("u-app")).unwrap();
    }
}
