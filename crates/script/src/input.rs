//! What a script run sees: the sub-tokens the node verified (in the order
//! the login presented them), the login's evidence, and two times.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One sub-token, as the node's own verifier checked it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubTokenInput {
    /// The sub-verifier's name in the script verifier's configuration.
    pub name: String,
    /// The user the sub-verifier named (its `verifier_id_claim`, or the
    /// introspection answer's user id, normalized as it says).
    pub verifier_id: String,
    /// The token's claims (a JWT's payload; an introspection answer).
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// Everything one run of a script sees.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptInput {
    /// The verified sub-tokens, in the order the login presented them.
    #[serde(default)]
    pub sub_tokens: Vec<SubTokenInput>,
    /// The login's evidence besides tokens (a wallet's signature, a
    /// passkey assertion), as the client sent it: field name to value.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// The earliest issue time among the sub-tokens (Unix seconds; the
    /// same on every node).
    #[serde(default)]
    pub issued_at: u64,
    /// This node's clock (Unix seconds; differs between nodes by their
    /// clocks' skew).
    #[serde(default)]
    pub now: u64,
}

/// A JSON value as a script reads it: a string's contents (UTF-8, no
/// quotes), anything else as compact JSON text.
pub(crate) fn value_bytes(value: &serde_json::Value) -> Vec<u8> {
    match value {
        serde_json::Value::String(text) => text.as_bytes().to_vec(),
        // Serializing a JSON value cannot fail.
        other => serde_json::to_vec(other).unwrap_or_default(),
    }
}
