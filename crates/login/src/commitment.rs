//! `CommitmentRequest`: the checks, the string a node signs, and the record
//! it keeps.
//!
//! A node signs `mug00 ␜ commitment ␜ temppubx ␜ temppuby ␜ verifier ␜ time`
//! (the Torus format: recoverable ECDSA over keccak256, 130 hex digits) and
//! records, durably and once, that this (verifier, commitment) belongs to
//! that temporary key. A repeated request with the same key gets the stored
//! answer again (clients retry); one with another key is refused.

use quorumkey_crypto::group::{PublicKey, public_key_from_xy_hex, public_key_to_uncompressed, public_key_to_xy_hex};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::signature::RecoverableSignature;
use quorumkey_ledger::VerifierName;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::lookup::verifier_name;
use crate::{DELIMITER, LoginError, hex32, object, quote, string_field};

/// The only message prefix (the Torus protocol's).
pub const MESSAGE_PREFIX: &str = "mug00";

/// After the verifier's acceptance window, a record is kept this much
/// longer: twice the largest clock skew a verifier may allow (a token's
/// `iat` may be ahead of this node's clock, and its check allows skew),
/// plus ten minutes.
pub const RECORD_MARGIN_SECS: u64 = 2 * 600 + 600;

/// A checked `CommitmentRequest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitmentRequest {
    /// The verifier.
    pub verifier: VerifierName,
    /// `keccak256(id token)`.
    pub commitment: [u8; 32],
    /// The client's temporary public key.
    pub temp_public: PublicKey,
    /// X as the client sent it (it goes into the signed string as is).
    pub temp_x: String,
    /// Y as the client sent it.
    pub temp_y: String,
}

impl CommitmentRequest {
    /// Parses and checks the params: the `mug00` prefix, a 64-hex-digit
    /// commitment, a temporary key on the curve, a valid verifier name.
    /// Other fields (newer clients add some) are ignored.
    pub fn parse(params: &Value) -> Result<Self, LoginError> {
        let params = object(params, "params")?;
        let prefix = string_field(params, "messageprefix")?;
        if prefix != MESSAGE_PREFIX {
            return Err(LoginError::InvalidParams(format!(
                "`messageprefix` must be \"{MESSAGE_PREFIX}\", got {:?}",
                quote(prefix)
            )));
        }
        let commitment = hex32("tokencommitment", string_field(params, "tokencommitment")?)?;
        let temp_x = string_field(params, "temppubx")?;
        let temp_y = string_field(params, "temppuby")?;
        let temp_public = public_key_from_xy_hex(temp_x, temp_y)
            .map_err(|e| LoginError::InvalidParams(format!("`temppubx`/`temppuby`: {e}")))?;
        let verifier = verifier_name(string_field(params, "verifieridentifier")?, "verifieridentifier")?;
        Ok(Self { verifier, commitment, temp_public, temp_x: temp_x.to_owned(), temp_y: temp_y.to_owned() })
    }

    /// The key of this commitment's record: the token commitment alone,
    /// so a token is bound to one verifier and one temporary key at most.
    pub fn record_key(&self) -> Vec<u8> {
        record_key(&self.commitment)
    }

    /// The string a node signs at Unix time `now`.
    pub fn signed_data(&self, now: u64) -> String {
        [
            MESSAGE_PREFIX,
            &hex::encode(self.commitment),
            &self.temp_x,
            &self.temp_y,
            self.verifier.as_str(),
            &now.to_string(),
        ]
        .join(&DELIMITER.to_string())
    }

    /// Signs the commitment at Unix time `now` and makes the record to keep
    /// until `now + acceptance_window_secs + RECORD_MARGIN_SECS` (the
    /// verifier's window: see `VerifierConfig::acceptance_window_secs`).
    pub fn sign(&self, node_key: &SigningKey, now: u64, acceptance_window_secs: u64) -> CommitmentRecord {
        let data = self.signed_data(now);
        let signature = RecoverableSignature::sign_keccak(node_key, data.as_bytes()).to_torus_hex();
        CommitmentRecord {
            verifier: self.verifier.as_str().to_owned(),
            temp_public: hex::encode(public_key_to_uncompressed(&self.temp_public)),
            created_at: now,
            expires_at: now.saturating_add(acceptance_window_secs).saturating_add(RECORD_MARGIN_SECS),
            signature,
            data,
        }
    }
}

