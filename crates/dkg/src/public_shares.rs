//! Public shares: node `j` publishes `Y_kj = s_kj·G` for every key with one
//! proof that each is the G-part of the binding commitment `P_kj`; `t`
//! valid publications give every key's public key and every node's public
//! share by Lagrange interpolation in the exponent.
//!
//! The proof: with weights `ρ_k` derived from the published `Y_kj`,
//! `D = Σ_k ρ_k·(P_kj − Y_kj)` must equal `w·H` for a `w` the prover knows
//! (`w = Σ_k ρ_k·s'_kj`), shown by a Schnorr proof for base `H`. If some
//! `Y_kj` were not `s_kj·G`, `D` would have a G-component (except with
//! probability 2^-128 over `ρ`), and a proof for it would give `log_G(H)`.

use bytes::{BufMut, Bytes};
use commonware_codec::{Buf, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write};
use quorumkey_crypto::group::{
    AffinePoint, Point, Scalar, generator_h, point_from_bytes, point_to_bytes, scalar_from_u64,
};
use quorumkey_crypto::k256::elliptic_curve::group::GroupEncoding;
use quorumkey_crypto::k256::elliptic_curve::{BatchNormalize, Group};
use quorumkey_crypto::shamir::lagrange_coefficients;
use rand_core::CryptoRng;

use crate::aggregate::AggregateCommitments;
use crate::context::BatchContext;
use crate::error::DkgError;
use crate::msm::msm;
use crate::params::BatchParams;
use crate::points::{decode_points, encode_points};
use crate::recipient::KeyShares;
use crate::schnorr::{SCHNORR_PROOF_LEN, SchnorrProof, challenge};

/// A node's public shares of a batch with their proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicShares {
    /// `Y_kj = s_kj·G` for each key, `K` uncompressed points.
    pub shares: Bytes,
    /// `D = w·H` (compressed).
    pub blinding_commitment: [u8; 33],
    /// Schnorr proof of `log_H(D)`.
    pub proof: [u8; SCHNORR_PROOF_LEN],
}

impl Write for PublicShares {
    fn write(&self, buf: &mut impl BufMut) {
        self.shares.write(buf);
        self.blinding_commitment.write(buf);
        self.proof.write(buf);
    }
}

impl EncodeSize for PublicShares {
    fn encode_size(&self) -> usize {
        self.shares.encode_size() + 33 + SCHNORR_PROOF_LEN
    }
}

impl Read for PublicShares {
    type Cfg = BatchParams;
    fn read_cfg(buf: &mut impl Buf, params: &BatchParams) -> Result<Self, CodecError> {
        Ok(Self {
            shares: Bytes::read_cfg(buf, &RangeCfg::exact(params.public_shares_len()))?,
            blinding_commitment: <[u8; 33]>::read(buf)?,
            proof: <[u8; SCHNORR_PROOF_LEN]>::read(buf)?,
        })
    }
}

fn rho(context: &BatchContext, node: u16, shares: &[u8]) -> Vec<Scalar> {
    context.weights(b"public-shares-rho", &[&node.to_be_bytes(), shares], usize::from(context.params().keys()))
}

fn proof_transcript(context: &BatchContext, node: u16, shares: &[u8]) -> quorumkey_crypto::transcript::Transcript {
    let mut transcript = context.transcript(b"dkg-public-shares");
    transcript.append_u64(b"node", u64::from(node));
    transcript.append_bytes(b"shares-hash", blake3::hash(shares).as_bytes());
    transcript
}

impl KeyShares {
    /// This node's public shares with their proof.
    pub fn prove_public_shares<R: CryptoRng + ?Sized>(&self, context: &BatchContext, rng: &mut R) -> PublicShares {
        let points: Vec<Point> = self.shares().iter().map(|pair| Point::mul_by_generator(&pair.value)).collect();
        prove_for_points(context, self, &points, rng)
    }
}

/// The publication of `points` as `shares`' public shares, with the proof
/// made from `shares`' blinding parts (for honest nodes `points` are
/// `s_kj·G`; tests pass others to play a cheating node).
fn prove_for_points<R: CryptoRng + ?Sized>(
    context: &BatchContext,
    shares: &KeyShares,
    points: &[Point],
    rng: &mut R,
) -> PublicShares {
    let encoded = encode_points(points);
    let weights = rho(context, shares.node(), &encoded);
    let witness = zeroize::Zeroizing::new(
        shares.shares().iter().zip(&weights).map(|(pair, r)| pair.blinding * r).sum::<Scalar>(),
    );
    let blinding_commitment = quorumkey_crypto::group::mul_by_h(&witness);
    let proof = SchnorrProof::prove(
        proof_transcript(context, shares.node(), &encoded),
        &generator_h(),
        &blinding_commitment,
        &witness,
        rng,
    );
    PublicShares {
        shares: Bytes::from(encoded),
        blinding_commitment: point_to_bytes(&blinding_commitment),
        proof: proof.to_bytes(),
    }
}

