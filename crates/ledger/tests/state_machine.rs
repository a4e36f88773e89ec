//! The ledger state machine, driven through signed transactions as a node
//! would see them in finalized blocks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg(feature = "test-dealer")]

use bytes::Bytes;
use commonware_codec::Encode;
use commonware_cryptography::{Signer, ed25519};
use proptest::prelude::*;
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_ledger::testkit::{TestNetwork, compressed, id, name, test_verifier_config};
use quorumkey_ledger::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

struct Network {
    kit: TestNetwork,
    ledger: Ledger,
    node_keys: Vec<ed25519::PrivateKey>,
    owner: SigningKey,
    state: MemoryState,
    roots: Vec<[u8; 32]>,
}

impl Network {
    fn new(n: u16, seed: u64) -> Self {
        Self::from_kit(TestNetwork::new(n, seed))
    }

    fn with_policy(n: u16, seed: u64, policy: NetworkPolicy) -> Self {
        Self::from_kit(TestNetwork::with_policy(n, seed, DkgSettings::default_for(usize::from(n)), policy))
    }

    fn from_kit(kit: TestNetwork) -> Self {
        let mut state = MemoryState::default();
        let outcome = kit.ledger.genesis_outcome(&state).unwrap();
        state.commit(&outcome.writes);
        Self {
            ledger: kit.ledger.clone(),
            node_keys: kit.node_keys.clone(),
            owner: kit.owner.clone(),
            kit,
            state,
            roots: vec![outcome.state_root],
        }
    }

    fn node_tx(&self, node: u16, body: TransactionBody) -> Vec<u8> {
        self.kit.node_tx(node, body)
    }

    fn owner_tx(&self, key: &SigningKey, body: TransactionBody) -> Vec<u8> {
        self.kit.owner_tx(key, body)
    }

    fn assign(&self, verifier: &str, user: &str) -> Vec<u8> {
        self.kit.assign(1, verifier, user)
    }

    fn deal(&self, count: usize, seed: u64) -> Vec<u8> {
        self.kit.deal(2, count, seed)
    }

    fn apply(&mut self, transactions: &[Vec<u8>]) -> Vec<Result<Effect, Rejection>> {
        let height = self.ledger.height(&self.state).unwrap().unwrap() + 1;
        self.apply_at(height * 1_000, transactions)
    }

    /// Applies the next block with block time `time_ms`.
    fn apply_at(&mut self, time_ms: u64, transactions: &[Vec<u8>]) -> Vec<Result<Effect, Rejection>> {
        let height = self.ledger.height(&self.state).unwrap().unwrap() + 1;
        let outcome = self.ledger.apply_block(&self.state, height, time_ms, transactions).unwrap();
        self.state.commit(&outcome.writes);
        assert_eq!(self.ledger.committed_root(&self.state).unwrap(), outcome.state_root);
        self.roots.push(outcome.state_root);
        outcome.receipts.into_iter().map(|r| r.result).collect()
    }

    fn view(&self) -> LedgerView<'_, MemoryState> {
        LedgerView::new(&self.ledger, &self.state)
    }
}

#[test]
fn assignment_is_idempotent_and_never_gives_a_second_key() {
    let mut net = Network::new(4, 1);
    let deal = net.deal(3, 10);
    assert_eq!(net.apply(&[deal]), vec![Ok(Effect::KeysAdded { first_index: 0, count: 3 })]);
    let alice = net.assign("test-verifier", "alice@example.com");
    // Twice in one block, and again later from another node.
    let results = net.apply(&[alice.clone(), alice.clone()]);
    assert_eq!(results, vec![Ok(Effect::KeyAssigned { key_index: 0 }), Ok(Effect::AlreadyAssigned { key_index: 0 })]);
    let again = net.node_tx(
        3,
        TransactionBody::AssignKey { verifier: name("test-verifier"), verifier_id: id("alice@example.com") },
    );
    assert_eq!(net.apply(&[again]), vec![Ok(Effect::AlreadyAssigned { key_index: 0 })]);
    assert_eq!(net.view().ready_keys().unwrap(), 2);
    assert_eq!(
        net.view().assignment(&name("test-verifier"), &id("alice@example.com")).unwrap(),
        Some(Assignment::Assigned { key_index: 0 })
    );
    assert_eq!(net.view().key_owner(0).unwrap(), Some((name("test-verifier"), id("alice@example.com"))));
    assert!(net.view().key(0).unwrap().is_some());
}

