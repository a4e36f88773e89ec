//! Why a configuration, a key set or a token is refused. Each rejection has
//! its own variant and message; none quotes a token (a bearer credential)
//! or more than a short prefix of any value taken from one.

use thiserror::Error;

/// At most this many characters of a value taken from a token appear in
/// an error message.
const QUOTE_LEN: usize = 64;

/// A value from a token, shortened for an error message.
pub(crate) fn quote(value: &str) -> String {
    let mut out: String = value.chars().take(QUOTE_LEN).collect();
    if out.len() < value.len() {
        out.push('…');
    }
    out
}

/// A verifier configuration that cannot be registered.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Not JSON of the expected shape.
    #[error("verifier configuration is not valid: {0}")]
    Json(String),
    /// A field with a value outside its rules.
    #[error("verifier configuration field {field} {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// A JWKS document that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum JwksError {
    /// Larger than we read.
    #[error("JWKS document of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON.
    #[error("JWKS document is not JSON: {0}")]
    Json(String),
    /// No `keys` array.
    #[error("JWKS document has no \"keys\" array")]
    NoKeysArray,
    /// Too many keys.
    #[error("JWKS document has {count} keys, more than {max}")]
    TooManyKeys {
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a token does not pass its verifier.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    /// Longer than any token we accept.
    #[error("token of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not three dot-separated parts.
    #[error("token is not a JWT: expected three dot-separated parts")]
    NotAJwt,
    /// A part is not base64url.
    #[error("token {part} is not valid base64url")]
    Base64 {
        /// `header`, `payload` or `signature`.
        part: &'static str,
    },
    /// A part is spelled otherwise than the one way accepted (see
    /// `canonical`): another spelling of the same token would be another
    /// token.
    #[error("token {part} is not in canonical form: {reason} (a token is accepted in one spelling only)")]
    NonCanonical {
        /// `header`, `payload` or `signature`.
        part: &'static str,
        /// What is not canonical.
        reason: &'static str,
    },
    /// A part is not a JSON object.
    #[error("token {part} is not a JSON object")]
    Json {
        /// `header` or `payload`.
        part: &'static str,
    },
    /// `alg: none`.
    #[error("token algorithm \"none\" is refused: tokens must be signed")]
    AlgNone,
    /// An HMAC algorithm (a public key must never serve as a secret).
    #[error("token algorithm {0} (HMAC) is refused: only public-key signatures (RS256, ES256, EdDSA)")]
    HmacRefused(String),
    /// An algorithm we do not verify.
    #[error("token algorithm {0} is not supported (RS256, ES256, EdDSA)")]
    UnsupportedAlgorithm(String),
    /// No key with the token's `kid`.
    #[error("no verification key with kid {kid}")]
    UnknownKey {
        /// The token's `kid` (or `<none>`).
        kid: String,
    },
    /// The token's header names another algorithm than its key's.
    #[error("token algorithm {token} does not match its key's algorithm {key}")]
    AlgorithmMismatch {
        /// The token's.
        token: String,
        /// The key's.
        key: String,
    },
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// Another issuer.
    #[error("token issuer {got} is not the verifier's issuer {expected}")]
    WrongIssuer {
        /// The verifier's.
        expected: String,
        /// The token's (shortened).
        got: String,
    },
    /// None of the verifier's audiences.
    #[error("token audience {got} is not one of the verifier's client ids")]
    WrongAudience {
        /// The token's (shortened).
        got: String,
    },
    /// Past `exp` (plus skew).
    #[error("token expired at {exp} (now {now}, skew {skew} s)")]
    Expired {
        /// Its `exp`.
        exp: u64,
        /// The time of the check.
        now: u64,
        /// The allowed skew.
        skew: u64,
    },
    /// Before `nbf` or `iat` (minus skew).
    #[error("token is not valid yet: {claim} is {at}, now {now} (skew {skew} s)")]
    NotYetValid {
        /// `nbf` or `iat`.
        claim: &'static str,
        /// Its value.
        at: u64,
        /// The time of the check.
        now: u64,
        /// The allowed skew.
        skew: u64,
    },
    /// Issued longer ago than the verifier allows.
    #[error("token was issued at {iat}, more than {max_age} s before now ({now})")]
    TooOld {
        /// Its `iat`.
        iat: u64,
        /// The verifier's maximum age.
        max_age: u64,
        /// The time of the check.
        now: u64,
    },
    /// A claim the check needs is absent.
    #[error("token has no {0} claim")]
    MissingClaim(String),
    /// A claim has the wrong type or an unusable value.
    #[error("token claim {claim} is invalid: {reason}")]
    InvalidClaim {
        /// The claim.
        claim: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A required claim has another value.
    #[error("token claim {claim} does not have the required value {expected}")]
    ClaimMismatch {
        /// The claim.
        claim: String,
        /// The required value.
        expected: String,
    },
}
