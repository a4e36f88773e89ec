//! The shape of a batch: how many nodes, the threshold, how many keys.

use quorumkey_crypto::shamir::majority_threshold;

use crate::error::DkgError;
use crate::points::AFFINE_POINT_LEN;

/// Bytes of authentication tag on each share ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes of one recipient's share pair `(a_k(j), b_k(j))` in a ciphertext.
pub const SHARE_PAIR_LEN: usize = 64;
/// Most keys one batch may make.
pub const MAX_BATCH_KEYS: u16 = 1024;
/// Most nodes a batch may have.
pub const MAX_NODES: u16 = 256;

/// The shape of one batch, the same for every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchParams {
    nodes: u16,
    threshold: u16,
    keys: u16,
}

impl BatchParams {
    /// A batch of `keys` keys among `nodes` nodes, threshold
    /// `floor(nodes/2) + 1`.
    pub fn new(nodes: u16, keys: u16) -> Result<Self, DkgError> {
        if nodes == 0 || nodes > MAX_NODES {
            return Err(DkgError::InvalidParameters("a batch has 1 to 256 nodes"));
        }
        if keys == 0 || keys > MAX_BATCH_KEYS {
            return Err(DkgError::InvalidParameters("a batch makes 1 to 1024 keys"));
        }
        let threshold = majority_threshold(u32::from(nodes)) as u16;
        Ok(Self { nodes, threshold, keys })
    }

    /// Number of nodes `n`.
    pub fn nodes(&self) -> u16 {
        self.nodes
    }

    /// Shares that rebuild a key, `t = floor(n/2) + 1`; polynomials have
    /// degree `t - 1`.
    pub fn threshold(&self) -> u16 {
        self.threshold
    }

    /// Keys per batch `K`.
    pub fn keys(&self) -> u16 {
        self.keys
    }

    /// Byzantine nodes tolerated, `f = floor((n - 1) / 3)`.
    pub fn max_faulty(&self) -> u16 {
        (self.nodes - 1) / 3
    }

    /// Qualified dealings a batch takes, `f + 1`: with at most `f`
    /// Byzantine nodes, one of them is honest, and one honest qualified
    /// dealer is all that secrecy and unbiasability need. (A batch whose
    /// dealings lose some to complaints takes more until it has `f + 1`.)
    pub fn dealers(&self) -> u16 {
        self.max_faulty() + 1
    }

    /// True if `node` is one of the batch's designated dealers: `f + 1`
    /// consecutive indexes, rotating with the batch number. (Others deal
    /// only when a designated dealer is late or disqualified.)
    pub fn designated_dealer(&self, batch: u64, node: u16) -> bool {
        let n = u64::from(self.nodes);
        let position = (u64::from(node) + n - 1 + n - batch % n) % n;
        node >= 1 && node <= self.nodes && position < u64::from(self.dealers())
    }

    /// Bytes of a dealing's commitments: `K·t` uncompressed points.
    pub fn commitments_len(&self) -> usize {
        usize::from(self.keys) * usize::from(self.threshold) * AFFINE_POINT_LEN
    }

    /// Bytes of one recipient's ciphertext.
    pub fn ciphertext_len(&self) -> usize {
        usize::from(self.keys) * SHARE_PAIR_LEN + TAG_LEN
    }

    /// Bytes of a node's public shares: `K` uncompressed points.
    pub fn public_shares_len(&self) -> usize {
        usize::from(self.keys) * AFFINE_POINT_LEN
    }

    /// An upper bound on an encoded dealing (with its length prefixes).
    pub fn dealing_len_bound(&self) -> usize {
        self.commitments_len() + usize::from(self.nodes) * (self.ciphertext_len() + 8) + 33 + 64 + 16
    }

    /// The largest batch whose dealing fits in `budget` bytes, for `nodes`
    /// nodes (at least 1 key; `None` if not even one fits).
    pub fn largest_fitting(nodes: u16, budget: usize) -> Option<u16> {
        let mut best = None;
        let mut keys = 1u16;
        while keys <= MAX_BATCH_KEYS {
            match Self::new(nodes, keys) {
                Ok(params) if params.dealing_len_bound() <= budget => best = Some(keys),
                _ => break,
            }
            keys += 1;
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let p = BatchParams::new(5, 256).unwrap();
        assert_eq!((p.threshold(), p.max_faulty()), (3, 1));
        assert_eq!(p.commitments_len(), 256 * 3 * 64);
        assert_eq!(p.ciphertext_len(), 256 * 64 + 16);
        assert!(BatchParams::new(0, 1).is_err());
        assert!(BatchParams::new(4, 0).is_err());
        assert!(BatchParams::new(4, 1025).is_err());
        assert_eq!(BatchParams::new(7, 1).unwrap().threshold(), 4);
        assert_eq!(BatchParams::new(7, 1).unwrap().max_faulty(), 2);
        assert_eq!(BatchParams::new(7, 1).unwrap().dealers(), 3);
        assert_eq!(BatchParams::new(5, 1).unwrap().dealers(), 2);
        assert_eq!(BatchParams::new(1, 1).unwrap().dealers(), 1);
        // Batch 0: nodes 1, 2 of 5; batch 1: nodes 2, 3; batch 4: 5, 1.
        let designated = |batch| (1..=5).filter(|j| p.designated_dealer(batch, *j)).collect::<Vec<_>>();
        assert_eq!(designated(0), vec![1, 2]);
        assert_eq!(designated(1), vec![2, 3]);
        assert_eq!(designated(4), vec![1, 5]);
        assert_eq!(designated(5), vec![1, 2]);
        assert!(!p.designated_dealer(0, 0) && !p.designated_dealer(0, 6));
        let fit = BatchParams::largest_fitting(5, 200 * 1024).unwrap();
        assert!(BatchParams::new(5, fit).unwrap().dealing_len_bound() <= 200 * 1024);
        assert!(BatchParams::new(5, fit + 1).unwrap().dealing_len_bound() > 200 * 1024);
    }
}
