//! The quorumkey node: the I/O shell around the pure protocol crates. It
//! loads its configuration and keys, and (as it is built) wires the ledger
//! to the consensus engine, storage and the network.
//!
//! - [`api`]: the HTTP API (transactions, status, assignments, health).
//! - [`api_client`]: a typed client of that API.
//! - [`applier`]: applies finalized blocks exactly once; halts on divergence.
//! - [`client_address`]: clients' addresses for per-address limits (IPv6
//!   by /64, `X-Forwarded-For` from trusted proxies), the per-address rate
//!   limit.
//! - [`consensus`]: simplex consensus, the mempool, finalized blocks.
//! - [`config`]: `network.toml` and `node.toml`, and `network init`.
//! - [`devnet`]: a supervised local network of node processes.
//! - [`http_server`]: the HTTP server: connection caps, header, body and
//!   idle timeouts, refused bodies drained.
//! - [`identity`]: the node's secret keys, one per role, in 0600 files.
//! - [`kek`]: the key-encryption key of the node's shares at rest.
//! - [`login_records`]: group commit of login records (one fsync for
//!   concurrent commitments).
//! - [`observability`]: `GET /health` and Prometheus `GET /metrics`.
//! - [`provider_http`]: requests to identity providers: public addresses
//!   only (checked after DNS resolution), no redirects, bounded answers.
//! - [`pending_records`]: caps on unexpired login records per verifier,
//!   client address and node.
//! - [`run`]: one node as a process (`quorumkey node run`).

pub mod api;
pub mod api_client;
pub mod applier;
pub mod auxiliary;
pub mod client_address;
pub mod config;
pub mod consensus;
pub mod dev_issuer;
pub mod devnet;
pub mod http_server;
pub mod identity;
pub mod jwks_cache;
pub mod kek;
pub mod login_records;
pub mod observability;
pub mod participant;
pub mod participant_driver;
pub mod pending_records;
pub mod policy_admin;
pub mod provider_http;
pub mod rpc;
pub mod run;
pub mod token_verifier;
pub mod verifier_admin;
