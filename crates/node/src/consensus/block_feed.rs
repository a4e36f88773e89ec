//! Finalized blocks, from consensus to the ledger: marshal reports each one
//! in height order, at least once; a task applies it through the
//! [`BlockApplier`] (exactly once, durably) and only then acknowledges it,
//! so a crash at any point loses nothing that was acknowledged.
//!
//! After the last block of a consensus epoch, and before acknowledging it,
//! the task moves consensus to the next epoch ([`EpochBoundaries`]): the
//! next epoch's validators are the node set the ledger holds in force once
//! that block is applied. It also tells the p2p layer whenever the node
//! sets change, so that nodes joining are connected before they sign.

use std::sync::Arc;

use commonware_actor::Feedback;
use commonware_consensus::Reporter;
use commonware_consensus::marshal::Update;
use commonware_consensus::types::FixedEpocher;
use commonware_cryptography::Digested;
use commonware_cryptography::Digestible as _;
use commonware_runtime::Clock;
use commonware_utils::Acknowledgement;
use commonware_utils::acknowledgement::Exact;
use futures::StreamExt;
use futures::channel::mpsc;
use quorumkey_ledger::{NodeSets, transaction_hash};

use super::application::unix_ms;
use super::block::{Block, StateCheckpoint};
use super::epochs::{EpochSwitch, is_last_of_epoch};
use super::finality_waiters::FinalityWaiters;
use super::mempool::Mempool;
use super::tip::AppliedTip;
use super::validators::ValidatorSchemes;
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

/// Whom this node keeps p2p connections with, as the ledger's node sets
/// change: it is told the sets at start and after every block that changed
/// them (a next set decided, a new set in force).
pub trait PeerSets: Send + 'static {
    /// `sets` are now the sets in force and decided.
    fn follow(&mut self, sets: &NodeSets);
}

/// What happens at consensus epoch boundaries (see the module docs).
pub(crate) struct EpochBoundaries {
    pub(crate) epocher: FixedEpocher,
    pub(crate) schemes: ValidatorSchemes,
    pub(crate) switch: EpochSwitch,
    pub(crate) peers: Box<dyn PeerSets>,
    /// The sets the peers were last told.
    pub(crate) followed: NodeSets,
}

impl EpochBoundaries {
    /// After `block` is applied: follows changed node sets, and if it is
    /// the last block of its epoch, enters the next epoch. A block applied
    /// before (marshal redelivers what was not acknowledged before a crash)
    /// changes nothing: consensus started in the epoch after the ledger's
    /// applied height, past this block. Returns `false` if the node must stop.
    async fn after(&mut self, block: &Digested<Block>, applier: &BlockApplier, fresh: bool) -> bool {
        if !fresh {
            return true;
        }
        let sets = match applier.committed_state().node_sets() {
            Ok(sets) => sets,
            Err(error) => {
                tracing::error!(%error, "cannot read the node sets; stopping");
                return false;
            }
        };
        if sets != self.followed {
            self.peers.follow(&sets);
            self.followed = sets;
        }
        let Some(ending) = is_last_of_epoch(&self.epocher, block.inner().height) else {
            return true;
        };
        let next = ending.next();
        let validators = self.followed.current.nodes.iter().map(|node| node.consensus_key.clone()).collect();
        let scheme = self.schemes.install(next, validators);
        self.switch.enter(next, block.digest(), scheme).await
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
    mut boundaries: EpochBoundaries,
) {
    while let Some((digested, acknowledgement)) = blocks.next().await {
        let block = digested.inner();
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
        let mut fresh = false;
        match applier.apply(&finalized, unix_ms(&clock)) {
            Ok(ApplyReport::Applied { accepted, rejected, rejections: rejected_here, state_root }) => {
                tracing::debug!(height = block.height, accepted, rejected, "applied finalized block");
                tip.advance(StateCheckpoint { height: block.height, state_root });
                rejections = rejected_here;
                fresh = true;
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
        if !boundaries.after(&digested, &applier, fresh).await {
            return;
        }
        acknowledgement.acknowledge();
    }
}
