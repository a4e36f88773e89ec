//! The client's checks of a key's public data, shares and the rebuilt key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorumkey_client::key_check::{PublicShareVotes, check_public_shares};
use quorumkey_crypto::group::{NonZeroScalar, Point, PublicKey, Scalar, generator, point_to_bytes};
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::shamir::{Share, split};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn dealt(seed: u64) -> (Scalar, PublicKey, Vec<Share>, Vec<String>) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let secret = NonZeroScalar::generate_from_rng(&mut rng);
    let shares = split(*secret, 3, 5, &mut rng).unwrap();
    let public: Vec<String> = shares.iter().map(|s| hex::encode(point_to_bytes(&(generator() * s.value)))).collect();
    (*secret, PublicKey::from_secret_scalar(&secret), shares, public)
}

#[test]
fn consistent_public_shares_pass_and_shares_rebuild_the_key() {
    let (secret, public_key, shares, public) = dealt(1);
    let key = check_public_shares(7, &public_key, &public, 5, 3).unwrap();
    assert_eq!(key.key_index, 7);
    for share in &shares {
        assert!(key.share_matches(share.index as u16, &share.value));
        assert!(!key.share_matches(share.index as u16, &(share.value + Scalar::ONE)));
    }
    assert!(!key.share_matches(0, &shares[0].value), "there is no node 0");
    assert!(!key.share_matches(6, &shares[0].value), "there is no node 6");
    assert_eq!(key.rebuild(&shares[1..4]).unwrap(), secret);
    assert_eq!(key.rebuild(&[shares[0].clone(), shares[2].clone(), shares[4].clone()]).unwrap(), secret);
    let wrong = Share { index: 2, value: shares[1].value + Scalar::ONE };
    let error = key.rebuild(&[shares[0].clone(), wrong, shares[2].clone()]).unwrap_err();
    assert!(error.contains("does not match"), "{error}");
}

#[test]
fn inconsistent_public_shares_are_refused() {
    let (_, public_key, _, public) = dealt(2);
    let (_, other_key, _, other) = dealt(3);
    let error = check_public_shares(0, &other_key, &public, 5, 3).unwrap_err();
    assert!(error.contains("do not interpolate"), "{error}");
    let mut off = public.clone();
    off[4] = other[4].clone();
    let error = check_public_shares(0, &public_key, &off, 5, 3).unwrap_err();
    assert!(error.contains("public share 5 is not on the key's polynomial"), "{error}");
    let error = check_public_shares(0, &public_key, &public[..4], 5, 3).unwrap_err();
    assert!(error.contains("4 public shares for 5 nodes"), "{error}");
    let mut garbage = public.clone();
    garbage[1] = "zz".into();
    assert!(check_public_shares(0, &public_key, &garbage, 5, 3).unwrap_err().contains("not hex"));
    garbage[1] = hex::encode([7u8; 33]);
    let error = check_public_shares(0, &public_key, &garbage, 5, 3).unwrap_err();
    assert!(error.contains("public share 2"), "an invalid encoding is named: {error}");
    assert!(check_public_shares(0, &public_key, &public, 5, 0).is_err());
    assert!(check_public_shares(0, &public_key, &public, 5, 6).is_err());
    let identity = hex::encode(point_to_bytes(&Point::IDENTITY));
    let mut with_identity = public;
    with_identity[0] = identity;
    assert!(check_public_shares(0, &public_key, &with_identity, 5, 3).is_err());
}

/// Another sharing of the same secret: public shares that check out on
/// their own (a faulty node's self-consistent fake).
fn fake_of(secret: Scalar, seed: u64) -> Vec<String> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let shares = split(secret, 3, 5, &mut rng).unwrap();
    shares.iter().map(|s| hex::encode(point_to_bytes(&(generator() * s.value)))).collect()
}

#[test]
fn public_shares_are_accepted_only_when_t_nodes_agree() {
    let (secret, public_key, _, public) = dealt(4);
    let fake = fake_of(secret, 40);
    assert!(check_public_shares(9, &public_key, &fake, 5, 3).is_ok(), "the fake checks out on its own");
    assert_ne!(fake, public);

    let mut votes = PublicShareVotes::new(9, &public_key, 5, 3);
    assert!(votes.add(1, Ok(fake.clone())).is_none(), "one node's answer is never enough");
    assert!(votes.add(2, Ok(public.clone())).is_none());
    assert!(votes.add(2, Ok(public.clone())).is_none(), "a node counts once");
    assert!(votes.add(3, Err("HTTP 500".into())).is_none());
    assert_eq!(votes.agreeing(), 1);
    // The same points in another spelling (upper-case hex) agree.
    let upper: Vec<String> = public.iter().map(|s| s.to_uppercase()).collect();
    assert!(votes.add(4, Ok(upper)).is_none());
    let checked = votes.add(5, Ok(public.clone())).expect("three nodes agree");
    assert_eq!(checked, check_public_shares(9, &public_key, &public, 5, 3).unwrap());
}

#[test]
fn public_share_disagreements_name_every_node() {
    let (secret, public_key, _, public) = dealt(5);
    let mut votes = PublicShareVotes::new(0, &public_key, 5, 3);
    assert!(votes.add(1, Ok(fake_of(secret, 50))).is_none());
    assert!(votes.add(2, Ok(fake_of(secret, 51))).is_none());
    assert!(votes.add(3, Err("HTTP 503".into())).is_none());
    assert!(votes.add(4, Ok(public.clone())).is_none());
    let mut garbage = public.clone();
    garbage[0] = "zz".into();
    assert!(votes.add(5, Ok(garbage)).is_none());
    assert_eq!(votes.agreeing(), 1);
    let failures = votes.failures();
    assert_eq!(failures.iter().map(|f| f.node).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert!(failures[0].reason.contains("only nodes 1 served") && failures[0].reason.contains("3 different"));
    assert_eq!(failures[2].reason, "HTTP 503");
    assert!(failures[4].reason.contains("public share 1 is not hex"), "{}", failures[4].reason);
}

#[test]
fn agreed_public_shares_that_fail_the_check_are_refused() {
    let (_, public_key, _, _) = dealt(6);
    let (_, _, _, other) = dealt(7);
    let mut votes = PublicShareVotes::new(0, &public_key, 5, 3);
    for node in 1..=4 {
        assert!(votes.add(node, Ok(other.clone())).is_none(), "another key's shares never pass");
    }
    assert_eq!(votes.agreeing(), 0, "a refused answer counts for nothing");
    let failures = votes.failures();
    assert_eq!(failures.len(), 5);
    assert!(
        failures[..4].iter().all(|f| f.reason.contains("nodes 1, 2, 3") && f.reason.contains("do not interpolate"))
    );
    assert!(failures[4].reason.contains("not waited for"), "node 5 had not answered: {}", failures[4].reason);
}
