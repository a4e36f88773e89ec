//! What a node tells its operator: `GET /health` (JSON: the node's index,
//! height, state root and status) and `GET /metrics` (Prometheus text:
//! finalized height, finalization latency, mempool size, connected peers,
//! applied and rejected transactions).
//!
//! Metrics go through the `metrics` facade to a Prometheus recorder that
//! [`Telemetry::install`] sets up once per process (one node per process);
//! where no recorder is installed (in-process simulations) the calls cost
//! nothing.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use thiserror::Error;

/// Gauge: the highest finalized height this node has applied.
pub const METRIC_FINALIZED_HEIGHT: &str = "quorumkey_finalized_height";
/// Histogram: seconds from a block's proposal timestamp to its application here.
pub(crate) const METRIC_FINALIZATION_LATENCY: &str = "quorumkey_finalization_latency_seconds";
/// Gauge: the consensus epoch this node's engine runs (heights
/// `e·L ..= e·L + L − 1`, `L` the genesis's `boundary_blocks`).
pub(crate) const METRIC_CONSENSUS_EPOCH: &str = "quorumkey_consensus_epoch";
/// Gauge: transactions waiting in the mempool.
pub(crate) const METRIC_MEMPOOL_SIZE: &str = "quorumkey_mempool_transactions";
/// Gauge: peers this node is connected to.
pub(crate) const METRIC_CONNECTED_PEERS: &str = "quorumkey_connected_peers";
/// Counter: transactions applied, by outcome (`applied` or `rejected`).
pub(crate) const METRIC_TRANSACTIONS: &str = "quorumkey_transactions_total";
/// Counter: keys the DKG added to the pool.
pub(crate) const METRIC_DKG_KEYS: &str = "quorumkey_dkg_keys_total";
/// Counter: DKG batches abandoned.
pub(crate) const METRIC_DKG_ABANDONED: &str = "quorumkey_dkg_batches_abandoned_total";

/// Counter: client JSON-RPC requests, by method and outcome (`ok` or the
/// JSON-RPC error code).
pub(crate) const METRIC_RPC_REQUESTS: &str = "quorumkey_rpc_requests_total";
/// Histogram: seconds to answer a client JSON-RPC request, by method.
pub const METRIC_RPC_LATENCY: &str = "quorumkey_rpc_request_seconds";
/// Histogram: login records made durable together in one write.
pub(crate) const METRIC_LOGIN_RECORD_GROUP: &str = "quorumkey_login_record_group_size";
/// Histogram: seconds to make one group of login records durable.
pub const METRIC_LOGIN_RECORD_COMMIT: &str = "quorumkey_login_record_commit_seconds";
/// Histogram: seconds a background checkpoint of login records took (see
/// `quorumkey_store::NodeStore::checkpoint_login_records`).
pub(crate) const METRIC_LOGIN_RECORD_CHECKPOINT: &str = "quorumkey_login_record_checkpoint_seconds";
/// Counter: sweeps of expired login records run (one at start, then one a
/// minute).
pub(crate) const METRIC_LOGIN_RECORD_SWEEPS: &str = "quorumkey_login_record_sweeps_total";
/// Counter: expired login records forgotten by sweeps.
pub(crate) const METRIC_LOGIN_RECORDS_SWEPT: &str = "quorumkey_login_records_swept_total";
/// Counter: provider requests refused because the provider's address is not public
/// (a verifier pointing into the node's network, or DNS rebinding).
pub(crate) const METRIC_PROVIDER_ADDRESS_REFUSALS: &str = "quorumkey_provider_address_refusals_total";
/// Counter: provider calls refused by the per-verifier limit.
pub(crate) const METRIC_PROVIDER_CALLS_LIMITED: &str = "quorumkey_provider_calls_limited_total";
/// Counter: introspection answers served from the node's short answer cache.
pub(crate) const METRIC_PROVIDER_ANSWER_CACHE_HITS: &str = "quorumkey_provider_answer_cache_hits_total";
/// Counter: damaged login-log entries skipped when the node started
/// (`quorumkey_store::LoginLogDamage`), by `acknowledged` ("true": a
/// record the node answered for is lost; "false": the last write before a
/// crash was torn).
pub(crate) const METRIC_LOGIN_LOG_CORRUPT_ENTRIES: &str = "quorumkey_login_log_corrupt_entries_total";
/// Counter: background checkpoints that could not seal the login log (no
/// file descriptor for the next one, typically) and ran as a full
/// checkpoint instead, holding up new records meanwhile.
pub(crate) const METRIC_LOGIN_LOG_ROTATIONS_DEFERRED: &str = "quorumkey_login_log_rotations_deferred_total";

/// Why telemetry could not start.
#[derive(Debug, Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct TelemetryError(String);

/// The process's metrics recorder.
#[derive(Clone)]
pub struct Telemetry {
    handle: PrometheusHandle,
}

