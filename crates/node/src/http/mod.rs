//! The node's HTTP surface, one listener for all of it:
//!
//! - [`server`]: the accept loop: connection caps (in total and per
//!   address), header, body and idle timeouts, refused bodies drained.
//! - [`client_address`]: who a request is from (IPv6 by /64,
//!   `X-Forwarded-For` only from trusted proxies) and the per-address rate
//!   limit that `/v1` and `/jrpc` share.
//! - [`v1`]: the operators' and tools' API (`/v1/...`, `/health`,
//!   `/metrics`); its wire formats are `quorumkey_login::node_api`.
//! - [`description`]: what `GET /v1/network` serves (the network's
//!   description and the node sets on the ledger, attested).
//! - [`jrpc`]: the clients' JSON-RPC API (`POST /jrpc`, torus.js
//!   compatible); its messages and checks are the pure `quorumkey_login`.

use std::sync::Arc;

use axum::Router;

use crate::observability::{HealthCell, Telemetry};

pub mod client_address;
pub mod description;
pub mod jrpc;
pub mod server;
pub mod v1;

/// Every route the node serves: `/v1/...`, `/health`, `/metrics` and
/// `/jrpc`, with `/v1` sharing the JSON-RPC service's per-address limit.
pub fn router(
    api: v1::NodeApi,
    health: HealthCell,
    telemetry: Option<Telemetry>,
    rpc: Arc<jrpc::RpcService>,
) -> Router {
    v1::router(api, health, telemetry, rpc.address_limiter()).merge(jrpc::router(rpc))
}
