#![allow(clippy::unwrap_used, clippy::expect_used)]

use commonware_codec::{Encode, Read};
use proptest::prelude::*;
use quorumkey_crypto::group::{AffinePoint, NonZeroScalar, Point, Scalar};
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::k256::elliptic_curve::group::GroupEncoding;
use quorumkey_crypto::shamir::{Polynomial, Share, reconstruct_secret};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::dealing::seal_reshare;
use super::*;
use crate::complaint::Verdict;
use crate::dealing::ShareFault;

/// Keys shared among an old set: each key's secret, every old node's share
/// and public share, and each public key.
struct OldSharing {
    secrets: Vec<Scalar>,
    /// `shares[i - 1][k]`.
    shares: Vec<Vec<Scalar>>,
    /// `public_shares[i - 1][k]`.
    public_shares: Vec<Vec<AffinePoint>>,
    public_keys: Vec<AffinePoint>,
}

fn old_sharing(params: &ReshareParams, rng: &mut ChaCha20Rng) -> OldSharing {
    let keys = usize::from(params.keys());
    let degree = usize::from(params.old_threshold()) - 1;
    let polynomials: Vec<Polynomial> = (0..keys).map(|_| Polynomial::random(degree, rng)).collect();
    let shares: Vec<Vec<Scalar>> = (1..=params.old_nodes())
        .map(|i| polynomials.iter().map(|p| p.evaluate(&Scalar::from(u64::from(i)))).collect())
        .collect();
    let public_shares =
        shares.iter().map(|row| row.iter().map(|s| Point::mul_by_generator(s).to_affine()).collect()).collect();
    let secrets: Vec<Scalar> = polynomials.iter().map(Polynomial::constant).collect();
    let public_keys = secrets.iter().map(|s| Point::mul_by_generator(s).to_affine()).collect();
    OldSharing { secrets, shares, public_shares, public_keys }
}

fn node_keys(count: u16, rng: &mut ChaCha20Rng) -> (Vec<NonZeroScalar>, Vec<Point>) {
    let secrets: Vec<NonZeroScalar> = (0..count).map(|_| NonZeroScalar::generate_from_rng(rng)).collect();
    let publics = secrets.iter().map(|s| Point::GENERATOR * s.as_ref()).collect();
    (secrets, publics)
}

/// The outcome of a handover among honest nodes with qualified set `q`:
/// each new node's new shares, and the finished keys.
fn hand_over(
    params: ReshareParams,
    q: &[u16],
    rng: &mut ChaCha20Rng,
) -> (OldSharing, Vec<zeroize::Zeroizing<Vec<Scalar>>>, Vec<crate::FinishedKey>) {
    let old = old_sharing(&params, rng);
    let (new_secrets, new_keys) = node_keys(params.new_nodes(), rng);
    let context = ReshareContext::new([7u8; 32], 2, 0, 100, params);
    let dealings: Vec<(u16, ReshareDealing)> = q
        .iter()
        .map(|&i| {
            let secrets = ReshareSecrets::new(params, &old.shares[usize::from(i) - 1], rng).unwrap();
            (i, secrets.deal(&context, i, &new_keys, rng).unwrap())
        })
        .collect();
    let parsed: Vec<ParsedReshareDealing> = dealings.iter().map(|(i, d)| d.parse(&context, *i).unwrap()).collect();
    let to_open: Vec<recipient::DealingToOpen<'_>> = dealings
        .iter()
        .zip(&parsed)
        .map(|((i, d), p)| (*i, d, p, old.public_shares[usize::from(*i) - 1].as_slice()))
        .collect();
    let mut new_shares = Vec::new();
    for j in 1..=params.new_nodes() {
        let received: Vec<ReceivedReshare> =
            open_reshare_dealings(&context, &to_open, j, &new_secrets[usize::from(j) - 1], rng)
                .into_iter()
                .map(|r| r.expect("an honest dealer's shares check"))
                .collect();
        let refs: Vec<&ReceivedReshare> = received.iter().collect();
        new_shares.push(combine_reshared(&params, &refs).unwrap());
    }
    let qualified: Vec<handover::QualifiedDealer<'_>> = dealings
        .iter()
        .zip(&parsed)
        .map(|((i, _), p)| (*i, p, old.public_shares[usize::from(*i) - 1].as_slice()))
        .collect();
    let finished = handover_keys(&params, &qualified, &old.public_keys).unwrap();
    (old, new_shares, finished)
}

