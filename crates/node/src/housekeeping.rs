//! Housekeeping: one task owns the node's periodic chores, so none of them
//! runs detached.
//!
//! - Every minute (and once at start: a node that was down may hold many),
//!   the login store sweeps expired login records, and the JSON-RPC service
//!   forgets idle rate-limit entries, cached token answers and the counts
//!   of expired records.
//! - Every second, the connected-peers gauge and the peers on `/health`;
//!   while the node hears from fewer peers than consensus needs, a warning
//!   on `/health` at once and in the log once it has lasted a peer window
//!   (then every minute), naming the peers not heard; a line when enough
//!   are back.
//!
//! [`Housekeeping::stop`] ends the task between chores and waits for it.

use std::sync::Arc;
use std::time::Duration;

use commonware_cryptography::ed25519;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio::time::MissedTickBehavior;

use crate::consensus::PeerActivity;
use crate::http::jrpc::RpcService;
use crate::http::v1::{PEER_WINDOW, wall_clock_ms};
use crate::login_store::LoginStore;
use crate::observability::{HealthCell, PeerHealth, too_few_peers};
use crate::observability::{METRIC_CONNECTED_PEERS, METRIC_LOGIN_RECORD_SWEEPS, METRIC_LOGIN_RECORDS_SWEPT};
use crate::state::CommittedState;
use commonware_utils::{Faults as _, N3f1};

/// How often expired login records are swept.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often the peers gauge is set.
const PEERS_INTERVAL: Duration = Duration::from_secs(1);

/// What the housekeeping task works on.
pub(crate) struct Chores {
    /// The login records' owner, which sweeps them.
    pub login_store: LoginStore,
    /// The JSON-RPC service, whose idle entries are forgotten.
    pub rpc: Arc<RpcService>,
    /// Peer liveness, for the gauge.
    pub peers: PeerActivity,
    /// The committed state, for the node set in force: the peers watched
    /// are its other nodes (they change with epochs).
    pub state: CommittedState,
    /// This node's consensus key.
    pub me: ed25519::PublicKey,
    /// Where the peers are shown.
    pub health: HealthCell,
}

/// The running housekeeping task.
#[derive(Debug)]
pub(crate) struct Housekeeping {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Housekeeping {
    /// Starts the task on the current tokio runtime.
    pub fn start(chores: Chores) -> Self {
        let (stop, stopped) = oneshot::channel();
        Self { stop, task: tokio::spawn(run(chores, stopped)) }
    }

    /// Stops the task (a sweep under way finishes on the login store's
    /// thread) and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn run(chores: Chores, mut stopped: oneshot::Receiver<()>) {
    let mut sweeps = tokio::time::interval(SWEEP_INTERVAL);
    let mut gauge = tokio::time::interval(PEERS_INTERVAL);
    for interval in [&mut sweeps, &mut gauge] {
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    }
    let mut watch = PeerWatch::default();
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = sweeps.tick() => sweep(&chores).await,
            _ = gauge.tick() => watch.check(&chores, Instant::now()),
        }
    }
}

/// The other nodes of the set in force (index, consensus key) and how many
/// of them consensus needs: simplex finalizes with a quorum of n − f votes
/// (f = ⌊(n − 1)/3⌋), this node's own among them if it is in the set.
fn validator_peers(state: &CommittedState, me: &ed25519::PublicKey) -> Option<(Vec<(u16, ed25519::PublicKey)>, usize)> {
    let sets = match state.node_sets() {
        Ok(sets) => sets,
        Err(error) => {
            tracing::warn!(%error, "cannot read the node set in force to watch its peers");
            return None;
        }
    };
    let nodes = &sets.current.nodes;
    let member = nodes.iter().any(|node| node.consensus_key == *me);
    let peers: Vec<(u16, ed25519::PublicKey)> = nodes
        .iter()
        .zip(1u16..)
        .filter(|(node, _)| node.consensus_key != *me)
        .map(|(node, index)| (index, node.consensus_key.clone()))
        .collect();
    let quorum = N3f1::quorum(nodes.len().max(1)) as usize;
    Some((peers, quorum.saturating_sub(usize::from(member))))
}

/// When the node has heard from too few peers since, and when it last
/// said so in the log.
#[derive(Debug, Default)]
struct PeerWatch {
    short_since: Option<Instant>,
    logged: Option<Instant>,
}

/// How often the log repeats that too few peers are heard.
const PEER_WARNING_REPEAT: Duration = Duration::from_secs(60);

impl PeerWatch {
    fn check(&mut self, chores: &Chores, now: Instant) {
        let now_ms = wall_clock_ms();
        let Some((peer_set, needed)) = validator_peers(&chores.state, &chores.me) else { return };
        let silent = chores.peers.silent(&peer_set, now_ms, PEER_WINDOW);
        let peers = PeerHealth { heard: peer_set.len() - silent.len(), needed, total: peer_set.len() };
        metrics::gauge!(METRIC_CONNECTED_PEERS).set(peers.heard as f64);
        chores.health.peers(peers, &silent);
        if peers.enough() {
            if self.logged.is_some() {
                tracing::info!(
                    heard = peers.heard,
                    needed = peers.needed,
                    total = peers.total,
                    "enough peers reachable again"
                );
            }
            *self = Self::default();
            return;
        }
        // A node that just started has not heard from anyone yet: it says
        // so in the log once that has lasted a peer window.
        let since = *self.short_since.get_or_insert(now);
        let due = match self.logged {
            None => now.duration_since(since) >= PEER_WINDOW,
            Some(at) => now.duration_since(at) >= PEER_WARNING_REPEAT,
        };
        if due {
            tracing::warn!("{}", too_few_peers(peers, &silent));
            self.logged = Some(now);
        }
    }
}

async fn sweep(chores: &Chores) {
    let now = wall_clock_ms() / 1000;
    // Walking the rate limiters' and caches' maps takes time in proportion
    // to their entries: off the runtime's workers, as the sweep itself is.
    let rpc = chores.rpc.clone();
    if let Err(error) = tokio::task::spawn_blocking(move || rpc.forget_idle(now)).await {
        tracing::warn!(%error, "forgetting idle rate-limit entries failed");
    }
    match chores.login_store.sweep(now).await {
        Ok(swept) => {
            metrics::counter!(METRIC_LOGIN_RECORD_SWEEPS).increment(1);
            metrics::counter!(METRIC_LOGIN_RECORDS_SWEPT).increment(swept as u64);
            if swept > 0 {
                tracing::debug!(swept, "forgot expired login records");
            }
        }
        Err(error) => tracing::warn!(%error, "cannot sweep expired login records"),
    }
}