#[test]
fn an_empty_pool_queues_assignments_in_order() {
    let mut net = Network::new(4, 2);
    let bob = net.assign("test-verifier", "bob");
    let carol = net.assign("test-verifier", "carol");
    let dave = net.assign("test-verifier", "dave");
    assert_eq!(
        net.apply(&[bob.clone(), carol, bob.clone()]),
        vec![
            Ok(Effect::AssignmentPending { sequence: 0 }),
            Ok(Effect::AssignmentPending { sequence: 1 }),
            Ok(Effect::AssignmentPending { sequence: 0 }),
        ]
    );
    assert_eq!(net.view().pending_assignments().unwrap(), 2);
    // One key arrives: bob (first in line) gets it; carol still waits.
    let deal = net.deal(1, 20);
    net.apply(&[deal, dave]);
    assert_eq!(
        net.view().assignment(&name("test-verifier"), &id("bob")).unwrap(),
        Some(Assignment::Assigned { key_index: 0 })
    );
    assert_eq!(
        net.view().assignment(&name("test-verifier"), &id("carol")).unwrap(),
        Some(Assignment::Pending { sequence: 1 })
    );
    assert_eq!(
        net.view().assignment(&name("test-verifier"), &id("dave")).unwrap(),
        Some(Assignment::Pending { sequence: 2 })
    );
    let deal = net.deal(5, 21);
    net.apply(&[deal]);
    assert_eq!(
        net.view().assignment(&name("test-verifier"), &id("carol")).unwrap(),
        Some(Assignment::Assigned { key_index: 1 })
    );
    assert_eq!(
        net.view().assignment(&name("test-verifier"), &id("dave")).unwrap(),
        Some(Assignment::Assigned { key_index: 2 })
    );
    assert_eq!(net.view().pending_assignments().unwrap(), 0);
    assert_eq!(net.view().ready_keys().unwrap(), 3);
    assert_eq!(net.apply(&[bob]), vec![Ok(Effect::AlreadyAssigned { key_index: 0 })]);
}

