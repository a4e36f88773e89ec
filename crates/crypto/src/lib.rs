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
//!
//! A share's life in a login, end to end:
//!
//! ```
//! use quorumkey_crypto::{ecies, group, hash, random, shamir};
//! use quorumkey_crypto::k256::elliptic_curve::Generate;
//!
//! let mut rng = random::os_rng();
//! // The nodes hold shares of a key (t = 3 of n = 5).
//! let key = group::Scalar::generate_from_rng(&mut rng);
//! let shares = shamir::split(key, shamir::majority_threshold(5), 5, &mut rng)?;
//! // The client commits to its token and makes a temporary key.
//! assert_eq!(hash::token_commitment_hex("dummy.id.token").len(), 64);
//! let temporary = group::NonZeroScalar::generate_from_rng(&mut rng);
//! let temporary_public = group::PublicKey::from_secret_scalar(&temporary);
//! // Each node encrypts its share (always 32 bytes) to the temporary key.
//! let mut received = Vec::new();
//! for share in &shares[1..4] {
//!     let sealed = ecies::encrypt(&temporary_public, &group::scalar_to_bytes(&share.value), &mut rng);
//!     let wire = ecies::TorusEncryptedShare::from(&sealed);
//!     // The client parses, decrypts and interpolates.
//!     let opened = ecies::decrypt(&temporary, &ecies::EciesCiphertext::try_from(&wire)?)?;
//!     received.push(shamir::Share { index: share.index, value: group::scalar_from_bytes(&opened)? });
//! }
//! assert_eq!(shamir::reconstruct_secret(&received)?, key);
//! # Ok::<(), quorumkey_crypto::CryptoError>(())
//! ```
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
