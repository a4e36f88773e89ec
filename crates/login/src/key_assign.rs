//! The signer's authorization of a `KeyAssign` (anti-abuse: a node can be
//! configured to assign keys only to pairs a signer approved).
//!
//! The Torus client asks the signer host first (`POST /api/sign` with the
//! JSON-RPC body and the chosen node's key in `pubKeyX`/`pubKeyY` headers)
//! and copies the three fields of its answer, `torus-timestamp`,
//! `torus-nonce` and `torus-signature`, into the request to that node as
//! top-level body fields. The signature is a recoverable ECDSA signature
//! (`r ‖ s ‖ v`, base64) over keccak256 of
//! `quorumkey/key-assign/v1 ␜ verifier ␜ verifier_id ␜ node key ␜ timestamp ␜ nonce`,
//! with the node's compressed key in hex: it names the node, so it cannot
//! be replayed to another node, and the timestamp bounds its life. A replay
//! to the same node within that life re-assigns the same pair, which is a
//! no-op.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use quorumkey_crypto::group::PublicKey;
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::sec1::ToSec1Point;
use quorumkey_crypto::signature::RecoverableSignature;
use quorumkey_ledger::{VerifierId, VerifierName};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{DELIMITER, LoginError, quote};

/// Domain of the signed message.
pub const KEY_ASSIGN_DOMAIN: &str = "quorumkey/key-assign/v1";
/// An authorization is accepted this long after its timestamp (seconds).
pub const MAX_AUTHORIZATION_AGE_SECS: u64 = 60;
/// ... and this far in the future (clock skew).
pub const MAX_AUTHORIZATION_SKEW_SECS: u64 = 30;

/// The signer's answer, copied into the `KeyAssign` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAssignAuthorization {
    /// Unix seconds, decimal.
    #[serde(rename = "torus-timestamp")]
    pub timestamp: String,
    /// Random hex.
    #[serde(rename = "torus-nonce")]
    pub nonce: String,
    /// base64 of `r ‖ s ‖ v`.
    #[serde(rename = "torus-signature")]
    pub signature: String,
}

/// What the signer is asked to approve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerRequest {
    /// The verifier.
    pub verifier: VerifierName,
    /// The user.
    pub verifier_id: VerifierId,
    /// The node the client will send the `KeyAssign` to.
    pub node: PublicKey,
}

fn message(request: &SignerRequest, timestamp: &str, nonce: &str) -> Vec<u8> {
    let node = hex::encode(request.node.to_sec1_point(true).as_bytes());
    [KEY_ASSIGN_DOMAIN, request.verifier.as_str(), request.verifier_id.as_str(), &node, timestamp, nonce]
        .join(&DELIMITER.to_string())
        .into_bytes()
}

impl KeyAssignAuthorization {
    /// The signer's side: approves `request` at Unix time `now` with a
    /// fresh `nonce`.
    pub fn sign(key: &SigningKey, request: &SignerRequest, now: u64, nonce: [u8; 16]) -> Self {
        let timestamp = now.to_string();
        let nonce = hex::encode(nonce);
        let signature = RecoverableSignature::sign_keccak(key, &message(request, &timestamp, &nonce));
        Self { timestamp, nonce, signature: BASE64.encode(signature.to_bytes()) }
    }

    /// Reads the three fields from a `KeyAssign` request body.
    pub fn from_body(body: &Map<String, Value>) -> Result<Self, LoginError> {
        let field = |name: &'static str| match body.get(name) {
            Some(Value::String(value)) if value.len() <= 256 => Ok(value.clone()),
            Some(_) => {
                Err(LoginError::KeyAssignUnauthorized(format!("`{name}` must be a string of at most 256 bytes")))
            }
            None => Err(LoginError::KeyAssignUnauthorized(format!(
                "`{name}` is missing; ask the signer host first (the client's signerHost)"
            ))),
        };
        Ok(Self {
            timestamp: field("torus-timestamp")?,
            nonce: field("torus-nonce")?,
            signature: field("torus-signature")?,
        })
    }

    /// The node's side: checks the authorization of `request` by
    /// `signer` at Unix time `now`.
    pub fn check(&self, signer: &PublicKey, request: &SignerRequest, now: u64) -> Result<(), LoginError> {
        let refuse = |reason: String| Err(LoginError::KeyAssignUnauthorized(reason));
        let Ok(timestamp) = self.timestamp.parse::<u64>() else {
            return refuse(format!("`torus-timestamp` {:?} is not Unix seconds", quote(&self.timestamp)));
        };
        if now.saturating_sub(timestamp) > MAX_AUTHORIZATION_AGE_SECS {
            return refuse(format!(
                "the signer's authorization is {} s old, over the limit of {MAX_AUTHORIZATION_AGE_SECS} s",
                now - timestamp
            ));
        }
        if timestamp.saturating_sub(now) > MAX_AUTHORIZATION_SKEW_SECS {
            return refuse(format!("the signer's authorization is dated {} s in the future", timestamp - now));
        }
        let Ok(bytes) = BASE64.decode(&self.signature) else {
            return refuse("`torus-signature` is not base64".to_owned());
        };
        let signature = RecoverableSignature::from_bytes(&bytes)
            .map_err(|e| LoginError::KeyAssignUnauthorized(format!("`torus-signature`: {e}")))?;
        if signature.verify_keccak(signer, &message(request, &self.timestamp, &self.nonce)).is_err() {
            return refuse(
                "`torus-signature` is not the signer's signature of this verifier, verifier_id and node".to_owned(),
            );
        }
        Ok(())
    }
}