#[test]
fn verifier_names_are_first_come_first_served_and_changed_only_by_the_owner() {
    let mut net = Network::new(4, 3);
    let mut rng = ChaCha20Rng::seed_from_u64(33);
    let mallory = SigningKey::generate_from_rng(&mut rng);
    let register = |key: &SigningKey, verifier: &str| TransactionBody::RegisterVerifier {
        name: name(verifier),
        owner: compressed(key),
        config: test_verifier_config(),
    };
    let owner = net.owner.clone();
    let results = net.apply(&[
        net.owner_tx(&owner, register(&owner, "app-one")),
        net.owner_tx(&mallory, register(&mallory, "app-one")),
        net.owner_tx(&mallory, register(&mallory, "test-verifier")),
        // Claims owner's key but is signed by mallory.
        net.owner_tx(&mallory, register(&owner, "app-two")),
    ]);
    assert_eq!(results[0], Ok(Effect::VerifierRegistered));
    assert_eq!(results[1], Err(Rejection::VerifierExists("app-one".into())));
    assert_eq!(results[2], Err(Rejection::VerifierExists("test-verifier".into())));
    assert!(matches!(results[3], Err(Rejection::BadAuthorization(_))));
    // Listed in registration order (the genesis verifier first).
    let view = net.view();
    assert_eq!(view.verifier_count().unwrap(), 2);
    let names: Vec<String> =
        (0..3).filter_map(|i| view.verifier_at(i).unwrap()).map(|(name, _)| name.as_str().to_owned()).collect();
    assert_eq!(names, ["test-verifier", "app-one"]);

    let update = |nonce, enabled| TransactionBody::UpdateVerifier {
        name: name("app-one"),
        nonce,
        config: Bytes::from(String::from_utf8(test_verifier_config().to_vec()).unwrap().replace("3600", "600")),
        enabled,
    };
    let good = net.owner_tx(&owner, update(1, false));
    let results = net.apply(&[
        net.owner_tx(&mallory, update(1, false)),
        good.clone(),
        good,
        net.owner_tx(&owner, update(5, true)),
        net.node_tx(1, update(2, true)),
    ]);
    assert!(matches!(results[0], Err(Rejection::BadAuthorization(_))));
    assert_eq!(results[1], Ok(Effect::VerifierUpdated { nonce: 1 }));
    assert_eq!(results[2], Err(Rejection::StaleNonce { name: "app-one".into(), expected: 2, got: 1 }));
    assert_eq!(results[3], Err(Rejection::StaleNonce { name: "app-one".into(), expected: 2, got: 5 }));
    assert!(matches!(results[4], Err(Rejection::BadAuthorization(_))));
    let record = net.view().verifier(&name("app-one")).unwrap().unwrap();
    assert!(!record.enabled);
    assert_eq!(record.nonce, 1);

    // A configuration that does not parse or breaks a rule is refused, on
    // registration and on update, and changes nothing.
    let bad_register = TransactionBody::RegisterVerifier {
        name: name("app-three"),
        owner: compressed(&owner),
        config: Bytes::from_static(b"{\"type\":\"jwt\"}"),
    };
    let bad_update = TransactionBody::UpdateVerifier {
        name: name("app-one"),
        nonce: 2,
        config: Bytes::from(String::from_utf8(test_verifier_config().to_vec()).unwrap().replace("https://", "ftp://")),
        enabled: true,
    };
    let results = net.apply(&[net.owner_tx(&owner, bad_register), net.owner_tx(&owner, bad_update)]);
    assert!(
        matches!(&results[0], Err(Rejection::InvalidVerifierConfig(m)) if m.contains("missing field")),
        "{results:?}"
    );
    assert!(
        matches!(&results[1], Err(Rejection::InvalidVerifierConfig(m)) if m.contains("issuer") || m.contains("https")),
        "{results:?}"
    );
    assert!(net.view().verifier(&name("app-three")).unwrap().is_none());
    assert_eq!(net.view().verifier(&name("app-one")).unwrap().unwrap().nonce, 1);

    // A disabled or unknown verifier gets no assignments.
    let deal = net.deal(2, 30);
    let results = net.apply(&[deal, net.assign("app-one", "x"), net.assign("nobody", "x")]);
    assert_eq!(results[1], Err(Rejection::VerifierDisabled("app-one".into())));
    assert_eq!(results[2], Err(Rejection::UnknownVerifier("nobody".into())));
}

#[test]
fn hostile_transactions_are_rejected_and_the_block_still_applies() {
    let mut net = Network::new(4, 4);
    let body = TransactionBody::AssignKey { verifier: name("test-verifier"), verifier_id: id("eve") };
    let stranger = ed25519::PrivateKey::from_seed(999);
    let forged = SignedTransaction::sign_as_node(net.ledger.network_id(), body.clone(), 2, &stranger).encode().to_vec();
    let unknown =
        SignedTransaction::sign_as_node(net.ledger.network_id(), body.clone(), 9, &stranger).encode().to_vec();
    let other_network =
        SignedTransaction::sign_as_node(&[7u8; 32], body.clone(), 1, &net.node_keys[0]).encode().to_vec();
    let owner_signed = net.owner_tx(&net.owner.clone(), body);
    let mut truncated = net.assign("test-verifier", "eve");
    truncated.truncate(truncated.len() - 1);
    let mut trailing = net.assign("test-verifier", "eve");
    trailing.push(0);
    let huge = vec![0u8; 300 * 1024];
    let results =
        net.apply(&[forged, unknown, other_network, owner_signed, truncated, trailing, vec![], vec![0xff; 40], huge]);
    assert!(matches!(results[0], Err(Rejection::BadAuthorization(_))));
    assert_eq!(results[1], Err(Rejection::UnknownNode(9)));
    assert!(matches!(results[2], Err(Rejection::BadAuthorization(_))));
    assert!(matches!(results[3], Err(Rejection::BadAuthorization(_))));
    for result in &results[4..] {
        assert!(matches!(result, Err(Rejection::Malformed(_))), "{result:?}");
    }
    assert_eq!(net.view().assignment(&name("test-verifier"), &id("eve")).unwrap(), None);
    // Names and ids are validated on decode too.
    assert!(VerifierName::new("has space").is_err());
    assert!(VerifierName::new(&"a".repeat(65)).is_err());
    assert!(VerifierId::new("line\nbreak").is_err());
    assert!(VerifierId::new("").is_err());
}