struct ParsedPublication {
    node: u16,
    shares: Vec<AffinePoint>,
    rho: Vec<Scalar>,
    blinding_commitment: Point,
    proof: SchnorrProof,
    challenge: Scalar,
}

fn parse_publication(
    context: &BatchContext,
    node: u16,
    publication: &PublicShares,
) -> Result<ParsedPublication, DkgError> {
    if node == 0 || node > context.params().nodes() {
        return Err(DkgError::Malformed("public shares from a node outside the batch"));
    }
    if publication.shares.len() != context.params().public_shares_len() {
        return Err(DkgError::Malformed("public shares have the wrong length"));
    }
    let shares = decode_points(&publication.shares, "public share")?;
    let blinding_commitment = point_from_bytes("blinding commitment", &publication.blinding_commitment)?;
    let proof = SchnorrProof::from_bytes(&publication.proof)?;
    let challenge = challenge(
        proof_transcript(context, node, &publication.shares),
        &generator_h(),
        &blinding_commitment,
        &proof.nonce_commitment,
    );
    Ok(ParsedPublication {
        node,
        rho: rho(context, node, &publication.shares),
        shares,
        blinding_commitment,
        proof,
        challenge,
    })
}

/// One multi-scalar multiplication that is the identity iff (except with
/// probability about 2^-128 per attempt) every publication's two equations
/// hold: `D_j = Σ_k ρ_kj·(Σ_l j^l·A_kl − Y_kj)` and `z_j·H = R_j + c_j·D_j`.
///
/// The first equations are summed with weight 1: each publication's own
/// 128-bit `ρ_kj` (derived from its `Y_kj`) already weighs its errors, so a
/// wrong `Y_kj` adds a G-component that the other publications' terms
/// cancel only if the last publication made hits one value out of 2^128
/// (and the `D_j` are G-free by their proofs). The proofs' equations come
/// in with weights `β_j` derived from all of it. Every large term then has
/// a short scalar (`ρ_kj`, or `Σ_j ρ_kj·j^l`: 128 bits plus a few for small
/// `n`), which is what the multi-scalar multiplication's cost follows.
fn batch_holds(context: &BatchContext, aggregate: &AggregateCommitments, items: &[&ParsedPublication]) -> bool {
    let params = context.params();
    let t = usize::from(params.threshold());
    let keys = usize::from(params.keys());
    let mut seed: Vec<Vec<u8>> = Vec::with_capacity(items.len());
    for item in items {
        let mut part = item.node.to_be_bytes().to_vec();
        part.extend_from_slice(&point_to_bytes(&item.blinding_commitment));
        part.extend_from_slice(&item.proof.to_bytes());
        part.extend_from_slice(&item.challenge.to_bytes());
        seed.push(part);
    }
    let seed_refs: Vec<&[u8]> = seed.iter().map(Vec::as_slice).collect();
    let betas = context.weights(b"public-shares-batch", &seed_refs, items.len());
    let mut a_scalars = vec![Scalar::ZERO; keys * t];
    let mut terms = Vec::with_capacity(keys * t + items.len() * (keys + 2) + 1);
    let mut h_scalar = Scalar::ZERO;
    for (item, beta) in items.iter().zip(betas) {
        let x = scalar_from_u64(u64::from(item.node));
        for ((k, rho), share) in item.rho.iter().enumerate().zip(&item.shares) {
            let mut power = *rho;
            for l in 0..t {
                a_scalars[k * t + l] += power;
                power *= x;
            }
            // `−ρ·Y` as `ρ·(−Y)`: the scalar stays 128 bits long.
            terms.push((-Point::from(*share), *rho));
        }
        terms.push((item.blinding_commitment, -(Scalar::ONE + beta * item.challenge)));
        terms.push((-item.proof.nonce_commitment, beta));
        h_scalar += beta * item.proof.response;
    }
    terms.extend(aggregate.points().iter().zip(a_scalars).map(|(a, s)| (Point::from(*a), s)));
    terms.push((generator_h(), h_scalar));
    bool::from(msm(&terms).is_identity())
}

