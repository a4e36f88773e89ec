//! The quorumkey node: the I/O shell around the pure protocol crates. It
//! loads its configuration and keys, and (as it is built) wires the ledger
//! to the consensus engine, storage and the network.
//!
//! - [`applier`]: applies finalized blocks exactly once; halts on divergence.
//! - [`consensus`]: simplex consensus, the mempool, finalized blocks.
//! - [`config`]: `network.toml` and `node.toml`, and `network init`.
//! - [`identity`]: the node's secret keys, one per role, in 0600 files.
//! - [`observability`]: `GET /health` and Prometheus `GET /metrics`.

pub mod applier;
pub mod config;
pub mod consensus;
pub mod identity;
pub mod observability;