#[test]
fn heights_must_follow_each_other() {
    let mut net = Network::new(4, 5);
    let empty: [&[u8]; 0] = [];
    assert_eq!(
        net.ledger.apply_block(&net.state, 2, 0, &empty).unwrap_err(),
        LedgerError::UnexpectedHeight { expected: 1, got: 2 }
    );
    net.apply(&[]);
    assert_eq!(
        net.ledger.apply_block(&net.state, 1, 0, &empty).unwrap_err(),
        LedgerError::UnexpectedHeight { expected: 2, got: 1 }
    );
    assert_eq!(net.ledger.apply_block(&MemoryState::default(), 1, 0, &empty).unwrap_err(), LedgerError::NotInitialized);
    // Empty blocks still move the root (the height is state).
    assert_ne!(net.roots[0], net.roots[1]);
}

#[test]
fn genesis_is_validated() {
    let net = Network::new(3, 6);
    let mut genesis = net.ledger.genesis().clone();
    genesis.nodes[1].index = 5;
    assert!(matches!(Ledger::new(genesis).unwrap_err(), GenesisError::NodeIndex { position: 2, index: 5 }));
    let mut genesis = net.ledger.genesis().clone();
    genesis.nodes[2].consensus_key = genesis.nodes[0].consensus_key.clone();
    assert_eq!(Ledger::new(genesis).unwrap_err(), GenesisError::DuplicateKey("consensus"));
    let mut genesis = net.ledger.genesis().clone();
    genesis.nodes[0].secp256k1_key = [0u8; 33];
    assert!(matches!(Ledger::new(genesis).unwrap_err(), GenesisError::InvalidPoint(_)));
    let mut genesis = net.ledger.genesis().clone();
    genesis.verifiers[0].config = Bytes::from_static(b"{}");
    assert!(matches!(Ledger::new(genesis).unwrap_err(), GenesisError::InvalidVerifierConfig { .. }));
    let mut genesis = net.ledger.genesis().clone();
    genesis.verifiers.push(genesis.verifiers[0].clone());
    assert!(matches!(Ledger::new(genesis).unwrap_err(), GenesisError::DuplicateVerifier(_)));
    let genesis = Genesis {
        nodes: vec![],
        verifiers: vec![],
        dkg: DkgSettings::default_for(0),
        policy: Default::default(),
        epochs: Default::default(),
    };
    assert_eq!(Ledger::new(genesis).unwrap_err(), GenesisError::NodeCount(0));
    // The network id changes with any change to the genesis.
    let mut other = net.ledger.genesis().clone();
    other.verifiers.clear();
    assert_ne!(other.network_id(), net.ledger.genesis().network_id());
}

#[derive(Clone, Debug)]
enum Op {
    Assign { user: u8, node: u16 },
    Deal { count: u8 },
    EndBlock,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..40, 1u16..=4).prop_map(|(user, node)| Op::Assign { user, node }),
        1 => (1u8..6).prop_map(|count| Op::Deal { count }),
        2 => Just(Op::EndBlock),
    ]
}

fn run(ops: &[Op], seed: u64) -> Network {
    let mut net = Network::new(4, seed);
    let mut block = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Assign { user, node } => block.push(net.node_tx(
                *node,
                TransactionBody::AssignKey { verifier: name("test-verifier"), verifier_id: id(&format!("user{user}")) },
            )),
            Op::Deal { count } => block.push(net.deal(usize::from(*count), i as u64)),
            Op::EndBlock => {
                net.apply(&std::mem::take(&mut block));
            }
        }
    }
    net.apply(&block);
    net
}

fn register_body(key: &SigningKey, verifier: &str, config: Bytes) -> TransactionBody {
    TransactionBody::RegisterVerifier { name: name(verifier), owner: compressed(key), config }
}