fn check_handover(
    params: &ReshareParams,
    old: &OldSharing,
    new_shares: &[zeroize::Zeroizing<Vec<Scalar>>],
    finished: &[crate::FinishedKey],
) {
    let t_new = usize::from(params.new_threshold());
    for k in 0..usize::from(params.keys()) {
        assert_eq!(finished[k].public_key, <[u8; 33]>::from(old.public_keys[k].to_bytes()), "public key unchanged");
        for (j, shares) in new_shares.iter().enumerate() {
            let public: [u8; 33] = Point::mul_by_generator(&shares[k]).to_affine().to_bytes().into();
            assert_eq!(finished[k].public_shares[j], public, "new node {}'s public share of key {k}", j + 1);
        }
        // Every window of t' consecutive new nodes rebuilds the key.
        for start in 0..=(new_shares.len() - t_new) {
            let subset: Vec<Share> =
                (start..start + t_new).map(|j| Share { index: j as u32 + 1, value: new_shares[j][k] }).collect();
            assert_eq!(reconstruct_secret(&subset).unwrap(), old.secrets[k]);
        }
        // t' - 1 shares do not (with overwhelming probability).
        if t_new > 1 {
            let subset: Vec<Share> =
                (0..t_new - 1).map(|j| Share { index: j as u32 + 1, value: new_shares[j][k] }).collect();
            assert_ne!(reconstruct_secret(&subset).unwrap(), old.secrets[k]);
        }
    }
}

#[test]
fn four_to_five_five_to_four_and_refresh_keep_every_key() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for (old_n, new_n, q) in [
        (4u16, 5u16, vec![1u16, 2, 3]),
        (5, 4, vec![2, 3, 5]),
        (5, 5, vec![1, 2, 3]),
        (1, 3, vec![1]),
        (3, 1, vec![1, 3]),
    ] {
        let params = ReshareParams::new(old_n, new_n, 6).unwrap();
        let (old, new_shares, finished) = hand_over(params, &q, &mut rng);
        check_handover(&params, &old, &new_shares, &finished);
        if old_n == new_n {
            for (j, shares) in new_shares.iter().enumerate() {
                for k in 0..6 {
                    assert_ne!(shares[k], old.shares[j][k], "a refresh changes every share");
                }
            }
        }
    }
}

#[test]
fn more_than_t_qualified_dealers_still_interpolate() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let params = ReshareParams::new(5, 7, 3).unwrap();
    let (old, new_shares, finished) = hand_over(params, &[1, 2, 3, 4, 5], &mut rng);
    check_handover(&params, &old, &new_shares, &finished);
}

#[test]
fn fewer_than_t_dealers_are_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let params = ReshareParams::new(5, 5, 2).unwrap();
    let old = old_sharing(&params, &mut rng);
    let secrets = ReshareSecrets::new(params, &old.shares[0], &mut rng).unwrap();
    let parsed = ParsedReshareDealing {
        commitments: secrets.commitments().iter().map(|p| p.to_affine()).collect(),
        ephemeral: Point::GENERATOR,
    };
    let qualified = [(1u16, &parsed, old.public_shares[0].as_slice()), (2, &parsed, old.public_shares[1].as_slice())];
    assert!(handover_keys(&params, &qualified, &old.public_keys).is_err());
    let received = ReceivedReshare { dealer: 1, shares: vec![Scalar::ONE; 2] };
    assert!(combine_reshared(&params, &[&received, &received]).is_err());
}

/// A dealer that sends node 2 a wrong share: node 2's check fails, its
/// complaint is upheld; a complaint against an honest dealer is not.
#[test]
fn a_cheating_dealer_is_caught_and_an_honest_one_is_not() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let params = ReshareParams::new(5, 5, 4).unwrap();
    let context = ReshareContext::new([7u8; 32], 3, 1, 0, params);
    let old = old_sharing(&params, &mut rng);
    let (new_secrets, new_keys) = node_keys(5, &mut rng);

    let honest = ReshareSecrets::new(params, &old.shares[0], &mut rng).unwrap();
    let honest_dealing = honest.deal(&context, 1, &new_keys, &mut rng).unwrap();
    let cheat = ReshareSecrets::new(params, &old.shares[1], &mut rng).unwrap();
    let mut shares: Vec<Vec<Scalar>> = (1..=5).map(|j| cheat.shares_for(j)).collect();
    shares[1][3] += Scalar::ONE;
    let cheating_dealing = seal_reshare(&context, 2, &cheat.commitments(), &shares, &new_keys, &mut rng).unwrap();

    let honest_parsed = honest_dealing.parse(&context, 1).unwrap();
    let cheating_parsed = cheating_dealing.parse(&context, 2).unwrap();
    let to_open = [
        (1u16, &honest_dealing, &honest_parsed, old.public_shares[0].as_slice()),
        (2, &cheating_dealing, &cheating_parsed, old.public_shares[1].as_slice()),
    ];
    let results = open_reshare_dealings(&context, &to_open, 2, &new_secrets[1], &mut rng);
    assert!(results[0].is_ok());
    assert_eq!(results[1].as_ref().err(), Some(&ShareFault::Inconsistent));
    // Node 3 received right shares from both.
    assert!(open_reshare_dealings(&context, &to_open, 3, &new_secrets[2], &mut rng).iter().all(Result::is_ok));

    let complaint = complain_reshare(&context, 2, &cheating_parsed, 2, &new_secrets[1], &mut rng).unwrap();
    let verdict = adjudicate_reshare(
        &context,
        2,
        &cheating_dealing,
        &cheating_parsed,
        &old.public_shares[1],
        2,
        &new_keys[1],
        &complaint,
    );
    assert_eq!(verdict, Verdict::DealerFaulty(ShareFault::Inconsistent));

    let false_complaint = complain_reshare(&context, 1, &honest_parsed, 2, &new_secrets[1], &mut rng).unwrap();
    let verdict = adjudicate_reshare(
        &context,
        1,
        &honest_dealing,
        &honest_parsed,
        &old.public_shares[0],
        2,
        &new_keys[1],
        &false_complaint,
    );
    assert_eq!(verdict, Verdict::ComplaintFalse("the shares match the commitments"));

    // A complaint made with another node's key proves nothing.
    let stolen = complain_reshare(&context, 2, &cheating_parsed, 3, &new_secrets[2], &mut rng).unwrap();
    let verdict = adjudicate_reshare(
        &context,
        2,
        &cheating_dealing,
        &cheating_parsed,
        &old.public_shares[1],
        2,
        &new_keys[1],
        &stolen,
    );
    assert!(matches!(verdict, Verdict::ComplaintFalse(_)));
}

