//! Shamir secret sharing and Lagrange interpolation over the secp256k1
//! group order.
//!
//! Written on k256 rather than taken from `vsss-rs`: what the DKG needs is a
//! polynomial, its evaluation at small indexes, and Lagrange coefficients at
//! any point, a few dozen lines whose every input we validate ourselves;
//! `vsss-rs`'s generic share and identifier types would add a second
//! representation of shares that our wire formats would have to convert.

use k256::elliptic_curve::Field;
use k256::elliptic_curve::ops::LinearCombination;
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{CryptoError, Result};
use crate::group::{Point, Scalar};

/// The reconstruction threshold the public Torus client uses for n nodes:
/// `floor(n/2) + 1` shares rebuild a key, so polynomials have degree
/// `floor(n/2)`.
pub fn majority_threshold(n: u32) -> u32 {
    n / 2 + 1
}

/// A share of a secret: the polynomial's value at a non-zero index.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Share {
    /// The x-coordinate (the node's index, from 1).
    pub index: u32,
    /// The y-coordinate. Secret.
    pub value: Scalar,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share").field("index", &self.index).field("value", &"<redacted>").finish()
    }
}

/// A secret polynomial, zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Polynomial {
    coefficients: Vec<Scalar>,
}

impl std::fmt::Debug for Polynomial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Polynomial").field("degree", &self.degree()).finish_non_exhaustive()
    }
}

impl Polynomial {
    /// A uniformly random polynomial of the given degree.
    pub fn random<R: CryptoRng + ?Sized>(degree: usize, rng: &mut R) -> Self {
        Self { coefficients: (0..=degree).map(|_| Scalar::random(&mut *rng)).collect() }
    }

    /// A random polynomial of the given degree whose value at 0 is `constant`.
    pub fn random_with_constant<R: CryptoRng + ?Sized>(constant: Scalar, degree: usize, rng: &mut R) -> Self {
        let mut polynomial = Self::random(degree, rng);
        polynomial.coefficients[0] = constant;
        polynomial
    }

    /// The polynomial `c[0] + c[1]·x + …`; at least one coefficient.
    pub fn from_coefficients(coefficients: Vec<Scalar>) -> Result<Self> {
        if coefficients.is_empty() {
            return Err(CryptoError::InvalidSharingParameters("a polynomial needs at least one coefficient"));
        }
        Ok(Self { coefficients })
    }

    /// The degree (number of coefficients minus one).
    pub fn degree(&self) -> usize {
        self.coefficients.len() - 1
    }

    /// The coefficients, constant term first.
    pub fn coefficients(&self) -> &[Scalar] {
        &self.coefficients
    }

    /// The value at 0 (the shared secret).
    pub fn constant(&self) -> Scalar {
        self.coefficients[0]
    }

    /// The value at `x` (Horner's rule).
    pub fn evaluate(&self, x: &Scalar) -> Scalar {
        self.coefficients.iter().rev().fold(Scalar::ZERO, |acc, c| acc * x + c)
    }

    /// The share for a non-zero index.
    pub fn share(&self, index: u32) -> Result<Share> {
        if index == 0 {
            return Err(CryptoError::ZeroShareIndex);
        }
        Ok(Share { index, value: self.evaluate(&Scalar::from(u64::from(index))) })
    }

    /// The shares for indexes `1..=n`.
    pub fn shares(&self, n: u32) -> Vec<Share> {
        (1..=n).map(|index| Share { index, value: self.evaluate(&Scalar::from(u64::from(index))) }).collect()
    }
}

/// Splits `secret` into `n` shares (indexes 1..=n), any `threshold` of which
/// rebuild it.
pub fn split<R: CryptoRng + ?Sized>(secret: Scalar, threshold: u32, n: u32, rng: &mut R) -> Result<Vec<Share>> {
    if threshold == 0 {
        return Err(CryptoError::InvalidSharingParameters("threshold must be at least 1"));
    }
    if threshold > n {
        return Err(CryptoError::InvalidSharingParameters("threshold must not exceed the number of shares"));
    }
    let polynomial = Polynomial::random_with_constant(secret, threshold as usize - 1, rng);
    Ok(polynomial.shares(n))
}

fn check_indexes(indexes: &[u32]) -> Result<()> {
    if indexes.is_empty() {
        return Err(CryptoError::NoShares);
    }
    let mut seen = indexes.to_vec();
    seen.sort_unstable();
    if seen[0] == 0 {
        return Err(CryptoError::ZeroShareIndex);
    }
    if let Some(pair) = seen.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(CryptoError::DuplicateShareIndex(pair[0]));
    }
    Ok(())
}

