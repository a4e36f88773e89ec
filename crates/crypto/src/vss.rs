//! Verifiable secret sharing: Feldman and Pedersen commitments, share
//! checks, and batch checks with random linear combinations.
//!
//! Written on k256 for the reason given in [`crate::shamir`]; the batch check
//! (Bellare, Garay, Rabin, EUROCRYPT 1998) is what lets a recipient verify a
//! whole batch of keys' shares with one multi-scalar multiplication, which no
//! VSS crate offers.

use k256::elliptic_curve::Group;
use k256::elliptic_curve::ops::LinearCombination;
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{CryptoError, Result};
use crate::group::{Point, Scalar, generator, generator_h};
use crate::shamir::{Polynomial, Share};

/// `Σ_l C_l·x^l` for commitment coefficients `C_l`, the commitment to the
/// polynomial's value at `x`.
fn evaluate_commitment(coefficients: &[Point], index: u32) -> Point {
    let x = Scalar::from(u64::from(index));
    // Horner in the exponent: t-1 small-scalar multiplications.
    coefficients.iter().rev().fold(Point::IDENTITY, |acc, c| acc * x + c)
}

/// Appends `r·Σ_l C_l·x^l` to a multi-scalar multiplication.
fn push_weighted_evaluation(terms: &mut Vec<(Point, Scalar)>, coefficients: &[Point], index: u32, weight: Scalar) {
    let x = Scalar::from(u64::from(index));
    let mut power = weight;
    for coefficient in coefficients {
        terms.push((*coefficient, power));
        power *= x;
    }
}

/// A random 128-bit weight: enough for a 2^-128 chance that a wrong batch
/// passes, and half the cost of a full-size scalar in the multiplication.
fn random_weight<R: CryptoRng + ?Sized>(rng: &mut R) -> Scalar {
    let high = u128::from(rng.next_u64()) << 64;
    Scalar::from(high | u128::from(rng.next_u64()))
}

fn check_nonempty(coefficients: &[Point]) -> Result<()> {
    if coefficients.is_empty() {
        return Err(CryptoError::InvalidSharingParameters("a commitment needs at least one coefficient"));
    }
    Ok(())
}

/// A Feldman commitment `C_l = a_l·G` to a polynomial. It reveals `a_0·G`,
/// so the secret's public key, but not the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeldmanCommitment {
    coefficients: Vec<Point>,
}

impl FeldmanCommitment {
    /// Commits to the polynomial.
    pub fn commit(polynomial: &Polynomial) -> Self {
        Self { coefficients: polynomial.coefficients().iter().map(Point::mul_by_generator).collect() }
    }

    /// A commitment from its coefficient points (at least one).
    pub fn from_coefficients(coefficients: Vec<Point>) -> Result<Self> {
        check_nonempty(&coefficients)?;
        Ok(Self { coefficients })
    }

    /// The coefficient points, constant term first.
    pub fn coefficients(&self) -> &[Point] {
        &self.coefficients
    }

    /// `a_0·G`, the public key of the shared secret.
    pub fn public_key(&self) -> Point {
        self.coefficients[0]
    }

    /// `f(index)·G`, the public share of that index.
    pub fn evaluate(&self, index: u32) -> Point {
        evaluate_commitment(&self.coefficients, index)
    }

    /// Checks `share.value·G == Σ C_l·index^l`.
    pub fn verify_share(&self, share: &Share) -> Result<()> {
        if share.index == 0 {
            return Err(CryptoError::ZeroShareIndex);
        }
        if Point::mul_by_generator(&share.value) == self.evaluate(share.index) {
            Ok(())
        } else {
            Err(CryptoError::InvalidShare { index: share.index })
        }
    }
}

