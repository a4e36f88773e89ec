//! Every way a login request fails, and the JSON-RPC error each becomes.
//! The texts are deterministic (no times, no node-specific values) where
//! the Torus client compares errors across nodes.

use thiserror::Error;

use crate::rpc::{INTERNAL_ERROR, INVALID_PARAMS, NOT_IN_NODE_SET, RATE_LIMITED, RpcError, UNAUTHORIZED, UNAVAILABLE};

/// The exact text the Torus client looks for before it runs `KeyAssign`.
pub const NOT_ASSIGNED: &str = "Verifier + VerifierID has not yet been assigned";

/// Why a login request was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum LoginError {
    /// The parameters are malformed.
    #[error("{0}")]
    InvalidParams(String),
    /// No key is assigned to the pair yet (or it waits for the pool).
    #[error("{NOT_ASSIGNED}")]
    NotAssigned,
    /// No such verifier on this network (the Torus client recognizes
    /// "Verifier not supported").
    #[error("Verifier not supported: {0} is not registered on this network")]
    UnknownVerifier(String),
    /// The verifier's owner disabled it.
    #[error("Verifier not supported: {0} is disabled by its owner")]
    DisabledVerifier(String),
    /// A `KeyAssign` without a valid signer authorization on a node that
    /// requires one.
    #[error("KeyAssign is not authorized: {0}")]
    KeyAssignUnauthorized(String),
    /// This node already signed this commitment for another temporary key.
    #[error(
        "Duplicate token found: this node already signed this token commitment for another temporary key; log in again with a fresh token"
    )]
    DuplicateCommitment,
    /// A sub-token of this aggregate commitment is bound to another login
    /// already.
    #[error(
        "Duplicate token found: a sub-token of this aggregate login is already committed for another login; log in again with fresh tokens"
    )]
    DuplicateSubToken,
    /// A `ShareRequest` for a commitment this node never signed.
    #[error("this node has no commitment for this token; send CommitmentRequest to the nodes first")]
    NoCommitment,
    /// Too few usable node signatures.
    #[error("{valid} usable node signatures on this commitment and temporary key, {required} needed{}", problems_text(.problems))]
    NotEnoughSignatures {
        /// Valid, distinct, fresh signatures on the recorded key.
        valid: usize,
        /// How many are needed.
        required: usize,
        /// Why the other entries did not count.
        problems: Vec<String>,
    },
    /// `keccak256(idtoken)` is not a commitment this node signed, or an
    /// aggregate's token does not bind its sub-tokens.
    #[error("the id token does not match its commitment: {0}")]
    CommitmentMismatch(String),
    /// The token serves another login already: its commitment was signed
    /// for another verifier or as part of another login, or (whatever its
    /// spelling) it was revealed for another commitment.
    #[error("this token already serves another login ({0}); a token serves one login, get a fresh token")]
    TokenUsed(&'static str),
    /// The verifier refused the token.
    #[error("the token is not valid for verifier {verifier}: {reason}")]
    TokenRejected {
        /// The verifier.
        verifier: String,
        /// Why.
        reason: String,
    },
    /// The token is valid but names another user.
    #[error("the token is for another verifier_id than the request's")]
    WrongUser,
    /// The token could stay acceptable after this node forgets the
    /// commitment (the verifier's window grew since the commitment).
    #[error(
        "the token stays acceptable longer than this node keeps its commitment (the verifier's settings changed); log in again with a fresh token"
    )]
    OutlivesCommitment,
    /// This node is not in the node set in force (it was removed, or not
    /// yet added): it signs no commitment and serves no share.
    #[error(
        "this node is not in the node set in force (epoch {epoch}); the network's current nodes are at GET /v1/network"
    )]
    NotInNodeSet {
        /// The epoch in force on this node's ledger.
        epoch: u64,
    },
    /// The node cannot serve the request now.
    #[error("{0}")]
    Unavailable(String),
    /// Too many requests.
    #[error("{0}")]
    RateLimited(String),
    /// The node failed.
    #[error("{0}")]
    Internal(String),
}

fn problems_text(problems: &[String]) -> String {
    if problems.is_empty() { String::new() } else { format!(" ({})", problems.join("; ")) }
}

impl LoginError {
    /// The JSON-RPC error object.
    pub fn to_rpc(&self) -> RpcError {
        let (code, message) = match self {
            Self::InvalidParams(_) | Self::NotAssigned | Self::UnknownVerifier(_) | Self::DisabledVerifier(_) => {
                (INVALID_PARAMS, "Input Error")
            }
            Self::KeyAssignUnauthorized(_)
            | Self::DuplicateCommitment
            | Self::DuplicateSubToken
            | Self::NoCommitment
            | Self::NotEnoughSignatures { .. }
            | Self::CommitmentMismatch(_)
            | Self::TokenUsed(_)
            | Self::TokenRejected { .. }
            | Self::WrongUser
            | Self::OutlivesCommitment => (UNAUTHORIZED, "Unauthorized"),
            Self::NotInNodeSet { .. } => (NOT_IN_NODE_SET, "Not in node set"),
            Self::Unavailable(_) => (UNAVAILABLE, "Unavailable"),
            Self::RateLimited(_) => (RATE_LIMITED, "Rate limited"),
            Self::Internal(_) => (INTERNAL_ERROR, "Internal error"),
        };
        RpcError::new(code, message, self.to_string())
    }
}
