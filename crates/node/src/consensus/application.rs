//! The ledger as a consensus application: what a leader proposes and what
//! every validator checks before it votes.
//!
//! A proposal waits until the mempool has transactions or a heartbeat
//! elapses (so an idle network makes one empty block per heartbeat instead
//! of spinning), leaves out transactions already carried by ancestors that
//! are not yet finalized, and carries the proposer's latest committed state
//! root as a [`StateCheckpoint`].
//!
//! Verification is deterministic and never answers `false` for a block that
//! could still turn out valid: a timestamp ahead of the local clock is waited
//! out, and a checkpoint above this node's applied height is waited for.

use std::collections::HashSet;
use std::time::{Duration, UNIX_EPOCH};

use commonware_consensus::Application;
use commonware_consensus::marshal::ancestry::Ancestry;
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::simplex::types::Context;
use commonware_cryptography::sha256::Digest;
use commonware_cryptography::{Digested, Digestible, ed25519};
use commonware_runtime::Clock;
use futures::StreamExt;
use quorumkey_ledger::transaction_hash;

use super::block::{Block, BlockLimits, StateCheckpoint};
use super::mempool::{Mempool, TransactionHash};
use super::tip::AppliedTip;
use crate::state::CommittedState;

/// How far ahead of the local clock a proposal's timestamp may be before
/// this node waits for its clock to catch up.
pub(crate) const MAX_CLOCK_DRIFT: Duration = Duration::from_millis(500);

/// How far back a proposer walks unfinalized ancestors to skip
/// transactions they already carry.
const MAX_UNFINALIZED_ANCESTORS: usize = 256;

/// The consensus context simplex hands to the application.
pub type ConsensusContext = Context<Digest, ed25519::PublicKey>;

/// The ledger's block builder and verifier.
#[derive(Clone)]
pub struct LedgerApplication {
    state: CommittedState,
    mempool: Mempool,
    tip: AppliedTip,
    limits: BlockLimits,
    heartbeat: Duration,
}

impl std::fmt::Debug for LedgerApplication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerApplication").field("heartbeat", &self.heartbeat).finish_non_exhaustive()
    }
}

impl LedgerApplication {
    /// An application over the committed `state`'s ledger that proposes from `mempool`.
    /// With nothing to propose, a leader waits up to `heartbeat` and then
    /// proposes an empty block; keep it below the consensus leader timeout.
    pub fn new(
        state: CommittedState,
        mempool: Mempool,
        tip: AppliedTip,
        limits: BlockLimits,
        heartbeat: Duration,
    ) -> Self {
        Self { state, mempool, tip, limits, heartbeat }
    }

    /// Why `block` (whose parent is `parent`) is invalid, if it is. Looks
    /// at neither the clock nor the checkpoint, which may need waiting for.
    pub(crate) fn check_contents(&self, block: &Block, parent: &Block) -> Result<(), String> {
        if parent.height.checked_add(1) != Some(block.height) || block.parent != parent.digest() {
            return Err("does not extend its parent".into());
        }
        if block.timestamp_ms < parent.timestamp_ms {
            return Err("timestamp is before the parent's".into());
        }
        if block.checkpoint.height >= block.height {
            return Err("checkpoint is not below the block".into());
        }
        let sets = self.state.node_sets().map_err(|e| format!("cannot read the node sets: {e}"))?;
        let mut seen = HashSet::with_capacity(block.transactions.len());
        for transaction in &block.transactions {
            if !seen.insert(transaction_hash(transaction)) {
                return Err("carries the same transaction twice".into());
            }
            self.state
                .ledger()
                .check_transaction(transaction, &sets)
                .map_err(|rejection| format!("carries an invalid transaction: {rejection}"))?;
        }
        Ok(())
    }

