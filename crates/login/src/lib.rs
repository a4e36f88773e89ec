//! The login protocol as pure functions: no I/O, no clock, no storage. The
//! node passes in the request, the time, its records and its keys, and gets
//! back what to store and what to answer; a client can build the same
//! messages from the same types.
//!
//! - [`rpc`]: the JSON-RPC 2.0 envelope and error objects.
//! - [`error`]: every way a login request fails, with its JSON-RPC error.
//! - [`lookup`]: `VerifierLookupRequest` and `KeyAssign` parameters and the
//!   key list both answer with.
//! - [`key_assign`]: the signer's authorization of a `KeyAssign`.
//! - [`commitment`]: `CommitmentRequest`: checks, the signed data string and
//!   the records a node keeps.
//! - [`records`]: every record a node keeps about logins (commitments,
//!   sub-tokens, token nullifiers), their keys and lifetimes.
//! - [`reveal`]: `ShareRequest`: parsing and the node-signature rule.
//! - [`decision`]: the whole reveal decision as one function.
//! - [`share`]: the encrypted share a node returns.
//! - [`network`]: `network.json`, what a client needs to know of a network.
//! - [`node_api`]: the wire formats of a node's `/v1` API (status,
//!   transactions, assignments, keys, verifiers, the policy).
//!
//! ## Commit, then reveal
//!
//! A client first sends `keccak256(token)` and a temporary public key to
//! every node (`CommitmentRequest`). Each node records, once and durably,
//! that this commitment belongs to this verifier and that temporary key,
//! and signs the pair. Only then does the client reveal the token
//! (`ShareRequest`) with the signatures it collected. A node answers only
//! if at least ⌈(n + t) / 2⌉ distinct nodes signed the same commitment and
//! the same temporary key *and* that key is the one it recorded itself; it
//! encrypts its share to the key it recorded, never to one taken from the
//! request. Any two sets of ⌈(n + t) / 2⌉ nodes share `t` nodes, so even
//! with `t − 1` nodes that sign anything, no second key can gather a
//! quorum once the user's has: nobody who sees the commitment or the token
//! collects `t` shares it can decrypt. A token is accepted in one spelling
//! only and each token (each sub-token of an aggregate) serves one login;
//! the records outlive every moment a verifier could accept the token.
//! `docs/api.md` has the arguments.

pub mod commitment;
pub mod decision;
pub mod error;
pub mod key_assign;
pub mod lookup;
pub mod network;
pub mod node_api;
pub mod records;
pub mod reveal;
pub mod rpc;
pub mod share;

pub use commitment::{CommitmentRecord, CommitmentRequest, CommitmentResult};
pub use decision::{CheckedToken, Grant, KeyFacts, RevealFacts, RevealStep, decide};
pub use error::LoginError;
pub use key_assign::{KeyAssignAuthorization, SignerRequest};
pub use lookup::{KeyLookupResult, LookupKey, LookupParams};
pub use records::{LoginRecord, NullifierRecord, RecordWrite, SubTokenRecord};
pub use reveal::{
    NodeKey, NodeSetKeys, ShareRequest, SignaturePolicy, check_commitment_signature, required_signatures,
};
pub use rpc::{Method, RpcError, RpcRequest, RpcResponse};
pub use share::{ShareKey, ShareRequestResult};

/// The field separator in signed strings (ASCII 0x1C, as the Torus nodes
/// use it).
pub const DELIMITER: char = '\u{1c}';

/// Reads a string field of a JSON object.
pub(crate) fn string_field<'a>(
    object: &'a serde_json::Map<String, serde_json::Value>,
    name: &'static str,
) -> Result<&'a str, LoginError> {
    match object.get(name) {
        Some(serde_json::Value::String(value)) => Ok(value),
        Some(other) => Err(LoginError::InvalidParams(format!("`{name}` must be a string, not {}", kind_of(other)))),
        None => Err(LoginError::InvalidParams(format!("`{name}` is missing"))),
    }
}

/// The params (or an item) as a JSON object.
pub(crate) fn object<'a>(
    value: &'a serde_json::Value,
    what: &'static str,
) -> Result<&'a serde_json::Map<String, serde_json::Value>, LoginError> {
    value
        .as_object()
        .ok_or_else(|| LoginError::InvalidParams(format!("{what} must be an object, not {}", kind_of(value))))
}

/// A JSON value's type, for error messages.
pub(crate) fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The start of untrusted text, for an error message: at most 64
/// characters, control characters replaced.
pub(crate) fn quote(text: &str) -> String {
    let mut shown: String = text.chars().take(64).map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect();
    if text.chars().nth(64).is_some() {
        shown.push('…');
    }
    shown
}

/// Parses exactly 64 hex digits (either case) into 32 bytes.
pub(crate) fn hex32(what: &'static str, text: &str) -> Result<[u8; 32], LoginError> {
    let mut out = [0u8; 32];
    if text.len() != 64 || hex::decode_to_slice(text, &mut out).is_err() {
        return Err(LoginError::InvalidParams(format!("`{what}` must be 64 hex digits, got {:?}", quote(text))));
    }
    Ok(out)
}
