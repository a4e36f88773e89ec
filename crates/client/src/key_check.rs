//! Pure checks of what nodes return about a key: the public shares (all
//! on one polynomial of degree `t - 1` whose value at 0 is the key), each
//! node's encrypted share opened and checked against its public share, and
//! the rebuilt key.

use quorumkey_crypto::ecies::{EciesCiphertext, TorusEncryptedShare, decrypt};
use quorumkey_crypto::group::{
    NonZeroScalar, Point, PublicKey, Scalar, point_from_bytes, scalar_from_bytes, scalar_from_u64,
};
use quorumkey_crypto::shamir::{Share, interpolate_points, reconstruct_secret};
use quorumkey_login::ShareRequestResult;

/// A key's public data, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedKey {
    /// The key's index in the pool.
    pub key_index: u64,
    /// The key.
    pub public_key: PublicKey,
    /// `s_j·G` for node j at position j - 1.
    pub public_shares: Vec<Point>,
}

/// Checks public shares (compressed hex, node j at position j - 1) of a
/// key of `nodes` nodes with threshold `threshold`: every one a point, the
/// first `threshold` interpolating to `public_key` at 0, and every other
/// one on the same polynomial.
pub fn check_public_shares(
    key_index: u64,
    public_key: &PublicKey,
    shares_hex: &[String],
    nodes: usize,
    threshold: usize,
) -> Result<CheckedKey, String> {
    if shares_hex.len() != nodes {
        return Err(format!("{} public shares for {nodes} nodes", shares_hex.len()));
    }
    if threshold == 0 || threshold > nodes {
        return Err(format!("threshold {threshold} for {nodes} nodes"));
    }
    let mut points = Vec::with_capacity(nodes);
    for (position, text) in shares_hex.iter().enumerate() {
        let bytes = hex::decode(text).map_err(|_| format!("public share {} is not hex", position + 1))?;
        points
            .push(point_from_bytes("public share", &bytes).map_err(|e| format!("public share {}: {e}", position + 1))?);
    }
    let basis: Vec<(u32, Point)> =
        points.iter().take(threshold).zip(1u32..).map(|(point, index)| (index, *point)).collect();
    let at_zero = interpolate_points(&basis, &Scalar::ZERO).map_err(|e| e.to_string())?;
    if at_zero != public_key.to_projective() {
        return Err("the public shares do not interpolate to the key".to_owned());
    }
    for (position, point) in points.iter().enumerate().skip(threshold) {
        let index = position as u64 + 1;
        let expected = interpolate_points(&basis, &scalar_from_u64(index)).map_err(|e| e.to_string())?;
        if expected != *point {
            return Err(format!("public share {index} is not on the key's polynomial"));
        }
    }
    Ok(CheckedKey { key_index, public_key: *public_key, public_shares: points })
}

impl CheckedKey {
    /// Whether `share` is node `index`'s share of this key.
    pub fn share_matches(&self, index: u16, share: &Scalar) -> bool {
        usize::from(index)
            .checked_sub(1)
            .and_then(|position| self.public_shares.get(position))
            .is_some_and(|public| Point::mul_by_generator(share) == *public)
    }

    /// Node `node`'s share from its `ShareRequest` answer: one key, this
    /// one, decrypted with the temporary key, and equal to the node's
    /// public share.
    pub fn open_share(
        &self,
        answer: &ShareRequestResult,
        temp_secret: &NonZeroScalar,
        node: u16,
    ) -> Result<Scalar, String> {
        let [entry] = answer.keys.as_slice() else {
            return Err(format!("{} keys in the answer, not one", answer.keys.len()));
        };
        if u64::from_str_radix(&entry.index, 16).ok() != Some(self.key_index) {
            return Err(format!("a share of key {:?}, not of key {:x}", entry.index, self.key_index));
        }
        let wire = TorusEncryptedShare { share: entry.share.clone(), metadata: entry.metadata.clone() };
        let ciphertext = EciesCiphertext::try_from(&wire).map_err(|e| format!("the encrypted share: {e}"))?;
        let plaintext = decrypt(temp_secret, &ciphertext).map_err(|e| format!("the share does not decrypt: {e}"))?;
        let share = scalar_from_bytes(&plaintext).map_err(|e| format!("the share: {e}"))?;
        if !self.share_matches(node, &share) {
            return Err("wrong share: it does not match the node's public share on the ledger".to_owned());
        }
        Ok(share)
    }

    /// The key from exactly `threshold` checked shares, checked against the
    /// public key.
    pub fn rebuild(&self, shares: &[Share]) -> Result<Scalar, String> {
        let secret = reconstruct_secret(shares).map_err(|e| e.to_string())?;
        if Point::mul_by_generator(&secret) != self.public_key.to_projective() {
            return Err("the rebuilt key does not match the public key".to_owned());
        }
        Ok(secret)
    }
}
