//! An old dealer's reshare message: Feldman commitments to the non-constant
//! coefficients of `K` polynomials whose constants are its own shares, and
//! one encrypted vector of new shares per new node.

use bytes::{BufMut, Bytes};
use chacha20poly1305::Nonce;
use chacha20poly1305::aead::{Aead, Payload};
use commonware_codec::{Buf, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write};
use quorumkey_crypto::group::{
    AffinePoint, NonZeroScalar, Point, Scalar, generator, point_from_bytes, point_to_bytes, scalar_from_bytes,
    scalar_to_bytes,
};
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::shamir::Polynomial;
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{RESHARE_SHARE_LEN, ReshareContext, ReshareParams};
use crate::dealing::{ShareFault, pair_aad, pair_cipher};
use crate::error::DkgError;
use crate::msm::msm;
use crate::points::{decode_points, encode_points};
use crate::schnorr::{SCHNORR_PROOF_LEN, SchnorrProof};

const SHARE_KEY_LABEL: &[u8] = b"quorumkey/reshare/share-key/v1";

/// An old dealer's message for one reshare batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReshareDealing {
    /// `C_kl = a_kl·G` for key `k` and coefficient `1 ≤ l < t'`, key-major,
    /// `K·(t' - 1)` uncompressed points.
    pub commitments: Bytes,
    /// The dealer's ephemeral key `E = e·G` (compressed).
    pub ephemeral: [u8; 33],
    /// A proof that the dealer knows `e` (so a complaint, which reveals
    /// `sk_j·E`, is no Diffie-Hellman oracle on the recipient's key).
    pub ephemeral_proof: [u8; SCHNORR_PROOF_LEN],
    /// New node `j`'s shares at position `j - 1`: ChaCha20-Poly1305 of `K`
    /// scalars `a_k(j)`.
    pub ciphertexts: Vec<Bytes>,
}

impl Write for ReshareDealing {
    fn write(&self, buf: &mut impl BufMut) {
        self.commitments.write(buf);
        self.ephemeral.write(buf);
        self.ephemeral_proof.write(buf);
        self.ciphertexts.write(buf);
    }
}

impl EncodeSize for ReshareDealing {
    fn encode_size(&self) -> usize {
        self.commitments.encode_size()
            + self.ephemeral.encode_size()
            + self.ephemeral_proof.encode_size()
            + self.ciphertexts.encode_size()
    }
}

/// How large a reshare dealing may be when it is decoded. A dealing's
/// exact shape depends on its batch (the last batch of a handover is
/// shorter), which the ledger knows only once it has read the batch
/// number: it decodes within these bounds and [`ReshareDealing::parse`]
/// checks the exact shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReshareDealingBounds {
    /// Most recipients (ciphertexts).
    pub max_recipients: usize,
    /// Most bytes of commitments, and of one ciphertext.
    pub max_bytes: usize,
}

impl From<&ReshareParams> for ReshareDealingBounds {
    fn from(params: &ReshareParams) -> Self {
        Self {
            max_recipients: usize::from(params.new_nodes()),
            max_bytes: params.commitments_len().max(params.ciphertext_len()),
        }
    }
}

impl Read for ReshareDealing {
    type Cfg = ReshareDealingBounds;
    fn read_cfg(buf: &mut impl Buf, bounds: &ReshareDealingBounds) -> Result<Self, CodecError> {
        let commitments = Bytes::read_cfg(buf, &RangeCfg::new(0..=bounds.max_bytes))?;
        let ephemeral = <[u8; 33]>::read(buf)?;
        let ephemeral_proof = <[u8; SCHNORR_PROOF_LEN]>::read(buf)?;
        let ciphertexts = Vec::<Bytes>::read_cfg(
            buf,
            &(RangeCfg::new(1..=bounds.max_recipients), RangeCfg::new(0..=bounds.max_bytes)),
        )?;
        Ok(Self { commitments, ephemeral, ephemeral_proof, ciphertexts })
    }
}

/// A reshare dealing's checked public parts.
#[derive(Clone, Debug)]
pub struct ParsedReshareDealing {
    /// The commitments to coefficients `1..t'`, key-major.
    pub commitments: Vec<AffinePoint>,
    /// The ephemeral key.
    pub ephemeral: Point,
}

pub(crate) fn ephemeral_transcript(context: &ReshareContext, dealer: u16) -> quorumkey_crypto::transcript::Transcript {
    let mut transcript = context.transcript(b"reshare-ephemeral-key");
    transcript.append_u64(b"dealer", u64::from(dealer));
    transcript
}

impl ReshareDealing {
    /// Checks everything that needs no secret: the shape, every commitment
    /// on the curve, and the proof of the ephemeral key.
    pub fn parse(&self, context: &ReshareContext, dealer: u16) -> Result<ParsedReshareDealing, DkgError> {
        let parsed = self.parse_accepted(context.params())?;
        let proof = SchnorrProof::from_bytes(&self.ephemeral_proof)?;
        proof.verify(ephemeral_transcript(context, dealer), &generator(), &parsed.ephemeral)?;
        Ok(parsed)
    }

