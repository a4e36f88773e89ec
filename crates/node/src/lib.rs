//! The quorumkey node: the I/O shell around the pure protocol crates
//! (`quorumkey-ledger`, `quorumkey-login`, `quorumkey-participant`,
//! `quorumkey-verifier`). It loads its configuration and keys and wires
//! the ledger to the consensus engine, storage, identity providers and
//! HTTP.
//!
//! - [`run`]: one node as a process (`quorumkey node run`): starts
//!   everything below and stops it on a signal.
//! - [`addresses`]: what a node advertises (`p2p_address`, `rpc_url`)
//!   and where it binds.
//! - [`config`]: `network.toml` and `node.toml`, and `network init`.
//! - [`enrollment`]: operators' own keys (`node keygen`) and the genesis
//!   from their public enrollments (`network genesis`).
//! - [`identity`]: the node's secret keys, one per role, in 0600 files.
//! - [`kek`]: the key-encryption key of the node's shares at rest.
//! - [`consensus`]: simplex consensus behind a small interface (submit a
//!   transaction, receive finalized blocks), the mempool, gossip.
//! - [`applier`]: applies finalized blocks exactly once; halts on
//!   divergence.
//! - [`participant_driver`]: runs the pure DKG participant after each
//!   applied block and carries out its actions.
//! - [`http`]: the HTTP surface: the server, per-address limits, `/v1`
//!   and `/jrpc`.
//! - [`token_verifier`], [`jwks_cache`], [`provider_http`]: ID tokens
//!   checked against identity providers (public addresses only, no
//!   redirects, bounded answers, cached keys and answers).
//! - [`state`]: narrow handles to what the node keeps: the committed
//!   ledger state (reads), the halt flag, this node's key shares.
//! - [`login_store`]: the actor that owns the login records' writes: group
//!   commit (one fsync for concurrent commitments), checkpoints, sweeps.
//! - [`housekeeping`]: the task that owns the periodic chores (sweeps,
//!   idle entries, the peers gauge).
//! - [`script_runner`]: verifier scripts, compiled once from the ledger,
//!   run off the async workers within their budget.
//! - [`pending_records`]: caps on unexpired login records per verifier,
//!   client address and node.
//! - [`observability`]: health and Prometheus metrics.

pub mod addresses;
pub mod applier;
pub mod config;
pub mod consensus;
pub mod enrollment;
pub mod housekeeping;
pub mod http;
pub mod identity;
pub mod jwks_cache;
pub mod kek;
pub mod login_store;
pub mod observability;
pub mod participant_driver;
pub mod peer_directory;
pub mod pending_records;
pub mod provider_http;
pub mod run;
pub mod script_runner;
pub mod state;
pub mod token_verifier;
