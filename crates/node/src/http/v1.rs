//! The node's HTTP API for operators and tools: health and metrics (see
//! [`observability`](crate::observability)), transaction submission (with
//! an optional wait for finality), status, state roots by height, and
//! assignment lookups. Every body is bounded and every error is JSON with a
//! precise message. Every `/v1` request takes one from its client address's
//! rate limit, the budget `/jrpc` uses too ([`AddressLimiter`]; 429 with
//! `Retry-After: 1` over it). The client-facing JSON-RPC API is added next
//! to these routes.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use quorumkey_ledger::{Assignment, LedgerView, MAX_TRANSACTION_LEN, Rejection, VerifierId, VerifierName};
use quorumkey_login::node_api::{
    AssignmentQuery, AssignmentResponse, EpochNodeInfo, EpochResponse, HandoverInfo, KeyResponse,
    MAX_VERIFIERS_PER_PAGE, NetworkPolicyFile, PolicyResponse, StateRootResponse, StatusResponse, SubmitRequest,
    SubmitResponse, VerifierInfo, VerifiersQuery, VerifiersResponse,
};
use serde::Serialize;

use crate::consensus::mempool::MempoolError;
use crate::consensus::{Admission, AppliedTip, FinalityWaiters, PeerActivity, SubmitError, TransactionSubmitter};
use crate::http::client_address::{AddressLimiter, limit_by_address};
use crate::http::server::body_timeout;
use crate::observability::{self, HealthCell, Telemetry};
use crate::state::CommittedState;

/// How long a submission with `wait` waits for finality.
pub(crate) const MAX_FINALITY_WAIT: Duration = Duration::from_secs(30);

/// A peer heard from within this window counts as connected.
pub(crate) const PEER_WINDOW: Duration = Duration::from_secs(10);

/// What the API reads and writes.
#[derive(Clone, Debug)]
pub struct NodeApi {
    /// This node's consensus key: its index is its position in the node
    /// set in force (`/v1/status` reads it there).
    pub node_key: commonware_cryptography::ed25519::PublicKey,
    /// The committed ledger state.
    pub state: CommittedState,
    /// Consensus submissions.
    pub submitter: TransactionSubmitter,
    /// The applied tip.
    pub tip: AppliedTip,
    /// Peer liveness.
    pub peers: PeerActivity,
    /// Clients waiting for finality.
    pub waiters: FinalityWaiters,
    /// This node's key shares (counted for `/v1/status`).
    pub shares: crate::state::ShareStore,
    /// `GET /v1/network`: the network's description attested by this
    /// node (made once at start) with the node sets on its ledger.
    pub description: std::sync::Arc<crate::http::description::NetworkDescription>,
}

/// An error as the API returns it.
#[derive(Debug, Serialize)]
pub(crate) struct ApiError {
    /// What went wrong.
    pub error: String,
    #[serde(skip)]
    status: StatusCode,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self { error: error.into(), status }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self)).into_response()
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        let status = match &error {
            SubmitError::Invalid(_) => StatusCode::BAD_REQUEST,
            SubmitError::Refused(Rejection::BudgetSpent { .. }) => StatusCode::TOO_MANY_REQUESTS,
            SubmitError::Refused(Rejection::BadAuthorization(_) | Rejection::NotAllowed(_)) => StatusCode::FORBIDDEN,
            SubmitError::Refused(_) | SubmitError::Busy(MempoolError::SlotTaken(_)) => StatusCode::CONFLICT,
            SubmitError::Busy(MempoolError::Full { .. }) | SubmitError::Halted(_) | SubmitError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        Self::new(status, error.to_string())
    }
}

async fn submit(
    State(api): State<NodeApi>,
    body: Result<Json<SubmitRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SubmitResponse>, ApiError> {
    // 413 over the body limit, 408 for a body slower than the body
    // timeout, 400 or 415 otherwise.
    let Json(request) = body.map_err(|rejection| match body_timeout(&rejection) {
        Some(timeout) => ApiError::new(StatusCode::REQUEST_TIMEOUT, timeout.to_string()),
        None => ApiError::new(rejection.status(), rejection.body_text()),
    })?;
    let transaction = hex::decode(request.transaction.trim_start_matches("0x"))
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "`transaction` is not hex"))?;
    if transaction.len() > MAX_TRANSACTION_LEN {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("transaction is {} bytes, over the limit of {MAX_TRANSACTION_LEN}", transaction.len()),
        ));
    }
    let hash = quorumkey_ledger::transaction_hash(&transaction);
    let waiter = if request.wait {
        Some(api.waiters.register(hash).map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?)
    } else {
        None
    };
    let (_, admission) = api.submitter.submit(Bytes::from(transaction))?;
    let status = match admission {
        Admission::Added => "added",
        Admission::AlreadyPending => "already_pending",
        Admission::AlreadyFinalized => "already_finalized",
    };
    let mut response = SubmitResponse { hash: hex::encode(hash), status: status.into(), height: None, rejection: None };
    if let (Some(waiter), false) = (waiter, admission == Admission::AlreadyFinalized) {
        match tokio::time::timeout(MAX_FINALITY_WAIT, waiter).await {
            Ok(Ok(finality)) => {
                response.status = if finality.rejection.is_some() { "rejected" } else { "finalized" }.into();
                response.height = Some(finality.height);
                response.rejection = finality.rejection.map(|rejection| rejection.to_string());
            }
            Ok(Err(_)) | Err(_) => response.status = "pending".into(),
        }
    }
    Ok(Json(response))
}

