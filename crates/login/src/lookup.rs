//! `VerifierLookupRequest` and `KeyAssign`: the parameters, and the key
//! list both answer with. The Torus client compares whole lookup results
//! across nodes, so a result holds nothing node-specific and every field is
//! formatted one way.

use quorumkey_crypto::address::eth_address;
use quorumkey_crypto::group::{PublicKey, public_key_to_xy_hex};
use quorumkey_ledger::{VerifierId, VerifierName};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{LoginError, object, quote, string_field};

/// `{"verifier": ..., "verifier_id": ...}`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupParams {
    /// The verifier.
    pub verifier: VerifierName,
    /// The user.
    pub verifier_id: VerifierId,
}

impl LookupParams {
    /// Parses the params of `VerifierLookupRequest` or `KeyAssign` (other
    /// fields, which newer clients add, are ignored).
    pub fn parse(params: &Value) -> Result<Self, LoginError> {
        let params = object(params, "params")?;
        Ok(Self {
            verifier: verifier_name(string_field(params, "verifier")?, "verifier")?,
            verifier_id: verifier_id(string_field(params, "verifier_id")?)?,
        })
    }
}

/// Checks a verifier name from a request.
pub fn verifier_name(name: &str, field: &'static str) -> Result<VerifierName, LoginError> {
    VerifierName::new(name).map_err(|e| LoginError::InvalidParams(format!("`{field}` {:?}: {e}", quote(name))))
}

/// Checks a verifier_id from a request.
pub fn verifier_id(id: &str) -> Result<VerifierId, LoginError> {
    VerifierId::new(id).map_err(|e| LoginError::InvalidParams(format!("`verifier_id`: {e}")))
}

/// One key in a lookup result.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LookupKey {
    /// The key's index in the pool, lowercase hex without leading zeros.
    pub key_index: String,
    /// X of the public key, 64 lowercase hex digits.
    #[serde(rename = "pub_key_X")]
    pub pub_key_x: String,
    /// Y of the public key, 64 lowercase hex digits.
    #[serde(rename = "pub_key_Y")]
    pub pub_key_y: String,
    /// The Ethereum address of the public key, EIP-55 checksummed.
    pub address: String,
}

impl LookupKey {
    /// The entry of key `key_index` with public key `public_key`.
    pub fn new(key_index: u64, public_key: &PublicKey) -> Self {
        let (pub_key_x, pub_key_y) = public_key_to_xy_hex(public_key);
        Self { key_index: format!("{key_index:x}"), pub_key_x, pub_key_y, address: eth_address(public_key) }
    }
}

/// `{"keys": [...]}`: the answer to a lookup and to `KeyAssign`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLookupResult {
    /// Exactly one key (a pair has one key).
    pub keys: Vec<LookupKey>,
}