    /// The public parts of a dealing that [`ReshareDealing::parse`]
    /// accepted before, without checking the proof again.
    pub fn parse_accepted(&self, params: &ReshareParams) -> Result<ParsedReshareDealing, DkgError> {
        if self.commitments.len() != params.commitments_len()
            || self.ciphertexts.len() != usize::from(params.new_nodes())
            || self.ciphertexts.iter().any(|c| c.len() != params.ciphertext_len())
        {
            return Err(DkgError::Malformed("reshare dealing has the wrong shape for this batch"));
        }
        let commitments = decode_points(&self.commitments, "reshare commitment")?;
        let ephemeral = point_from_bytes("reshare ephemeral key", &self.ephemeral)?;
        Ok(ParsedReshareDealing { commitments, ephemeral })
    }
}

/// An old dealer's polynomials for one reshare batch: per key, degree
/// `t' - 1` with the dealer's share as the constant. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ReshareSecrets {
    #[zeroize(skip)]
    params: ReshareParams,
    polynomials: Vec<Polynomial>,
}

impl std::fmt::Debug for ReshareSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReshareSecrets").field("params", &self.params).finish_non_exhaustive()
    }
}

impl ReshareSecrets {
    /// Fresh polynomials through the dealer's shares `shares[k] = s_k` (one
    /// per key of the batch, in order).
    pub fn new<R: CryptoRng + ?Sized>(params: ReshareParams, shares: &[Scalar], rng: &mut R) -> Result<Self, DkgError> {
        if shares.len() != usize::from(params.keys()) {
            return Err(DkgError::InvalidParameters("one share per key of the reshare batch"));
        }
        let degree = usize::from(params.new_threshold()) - 1;
        let polynomials = shares.iter().map(|share| Polynomial::random_with_constant(*share, degree, rng)).collect();
        Ok(Self { params, polynomials })
    }

    /// Polynomials with given coefficients (constant first); for tests that
    /// build a cheating dealer.
    pub fn from_polynomials(params: ReshareParams, polynomials: Vec<Polynomial>) -> Result<Self, DkgError> {
        let degree = usize::from(params.new_threshold()) - 1;
        if polynomials.len() != usize::from(params.keys()) || polynomials.iter().any(|p| p.degree() != degree) {
            return Err(DkgError::InvalidParameters("K polynomials of degree t' - 1"));
        }
        Ok(Self { params, polynomials })
    }

    /// The Feldman commitments `a_kl·G` for `1 ≤ l < t'`, key-major
    /// (constant time in the secrets).
    pub fn commitments(&self) -> Vec<Point> {
        let mut out = Vec::with_capacity(usize::from(self.params.keys()) * self.params.commitments_per_key());
        for polynomial in &self.polynomials {
            for coefficient in polynomial.coefficients().iter().skip(1) {
                out.push(Point::mul_by_generator(coefficient));
            }
        }
        out
    }

    /// New node `j`'s shares of every key, `a_k(j)`.
    pub fn shares_for(&self, recipient: u16) -> Vec<Scalar> {
        let x = Scalar::from(u64::from(recipient));
        self.polynomials.iter().map(|p| p.evaluate(&x)).collect()
    }

    /// The whole dealing: commitments, and each new node's shares encrypted
    /// to its key (`recipients[j - 1]` is new node `j`'s).
    pub fn deal<R: CryptoRng + ?Sized>(
        &self,
        context: &ReshareContext,
        dealer: u16,
        recipients: &[Point],
        rng: &mut R,
    ) -> Result<ReshareDealing, DkgError> {
        if *context.params() != self.params {
            return Err(DkgError::InvalidParameters("reshare secrets made for another batch shape"));
        }
        let mut shares: Vec<Vec<Scalar>> = (1..=self.params.new_nodes()).map(|j| self.shares_for(j)).collect();
        let dealing = seal_reshare(context, dealer, &self.commitments(), &shares, recipients, rng);
        shares.zeroize();
        dealing
    }
}