#[test]
fn the_policy_decides_who_registers_how_many_and_how_large() {
    let mut rng = ChaCha20Rng::seed_from_u64(6100);
    let alice = SigningKey::generate_from_rng(&mut rng);
    let mallory = SigningKey::generate_from_rng(&mut rng);
    let policy = NetworkPolicy {
        registration: RegistrationRule::AllowList(vec![compressed(&alice)]),
        verifiers_per_owner: 2,
        max_config_len: 300,
        registrations_per_window: 3,
        window_ms: 60_000,
        ..NetworkPolicy::default()
    };
    let mut net = Network::with_policy(4, 61, policy);
    let config = test_verifier_config();
    let padded = Bytes::from(format!("{}{}", String::from_utf8(config.to_vec()).unwrap(), " ".repeat(200)));
    let results = net.apply_at(
        1_000,
        &[
            // Not on the allow list.
            net.owner_tx(&mallory, register_body(&mallory, "mallory-app", config.clone())),
            // Over the policy's configuration size (though valid JSON).
            net.owner_tx(&alice, register_body(&alice, "big-app", padded.clone())),
            net.owner_tx(&alice, register_body(&alice, "app-1", config.clone())),
            net.owner_tx(&alice, register_body(&alice, "app-2", config.clone())),
            // The owner's quota of two is used.
            net.owner_tx(&alice, register_body(&alice, "app-3", config.clone())),
        ],
    );
    assert!(matches!(results[0], Err(Rejection::NotAllowed(_))), "{results:?}");
    assert!(matches!(&results[1], Err(Rejection::Quota(m)) if m.contains("over the policy's 300")), "{results:?}");
    assert_eq!(results[2], Ok(Effect::VerifierRegistered));
    assert_eq!(results[3], Ok(Effect::VerifierRegistered));
    assert!(matches!(&results[4], Err(Rejection::Quota(m)) if m.contains("holds 2")), "{results:?}");
    assert!(net.view().verifier(&name("mallory-app")).unwrap().is_none());
    assert!(net.view().verifier(&name("big-app")).unwrap().is_none());
    // An update may not grow a configuration past the limit either.
    let grow = TransactionBody::UpdateVerifier { name: name("app-1"), nonce: 1, config: padded, enabled: true };
    let results = net.apply_at(2_000, &[net.owner_tx(&alice, grow)]);
    assert!(matches!(&results[0], Err(Rejection::Quota(_))), "{results:?}");
    assert_eq!(net.view().verifier(&name("app-1")).unwrap().unwrap().nonce, 0);
}

#[test]
fn registrations_have_a_network_budget_per_window() {
    let policy = NetworkPolicy { registrations_per_window: 2, window_ms: 10_000, ..NetworkPolicy::default() };
    let mut net = Network::with_policy(4, 62, policy);
    let mut rng = ChaCha20Rng::seed_from_u64(6200);
    // Fresh owner keys cost nothing: only the network budget bounds them.
    let owners: Vec<SigningKey> = (0..5).map(|_| SigningKey::generate_from_rng(&mut rng)).collect();
    let register = |net: &Network, i: usize| {
        net.owner_tx(&owners[i], register_body(&owners[i], &format!("app-{i}"), test_verifier_config()))
    };
    let block: Vec<Vec<u8>> = (0..3).map(|i| register(&net, i)).collect();
    let results = net.apply_at(10_000, &block);
    assert_eq!(results[..2], [Ok(Effect::VerifierRegistered), Ok(Effect::VerifierRegistered)]);
    assert_eq!(
        results[2],
        Err(Rejection::BudgetSpent { what: "the network's registration budget".into(), window_secs: 10 })
    );
    // Still the same window a few seconds later.
    let results = net.apply_at(19_999, &[register(&net, 3)]);
    assert!(matches!(results[0], Err(Rejection::BudgetSpent { .. })), "{results:?}");
    // The next window has a fresh budget.
    let results = net.apply_at(20_000, &[register(&net, 3), register(&net, 4)]);
    assert_eq!(results, [Ok(Effect::VerifierRegistered), Ok(Effect::VerifierRegistered)]);
}

