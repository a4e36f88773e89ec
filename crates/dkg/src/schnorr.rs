//! Schnorr proofs of knowledge of a discrete logarithm, `P = w·B`, in the
//! form `(R, z)` with `R = k·B`, `c = H(transcript, B, P, R)` and
//! `z = k + c·w`, so the check `z·B = R + c·P` is one linear equation that
//! batches with others.

use quorumkey_crypto::group::{Point, Scalar, point_from_bytes, point_to_bytes, scalar_from_bytes};
use quorumkey_crypto::transcript::Transcript;
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::error::DkgError;

/// Bytes in an encoded proof: compressed `R`, then `z`.
pub(crate) const SCHNORR_PROOF_LEN: usize = 33 + 32;

/// A proof of knowledge of `log_B(P)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SchnorrProof {
    pub(crate) nonce_commitment: Point,
    pub(crate) response: Scalar,
}

fn absorb(transcript: &mut Transcript, base: &Point, public: &Point, nonce_commitment: &Point) {
    transcript.append_point(b"base", base);
    transcript.append_point(b"public", public);
    transcript.append_point(b"nonce-commitment", nonce_commitment);
}

/// The challenge for a statement and nonce commitment.
pub(crate) fn challenge(mut transcript: Transcript, base: &Point, public: &Point, nonce_commitment: &Point) -> Scalar {
    absorb(&mut transcript, base, public, nonce_commitment);
    transcript.challenge_scalar(b"schnorr-challenge")
}

impl SchnorrProof {
    /// Proves knowledge of `witness` with `public = witness·base`. The nonce
    /// is hedged: it hashes fresh randomness with the witness and the
    /// transcript.
    pub(crate) fn prove<R: CryptoRng + ?Sized>(
        transcript: Transcript,
        base: &Point,
        public: &Point,
        witness: &Scalar,
        rng: &mut R,
    ) -> Self {
        let mut randomness = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(randomness.as_mut());
        let mut nonce_transcript = transcript.clone();
        nonce_transcript.append_point(b"public", public);
        nonce_transcript.append_scalar(b"witness", witness);
        nonce_transcript.append_bytes(b"randomness", randomness.as_ref());
        let nonce = Zeroizing::new(nonce_transcript.challenge_scalar(b"nonce"));
        let nonce_commitment = *base * *nonce;
        let c = challenge(transcript, base, public, &nonce_commitment);
        Self { nonce_commitment, response: *nonce + c * witness }
    }

    /// Checks the proof on its own.
    pub(crate) fn verify(&self, transcript: Transcript, base: &Point, public: &Point) -> Result<(), DkgError> {
        let c = challenge(transcript, base, public, &self.nonce_commitment);
        let lhs = *base * self.response;
        if lhs == self.nonce_commitment + *public * c {
            Ok(())
        } else {
            Err(DkgError::InvalidProof("Schnorr proof of knowledge"))
        }
    }

    pub(crate) fn to_bytes(self) -> [u8; SCHNORR_PROOF_LEN] {
        let mut out = [0u8; SCHNORR_PROOF_LEN];
        out[..33].copy_from_slice(&point_to_bytes(&self.nonce_commitment));
        out[33..].copy_from_slice(&quorumkey_crypto::group::scalar_to_bytes(&self.response));
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8; SCHNORR_PROOF_LEN]) -> Result<Self, DkgError> {
        Ok(Self {
            nonce_commitment: point_from_bytes("Schnorr nonce commitment", &bytes[..33])?,
            response: scalar_from_bytes(&bytes[33..])?,
        })
    }
}