/// Builds a reshare dealing from given commitments and per-recipient
/// shares (`shares[j - 1]` for new node `j`). [`ReshareSecrets::deal`]
/// uses it with true shares; tests use it to build a cheating dealer's.
pub fn seal_reshare<R: CryptoRng + ?Sized>(
    context: &ReshareContext,
    dealer: u16,
    commitments: &[Point],
    shares: &[Vec<Scalar>],
    recipients: &[Point],
    rng: &mut R,
) -> Result<ReshareDealing, DkgError> {
    let params = context.params();
    let nodes = usize::from(params.new_nodes());
    if recipients.len() != nodes || shares.len() != nodes {
        return Err(DkgError::InvalidParameters("one recipient key and one share vector per new node"));
    }
    if commitments.len() != usize::from(params.keys()) * params.commitments_per_key()
        || shares.iter().any(|s| s.len() != usize::from(params.keys()))
    {
        return Err(DkgError::InvalidParameters("K·(t' - 1) commitments and K shares per recipient"));
    }
    let ephemeral_secret = NonZeroScalar::generate_from_rng(rng);
    let ephemeral = generator() * ephemeral_secret.as_ref();
    let proof =
        SchnorrProof::prove(ephemeral_transcript(context, dealer), &generator(), &ephemeral, &ephemeral_secret, rng);
    let mut ciphertexts = Vec::with_capacity(nodes);
    for ((recipient, key), values) in (1u16..).zip(recipients).zip(shares) {
        let shared = *key * ephemeral_secret.as_ref();
        let mut plaintext = Zeroizing::new(Vec::with_capacity(values.len() * RESHARE_SHARE_LEN));
        for value in values {
            plaintext.extend_from_slice(&scalar_to_bytes(value));
        }
        let cipher = pair_cipher(SHARE_KEY_LABEL, context.id(), dealer, recipient, &ephemeral, &shared);
        let sealed = cipher
            .encrypt(&Nonce::default(), Payload { msg: &plaintext, aad: &pair_aad(context.id(), dealer, recipient) })
            .map_err(|_| DkgError::InvalidParameters("share vector too long to encrypt"))?;
        ciphertexts.push(Bytes::from(sealed));
    }
    Ok(ReshareDealing {
        commitments: Bytes::from(encode_points(commitments)),
        ephemeral: point_to_bytes(&ephemeral),
        ephemeral_proof: proof.to_bytes(),
        ciphertexts,
    })
}

/// Decrypts new node `j`'s shares with the shared point `e·pk_j`.
pub(crate) fn open_reshare_shares(
    context: &ReshareContext,
    dealer: u16,
    recipient: u16,
    ephemeral: &Point,
    shared: &Point,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<Scalar>>, ShareFault> {
    let cipher = pair_cipher(SHARE_KEY_LABEL, context.id(), dealer, recipient, ephemeral, shared);
    let plaintext = Zeroizing::new(
        cipher
            .decrypt(&Nonce::default(), Payload { msg: ciphertext, aad: &pair_aad(context.id(), dealer, recipient) })
            .map_err(|_| ShareFault::Undecryptable)?,
    );
    if plaintext.len() != usize::from(context.params().keys()) * RESHARE_SHARE_LEN {
        return Err(ShareFault::Undecryptable);
    }
    let mut out = Zeroizing::new(Vec::with_capacity(plaintext.len() / RESHARE_SHARE_LEN));
    for chunk in plaintext.chunks_exact(RESHARE_SHARE_LEN) {
        out.push(scalar_from_bytes(chunk).map_err(|_| ShareFault::NotAScalar)?);
    }
    Ok(out)
}

/// One dealing to check for recipient `j`: the dealer's public shares of
/// the batch's keys (the commitments to the constants, from the ledger),
/// its commitments to the other coefficients, the shares `j` received,
/// and the weights.
pub(crate) struct ShareCheck<'a> {
    pub(crate) old_public_shares: &'a [AffinePoint],
    pub(crate) commitments: &'a [AffinePoint],
    pub(crate) shares: &'a [Scalar],
    pub(crate) weights: &'a [Scalar],
}

/// Checks recipient `j`'s shares from several dealings at once:
/// `Σ_k r_k·Y_k + Σ_l j^l·Σ_k r_k·C_kl − (Σ_k r_k·s_k)·G = 0` summed over
/// the dealings with independent weights, in one multi-scalar
/// multiplication of `K·t'` points per dealing.
pub(crate) fn check_reshare_shares(params: &ReshareParams, checks: &[ShareCheck<'_>], recipient: u16) -> bool {
    let per_key = params.commitments_per_key();
    let keys = usize::from(params.keys());
    let x = Scalar::from(u64::from(recipient));
    // j, j², …, j^(t'-1).
    let powers: Vec<Scalar> = std::iter::successors(Some(x), |p| Some(*p * x)).take(per_key).collect();
    let mut terms = Vec::with_capacity(checks.len() * keys * (per_key + 1) + 1);
    let mut g_scalar = Scalar::ZERO;
    for check in checks {
        if check.shares.len() != keys
            || check.weights.len() != keys
            || check.old_public_shares.len() != keys
            || check.commitments.len() != keys * per_key
        {
            return false;
        }
        for (k, ((share, weight), old)) in
            check.shares.iter().zip(check.weights).zip(check.old_public_shares).enumerate()
        {
            g_scalar += *weight * share;
            terms.push((Point::from(*old), *weight));
            let row = &check.commitments[k * per_key..(k + 1) * per_key];
            for (commitment, power) in row.iter().zip(&powers) {
                terms.push((Point::from(*commitment), *weight * power));
            }
        }
    }
    terms.push((generator(), -g_scalar));
    bool::from(quorumkey_crypto::k256::elliptic_curve::Group::is_identity(&msm(&terms)))
}
