//! The public side of a finished reshare batch: from the qualified old
//! dealers' public shares and commitments, every key's public key
//! (checked unchanged) and every new node's public share.

use quorumkey_crypto::group::{AffinePoint, Point, Scalar};
use quorumkey_crypto::k256::elliptic_curve::BatchNormalize;
use quorumkey_crypto::k256::elliptic_curve::group::GroupEncoding;
use quorumkey_crypto::shamir::lagrange_coefficients;

use super::ReshareParams;
use super::dealing::ParsedReshareDealing;
use crate::error::DkgError;
use crate::msm::msm;
use crate::public_shares::{FinishedKey, small_integer, small_multiple};

/// One qualified old dealer: its old index, its dealing's parsed parts,
/// and its public shares of the batch's keys before the handover.
pub type QualifiedDealer<'a> = (u16, &'a ParsedReshareDealing, &'a [AffinePoint]);

/// Every key of the batch after the handover: `Y'_kj = Σ_{i∈Q} λ_i·(Y_ki +
/// Σ_l j^l·C_ikl)` for each new node `j`, and the public key `Σ_{i∈Q}
/// λ_i·Y_ki`, which must equal `public_keys[k]` (it does whenever the old
/// public shares lie on one polynomial; a mismatch means the recorded
/// shares are not what they should be, and the batch must not finish).
/// `qualified` is exactly the qualified set, at least `t` distinct old
/// dealers.
pub fn handover_keys(
    params: &ReshareParams,
    qualified: &[QualifiedDealer<'_>],
    public_keys: &[AffinePoint],
) -> Result<Vec<FinishedKey>, DkgError> {
    let keys = usize::from(params.keys());
    let per_key = params.commitments_per_key();
    if public_keys.len() != keys {
        return Err(DkgError::InvalidParameters("one public key per key of the batch"));
    }
    if qualified.len() < usize::from(params.old_threshold()) {
        return Err(DkgError::InvalidParameters("fewer than t qualified old dealers"));
    }
    if qualified.iter().any(|(dealer, parsed, old)| {
        *dealer == 0 || *dealer > params.old_nodes() || parsed.commitments.len() != keys * per_key || old.len() != keys
    }) {
        return Err(DkgError::InvalidParameters("a qualified dealer outside the old set, or of the wrong shape"));
    }
    let indexes: Vec<u32> = qualified.iter().map(|(dealer, _, _)| u32::from(*dealer)).collect();
    let lambdas = lagrange_coefficients(&indexes, &Scalar::ZERO)?;
    // With Q = {1..t} (every designated dealer honest and up) the
    // coefficients are small integers: additions instead of
    // multiplications.
    let small: Option<Vec<i64>> = lambdas.iter().map(small_integer).collect();
    let combine = |point_of: &dyn Fn(&QualifiedDealer<'_>) -> Point| -> Point {
        match &small {
            Some(small) => {
                qualified.iter().zip(small).fold(Point::IDENTITY, |acc, (q, l)| acc + small_multiple(&point_of(q), *l))
            }
            None => {
                let terms: Vec<(Point, Scalar)> =
                    qualified.iter().zip(&lambdas).map(|(q, l)| (point_of(q), *l)).collect();
                msm(&terms)
            }
        }
    };
    let new_nodes = usize::from(params.new_nodes());
    // Row k: the public key, then new node 1..n''s public share.
    let mut computed: Vec<Point> = Vec::with_capacity(keys * (1 + new_nodes));
    let mut aggregate: Vec<Point> = Vec::with_capacity(per_key + 1);
    for k in 0..keys {
        aggregate.clear();
        // A_0 = Σ λ_i·Y_ki, A_l = Σ λ_i·C_ikl.
        aggregate.push(combine(&|(_, _, old)| Point::from(old[k])));
        for l in 0..per_key {
            aggregate.push(combine(&|(_, parsed, _)| Point::from(parsed.commitments[k * per_key + l])));
        }
        computed.push(aggregate[0]);
        for j in 1..=new_nodes {
            // Horner: ((A_{t'-1}·j + A_{t'-2})·j + …)·j + A_0, with the
            // small multiplier j.
            let value = aggregate
                .iter()
                .rev()
                .fold(Point::IDENTITY, |acc, coefficient| small_multiple(&acc, j as i64) + coefficient);
            computed.push(value);
        }
    }
    let computed = <Point as BatchNormalize<[Point]>>::batch_normalize_vartime(&computed);
    let compress = |p: &AffinePoint| -> [u8; 33] { p.to_bytes().into() };
    let row = 1 + new_nodes;
    let mut out = Vec::with_capacity(keys);
    for (k, expected) in public_keys.iter().enumerate() {
        let row_points = &computed[k * row..(k + 1) * row];
        if row_points[0] != *expected {
            return Err(DkgError::InvalidProof("the handover would change a public key"));
        }
        out.push(FinishedKey {
            public_key: compress(&row_points[0]),
            public_shares: row_points[1..].iter().map(compress).collect(),
        });
    }
    Ok(out)
}
