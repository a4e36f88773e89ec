//! A dealer's message: Pedersen commitments to `K` polynomial pairs and one
//! encrypted vector of shares per recipient.

use bytes::{BufMut, Bytes};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use commonware_codec::{Buf, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write};
use quorumkey_crypto::group::{
    AffinePoint, NonZeroScalar, Point, Scalar, generator, generator_h, pedersen_commit, point_from_bytes,
    point_to_bytes, scalar_from_bytes, scalar_to_bytes,
};
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::shamir::Polynomial;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::context::BatchContext;
use crate::error::DkgError;
use crate::msm::msm;
use crate::params::{BatchParams, SHARE_PAIR_LEN};
use crate::points::{decode_points, encode_points};
use crate::schnorr::{SCHNORR_PROOF_LEN, SchnorrProof};

/// One recipient's share of one key: a point on each of the dealer's two
/// polynomials. Secret.
#[derive(Clone, Copy, Default, PartialEq, Eq, Zeroize)]
pub struct SharePair {
    /// `a_k(j)`: the share of the secret.
    pub value: Scalar,
    /// `b_k(j)`: the share of the blinding polynomial.
    pub blinding: Scalar,
}

impl std::fmt::Debug for SharePair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharePair(<redacted>)")
    }
}

/// A dealer's message for one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dealing {
    /// `C_kl = a_kl·G + b_kl·H` for key `k` and coefficient `l`, key-major,
    /// `K·t` uncompressed points.
    pub commitments: Bytes,
    /// The dealer's ephemeral key `E = e·G` (compressed).
    pub ephemeral: [u8; 33],
    /// A proof that the dealer knows `e`: a complaint then reveals only
    /// `e·pk_j`, which the dealer could compute anyway, so complaints are
    /// no Diffie-Hellman oracle on the recipients' keys.
    pub ephemeral_proof: [u8; SCHNORR_PROOF_LEN],
    /// Recipient `j`'s shares at position `j - 1`: ChaCha20-Poly1305 of
    /// `K` pairs `(a_k(j), b_k(j))`, 64 bytes each.
    pub ciphertexts: Vec<Bytes>,
}

impl Write for Dealing {
    fn write(&self, buf: &mut impl BufMut) {
        self.commitments.write(buf);
        self.ephemeral.write(buf);
        self.ephemeral_proof.write(buf);
        self.ciphertexts.write(buf);
    }
}

impl EncodeSize for Dealing {
    fn encode_size(&self) -> usize {
        self.commitments.encode_size()
            + self.ephemeral.encode_size()
            + self.ephemeral_proof.encode_size()
            + self.ciphertexts.encode_size()
    }
}

impl Read for Dealing {
    type Cfg = BatchParams;
    fn read_cfg(buf: &mut impl Buf, params: &BatchParams) -> Result<Self, CodecError> {
        let commitments = Bytes::read_cfg(buf, &RangeCfg::exact(params.commitments_len()))?;
        let ephemeral = <[u8; 33]>::read(buf)?;
        let ephemeral_proof = <[u8; SCHNORR_PROOF_LEN]>::read(buf)?;
        let ciphertexts = Vec::<Bytes>::read_cfg(
            buf,
            &(RangeCfg::exact(usize::from(params.nodes())), RangeCfg::exact(params.ciphertext_len())),
        )?;
        Ok(Self { commitments, ephemeral, ephemeral_proof, ciphertexts })
    }
}

/// A dealing's checked public parts.
#[derive(Clone, Debug)]
pub struct ParsedDealing {
    /// The commitments, key-major.
    pub commitments: Vec<AffinePoint>,
    /// The ephemeral key.
    pub ephemeral: Point,
}

impl Dealing {
    /// Checks everything about a dealing that needs no secret: the shape,
    /// every commitment on the curve, and the proof of the ephemeral key.
    /// (Whether each recipient's shares are right only that recipient can
    /// tell, or anyone after a complaint.)
    pub fn parse(&self, context: &BatchContext, dealer: u16) -> Result<ParsedDealing, DkgError> {
        let parsed = self.parse_accepted(context.params())?;
        let proof = SchnorrProof::from_bytes(&self.ephemeral_proof)?;
        proof.verify(ephemeral_transcript(context, dealer), &generator(), &parsed.ephemeral)?;
        Ok(parsed)
    }

