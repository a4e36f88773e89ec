//! Chaum-Pedersen proofs of discrete-log equality (DLEQ): a prover who
//! knows `x` shows that `P1 = x·B1` and `P2 = x·B2` without revealing `x`.
//!
//! Non-interactive by Fiat-Shamir over a [`Transcript`] that the caller
//! starts and may fill with context first (batch, dealer, recipient), so a
//! proof made for one context never verifies in another. Proof format:
//! `challenge ‖ response`, two 32-byte scalars, with
//! `R1 = k·B1`, `R2 = k·B2`, `c = H(B1, P1, B2, P2, R1, R2)`, `z = k − c·x`;
//! the verifier rebuilds `R1 = z·B1 + c·P1`, `R2 = z·B2 + c·P2` and
//! compares challenges.

use k256::elliptic_curve::Group;
use k256::elliptic_curve::ops::LinearCombination;
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::error::{CryptoError, Result};
use crate::group::{NonZeroScalar, Point, Scalar, scalar_from_bytes, scalar_to_bytes};
use crate::transcript::Transcript;

/// Bytes in an encoded proof.
pub const DLEQ_PROOF_LEN: usize = 64;

/// The claim `log_{B1}(P1) == log_{B2}(P2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DleqStatement {
    /// First base (often `G`).
    pub base1: Point,
    /// `x·base1`.
    pub public1: Point,
    /// Second base.
    pub base2: Point,
    /// `x·base2`.
    pub public2: Point,
}

impl DleqStatement {
    /// The statement for a known `x`.
    pub fn from_secret(base1: Point, base2: Point, secret: &NonZeroScalar) -> Self {
        Self { base1, public1: base1 * secret.as_ref(), base2, public2: base2 * secret.as_ref() }
    }

    fn check_points(&self) -> Result<()> {
        for point in [self.base1, self.public1, self.base2, self.public2] {
            if bool::from(point.is_identity()) {
                return Err(CryptoError::IdentityPoint { what: "DLEQ statement point" });
            }
        }
        Ok(())
    }

    fn absorb(&self, transcript: &mut Transcript) {
        transcript.append_point(b"base1", &self.base1);
        transcript.append_point(b"public1", &self.public1);
        transcript.append_point(b"base2", &self.base2);
        transcript.append_point(b"public2", &self.public2);
    }
}

/// A non-interactive DLEQ proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DleqProof {
    /// Fiat-Shamir challenge `c`.
    pub challenge: Scalar,
    /// Response `z = k − c·x`.
    pub response: Scalar,
}

impl DleqProof {
    /// Proves the statement with witness `secret`. The nonce is hedged: it
    /// hashes fresh randomness together with the witness and the whole
    /// transcript, so neither a weak RNG nor a repeated RNG output alone
    /// can leak `x`.
    pub fn prove<R: CryptoRng + ?Sized>(
        transcript: &mut Transcript,
        statement: &DleqStatement,
        secret: &NonZeroScalar,
        rng: &mut R,
    ) -> Result<Self> {
        statement.check_points()?;
        statement.absorb(transcript);
        let mut randomness = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(randomness.as_mut());
        let mut nonce_transcript = transcript.clone();
        nonce_transcript.append_scalar(b"witness", secret.as_ref());
        nonce_transcript.append_bytes(b"randomness", randomness.as_ref());
        let nonce = Zeroizing::new(nonce_transcript.challenge_scalar(b"nonce"));
        let commitment1 = statement.base1 * *nonce;
        let commitment2 = statement.base2 * *nonce;
        transcript.append_point(b"commitment1", &commitment1);
        transcript.append_point(b"commitment2", &commitment2);
        let challenge = transcript.challenge_scalar(b"dleq-challenge");
        let response = *nonce - challenge * secret.as_ref();
        Ok(Self { challenge, response })
    }

    /// Verifies the proof for the statement, with a transcript holding the
    /// same context the prover used.
    pub fn verify(&self, transcript: &mut Transcript, statement: &DleqStatement) -> Result<()> {
        statement.check_points()?;
        statement.absorb(transcript);
        let commitment1 =
            Point::lincomb_vartime(&[(statement.base1, self.response), (statement.public1, self.challenge)]);
        let commitment2 =
            Point::lincomb_vartime(&[(statement.base2, self.response), (statement.public2, self.challenge)]);
        transcript.append_point(b"commitment1", &commitment1);
        transcript.append_point(b"commitment2", &commitment2);
        if transcript.challenge_scalar(b"dleq-challenge") == self.challenge {
            Ok(())
        } else {
            Err(CryptoError::InvalidProof("DLEQ challenge does not match"))
        }
    }

    /// `challenge ‖ response`.
    pub fn to_bytes(&self) -> [u8; DLEQ_PROOF_LEN] {
        let mut out = [0u8; DLEQ_PROOF_LEN];
        out[..32].copy_from_slice(&scalar_to_bytes(&self.challenge));
        out[32..].copy_from_slice(&scalar_to_bytes(&self.response));
        out
    }

    /// Parses `challenge ‖ response`; both canonical scalars.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != DLEQ_PROOF_LEN {
            return Err(CryptoError::InvalidLength { what: "DLEQ proof", expected: "64 bytes", actual: bytes.len() });
        }
        Ok(Self { challenge: scalar_from_bytes(&bytes[..32])?, response: scalar_from_bytes(&bytes[32..])? })
    }
}