/// Checks many (commitment, share) pairs with one multi-scalar
/// multiplication: `Σ_k r_k·(Σ_l C_kl·x_k^l) − (Σ_k r_k·s_k)·G == 0` for
/// random 128-bit `r_k`. Passing means every share is valid except with
/// probability 2^-128; failing means at least one is invalid (check them
/// one by one to find which).
pub fn batch_verify_feldman<R: CryptoRng + ?Sized>(pairs: &[(&FeldmanCommitment, &Share)], rng: &mut R) -> Result<()> {
    let mut terms = Vec::with_capacity(pairs.iter().map(|(c, _)| c.coefficients.len()).sum::<usize>() + 1);
    let mut g_scalar = Scalar::ZERO;
    for (commitment, share) in pairs {
        if share.index == 0 {
            return Err(CryptoError::ZeroShareIndex);
        }
        let weight = random_weight(rng);
        push_weighted_evaluation(&mut terms, &commitment.coefficients, share.index, weight);
        g_scalar += weight * share.value;
    }
    terms.push((generator(), -g_scalar));
    if bool::from(Point::lincomb_vartime(terms.as_slice()).is_identity()) {
        Ok(())
    } else {
        Err(CryptoError::BatchVerificationFailed)
    }
}

/// A Pedersen share: a node's value of the secret polynomial and of the
/// blinding polynomial at its index. Secret, zeroized on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct PedersenShare {
    /// The node's index, from 1.
    pub index: u32,
    /// `a(index)`.
    pub value: Scalar,
    /// `b(index)`.
    pub blinding: Scalar,
}

impl std::fmt::Debug for PedersenShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PedersenShare").field("index", &self.index).finish_non_exhaustive()
    }
}

/// A Pedersen commitment `C_l = a_l·G + b_l·H` to a polynomial `a` blinded
/// by `b`. It is perfectly hiding: it reveals nothing about `a`, not even
/// `a_0·G`, until the DKG chooses to reveal it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PedersenCommitment {
    coefficients: Vec<Point>,
}

impl PedersenCommitment {
    /// Commits to `secret` blinded by `blinding`; both of the same degree.
    pub fn commit(secret: &Polynomial, blinding: &Polynomial) -> Result<Self> {
        if secret.degree() != blinding.degree() {
            return Err(CryptoError::LengthMismatch("secret and blinding polynomials must have the same degree"));
        }
        let h = generator_h();
        let coefficients = secret
            .coefficients()
            .iter()
            .zip(blinding.coefficients())
            .map(|(a, b)| Point::mul_by_generator(a) + h * b)
            .collect();
        Ok(Self { coefficients })
    }

    /// A commitment from its coefficient points (at least one).
    pub fn from_coefficients(coefficients: Vec<Point>) -> Result<Self> {
        check_nonempty(&coefficients)?;
        Ok(Self { coefficients })
    }

    /// The coefficient points, constant term first.
    pub fn coefficients(&self) -> &[Point] {
        &self.coefficients
    }

    /// `a(index)·G + b(index)·H`.
    pub fn evaluate(&self, index: u32) -> Point {
        evaluate_commitment(&self.coefficients, index)
    }

    /// The share of `index` of both polynomials.
    pub fn share_of(secret: &Polynomial, blinding: &Polynomial, index: u32) -> Result<PedersenShare> {
        let value = secret.share(index)?;
        let blind = blinding.share(index)?;
        Ok(PedersenShare { index, value: value.value, blinding: blind.value })
    }

    /// Checks `value·G + blinding·H == Σ C_l·index^l`.
    pub fn verify_share(&self, share: &PedersenShare) -> Result<()> {
        if share.index == 0 {
            return Err(CryptoError::ZeroShareIndex);
        }
        let lhs = Point::lincomb_vartime(&[(generator(), share.value), (generator_h(), share.blinding)]);
        if lhs == self.evaluate(share.index) { Ok(()) } else { Err(CryptoError::InvalidShare { index: share.index }) }
    }
}