    /// The public parts of a dealing that [`Dealing::parse`] accepted before
    /// (one the ledger holds): the shape and the points, without checking
    /// the ephemeral key's proof again.
    pub fn parse_accepted(&self, params: &BatchParams) -> Result<ParsedDealing, DkgError> {
        if self.commitments.len() != params.commitments_len()
            || self.ciphertexts.len() != usize::from(params.nodes())
            || self.ciphertexts.iter().any(|c| c.len() != params.ciphertext_len())
        {
            return Err(DkgError::Malformed("dealing has the wrong shape for this batch"));
        }
        let commitments = decode_points(&self.commitments, "dealing commitment")?;
        let ephemeral = point_from_bytes("dealing ephemeral key", &self.ephemeral)?;
        Ok(ParsedDealing { commitments, ephemeral })
    }
}

fn ephemeral_transcript(context: &BatchContext, dealer: u16) -> quorumkey_crypto::transcript::Transcript {
    let mut transcript = context.transcript(b"dkg-ephemeral-key");
    transcript.append_u64(b"dealer", u64::from(dealer));
    transcript
}

/// A dealer's secret polynomials for one batch: for each key a pair
/// `(a_k, b_k)` of degree `t - 1`. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DealerSecrets {
    #[zeroize(skip)]
    params: BatchParams,
    secret: Vec<Polynomial>,
    blinding: Vec<Polynomial>,
}

impl std::fmt::Debug for DealerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DealerSecrets").field("params", &self.params).finish_non_exhaustive()
    }
}

impl DealerSecrets {
    /// Fresh random polynomials for a batch.
    pub fn random<R: CryptoRng + ?Sized>(params: BatchParams, rng: &mut R) -> Self {
        let degree = usize::from(params.threshold()) - 1;
        let keys = usize::from(params.keys());
        Self {
            params,
            secret: (0..keys).map(|_| Polynomial::random(degree, rng)).collect(),
            blinding: (0..keys).map(|_| Polynomial::random(degree, rng)).collect(),
        }
    }

    /// The Pedersen commitments `a_kl·G + b_kl·H`, key-major (constant
    /// time in the secrets).
    pub fn commitments(&self) -> Vec<Point> {
        let mut out = Vec::with_capacity(usize::from(self.params.keys()) * usize::from(self.params.threshold()));
        for (a, b) in self.secret.iter().zip(&self.blinding) {
            for (a_l, b_l) in a.coefficients().iter().zip(b.coefficients()) {
                out.push(pedersen_commit(a_l, b_l));
            }
        }
        out
    }

    /// Recipient `j`'s shares of every key.
    pub fn shares_for(&self, recipient: u16) -> Vec<SharePair> {
        let x = Scalar::from(u64::from(recipient));
        self.secret
            .iter()
            .zip(&self.blinding)
            .map(|(a, b)| SharePair { value: a.evaluate(&x), blinding: b.evaluate(&x) })
            .collect()
    }

    /// The dealer's contribution to key `k` (its `a_k(0)`); for tests.
    pub fn contribution(&self, key: usize) -> Option<Scalar> {
        self.secret.get(key).map(Polynomial::constant)
    }

    /// The whole dealing: commitments, and each recipient's shares
    /// encrypted to its key (`recipients[j - 1]` is node `j`'s).
    pub fn deal<R: CryptoRng + ?Sized>(
        &self,
        context: &BatchContext,
        dealer: u16,
        recipients: &[Point],
        rng: &mut R,
    ) -> Result<Dealing, DkgError> {
        self.seal_with(Bytes::from(encode_points(&self.commitments())), context, dealer, recipients, rng)
    }

    /// The dealing with these (encoded) commitments and every recipient's
    /// true shares, zeroized once encrypted.
    fn seal_with<R: CryptoRng + ?Sized>(
        &self,
        commitments: Bytes,
        context: &BatchContext,
        dealer: u16,
        recipients: &[Point],
        rng: &mut R,
    ) -> Result<Dealing, DkgError> {
        let mut shares: Vec<Vec<SharePair>> = (1..=self.params.nodes()).map(|j| self.shares_for(j)).collect();
        let dealing = seal_encoded(context, dealer, commitments, &shares, recipients, rng);
        shares.zeroize();
        dealing
    }
}

/// A dealer's polynomials with their commitments already computed and
/// encoded: the costly part of a dealing, and nothing in it depends on the
/// batch. A node prepares one while it waits and seals it when a batch
/// opens, so the dealing phase does not wait for the commitments. Kept in
/// memory only, zeroized on drop, and sealing consumes it: one set of
/// polynomials never serves two batches.
pub struct PreparedDealing {
    secrets: DealerSecrets,
    commitments: Bytes,
}

impl std::fmt::Debug for PreparedDealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedDealing").field("params", &self.secrets.params).finish_non_exhaustive()
    }
}

impl PreparedDealing {
    /// Fresh polynomials for batches of shape `params`, with their
    /// commitments.
    pub fn new<R: CryptoRng + ?Sized>(params: BatchParams, rng: &mut R) -> Self {
        let secrets = DealerSecrets::random(params, rng);
        let commitments = Bytes::from(encode_points(&secrets.commitments()));
        Self { secrets, commitments }
    }

