//! The batch DKG end to end at the level of its pure functions: honest and
//! cheating dealers, complaints and their verdicts, public shares, finished
//! keys rebuilt from every threshold subset.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use quorumkey_crypto::group::{NonZeroScalar, Point, Scalar, generator, point_from_bytes};
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::shamir::{Share, reconstruct_secret};
use quorumkey_dkg::complaint::Verdict;
use quorumkey_dkg::dealing::{ShareFault, SharePair, seal_dealing};
use quorumkey_dkg::recipient::complain;
use quorumkey_dkg::{
    AggregateCommitments, BatchContext, BatchParams, DealerSecrets, Dealing, KeyShares, PreparedDealing, adjudicate,
    finish_keys, open_dealing, verify_public_shares,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

struct Network {
    context: BatchContext,
    secrets: Vec<NonZeroScalar>,
    keys: Vec<Point>,
}

fn network(n: u16, k: u16, seed: u64) -> (Network, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let params = BatchParams::new(n, k).unwrap();
    let context = BatchContext::new([7u8; 32], 3, params);
    let secrets: Vec<NonZeroScalar> = (0..n).map(|_| NonZeroScalar::generate_from_rng(&mut rng)).collect();
    let keys = secrets.iter().map(|s| generator() * s.as_ref()).collect();
    (Network { context, secrets, keys }, rng)
}

/// Subsets of `items` of size `size`.
fn subsets(items: &[u16], size: usize) -> Vec<Vec<u16>> {
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

/// Runs a batch where `cheater` (if any) sends recipient `victim` shares
/// that do not match its commitments. Returns the qualified dealers, the
/// secrets of every dealer, every node's key shares, and the finished keys.
fn run(n: u16, k: u16, seed: u64, cheater: Option<(u16, u16)>) -> Outcome {
    let (net, mut rng) = network(n, k, seed);
    let params = *net.context.params();
    let dealers: Vec<DealerSecrets> = (0..n).map(|_| DealerSecrets::random(params, &mut rng)).collect();
    let dealings: Vec<Dealing> = dealers
        .iter()
        .zip(1u16..)
        .map(|(secrets, dealer)| match cheater {
            Some((bad, victim)) if bad == dealer => {
                let mut shares: Vec<Vec<SharePair>> = (1..=n).map(|j| secrets.shares_for(j)).collect();
                shares[usize::from(victim) - 1][0].value += Scalar::ONE;
                seal_dealing(&net.context, dealer, &secrets.commitments(), &shares, &net.keys, &mut rng).unwrap()
            }
            _ => secrets.deal(&net.context, dealer, &net.keys, &mut rng).unwrap(),
        })
        .collect();
    let parsed: Vec<_> = dealings.iter().zip(1u16..).map(|(d, i)| d.parse(&net.context, i).unwrap()).collect();

    // Recipients open every dealing; a bad one draws a complaint, judged.
    let mut disqualified = Vec::new();
    let mut received = vec![Vec::new(); usize::from(n)];
    for j in 1..=n {
        let secret = &net.secrets[usize::from(j) - 1];
        for i in 1..=n {
            let (dealing, view) = (&dealings[usize::from(i) - 1], &parsed[usize::from(i) - 1]);
            match open_dealing(&net.context, i, dealing, view, j, secret, &mut rng) {
                Ok(shares) => received[usize::from(j) - 1].push(shares),
                Err(fault) => {
                    assert_eq!(fault, ShareFault::Inconsistent);
                    let complaint = complain(&net.context, i, view, j, secret, &mut rng).unwrap();
                    let key = net.keys[usize::from(j) - 1];
                    let verdict = adjudicate(&net.context, i, dealing, view, j, &key, &complaint);
                    assert_eq!(verdict, Verdict::DealerFaulty(ShareFault::Inconsistent));
                    disqualified.push(i);
                }
            }
        }
    }
    // A false complaint (against an honest dealer) is judged false.
    let honest = (1..=n).find(|i| !disqualified.contains(i)).unwrap();
    let complaint =
        complain(&net.context, honest, &parsed[usize::from(honest) - 1], 1, &net.secrets[0], &mut rng).unwrap();
    assert!(matches!(
        adjudicate(
            &net.context,
            honest,
            &dealings[usize::from(honest) - 1],
            &parsed[usize::from(honest) - 1],
            1,
            &net.keys[0],
            &complaint
        ),
        Verdict::ComplaintFalse(_)
    ));
    // A complaint with another node's key is not proven.
    assert!(matches!(
        adjudicate(
            &net.context,
            honest,
            &dealings[usize::from(honest) - 1],
            &parsed[usize::from(honest) - 1],
            1,
            &net.keys[1],
            &complaint
        ),
        Verdict::ComplaintFalse(_)
    ));

    let qualified: Vec<u16> = (1..=n).filter(|i| !disqualified.contains(i)).collect();
    let views: Vec<_> = qualified.iter().map(|i| &parsed[usize::from(*i) - 1]).collect();
    let aggregate = AggregateCommitments::sum(params, &views).unwrap();
    let key_shares: Vec<KeyShares> = (1..=n)
        .map(|j| {
            let mine: Vec<_> =
                received[usize::from(j) - 1].iter().filter(|r| qualified.contains(&r.dealer())).collect();
            KeyShares::aggregate(&params, j, &mine).unwrap()
        })
        .collect();
    let publications: Vec<_> = key_shares.iter().map(|s| s.prove_public_shares(&net.context, &mut rng)).collect();
    let items: Vec<(u16, &_)> = (1u16..).zip(publications.iter()).collect();
    let verified = verify_public_shares(&net.context, &aggregate, &items);
    let published: Vec<_> = (1u16..).zip(verified).map(|(j, v)| (j, v.unwrap())).collect();
    // Finish from exactly t publications (the others are interpolated).
    let t = usize::from(params.threshold());
    let finished = finish_keys(&params, &published[published.len() - t..]).unwrap();
    let all = finish_keys(&params, &published).unwrap();
    assert_eq!(finished, all, "interpolated public shares equal the published ones");
    Outcome { qualified, dealers, key_shares, finished, params }
}

struct Outcome {
    qualified: Vec<u16>,
    dealers: Vec<DealerSecrets>,
    key_shares: Vec<KeyShares>,
    finished: Vec<quorumkey_dkg::FinishedKey>,
    params: BatchParams,
}

fn check(outcome: &Outcome) {
    let n = outcome.params.nodes();
    let t = usize::from(outcome.params.threshold());
    let nodes: Vec<u16> = (1..=n).collect();
    for (k, key) in outcome.finished.iter().enumerate() {
        let expected: Scalar =
            outcome.qualified.iter().map(|i| outcome.dealers[usize::from(*i) - 1].contribution(k).unwrap()).sum();
        let public_key = point_from_bytes("pk", &key.public_key).unwrap();
        assert_eq!(public_key, generator() * expected, "key {k}: the sum of the qualified dealers' secrets");
        for (j, public_share) in (1u16..).zip(&key.public_shares) {
            let share = outcome.key_shares[usize::from(j) - 1].public_share(k).unwrap();
            assert_eq!(point_from_bytes("share", public_share).unwrap(), share, "key {k} node {j}");
        }
        for subset in subsets(&nodes, t) {
            let shares: Vec<Share> = subset
                .iter()
                .map(|j| Share {
                    index: u32::from(*j),
                    value: outcome.key_shares[usize::from(*j) - 1].shares()[k].value,
                })
                .collect();
            assert_eq!(reconstruct_secret(&shares).unwrap(), expected, "key {k} from {subset:?}");
        }
    }
}

#[test]
fn honest_batches_for_four_five_and_seven_nodes() {
    for n in [4u16, 5, 7] {
        let outcome = run(n, 6, u64::from(n), None);
        assert_eq!(outcome.qualified, (1..=n).collect::<Vec<_>>());
        check(&outcome);
    }
}

#[test]
fn a_dealer_with_a_bad_share_is_disqualified_and_the_batch_completes() {
    let outcome = run(5, 4, 9, Some((2, 4)));
    assert_eq!(outcome.qualified, vec![1, 3, 4, 5]);
    check(&outcome);
}

#[test]
fn wrong_public_shares_are_refused_and_the_others_accepted() {
    let (net, mut rng) = network(4, 3, 21);
    let params = *net.context.params();
    let dealers: Vec<DealerSecrets> = (0..4).map(|_| DealerSecrets::random(params, &mut rng)).collect();
    let dealings: Vec<Dealing> =
        dealers.iter().zip(1u16..).map(|(d, i)| d.deal(&net.context, i, &net.keys, &mut rng).unwrap()).collect();
    let parsed: Vec<_> = dealings.iter().zip(1u16..).map(|(d, i)| d.parse(&net.context, i).unwrap()).collect();
    let aggregate = AggregateCommitments::sum(params, &parsed.iter().collect::<Vec<_>>()).unwrap();
    let mut publications = Vec::new();
    for j in 1..=4u16 {
        let received: Vec<_> = (1..=4u16)
            .map(|i| {
                let index = usize::from(i) - 1;
                open_dealing(
                    &net.context,
                    i,
                    &dealings[index],
                    &parsed[index],
                    j,
                    &net.secrets[usize::from(j) - 1],
                    &mut rng,
                )
                .unwrap()
            })
            .collect();
        let shares = KeyShares::aggregate(&params, j, &received.iter().collect::<Vec<_>>()).unwrap();
        publications.push(shares.prove_public_shares(&net.context, &mut rng));
    }
    // Node 2 publishes node 3's shares as its own; node 4's shares are swapped.
    let mut forged = publications[2].clone();
    let mut swapped = publications[3].clone();
    let mut bytes = swapped.shares.to_vec();
    bytes.rotate_left(64);
    swapped.shares = bytes.into();
    forged.proof = publications[1].proof;
    let items = [(1u16, &publications[0]), (2, &forged), (3, &publications[2]), (4, &swapped)];
    let verified = verify_public_shares(&net.context, &aggregate, &items);
    assert!(verified[0].is_ok() && verified[2].is_ok());
    assert!(verified[1].is_err() && verified[3].is_err());
    // Published for another batch: refused.
    let other = BatchContext::new([7u8; 32], 4, params);
    assert!(verify_public_shares(&other, &aggregate, &[(1, &publications[0])])[0].is_err());
}

#[test]
fn a_prepared_dealing_seals_for_any_batch_of_its_shape_only() {
    let (net, mut rng) = network(5, 4, 8);
    let params = *net.context.params();
    let prepared = PreparedDealing::new(params, &mut rng);
    let dealing = prepared.seal(&net.context, 2, &net.keys, &mut rng).unwrap();
    let parsed = dealing.parse(&net.context, 2).unwrap();
    for j in 1..=5u16 {
        open_dealing(&net.context, 2, &dealing, &parsed, j, &net.secrets[usize::from(j) - 1], &mut rng).unwrap();
    }
    // Prepared for batches of another size: refused.
    let other = PreparedDealing::new(BatchParams::new(5, 8).unwrap(), &mut rng);
    assert!(other.seal(&net.context, 2, &net.keys, &mut rng).is_err());
}

#[test]
fn malformed_dealings_are_refused_by_parse() {
    let (net, mut rng) = network(4, 2, 5);
    let params = *net.context.params();
    let secrets = DealerSecrets::random(params, &mut rng);
    let dealing = secrets.deal(&net.context, 1, &net.keys, &mut rng).unwrap();
    dealing.parse(&net.context, 1).unwrap();
    // Claimed by another dealer: the ephemeral key's proof is bound to the dealer.
    assert!(dealing.parse(&net.context, 2).is_err());
    let mut off_curve = dealing.clone();
    let mut bytes = off_curve.commitments.to_vec();
    bytes[10] ^= 0x40;
    off_curve.commitments = bytes.into();
    assert!(off_curve.parse(&net.context, 1).is_err());
    let mut short = dealing.clone();
    short.ciphertexts.pop();
    assert!(short.parse(&net.context, 1).is_err());
    // Garbage ciphertext: the recipient gets Undecryptable and the complaint is upheld.
    let mut garbage = dealing.clone();
    garbage.ciphertexts[2] = vec![1u8; params.ciphertext_len()].into();
    let view = garbage.parse(&net.context, 1).unwrap();
    assert_eq!(
        open_dealing(&net.context, 1, &garbage, &view, 3, &net.secrets[2], &mut rng).unwrap_err(),
        ShareFault::Undecryptable
    );
    let complaint = complain(&net.context, 1, &view, 3, &net.secrets[2], &mut rng).unwrap();
    assert_eq!(
        adjudicate(&net.context, 1, &garbage, &view, 3, &net.keys[2], &complaint),
        Verdict::DealerFaulty(ShareFault::Undecryptable)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Every key is the sum of the qualified dealers' secrets, and every
    /// threshold subset of shares rebuilds it, whoever cheats.
    #[test]
    fn key_is_the_sum_of_the_qualified_secrets(n in 4u16..=7, seed in any::<u64>(), cheat in any::<bool>()) {
        let cheater = cheat.then_some((1 + (seed % u64::from(n)) as u16, 1 + ((seed / 7) % u64::from(n)) as u16));
        let outcome = run(n, 2, seed, cheater);
        prop_assert_eq!(outcome.qualified.len(), usize::from(n) - usize::from(cheater.is_some()));
        check(&outcome);
    }
}

#[test]
fn opening_many_dealings_at_once_finds_exactly_the_bad_ones() {
    let (net, mut rng) = network(5, 8, 33);
    let params = *net.context.params();
    let mut dealings = Vec::new();
    for dealer in 1..=5u16 {
        let secrets = DealerSecrets::random(params, &mut rng);
        let mut shares: Vec<Vec<SharePair>> = (1..=5).map(|j| secrets.shares_for(j)).collect();
        if dealer == 2 || dealer == 5 {
            shares[2][7].blinding += Scalar::ONE; // recipient 3, last key
        }
        dealings
            .push(seal_dealing(&net.context, dealer, &secrets.commitments(), &shares, &net.keys, &mut rng).unwrap());
    }
    let mut garbage = dealings[3].clone();
    garbage.ciphertexts[2] = vec![0u8; params.ciphertext_len()].into();
    dealings[3] = garbage;
    let parsed: Vec<_> = dealings.iter().zip(1u16..).map(|(d, i)| d.parse(&net.context, i).unwrap()).collect();
    let items: Vec<_> = (1u16..).zip(dealings.iter().zip(&parsed)).map(|(i, (d, p))| (i, d, p)).collect();
    let results = quorumkey_dkg::open_dealings(&net.context, &items, 3, &net.secrets[2], &mut rng);
    let faults: Vec<Option<ShareFault>> = results.iter().map(|r| r.as_ref().err().copied()).collect();
    assert_eq!(
        faults,
        vec![
            None,
            Some(ShareFault::Inconsistent),
            None,
            Some(ShareFault::Undecryptable),
            Some(ShareFault::Inconsistent)
        ]
    );
    // Another recipient got good shares from everyone.
    let results = quorumkey_dkg::open_dealings(&net.context, &items, 1, &net.secrets[0], &mut rng);
    assert!(results.iter().all(Result::is_ok));
}