#[test]
fn new_assignments_have_budgets_per_verifier_and_per_network() {
    let policy = NetworkPolicy {
        assignments_per_verifier: 3,
        assignments_per_window: 5,
        window_ms: 60_000,
        ..NetworkPolicy::default()
    };
    let mut net = Network::with_policy(4, 63, policy);
    let owner = net.owner.clone();
    let results = net.apply_at(
        60_000,
        &[net.deal(20, 63), net.owner_tx(&owner, register_body(&owner, "second", test_verifier_config()))],
    );
    assert_eq!(results[1], Ok(Effect::VerifierRegistered));
    let mut block: Vec<Vec<u8>> = (0..4).map(|i| net.assign("test-verifier", &format!("user{i}"))).collect();
    // An existing assignment is answered again without spending budget.
    block.push(net.assign("test-verifier", "user0"));
    block.extend((0..3).map(|i| net.assign("second", &format!("user{i}"))));
    let results = net.apply_at(61_000, &block);
    assert!(results[..3].iter().all(|r| matches!(r, Ok(Effect::KeyAssigned { .. }))), "{results:?}");
    assert_eq!(
        results[3],
        Err(Rejection::BudgetSpent { what: "verifier test-verifier's assignment budget".into(), window_secs: 60 })
    );
    assert_eq!(results[4], Ok(Effect::AlreadyAssigned { key_index: 0 }));
    assert!(matches!(results[5], Ok(Effect::KeyAssigned { .. })), "{results:?}");
    assert!(matches!(results[6], Ok(Effect::KeyAssigned { .. })), "{results:?}");
    // Five new assignments in this window: the network's budget is spent,
    // though "second" has one left.
    assert_eq!(
        results[7],
        Err(Rejection::BudgetSpent { what: "the network's assignment budget".into(), window_secs: 60 })
    );
    assert_eq!(net.view().assignment(&name("test-verifier"), &id("user3")).unwrap(), None);
    // A refused pair is not queued and keeps no state; the next window serves it.
    let results = net.apply_at(120_000, &[net.assign("test-verifier", "user3"), net.assign("second", "user2")]);
    assert!(results.iter().all(|r| matches!(r, Ok(Effect::KeyAssigned { .. }))), "{results:?}");
    assert_eq!(net.view().ready_keys().unwrap(), 20 - 7);
}

/// Bytes of every entry (key and value) in the state.
fn state_bytes(state: &MemoryState) -> usize {
    state.entries().map(|(key, value)| key.len() + value.len()).sum()
}

/// What the budgets' cost figures in `docs/operations.md` rest on: the
/// state one registration (beside its configuration) and one assignment
/// add, measured over 200 of each.
#[test]
fn state_growth_per_registration_and_assignment() {
    let mut net = Network::new(4, 66);
    let mut rng = ChaCha20Rng::seed_from_u64(6600);
    net.apply(&[net.deal(200, 66)]);
    let config = test_verifier_config();
    let before = state_bytes(&net.state);
    let block: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            let owner = SigningKey::generate_from_rng(&mut rng);
            net.owner_tx(&owner, register_body(&owner, &format!("registered-app-{i:04}"), config.clone()))
        })
        .collect();
    assert!(net.apply(&block).iter().all(Result::is_ok));
    let per_registration = (state_bytes(&net.state) - before) / 200 - config.len();
    let before = state_bytes(&net.state);
    let block: Vec<Vec<u8>> =
        (0..200).map(|i| net.assign("test-verifier", &format!("user-{i:04}@example.com"))).collect();
    assert!(net.apply(&block).iter().all(|r| matches!(r, Ok(Effect::KeyAssigned { .. }))));
    let per_assignment = (state_bytes(&net.state) - before) / 200;
    eprintln!(
        "state per registration: {per_registration} bytes + its configuration; per assignment: {per_assignment} bytes"
    );
    assert!(per_registration <= 200, "{per_registration}");
    assert!(per_assignment <= 200, "{per_assignment}");
}

#[test]
fn one_node_spends_at_most_its_own_assignment_budget() {
    let policy = NetworkPolicy { assignments_per_node: 2, ..NetworkPolicy::default() };
    let mut net = Network::with_policy(4, 65, policy);
    net.apply_at(60_000, &[net.deal(10, 65)]);
    // Node 1 signs three new assignments: the third is over its budget,
    // while node 2 still assigns.
    let block = [
        net.kit.assign(1, "test-verifier", "a"),
        net.kit.assign(1, "test-verifier", "b"),
        net.kit.assign(1, "test-verifier", "c"),
        net.kit.assign(2, "test-verifier", "c"),
    ];
    let results = net.apply_at(61_000, &block);
    assert!(matches!(results[1], Ok(Effect::KeyAssigned { .. })), "{results:?}");
    assert_eq!(results[2], Err(Rejection::BudgetSpent { what: "node 1's assignment budget".into(), window_secs: 60 }));
    assert!(matches!(results[3], Ok(Effect::KeyAssigned { .. })), "{results:?}");
}

