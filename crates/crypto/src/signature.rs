//! Recoverable ECDSA over keccak256, in the Torus `r ‖ s ‖ v` format with
//! `v = recovery id + 27` (130 hex digits), as Go's `crypto.Sign` and the
//! Torus nodes' commitment signatures use it.

use k256::ecdsa::signature::hazmat::PrehashVerifier;
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use k256::elliptic_curve::scalar::IsHigh;

use crate::error::{CryptoError, Result};
use crate::group::PublicKey;
use crate::hash::keccak256;

/// Bytes in `r ‖ s ‖ v`.
pub const RECOVERABLE_SIGNATURE_LEN: usize = 65;
/// Hex digits in the Torus signature field.
pub const TORUS_SIGNATURE_HEX_LEN: usize = 2 * RECOVERABLE_SIGNATURE_LEN;

/// An ECDSA signature with its recovery id. Parsed signatures always have a
/// low `s` (no malleated twins) and a valid `v`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoverableSignature {
    signature: Signature,
    recovery_id: RecoveryId,
}

impl RecoverableSignature {
    /// Signs `keccak256(message)` deterministically (RFC 6979), with low `s`.
    pub fn sign_keccak(key: &SigningKey, message: &[u8]) -> Self {
        let (signature, recovery_id) = key.sign_prehash_recoverable(&keccak256(message));
        Self { signature, recovery_id }
    }

    /// `r ‖ s ‖ (recovery id + 27)`.
    pub fn to_bytes(&self) -> [u8; RECOVERABLE_SIGNATURE_LEN] {
        let mut out = [0u8; RECOVERABLE_SIGNATURE_LEN];
        out[..64].copy_from_slice(&self.signature.to_bytes());
        out[64] = self.recovery_id.to_byte() + 27;
        out
    }

    /// Parses `r ‖ s ‖ v`: `r` and `s` non-zero and below the order, `s`
    /// low, `v` in 27..=30.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != RECOVERABLE_SIGNATURE_LEN {
            return Err(CryptoError::InvalidLength { what: "signature", expected: "65 bytes", actual: bytes.len() });
        }
        let signature = Signature::from_slice(&bytes[..64])
            .map_err(|_| CryptoError::InvalidSignature("r or s is zero or not below the group order"))?;
        if bool::from(signature.s().is_high()) {
            return Err(CryptoError::InvalidSignature("s is not in the lower half of the order"));
        }
        let recovery_id = bytes[64]
            .checked_sub(27)
            .and_then(RecoveryId::from_byte)
            .ok_or(CryptoError::InvalidSignature("v must be 27, 28, 29 or 30"))?;
        Ok(Self { signature, recovery_id })
    }

    /// 130 lowercase hex digits.
    pub fn to_torus_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    /// Parses 130 hex digits (no `0x`).
    pub fn from_torus_hex(s: &str) -> Result<Self> {
        if s.len() != TORUS_SIGNATURE_HEX_LEN {
            return Err(CryptoError::InvalidLength { what: "signature", expected: "130 hex digits", actual: s.len() });
        }
        let bytes = hex::decode(s).map_err(|_| CryptoError::InvalidHex { what: "signature" })?;
        Self::from_bytes(&bytes)
    }

    /// Checks the signature on `keccak256(message)` under `key`.
    pub fn verify_keccak(&self, key: &PublicKey, message: &[u8]) -> Result<()> {
        VerifyingKey::from(key)
            .verify_prehash(&keccak256(message), &self.signature)
            .map_err(|_| CryptoError::InvalidSignature("does not verify under the given key"))
    }

    /// The public key that signed `keccak256(message)`.
    pub fn recover_keccak(&self, message: &[u8]) -> Result<PublicKey> {
        let key = VerifyingKey::recover_from_prehash(&keccak256(message), &self.signature, self.recovery_id)
            .map_err(|_| CryptoError::InvalidSignature("no public key recovers from it"))?;
        Ok(PublicKey::from(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::elliptic_curve::Generate;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn sign_verify_recover() {
        let key = SigningKey::generate_from_rng(&mut ChaCha20Rng::seed_from_u64(9));
        let public = PublicKey::from(key.verifying_key());
        let signature = RecoverableSignature::sign_keccak(&key, b"hello");
        signature.verify_keccak(&public, b"hello").unwrap();
        assert_eq!(signature.recover_keccak(b"hello").unwrap(), public);
        assert!(signature.verify_keccak(&public, b"hellO").is_err());
        assert_ne!(signature.recover_keccak(b"hellO").ok(), Some(public));
        let parsed = RecoverableSignature::from_torus_hex(&signature.to_torus_hex()).unwrap();
        assert_eq!(parsed, signature);
    }

    #[test]
    fn parsing_is_strict() {
        let key = SigningKey::generate_from_rng(&mut ChaCha20Rng::seed_from_u64(10));
        let bytes = RecoverableSignature::sign_keccak(&key, b"m").to_bytes();
        for v in [0u8, 1, 26, 31, 255] {
            let mut b = bytes;
            b[64] = v;
            assert!(matches!(RecoverableSignature::from_bytes(&b), Err(CryptoError::InvalidSignature(_))), "v={v}");
        }
        let mut zero_r = bytes;
        zero_r[..32].fill(0);
        assert!(RecoverableSignature::from_bytes(&zero_r).is_err());
        let mut huge_s = bytes;
        huge_s[32..64].fill(0xff);
        assert!(RecoverableSignature::from_bytes(&huge_s).is_err());
        // The malleated twin (n - s) is refused.
        let signature = Signature::from_slice(&bytes[..64]).unwrap();
        let (r, s) = signature.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s.as_ref()).to_bytes()).unwrap();
        let mut twin = bytes;
        twin[..64].copy_from_slice(&high.to_bytes());
        assert_eq!(
            RecoverableSignature::from_bytes(&twin),
            Err(CryptoError::InvalidSignature("s is not in the lower half of the order"))
        );
        assert!(matches!(RecoverableSignature::from_torus_hex("00"), Err(CryptoError::InvalidLength { .. })));
        assert!(matches!(RecoverableSignature::from_torus_hex(&"g".repeat(130)), Err(CryptoError::InvalidHex { .. })));
    }
}