    /// The batch shape it was made for.
    pub fn params(&self) -> BatchParams {
        self.secrets.params
    }

    /// The dealing for one batch (of the same shape).
    pub fn seal<R: CryptoRng + ?Sized>(
        self,
        context: &BatchContext,
        dealer: u16,
        recipients: &[Point],
        rng: &mut R,
    ) -> Result<Dealing, DkgError> {
        if *context.params() != self.secrets.params {
            return Err(DkgError::InvalidParameters("a dealing prepared for another batch shape"));
        }
        self.secrets.seal_with(self.commitments.clone(), context, dealer, recipients, rng)
    }
}

/// Builds a dealing from given commitments and per-recipient shares
/// (`shares[j - 1]` for node `j`). [`DealerSecrets::deal`] uses it with
/// true shares; tests use it to build the dealings of a cheating dealer.
pub fn seal_dealing<R: CryptoRng + ?Sized>(
    context: &BatchContext,
    dealer: u16,
    commitments: &[Point],
    shares: &[Vec<SharePair>],
    recipients: &[Point],
    rng: &mut R,
) -> Result<Dealing, DkgError> {
    seal_encoded(context, dealer, Bytes::from(encode_points(commitments)), shares, recipients, rng)
}

fn seal_encoded<R: CryptoRng + ?Sized>(
    context: &BatchContext,
    dealer: u16,
    commitments: Bytes,
    shares: &[Vec<SharePair>],
    recipients: &[Point],
    rng: &mut R,
) -> Result<Dealing, DkgError> {
    let params = context.params();
    let nodes = usize::from(params.nodes());
    if recipients.len() != nodes || shares.len() != nodes {
        return Err(DkgError::InvalidParameters("one recipient key and one share vector per node"));
    }
    if commitments.len() != params.commitments_len() || shares.iter().any(|s| s.len() != usize::from(params.keys())) {
        return Err(DkgError::InvalidParameters("K·t commitments and K shares per recipient"));
    }
    let ephemeral_secret = NonZeroScalar::generate_from_rng(rng);
    let ephemeral = generator() * ephemeral_secret.as_ref();
    let proof =
        SchnorrProof::prove(ephemeral_transcript(context, dealer), &generator(), &ephemeral, &ephemeral_secret, rng);
    let mut ciphertexts = Vec::with_capacity(nodes);
    for ((recipient, key), pairs) in (1u16..).zip(recipients).zip(shares) {
        let shared = *key * ephemeral_secret.as_ref();
        let mut plaintext = Zeroizing::new(Vec::with_capacity(pairs.len() * SHARE_PAIR_LEN));
        for pair in pairs {
            plaintext.extend_from_slice(&scalar_to_bytes(&pair.value));
            plaintext.extend_from_slice(&scalar_to_bytes(&pair.blinding));
        }
        let cipher = share_cipher(context, dealer, recipient, &ephemeral, &shared);
        let sealed = cipher
            .encrypt(&Nonce::default(), Payload { msg: &plaintext, aad: &share_aad(context, dealer, recipient) })
            .map_err(|_| DkgError::InvalidParameters("share vector too long to encrypt"))?;
        ciphertexts.push(Bytes::from(sealed));
    }
    Ok(Dealing { commitments, ephemeral: point_to_bytes(&ephemeral), ephemeral_proof: proof.to_bytes(), ciphertexts })
}

/// The AEAD for the pair (dealer, recipient): the key hashes the batch,
/// both indexes, the ephemeral key and the shared point `e·pk_j`. Each key
/// encrypts one message, so the nonce is fixed at zero.
fn share_cipher(
    context: &BatchContext,
    dealer: u16,
    recipient: u16,
    ephemeral: &Point,
    shared: &Point,
) -> ChaCha20Poly1305 {
    pair_cipher(b"quorumkey/dkg/share-key/v1", context.id(), dealer, recipient, ephemeral, shared)
}

/// The AEAD of one dealer-recipient pair of a sharing identified by `id`
/// (a DKG batch or a reshare batch), under a key that hashes `label`, `id`,
/// both indexes, the ephemeral key and the shared point.
pub(crate) fn pair_cipher(
    label: &[u8],
    id: &[u8; 32],
    dealer: u16,
    recipient: u16,
    ephemeral: &Point,
    shared: &Point,
) -> ChaCha20Poly1305 {
    let mut hasher = Sha256::new();
    hasher.update(label);
    hasher.update(id);
    hasher.update(dealer.to_be_bytes());
    hasher.update(recipient.to_be_bytes());
    hasher.update(point_to_bytes(ephemeral));
    hasher.update(point_to_bytes(shared));
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&hasher.finalize());
    ChaCha20Poly1305::new(&Key::from(*key))
}

