//! Epoch proposals and handover messages that the ledger must refuse, each
//! with the reason a block's receipt gives. (Whole handovers, with the
//! nodes' participants, are in `crates/participant/tests/handover_protocol.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "test-dealer")]

use commonware_codec::Encode;
use commonware_cryptography::{Signer, ed25519};
use quorumkey_crypto::group::{Point, point_to_bytes};
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_ledger::testkit::TestNetwork;
use quorumkey_ledger::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn node(seed: u64) -> EpochNode {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    EpochNode {
        consensus_key: ed25519::PrivateKey::from_seed(seed).public_key(),
        secp256k1_key: point_to_bytes(&Point::generate_from_rng(&mut rng)),
        p2p_address: format!("10.0.0.{seed}:7000"),
        rpc_url: format!("http://10.0.0.{seed}:8000"),
    }
}

struct Chain {
    kit: TestNetwork,
    state: MemoryState,
    height: u64,
}

impl Chain {
    fn new(n: u16) -> Self {
        // No DKG batches: the pool stays empty, so a handover has nothing
        // to hand over and goes straight to its boundary.
        let dkg = DkgSettings { pool_target: 0, low_water: 0, ..DkgSettings::default_for(usize::from(n)) };
        let kit = TestNetwork::with_dkg(n, 5, dkg);
        let mut state = MemoryState::default();
        state.commit(&kit.ledger.genesis_outcome(&state).unwrap().writes);
        Self { kit, state, height: 0 }
    }

    fn apply(&mut self, transactions: &[Vec<u8>]) -> BlockOutcome {
        self.height += 1;
        let outcome = self.kit.ledger.apply_block(&self.state, self.height, self.height * 1000, transactions).unwrap();
        self.state.commit(&outcome.writes);
        outcome
    }

    fn result(&mut self, transaction: Vec<u8>) -> Result<Effect, Rejection> {
        self.apply(&[transaction]).receipts[0].result.clone()
    }

    /// The genesis nodes as epoch nodes, with addresses.
    fn genesis_nodes(&self) -> Vec<EpochNode> {
        self.kit
            .ledger
            .genesis()
            .nodes
            .iter()
            .map(|n| EpochNode {
                consensus_key: n.consensus_key.clone(),
                secp256k1_key: n.secp256k1_key,
                p2p_address: format!("10.0.1.{}:7000", n.index),
                rpc_url: format!("http://10.0.1.{}:8000", n.index),
            })
            .collect()
    }
}

#[test]
fn a_proposal_needs_two_f_plus_one_current_operators() {
    let mut chain = Chain::new(4);
    let mut nodes = chain.genesis_nodes();
    nodes.push(node(50));
    let body = TransactionBody::ProposeEpoch { epoch: 1, nodes: nodes.clone() };
    // f = 1 for 4 nodes: 3 signatures.
    let two = chain.kit.operators_tx(&[1, 2], body.clone());
    assert_eq!(chain.result(two), Err(Rejection::BadAuthorization("fewer than 2f + 1 operators signed")));
    let by_one_node = chain.kit.node_tx(1, body.clone());
    assert_eq!(
        chain.result(by_one_node),
        Err(Rejection::BadAuthorization("an epoch must be proposed by 2f + 1 operators"))
    );
    // A signature by a key outside the set, under a current index.
    let outsider = ed25519::PrivateKey::from_seed(99);
    let mut signatures: Vec<(u16, ed25519::Signature)> = [1u16, 2]
        .iter()
        .map(|i| {
            (
                *i,
                SignedTransaction::operator_signature(
                    chain.kit.ledger.network_id(),
                    &body,
                    &chain.kit.node_keys[usize::from(*i) - 1],
                ),
            )
        })
        .collect();
    signatures.push((3, SignedTransaction::operator_signature(chain.kit.ledger.network_id(), &body, &outsider)));
    let forged = SignedTransaction::from_operators(body.clone(), signatures).encode().to_vec();
    assert_eq!(chain.result(forged), Err(Rejection::BadAuthorization("an operator's signature does not verify")));
    let three = chain.kit.operators_tx(&[1, 2, 4], body);
    assert_eq!(chain.result(three), Ok(Effect::EpochProposed { epoch: 1 }));
}