/// A dealer that deals something other than its share (a polynomial
/// through another constant) fails every recipient's check: the constant's
/// commitment is its public share on the ledger, not anything it sends.
#[test]
fn a_dealer_cannot_deal_another_constant() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let params = ReshareParams::new(4, 4, 3).unwrap();
    let context = ReshareContext::new([7u8; 32], 1, 0, 0, params);
    let old = old_sharing(&params, &mut rng);
    let (new_secrets, new_keys) = node_keys(4, &mut rng);
    let mut wrong = old.shares[0].clone();
    wrong[0] += Scalar::ONE;
    let dealer = ReshareSecrets::new(params, &wrong, &mut rng).unwrap();
    let dealing = dealer.deal(&context, 1, &new_keys, &mut rng).unwrap();
    let parsed = dealing.parse(&context, 1).unwrap();
    for j in 1..=4u16 {
        let results = open_reshare_dealings(
            &context,
            &[(1, &dealing, &parsed, old.public_shares[0].as_slice())],
            j,
            &new_secrets[usize::from(j) - 1],
            &mut rng,
        );
        assert_eq!(results[0].as_ref().err(), Some(&ShareFault::Inconsistent));
        let complaint = complain_reshare(&context, 1, &parsed, j, &new_secrets[usize::from(j) - 1], &mut rng).unwrap();
        let verdict = adjudicate_reshare(
            &context,
            1,
            &dealing,
            &parsed,
            &old.public_shares[0],
            j,
            &new_keys[usize::from(j) - 1],
            &complaint,
        );
        assert_eq!(verdict, Verdict::DealerFaulty(ShareFault::Inconsistent));
    }
}

#[test]
fn a_handover_that_would_change_a_public_key_is_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let params = ReshareParams::new(3, 3, 2).unwrap();
    let old = old_sharing(&params, &mut rng);
    let dealers: Vec<(u16, ParsedReshareDealing)> = (1..=2u16)
        .map(|i| {
            let secrets = ReshareSecrets::new(params, &old.shares[usize::from(i) - 1], &mut rng).unwrap();
            (
                i,
                ParsedReshareDealing {
                    commitments: secrets.commitments().iter().map(|p| p.to_affine()).collect(),
                    ephemeral: Point::GENERATOR,
                },
            )
        })
        .collect();
    let qualified: Vec<handover::QualifiedDealer<'_>> =
        dealers.iter().map(|(i, p)| (*i, p, old.public_shares[usize::from(*i) - 1].as_slice())).collect();
    assert!(handover_keys(&params, &qualified, &old.public_keys).is_ok());
    let mut other = old.public_keys.clone();
    other[1] = (Point::from(other[1]) + Point::GENERATOR).to_affine();
    assert_eq!(
        handover_keys(&params, &qualified, &other),
        Err(crate::DkgError::InvalidProof("the handover would change a public key"))
    );
}

