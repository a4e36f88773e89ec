//! Handovers through the real ledger state machine and the real node
//! participants (DKG and handover), without consensus: every round, the
//! nodes' submissions form the next block in a seeded random order, some
//! are lost, and some nodes are down for a while. A network makes keys with
//! the DKG, assigns some, then hands them over to a new node set: 4 → 5
//! (a node joins), 5 → 4 (a node leaves), 5 → 5 (a refresh), with an old
//! node and a new node crashed mid-handover and a Byzantine dealer. After
//! the boundary every key has its old public key, every new node's share
//! matches its recorded public share, every threshold subset rebuilds each
//! key, the removed node holds nothing, and the DKG makes keys again on
//! the new set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use commonware_codec::Encode;
use commonware_cryptography::{Signer as _, ed25519};
use quorumkey_crypto::group::{Point, Scalar, generator, point_from_bytes, point_to_bytes};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::shamir::{Share, reconstruct_secret};
use quorumkey_dkg::KeyShares;
use quorumkey_dkg::dealing::SharePair;
use quorumkey_dkg::reshare::ReshareSecrets;
use quorumkey_ledger::testkit::{TEST_VERIFIER, TestNetwork, small_dkg};
use quorumkey_ledger::{DkgEvent, EpochNode, LedgerView, MemoryState, NodeSet, SignedTransaction, TransactionBody};
use quorumkey_participant::handover::{HandoverAction, HandoverParticipant, HandoverShareStore};
use quorumkey_participant::testkit::subsets;
use quorumkey_participant::{BatchShareStore, DkgAction, DkgParticipant};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// A node's shares: the DKG's per batch, the keys' in use (for
/// `epoch`), and the next epoch's per reshare batch.
#[derive(Default)]
struct Shares {
    epoch: u64,
    batches: BTreeMap<u64, Vec<SharePair>>,
    keys: BTreeMap<u64, Scalar>,
    next: BTreeMap<(u64, u64), (u64, Vec<Scalar>)>,
}

impl BatchShareStore for Shares {
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

impl HandoverShareStore for Shares {
    fn key_share(&self, index: u64) -> Option<Scalar> {
        self.keys.get(&index).copied()
    }
    fn share_epoch(&self) -> u64 {
        self.epoch
    }
    fn has_next_shares(&self, epoch: u64, batch: u64) -> bool {
        self.next.contains_key(&(epoch, batch))
    }
}

/// One machine: its keys, its participants, its shares.
struct Machine {
    consensus: ed25519::PrivateKey,
    secp: SigningKey,
    dkg: Option<DkgParticipant>,
    handover: HandoverParticipant,
    shares: Shares,
    /// Deals its shares plus one in every reshare batch.
    byzantine_dealer: bool,
    /// Rounds during which it is down (it neither acts nor sees blocks).
    down: Option<(u64, u64)>,
}

impl Machine {
    fn secp_public(&self) -> [u8; 33] {
        point_to_bytes(&Point::from(*self.secp.verifying_key().as_affine()))
    }
}

struct Run {
    net: TestNetwork,
    state: MemoryState,
    machines: Vec<Machine>,
    height: u64,
    rng: ChaCha20Rng,
    events: Vec<DkgEvent>,
    /// Probability (per mille) that a submission is lost.
    loss_per_mille: u64,
    /// Complaints the ledger upheld in reshare responses.
    upheld: u64,
    /// Faults that start when the epoch is proposed.
    faults: Faults,
}

/// What goes wrong once the next epoch is proposed at height `h`.
#[derive(Clone, Default)]
struct Faults {
    /// A machine down during `h + from .. h + to`.
    down: Vec<(usize, u64, u64)>,
    /// A machine that deals its shares plus one.
    cheat: Option<usize>,
}

impl Run {
    /// A network of `n` genesis nodes plus `extra` machines that may join.
    fn new(n: u16, extra: u16, seed: u64) -> Self {
        let net = TestNetwork::with_dkg(n, seed, small_dkg(n, 8));
        let mut state = MemoryState::default();
        state.commit(&net.ledger.genesis_outcome(&state).unwrap().writes);
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut machines: Vec<Machine> = (1..=n)
            .map(|index| {
                let secret = *net.secp256k1_keys[usize::from(index) - 1].as_nonzero_scalar();
                Machine {
                    consensus: net.node_keys[usize::from(index) - 1].clone(),
                    secp: net.secp256k1_keys[usize::from(index) - 1].clone(),
                    dkg: Some(DkgParticipant::new(&net.ledger, index, secret).unwrap()),
                    handover: HandoverParticipant::new(secret),
                    shares: Shares::default(),
                    byzantine_dealer: false,
                    down: None,
                }
            })
            .collect();
        for i in 0..extra {
            let secp = SigningKey::generate_from_rng(&mut rng);
            let secret = *secp.as_nonzero_scalar();
            machines.push(Machine {
                consensus: ed25519::PrivateKey::from_seed(seed.wrapping_mul(7919) + 10_000 + u64::from(i)),
                secp,
                dkg: None,
                handover: HandoverParticipant::new(secret),
                shares: Shares::default(),
                byzantine_dealer: false,
                down: None,
            });
        }
        Self {
            net,
            state,
            machines,
            height: 0,
            rng,
            events: Vec::new(),
            loss_per_mille: 0,
            upheld: 0,
            faults: Faults::default(),
        }
    }

