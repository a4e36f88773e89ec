//! Ethereum addresses with the EIP-55 mixed-case checksum.

use crate::group::{PublicKey, public_key_to_uncompressed};
use crate::hash::keccak256;

/// The 20-byte address: the last 20 bytes of `keccak256(X ‖ Y)`.
pub fn eth_address_bytes(key: &PublicKey) -> [u8; 20] {
    let uncompressed = public_key_to_uncompressed(key);
    let hash = keccak256(&uncompressed[1..]);
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash[12..]);
    address
}

/// The address as `0x` and 40 hex digits in EIP-55 checksum case.
pub fn eth_address(key: &PublicKey) -> String {
    to_checksum_address(&eth_address_bytes(key))
}

/// EIP-55: a hex letter is upper case where the matching nibble of
/// `keccak256(lowercase hex address)` is 8 or more.
pub fn to_checksum_address(address: &[u8; 20]) -> String {
    let lower = hex::encode(address);
    let hash = keccak256(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        out.push(if nibble >= 8 { c.to_ascii_uppercase() } else { c });
    }
    out
}