/// The Lagrange coefficients `λ_i(at) = Π_{j≠i} (at − x_j) / (x_i − x_j)` for
/// distinct, non-zero indexes. `Σ λ_i·f(x_i) = f(at)` for any polynomial of
/// degree below `indexes.len()`.
pub fn lagrange_coefficients(indexes: &[u32], at: &Scalar) -> Result<Vec<Scalar>> {
    check_indexes(indexes)?;
    let xs: Vec<Scalar> = indexes.iter().map(|&i| Scalar::from(u64::from(i))).collect();
    let mut numerators = Vec::with_capacity(xs.len());
    let mut denominators = Vec::with_capacity(xs.len());
    for (i, xi) in xs.iter().enumerate() {
        let mut numerator = Scalar::ONE;
        let mut denominator = Scalar::ONE;
        for (j, xj) in xs.iter().enumerate() {
            if i != j {
                numerator *= at - xj;
                denominator *= xi - xj;
            }
        }
        numerators.push(numerator);
        denominators.push(denominator);
    }
    // One inversion for all denominators (Montgomery's trick). They are
    // non-zero: the indexes are distinct and far below the group order.
    let mut prefixes = Vec::with_capacity(xs.len());
    let mut product = Scalar::ONE;
    for denominator in &denominators {
        prefixes.push(product);
        product *= denominator;
    }
    let mut inverse = Option::<Scalar>::from(product.invert())
        .ok_or(CryptoError::InvalidSharingParameters("share indexes must be distinct modulo the group order"))?;
    let mut coefficients = vec![Scalar::ZERO; xs.len()];
    for i in (0..xs.len()).rev() {
        // inverse = 1 / (d_0 · … · d_i), so inverse · prefix_i = 1 / d_i.
        coefficients[i] = numerators[i] * inverse * prefixes[i];
        inverse *= denominators[i];
    }
    Ok(coefficients)
}

/// The value at `at` of the polynomial of degree below `shares.len()`
/// through the shares.
pub fn interpolate(shares: &[Share], at: &Scalar) -> Result<Scalar> {
    let indexes: Vec<u32> = shares.iter().map(|share| share.index).collect();
    let coefficients = lagrange_coefficients(&indexes, at)?;
    Ok(shares.iter().zip(&coefficients).map(|(share, lambda)| share.value * lambda).sum())
}

/// The secret (the value at 0) from `threshold` or more shares.
pub fn reconstruct_secret(shares: &[Share]) -> Result<Scalar> {
    interpolate(shares, &Scalar::ZERO)
}

/// Lagrange interpolation in the exponent: from points `f(x_i)·P`, the
/// point `f(at)·P`. This turns per-node public shares into a public key.
pub fn interpolate_points(points: &[(u32, Point)], at: &Scalar) -> Result<Point> {
    let indexes: Vec<u32> = points.iter().map(|(index, _)| *index).collect();
    let coefficients = lagrange_coefficients(&indexes, at)?;
    let terms: Vec<(Point, Scalar)> = points.iter().zip(coefficients).map(|((_, p), l)| (*p, l)).collect();
    Ok(Point::lincomb_vartime(terms.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn lagrange_matches_direct_evaluation_at_any_point() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let poly = Polynomial::random(3, &mut rng);
        let shares = poly.shares(4);
        for at in [0u64, 1, 3, 9, 1_000_000] {
            let at = Scalar::from(at);
            assert_eq!(interpolate(&shares, &at).unwrap(), poly.evaluate(&at));
        }
    }

    #[test]
    fn bad_index_sets_are_refused() {
        let share = |index| Share { index, value: Scalar::ONE };
        assert_eq!(reconstruct_secret(&[]), Err(CryptoError::NoShares));
        assert_eq!(reconstruct_secret(&[share(0), share(1)]), Err(CryptoError::ZeroShareIndex));
        assert_eq!(reconstruct_secret(&[share(2), share(1), share(2)]), Err(CryptoError::DuplicateShareIndex(2)));
        assert!(Polynomial::from_coefficients(vec![]).is_err());
        assert_eq!(
            Polynomial::random(1, &mut ChaCha20Rng::seed_from_u64(1)).share(0),
            Err(CryptoError::ZeroShareIndex)
        );
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        assert!(split(Scalar::ONE, 0, 3, &mut rng).is_err());
        assert!(split(Scalar::ONE, 4, 3, &mut rng).is_err());
    }

    #[test]
    fn majority_threshold_matches_torus_client() {
        assert_eq!(majority_threshold(1), 1);
        assert_eq!(majority_threshold(4), 3);
        assert_eq!(majority_threshold(5), 3);
        assert_eq!(majority_threshold(7), 4);
        assert_eq!(majority_threshold(9), 5);
    }

    #[test]
    fn interpolation_in_the_exponent() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let poly = Polynomial::random(2, &mut rng);
        let points: Vec<(u32, Point)> =
            poly.shares(5).iter().skip(2).map(|s| (s.index, Point::mul_by_generator(&s.value))).collect();
        let public = interpolate_points(&points, &Scalar::ZERO).unwrap();
        assert_eq!(public, Point::mul_by_generator(&poly.constant()));
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let share = Share { index: 1, value: Scalar::from(0x1234_5678u64) };
        let printed = format!("{share:?}");
        assert!(!printed.contains("12345678"), "{printed}");
    }
}
