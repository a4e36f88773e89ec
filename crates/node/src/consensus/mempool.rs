//! Transactions waiting for a block: deduplicated, bounded in count and in
//! bytes, served oldest first, and removed only once they are finalized
//! (a proposal that gets nullified must not lose them).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use quorumkey_ledger::transaction_hash;
use thiserror::Error;
use tokio::sync::Notify;

/// A transaction's hash, as the ledger names it.
pub type TransactionHash = [u8; 32];

/// How much the mempool holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MempoolLimits {
    /// The most pending transactions.
    pub max_transactions: usize,
    /// The most pending bytes.
    pub max_bytes: usize,
    /// How many finalized hashes are remembered, so that a transaction
    /// gossiped again after its block finalized is not proposed twice.
    pub finalized_memory: usize,
}

impl Default for MempoolLimits {
    fn default() -> Self {
        Self { max_transactions: 20_000, max_bytes: 64 * 1024 * 1024, finalized_memory: 100_000 }
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
    /// The mempool is at its limit; retry later.
    #[error("the mempool is full ({transactions} transactions, {bytes} bytes pending); retry later")]
    Full {
        /// Pending transactions.
        transactions: usize,
        /// Pending bytes.
        bytes: usize,
    },
}

#[derive(Debug, Default)]
struct Pending {
    next_sequence: u64,
    by_sequence: BTreeMap<u64, TransactionHash>,
    by_hash: HashMap<TransactionHash, (u64, Bytes)>,
    bytes: usize,
    finalized: HashSet<TransactionHash>,
    finalized_order: VecDeque<TransactionHash>,
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

    /// Offers an encoded transaction (already checked by the ledger).
    pub fn insert(&self, transaction: Bytes) -> Result<(TransactionHash, Admission), MempoolError> {
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
            return Err(MempoolError::Full { transactions: pending.by_hash.len(), bytes: pending.bytes });
        }
        let sequence = pending.next_sequence;
        pending.next_sequence += 1;
        pending.bytes += transaction.len();
        pending.by_sequence.insert(sequence, hash);
        pending.by_hash.insert(hash, (sequence, transaction));
        drop(pending);
        self.arrivals.notify_waiters();
        Ok((hash, Admission::Added))
    }

    /// The oldest pending transactions not in `exclude`, at most
    /// `max_count` of them and `max_bytes` in total. They stay pending.
    pub fn select(&self, max_count: usize, max_bytes: usize, exclude: &HashSet<TransactionHash>) -> Vec<Bytes> {
        let pending = self.lock();
        let mut selected = Vec::new();
        let mut bytes = 0;
        for hash in pending.by_sequence.values() {
            if selected.len() >= max_count {
                break;
            }
            if exclude.contains(hash) {
                continue;
            }
            let Some((_, transaction)) = pending.by_hash.get(hash) else { continue };
            if bytes + transaction.len() > max_bytes {
                continue;
            }
            bytes += transaction.len();
            selected.push(transaction.clone());
        }
        selected
    }

    /// Forgets transactions that a finalized block carried, and remembers
    /// their hashes (up to the configured memory).
    pub fn remove_finalized(&self, hashes: impl IntoIterator<Item = TransactionHash>) {
        let mut pending = self.lock();
        for hash in hashes {
            if let Some((sequence, transaction)) = pending.by_hash.remove(&hash) {
                pending.by_sequence.remove(&sequence);
                pending.bytes -= transaction.len();
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
    pub async fn wait_for_transactions(&self) {
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

    fn tx(i: u8, len: usize) -> Bytes {
        Bytes::from(vec![i; len])
    }

    #[test]
    fn deduplicates_and_serves_oldest_first() {
        let mempool = Mempool::new(MempoolLimits::default());
        assert_eq!(mempool.insert(tx(1, 10)).unwrap().1, Admission::Added);
        assert_eq!(mempool.insert(tx(2, 10)).unwrap().1, Admission::Added);
        assert_eq!(mempool.insert(tx(1, 10)).unwrap().1, Admission::AlreadyPending);
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
        let (hash, _) = mempool.insert(tx(1, 10)).unwrap();
        mempool.remove_finalized([hash]);
        assert!(mempool.is_empty());
        assert_eq!(mempool.bytes(), 0);
        assert_eq!(mempool.insert(tx(1, 10)).unwrap().1, Admission::AlreadyFinalized);
    }

    #[test]
    fn limits_hold() {
        let limits = MempoolLimits { max_transactions: 2, max_bytes: 25, finalized_memory: 1 };
        let mempool = Mempool::new(limits);
        mempool.insert(tx(1, 10)).unwrap();
        assert!(matches!(mempool.insert(tx(2, 20)), Err(MempoolError::Full { .. })));
        mempool.insert(tx(3, 10)).unwrap();
        assert!(matches!(mempool.insert(tx(4, 1)), Err(MempoolError::Full { .. })));
        // The finalized memory is bounded: the oldest hash is forgotten.
        mempool.remove_finalized([transaction_hash(&tx(1, 10)), transaction_hash(&tx(3, 10))]);
        assert_eq!(mempool.insert(tx(1, 10)).unwrap().1, Admission::Added);
    }
}
