//! The one error type of this crate.

use thiserror::Error;

/// Why a cryptographic operation or a parse was refused.
///
/// Every variant is safe to show to a peer: none carries secret material.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// The input is not hexadecimal (no `0x` prefix is accepted).
    #[error("invalid hex in {what}")]
    InvalidHex {
        /// What was being parsed.
        what: &'static str,
    },
    /// The input is not valid base64.
    #[error("invalid base64 in {what}")]
    InvalidBase64 {
        /// What was being parsed.
        what: &'static str,
    },
    /// The input has the wrong length.
    #[error("{what} has length {actual}, expected {expected}")]
    InvalidLength {
        /// What was being parsed.
        what: &'static str,
        /// The accepted length, in words.
        expected: &'static str,
        /// The length that was given.
        actual: usize,
    },
    /// A scalar is not below the secp256k1 group order.
    #[error("{what} is not below the secp256k1 group order")]
    ScalarOutOfRange {
        /// What was being parsed.
        what: &'static str,
    },
    /// A scalar is zero where zero is not allowed.
    #[error("{what} must not be zero")]
    ZeroScalar {
        /// What was being parsed.
        what: &'static str,
    },
    /// Bytes that do not encode a point on secp256k1.
    #[error("{what} is not a point on secp256k1")]
    PointNotOnCurve {
        /// What was being parsed.
        what: &'static str,
    },
    /// The point at infinity where it is not allowed.
    #[error("{what} must not be the identity point")]
    IdentityPoint {
        /// What was being parsed.
        what: &'static str,
    },
    /// A threshold or share count that cannot work.
    #[error("invalid sharing parameters: {0}")]
    InvalidSharingParameters(&'static str),
    /// A share index of zero (index 0 is where the secret lives).
    #[error("share index must not be zero")]
    ZeroShareIndex,
    /// Two shares with the same index were given for interpolation.
    #[error("duplicate share index {0}")]
    DuplicateShareIndex(u32),
    /// A share that does not match its commitment.
    #[error("share for index {index} does not match its commitment")]
    InvalidShare {
        /// The share's index.
        index: u32,
    },
    /// A batch of shares of which at least one does not match its commitment.
    #[error("batch verification failed: at least one share does not match its commitment")]
    BatchVerificationFailed,
    /// Interpolation was asked of an empty set of shares.
    #[error("no shares given")]
    NoShares,
    /// Two lists that must have the same length do not.
    #[error("length mismatch: {0}")]
    LengthMismatch(&'static str),
    /// An ECDSA signature that does not verify, or cannot be parsed.
    #[error("invalid signature: {0}")]
    InvalidSignature(&'static str),
    /// An ECIES ciphertext whose MAC does not match: tampered, or for another key.
    #[error("ECIES MAC mismatch")]
    MacMismatch,
    /// An ECIES ciphertext whose MAC matched but whose padding is wrong.
    #[error("ECIES decryption failed: bad padding")]
    BadPadding,
    /// An ECIES mode other than `AES256`.
    #[error("unsupported ECIES mode {0:?}, expected \"AES256\"")]
    UnsupportedMode(String),
    /// A zero-knowledge proof that does not verify.
    #[error("invalid proof: {0}")]
    InvalidProof(&'static str),
}

/// Result with [`CryptoError`].
pub type Result<T> = std::result::Result<T, CryptoError>;
