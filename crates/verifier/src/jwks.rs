//! Verification keys from a JWKS document, each with the one algorithm it
//! may verify. The algorithm comes from the key, never from a token: an RSA
//! key verifies RS256 only, a P-256 key ES256 only, an Ed25519 key EdDSA
//! only, and symmetric (`oct`) keys are never loaded, so no token can make
//! a public key serve as an HMAC secret.

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::error::JwksError;

/// Largest JWKS document read.
pub const MAX_JWKS_LEN: usize = 64 * 1024;
/// Most keys read from one document.
pub const MAX_JWKS_KEYS: usize = 32;

/// One verification key.
#[derive(Clone)]
pub struct VerificationKey {
    /// Its `kid`, if the document gave one.
    pub kid: Option<String>,
    /// The only algorithm it verifies.
    pub algorithm: Algorithm,
    key: DecodingKey,
    /// An RSA key's modulus, big-endian without leading zeros: a signature
    /// must be exactly as long, and smaller (see `canonical`).
    rsa_modulus: Option<Vec<u8>>,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish()
    }
}

impl VerificationKey {
    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    pub(crate) fn rsa_modulus(&self) -> Option<&[u8]> {
        self.rsa_modulus.as_deref()
    }
}

/// The usable keys of a JWKS document.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
}

/// The algorithm a JWK may verify, or `None` if it is not a signature key
/// we accept.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
        return None;
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        _ => return None,
    };
    // A key that names another algorithm is not used at all.
    let named = jwk.common.key_algorithm;
    let agrees = match named {
        None => true,
        Some(KeyAlgorithm::RS256) => algorithm == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => algorithm == Algorithm::ES256,
        Some(KeyAlgorithm::EdDSA) => algorithm == Algorithm::EdDSA,
        Some(_) => false,
    };
    agrees.then_some(algorithm)
}

/// An RSA JWK's `n` as bytes without leading zeros (JWKs write it in
/// base64url, some with padding; a key's spelling does not matter, only a
/// token's).
fn rsa_modulus(n: &str) -> Option<Vec<u8>> {
    let bytes = crate::canonical::LENIENT_URL_SAFE.decode(n).ok()?;
    let start = bytes.iter().position(|byte| *byte != 0)?;
    Some(bytes[start..].to_vec())
}

impl KeySet {
    /// The usable keys of a JWKS document (`{"keys": [...]}`); keys of other
    /// types, uses or algorithms are skipped.
    pub fn from_jwks(bytes: &[u8]) -> Result<Self, JwksError> {
        if bytes.len() > MAX_JWKS_LEN {
            return Err(JwksError::TooLarge { len: bytes.len(), max: MAX_JWKS_LEN });
        }
        let document: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| JwksError::Json(e.to_string()))?;
        Self::from_document(&document)
    }

    /// The same for a document already parsed (a configuration's inline
    /// keys).
    pub fn from_document(document: &serde_json::Value) -> Result<Self, JwksError> {
        let Some(entries) = document.get("keys").and_then(serde_json::Value::as_array) else {
            return Err(JwksError::NoKeysArray);
        };
        if entries.len() > MAX_JWKS_KEYS {
            return Err(JwksError::TooManyKeys { count: entries.len(), max: MAX_JWKS_KEYS });
        }
        let mut keys = Vec::new();
        for entry in entries {
            let Ok(jwk) = Jwk::deserialize(entry) else { continue };
            let Some(algorithm) = algorithm_of(&jwk) else { continue };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
            let rsa_modulus = match &jwk.algorithm {
                AlgorithmParameters::RSA(params) => match rsa_modulus(&params.n) {
                    Some(modulus) => Some(modulus),
                    None => continue,
                },
                _ => None,
            };
            keys.push(VerificationKey { kid: jwk.common.key_id.clone(), algorithm, key, rsa_modulus });
        }
        Ok(Self { keys })
    }

    /// No usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key for a token's `kid`: the one with that id; without a `kid`,
    /// the only key of the set (if there is exactly one).
    pub fn find(&self, kid: Option<&str>) -> Option<&VerificationKey> {
        match kid {
            Some(kid) => self.keys.iter().find(|key| key.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }
}
