//! The qualified set's commitments, summed: `A_kl = Σ_{i∈QUAL} C_ikl`
//! commits to the polynomial pair whose values are the nodes' shares of
//! key `k`.

use quorumkey_crypto::group::{AffinePoint, Point, Scalar};
use quorumkey_crypto::k256::elliptic_curve::BatchNormalize;
use quorumkey_crypto::k256::elliptic_curve::CurveAffine as _;

use crate::dealing::ParsedDealing;
use crate::error::DkgError;
use crate::params::BatchParams;
use crate::points::decode_points;

/// `A_kl` for every key `k` and coefficient `l`, key-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateCommitments {
    params: BatchParams,
    points: Vec<AffinePoint>,
}

impl AggregateCommitments {
    /// Sums the qualified dealings' commitments.
    pub fn sum(params: BatchParams, qualified: &[&ParsedDealing]) -> Result<Self, DkgError> {
        let len = usize::from(params.keys()) * usize::from(params.threshold());
        if qualified.is_empty() || qualified.iter().any(|d| d.commitments.len() != len) {
            return Err(DkgError::InvalidParameters("at least one qualified dealing, K·t commitments each"));
        }
        let mut sums = vec![Point::IDENTITY; len];
        for dealing in qualified {
            for (sum, commitment) in sums.iter_mut().zip(&dealing.commitments) {
                *sum += commitment;
            }
        }
        let points = <Point as BatchNormalize<[Point]>>::batch_normalize_vartime(&sums);
        // An identity sum happens with negligible probability, but the
        // stored form cannot hold it.
        if points.iter().any(|p| bool::from(p.is_identity())) {
            return Err(DkgError::Malformed("aggregate commitment is the identity"));
        }
        Ok(Self { params, points })
    }

    /// Parses the stored form.
    pub fn from_bytes(params: BatchParams, bytes: &[u8]) -> Result<Self, DkgError> {
        if bytes.len() != params.commitments_len() {
            return Err(DkgError::Malformed("aggregate commitments have the wrong length"));
        }
        Ok(Self { params, points: decode_points(bytes, "aggregate commitment")? })
    }

    /// The stored form: `K·t` uncompressed points.
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::points::encode_affine(&self.points)
    }

    /// The batch's shape.
    pub fn params(&self) -> &BatchParams {
        &self.params
    }

    /// `A_kl`, key-major.
    pub fn points(&self) -> &[AffinePoint] {
        &self.points
    }

    /// `P_kj = Σ_l j^l·A_kl = s_kj·G + s'_kj·H`, the binding commitment to
    /// node `j`'s share of key `k`.
    pub fn evaluate(&self, key: usize, node: u16) -> Option<Point> {
        let t = usize::from(self.params.threshold());
        let row = self.points.get(key * t..key * t + t)?;
        let x = Scalar::from(u64::from(node));
        Some(row.iter().rev().fold(Point::IDENTITY, |acc, c| acc * x + c))
    }
}