/// The key of the record of a token commitment: the commitment itself.
/// One record per token makes it the token's nullifier too: a token can be
/// bound to one (verifier, temporary key) and so serve one login.
pub fn record_key(commitment: &[u8; 32]) -> Vec<u8> {
    commitment.to_vec()
}

/// What a node keeps for a commitment it signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentRecord {
    /// The verifier it was signed for.
    pub verifier: String,
    /// The temporary key it is bound to, uncompressed, hex.
    pub temp_public: String,
    /// When it was signed (Unix seconds).
    pub created_at: u64,
    /// When it may be forgotten: after every moment the token can be
    /// accepted.
    pub expires_at: u64,
    /// The signature, as returned.
    pub signature: String,
    /// The signed string, as returned.
    pub data: String,
}

impl CommitmentRecord {
    /// The temporary key it is bound to.
    pub fn temp_public(&self) -> Result<PublicKey, LoginError> {
        quorumkey_crypto::group::public_key_from_hex("recorded temporary key", &self.temp_public)
            .map_err(|e| LoginError::Internal(format!("a stored commitment record is corrupt: {e}")))
    }

    /// Whether `request` asks for the same binding (a retry): the same
    /// verifier and the same temporary key.
    pub fn binds(&self, request: &CommitmentRequest) -> bool {
        self.verifier == request.verifier.as_str()
            && self.temp_public == hex::encode(public_key_to_uncompressed(&request.temp_public))
    }

    /// The answer to the request that made this record, from node key
    /// `node_public`.
    pub fn result(&self, node_public: &PublicKey) -> CommitmentResult {
        let (nodepubx, nodepuby) = public_key_to_xy_hex(node_public);
        CommitmentResult { signature: self.signature.clone(), data: self.data.clone(), nodepubx, nodepuby }
    }
}

/// The answer to `CommitmentRequest` (the client forwards it verbatim in
/// `ShareRequest`'s `nodesignatures`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentResult {
    /// `r ‖ s ‖ v` over keccak256(`data`), 130 hex digits.
    pub signature: String,
    /// The signed string.
    pub data: String,
    /// X of the node's key, 64 hex digits.
    pub nodepubx: String,
    /// Y of the node's key, 64 hex digits.
    pub nodepuby: String,
}

/// The fields of a signed commitment string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedData<'a> {
    /// The commitment, as written.
    pub commitment: &'a str,
    /// Temporary key X, as written.
    pub temp_x: &'a str,
    /// Temporary key Y, as written.
    pub temp_y: &'a str,
    /// The verifier.
    pub verifier: &'a str,
    /// Unix seconds.
    pub timestamp: u64,
}

impl<'a> SignedData<'a> {
    /// Splits a signed string into its six fields.
    pub fn parse(data: &'a str) -> Result<Self, String> {
        let fields: Vec<&str> = data.splitn(7, DELIMITER).collect();
        let [prefix, commitment, temp_x, temp_y, verifier, timestamp] = fields.as_slice() else {
            return Err(format!("`data` has {} fields separated by 0x1C, not 6", fields.len()));
        };
        if *prefix != MESSAGE_PREFIX {
            return Err(format!("`data` starts with {:?}, not \"{MESSAGE_PREFIX}\"", quote(prefix)));
        }
        let timestamp = timestamp
            .parse::<u64>()
            .map_err(|_| format!("the time in `data` is {:?}, not Unix seconds", quote(timestamp)))?;
        Ok(Self { commitment, temp_x, temp_y, verifier, timestamp })
    }
}
