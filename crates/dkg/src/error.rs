//! The error type of this crate.

use quorumkey_crypto::CryptoError;
use thiserror::Error;

/// Why a DKG operation was refused. No variant carries secret material.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DkgError {
    /// Batch parameters that cannot work.
    #[error("invalid DKG parameters: {0}")]
    InvalidParameters(&'static str),
    /// A message whose shape is wrong (lengths, counts, encodings).
    #[error("malformed DKG message: {0}")]
    Malformed(&'static str),
    /// A proof that does not verify.
    #[error("DKG proof does not verify: {0}")]
    InvalidProof(&'static str),
    /// A lower-level parse or arithmetic failure.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}
