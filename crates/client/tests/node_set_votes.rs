//! Which node set a client moves to (`accept_node_set`, pure): the newest
//! set in force that `t` nodes of a set it already trusts attest, each
//! answer counted only under the key of the node that was asked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorumkey_client::network_discovery::{NodeSetAnswer, TrustedSet, accept_node_set};
use quorumkey_crypto::group::{PublicKey, public_key_to_xy_hex};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::shamir::majority_threshold;
use quorumkey_login::network::{EpochNodeJson, NextNodeSetJson, NodeSetJson};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const NETWORK_ID: &str = "0202020202020202020202020202020202020202020202020202020202020202";

fn keys(seed: u64, count: usize) -> Vec<SigningKey> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..count).map(|_| SigningKey::generate_from_rng(&mut rng)).collect()
}

fn public(key: &SigningKey) -> PublicKey {
    PublicKey::from(key.verifying_key())
}

fn nodes(keys: &[SigningKey]) -> Vec<EpochNodeJson> {
    keys.iter()
        .zip(1u16..)
        .map(|(key, index)| {
            let (pub_key_x, pub_key_y) = public_key_to_xy_hex(&public(key));
            let host = pub_key_x[..8].to_owned();
            EpochNodeJson {
                index,
                endpoint: format!("http://{host}.example:8000/jrpc"),
                api: format!("http://{host}.example:8000"),
                pub_key_x,
                pub_key_y,
                consensus_key: "ab".repeat(32),
                p2p_address: format!("{host}.example:7000"),
            }
        })
        .collect()
}

fn threshold(count: usize) -> usize {
    majority_threshold(count as u32) as usize
}

fn set(epoch: u64, members: &[SigningKey]) -> NodeSetJson {
    NodeSetJson { epoch, threshold: threshold(members.len()), nodes: nodes(members), next: None, attestation: None }
}

fn with_next(mut current: NodeSetJson, next: &[SigningKey], boundary: Option<u64>) -> NodeSetJson {
    current.next = Some(NextNodeSetJson {
        epoch: current.epoch + 1,
        threshold: threshold(next.len()),
        nodes: nodes(next),
        boundary,
    });
    current
}

fn trusted(epoch: u64, members: &[SigningKey]) -> TrustedSet {
    TrustedSet {
        epoch,
        threshold: threshold(members.len()),
        nodes: members.iter().map(|key| (public(key), String::new())).collect(),
    }
}

/// `signers` each asked and answering `described`, attested by itself.
fn answers(described: &NodeSetJson, signers: &[SigningKey]) -> Vec<NodeSetAnswer> {
    signers
        .iter()
        .map(|key| {
            let mut answer = described.clone();
            answer.attest(NETWORK_ID, key).unwrap();
            (public(key), Ok(answer))
        })
        .collect()
}

#[test]
fn t_nodes_of_the_set_in_use_move_the_client_to_a_newer_set() {
    let old = keys(1, 5);
    let new = keys(2, 4);
    let epoch_3 = set(3, &new);
    // Three of the five old nodes attest epoch 3: t = 3.
    let accepted = accept_node_set(NETWORK_ID, &[trusted(2, &old)], answers(&epoch_3, &old[..3])).unwrap();
    assert_eq!(accepted, epoch_3);
    assert!(accepted.attestation.is_none());
    // Two are not enough, and the error says what each set got.
    let error = accept_node_set(NETWORK_ID, &[trusted(2, &old)], answers(&epoch_3, &old[..2])).unwrap_err();
    assert!(error.to_string().contains("epoch 3: attested by 2 node(s) only"), "{error}");
    // Nor are four of the new set's own nodes: the client does not know them.
    let error = accept_node_set(NETWORK_ID, &[trusted(2, &old)], answers(&epoch_3, &new)).unwrap_err();
    assert!(error.to_string().contains("epoch 3"), "{error}");
}

#[test]
fn an_answer_counts_only_under_the_key_of_the_node_asked() {
    let old = keys(3, 5);
    let new = keys(4, 3);
    let epoch_1 = set(1, &new);
    let mut answers = answers(&epoch_1, &old[..2]);
    // A third answer, signed by old node 1 again but given as node 3's.
    let mut copied = epoch_1.clone();
    copied.attest(NETWORK_ID, &old[0]).unwrap();
    answers.push((public(&old[2]), Ok(copied)));
    // A fourth, node 4's, for another network.
    let mut elsewhere = epoch_1.clone();
    elsewhere.attest(&"03".repeat(32), &old[3]).unwrap();
    answers.push((public(&old[3]), Ok(elsewhere)));
    // A fifth, node 5's, with no attestation; and a failure.
    answers.push((public(&old[4]), Ok(epoch_1.clone())));
    answers.push((public(&old[4]), Err("unreachable".to_owned())));
    let error = accept_node_set(NETWORK_ID, &[trusted(0, &old)], answers).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("attested by another key than the node's"), "{text}");
    assert!(text.contains("does not verify"), "{text}");
    assert!(text.contains("not attested"), "{text}");
    assert!(text.contains("unreachable"), "{text}");
    // The same node answering twice counts once.
    let twice: Vec<NodeSetAnswer> =
        answers_twice(&epoch_1, &old[0]).into_iter().chain(answers_twice(&epoch_1, &old[1])).collect();
    assert!(accept_node_set(NETWORK_ID, &[trusted(0, &old)], twice).is_err());
}

