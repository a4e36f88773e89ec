//! Multi-scalar multiplication `Σ s_i·P_i`, the one operation every batch
//! check reduces to. Variable time: only for public points and scalars.

use quorumkey_crypto::group::{Point, Scalar};
use quorumkey_crypto::k256::elliptic_curve::ops::LinearCombination;

/// `Σ s_i·P_i`.
pub fn msm(terms: &[(Point, Scalar)]) -> Point {
    Point::lincomb_vartime(terms)
}
