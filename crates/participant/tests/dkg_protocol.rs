//! The DKG through the real ledger state machine and the real node
//! participant, without consensus: every round, each node's submissions
//! form the next block (in a seeded random order). Byzantine dealers of
//! each kind the DKG must survive; every key must rebuild from every
//! threshold subset of honest shares. (Consensus under faults is in
//! `dkg_simulation.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use commonware_codec::Encode;
use quorumkey_crypto::group::{Scalar, generator, point_from_bytes};
use quorumkey_crypto::shamir::{Share, reconstruct_secret};
use quorumkey_dkg::KeyShares;
use quorumkey_dkg::dealing::SharePair;
use quorumkey_ledger::testkit::{TestNetwork, small_dkg};
use quorumkey_ledger::{DkgEvent, LedgerView, MemoryState, Phase, SignedTransaction};
use quorumkey_participant::testkit::{Behaviour, subsets, tamper};
use quorumkey_participant::{BatchShareStore, DkgAction, DkgParticipant};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

#[derive(Default)]
struct MemoryShares {
    batches: BTreeMap<u64, Vec<SharePair>>,
    keys: BTreeMap<u64, Scalar>,
}

impl BatchShareStore for MemoryShares {
    fn load_batch_shares(&self, batch: u64, node: u16) -> Option<KeyShares> {
        self.batches.get(&batch).map(|pairs| KeyShares::from_pairs(node, pairs.clone()))
    }
    fn batches_with_shares(&self) -> Vec<u64> {
        self.batches.keys().copied().collect()
    }
    fn has_key_share(&self, index: u64) -> bool {
        self.keys.contains_key(&index)
    }
}

struct Node {
    index: u16,
    behaviour: Behaviour,
    participant: DkgParticipant,
    shares: MemoryShares,
}

struct Run {
    net: TestNetwork,
    state: MemoryState,
    nodes: Vec<Node>,
    height: u64,
    rng: ChaCha20Rng,
    events: Vec<DkgEvent>,
}

impl Run {
    fn new(n: u16, keys: u16, seed: u64, byzantine: &[(u16, Behaviour)]) -> Self {
        let net = TestNetwork::with_dkg(n, seed, small_dkg(n, keys));
        let mut state = MemoryState::default();
        state.commit(&net.ledger.genesis_outcome(&state).unwrap().writes);
        let nodes = (1..=n)
            .map(|index| {
                let secret = *net.secp256k1_keys[usize::from(index) - 1].as_nonzero_scalar();
                let behaviour =
                    byzantine.iter().find(|(i, _)| *i == index).map_or(Behaviour::Honest, |(_, behaviour)| *behaviour);
                Node {
                    index,
                    behaviour,
                    participant: DkgParticipant::new(&net.ledger, index, secret).unwrap(),
                    shares: MemoryShares::default(),
                }
            })
            .collect();
        Self { net, state, nodes, height: 0, rng: ChaCha20Rng::seed_from_u64(seed), events: Vec::new() }
    }

    /// Applies one block of `transactions` and lets every node react;
    /// returns the next block's transactions.
    fn round(&mut self, mut transactions: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        // A seeded shuffle: order across nodes is the adversary's.
        for i in (1..transactions.len()).rev() {
            let j = (self.rng.next_u64() % (i as u64 + 1)) as usize;
            transactions.swap(i, j);
        }
        self.height += 1;
        let outcome = self.net.ledger.apply_block(&self.state, self.height, self.height * 250, &transactions).unwrap();
        self.state.commit(&outcome.writes);
        self.events.extend(outcome.dkg_events);
        let mut next = Vec::new();
        for position in 0..self.nodes.len() {
            let actions = {
                let node = &mut self.nodes[position];
                node.participant
                    .on_block(
                        &self.net.ledger,
                        &self.state,
                        self.height,
                        self.height * 250,
                        &node.shares,
                        &mut self.rng,
                    )
                    .unwrap()
            };
            for action in actions {
                match action {
                    DkgAction::Submit(body) => {
                        let (index, behaviour) = (self.nodes[position].index, self.nodes[position].behaviour);
                        let secret = *self.net.secp256k1_keys[usize::from(index) - 1].as_nonzero_scalar();
                        if let Some(body) =
                            tamper(behaviour, index, &self.net.ledger, &self.state, &secret, body, &mut self.rng)
                        {
                            let index = self.nodes[position].index;
                            let key = &self.net.node_keys[usize::from(index) - 1];
                            let tx = SignedTransaction::sign_as_node(self.net.ledger.network_id(), body, index, key);
                            next.push(tx.encode().to_vec());
                        }
                    }
                    DkgAction::StoreBatchShares { batch, shares } => {
                        self.nodes[position].shares.batches.insert(batch, shares.shares().to_vec());
                    }
                    DkgAction::AssignBatchShares { batch, first_key } => {
                        let node = &mut self.nodes[position];
                        let pairs = node.shares.batches.remove(&batch).unwrap();
                        for (offset, pair) in pairs.iter().enumerate() {
                            node.shares.keys.insert(first_key + offset as u64, pair.value);
                        }
                    }
                    DkgAction::DropBatchShares { batch } => {
                        self.nodes[position].shares.batches.remove(&batch);
                    }
                    DkgAction::Notice(_) => {}
                }
            }
            // As the driver does: the next dealing made ahead of need (by
            // odd-indexed nodes; the others make theirs when they deal).
            if self.nodes[position].index % 2 == 1 {
                self.nodes[position].participant.prepare(&self.net.ledger, &mut self.rng).unwrap();
            }
        }
        next
    }

