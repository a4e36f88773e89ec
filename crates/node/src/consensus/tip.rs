//! The latest height this node has applied and its state root, readable
//! at once and awaitable by height.

use std::sync::Arc;

use tokio::sync::watch;

use super::block::StateCheckpoint;

/// The node's applied tip, shared by the block applier (which advances it)
/// and the proposer and verifier (which read it and wait on it).
#[derive(Clone, Debug)]
pub struct AppliedTip {
    sender: Arc<watch::Sender<StateCheckpoint>>,
}

impl AppliedTip {
    /// A tip starting at `checkpoint`.
    pub fn new(checkpoint: StateCheckpoint) -> Self {
        Self { sender: Arc::new(watch::Sender::new(checkpoint)) }
    }

    /// The current tip.
    pub fn get(&self) -> StateCheckpoint {
        *self.sender.borrow()
    }

    /// Advances the tip (never moves it back).
    pub fn advance(&self, checkpoint: StateCheckpoint) {
        self.sender.send_if_modified(|tip| {
            if checkpoint.height > tip.height {
                *tip = checkpoint;
                true
            } else {
                false
            }
        });
    }

    /// The tip, once it is at or above `height`.
    pub(crate) async fn wait_for(&self, height: u64) -> StateCheckpoint {
        let mut receiver = self.sender.subscribe();
        match receiver.wait_for(|tip| tip.height >= height).await {
            Ok(tip) => *tip,
            // The sender lives as long as `self`: unreachable, but answer
            // with the current tip rather than panic.
            Err(_) => self.get(),
        }
    }
}