/// The Pedersen analogue of [`batch_verify_feldman`]: one multi-scalar
/// multiplication of `Σ t_k + 2` points for all pairs.
pub fn batch_verify_pedersen<R: CryptoRng + ?Sized>(
    pairs: &[(&PedersenCommitment, &PedersenShare)],
    rng: &mut R,
) -> Result<()> {
    let mut terms = Vec::with_capacity(pairs.iter().map(|(c, _)| c.coefficients.len()).sum::<usize>() + 2);
    let mut g_scalar = Scalar::ZERO;
    let mut h_scalar = Scalar::ZERO;
    for (commitment, share) in pairs {
        if share.index == 0 {
            return Err(CryptoError::ZeroShareIndex);
        }
        let weight = random_weight(rng);
        push_weighted_evaluation(&mut terms, &commitment.coefficients, share.index, weight);
        g_scalar += weight * share.value;
        h_scalar += weight * share.blinding;
    }
    terms.push((generator(), -g_scalar));
    terms.push((generator_h(), -h_scalar));
    if bool::from(Point::lincomb_vartime(terms.as_slice()).is_identity()) {
        Ok(())
    } else {
        Err(CryptoError::BatchVerificationFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn feldman_accepts_true_shares_and_rejects_tampered_ones() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let poly = Polynomial::random(2, &mut rng);
        let commitment = FeldmanCommitment::commit(&poly);
        assert_eq!(commitment.public_key(), Point::mul_by_generator(&poly.constant()));
        for share in poly.shares(5) {
            commitment.verify_share(&share).unwrap();
        }
        let mut bad = poly.share(3).unwrap();
        bad.value += Scalar::ONE;
        assert_eq!(commitment.verify_share(&bad), Err(CryptoError::InvalidShare { index: 3 }));
        let wrong_index = Share { index: 4, value: poly.share(3).unwrap().value };
        assert!(commitment.verify_share(&wrong_index).is_err());
    }

    #[test]
    fn pedersen_accepts_true_shares_and_rejects_tampered_ones() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let a = Polynomial::random(2, &mut rng);
        let b = Polynomial::random(2, &mut rng);
        let commitment = PedersenCommitment::commit(&a, &b).unwrap();
        for index in 1..=5 {
            let share = PedersenCommitment::share_of(&a, &b, index).unwrap();
            commitment.verify_share(&share).unwrap();
        }
        let mut bad = PedersenCommitment::share_of(&a, &b, 2).unwrap();
        bad.blinding += Scalar::ONE;
        assert_eq!(commitment.verify_share(&bad), Err(CryptoError::InvalidShare { index: 2 }));
        assert!(PedersenCommitment::commit(&a, &Polynomial::random(1, &mut rng)).is_err());
    }

    #[test]
    fn batch_checks_catch_one_bad_share_among_many() {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let polys: Vec<(Polynomial, Polynomial)> =
            (0..32).map(|_| (Polynomial::random(2, &mut rng), Polynomial::random(2, &mut rng))).collect();
        let commitments: Vec<PedersenCommitment> =
            polys.iter().map(|(a, b)| PedersenCommitment::commit(a, b).unwrap()).collect();
        let mut shares: Vec<PedersenShare> =
            polys.iter().map(|(a, b)| PedersenCommitment::share_of(a, b, 4).unwrap()).collect();
        let pairs: Vec<_> = commitments.iter().zip(shares.iter()).collect();
        batch_verify_pedersen(&pairs, &mut rng).unwrap();

        shares[17].value += Scalar::ONE;
        let pairs: Vec<_> = commitments.iter().zip(shares.iter()).collect();
        assert_eq!(batch_verify_pedersen(&pairs, &mut rng), Err(CryptoError::BatchVerificationFailed));

        let feldman: Vec<FeldmanCommitment> = polys.iter().map(|(a, _)| FeldmanCommitment::commit(a)).collect();
        let mut plain: Vec<Share> = polys.iter().map(|(a, _)| a.share(2).unwrap()).collect();
        let pairs: Vec<_> = feldman.iter().zip(plain.iter()).collect();
        batch_verify_feldman(&pairs, &mut rng).unwrap();
        plain[0].index = 3;
        let pairs: Vec<_> = feldman.iter().zip(plain.iter()).collect();
        assert_eq!(batch_verify_feldman(&pairs, &mut rng), Err(CryptoError::BatchVerificationFailed));
    }
}
