//! Pure secp256k1 cryptography for quorumkey, with no I/O: everything here
//! is a function of its inputs (and of an RNG the caller passes in).
//!
//! - [`group`]: scalars and points, strict parsing, the second generator `H`.
//! - [`shamir`]: Shamir sharing and Lagrange interpolation at any point.
//! - [`vss`]: Feldman and Pedersen commitments, share checks, batch checks.
//! - [`ecies`]: ECIES compatible with `@toruslabs/eccrypto`, and the Torus
//!   `Share`/`Metadata` JSON.
//! - [`hash`]: keccak256 and token commitments.
//! - [`signature`]: recoverable ECDSA over keccak256 in the Torus format.
//! - [`address`]: Ethereum addresses with EIP-55 checksums.
//! - [`transcript`] and [`dleq`]: Fiat-Shamir transcripts and Chaum-Pedersen
//!   proofs.
//! - [`random`]: the operating system's RNG.
//!
//! No function panics on malformed input: every parse returns a
//! [`CryptoError`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod address;
pub mod dleq;
pub mod ecies;
pub mod error;
pub mod group;
pub mod hash;
pub mod random;
pub mod shamir;
pub mod signature;
pub mod transcript;
pub mod vss;

pub use error::{CryptoError, Result};
pub use k256;

#[cfg(test)]
mod vectors;