impl Telemetry {
    /// Installs the Prometheus recorder for this process, with latency
    /// buckets from 5 ms to 30 s (login record groups: 1 to 256).
    pub fn install() -> Result<Self, TelemetryError> {
        let buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(METRIC_FINALIZATION_LATENCY.to_owned()),
                &buckets,
            )
            .map_err(|e| TelemetryError(e.to_string()))?
            .set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Full(METRIC_RPC_LATENCY.to_owned()), &buckets)
            .map_err(|e| TelemetryError(e.to_string()))?
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(METRIC_LOGIN_RECORD_GROUP.to_owned()),
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            )
            .map_err(|e| TelemetryError(e.to_string()))?
            .install_recorder()
            .map_err(|e| TelemetryError(e.to_string()))?;
        Ok(Self { handle })
    }

    /// The current metrics in Prometheus text format.
    pub(crate) fn render(&self) -> String {
        self.handle.render()
    }
}

/// Whether the node serves answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "reason")]
pub enum NodeStatus {
    /// Starting: replaying or catching up.
    Starting,
    /// Applying finalized blocks and serving.
    Ok,
    /// Stopped applying blocks (e.g. its state root differs from the
    /// network's): it must not serve answers.
    Halted(String),
}

/// The node's health, as `GET /health` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    /// The node's index.
    pub index: u16,
    /// The network id, hex.
    pub network_id: String,
    /// Highest applied height.
    pub height: u64,
    /// State root after that height, hex.
    pub state_root: String,
    /// Status.
    #[serde(flatten)]
    pub status: NodeStatus,
    /// Software version.
    pub version: &'static str,
    /// How many peers it hears from (absent until first counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<PeerHealth>,
    /// What an operator should look at (absent when nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// The peers a node hears from, against what consensus needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PeerHealth {
    /// Peers heard from within the last few seconds.
    pub heard: usize,
    /// Peers consensus needs besides this node (a quorum of n − f nodes,
    /// f = ⌊(n − 1)/3⌋, minus itself): with fewer, no block is finalized.
    pub needed: usize,
    /// The other nodes of the network.
    pub total: usize,
}

impl PeerHealth {
    /// Whether consensus can make progress with the peers heard.
    pub fn enough(&self) -> bool {
        self.heard >= self.needed
    }
}

/// Shared, updatable health of a node.
#[derive(Clone, Debug)]
pub struct HealthCell(Arc<RwLock<Health>>);

impl HealthCell {
    /// A node that is starting.
    pub fn new(index: u16, network_id: [u8; 32]) -> Self {
        Self(Arc::new(RwLock::new(Health {
            index,
            network_id: hex::encode(network_id),
            height: 0,
            state_root: hex::encode([0u8; 32]),
            status: NodeStatus::Starting,
            version: env!("CARGO_PKG_VERSION"),
            peers: None,
            warning: None,
        })))
    }

    /// Records an applied height.
    pub fn applied(&self, height: u64, state_root: &[u8; 32]) {
        let mut health = self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        health.height = height;
        health.state_root = hex::encode(state_root);
        if health.status == NodeStatus::Starting {
            health.status = NodeStatus::Ok;
        }
        metrics::gauge!(METRIC_FINALIZED_HEIGHT).set(height as f64);
    }

    /// Records how many peers the node hears from, with a warning while
    /// too few for consensus (`silent`: the indexes of the peers not heard).
    pub fn peers(&self, peers: PeerHealth, silent: &[u16]) {
        let mut health = self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        health.peers = Some(peers);
        health.warning = (!peers.enough()).then(|| too_few_peers(peers, silent));
    }

    /// Marks the node halted; it stays halted.
    pub fn halt(&self, reason: String) {
        let mut health = self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        health.status = NodeStatus::Halted(reason);
    }

    /// The current health.
    pub fn get(&self) -> Health {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// The warning of a node that hears from too few peers.
pub fn too_few_peers(peers: PeerHealth, silent: &[u16]) -> String {
    let silent: Vec<String> = silent.iter().map(u16::to_string).collect();
    format!(
        "hears from {} of {} peers, consensus needs {}: no block is finalized until more are reachable (not heard: node {}); check that their p2p addresses accept connections from this host and that this node's p2p_address reaches it",
        peers.heard,
        peers.total,
        peers.needed,
        silent.join(", ")
    )
}

#[derive(Clone)]
struct ObservabilityState {
    health: HealthCell,
    telemetry: Option<Telemetry>,
}

async fn health(State(state): State<ObservabilityState>) -> Response {
    let health = state.health.get();
    let code = match health.status {
        NodeStatus::Ok => StatusCode::OK,
        NodeStatus::Starting | NodeStatus::Halted(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, axum::Json(health)).into_response()
}

async fn metrics_text(State(state): State<ObservabilityState>) -> Response {
    match &state.telemetry {
        Some(telemetry) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], telemetry.render()).into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled in this process\n").into_response(),
    }
}

/// The `/health` and `/metrics` routes, with a request timeout.
pub fn router(health_cell: HealthCell, telemetry: Option<Telemetry>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        .with_state(ObservabilityState { health: health_cell, telemetry })
}
