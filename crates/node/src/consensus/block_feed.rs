//! Finalized blocks, from consensus to the ledger: marshal reports each one
//! in height order, at least once; a task applies it through the
//! [`BlockApplier`] (exactly once, durably) and only then acknowledges it,
//! so a crash at any point loses nothing that was acknowledged.

use std::sync::Arc;

use commonware_actor::Feedback;
use commonware_consensus::Reporter;
use commonware_consensus::marshal::Update;
use commonware_cryptography::Digested;
use commonware_runtime::Clock;
use commonware_utils::Acknowledgement;
use commonware_utils::acknowledgement::Exact;
use futures::StreamExt;
use futures::channel::mpsc;
use quorumkey_ledger::transaction_hash;

use super::application::unix_ms;
use super::block::{Block, StateCheckpoint};
use super::finality_waiters::FinalityWaiters;
use super::mempool::Mempool;
use super::tip::AppliedTip;
use crate::applier::{ApplyReport, BlockApplier, FinalizedBlock};
use crate::observability::METRIC_MEMPOOL_SIZE;

type Delivery = (Digested<Block>, Exact);

/// Marshal's reporter: hands finalized blocks to [`apply_finalized_blocks`].
#[derive(Clone, Debug)]
pub(crate) struct FinalizedBlockReporter {
    sender: mpsc::UnboundedSender<Delivery>,
}

/// The receiving end, for [`apply_finalized_blocks`].
#[derive(Debug)]
pub(crate) struct FinalizedBlocks(mpsc::UnboundedReceiver<Delivery>);

/// A reporter and the stream of blocks it reports. The stream is unbounded
/// as a channel, but marshal never has more than its `max_pending_acks`
/// blocks unacknowledged.
pub(crate) fn finalized_channel() -> (FinalizedBlockReporter, FinalizedBlocks) {
    let (sender, receiver) = mpsc::unbounded();
    (FinalizedBlockReporter { sender }, FinalizedBlocks(receiver))
}

impl Reporter for FinalizedBlockReporter {
    type Activity = Update<Block>;

    fn report(&mut self, activity: Update<Block>) -> Feedback {
        match activity {
            Update::Block(block, acknowledgement) => {
                if self.sender.unbounded_send((block, acknowledgement)).is_err() {
                    // The applier stopped (the node halted): the dropped
                    // acknowledgement stops marshal too, as it should.
                    tracing::debug!("finalized block dropped: the applier has stopped");
                }
            }
            Update::Tip(_, height, _) => tracing::trace!(height = height.get(), "finalized tip"),
        }
        Feedback::Ok
    }
}

/// Applies finalized blocks until the stream ends or the node halts.
/// Acknowledges each block only after it is committed, removes its
/// transactions from the mempool, advances the tip and tells clients
/// waiting for those transactions.
pub(crate) async fn apply_finalized_blocks(
    clock: impl Clock,
    FinalizedBlocks(mut blocks): FinalizedBlocks,
    applier: Arc<BlockApplier>,
    mempool: Mempool,
    tip: AppliedTip,
    waiters: FinalityWaiters,
) {
    while let Some((block, acknowledgement)) = blocks.next().await {
        let block = block.inner();
        if block.height == 0 {
            // The genesis block carries no transactions; its state was
            // written when the store was created.
            acknowledgement.acknowledge();
            continue;
        }
        // The checkpoint is below the block, so this node applied it.
        if let Err(mismatch) = applier.check_root(block.checkpoint.height, &block.checkpoint.state_root) {
            tracing::error!(%mismatch, "state root differs from the one the network finalized");
            return;
        }
        let finalized = FinalizedBlock {
            height: block.height,
            timestamp_ms: block.timestamp_ms,
            transactions: block.transactions.clone(),
        };
        let mut rejections = Vec::new();
        match applier.apply(&finalized, unix_ms(&clock)) {
            Ok(ApplyReport::Applied { accepted, rejected, rejections: rejected_here, state_root }) => {
                tracing::debug!(height = block.height, accepted, rejected, "applied finalized block");
                tip.advance(StateCheckpoint { height: block.height, state_root });
                rejections = rejected_here;
            }
            Ok(ApplyReport::AlreadyApplied) => {
                tracing::debug!(height = block.height, "finalized block was applied before");
            }
            Err(error) => {
                tracing::error!(height = block.height, %error, "cannot apply finalized block; stopping");
                return;
            }
        }
        let hashes: Vec<_> = block.transactions.iter().map(|transaction| transaction_hash(transaction)).collect();
        waiters.finalized(&hashes, block.height, &rejections);
        mempool.remove_finalized(hashes);
        metrics::gauge!(METRIC_MEMPOOL_SIZE).set(mempool.len() as f64);
        acknowledgement.acknowledge();
    }
}