    /// The next set from machines (by position from 0), in that order.
    fn node_set(&self, epoch: u64, members: &[usize]) -> NodeSet {
        NodeSet {
            epoch,
            nodes: members
                .iter()
                .map(|&m| EpochNode {
                    consensus_key: self.machines[m].consensus.public_key(),
                    secp256k1_key: self.machines[m].secp_public(),
                    p2p_address: format!("10.0.0.{}:7000", m + 1),
                    rpc_url: format!("http://10.0.0.{}:8000", m + 1),
                })
                .collect(),
        }
    }

    fn sign(&self, machine: usize, index: u16, body: TransactionBody) -> Vec<u8> {
        let key = &self.machines[machine].consensus;
        SignedTransaction::sign_as_node(self.net.ledger.network_id(), body, index, key).encode().to_vec()
    }

    fn is_down(&self, machine: usize) -> bool {
        self.machines[machine].down.is_some_and(|(from, to)| self.height >= from && self.height < to)
    }

    /// Applies one block of `transactions`; every machine that is up acts.
    fn round(&mut self, mut transactions: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        for i in (1..transactions.len()).rev() {
            let j = (self.rng.next_u64() % (i as u64 + 1)) as usize;
            transactions.swap(i, j);
        }
        self.height += 1;
        let outcome = self.net.ledger.apply_block(&self.state, self.height, self.height * 250, &transactions).unwrap();
        self.state.commit(&outcome.writes);
        self.events.extend(outcome.dkg_events);
        for receipt in &outcome.receipts {
            if let Ok(quorumkey_ledger::Effect::ReshareResponseAccepted { upheld, .. }) = receipt.result {
                self.upheld += u64::from(upheld);
            }
        }
        let now = self.height * 250;
        let current = LedgerView::new(&self.net.ledger, &self.state).node_set().unwrap();
        let mut next = Vec::new();
        for m in 0..self.machines.len() {
            if self.is_down(m) {
                continue;
            }
            // The handover participant first: it activates a new epoch.
            let actions = {
                let machine = &mut self.machines[m];
                machine
                    .handover
                    .on_block(&self.net.ledger, &self.state, self.height, now, &machine.shares, &mut self.rng)
                    .unwrap()
            };
            for action in actions {
                match action {
                    HandoverAction::Submit { index, body } => {
                        let body = if self.machines[m].byzantine_dealer { self.cheat(m, body) } else { body };
                        next.push(self.sign(m, index, body));
                    }
                    HandoverAction::StoreNextShares { epoch, batch, first_key, shares } => {
                        self.machines[m].shares.next.insert((epoch, batch), (first_key, shares.to_vec()));
                    }
                    HandoverAction::ActivateEpoch { epoch, index } => {
                        let machine = &mut self.machines[m];
                        let next_shares = std::mem::take(&mut machine.shares.next);
                        machine.shares.keys.clear();
                        machine.shares.batches.clear();
                        machine.shares.epoch = epoch;
                        machine.dkg = None;
                        if let Some(index) = index {
                            for ((e, _), (first, values)) in next_shares {
                                assert_eq!(e, epoch);
                                for (offset, value) in values.into_iter().enumerate() {
                                    machine.shares.keys.insert(first + offset as u64, value);
                                }
                            }
                            let secret = *machine.secp.as_nonzero_scalar();
                            machine.dkg = Some(DkgParticipant::for_set(&current, index, secret).unwrap());
                        }
                    }
                    HandoverAction::Notice(_) => {}
                }
            }
            let actions = {
                let machine = &mut self.machines[m];
                match machine.dkg.as_mut() {
                    Some(dkg) if machine.shares.epoch == current.epoch => dkg
                        .on_block(&self.net.ledger, &self.state, self.height, now, &machine.shares, &mut self.rng)
                        .unwrap(),
                    _ => Vec::new(),
                }
            };
            for action in actions {
                let machine = &mut self.machines[m];
                match action {
                    DkgAction::Submit(body) => {
                        let index = machine.dkg.as_ref().unwrap().me();
                        next.push(self.sign(m, index, body));
                    }
                    DkgAction::StoreBatchShares { batch, shares } => {
                        machine.shares.batches.insert(batch, shares.shares().to_vec());
                    }
                    DkgAction::AssignBatchShares { batch, first_key } => {
                        let pairs = machine.shares.batches.remove(&batch).unwrap();
                        for (offset, pair) in pairs.iter().enumerate() {
                            machine.shares.keys.insert(first_key + offset as u64, pair.value);
                        }
                    }
                    DkgAction::DropBatchShares { batch } => {
                        machine.shares.batches.remove(&batch);
                    }
                    DkgAction::Notice(_) => {}
                }
            }
        }
        // Message loss.
        let loss = self.loss_per_mille;
        next.retain(|_| self.rng.next_u64() % 1000 >= loss);
        next
    }

