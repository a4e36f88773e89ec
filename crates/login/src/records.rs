//! What a node keeps about logins, and under which keys: every record is a
//! nullifier, written once and never overwritten (the store inserts a
//! record only where none is), kept until no verifier configuration could
//! accept its token any more.
//!
//! - Under a token commitment (32 bytes: keccak256 of a token as sent):
//!   - a [`CommitmentRecord`]: the commitment this node signed, bound to
//!     one verifier and one temporary key (written at `CommitmentRequest`);
//!   - a [`SubTokenRecord`]: the commitment is a sub-token of an aggregate
//!     login, bound to that login's commitment and temporary key (written
//!     with the aggregate's commitment, in the same durable write).
//!
//!   One key space for both, so a token committed alone cannot then be
//!   part of an aggregate login, nor the reverse.
//! - Under [`nullifier_key`] of a token's identity (33 bytes: what a
//!   verified token is, whatever its spelling; see
//!   `quorumkey_verifier::canonical`): a [`NullifierRecord`] naming the
//!   commitment whose reveal it served (written at `ShareRequest`, before
//!   the share leaves).

use quorumkey_verifier::TokenIdentity;
use quorumkey_verifier::config::MAX_ACCEPTANCE_SECS;
use serde::{Deserialize, Serialize};

use crate::LoginError;
use crate::commitment::CommitmentRecord;

/// How much longer than [`MAX_ACCEPTANCE_SECS`] a record is kept: twice
/// the largest clock skew a verifier may allow (a token's issue time may
/// be ahead of this node's clock, and its check allows skew), plus ten
/// minutes for the nodes' clocks to differ.
pub const RECORD_MARGIN_SECS: u64 = 2 * 600 + 600;

/// How long every login record is kept after it is written: longer than
/// any verifier configuration can accept a token committed or revealed
/// then (`docs/api.md`, "Nullifiers outlive every acceptance").
pub const RECORD_LIFETIME_SECS: u64 = MAX_ACCEPTANCE_SECS + RECORD_MARGIN_SECS;

/// When a record written at `now` may be forgotten.
pub fn record_expiry(now: u64) -> u64 {
    now.saturating_add(RECORD_LIFETIME_SECS)
}

/// The first byte of a nullifier's key (commitment keys are 32 bytes, so
/// the two never meet).
const NULLIFIER_TAG: u8 = b'n';

/// The key of the record of a token commitment: the commitment itself.
pub fn record_key(commitment: &[u8; 32]) -> Vec<u8> {
    commitment.to_vec()
}

/// The key of a token identity's nullifier.
pub fn nullifier_key(identity: &TokenIdentity) -> Vec<u8> {
    let mut key = Vec::with_capacity(33);
    key.push(NULLIFIER_TAG);
    key.extend_from_slice(&identity.0);
    key
}

/// A record for the store to insert where no record is under `key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordWrite {
    /// Its key.
    pub key: Vec<u8>,
    /// The encoded record.
    pub value: Vec<u8>,
    /// When it may be forgotten (Unix seconds).
    pub expires_at: u64,
}

/// A sub-token of an aggregate login, under its own commitment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubTokenRecord {
    /// The aggregate login's token commitment, 64 hex digits.
    pub aggregate: String,
    /// The aggregate verifier.
    pub verifier: String,
    /// The aggregate login's temporary key, uncompressed, hex.
    pub temp_public: String,
    /// When it may be forgotten.
    pub expires_at: u64,
}

/// A record under a token commitment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LoginRecord {
    /// A sub-token of an aggregate login (tried first: only it has
    /// `aggregate`).
    SubToken(SubTokenRecord),
    /// A commitment this node signed.
    Commitment(CommitmentRecord),
}

impl LoginRecord {
    /// Reads a stored record.
    pub fn decode(bytes: &[u8]) -> Result<Self, LoginError> {
        serde_json::from_slice(bytes)
            .map_err(|e| LoginError::Internal(format!("a stored login record is corrupt: {e}")))
    }

    /// Its stored form.
    pub fn encode(&self) -> Vec<u8> {
        // Strings and integers only: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A token identity's nullifier: the reveal it served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NullifierRecord {
    /// The token commitment of that login, 64 hex digits.
    pub commitment: String,
    /// When it may be forgotten.
    pub expires_at: u64,
}

impl NullifierRecord {
    /// The write of the nullifier of `identity` for the login of
    /// `commitment`, at `now`.
    pub fn write(identity: &TokenIdentity, commitment: &[u8; 32], now: u64) -> RecordWrite {
        let record = Self { commitment: hex::encode(commitment), expires_at: record_expiry(now) };
        // Strings and integers only: serializing cannot fail.
        let value = serde_json::to_vec(&record).unwrap_or_default();
        RecordWrite { key: nullifier_key(identity), value, expires_at: record.expires_at }
    }

    /// Reads a stored nullifier.
    pub fn decode(bytes: &[u8]) -> Result<Self, LoginError> {
        serde_json::from_slice(bytes)
            .map_err(|e| LoginError::Internal(format!("a stored token nullifier is corrupt: {e}")))
    }

    /// Whether it is the nullifier of the login of `commitment` (a retry of
    /// that reveal finds its own).
    pub fn serves(&self, commitment: &[u8; 32]) -> bool {
        self.commitment.eq_ignore_ascii_case(&hex::encode(commitment))
    }
}