    /// Runs until `batches` batches ended, or panics after `max_rounds`.
    fn until_batches_end(&mut self, batches: usize, max_rounds: usize) {
        let mut pending = Vec::new();
        for _ in 0..max_rounds {
            pending = self.round(pending);
            let ended = self
                .events
                .iter()
                .filter(|e| matches!(e, DkgEvent::BatchFinished { .. } | DkgEvent::BatchAbandoned { .. }))
                .count();
            if ended >= batches {
                return;
            }
        }
        panic!("only {:?} after {max_rounds} rounds", self.events);
    }
}

/// Every finished key: its public key and public shares match the honest
/// nodes' secret shares, and every t-subset of honest shares rebuilds it.
fn check_keys(run: &Run, honest: &[u16]) -> usize {
    let view = LedgerView::new(&run.net.ledger, &run.state);
    let t = run.net.ledger.genesis().threshold();
    let total = view.total_keys().unwrap();
    assert!(total > 0, "no key finished");
    let subsets = subsets(honest, t);
    for index in 0..total {
        let record = view.key(index).unwrap().unwrap();
        let public_key = point_from_bytes("pk", &record.public_key).unwrap();
        for j in honest {
            let node = &run.nodes[usize::from(*j) - 1];
            let share = node.shares.keys.get(&index).unwrap_or_else(|| panic!("node {j} has no share of key {index}"));
            let recorded = point_from_bytes("share", &record.public_shares[usize::from(*j) - 1]).unwrap();
            assert_eq!(recorded, generator() * share, "key {index}: node {j}'s recorded public share");
        }
        for subset in &subsets {
            let shares: Vec<Share> = subset
                .iter()
                .map(|j| Share { index: u32::from(*j), value: run.nodes[usize::from(*j) - 1].shares.keys[&index] })
                .collect();
            let secret = reconstruct_secret(&shares).unwrap();
            assert_eq!(generator() * secret, public_key, "key {index} from {subset:?}");
        }
    }
    total as usize
}

/// The records of the batches that fixed a qualified set.
fn qualified_batches(run: &Run) -> Vec<quorumkey_ledger::BatchRecord> {
    let view = run.net.ledger.dkg_view(&run.state).unwrap();
    run.events
        .iter()
        .filter_map(|e| match e {
            DkgEvent::QualifiedSetFixed { batch, .. } => Some(view.batch(*batch).unwrap().unwrap()),
            _ => None,
        })
        .collect()
}

#[test]
fn honest_networks_fill_the_pool() {
    for n in [4u16, 5, 7] {
        let mut run = Run::new(n, 8, u64::from(n), &[]);
        run.until_batches_end(2, 60);
        let honest: Vec<u16> = (1..=n).collect();
        assert_eq!(check_keys(&run, &honest), 16);
        let dealers = usize::from((n - 1) / 3 + 1);
        for record in qualified_batches(&run) {
            // The designated f + 1 dealers, all qualified.
            assert_eq!(record.qualified.len(), dealers, "n={n}");
            assert_eq!(record.qualified, record.dealt);
        }
        // All honest: every phase ends as soon as everyone acted, well
        // before any deadline (3 rounds of messages per batch).
        assert!(run.height < 12, "n={n}: took {} blocks", run.height);
    }
}

