//! A Fiat-Shamir transcript with domain separation.
//!
//! Written here rather than taken from `merlin` so that challenges are
//! derived with the same RFC 9380 `hash_to_field` as everything else in this
//! crate (uniform scalars, no rejection loop) and the byte layout is ours to
//! document: every item is `label_len ‖ label ‖ data_len ‖ data` with
//! 8-byte big-endian lengths, absorbed into a running SHA-256.

use sha2::{Digest, Sha256};

use crate::group::{Point, Scalar, hash_to_scalar, point_to_bytes, scalar_to_bytes};

/// Prefix of every transcript's domain (after the crate-wide `QUORUMKEY-V1-`).
const DST_PREFIX: &[u8] = b"TRANSCRIPT-";

/// A running transcript of a proof's statement and messages.
#[derive(Clone)]
pub struct Transcript {
    hasher: Sha256,
    dst: Vec<u8>,
}

impl Transcript {
    /// Starts a transcript for one protocol, named by `domain` (for example
    /// `b"dleq"`); transcripts of different domains never collide.
    pub fn new(domain: &'static [u8]) -> Self {
        let mut dst = Vec::with_capacity(DST_PREFIX.len() + domain.len());
        dst.extend_from_slice(DST_PREFIX);
        dst.extend_from_slice(domain);
        let mut transcript = Self { hasher: Sha256::new(), dst };
        transcript.append_bytes(b"domain", domain);
        transcript
    }

    /// Absorbs a labelled byte string.
    pub fn append_bytes(&mut self, label: &'static [u8], data: &[u8]) {
        self.hasher.update((label.len() as u64).to_be_bytes());
        self.hasher.update(label);
        self.hasher.update((data.len() as u64).to_be_bytes());
        self.hasher.update(data);
    }

    /// Absorbs a labelled integer.
    pub fn append_u64(&mut self, label: &'static [u8], value: u64) {
        self.append_bytes(label, &value.to_be_bytes());
    }

    /// Absorbs a labelled point (compressed encoding).
    pub fn append_point(&mut self, label: &'static [u8], point: &Point) {
        self.append_bytes(label, &point_to_bytes(point));
    }

    /// Absorbs a labelled scalar (32 bytes big-endian).
    pub fn append_scalar(&mut self, label: &'static [u8], scalar: &Scalar) {
        self.append_bytes(label, &scalar_to_bytes(scalar));
    }

    /// Derives a challenge scalar from everything absorbed so far, then
    /// absorbs the challenge itself so later challenges depend on it.
    pub fn challenge_scalar(&mut self, label: &'static [u8]) -> Scalar {
        self.append_bytes(b"challenge", label);
        let digest = self.hasher.clone().finalize();
        let challenge = hash_to_scalar(&[digest.as_slice()], &self.dst);
        self.append_scalar(b"challenge-value", &challenge);
        challenge
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_depend_on_domain_order_and_content() {
        let mut a = Transcript::new(b"test");
        a.append_bytes(b"x", b"1");
        let mut b = Transcript::new(b"test");
        b.append_bytes(b"x", b"1");
        assert_eq!(a.clone().challenge_scalar(b"c"), b.clone().challenge_scalar(b"c"));

        let mut other_domain = Transcript::new(b"other");
        other_domain.append_bytes(b"x", b"1");
        assert_ne!(a.clone().challenge_scalar(b"c"), other_domain.challenge_scalar(b"c"));

        // Moving a byte from label to data must change the challenge.
        let mut c = Transcript::new(b"test");
        c.append_bytes(b"x1", b"");
        assert_ne!(a.clone().challenge_scalar(b"c"), c.challenge_scalar(b"c"));

        let first = a.challenge_scalar(b"c");
        let second = a.challenge_scalar(b"c");
        assert_ne!(first, second, "a second challenge must differ from the first");
    }
}