fn share_aad(context: &BatchContext, dealer: u16, recipient: u16) -> Vec<u8> {
    pair_aad(context.id(), dealer, recipient)
}

/// The associated data of one pair's ciphertext: the sharing and both
/// indexes.
pub(crate) fn pair_aad(id: &[u8; 32], dealer: u16, recipient: u16) -> Vec<u8> {
    let mut aad = id.to_vec();
    aad.extend_from_slice(&dealer.to_be_bytes());
    aad.extend_from_slice(&recipient.to_be_bytes());
    aad
}

/// Why a recipient's shares from a dealing are not acceptable. Each means
/// the dealer cheated (given a correct shared point).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareFault {
    /// The ciphertext does not decrypt.
    Undecryptable,
    /// A share is not a canonical scalar.
    NotAScalar,
    /// The shares do not match the commitments.
    Inconsistent,
}

impl ShareFault {
    /// A short description.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Undecryptable => "the shares do not decrypt",
            Self::NotAScalar => "a share is not a scalar",
            Self::Inconsistent => "the shares do not match the commitments",
        }
    }
}

/// Decrypts recipient `j`'s shares with the shared point `e·pk_j`.
pub(crate) fn open_shares(
    context: &BatchContext,
    dealer: u16,
    recipient: u16,
    ephemeral: &Point,
    shared: &Point,
    ciphertext: &[u8],
) -> Result<Vec<SharePair>, ShareFault> {
    let cipher = share_cipher(context, dealer, recipient, ephemeral, shared);
    let plaintext = Zeroizing::new(
        cipher
            .decrypt(&Nonce::default(), Payload { msg: ciphertext, aad: &share_aad(context, dealer, recipient) })
            .map_err(|_| ShareFault::Undecryptable)?,
    );
    if plaintext.len() != usize::from(context.params().keys()) * SHARE_PAIR_LEN {
        return Err(ShareFault::Undecryptable);
    }
    let mut out = Vec::with_capacity(plaintext.len() / SHARE_PAIR_LEN);
    for chunk in plaintext.chunks_exact(SHARE_PAIR_LEN) {
        let value = scalar_from_bytes(&chunk[..32]).map_err(|_| ShareFault::NotAScalar)?;
        let blinding = scalar_from_bytes(&chunk[32..]).map_err(|_| ShareFault::NotAScalar)?;
        out.push(SharePair { value, blinding });
    }
    Ok(out)
}

/// Checks all of recipient `j`'s shares against the commitments at once:
/// `Σ_l j^l·Σ_k r_k·C_kl − (Σ_k r_k·s_k)·G − (Σ_k r_k·s'_k)·H = 0` for the
/// weights `r_k` (one multi-scalar multiplication of `K·t + 2` points).
pub(crate) fn check_shares(
    params: &BatchParams,
    commitments: &[AffinePoint],
    recipient: u16,
    shares: &[SharePair],
    weights: &[Scalar],
) -> bool {
    check_many(params, &[(commitments, shares, weights)], recipient)
}

/// The same check for several dealings at once (independent weights per
/// dealing and key), in one multi-scalar multiplication: larger sums are
/// cheaper per point.
pub(crate) fn check_many(
    params: &BatchParams,
    dealings: &[(&[AffinePoint], &[SharePair], &[Scalar])],
    recipient: u16,
) -> bool {
    let t = usize::from(params.threshold());
    let keys = usize::from(params.keys());
    let x = Scalar::from(u64::from(recipient));
    let powers: Vec<Scalar> = std::iter::successors(Some(Scalar::ONE), |p| Some(*p * x)).take(t).collect();
    let mut terms = Vec::with_capacity(dealings.len() * keys * t + 2);
    let mut g_scalar = Scalar::ZERO;
    let mut h_scalar = Scalar::ZERO;
    for (commitments, shares, weights) in dealings {
        if shares.len() != keys || weights.len() != keys || commitments.len() != keys * t {
            return false;
        }
        for ((share, weight), row) in shares.iter().zip(*weights).zip(commitments.chunks_exact(t)) {
            g_scalar += *weight * share.value;
            h_scalar += *weight * share.blinding;
            // Short, positive scalars (weight times a small power): the
            // multi-scalar multiplication's cost follows their length.
            for (commitment, power) in row.iter().zip(&powers) {
                terms.push((Point::from(*commitment), *weight * power));
            }
        }
    }
    terms.push((generator(), -g_scalar));
    terms.push((generator_h(), -h_scalar));
    bool::from(quorumkey_crypto::k256::elliptic_curve::Group::is_identity(&msm(&terms)))
}
