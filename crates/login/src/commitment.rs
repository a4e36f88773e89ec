//! `CommitmentRequest`: the checks, the string a node signs, and the record
//! it keeps.
//!
//! A node signs `mug00 ␜ commitment ␜ temppubx ␜ temppuby ␜ verifier ␜ time`
//! (the Torus format: recoverable ECDSA over keccak256, 130 hex digits) and
//! records, durably and once, that this (verifier, commitment) belongs to
//! that temporary key. A repeated request with the same key gets the stored
//! answer again (clients retry); one with another key is refused.
//!
//! An aggregate login also commits to each of its sub-tokens
//! (`sub_token_commitments`, a quorumkey extension): each is recorded under
//! its own commitment in the same write, so a sub-token can serve one
//! login, alone or in an aggregate, never two (see [`crate::records`]).

use quorumkey_crypto::group::{PublicKey, public_key_from_xy_hex, public_key_to_uncompressed, public_key_to_xy_hex};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::signature::RecoverableSignature;
use quorumkey_ledger::VerifierName;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::lookup::verifier_name;
use crate::records::{LoginRecord, RecordWrite, SubTokenRecord, record_expiry};
use crate::reveal::MAX_SUB_TOKENS;
use crate::{DELIMITER, LoginError, hex32, kind_of, object, quote, string_field};

pub use crate::records::{RECORD_MARGIN_SECS, record_key};

/// The only message prefix (the Torus protocol's).
pub const MESSAGE_PREFIX: &str = "mug00";

/// The field of a `CommitmentRequest` that lists an aggregate login's
/// sub-token commitments.
pub const SUB_TOKEN_COMMITMENTS: &str = "sub_token_commitments";

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
    /// An aggregate login's sub-token commitments (keccak256 of each
    /// sub-token), sorted; empty for any other login.
    pub sub_tokens: Vec<[u8; 32]>,
}

impl CommitmentRequest {
    /// Parses and checks the params: the `mug00` prefix, a 64-hex-digit
    /// commitment, a temporary key on the curve, a valid verifier name and,
    /// if present, 1 to 8 distinct sub-token commitments (64 hex digits
    /// each, none equal to the commitment). Other fields (newer clients add
    /// some) are ignored.
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
        let sub_tokens = match params.get(SUB_TOKEN_COMMITMENTS) {
            None => Vec::new(),
            Some(value) => parse_sub_tokens(value, &commitment)?,
        };
        Ok(Self { verifier, commitment, temp_public, temp_x: temp_x.to_owned(), temp_y: temp_y.to_owned(), sub_tokens })
    }

    /// Checks the request against its verifier's kind: an aggregate
    /// verifier's commitment names its sub-tokens, no other does.
    pub fn check_kind(&self, aggregate_verifier: bool) -> Result<(), LoginError> {
        match (aggregate_verifier, self.sub_tokens.is_empty()) {
            (true, true) => Err(LoginError::InvalidParams(format!(
                "verifier {} is an aggregate verifier: its CommitmentRequest must list `{SUB_TOKEN_COMMITMENTS}` (keccak256 of each sub-token, 64 hex digits), so that each sub-token serves one login; torus.js does not send them (docs/api.md)",
                self.verifier.as_str()
            ))),
            (false, false) => Err(LoginError::InvalidParams(format!(
                "verifier {} is not an aggregate verifier: send no `{SUB_TOKEN_COMMITMENTS}`",
                self.verifier.as_str()
            ))),
            _ => Ok(()),
        }
    }

    /// The key of this commitment's record: the token commitment alone,
    /// so a token is bound to one verifier and one temporary key at most.
    pub fn record_key(&self) -> Vec<u8> {
        record_key(&self.commitment)
    }

    /// What to store for `record` (made by [`Self::sign`]): the commitment's
    /// record and, for an aggregate login, one record per sub-token, to be
    /// made durable together.
    pub fn record_writes(&self, record: &CommitmentRecord) -> Vec<RecordWrite> {
        let mut writes = Vec::with_capacity(1 + self.sub_tokens.len());
        writes.push(RecordWrite {
            key: self.record_key(),
            value: LoginRecord::Commitment(record.clone()).encode(),
            expires_at: record.expires_at,
        });
        for sub_token in &self.sub_tokens {
            let sub = SubTokenRecord {
                aggregate: hex::encode(self.commitment),
                verifier: record.verifier.clone(),
                temp_public: record.temp_public.clone(),
                expires_at: record.expires_at,
            };
            writes.push(RecordWrite {
                key: record_key(sub_token),
                value: LoginRecord::SubToken(sub).encode(),
                expires_at: record.expires_at,
            });
        }
        writes
    }

    /// The answer, given `record` (what this request would store) and what
    /// the store already held under each of [`Self::record_writes`]' keys:
    /// the stored commitment record if this is a retry of the same binding,
    /// `record` if nothing was stored, a refusal if any record binds the
    /// token or a sub-token to anything else. (The records a refused
    /// request stored where none was stay: they bind what it named to its
    /// key at this node, as a front-runner's would; the tokens that made it
    /// refused are spent anyway.)
    pub fn outcome(
        &self,
        record: CommitmentRecord,
        existing: &[Option<Vec<u8>>],
    ) -> Result<CommitmentRecord, LoginError> {
        let mut answer = record;
        for (position, stored) in existing.iter().enumerate() {
            let Some(stored) = stored else { continue };
            match (position, LoginRecord::decode(stored)?) {
                (0, LoginRecord::Commitment(stored)) if stored.binds(self) => answer = stored,
                (0, _) => return Err(LoginError::DuplicateCommitment),
                (_, LoginRecord::SubToken(sub))
                    if sub.aggregate == hex::encode(self.commitment)
                        && sub.verifier == self.verifier.as_str()
                        && sub.temp_public == hex::encode(public_key_to_uncompressed(&self.temp_public)) => {}
                (_, _) => return Err(LoginError::DuplicateSubToken),
            }
        }
        Ok(answer)
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
    /// until [`record_expiry`]: past the longest any verifier configuration
    /// could accept the token (whatever the verifier's settings are now or
    /// become).
    pub fn sign(&self, node_key: &SigningKey, now: u64) -> CommitmentRecord {
        let data = self.signed_data(now);
        let signature = RecoverableSignature::sign_keccak(node_key, data.as_bytes()).to_torus_hex();
        CommitmentRecord {
            verifier: self.verifier.as_str().to_owned(),
            temp_public: hex::encode(public_key_to_uncompressed(&self.temp_public)),
            created_at: now,
            expires_at: record_expiry(now),
            signature,
            data,
            sub_tokens: self.sub_tokens.iter().map(hex::encode).collect(),
        }
    }
}