    /// A Byzantine old node's dealing: its shares plus one, so that every
    /// recipient's check fails against its recorded public shares.
    fn cheat(&mut self, m: usize, body: TransactionBody) -> TransactionBody {
        let TransactionBody::ReshareDeal { epoch, batch, .. } = &body else { return body };
        let (epoch, batch) = (*epoch, *batch);
        let view = self.net.ledger.epoch_view(&self.state);
        let current = view.current().unwrap();
        let handover = view.handover().unwrap().unwrap();
        let context = view.context(&current, &handover, batch).unwrap();
        let me = current.index_of_secp256k1(&self.machines[m].secp_public()).unwrap();
        let first = context.first_key();
        let shares: Vec<Scalar> = (first..first + u64::from(context.params().keys()))
            .map(|k| self.machines[m].shares.keys[&k] + Scalar::ONE)
            .collect();
        let recipients = handover.next.secp256k1_points().unwrap();
        let dealing = ReshareSecrets::new(*context.params(), &shares, &mut self.rng)
            .unwrap()
            .deal(&context, me, &recipients, &mut self.rng)
            .unwrap();
        TransactionBody::ReshareDeal { epoch, batch, dealing }
    }

    fn run_until(&mut self, mut pending: Vec<Vec<u8>>, max_rounds: usize, done: impl Fn(&Run) -> bool) -> Vec<Vec<u8>> {
        for _ in 0..max_rounds {
            pending = self.round(pending);
            if done(self) {
                return pending;
            }
        }
        panic!("not done after {max_rounds} rounds (height {}): {:?}", self.height, self.events);
    }

