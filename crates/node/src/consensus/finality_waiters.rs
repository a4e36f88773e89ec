//! Waiting for a transaction to be finalized: a client that submits with
//! `wait` gets the height its transaction was applied at, and the ledger's
//! rejection if the block rejected it. Register before submitting, so a
//! transaction finalized in between is not missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::channel::oneshot;
use quorumkey_ledger::Rejection;
use thiserror::Error;

use super::mempool::TransactionHash;

/// Too many clients are waiting.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("{0} clients are already waiting for finality; retry without waiting, or later")]
pub struct TooManyWaiters(pub usize);

/// What became of a finalized transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finality {
    /// The height of its block.
    pub height: u64,
    /// Why the ledger rejected it, if it did (`None` also when this node
    /// had applied the block before, after a restart, and does not know).
    pub rejection: Option<Rejection>,
}

type Senders = HashMap<TransactionHash, Vec<oneshot::Sender<Finality>>>;

/// Clients waiting for transactions to be finalized.
#[derive(Clone, Debug)]
pub struct FinalityWaiters {
    limit: usize,
    waiting: Arc<Mutex<Senders>>,
}

impl FinalityWaiters {
    /// At most `limit` waiters at once.
    pub fn new(limit: usize) -> Self {
        Self { limit, waiting: Arc::default() }
    }

    fn lock(&self) -> MutexGuard<'_, Senders> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Resolves with the height at which `hash` is applied, and its
    /// rejection if any.
    pub fn register(&self, hash: TransactionHash) -> Result<oneshot::Receiver<Finality>, TooManyWaiters> {
        let mut waiting = self.lock();
        let mut count: usize = waiting.values().map(Vec::len).sum();
        if count >= self.limit {
            // Forget clients that gave up.
            waiting.retain(|_, senders| {
                senders.retain(|sender| !sender.is_canceled());
                !senders.is_empty()
            });
            count = waiting.values().map(Vec::len).sum();
            if count >= self.limit {
                return Err(TooManyWaiters(count));
            }
        }
        let (sender, receiver) = oneshot::channel();
        waiting.entry(hash).or_default().push(sender);
        Ok(receiver)
    }

    /// Tells the waiters of `hashes` that they were applied at `height`,
    /// those in `rejections` rejected.
    pub fn finalized<'a>(
        &self,
        hashes: impl IntoIterator<Item = &'a TransactionHash>,
        height: u64,
        rejections: &[(TransactionHash, Rejection)],
    ) {
        let mut waiting = self.lock();
        if waiting.is_empty() {
            return;
        }
        for hash in hashes {
            let rejection =
                rejections.iter().find(|(rejected, _)| rejected == hash).map(|(_, rejection)| rejection.clone());
            for sender in waiting.remove(hash).into_iter().flatten() {
                let _ = sender.send(Finality { height, rejection: rejection.clone() });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_hear_their_height_and_are_bounded() {
        let waiters = FinalityWaiters::new(2);
        let mut first = waiters.register([1; 32]).unwrap();
        let second = waiters.register([2; 32]).unwrap();
        assert_eq!(waiters.register([3; 32]).err(), Some(TooManyWaiters(2)));
        drop(second);
        // A client that gave up frees its place.
        let mut third = waiters.register([3; 32]).unwrap();
        waiters.finalized(&[[1; 32], [3; 32]], 7, &[([3; 32], Rejection::UnknownNode(9))]);
        assert_eq!(first.try_recv().unwrap(), Some(Finality { height: 7, rejection: None }));
        assert_eq!(third.try_recv().unwrap(), Some(Finality { height: 7, rejection: Some(Rejection::UnknownNode(9)) }));
    }
}