/// Verifies publications (`(node, public shares)`) against the qualified
/// set's aggregate commitments: all at once, and one by one only if the
/// whole batch fails. Returns, in order, each publication's public shares
/// or why they were refused.
pub fn verify_public_shares(
    context: &BatchContext,
    aggregate: &AggregateCommitments,
    items: &[(u16, &PublicShares)],
) -> Vec<Result<Vec<AffinePoint>, DkgError>> {
    if aggregate.params() != context.params() {
        return items.iter().map(|_| Err(DkgError::InvalidParameters("aggregate of another batch shape"))).collect();
    }
    let parsed: Vec<Result<ParsedPublication, DkgError>> =
        items.iter().map(|(node, publication)| parse_publication(context, *node, publication)).collect();
    let well_formed: Vec<&ParsedPublication> = parsed.iter().filter_map(|p| p.as_ref().ok()).collect();
    let all_hold = !well_formed.is_empty() && batch_holds(context, aggregate, &well_formed);
    parsed
        .into_iter()
        .map(|result| {
            let item = result?;
            if all_hold || batch_holds(context, aggregate, &[&item]) {
                Ok(item.shares)
            } else {
                Err(DkgError::InvalidProof("public shares do not match the commitments"))
            }
        })
        .collect()
}

/// A finished key: its public key and every node's public share
/// (compressed; node `j` at position `j - 1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedKey {
    /// `Σ_{i∈QUAL} a_ik(0)·G`.
    pub public_key: [u8; 33],
    /// `s_kj·G` for every node `j`.
    pub public_shares: Vec<[u8; 33]>,
}

/// The batch's keys from verified public shares of at least `t` nodes
/// (`(node, Y_k·)` with distinct nodes): each public key, and each node's
/// public share (published, or interpolated from the first `t`).
pub fn finish_keys(params: &BatchParams, published: &[(u16, Vec<AffinePoint>)]) -> Result<Vec<FinishedKey>, DkgError> {
    let t = usize::from(params.threshold());
    let n = usize::from(params.nodes());
    let keys = usize::from(params.keys());
    let mut sorted: Vec<&(u16, Vec<AffinePoint>)> = published.iter().collect();
    sorted.sort_by_key(|(node, _)| *node);
    sorted.dedup_by_key(|(node, _)| *node);
    if sorted.len() < t {
        return Err(DkgError::InvalidParameters("fewer than t public share vectors"));
    }
    if sorted.iter().any(|(node, shares)| *node == 0 || usize::from(*node) > n || shares.len() != keys) {
        return Err(DkgError::InvalidParameters("public shares of a node outside the batch, or not K of them"));
    }
    let basis = &sorted[..t];
    let indexes: Vec<u32> = basis.iter().map(|(node, _)| u32::from(*node)).collect();
    let at_zero = lagrange_coefficients(&indexes, &Scalar::ZERO)?;
    let mut missing = Vec::new();
    for node in 1..=params.nodes() {
        if !sorted.iter().any(|(published, _)| *published == node) {
            missing.push((node, lagrange_coefficients(&indexes, &scalar_from_u64(u64::from(node)))?));
        }
    }
    // Row k: public key, then node 1..n's share.
    let mut computed: Vec<Point> = Vec::with_capacity(keys * (1 + missing.len()));
    // With the basis {1..t} (every node up), all Lagrange coefficients at
    // integers are small integers: a few additions each instead of a
    // scalar multiplication.
    let small_zero: Option<Vec<i64>> = at_zero.iter().map(small_integer).collect();
    let small_missing: Vec<Option<Vec<i64>>> =
        missing.iter().map(|(_, lambdas)| lambdas.iter().map(small_integer).collect()).collect();
    for k in 0..keys {
        let combine = |lambdas: &[Scalar], small: &Option<Vec<i64>>| match small {
            Some(small) => basis
                .iter()
                .zip(small)
                .fold(Point::IDENTITY, |acc, ((_, shares), l)| acc + small_multiple(&Point::from(shares[k]), *l)),
            None => {
                let terms: Vec<(Point, Scalar)> =
                    basis.iter().zip(lambdas).map(|((_, shares), l)| (Point::from(shares[k]), *l)).collect();
                msm(&terms)
            }
        };
        computed.push(combine(&at_zero, &small_zero));
        for ((_, lambdas), small) in missing.iter().zip(&small_missing) {
            computed.push(combine(lambdas, small));
        }
    }
    let computed = <Point as BatchNormalize<[Point]>>::batch_normalize_vartime(&computed);
    let compress = |p: &AffinePoint| -> [u8; 33] { p.to_bytes().into() };
    let mut out = Vec::with_capacity(keys);
    let row = 1 + missing.len();
    for k in 0..keys {
        let row_points = &computed[k * row..(k + 1) * row];
        let mut public_shares = Vec::with_capacity(n);
        let mut next_missing = 1;
        for node in 1..=params.nodes() {
            match sorted.iter().find(|(published, _)| *published == node) {
                Some((_, shares)) => public_shares.push(compress(&shares[k])),
                None => {
                    public_shares.push(compress(&row_points[next_missing]));
                    next_missing += 1;
                }
            }
        }
        out.push(FinishedKey { public_key: compress(&row_points[0]), public_shares });
    }
    Ok(out)
}

