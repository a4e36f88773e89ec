//! Consensus, behind a small interface of ours: submit a transaction
//! ([`TransactionSubmitter::submit`]); receive finalized blocks in order
//! (they go to the [`BlockApplier`](crate::applier::BlockApplier), which
//! applies each exactly once). The engine behind it is commonware's simplex
//! with marshal ([`engine`]); nothing outside this module names it.
//!
//! - [`block`]: the block format and its bounds.
//! - [`mempool`]: pending transactions, deduplicated and bounded.
//! - [`application`]: what a leader proposes and what validators check.
//! - [`block_feed`]: finalized blocks to the ledger, acknowledged after commit.
//! - [`finality_waiters`]: clients waiting for their transaction to finalize.
//! - [`gossip`]: transaction submission and gossip between nodes.
//! - [`peers`]: which peers this node hears from.
//! - [`tip`]: the applied height and root, awaitable.
//! - [`engine`]: the wiring of the commonware components.
//! - `epochs`: one simplex engine per consensus epoch, switched at each
//!   epoch's last block.
//! - `validators`: each epoch's validators, from the ledger's node sets.

pub mod application;
pub mod block;
pub mod block_feed;
pub mod engine;
pub(crate) mod epochs;
pub mod finality_waiters;
pub mod gossip;
pub mod mempool;
pub mod peers;
pub mod tip;
pub(crate) mod validators;

pub use application::LedgerApplication;
pub use block::{Block, BlockLimits, StateCheckpoint};
pub use block_feed::PeerSets;
pub use engine::{
    Channels, ConsensusConfig, ConsensusError, ConsensusRuntime, RunningConsensus, Timing, channel,
    consensus_namespace, max_message_size, start_consensus,
};
pub use finality_waiters::FinalityWaiters;
pub use gossip::{SubmitError, TransactionSubmitter};
pub use mempool::{Admission, Mempool, MempoolLimits, TransactionHash};
pub use peers::PeerActivity;
pub use tip::AppliedTip;