#[test]
fn only_two_thirds_of_the_operators_change_the_policy() {
    let mut net = Network::with_policy(4, 64, NetworkPolicy::default());
    assert_eq!(net.ledger.genesis().operator_quorum(), 3);
    let tighter = NetworkPolicy { assignments_per_verifier: 1, ..NetworkPolicy::default() };
    let set = |nonce| TransactionBody::SetPolicy { policy: tighter.clone(), nonce };
    // Two of four is not enough; a node signing twice counts once; an
    // owner or a single node cannot sign a policy at all.
    let owner = net.owner.clone();
    let results = net.apply(&[
        net.kit.operators_tx(&[1, 2], set(1)),
        net.kit.operators_tx(&[1, 2, 2], set(1)),
        net.owner_tx(&owner, set(1)),
        net.node_tx(1, set(1)),
    ]);
    assert!(results.iter().all(|r| matches!(r, Err(Rejection::BadAuthorization(_)))), "{results:?}");
    assert_eq!(net.ledger.policy(&net.state).unwrap(), NetworkPolicy::default());
    // A signature over another body does not carry over.
    let signatures = (1u16..=3)
        .map(|node| {
            let key = &net.node_keys[usize::from(node) - 1];
            (node, SignedTransaction::operator_signature(net.ledger.network_id(), &set(2), key))
        })
        .collect();
    let forged = SignedTransaction::from_operators(set(1), signatures).encode().to_vec();
    let results = net.apply(&[forged]);
    assert!(matches!(results[0], Err(Rejection::BadAuthorization(_))), "{results:?}");
    // Three of four, with the next nonce: in force from the next transaction.
    let results = net.apply(&[
        net.kit.operators_tx(&[4, 2, 3], set(1)),
        net.kit.operators_tx(&[1, 2, 3], set(1)),
        net.deal(5, 64),
        net.assign("test-verifier", "a"),
        net.assign("test-verifier", "b"),
    ]);
    assert_eq!(results[0], Ok(Effect::PolicySet { nonce: 1 }));
    assert_eq!(results[1], Err(Rejection::StalePolicyNonce { expected: 2, got: 1 }));
    assert!(matches!(results[3], Ok(Effect::KeyAssigned { .. })), "{results:?}");
    assert!(matches!(results[4], Err(Rejection::BudgetSpent { .. })), "{results:?}");
    assert_eq!(net.ledger.policy(&net.state).unwrap(), tighter);
    // A policy that does not validate is refused even with every signature.
    let zero = NetworkPolicy { assignments_per_window: 0, ..NetworkPolicy::default() };
    let results =
        net.apply(&[net.kit.operators_tx(&[1, 2, 3, 4], TransactionBody::SetPolicy { policy: zero, nonce: 2 })]);
    assert!(matches!(results[0], Err(Rejection::Quota(_))), "{results:?}");
    // So is an allow list in another spelling than the one (each owner
    // once, ascending): operators meaning the same list sign the same bytes.
    let mut rng = ChaCha20Rng::seed_from_u64(6400);
    let mut owners: Vec<_> = (0..2).map(|_| compressed(&SigningKey::generate_from_rng(&mut rng))).collect();
    owners.sort_unstable();
    for spelling in [vec![owners[1], owners[0]], vec![owners[0], owners[0], owners[1]]] {
        let policy = NetworkPolicy { registration: RegistrationRule::AllowList(spelling), ..NetworkPolicy::default() };
        let results =
            net.apply(&[net.kit.operators_tx(&[1, 2, 3, 4], TransactionBody::SetPolicy { policy, nonce: 2 })]);
        assert!(matches!(&results[0], Err(Rejection::Quota(m)) if m.contains("ascending")), "{results:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn state_root_is_a_function_of_the_state_and_assignments_stay_unique(ops in proptest::collection::vec(op(), 1..80)) {
        let net = run(&ops, 7);
        // The incremental root equals the root of the state rebuilt from scratch.
        prop_assert_eq!(net.ledger.committed_root(&net.state).unwrap(), state_root(&net.state.recompute_lthash()));
        // Replaying the same blocks gives the same roots at every height.
        let again = run(&ops, 7);
        prop_assert_eq!(&net.roots, &again.roots);
        prop_assert_eq!(&net.state, &again.state);

        // No pair has two keys and no key has two pairs.
        let view = net.view();
        let total = view.total_keys().unwrap();
        let mut owners = std::collections::BTreeSet::new();
        for index in 0..total {
            if let Some(owner) = view.key_owner(index).unwrap() {
                prop_assert_eq!(view.assignment(&owner.0, &owner.1).unwrap(), Some(Assignment::Assigned { key_index: index }));
                prop_assert!(owners.insert(owner));
            }
        }
        prop_assert_eq!(owners.len() as u64 + view.ready_keys().unwrap(), total);
        // Every pair that asked is assigned or pending, and pending only while the pool is empty.
        for user in 0..40u8 {
            let asked = ops.iter().any(|op| matches!(op, Op::Assign { user: u, .. } if *u == user));
            let state = view.assignment(&name("test-verifier"), &id(&format!("user{user}"))).unwrap();
            prop_assert_eq!(asked, state.is_some());
            if let Some(Assignment::Pending { .. }) = state {
                prop_assert_eq!(view.ready_keys().unwrap(), 0);
            }
        }
    }
}

/// A script verifier configuration naming `module`, with the test JWT
/// configuration as its one sub-verifier.
fn script_config(module: &[u8; 32]) -> Bytes {
    let jwt: serde_json::Value = serde_json::from_slice(&test_verifier_config()).unwrap();
    let config = serde_json::json!({
        "type": "script",
        "module": hex::encode(module),
        "fuel": 1_000_000,
        "memory_pages": 2,
        "sub_verifiers": { "provider": jwt },
    });
    Bytes::from(config.to_string())
}

#[test]
fn script_modules_are_published_once_validated_and_script_verifiers_name_one_on_the_ledger() {
    let mut net = Network::new(4, 3);
    let owner = net.owner.clone();
    let module = Bytes::from(
        wat::parse_str(
            r#"(module (import "quorumkey" "accept" (func (param i32 i32))) (memory (export "memory") 1)
                 (func (export "verify") (result i32) i32.const 0))"#,
        )
        .unwrap(),
    );
    let id = quorumkey_script::ScriptModule::id_of(&module);
    let floats = Bytes::from(
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "verify") (result i32) f32.const 1 i32.trunc_f32_s))"#)
            .unwrap(),
    );
    let publish = |module: &Bytes| TransactionBody::PublishScript { owner: compressed(&owner), module: module.clone() };
    let register = |verifier: &str, module: &[u8; 32]| TransactionBody::RegisterVerifier {
        name: name(verifier),
        owner: compressed(&owner),
        config: script_config(module),
    };
    let results = net.apply(&[
        // Named before it is published: refused.
        net.owner_tx(&owner, register("early", &id)),
        net.owner_tx(&owner, publish(&floats)),
        net.owner_tx(&owner, publish(&module)),
        net.owner_tx(&owner, publish(&module)),
        net.owner_tx(&owner, register("scripted", &id)),
    ]);
    assert_eq!(results[0], Err(Rejection::UnknownScript(hex::encode(id))));
    assert!(
        matches!(results[1], Err(Rejection::InvalidScript(ref e)) if e.contains("not valid WebAssembly")),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2], Ok(Effect::ScriptPublished { id }));
    assert_eq!(results[3], Ok(Effect::ScriptPublished { id }), "publishing again changes nothing");
    assert_eq!(results[4], Ok(Effect::VerifierRegistered));
    assert_eq!(net.view().script_module(&id).unwrap().as_deref(), Some(module.as_ref()));
    let floats_id = quorumkey_script::ScriptModule::id_of(&floats);
    assert_eq!(net.view().script_module(&floats_id).unwrap(), None);

    // Signed by someone else than the publisher it names: refused with the
    // encoding, as a registration is.
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mallory = SigningKey::generate_from_rng(&mut rng);
    let results = net.apply(&[net.owner_tx(&mallory, publish(&module))]);
    assert!(matches!(results[0], Err(Rejection::BadAuthorization(_))));
}

#[test]
fn a_script_verifier_cannot_be_in_a_genesis() {
    let mut genesis = TestNetwork::new(4, 3).ledger.genesis().clone();
    genesis.verifiers[0].config = script_config(&[7u8; 32]);
    assert!(genesis.validate().unwrap_err().to_string().contains("register it after genesis"));
}
