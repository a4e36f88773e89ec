//! Housekeeping: one task owns the node's periodic chores, so none of them
//! runs detached.
//!
//! - Every minute (and once at start: a node that was down may hold many),
//!   the login store sweeps expired login records, and the JSON-RPC service
//!   forgets idle rate-limit entries, cached token answers and the counts
//!   of expired records.
//! - Every second, the connected-peers gauge.
//!
//! [`Housekeeping::stop`] ends the task between chores and waits for it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::consensus::PeerActivity;
use crate::http::jrpc::RpcService;
use crate::http::v1::{PEER_WINDOW, wall_clock_ms};
use crate::login_store::LoginStore;
use crate::observability::{METRIC_CONNECTED_PEERS, METRIC_LOGIN_RECORD_SWEEPS, METRIC_LOGIN_RECORDS_SWEPT};

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
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = sweeps.tick() => sweep(&chores).await,
            _ = gauge.tick() => {
                metrics::gauge!(METRIC_CONNECTED_PEERS)
                    .set(chores.peers.active(wall_clock_ms(), PEER_WINDOW) as f64);
            }
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