#[test]
fn bad_proposals_are_refused() {
    let mut chain = Chain::new(4);
    let nodes = chain.genesis_nodes();
    let propose = |chain: &Chain, epoch: u64, nodes: Vec<EpochNode>| {
        chain.kit.operators_tx(&[1, 2, 3], TransactionBody::ProposeEpoch { epoch, nodes })
    };
    let skip = propose(&chain, 2, nodes.clone());
    assert_eq!(chain.result(skip), Err(Rejection::Epoch("epoch 2 proposed, but the next epoch is 1".to_owned())));
    let mut twice = nodes.clone();
    twice.push(nodes[0].clone());
    let tx = propose(&chain, 1, twice);
    assert_eq!(chain.result(tx), Err(Rejection::Epoch("two nodes share a consensus key".to_owned())));
    let mut no_address = nodes.clone();
    no_address[2].rpc_url.clear();
    let tx = propose(&chain, 1, no_address);
    assert_eq!(chain.result(tx), Err(Rejection::Epoch("node 3: a new epoch's node needs its addresses".to_owned())));
    let mut spaced = nodes.clone();
    spaced[0].p2p_address = "10.0.0.1 :7000".to_owned();
    let tx = propose(&chain, 1, spaced);
    assert!(matches!(chain.result(tx), Err(Rejection::Epoch(reason)) if reason.contains("printable ASCII")));
    let tx = propose(&chain, 1, Vec::new());
    assert!(matches!(chain.result(tx), Err(Rejection::Malformed(_))), "an empty set does not even decode");
    // A valid one, then a second while it runs.
    let tx = propose(&chain, 1, nodes.clone());
    assert_eq!(chain.result(tx), Ok(Effect::EpochProposed { epoch: 1 }));
    let tx = propose(&chain, 1, nodes);
    assert_eq!(
        chain.result(tx),
        Err(Rejection::Epoch("the handover to epoch 1 is under way; propose the next change after it".to_owned()))
    );
}

