//! keccak256 and the Torus token commitment.

use sha3::{Digest, Keccak256};

/// keccak256 (the Ethereum hash, not NIST SHA3-256).
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// The Torus token commitment: `keccak256(utf8(id_token))`.
pub fn token_commitment(id_token: &str) -> [u8; 32] {
    keccak256(id_token.as_bytes())
}

/// The token commitment as the client sends it: 64 lowercase hex digits,
/// no `0x`.
pub fn token_commitment_hex(id_token: &str) -> String {
    hex::encode(token_commitment(id_token))
}
