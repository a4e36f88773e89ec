//! Byzantine DKG behaviours for tests (feature `testkit`): how a
//! misbehaving node changes what an honest participant would submit.
#![allow(clippy::unwrap_used, reason = "test code only (feature `testkit`): a failure is a failed test")]

use quorumkey_crypto::group::{NonZeroScalar, Point, Scalar, point_from_bytes};
use quorumkey_dkg::DealerSecrets;
use quorumkey_dkg::dealing::{SharePair, seal_dealing};
use quorumkey_dkg::recipient::complain;
use quorumkey_ledger::{Ledger, StateRead, TransactionBody};
use rand_core::CryptoRng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Honest,
    /// Deals a wrong share to one recipient (the next node).
    BadShare,
    /// Commitments unrelated to the shares.
    InconsistentCommitments,
    /// A dealing with a point off the curve (and nothing valid).
    Malformed,
    /// Sends nothing at all.
    Silent,
    /// Deals, then never responds or publishes.
    WithholdLater,
    /// Deals honestly, then accuses every other dealer.
    FalseAccuser,
    /// Publishes public shares that are not its own.
    BadPublicShares,
}

impl Behaviour {
    /// True if the behaviour must get its dealer disqualified.
    pub fn excluded(self) -> bool {
        matches!(self, Self::BadShare | Self::InconsistentCommitments | Self::Malformed | Self::Silent)
    }
}

/// What node `me`, behaving as `behaviour`, submits instead of `body`.
pub fn tamper<S: StateRead + ?Sized, R: CryptoRng + ?Sized>(
    behaviour: Behaviour,
    me: u16,
    ledger: &Ledger,
    state: &S,
    secret: &NonZeroScalar,
    body: TransactionBody,
    rng: &mut R,
) -> Option<TransactionBody> {
    let n = ledger.genesis().node_count() as u16;
    let recipients: Vec<Point> =
        ledger.genesis().nodes.iter().map(|node| point_from_bytes("key", &node.secp256k1_key).unwrap()).collect();
    let view = ledger.dkg_view(state).unwrap();
    match (behaviour, body) {
        (Behaviour::Honest, body) => Some(body),
        (Behaviour::Silent, _) => None,
        (Behaviour::WithholdLater, body @ TransactionBody::DkgDeal { .. }) => Some(body),
        (Behaviour::WithholdLater, _) => None,
        (Behaviour::BadShare, TransactionBody::DkgDeal { batch, .. }) => {
            let context = view.context(batch);
            let secrets = DealerSecrets::random(view.params(), rng);
            let mut shares: Vec<Vec<SharePair>> = (1..=n).map(|j| secrets.shares_for(j)).collect();
            let victim = usize::from(me % n);
            shares[victim][0].value += Scalar::ONE;
            let dealing = seal_dealing(&context, me, &secrets.commitments(), &shares, &recipients, rng).unwrap();
            Some(TransactionBody::DkgDeal { batch, dealing })
        }
        (Behaviour::InconsistentCommitments, TransactionBody::DkgDeal { batch, .. }) => {
            let context = view.context(batch);
            let secrets = DealerSecrets::random(view.params(), rng);
            let other = DealerSecrets::random(view.params(), rng);
            let shares: Vec<Vec<SharePair>> = (1..=n).map(|j| secrets.shares_for(j)).collect();
            let dealing = seal_dealing(&context, me, &other.commitments(), &shares, &recipients, rng).unwrap();
            Some(TransactionBody::DkgDeal { batch, dealing })
        }
        (Behaviour::Malformed, TransactionBody::DkgDeal { batch, mut dealing }) => {
            let mut commitments = dealing.commitments.to_vec();
            commitments[5] ^= 0x10;
            dealing.commitments = commitments.into();
            Some(TransactionBody::DkgDeal { batch, dealing })
        }
        (Behaviour::FalseAccuser, TransactionBody::DkgResponse { batch, .. }) => {
            let context = view.context(batch);
            let record = view.batch(batch).unwrap().unwrap();
            let complaints = record
                .dealt
                .iter()
                .filter(|dealer| **dealer != me)
                .map(|dealer| {
                    let dealing = view.dealing(batch, *dealer).unwrap().unwrap();
                    let parsed = dealing.parse(&context, *dealer).unwrap();
                    complain(&context, *dealer, &parsed, me, secret, rng).unwrap()
                })
                .collect();
            Some(TransactionBody::DkgResponse { batch, complaints })
        }
        (Behaviour::BadPublicShares, TransactionBody::DkgPublicShares { batch, mut shares }) => {
            let mut bytes = shares.shares.to_vec();
            bytes.rotate_left(64);
            shares.shares = bytes.into();
            Some(TransactionBody::DkgPublicShares { batch, shares })
        }
        (_, body) => Some(body),
    }
}

/// Subsets of `items` of size `size`.
pub fn subsets(items: &[u16], size: usize) -> Vec<Vec<u16>> {
    if size == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for (i, first) in items.iter().enumerate() {
        for mut rest in subsets(&items[i + 1..], size - 1) {
            rest.insert(0, *first);
            out.push(rest);
        }
    }
    out
}
