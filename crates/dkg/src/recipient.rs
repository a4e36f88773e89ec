//! A recipient's side: open and check a dealing's shares, complain about a
//! dealer whose shares are wrong, and sum the qualified dealers' shares
//! into this node's share of each key.

use quorumkey_crypto::dleq::{DleqProof, DleqStatement};
use quorumkey_crypto::group::{AffinePoint, NonZeroScalar, Point, Scalar, generator, point_to_bytes};
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::complaint::{Complaint, complaint_transcript};
use crate::context::{BatchContext, random_weights};
use crate::dealing::{Dealing, ParsedDealing, ShareFault, SharePair, check_many, check_shares, open_shares};
use crate::error::DkgError;
use crate::params::BatchParams;

/// The shares a recipient received from one dealer, checked. Secret.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ReceivedShares {
    #[zeroize(skip)]
    dealer: u16,
    shares: Vec<SharePair>,
}

impl std::fmt::Debug for ReceivedShares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedShares").field("dealer", &self.dealer).finish_non_exhaustive()
    }
}

impl ReceivedShares {
    /// The dealer.
    pub fn dealer(&self) -> u16 {
        self.dealer
    }

    /// The shares, one per key.
    pub fn shares(&self) -> &[SharePair] {
        &self.shares
    }
}

/// Decrypts recipient `j`'s shares of a dealing with its key `sk_j` and
/// checks them all against the commitments with one random linear
/// combination (private weights from `rng`).
pub fn open_dealing<R: CryptoRng + ?Sized>(
    context: &BatchContext,
    dealer: u16,
    dealing: &Dealing,
    parsed: &ParsedDealing,
    recipient: u16,
    secret: &NonZeroScalar,
    rng: &mut R,
) -> Result<ReceivedShares, ShareFault> {
    let ciphertext = usize::from(recipient)
        .checked_sub(1)
        .and_then(|position| dealing.ciphertexts.get(position))
        .ok_or(ShareFault::Undecryptable)?;
    let shared = parsed.ephemeral * secret.as_ref();
    let shares = open_shares(context, dealer, recipient, &parsed.ephemeral, &shared, ciphertext)?;
    let weights = random_weights(rng, shares.len());
    if !check_shares(context.params(), &parsed.commitments, recipient, &shares, &weights) {
        return Err(ShareFault::Inconsistent);
    }
    Ok(ReceivedShares { dealer, shares })
}

/// One dealing's decrypted shares and the private weights to check them.
type Opened = (Vec<SharePair>, Vec<Scalar>);

/// [`open_dealing`] for several dealings (`(dealer, dealing, parsed)`) at
/// once: every ciphertext is opened, then all shares are checked in one
/// multi-scalar multiplication (cheaper per point than one per dealing);
/// only if that fails is each dealing checked alone to find the bad ones.
/// Results in the order given.
pub fn open_dealings<R: CryptoRng + ?Sized>(
    context: &BatchContext,
    dealings: &[(u16, &Dealing, &ParsedDealing)],
    recipient: u16,
    secret: &NonZeroScalar,
    rng: &mut R,
) -> Vec<Result<ReceivedShares, ShareFault>> {
    let keys = usize::from(context.params().keys());
    let opened: Vec<Result<Opened, ShareFault>> = dealings
        .iter()
        .map(|(dealer, dealing, parsed)| {
            let ciphertext = usize::from(recipient)
                .checked_sub(1)
                .and_then(|position| dealing.ciphertexts.get(position))
                .ok_or(ShareFault::Undecryptable)?;
            let shared = parsed.ephemeral * secret.as_ref();
            let shares = open_shares(context, *dealer, recipient, &parsed.ephemeral, &shared, ciphertext)?;
            Ok((shares, random_weights(rng, keys)))
        })
        .collect();
    let all: Vec<(&[AffinePoint], &[SharePair], &[Scalar])> = dealings
        .iter()
        .zip(&opened)
        .filter_map(|((_, _, parsed), opened)| {
            opened
                .as_ref()
                .ok()
                .map(|(shares, weights)| (parsed.commitments.as_slice(), shares.as_slice(), weights.as_slice()))
        })
        .collect();
    let all_hold = !all.is_empty() && check_many(context.params(), &all, recipient);
    dealings
        .iter()
        .zip(opened)
        .map(|((dealer, _, parsed), opened)| {
            let (shares, weights) = opened?;
            if all_hold || check_shares(context.params(), &parsed.commitments, recipient, &shares, &weights) {
                Ok(ReceivedShares { dealer: *dealer, shares })
            } else {
                Err(ShareFault::Inconsistent)
            }
        })
        .collect()
}

/// A complaint against `dealer` by `recipient`: the shared point `sk_j·E`
/// with a proof that it is `log_G(pk_j)` times `E`, so anyone can decrypt
/// the recipient's shares and judge.
pub fn complain<R: CryptoRng + ?Sized>(
    context: &BatchContext,
    dealer: u16,
    parsed: &ParsedDealing,
    recipient: u16,
    secret: &NonZeroScalar,
    rng: &mut R,
) -> Result<Complaint, DkgError> {
    let statement = DleqStatement::from_secret(generator(), parsed.ephemeral, secret);
    let mut transcript = complaint_transcript(context, dealer, recipient);
    let proof = DleqProof::prove(&mut transcript, &statement, secret, rng)?;
    Ok(Complaint { dealer, shared_point: point_to_bytes(&statement.public2), proof: proof.to_bytes() })
}

/// This node's share of every key of a batch: the sum over the qualified
/// dealers of what each dealt it. Secret.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyShares {
    #[zeroize(skip)]
    node: u16,
    shares: Vec<SharePair>,
}

impl std::fmt::Debug for KeyShares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyShares").field("node", &self.node).field("keys", &self.shares.len()).finish()
    }
}

impl KeyShares {
    /// Sums the shares from the qualified dealers (the caller passes
    /// exactly those).
    pub fn aggregate(params: &BatchParams, node: u16, received: &[&ReceivedShares]) -> Result<Self, DkgError> {
        let keys = usize::from(params.keys());
        if received.is_empty() || received.iter().any(|r| r.shares.len() != keys) {
            return Err(DkgError::InvalidParameters("shares from at least one qualified dealer, K each"));
        }
        let mut shares = vec![SharePair::default(); keys];
        for from in received {
            for (sum, pair) in shares.iter_mut().zip(&from.shares) {
                sum.value += pair.value;
                sum.blinding += pair.blinding;
            }
        }
        Ok(Self { node, shares })
    }

    /// Rebuilds key shares from their stored form (see [`KeyShares::shares`]).
    pub fn from_pairs(node: u16, shares: Vec<SharePair>) -> Self {
        Self { node, shares }
    }

    /// The node these shares belong to.
    pub fn node(&self) -> u16 {
        self.node
    }

    /// `(s_kj, s'_kj)` for each key `k`.
    pub fn shares(&self) -> &[SharePair] {
        &self.shares
    }

    /// The node's public share of key `k` computed from its secret share.
    pub fn public_share(&self, key: usize) -> Option<Point> {
        self.shares.get(key).map(|pair| Point::mul_by_generator(&pair.value))
    }
}
