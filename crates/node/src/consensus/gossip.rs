//! Submitting transactions: the ledger's stateless checks, the mempool, and
//! gossip to every peer on the application channel, so whichever node leads
//! next can propose a transaction that any node received.
//!
//! Admission runs every check a block would run: the ledger's stateless
//! checks (encoding, signatures), then, against the latest committed state,
//! the stateful ones (`Ledger::admit`: an owner's signature against the
//! record, nonces, the policy's quotas and budgets). A peer's gossip is
//! checked exactly like a local submission; a peer that sends something
//! that fails the stateless checks is blocked (honest nodes check before
//! they gossip, so only a faulty or malicious peer does that), while a
//! stateful refusal only drops the transaction (the peer's state may be a
//! block ahead of or behind this node's).

use bytes::Bytes;
use commonware_cryptography::ed25519;
use commonware_p2p::{Blocker, Receiver, Recipients, Sender};
use futures::StreamExt;
use futures::channel::mpsc;
use quorumkey_ledger::{Rejection, SignedTransaction, TransactionClass, transaction_class};
use thiserror::Error;

use super::mempool::{Admission, Mempool, MempoolError, TransactionHash, transaction_slot};
use crate::observability::METRIC_MEMPOOL_SIZE;
use crate::state::CommittedState;

/// Why a submitted transaction was refused.
#[derive(Debug, Error)]
pub enum SubmitError {
    /// The ledger refuses it whatever the state (bad encoding, signature).
    #[error("invalid transaction: {0}")]
    Invalid(#[from] Rejection),
    /// A block would reject it in the current state (an owner's signature
    /// that does not match the record, a stale nonce, a spent budget).
    #[error("refused: {0}")]
    Refused(Rejection),
    /// The state could not be read to check it.
    #[error("cannot check the transaction against the ledger: {0}")]
    Unavailable(String),
    /// The mempool is full.
    #[error(transparent)]
    Busy(#[from] MempoolError),
    /// The node is halted and accepts nothing.
    #[error("the node is halted: {0}")]
    Halted(String),
}

/// Hands transactions to consensus. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TransactionSubmitter {
    state: CommittedState,
    mempool: Mempool,
    outbound: mpsc::UnboundedSender<Bytes>,
}

/// Transactions a submitter accepted, for [`run_gossip`] to send to peers.
#[derive(Debug)]
pub struct OutboundTransactions(mpsc::UnboundedReceiver<Bytes>);

/// A submitter and the stream of what it accepted. The stream is bounded
/// by the mempool: only newly added transactions enter it.
pub fn submitter(state: CommittedState, mempool: Mempool) -> (TransactionSubmitter, OutboundTransactions) {
    let (outbound, receiver) = mpsc::unbounded();
    (TransactionSubmitter { state, mempool, outbound }, OutboundTransactions(receiver))
}

impl TransactionSubmitter {
    /// Checks a transaction, adds it to the mempool and gossips it.
    /// Submitting one that is already pending or finalized is not an error.
    pub fn submit(&self, transaction: Bytes) -> Result<(TransactionHash, Admission), SubmitError> {
        if let Some(reason) = self.state.halted() {
            return Err(SubmitError::Halted(reason));
        }
        let sets = self.state.node_sets().map_err(|e| SubmitError::Unavailable(e.to_string()))?;
        let checked = self.state.ledger().check_transaction(&transaction, &sets)?;
        let class = admit(&self.state, &checked)?;
        let (hash, admission) = self.mempool.insert(transaction.clone(), class, transaction_slot(&checked.body))?;
        if admission == Admission::Added {
            metrics::gauge!(METRIC_MEMPOOL_SIZE).set(self.mempool.len() as f64);
            // A closed channel means the node is shutting down; the
            // transaction still waits in this node's mempool.
            let _ = self.outbound.unbounded_send(transaction);
        }
        Ok((hash, admission))
    }

    /// The mempool behind this submitter.
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }
}

/// The stateful half of admission ([`quorumkey_ledger::Ledger::admit`])
/// against the latest committed state, as if the next block were made now.
fn admit(state: &CommittedState, transaction: &SignedTransaction) -> Result<TransactionClass, SubmitError> {
    let class = transaction_class(&transaction.body);
    if class == TransactionClass::Dkg {
        return Ok(class);
    }
    let snapshot = state.snapshot().map_err(|e| SubmitError::Unavailable(e.to_string()))?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
    match state.ledger().admit(&snapshot, transaction, now_ms) {
        Ok(Ok(())) => Ok(class),
        Ok(Err(rejection)) => Err(SubmitError::Refused(rejection)),
        Err(error) => Err(SubmitError::Unavailable(error.to_string())),
    }
}

/// Sends accepted transactions to every peer and admits theirs, until the
/// network closes the channel.
pub(crate) async fn run_gossip<S, R, B>(
    mut sender: S,
    mut receiver: R,
    mut blocker: B,
    OutboundTransactions(mut outbound): OutboundTransactions,
    state: CommittedState,
    mempool: Mempool,
) where
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
    B: Blocker<PublicKey = ed25519::PublicKey>,
{
    let mut outbound_open = true;
    loop {
        let next_outbound =
            async { if outbound_open { outbound.next().await } else { futures::future::pending().await } };
        futures::pin_mut!(next_outbound);
        let incoming = receiver.recv();
        futures::pin_mut!(incoming);
        match futures::future::select(next_outbound, incoming).await {
            futures::future::Either::Left((Some(transaction), _)) => {
                sender.send(Recipients::All, transaction, false);
            }
            futures::future::Either::Left((None, _)) => outbound_open = false,
            futures::future::Either::Right((Ok((peer, message)), _)) => {
                // Oversized, malformed or badly signed: check_transaction
                // refuses all of them before anything is kept.
                let message = Bytes::from(message);
                let sets = match state.node_sets() {
                    Ok(sets) => sets,
                    Err(error) => {
                        tracing::warn!(%peer, %error, "cannot check a gossiped transaction: the state is unreadable");
                        continue;
                    }
                };
                let checked = match state.ledger().check_transaction(&message, &sets) {
                    Ok(checked) => checked,
                    // A peer whose ledger is across an epoch's start or a
                    // handover's from this node's may send what this node
                    // cannot check yet (or any more): dropped, not blocked.
                    Err(rejection) if rejection.depends_on_node_sets() => {
                        tracing::debug!(%peer, %rejection, "dropped a gossiped transaction this node's node sets refuse");
                        continue;
                    }
                    Err(rejection) => {
                        tracing::warn!(%peer, %rejection, "blocking peer: gossiped an invalid transaction");
                        blocker.block(peer);
                        continue;
                    }
                };
                let class = match admit(&state, &checked) {
                    Ok(class) => class,
                    Err(error) => {
                        tracing::debug!(%peer, %error, "gossiped transaction not admitted");
                        continue;
                    }
                };
                match mempool.insert(message, class, transaction_slot(&checked.body)) {
                    Ok(_) => metrics::gauge!(METRIC_MEMPOOL_SIZE).set(mempool.len() as f64),
                    Err(error) => tracing::debug!(%peer, %error, "gossiped transaction dropped"),
                }
            }
            futures::future::Either::Right((Err(error), _)) => {
                tracing::debug!(%error, "gossip channel closed");
                return;
            }
        }
    }
}