/// Nothing made for one batch, epoch or network is accepted in another.
#[test]
fn dealings_are_bound_to_their_batch() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let params = ReshareParams::new(4, 4, 2).unwrap();
    let context = ReshareContext::new([7u8; 32], 5, 0, 0, params);
    let old = old_sharing(&params, &mut rng);
    let (new_secrets, new_keys) = node_keys(4, &mut rng);
    let dealing =
        ReshareSecrets::new(params, &old.shares[0], &mut rng).unwrap().deal(&context, 1, &new_keys, &mut rng).unwrap();
    assert!(dealing.parse(&context, 1).is_ok());
    assert!(dealing.parse(&context, 2).is_err(), "another dealer's");
    for other in [
        ReshareContext::new([8u8; 32], 5, 0, 0, params),
        ReshareContext::new([7u8; 32], 6, 0, 0, params),
        ReshareContext::new([7u8; 32], 5, 1, 0, params),
        ReshareContext::new([7u8; 32], 5, 0, 2, params),
    ] {
        assert!(dealing.parse(&other, 1).is_err());
        let parsed = dealing.parse_accepted(&params).unwrap();
        let opened = open_reshare_dealings(
            &other,
            &[(1, &dealing, &parsed, old.public_shares[0].as_slice())],
            1,
            &new_secrets[0],
            &mut rng,
        );
        assert_eq!(opened[0].as_ref().err(), Some(&ShareFault::Undecryptable));
    }
}

#[test]
fn codec_round_trip_and_shape_checks() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let params = ReshareParams::new(5, 7, 5).unwrap();
    let context = ReshareContext::new([1u8; 32], 1, 0, 0, params);
    let old = old_sharing(&params, &mut rng);
    let (_, new_keys) = node_keys(7, &mut rng);
    let dealing =
        ReshareSecrets::new(params, &old.shares[0], &mut rng).unwrap().deal(&context, 1, &new_keys, &mut rng).unwrap();
    let bytes = dealing.encode();
    assert!(bytes.len() <= params.dealing_len());
    let decoded = ReshareDealing::read_cfg(&mut bytes.clone(), &(&params).into()).unwrap();
    assert_eq!(decoded, dealing);
    // Decoded within another batch's bounds, the shape check refuses it.
    let other = ReshareParams::new(5, 6, 5).unwrap();
    assert!(ReshareDealing::read_cfg(&mut bytes.clone(), &(&other).into()).is_err());
    let loose = dealing::ReshareDealingBounds { max_recipients: 256, max_bytes: 1 << 18 };
    let decoded = ReshareDealing::read_cfg(&mut bytes.clone(), &loose).unwrap();
    assert!(decoded.parse(&context, 1).is_ok());
    assert!(decoded.parse_accepted(&other).is_err());
}

#[test]
fn largest_fitting_batches_fit() {
    for (old_n, new_n) in [(4u16, 5u16), (5, 4), (5, 5), (7, 7), (4, 64)] {
        let params = ReshareParams::largest_fitting(old_n, new_n, 256 * 1024).unwrap();
        assert!(params.dealing_len() <= 256 * 1024);
        if params.keys() < crate::params::MAX_BATCH_KEYS {
            let bigger = ReshareParams::new(old_n, new_n, params.keys() + 1).unwrap();
            assert!(bigger.dealing_len() > 256 * 1024);
        }
    }
    assert!(ReshareParams::largest_fitting(256, 256, 1000).is_none());
    // docs/dkg.md: 907 keys for 5 -> 5 within the DKG's dealing budget.
    assert_eq!(ReshareParams::largest_fitting(5, 5, 256 * 1024 - 512).map(|p| p.keys()), Some(907));
}

#[test]
fn designated_dealers_are_t_and_rotate() {
    let params = ReshareParams::new(5, 4, 1).unwrap();
    for batch in 0..10u64 {
        let designated: Vec<u16> = (1..=5).filter(|i| params.designated_dealer(batch, *i)).collect();
        assert_eq!(designated.len(), 3);
        assert!(designated.contains(&(((batch % 5) as u16) + 1)));
    }
    assert!(!params.designated_dealer(0, 0));
    assert!(!params.designated_dealer(0, 6));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Any old and new sizes, any qualified set of at least t old nodes:
    /// every key unchanged, every new public share right, t' new shares
    /// rebuild each key.
    #[test]
    fn any_handover_keeps_every_key(seed in any::<u64>(), old_n in 1u16..=7, new_n in 1u16..=7, keys in 1u16..=3, pick in any::<u64>(), extra in 0usize..=2) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let params = ReshareParams::new(old_n, new_n, keys).unwrap();
        let t = usize::from(params.old_threshold());
        let size = (t + extra).min(usize::from(old_n));
        // A pseudo-random subset of the old indexes of that size.
        let mut all: Vec<u16> = (1..=old_n).collect();
        let mut state = pick;
        for i in (1..all.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            all.swap(i, (state >> 33) as usize % (i + 1));
        }
        let mut q: Vec<u16> = all[..size].to_vec();
        q.sort_unstable();
        let (old, new_shares, finished) = hand_over(params, &q, &mut rng);
        check_handover(&params, &old, &new_shares, &finished);
    }
}