#[test]
fn an_empty_pool_hands_over_at_the_next_boundary_and_the_new_set_signs() {
    let mut chain = Chain::new(4);
    let mut nodes = chain.genesis_nodes();
    nodes.remove(1);
    let newcomer = ed25519::PrivateKey::from_seed(77);
    let mut joining = node(77);
    joining.consensus_key = newcomer.public_key();
    nodes.push(joining);
    let proposal = chain.kit.operators_tx(&[1, 2, 3], TransactionBody::ProposeEpoch { epoch: 1, nodes: nodes.clone() });
    chain.apply(&[proposal]);
    let boundary = u64::from(EpochSettings::default().boundary_blocks);
    // The block before the boundary puts the new set in force.
    while chain.height + 2 < boundary {
        let outcome = chain.apply(&[]);
        assert!(outcome.dkg_events.iter().all(|e| !matches!(e, DkgEvent::EpochStarted { .. })), "{outcome:?}");
    }
    let outcome = chain.apply(&[]);
    assert!(outcome.dkg_events.contains(&DkgEvent::EpochStarted { epoch: 1, height: boundary }), "{outcome:?}");
    let view = LedgerView::new(&chain.kit.ledger, &chain.state);
    assert_eq!(view.node_set().unwrap(), NodeSet { epoch: 1, nodes });
    assert_eq!(view.epoch().unwrap(), 1, "the epoch read alone agrees with the set");
    // Node 2 of the genesis is out; the newcomer is node 4 and signs.
    let verifier = quorumkey_ledger::testkit::TEST_VERIFIER;
    let by_old_two = chain.kit.assign(2, verifier, "a@example.com");
    assert_eq!(chain.result(by_old_two), Err(Rejection::BadAuthorization("node signature does not verify")));
    let body = TransactionBody::AssignKey {
        verifier: quorumkey_ledger::testkit::name(verifier),
        verifier_id: quorumkey_ledger::testkit::id("a@example.com"),
    };
    let by_newcomer =
        SignedTransaction::sign_as_node(chain.kit.ledger.network_id(), body, 4, &newcomer).encode().to_vec();
    assert!(matches!(chain.result(by_newcomer), Ok(Effect::AssignmentPending { .. })));
    // The next epoch is 2, proposed by the new set's operators.
    let nodes = LedgerView::new(&chain.kit.ledger, &chain.state).node_set().unwrap().nodes;
    let body = TransactionBody::ProposeEpoch { epoch: 1, nodes };
    // Genesis keys under the genesis indexes no longer sign for the set:
    // index 2 is now genesis node 3.
    let old_indexes = chain.kit.operators_tx(&[1, 2, 3], body.clone());
    assert_eq!(chain.result(old_indexes), Err(Rejection::BadAuthorization("an operator's signature does not verify")));
    let id = *chain.kit.ledger.network_id();
    let signatures = [(1u16, &chain.kit.node_keys[0]), (2, &chain.kit.node_keys[2]), (3, &chain.kit.node_keys[3])]
        .into_iter()
        .map(|(index, key)| (index, SignedTransaction::operator_signature(&id, &body, key)))
        .collect();
    let stale = SignedTransaction::from_operators(body, signatures).encode().to_vec();
    assert_eq!(chain.result(stale), Err(Rejection::Epoch("epoch 1 proposed, but the next epoch is 2".to_owned())));
    // Epoch 2 waits until the handover's records of epoch 1 are gone (64
    // blocks after its start, for nodes that were behind at the boundary).
    let sign_epoch_2 = |chain: &Chain| {
        let nodes = LedgerView::new(&chain.kit.ledger, &chain.state).node_set().unwrap().nodes;
        let body = TransactionBody::ProposeEpoch { epoch: 2, nodes };
        let signatures = [(1u16, &chain.kit.node_keys[0]), (2, &chain.kit.node_keys[2]), (3, &chain.kit.node_keys[3])]
            .into_iter()
            .map(|(index, key)| (index, SignedTransaction::operator_signature(&id, &body, key)))
            .collect();
        SignedTransaction::from_operators(body, signatures).encode().to_vec()
    };
    let early = sign_epoch_2(&chain);
    assert_eq!(
        chain.result(early),
        Err(Rejection::Epoch(
            "epoch 1 began less than 64 blocks ago and its handover's records are still kept; propose again later"
                .to_owned()
        ))
    );
    while chain.height < boundary + 64 {
        chain.apply(&[]);
    }
    let later = sign_epoch_2(&chain);
    assert_eq!(chain.result(later), Ok(Effect::EpochProposed { epoch: 2 }));
}

#[test]
fn handover_messages_out_of_place_are_refused() {
    let mut chain = Chain::new(4);
    let response = |chain: &Chain, index: u16| {
        chain.kit.node_tx(index, TransactionBody::ReshareResponse { epoch: 1, batch: 0, complaints: Vec::new() })
    };
    let tx = response(&chain, 1);
    assert_eq!(chain.result(tx), Err(Rejection::Epoch("no handover is under way".to_owned())));
    let proposal =
        chain.kit.operators_tx(&[1, 2, 3], TransactionBody::ProposeEpoch { epoch: 1, nodes: chain.genesis_nodes() });
    chain.apply(&[proposal]);
    // With nothing to hand over the handover is ready at once.
    let tx = response(&chain, 1);
    assert_eq!(chain.result(tx), Err(Rejection::Epoch("the handover to epoch 1 is not resharing".to_owned())));
    let body = TransactionBody::ReshareResponse { epoch: 1, batch: 0, complaints: Vec::new() };
    let stranger = ed25519::PrivateKey::from_seed(9);
    let tx = SignedTransaction::sign_as_node(chain.kit.ledger.network_id(), body, 9, &stranger).encode().to_vec();
    assert_eq!(chain.result(tx), Err(Rejection::UnknownNode(9)));
}