/// `sub_token_commitments`: 1 to [`MAX_SUB_TOKENS`] distinct 64-hex-digit
/// commitments, none the login's own; sorted (the set is what counts).
fn parse_sub_tokens(value: &Value, commitment: &[u8; 32]) -> Result<Vec<[u8; 32]>, LoginError> {
    let invalid = |reason: String| LoginError::InvalidParams(format!("`{SUB_TOKEN_COMMITMENTS}` {reason}"));
    let Value::Array(items) = value else { return Err(invalid(format!("must be an array, not {}", kind_of(value)))) };
    if items.is_empty() || items.len() > MAX_SUB_TOKENS {
        return Err(invalid(format!("must list 1 to {MAX_SUB_TOKENS} commitments, not {}", items.len())));
    }
    let mut sub_tokens = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(text) = item else {
            return Err(invalid(format!("must hold strings, not {}", kind_of(item))));
        };
        sub_tokens.push(hex32(SUB_TOKEN_COMMITMENTS, text)?);
    }
    sub_tokens.sort_unstable();
    if sub_tokens.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(invalid("lists a commitment twice".to_owned()));
    }
    if sub_tokens.contains(commitment) {
        return Err(invalid("lists the login's own commitment".to_owned()));
    }
    Ok(sub_tokens)
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
    /// An aggregate login's sub-token commitments (hex, sorted); each has
    /// a [`SubTokenRecord`] of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_tokens: Vec<String>,
}

impl CommitmentRecord {
    /// The temporary key it is bound to.
    pub fn temp_public(&self) -> Result<PublicKey, LoginError> {
        quorumkey_crypto::group::public_key_from_hex("recorded temporary key", &self.temp_public)
            .map_err(|e| LoginError::Internal(format!("a stored commitment record is corrupt: {e}")))
    }

    /// Whether `request` asks for the same binding (a retry): the same
    /// verifier, the same temporary key and the same sub-tokens.
    pub fn binds(&self, request: &CommitmentRequest) -> bool {
        let sub_tokens: Vec<String> = request.sub_tokens.iter().map(hex::encode).collect();
        self.verifier == request.verifier.as_str()
            && self.temp_public == hex::encode(public_key_to_uncompressed(&request.temp_public))
            && self.sub_tokens == sub_tokens
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