fn answers_twice(described: &NodeSetJson, key: &SigningKey) -> Vec<NodeSetAnswer> {
    let once = answers(described, std::slice::from_ref(key));
    once.iter().cloned().chain(once.iter().cloned()).collect()
}

#[test]
fn at_the_trusted_epoch_only_the_trusted_set_is_taken_and_the_newest_wins() {
    let current = keys(5, 4);
    let other = keys(6, 4);
    let anchor = trusted(4, &current);
    // Three of the four claim another set for the same epoch 4: refused.
    let forged = set(4, &other);
    assert!(accept_node_set(NETWORK_ID, std::slice::from_ref(&anchor), answers(&forged, &current[..3])).is_err());
    // The same set, with a next one: its epoch is kept, the next set taken.
    let same = with_next(set(4, &current), &other, None);
    let accepted = accept_node_set(NETWORK_ID, std::slice::from_ref(&anchor), answers(&same, &current[..3])).unwrap();
    assert_eq!(accepted.epoch, 4);
    assert_eq!(accepted.next.as_ref().map(|next| next.epoch), Some(5));
    // Nodes at different heights: epoch 4 from one, epoch 5 from three:
    // the newest attested set wins.
    let mut mixed = answers(&same, &current[..1]);
    mixed.extend(answers(&set(5, &other), &current[1..]));
    let accepted = accept_node_set(NETWORK_ID, std::slice::from_ref(&anchor), mixed).unwrap();
    assert_eq!(accepted, set(5, &other));
}

#[test]
fn the_next_set_once_known_vouches_for_itself_when_the_old_nodes_are_gone() {
    let old = keys(7, 4);
    let new = keys(8, 5);
    let newer = keys(9, 3);
    // The client knew epoch 1 would be `new`; the old nodes are gone.
    let known_next = trusted(1, &new);
    let in_force = with_next(set(1, &new), &newer, Some(640));
    let accepted =
        accept_node_set(NETWORK_ID, &[trusted(0, &old), known_next.clone()], answers(&in_force, &new[..3])).unwrap();
    assert_eq!(accepted.epoch, 1);
    // Its next set is attested by t of the accepted set: kept, with the
    // latest boundary reported.
    let next = accepted.next.unwrap();
    assert_eq!((next.epoch, next.nodes.len(), next.boundary), (2, 3, Some(640)));
    // But the next set the client knew must be the one in force: another
    // set for epoch 1 is refused, even attested by the known nodes.
    let other = set(1, &newer);
    assert!(accept_node_set(NETWORK_ID, &[trusted(0, &old), known_next], answers(&other, &new)).is_err());
}

#[test]
fn a_next_set_too_few_attest_is_left_out_and_boundaries_do_not_split_votes() {
    let current = keys(10, 5);
    let next = keys(11, 5);
    let fake = keys(12, 5);
    let anchor = [trusted(2, &current)];
    // Three attest the real next set (two still without a boundary), two
    // a fake one.
    let mut mixed = answers(&with_next(set(2, &current), &next, None), &current[..2]);
    mixed.extend(answers(&with_next(set(2, &current), &next, Some(1280)), &current[2..3]));
    mixed.extend(answers(&with_next(set(2, &current), &fake, Some(64)), &current[3..]));
    let accepted = accept_node_set(NETWORK_ID, &anchor, mixed).unwrap();
    let taken = accepted.next.unwrap();
    assert_eq!(taken.nodes, nodes(&next));
    assert_eq!(taken.boundary, Some(1280));
    // Only two attest a next set: the set in force is taken without it.
    let mut few = answers(&set(2, &current), &current[..3]);
    few.extend(answers(&with_next(set(2, &current), &fake, None), &current[3..]));
    let accepted = accept_node_set(NETWORK_ID, &anchor, few).unwrap();
    assert_eq!(accepted.epoch, 2);
    assert!(accepted.next.is_none());
}