async fn policy(State(api): State<NodeApi>) -> Result<Json<PolicyResponse>, ApiError> {
    let unavailable = |e: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e);
    let snapshot = api.state.snapshot().map_err(|e| unavailable(e.to_string()))?;
    let ledger = api.state.ledger();
    let policy = ledger.policy(&snapshot).map_err(|e| unavailable(e.to_string()))?;
    let nonce = ledger.policy_nonce(&snapshot).map_err(|e| unavailable(e.to_string()))?;
    Ok(Json(PolicyResponse { nonce, policy: NetworkPolicyFile::from_policy(&policy) }))
}

async fn epoch(State(api): State<NodeApi>) -> Result<Json<EpochResponse>, ApiError> {
    let unavailable = |e: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e);
    let snapshot = api.state.snapshot().map_err(|e| unavailable(e.to_string()))?;
    let ledger = api.state.ledger();
    let view = ledger.epoch_view(&snapshot);
    let current = view.current().map_err(|e| unavailable(e.to_string()))?;
    let handover = view.handover().map_err(|e| unavailable(e.to_string()))?;
    let height = ledger.height(&snapshot).map_err(|e| unavailable(e.to_string()))?.unwrap_or(0);
    Ok(Json(EpochResponse {
        epoch: current.epoch,
        height,
        nodes: EpochNodeInfo::from_set(&current),
        handover: handover.as_ref().map(HandoverInfo::from_record),
    }))
}

async fn status(State(api): State<NodeApi>) -> Json<StatusResponse> {
    let tip = api.tip.get();
    // The pool counters are informational: a store error reads as zero
    // (the node's health reports the error itself).
    let (total_keys, ready_keys, pending_assignments, epoch, index) = api
        .state
        .read(|view| {
            let index = view
                .node_set()
                .ok()
                .and_then(|set| set.nodes.iter().position(|node| node.consensus_key == api.node_key))
                .and_then(|position| u16::try_from(position + 1).ok())
                .unwrap_or(0);
            (
                view.total_keys().unwrap_or(0),
                view.ready_keys().unwrap_or(0),
                view.pending_assignments().unwrap_or(0),
                view.epoch().unwrap_or(0),
                index,
            )
        })
        .unwrap_or((0, 0, 0, 0, 0));
    Json(StatusResponse {
        index,
        network_id: hex::encode(api.state.ledger().network_id()),
        height: tip.height,
        state_root: hex::encode(tip.state_root),
        mempool_transactions: api.submitter.mempool().len(),
        connected_peers: api.peers.active(wall_clock_ms(), PEER_WINDOW),
        total_keys,
        ready_keys,
        pending_assignments,
        epoch,
        share_epoch: api.shares.share_epoch().unwrap_or(0),
        key_shares: api.shares.key_share_count().unwrap_or(0),
        halted: api.state.halted(),
    })
}

/// The wall clock in milliseconds since the Unix epoch (for peer
/// liveness only; consensus reads its runtime's clock).
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

async fn state_root(State(api): State<NodeApi>, Path(height): Path<u64>) -> Result<Json<StateRootResponse>, ApiError> {
    match api.state.state_root(height) {
        Ok(Some(root)) => Ok(Json(StateRootResponse { height, state_root: hex::encode(root) })),
        Ok(None) => Err(ApiError::new(StatusCode::NOT_FOUND, format!("height {height} is not applied here yet"))),
        Err(error) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())),
    }
}

async fn assignment(
    State(api): State<NodeApi>,
    query: Result<Query<AssignmentQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AssignmentResponse>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text()))?;
    let verifier = VerifierName::new(&query.verifier)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("verifier: {e}")))?;
    let verifier_id = VerifierId::new(&query.verifier_id)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("verifier_id: {e}")))?;
    let internal = |e: &dyn std::fmt::Display| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let snapshot = api.state.snapshot().map_err(|e| internal(&e))?;
    let view = LedgerView::new(api.state.ledger(), &snapshot);
    match view.assignment(&verifier, &verifier_id).map_err(|e| internal(&e))? {
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "no key is assigned to this verifier and verifier_id")),
        Some(Assignment::Pending { sequence }) => Ok(Json(AssignmentResponse {
            status: "pending".into(),
            key_index: None,
            public_key: None,
            sequence: Some(sequence),
        })),
        Some(Assignment::Assigned { key_index }) => {
            let key = view.key(key_index).map_err(|e| internal(&e))?;
            Ok(Json(AssignmentResponse {
                status: "assigned".into(),
                key_index: Some(key_index),
                public_key: key.map(|key| hex::encode(key.public_key)),
                sequence: None,
            }))
        }
    }
}