/// The scalar as a signed integer below 2^32 in magnitude, if it is one.
pub(crate) fn small_integer(scalar: &Scalar) -> Option<i64> {
    let fits = |s: &Scalar| -> Option<i64> {
        let bytes: [u8; 32] = s.to_bytes().into();
        if bytes[..28].iter().any(|b| *b != 0) {
            return None;
        }
        Some(i64::from(u32::from_be_bytes([bytes[28], bytes[29], bytes[30], bytes[31]])))
    };
    fits(scalar).or_else(|| fits(&-*scalar).map(|v| -v))
}

/// `value·point` by double-and-add (variable time: public values only).
pub(crate) fn small_multiple(point: &Point, value: i64) -> Point {
    let mut magnitude = value.unsigned_abs();
    let mut addend = *point;
    let mut acc = Point::IDENTITY;
    while magnitude != 0 {
        if magnitude & 1 == 1 {
            acc += addend;
        }
        magnitude >>= 1;
        if magnitude != 0 {
            addend = addend.double();
        }
    }
    if value < 0 { -acc } else { acc }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::DealerSecrets;
    use crate::dealing::ParsedDealing;

    /// One dealer's batch for four nodes: the aggregate and every node's shares.
    fn batch(rng: &mut ChaCha20Rng) -> (BatchContext, AggregateCommitments, Vec<KeyShares>) {
        let params = BatchParams::new(4, 8).unwrap();
        let context = BatchContext::new([3u8; 32], 1, params);
        let dealer = DealerSecrets::random(params, rng);
        let commitments = <Point as BatchNormalize<[Point]>>::batch_normalize_vartime(&dealer.commitments());
        let parsed = ParsedDealing { commitments, ephemeral: Point::GENERATOR };
        let aggregate = AggregateCommitments::sum(params, &[&parsed]).unwrap();
        let shares = (1..=4).map(|j| KeyShares::from_pairs(j, dealer.shares_for(j))).collect();
        (context, aggregate, shares)
    }

    fn public_points(shares: &KeyShares) -> Vec<Point> {
        shares.shares().iter().map(|pair| Point::mul_by_generator(&pair.value)).collect()
    }

    #[test]
    fn two_cheaters_cannot_make_their_errors_cancel() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let (context, aggregate, shares) = batch(&mut rng);
        let honest: Vec<PublicShares> = shares.iter().map(|s| s.prove_public_shares(&context, &mut rng)).collect();
        // Node 1 shifts its first public share by G; node 2 picks its own
        // shift so that the two errors cancel under the weights node 2's
        // honest publication would have had. Node 2's weights are those of
        // what it publishes, so they do not.
        let mut first = public_points(&shares[0]);
        first[0] += Point::GENERATOR;
        let cheat_1 = prove_for_points(&context, &shares[0], &first, &mut rng);
        let rho_1 = rho(&context, 1, &cheat_1.shares)[0];
        let rho_2_honest = rho(&context, 2, &honest[1].shares)[0];
        let shift = -rho_1 * Option::<Scalar>::from(rho_2_honest.invert()).unwrap();
        let mut second = public_points(&shares[1]);
        second[0] += Point::mul_by_generator(&shift);
        let cheat_2 = prove_for_points(&context, &shares[1], &second, &mut rng);
        assert_eq!(rho_1 + rho_2_honest * shift, Scalar::ZERO);
        let items = [(1u16, &cheat_1), (2, &cheat_2), (3, &honest[2]), (4, &honest[3])];
        let verified = verify_public_shares(&context, &aggregate, &items);
        assert!(verified[0].is_err() && verified[1].is_err(), "both cheaters refused");
        assert!(verified[2].is_ok() && verified[3].is_ok(), "the honest ones accepted");
        // Honest publications, alone and together, pass.
        let items: Vec<(u16, &PublicShares)> = (1u16..).zip(&honest).collect();
        assert!(verify_public_shares(&context, &aggregate, &items).iter().all(Result::is_ok));
    }
}