    /// Whether the checkpoint matches this node's own root at its height,
    /// waiting until this node has applied that height.
    pub(crate) async fn checkpoint_agrees(&self, checkpoint: &StateCheckpoint) -> bool {
        let tip = self.tip.wait_for(checkpoint.height).await;
        if tip.height == checkpoint.height {
            return tip.state_root == checkpoint.state_root;
        }
        match self.state.state_root(checkpoint.height) {
            Ok(Some(root)) => root == checkpoint.state_root,
            // A height below the tip always has a root; a missing one or a
            // read failure means this node cannot vouch for the block.
            Ok(None) | Err(_) => false,
        }
    }
}

/// Milliseconds since the Unix epoch on the runtime's clock.
pub fn unix_ms(clock: &impl Clock) -> u64 {
    clock.current().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

impl<E: Clock + Send + 'static> Application<E> for LedgerApplication {
    type SigningScheme = Scheme;
    type Context = ConsensusContext;
    type Block = Block;
    type Input = ();

    async fn propose(
        &mut self,
        (runtime, _context): (E, ConsensusContext),
        mut ancestry: impl Ancestry<Block>,
        _input: (),
    ) -> Option<Digested<Block>> {
        let parent = ancestry.next().await?;
        let parent = parent.inner();
        // Idle: wait for a transaction, but at most one heartbeat.
        if self.mempool.is_empty() {
            let arrival = self.mempool.wait_for_transactions();
            let heartbeat = runtime.sleep(self.heartbeat);
            futures::pin_mut!(arrival, heartbeat);
            futures::future::select(arrival, heartbeat).await;
        }
        let tip = self.tip.get();
        // Transactions in notarized but not yet finalized ancestors would be
        // applied twice if proposed again.
        let mut exclude: HashSet<TransactionHash> = HashSet::new();
        let mut ancestor = Some(Digested::precomputed(parent.clone(), parent.digest()));
        let mut walked = 0;
        while let Some(block) = ancestor {
            let block = block.inner();
            if block.height <= tip.height || walked >= MAX_UNFINALIZED_ANCESTORS {
                break;
            }
            exclude.extend(block.transactions.iter().map(|transaction| transaction_hash(transaction)));
            walked += 1;
            ancestor = ancestry.next().await;
        }
        let transactions =
            self.mempool.select(self.limits.max_transactions, self.limits.max_transaction_bytes, &exclude);
        let timestamp_ms = unix_ms(&runtime).max(parent.timestamp_ms);
        // The tip can be above the parent only while this node is catching
        // up; the parent's checkpoint is then the best one below the block.
        let checkpoint = if tip.height <= parent.height { tip } else { parent.checkpoint };
        let block = Block::new(parent.digest(), parent.height.checked_add(1)?, timestamp_ms, checkpoint, transactions);
        tracing::debug!(height = block.height, transactions = block.transactions.len(), "proposing");
        let digest = block.digest();
        Some(Digested::precomputed(block, digest))
    }

    async fn verify(&mut self, (runtime, _context): (E, ConsensusContext), mut ancestry: impl Ancestry<Block>) -> bool {
        let Some(block) = ancestry.next().await else { return false };
        let Some(parent) = ancestry.next().await else { return false };
        let (block, parent) = (block.inner(), parent.inner());
        if let Err(reason) = self.check_contents(block, parent) {
            tracing::warn!(height = block.height, digest = %block.digest(), %reason, "refusing block");
            return false;
        }
        // A timestamp ahead of this node's clock is not invalid yet: wait.
        let now_ms = unix_ms(&runtime);
        let drift_ms = MAX_CLOCK_DRIFT.as_millis() as u64;
        if block.timestamp_ms > now_ms + drift_ms {
            let ahead = Duration::from_millis(block.timestamp_ms - now_ms - drift_ms);
            runtime.sleep(ahead).await;
        }
        if !self.checkpoint_agrees(&block.checkpoint).await {
            tracing::warn!(
                height = block.height,
                checkpoint = block.checkpoint.height,
                "refusing block: its state checkpoint differs from this node's root"
            );
            return false;
        }
        true
    }
}