async fn key(State(api): State<NodeApi>, Path(index): Path<u64>) -> Result<Json<KeyResponse>, ApiError> {
    let internal = |e: &dyn std::fmt::Display| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let snapshot = api.state.snapshot().map_err(|e| internal(&e))?;
    let view = LedgerView::new(api.state.ledger(), &snapshot);
    match view.key(index).map_err(|e| internal(&e))? {
        Some(key) => Ok(Json(KeyResponse {
            key_index: index,
            public_key: hex::encode(key.public_key),
            public_shares: key.public_shares.iter().map(hex::encode).collect(),
        })),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("key {index} is not in the pool (yet)"))),
    }
}

fn verifier_info(name: &VerifierName, record: &quorumkey_ledger::VerifierRecord, with_config: bool) -> VerifierInfo {
    // The ledger checked the configuration when it was registered: its
    // `type` is all a listing needs (no key parsing per entry).
    let config: Option<serde_json::Value> = serde_json::from_slice(&record.config).ok();
    let kind = config.as_ref().and_then(|c| c.get("type")).and_then(serde_json::Value::as_str).unwrap_or("invalid");
    VerifierInfo {
        name: name.as_str().to_owned(),
        kind: kind.to_owned(),
        owner: hex::encode(record.owner),
        enabled: record.enabled,
        nonce: record.nonce,
        config: config.filter(|_| with_config),
    }
}

async fn verifiers(
    State(api): State<NodeApi>,
    query: Result<Query<VerifiersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<VerifiersResponse>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text()))?;
    let limit = query.limit.unwrap_or(MAX_VERIFIERS_PER_PAGE);
    if limit == 0 || limit > MAX_VERIFIERS_PER_PAGE {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("limit must be 1 to {MAX_VERIFIERS_PER_PAGE}")));
    }
    let internal = |e: &dyn std::fmt::Display| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let snapshot = api.state.snapshot().map_err(|e| internal(&e))?;
    let view = LedgerView::new(api.state.ledger(), &snapshot);
    let total = view.verifier_count().map_err(|e| internal(&e))?;
    let mut list = Vec::new();
    for position in query.offset..total.min(query.offset.saturating_add(limit)) {
        if let Some((name, record)) = view.verifier_at(position).map_err(|e| internal(&e))? {
            list.push(verifier_info(&name, &record, false));
        }
    }
    Ok(Json(VerifiersResponse { total, verifiers: list }))
}

async fn verifier(State(api): State<NodeApi>, Path(name): Path<String>) -> Result<Json<VerifierInfo>, ApiError> {
    let name =
        VerifierName::new(&name).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("verifier: {e}")))?;
    let internal = |e: &dyn std::fmt::Display| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let snapshot = api.state.snapshot().map_err(|e| internal(&e))?;
    let view = LedgerView::new(api.state.ledger(), &snapshot);
    match view.verifier(&name).map_err(|e| internal(&e))? {
        Some(record) => Ok(Json(verifier_info(&name, &record, true))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("verifier {} is not registered", name.as_str()))),
    }
}

/// The network's description (the `network.json` shape), with the
/// genesis and this node's attestation: what `quorumkey network
/// client-config` collects from t nodes; and the node sets in force and
/// next on this node's ledger (`node_set`), attested apart, which clients
/// follow from epoch to epoch.
async fn network(State(api): State<NodeApi>) -> Result<Response, ApiError> {
    let description = api
        .description
        .render(&api.state)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], description).into_response())
}

/// The whole API: `/health`, `/metrics`, and `/v1/...` (each `/v1` request
/// limited per client address by `limiter`).
pub fn router(api: NodeApi, health: HealthCell, telemetry: Option<Telemetry>, limiter: AddressLimiter) -> Router {
    let v1 = Router::new()
        .route("/v1/transactions", post(submit))
        .route("/v1/status", get(status))
        .route("/v1/network", get(network))
        .route("/v1/state-roots/{height}", get(state_root))
        .route("/v1/assignment", get(assignment))
        .route("/v1/keys/{index}", get(key))
        .route("/v1/policy", get(policy))
        .route("/v1/epoch", get(epoch))
        .route("/v1/verifiers", get(verifiers))
        .route("/v1/verifiers/{name}", get(verifier))
        // Hex doubles a transaction; leave room for the JSON around it.
        .layer(DefaultBodyLimit::max(2 * MAX_TRANSACTION_LEN + 4096))
        .layer(axum::middleware::from_fn_with_state(limiter, limit_by_address))
        .with_state(api);
    v1.merge(observability::router(health, telemetry))
}