#[test]
fn byzantine_dealers_are_excluded_and_honest_ones_never() {
    use Behaviour::*;
    let kinds = [BadShare, InconsistentCommitments, Malformed, Silent, WithholdLater, FalseAccuser, BadPublicShares];
    for n in [4u16, 5, 7] {
        let f = (n - 1) / 3;
        for (round, kind) in kinds.iter().enumerate() {
            // Nodes 1..=f are designated dealers of batch 0, and the state
            // machine verifies the lowest-indexed publications first: the
            // misbehaviour is always where it gets checked.
            let byzantine: Vec<(u16, Behaviour)> = (1..=f).map(|i| (i, *kind)).collect();
            let mut bad: Vec<u16> = byzantine.iter().map(|(i, _)| *i).collect();
            bad.sort_unstable();
            let honest: Vec<u16> = (1..=n).filter(|i| !bad.contains(i)).collect();
            let mut run = Run::new(n, 4, 100 * u64::from(n) + round as u64, &byzantine);
            run.until_batches_end(2, 200);
            let records = qualified_batches(&run);
            assert!(!records.is_empty());
            for record in &records {
                let qualified = &record.qualified;
                // No honest dealer is ever excluded…
                for h in record.dealt.iter().filter(|d| honest.contains(d)) {
                    assert!(qualified.contains(h), "n={n} {kind:?}: honest dealer {h} excluded from {qualified:?}");
                }
                // …and the batch tops up until it has f + 1 qualified
                // dealers, so at least one honest.
                assert!(qualified.len() > usize::from(f), "n={n} {kind:?}: {qualified:?}");
                assert!(qualified.iter().any(|q| honest.contains(q)));
                if kind.excluded() {
                    for b in &bad {
                        assert!(!qualified.contains(b), "n={n} {kind:?}: dealer {b} in {qualified:?}");
                    }
                }
            }
            // The misbehaving dealers did deal (or were silent) in batch 0,
            // and the batch topped up with honest dealers.
            let first = run.net.ledger.dkg_view(&run.state).unwrap().batch(0).unwrap().unwrap();
            if matches!(kind, BadShare | InconsistentCommitments) {
                assert_eq!(first.disqualified, bad, "n={n} {kind:?}: {first:?}");
                assert!(first.qualified.iter().all(|q| honest.contains(q)), "n={n} {kind:?}: {first:?}");
            }
            assert!(
                !run.events.iter().any(|e| matches!(e, DkgEvent::BatchAbandoned { .. })),
                "n={n} {kind:?}: {:?}",
                run.events
            );
            check_keys(&run, &honest);
            if *kind == BadPublicShares {
                let view = run.net.ledger.dkg_view(&run.state).unwrap();
                let record = view.batch(0).unwrap().unwrap();
                assert!(matches!(record.phase, Phase::Finished { .. }));
                assert_eq!(record.refused, bad, "n={n}: the wrong public shares are refused");
            }
        }
    }
}

#[test]
fn pending_assignments_wait_for_the_next_batch() {
    let mut run = Run::new(4, 4, 77, &[]);
    let assign = run.net.assign(1, quorumkey_ledger::testkit::TEST_VERIFIER, "early@example.com");
    let mut pending = run.round(vec![assign]);
    let view = LedgerView::new(&run.net.ledger, &run.state);
    assert_eq!(view.pending_assignments().unwrap(), 1);
    for _ in 0..30 {
        pending = run.round(pending);
    }
    let view = LedgerView::new(&run.net.ledger, &run.state);
    assert_eq!(view.pending_assignments().unwrap(), 0);
    let user = quorumkey_ledger::testkit::id("early@example.com");
    let verifier = quorumkey_ledger::testkit::name(quorumkey_ledger::testkit::TEST_VERIFIER);
    assert_eq!(
        view.assignment(&verifier, &user).unwrap(),
        Some(quorumkey_ledger::Assignment::Assigned { key_index: 0 })
    );
    // The pool refilled to its target and stopped.
    assert_eq!(view.ready_keys().unwrap(), 8 - 1 + 4);
}
