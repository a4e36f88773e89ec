//! The answer to `ShareRequest`: this node's share of the user's key,
//! encrypted (eccrypto-compatible ECIES) to the temporary key the node
//! recorded at commitment time, in the Torus `KeyAssignment` shape.

use std::collections::BTreeMap;

use quorumkey_crypto::ecies::{self, TorusEncryptedShare, TorusShareMetadata};
use quorumkey_crypto::group::{PublicKey, Scalar, public_key_to_xy_hex, scalar_to_bytes};
use quorumkey_ledger::{VerifierId, VerifierName};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// `{"X": ..., "Y": ...}`, 64 lowercase hex digits each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyXy {
    /// X.
    #[serde(rename = "X")]
    pub x: String,
    /// Y.
    #[serde(rename = "Y")]
    pub y: String,
}

/// One key of a `ShareRequest` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareKey {
    /// The key's index in the pool, lowercase hex.
    #[serde(rename = "Index")]
    pub index: String,
    /// The key's public key (the same on every node: the client compares).
    #[serde(rename = "PublicKey")]
    pub public_key: PublicKeyXy,
    /// Verifier ids needed per verifier (always 1).
    #[serde(rename = "Threshold")]
    pub threshold: u32,
    /// The pair the key is assigned to.
    #[serde(rename = "Verifiers")]
    pub verifiers: BTreeMap<String, Vec<String>>,
    /// `base64(hex(ciphertext))` of the 32-byte share.
    #[serde(rename = "Share")]
    pub share: String,
    /// IV, ephemeral key, MAC and mode.
    #[serde(rename = "Metadata")]
    pub metadata: TorusShareMetadata,
}

/// `{"keys": [one key]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRequestResult {
    /// Exactly one key: the client reads `keys[0]`, and an empty list
    /// breaks its agreement check for every node.
    pub keys: Vec<ShareKey>,
}

/// Which key and whose.
#[derive(Clone, Debug)]
pub struct KeyContext<'a> {
    /// The key's index.
    pub key_index: u64,
    /// The key's public key.
    pub public_key: &'a PublicKey,
    /// The verifier.
    pub verifier: &'a VerifierName,
    /// The user.
    pub verifier_id: &'a VerifierId,
}

/// Encrypts `share` (always as 32 big-endian bytes) to `recipient`.
pub fn encrypt_share<R: CryptoRng + ?Sized>(
    share: &Scalar,
    recipient: &PublicKey,
    key: &KeyContext<'_>,
    rng: &mut R,
) -> ShareRequestResult {
    let plaintext = Zeroizing::new(scalar_to_bytes(share));
    let sealed = ecies::encrypt(recipient, plaintext.as_slice(), rng);
    let TorusEncryptedShare { share, metadata } = TorusEncryptedShare::from(&sealed);
    let (x, y) = public_key_to_xy_hex(key.public_key);
    ShareRequestResult {
        keys: vec![ShareKey {
            index: format!("{:x}", key.key_index),
            public_key: PublicKeyXy { x, y },
            threshold: 1,
            verifiers: BTreeMap::from([(key.verifier.as_str().to_owned(), vec![key.verifier_id.as_str().to_owned()])]),
            share,
            metadata,
        }],
    }
}
