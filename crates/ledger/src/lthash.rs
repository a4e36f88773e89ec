//! An incremental, order-independent hash of a set of key-value entries
//! (LtHash, Lewi et al., "Securing Update Propagation with Homomorphic
//! Hashing", 2019), so the state root is a function of the state's content
//! that costs O(changes) per block instead of O(state).
//!
//! Each entry hashes (blake3 in XOF mode) to 1024 16-bit lanes; the set's
//! hash is the lane-wise sum modulo 2^16. Adding an entry adds its lanes,
//! removing one subtracts them. Written here because no maintained crate
//! offers it; 1024 × 16 bits are the paper's parameters for 200-bit
//! security.

/// Number of 16-bit lanes.
pub const LANES: usize = 1024;
/// Bytes in the serialized accumulator.
pub const LTHASH_BYTES: usize = 2 * LANES;

const ENTRY_DOMAIN: &[u8] = b"quorumkey/lthash-entry/v1";

/// The running hash of a set of entries.
#[derive(Clone, PartialEq, Eq)]
pub struct LtHash {
    lanes: Box<[u16; LANES]>,
}

impl std::fmt::Debug for LtHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LtHash({})", hex_prefix(&self.checksum()))
    }
}

fn hex_prefix(bytes: &[u8; 32]) -> String {
    bytes[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Default for LtHash {
    fn default() -> Self {
        Self { lanes: Box::new([0u16; LANES]) }
    }
}

impl LtHash {
    fn entry_lanes(key: &[u8], value: &[u8]) -> [u16; LANES] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(ENTRY_DOMAIN);
        hasher.update(&(key.len() as u64).to_le_bytes());
        hasher.update(key);
        hasher.update(&(value.len() as u64).to_le_bytes());
        hasher.update(value);
        let mut bytes = [0u8; LTHASH_BYTES];
        hasher.finalize_xof().fill(&mut bytes);
        let mut lanes = [0u16; LANES];
        for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = u16::from_le_bytes([pair[0], pair[1]]);
        }
        lanes
    }

    /// Adds an entry to the set.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        for (acc, lane) in self.lanes.iter_mut().zip(Self::entry_lanes(key, value)) {
            *acc = acc.wrapping_add(lane);
        }
    }

    /// Removes an entry (that was inserted) from the set.
    pub fn remove(&mut self, key: &[u8], value: &[u8]) {
        for (acc, lane) in self.lanes.iter_mut().zip(Self::entry_lanes(key, value)) {
            *acc = acc.wrapping_sub(lane);
        }
    }

    /// The accumulator as bytes (little-endian lanes).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.lanes.iter().flat_map(|lane| lane.to_le_bytes()).collect()
    }

    /// Parses [`LtHash::to_bytes`]; `None` unless exactly 2048 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != LTHASH_BYTES {
            return None;
        }
        let mut lanes = Box::new([0u16; LANES]);
        for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = u16::from_le_bytes([pair[0], pair[1]]);
        }
        Some(Self { lanes })
    }

    /// A 32-byte digest of the accumulator.
    pub fn checksum(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"quorumkey/lthash-checksum/v1");
        hasher.update(&self.to_bytes());
        *hasher.finalize().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_independent_and_invertible() {
        let mut a = LtHash::default();
        a.insert(b"k1", b"v1");
        a.insert(b"k2", b"v2");
        let mut b = LtHash::default();
        b.insert(b"k2", b"v2");
        b.insert(b"k1", b"v1");
        assert_eq!(a, b);
        b.remove(b"k2", b"v2");
        let mut c = LtHash::default();
        c.insert(b"k1", b"v1");
        assert_eq!(b, c);
        // Key and value boundaries matter.
        let mut d = LtHash::default();
        d.insert(b"k1v", b"1");
        assert_ne!(c, d);
        assert_eq!(LtHash::from_bytes(&a.to_bytes()), Some(a));
        assert_eq!(LtHash::from_bytes(&[0u8; 3]), None);
    }
}
