//! Which peers this node hears from. Every channel's receiver is wrapped so
//! that each authenticated message stamps its sender; a peer heard from
//! within a window counts as connected. Live validators vote at least once
//! per heartbeat, so the count is meaningful even on an idle network.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use commonware_cryptography::ed25519;
use commonware_p2p::{Message, Receiver};
use commonware_runtime::Clock;

use super::application::unix_ms;

/// When each peer was last heard from (milliseconds since the Unix epoch).
#[derive(Clone, Debug, Default)]
pub struct PeerActivity(Arc<Mutex<HashMap<ed25519::PublicKey, u64>>>);

impl PeerActivity {
    fn record(&self, peer: &ed25519::PublicKey, now_ms: u64) {
        let mut seen = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Only authenticated validators can reach a receiver, so the map
        // is bounded by the validator set.
        seen.insert(peer.clone(), now_ms);
    }

    /// Which of `peers` (index, key) were not heard from within `window`
    /// of `now_ms`, by index.
    pub fn silent(&self, peers: &[(u16, ed25519::PublicKey)], now_ms: u64, window: Duration) -> Vec<u16> {
        let window_ms = window.as_millis() as u64;
        let seen = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        peers
            .iter()
            .filter(|(_, key)| seen.get(key).is_none_or(|&at| now_ms.saturating_sub(at) > window_ms))
            .map(|(index, _)| *index)
            .collect()
    }

    /// Peers heard from within `window` of `now_ms`.
    pub fn active(&self, now_ms: u64, window: Duration) -> usize {
        let window_ms = window.as_millis() as u64;
        let seen = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        seen.values().filter(|&&at| now_ms.saturating_sub(at) <= window_ms).count()
    }
}

/// A receiver that records who it hears from.
pub(crate) struct ObservedReceiver<R, C> {
    inner: R,
    activity: PeerActivity,
    clock: Arc<C>,
}

impl<R, C> ObservedReceiver<R, C> {
    /// Wraps `inner`.
    pub fn new(inner: R, activity: PeerActivity, clock: Arc<C>) -> Self {
        Self { inner, activity, clock }
    }
}

impl<R: std::fmt::Debug, C> std::fmt::Debug for ObservedReceiver<R, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedReceiver").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<R, C> Receiver for ObservedReceiver<R, C>
where
    R: Receiver<PublicKey = ed25519::PublicKey>,
    C: Clock,
{
    type Error = R::Error;
    type PublicKey = ed25519::PublicKey;

    async fn recv(&mut self) -> Result<Message<ed25519::PublicKey>, R::Error> {
        let message = self.inner.recv().await?;
        self.activity.record(&message.0, unix_ms(self.clock.as_ref()));
        Ok(message)
    }

    fn capacity(&self) -> NonZeroUsize {
        self.inner.capacity()
    }
}