    fn count(&self, matches: impl Fn(&DkgEvent) -> bool) -> usize {
        self.events.iter().filter(|e| matches(e)).count()
    }
}

/// Every key: its public key is `expected[k]`; each member's share matches
/// its recorded public share; every threshold subset of members rebuilds
/// it.
fn check_keys(run: &Run, members: &[usize], expected: &BTreeMap<u64, [u8; 33]>) {
    let view = LedgerView::new(&run.net.ledger, &run.state);
    let set = view.node_set().unwrap();
    let t = set.threshold();
    let indexes: Vec<u16> = (1..=set.size()).collect();
    let subsets = subsets(&indexes, t);
    for (&index, public_key) in expected {
        let record = view.key(index).unwrap().unwrap();
        assert_eq!(&record.public_key, public_key, "key {index}'s public key changed");
        assert_eq!(record.public_shares.len(), members.len());
        let pk = point_from_bytes("pk", &record.public_key).unwrap();
        for (position, &m) in members.iter().enumerate() {
            let share = run.machines[m]
                .shares
                .keys
                .get(&index)
                .unwrap_or_else(|| panic!("node {} (machine {m}) has no share of key {index}", position + 1));
            let recorded = point_from_bytes("share", &record.public_shares[position]).unwrap();
            assert_eq!(recorded, generator() * share, "key {index}: node {}'s public share", position + 1);
        }
        for subset in &subsets {
            let shares: Vec<Share> = subset
                .iter()
                .map(|j| Share {
                    index: u32::from(*j),
                    value: run.machines[members[usize::from(*j) - 1]].shares.keys[&index],
                })
                .collect();
            assert_eq!(generator() * reconstruct_secret(&shares).unwrap(), pk, "key {index} from {subset:?}");
        }
    }
}

/// Makes keys with the DKG, assigns some, proposes `next` (positions of
/// machines), runs the handover with the faults set on the machines, and
/// checks everything after the boundary.
fn hand_over(mut run: Run, current: &[usize], next: &[usize], assigned: usize) -> Run {
    // Keys from the DKG: two batches of 8.
    let pending = run.run_until(Vec::new(), 200, |run| run.count(|e| matches!(e, DkgEvent::BatchFinished { .. })) >= 2);
    let mut pending = pending;
    for i in 0..assigned {
        pending.push(run.net.assign(1, TEST_VERIFIER, &format!("user{i}@example.com")));
    }
    let pending = run.run_until(pending, 10, |_| true);
    let view = LedgerView::new(&run.net.ledger, &run.state);
    let total = view.total_keys().unwrap();
    let before: BTreeMap<u64, [u8; 33]> = (0..total).map(|k| (k, view.key(k).unwrap().unwrap().public_key)).collect();
    check_keys(&run, current, &before);

    let epoch = view.node_set().unwrap().epoch + 1;
    let set = run.node_set(epoch, next);
    let quorum = view.node_set().unwrap().operator_quorum() as u16;
    let signers: Vec<u16> = (1..=quorum).collect();
    let proposal = run.net.operators_tx(&signers, TransactionBody::ProposeEpoch { epoch, nodes: set.nodes.clone() });
    let mut pending = pending;
    pending.push(proposal);
    let proposed = run.height;
    for (m, from, to) in run.faults.down.clone() {
        run.machines[m].down = Some((proposed + from, proposed + to));
    }
    if let Some(m) = run.faults.cheat {
        run.machines[m].byzantine_dealer = true;
    }
    let pending = run.run_until(pending, 600, |run| {
        run.count(|e| matches!(e, DkgEvent::EpochStarted { epoch: e, .. } if *e == epoch)) == 1
    });
    eprintln!(
        "proposed at {proposed}, epoch {epoch} from {}; {} reshare batches",
        run.height,
        run.count(|e| matches!(e, DkgEvent::ReshareBatchFinished { .. }))
    );
    // One more block: every machine that is up sees the new epoch.
    let pending = run.run_until(pending, 1, |_| true);
    let view = LedgerView::new(&run.net.ledger, &run.state);
    assert_eq!(view.node_set().unwrap(), set);
    // Every key made before the proposal, assigned or not, is handed over.
    let handed: u64 = run
        .events
        .iter()
        .filter_map(|e| match e {
            DkgEvent::ReshareBatchFinished { epoch: e, keys, .. } if *e == epoch => Some(*keys),
            _ => None,
        })
        .sum();
    assert_eq!(handed, total);
    check_keys(&run, next, &before);
    // A machine not in the new set holds nothing.
    for (m, machine) in run.machines.iter().enumerate() {
        if current.contains(&m) && !next.contains(&m) {
            assert!(machine.shares.keys.is_empty(), "removed machine {m} still holds shares");
        }
    }
    // The DKG makes keys again, on the new set: use the pool up.
    let mut pending = pending;
    let more = LedgerView::new(&run.net.ledger, &run.state).ready_keys().unwrap() as usize + 4;
    for i in 0..more {
        pending.push(run.net.assign(1, TEST_VERIFIER, &format!("later{i}@example.com")).clone());
    }
    let finished_before = run.count(|e| matches!(e, DkgEvent::BatchFinished { .. }));
    run.run_until(pending, 300, |run| run.count(|e| matches!(e, DkgEvent::BatchFinished { .. })) > finished_before);
    let view = LedgerView::new(&run.net.ledger, &run.state);
    let now: BTreeMap<u64, [u8; 33]> =
        (0..view.total_keys().unwrap()).map(|k| (k, view.key(k).unwrap().unwrap().public_key)).collect();
    assert!(now.len() as u64 > total);
    check_keys(&run, next, &now);
    run
}

#[test]
fn four_to_five_with_a_new_node() {
    let run = Run::new(4, 1, 11);
    hand_over(run, &[0, 1, 2, 3], &[0, 1, 2, 3, 4], 5);
}

#[test]
fn five_to_four_removes_a_node() {
    let run = Run::new(5, 0, 12);
    // Node 3 leaves; 4 and 5 become 3 and 4.
    hand_over(run, &[0, 1, 2, 3, 4], &[0, 1, 3, 4], 3);
}

#[test]
fn a_refresh_changes_every_share_and_no_public_key() {
    let mut run = Run::new(5, 0, 13);
    let pending = run.run_until(Vec::new(), 200, |run| run.count(|e| matches!(e, DkgEvent::BatchFinished { .. })) >= 2);
    let old: Vec<BTreeMap<u64, Scalar>> = run.machines.iter().map(|m| m.shares.keys.clone()).collect();
    let _ = pending;
    let run = hand_over(run, &[0, 1, 2, 3, 4], &[0, 1, 2, 3, 4], 0);
    for (m, machine) in run.machines.iter().enumerate() {
        for (key, share) in &old[m] {
            assert_ne!(machine.shares.keys.get(key), Some(share), "machine {m}'s share of key {key} did not change");
        }
    }
}

/// An old node and a new node crash in the middle of the handover (the old
/// one a designated dealer of the first batch), a fifth of all messages
/// are lost, and an old node deals its shares plus one: the handover still
/// completes, the cheat is disqualified, and everything checks.
#[test]
fn crashes_losses_and_a_byzantine_dealer() {
    for (old_n, next) in [(4u16, vec![0usize, 1, 2, 3, 4]), (5, vec![0usize, 1, 3, 4])] {
        let extra = if old_n == 4 { 1 } else { 0 };
        let mut run = Run::new(old_n, extra, 20 + u64::from(old_n));
        run.loss_per_mille = 200;
        // Old node 1 (a designated dealer of reshare batch 0) is down from
        // the block after the proposal for 40 blocks; the last new node for
        // 30 (it misses the responses and recovers its shares from the
        // kept dealings); old node 2 cheats in every dealing.
        let new_down = *next.last().unwrap();
        run.faults = Faults { down: vec![(0, 1, 41), (new_down, 2, 32)], cheat: Some(1) };
        let current: Vec<usize> = (0..usize::from(old_n)).collect();
        let run = hand_over(run, &current, &next, 4);
        let qualified: BTreeSet<u16> = run
            .events
            .iter()
            .filter_map(|e| match e {
                DkgEvent::ReshareBatchFinished { qualified, .. } => Some(qualified.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(!qualified.contains(&2), "old node 2 cheated and still qualified: {:?}", run.events);
        assert!(run.upheld > 0, "no complaint against the cheat was upheld");
        let batches = run.count(|e| matches!(e, DkgEvent::ReshareBatchFinished { .. }));
        assert!(batches >= 2, "the handover took {batches} batch(es); the test wants several");
    }
}

/// With `refresh_blocks` in the genesis, the ledger refreshes every share
/// by itself, epoch after epoch; keys made in between are included.
#[test]
fn scheduled_refreshes_run_by_themselves() {
    let epochs = quorumkey_ledger::EpochSettings { boundary_blocks: 8, refresh_blocks: 40 };
    let net = TestNetwork::with_epochs(4, 31, small_dkg(4, 8), quorumkey_ledger::testkit::unlimited_policy(), epochs);
    let mut run = Run::new(4, 0, 31);
    // The same keys as Run::new made, on a ledger with the schedule.
    run.net = net;
    run.state = MemoryState::default();
    run.state.commit(&run.net.ledger.genesis_outcome(&run.state).unwrap().writes);
    for (m, machine) in run.machines.iter_mut().enumerate() {
        let secret = *machine.secp.as_nonzero_scalar();
        machine.dkg = Some(DkgParticipant::new(&run.net.ledger, m as u16 + 1, secret).unwrap());
    }
    let pending = run.run_until(Vec::new(), 200, |run| run.count(|e| matches!(e, DkgEvent::BatchFinished { .. })) >= 2);
    let old: Vec<BTreeMap<u64, Scalar>> = run.machines.iter().map(|m| m.shares.keys.clone()).collect();
    let view = LedgerView::new(&run.net.ledger, &run.state);
    let before: BTreeMap<u64, [u8; 33]> =
        (0..view.total_keys().unwrap()).map(|k| (k, view.key(k).unwrap().unwrap().public_key)).collect();
    let pending =
        run.run_until(pending, 400, |run| run.count(|e| matches!(e, DkgEvent::EpochStarted { epoch: 2, .. })) == 1);
    run.run_until(pending, 1, |_| true);
    assert_eq!(run.count(|e| matches!(e, DkgEvent::RefreshScheduled { .. })), 2);
    check_keys(&run, &[0, 1, 2, 3], &before);
    for (m, machine) in run.machines.iter().enumerate() {
        for (key, share) in &old[m] {
            assert_ne!(machine.shares.keys.get(key), Some(share), "machine {m}'s share of key {key} did not change");
        }
    }
}

/// A node whose participant is down from the moment the last reshare batch
/// finished until after the new epoch came into force still gets its
/// shares of that batch: the ledger keeps the handover's records a while
/// after the boundary, and the node stores them before it puts the new
/// epoch's shares in force.
#[test]
fn a_node_away_at_the_boundary_stores_its_last_shares_before_switching() {
    let mut run = Run::new(4, 0, 41);
    let pending = run.run_until(Vec::new(), 200, |run| run.count(|e| matches!(e, DkgEvent::BatchFinished { .. })) >= 2);
    let view = LedgerView::new(&run.net.ledger, &run.state);
    let before: BTreeMap<u64, [u8; 33]> =
        (0..view.total_keys().unwrap()).map(|k| (k, view.key(k).unwrap().unwrap().public_key)).collect();
    let set = run.node_set(1, &[0, 1, 2, 3]);
    let mut pending = pending;
    pending.push(run.net.operators_tx(&[1, 2, 3], TransactionBody::ProposeEpoch { epoch: 1, nodes: set.nodes }));
    // Node 4 goes down as soon as the last batch opens (it never sees
    // that batch finish) and stays down past the boundary.
    let pending = run.run_until(pending, 300, |run| {
        let opened = run.count(|e| matches!(e, DkgEvent::ReshareBatchOpened { .. }));
        let batches = run.events.iter().find_map(|e| match e {
            DkgEvent::HandoverStarted { batches, .. } => Some(*batches as usize),
            _ => None,
        });
        batches.is_some_and(|b| opened == b)
    });
    run.machines[3].down = Some((run.height, u64::MAX));
    let pending =
        run.run_until(pending, 300, |run| run.count(|e| matches!(e, DkgEvent::EpochStarted { epoch: 1, .. })) == 1);
    let mut pending = pending;
    for _ in 0..3 {
        pending = run.round(pending);
    }
    run.machines[3].down = None;
    run.run_until(pending, 2, |run| run.machines[3].shares.epoch == 1);
    check_keys(&run, &[0, 1, 2, 3], &before);
}

/// A dealer that deals twice in one reshare batch (two different dealings,
/// both signed by it): the first stands, the second is refused; and a
/// dealing signed under a current index by a key that is not that node's
/// (the joining node's) is refused.
#[test]
fn a_second_dealing_by_the_same_node_is_refused() {
    let mut run = Run::new(4, 1, 51);
    let pending = run.run_until(Vec::new(), 200, |run| run.count(|e| matches!(e, DkgEvent::BatchFinished { .. })) >= 2);
    let set = run.node_set(1, &[0, 1, 2, 3, 4]);
    let mut pending = pending;
    pending.push(run.net.operators_tx(&[1, 2, 3], TransactionBody::ProposeEpoch { epoch: 1, nodes: set.nodes }));
    // Until reshare batch 0 is open: the nodes' dealings wait in `pending`.
    let pending =
        run.run_until(pending, 300, |run| run.net.ledger.epoch_view(&run.state).batch(1, 0).unwrap().is_some());
    let view = run.net.ledger.epoch_view(&run.state);
    let current = view.current().unwrap();
    let handover = view.handover().unwrap().unwrap();
    assert!(view.batch(1, 0).unwrap().unwrap().dealt.is_empty());
    let context = view.context(&current, &handover, 0).unwrap();
    let recipients = handover.next.secp256k1_points().unwrap();
    let first = context.first_key();
    let shares: Vec<Scalar> =
        (first..first + u64::from(context.params().keys())).map(|k| run.machines[0].shares.keys[&k]).collect();
    let deal = |run: &mut Run| {
        let dealing = ReshareSecrets::new(*context.params(), &shares, &mut run.rng)
            .unwrap()
            .deal(&context, 1, &recipients, &mut run.rng)
            .unwrap();
        run.sign(0, 1, TransactionBody::ReshareDeal { epoch: 1, batch: 0, dealing })
    };
    let (once, twice) = (deal(&mut run), deal(&mut run));
    // The joining node (machine 4) signs as current node 2.
    let dealing = ReshareSecrets::new(*context.params(), &shares, &mut run.rng)
        .unwrap()
        .deal(&context, 2, &recipients, &mut run.rng)
        .unwrap();
    let impostor = run.sign(4, 2, TransactionBody::ReshareDeal { epoch: 1, batch: 0, dealing });
    run.height += 1;
    let outcome =
        run.net.ledger.apply_block(&run.state, run.height, run.height * 250, &[once, twice, impostor]).unwrap();
    run.state.commit(&outcome.writes);
    assert_eq!(outcome.receipts[0].result, Ok(quorumkey_ledger::Effect::ReshareDealingAccepted { epoch: 1, batch: 0 }));
    assert_eq!(
        outcome.receipts[1].result,
        Err(quorumkey_ledger::Rejection::Epoch("node 1 already dealt in reshare batch 0".to_owned()))
    );
    assert_eq!(
        outcome.receipts[2].result,
        Err(quorumkey_ledger::Rejection::BadAuthorization("node signature does not verify"))
    );
    // The handover completes, and every key checks on the new set.
    let view = LedgerView::new(&run.net.ledger, &run.state);
    let before: BTreeMap<u64, [u8; 33]> =
        (0..view.total_keys().unwrap()).map(|k| (k, view.key(k).unwrap().unwrap().public_key)).collect();
    let pending =
        run.run_until(pending, 300, |run| run.count(|e| matches!(e, DkgEvent::EpochStarted { epoch: 1, .. })) == 1);
    run.run_until(pending, 1, |_| true);
    check_keys(&run, &[0, 1, 2, 3, 4], &before);
}
