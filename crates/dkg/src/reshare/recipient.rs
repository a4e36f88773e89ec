//! A new node's side of a reshare: open and check its shares from each old
//! dealer, complain about a dealer whose shares are wrong, and combine the
//! qualified dealers' shares into its new share of each key.

use quorumkey_crypto::dleq::{DleqProof, DleqStatement};
use quorumkey_crypto::group::{AffinePoint, NonZeroScalar, Scalar, generator, point_to_bytes};
use quorumkey_crypto::shamir::lagrange_coefficients;
use quorumkey_crypto::transcript::Transcript;
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::dealing::{ParsedReshareDealing, ReshareDealing, ShareCheck, check_reshare_shares, open_reshare_shares};
use super::{ReshareContext, ReshareParams};
use crate::complaint::Complaint;
use crate::context::random_weights;
use crate::dealing::ShareFault;
use crate::error::DkgError;

/// What a new node received from one old dealer, checked. Secret.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ReceivedReshare {
    #[zeroize(skip)]
    pub(crate) dealer: u16,
    pub(crate) shares: Vec<Scalar>,
}

impl std::fmt::Debug for ReceivedReshare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedReshare").field("dealer", &self.dealer).finish_non_exhaustive()
    }
}

impl ReceivedReshare {
    /// The old dealer.
    pub fn dealer(&self) -> u16 {
        self.dealer
    }

    /// `a_ik(j)` for each key `k` of the batch.
    pub fn shares(&self) -> &[Scalar] {
        &self.shares
    }
}

/// One dealing to open: the dealer's old index, the dealing, its parsed
/// parts, and the dealer's public shares of the batch's keys (from the
/// ledger).
pub type DealingToOpen<'a> = (u16, &'a ReshareDealing, &'a ParsedReshareDealing, &'a [AffinePoint]);

/// Decrypts new node `j`'s shares from each dealing with its key `sk_j`
/// and checks them all in one multi-scalar multiplication with private
/// random weights; only if that fails is each dealing checked alone. The
/// results are in the order given.
pub fn open_reshare_dealings<R: CryptoRng + ?Sized>(
    context: &ReshareContext,
    dealings: &[DealingToOpen<'_>],
    recipient: u16,
    secret: &NonZeroScalar,
    rng: &mut R,
) -> Vec<Result<ReceivedReshare, ShareFault>> {
    let keys = usize::from(context.params().keys());
    type Opened = (Zeroizing<Vec<Scalar>>, Vec<Scalar>);
    let opened: Vec<Result<Opened, ShareFault>> = dealings
        .iter()
        .map(|(dealer, dealing, parsed, _)| {
            let ciphertext = usize::from(recipient)
                .checked_sub(1)
                .and_then(|position| dealing.ciphertexts.get(position))
                .ok_or(ShareFault::Undecryptable)?;
            let shared = parsed.ephemeral * secret.as_ref();
            let shares = open_reshare_shares(context, *dealer, recipient, &parsed.ephemeral, &shared, ciphertext)?;
            Ok((shares, random_weights(rng, keys)))
        })
        .collect();
    let check_of = |(_, _, parsed, old): &DealingToOpen<'_>, (shares, weights): &Opened| -> bool {
        let check = ShareCheck {
            old_public_shares: old,
            commitments: &parsed.commitments,
            shares: shares.as_slice(),
            weights: weights.as_slice(),
        };
        check_reshare_shares(context.params(), &[check], recipient)
    };
    let all: Vec<ShareCheck<'_>> = dealings
        .iter()
        .zip(&opened)
        .filter_map(|((_, _, parsed, old), opened)| {
            opened.as_ref().ok().map(|(shares, weights)| ShareCheck {
                old_public_shares: old,
                commitments: &parsed.commitments,
                shares: shares.as_slice(),
                weights: weights.as_slice(),
            })
        })
        .collect();
    let all_hold = !all.is_empty() && check_reshare_shares(context.params(), &all, recipient);
    dealings
        .iter()
        .zip(opened)
        .map(|(dealing, opened)| {
            let opened = opened?;
            if all_hold || check_of(dealing, &opened) {
                Ok(ReceivedReshare { dealer: dealing.0, shares: opened.0.to_vec() })
            } else {
                Err(ShareFault::Inconsistent)
            }
        })
        .collect()
}

pub(crate) fn reshare_complaint_transcript(context: &ReshareContext, dealer: u16, recipient: u16) -> Transcript {
    let mut transcript = context.transcript(b"reshare-complaint");
    transcript.append_u64(b"dealer", u64::from(dealer));
    transcript.append_u64(b"recipient", u64::from(recipient));
    transcript
}

/// New node `j`'s complaint against old dealer `dealer`: the shared point
/// `sk_j·E` with a DLEQ proof, so anyone can decrypt its shares and judge
/// ([`super::adjudicate_reshare`]).
pub fn complain_reshare<R: CryptoRng + ?Sized>(
    context: &ReshareContext,
    dealer: u16,
    parsed: &ParsedReshareDealing,
    recipient: u16,
    secret: &NonZeroScalar,
    rng: &mut R,
) -> Result<Complaint, DkgError> {
    let statement = DleqStatement::from_secret(generator(), parsed.ephemeral, secret);
    let mut transcript = reshare_complaint_transcript(context, dealer, recipient);
    let proof = DleqProof::prove(&mut transcript, &statement, secret, rng)?;
    Ok(Complaint { dealer, shared_point: point_to_bytes(&statement.public2), proof: proof.to_bytes() })
}

/// New node `j`'s share of every key of the batch from the qualified
/// dealers' shares (exactly the qualified set the ledger fixed, at least
/// `t` of them): `s'_kj = Σ_{i∈Q} λ_i·a_ik(j)`, with `λ_i` the Lagrange
/// coefficients at 0 over the old indexes in `Q`. Secret.
pub fn combine_reshared(
    params: &ReshareParams,
    received: &[&ReceivedReshare],
) -> Result<Zeroizing<Vec<Scalar>>, DkgError> {
    let keys = usize::from(params.keys());
    if received.len() < usize::from(params.old_threshold()) || received.iter().any(|r| r.shares.len() != keys) {
        return Err(DkgError::InvalidParameters("shares from at least t qualified old dealers, K each"));
    }
    if received.iter().any(|r| r.dealer == 0 || r.dealer > params.old_nodes()) {
        return Err(DkgError::InvalidParameters("a dealer outside the old node set"));
    }
    let indexes: Vec<u32> = received.iter().map(|r| u32::from(r.dealer)).collect();
    let lambdas = lagrange_coefficients(&indexes, &Scalar::ZERO)?;
    let mut shares = Zeroizing::new(vec![Scalar::ZERO; keys]);
    for (from, lambda) in received.iter().zip(&lambdas) {
        for (sum, share) in shares.iter_mut().zip(&from.shares) {
            *sum += *lambda * share;
        }
    }
    Ok(shares)
}
