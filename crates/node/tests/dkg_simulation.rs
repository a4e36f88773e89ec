//! The DKG on the real consensus stack: whole validators (simplex,
//! marshal, the ledger, redb stores, the node's DKG participant and its
//! driver) on commonware's deterministic runtime and simulated network,
//! seeded and reproducible. With n = 4, 5 and 7 and f Byzantine nodes
//! (each kind of misbehaviour appears in one run), and in one run an
//! honest node killed mid-DKG and restarted from its storage, every run
//! checks that all honest nodes agree on the state root and the pool,
//! that each finished batch's qualified set holds every honest dealer, at
//! least f + 1 dealers (so at least one honest) and none of the excluded
//! ones, and that every key rebuilds, from every t-subset of the honest
//! nodes' stored shares, to the recorded public key, with the recorded
//! public shares matching the stored shares. A refresh of every share
//! (a handover to the same set) runs on the same stack with a node
//! crashed in the middle of it: every key keeps its public key, every
//! share and public share changes, and the honest nodes agree.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use commonware_cryptography::{Signer, ed25519};
use commonware_p2p::simulated::{self, Link, Oracle};
use commonware_runtime::{Clock, Handle, Runner as _, Spawner as _, Supervisor as _, deterministic};
use commonware_utils::{NZUsize, probability};
use quorumkey_crypto::group::{NonZeroScalar, generator, point_from_bytes, scalar_from_bytes};
use quorumkey_crypto::shamir::{Share, reconstruct_secret};
use quorumkey_ledger::testkit::{TestNetwork, small_dkg};
use quorumkey_ledger::{Ledger, LedgerError, LedgerView, Phase, StateRead};
use quorumkey_node::applier::BlockApplier;
use quorumkey_node::consensus::application::unix_ms;
use quorumkey_node::consensus::{
    BlockLimits, Channels, ConsensusConfig, MempoolLimits, Timing, TransactionSubmitter, channel, consensus_namespace,
    max_message_size, start_consensus,
};
use quorumkey_node::observability::HealthCell;
use quorumkey_node::participant_driver::{DkgRole, ParticipantHandles, ParticipantIdentity, run_participant};
use quorumkey_participant::testkit::{Behaviour, subsets, tamper};
use quorumkey_participant::{BatchShareStore, DkgAction, DkgParticipant};
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, SeedableRng};

type Context = deterministic::Context;

/// An honest participant whose submissions pass through a behaviour.
struct Misbehaving {
    inner: DkgParticipant,
    behaviour: Behaviour,
    secret: NonZeroScalar,
}

impl DkgRole for Misbehaving {
    fn on_block(
        &mut self,
        ledger: &Ledger,
        state: &dyn StateRead,
        height: u64,
        now_ms: u64,
        store: &dyn BatchShareStore,
        rng: &mut dyn CryptoRng,
    ) -> Result<Vec<DkgAction>, LedgerError> {
        let actions = self.inner.on_block(ledger, state, height, now_ms, store, rng)?;
        Ok(actions
            .into_iter()
            .filter_map(|action| match action {
                DkgAction::Submit(body) => {
                    tamper(self.behaviour, self.inner.me(), ledger, state, &self.secret, body, rng)
                        .map(DkgAction::Submit)
                }
                other => Some(other),
            })
            .collect())
    }

    fn prepare(&mut self, ledger: &Ledger, rng: &mut dyn CryptoRng) -> Result<(), LedgerError> {
        self.inner.prepare(ledger, rng)
    }
}

struct Validator {
    applier: Arc<BlockApplier>,
    handle: Handle<()>,
}

struct Harness {
    context: Context,
    oracle: Oracle<ed25519::PublicKey, Context>,
    network: TestNetwork,
    keys: Vec<ed25519::PublicKey>,
    dir: PathBuf,
    validators: BTreeMap<usize, Validator>,
    seed: u64,
    /// Each running validator's transaction submitter.
    submitters: Arc<std::sync::Mutex<BTreeMap<usize, TransactionSubmitter>>>,
}

impl Harness {
    async fn start(&mut self, node: usize, behaviour: Behaviour) {
        let control = self.oracle.control(self.keys[node].clone());
        let mut pairs = Vec::new();
        for ch in channel::ALL {
            pairs.push(control.register(ch, channel::quota(ch)).await.unwrap());
        }
        let mut pairs = pairs.into_iter();
        let mut next = || pairs.next().unwrap();
        let channels = Channels {
            votes: next(),
            certificates: next(),
            resolver: next(),
            blocks: next(),
            backfill: next(),
            transactions: next(),
        };
        let index = node as u16 + 1;
        let ledger = self.network.ledger.clone();
        let health = HealthCell::new(index, *ledger.network_id());
        let path = self.dir.join(format!("node-{node}.redb"));
        let applier = Arc::new(BlockApplier::open(ledger.clone(), &path, health, &test_store_options()).unwrap());
        let config = ConsensusConfig {
            namespace: consensus_namespace(ledger.network_id()),
            signer: self.network.node_keys[node].clone(),
            partition_prefix: format!("node-{node}"),
            timing: Timing::default(),
            block_limits: BlockLimits::default(),
            mempool_limits: MempoolLimits::default(),
            mailbox_size: NZUsize!(1024),
        };
        let secret = *self.network.secp256k1_keys[node].as_nonzero_scalar();
        let participant = DkgParticipant::new(&ledger, index, secret).unwrap();
        let role: Box<dyn DkgRole> = match behaviour {
            Behaviour::Honest => Box::new(participant),
            behaviour => Box::new(Misbehaving { inner: participant, behaviour, secret }),
        };
        let identity = ParticipantIdentity {
            index: Some(index),
            node_key: self.network.node_keys[node].clone(),
            secp256k1: secret,
        };
        let rng = ChaCha20Rng::seed_from_u64(self.seed * 100 + node as u64);
        let blocker = self.oracle.control(self.keys[node].clone());
        let provider = self.oracle.manager();
        let task_applier = applier.clone();
        let submitters = self.submitters.clone();
        let handle = self.context.child("validator").with_attribute("node", node).spawn(move |context| async move {
            let running = start_consensus(
                context.child("node"),
                config,
                channels,
                blocker,
                provider,
                Box::new(StaticPeers),
                task_applier.clone(),
                |a| a,
            )
            .await
            .unwrap();
            let (tip, submitter) = (running.tip.clone(), running.submitter.clone());
            submitters.lock().unwrap().insert(node, submitter.clone());
            let clock = context.child("clock");
            let handles = ParticipantHandles {
                state: task_applier.committed_state(),
                shares: task_applier.share_store(),
                tip,
                submitter,
            };
            context.child("dkg").spawn(move |_| run_participant(handles, identity, role, rng, move || unix_ms(&clock)));
            let _ = running.engine.await;
        });
        self.validators.insert(node, Validator { applier, handle });
    }

    async fn crash(&mut self, node: usize) {
        self.submitters.lock().unwrap().remove(&node);
        let validator = self.validators.remove(&node).unwrap();
        validator.handle.abort();
        let _ = validator.handle.await;
        self.context.sleep(Duration::from_millis(10)).await;
        assert_eq!(Arc::strong_count(&validator.applier), 1, "the crashed node's store is still referenced");
    }

    fn finished_keys(&self, node: usize) -> u64 {
        let applier = &self.validators[&node].applier;
        let snapshot = applier.store().snapshot().unwrap();
        LedgerView::new(applier.ledger(), &snapshot).total_keys().unwrap()
    }

    fn height(&self, node: usize) -> u64 {
        let applier = &self.validators[&node].applier;
        applier.applied().0
    }
}

/// Runs the DKG with `byzantine` nodes (index from 1) until at least
/// `keys` keys are in every honest node's pool; `restart` kills an honest
/// node 2 s in and brings it back 8 s later.
fn run(n: u16, seed: u64, byzantine: &[(u16, Behaviour)], restart: Option<u16>, keys: u64) {
    let dir = tempfile::Builder::new()
        .prefix("quorumkey-dkg-sim-")
        .tempdir_in(if Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "." })
        .unwrap();
    let dir_path = dir.path().to_path_buf();
    let byzantine = byzantine.to_vec();
    let runner = deterministic::Runner::new(
        deterministic::Config::new().with_seed(seed).with_timeout(Some(Duration::from_secs(600))),
    );
    runner.start(|context| async move {
        let network = TestNetwork::with_dkg(n, seed, small_dkg(n, 16));
        let mut harness = Harness::new(&context, network, n, seed, dir_path).await;
        let behaviour_of =
            |index: u16| byzantine.iter().find(|(i, _)| *i == index).map_or(Behaviour::Honest, |(_, b)| *b);
        for node in 0..usize::from(n) {
            harness.start(node, behaviour_of(node as u16 + 1)).await;
        }
        run_checks(context, harness, n, seed, &byzantine, restart, keys).await;
    });
}

impl Harness {
    /// A simulated network of the `n` nodes of `network` (20 ms links),
    /// no validator started yet.
    async fn new(context: &Context, network: TestNetwork, n: u16, seed: u64, dir: PathBuf) -> Self {
        let keys_ed: Vec<ed25519::PublicKey> = network.node_keys.iter().map(|key| key.public_key()).collect();
        let (sim, oracle) = simulated::Network::new_with_peers(
            context.child("network"),
            simulated::Config {
                max_size: max_message_size(&BlockLimits::default()),
                max_peers_per_set: NZUsize!(usize::from(n)),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            keys_ed.clone(),
        )
        .await;
        sim.start();
        let link = Link {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            success_rate: probability!(1.0),
        };
        for a in &keys_ed {
            for b in &keys_ed {
                if a != b {
                    oracle.add_link(a.clone(), b.clone(), link.clone()).await.unwrap();
                }
            }
        }
        Harness {
            context: context.child("harness"),
            oracle,
            network,
            keys: keys_ed,
            dir,
            validators: BTreeMap::new(),
            seed,
            submitters: Arc::default(),
        }
    }
}

async fn run_checks(
    context: Context,
    mut harness: Harness,
    n: u16,
    seed: u64,
    byzantine: &[(u16, Behaviour)],
    restart: Option<u16>,
    keys: u64,
) {
    let behaviour_of = |index: u16| byzantine.iter().find(|(i, _)| *i == index).map_or(Behaviour::Honest, |(_, b)| *b);
    {
        if let Some(index) = restart {
            context.sleep(Duration::from_secs(2)).await;
            harness.crash(usize::from(index) - 1).await;
            context.sleep(Duration::from_secs(8)).await;
            harness.start(usize::from(index) - 1, Behaviour::Honest).await;
        }
        let honest: Vec<u16> = (1..=n).filter(|i| behaviour_of(*i) == Behaviour::Honest).collect();
        let deadline = context.current() + Duration::from_secs(300);
        loop {
            let done = honest.iter().all(|i| harness.finished_keys(usize::from(*i) - 1) >= keys);
            if done {
                break;
            }
            assert!(context.current() < deadline, "n={n} seed={seed}: the pool did not reach {keys} keys");
            context.sleep(Duration::from_millis(250)).await;
        }
        // Let every honest node reach a common height, then compare.
        let target = honest.iter().map(|i| harness.height(usize::from(*i) - 1)).max().unwrap() + 2;
        loop {
            if honest.iter().all(|i| harness.height(usize::from(*i) - 1) >= target) {
                break;
            }
            assert!(context.current() < deadline + Duration::from_secs(60), "honest nodes did not reach {target}");
            context.sleep(Duration::from_millis(100)).await;
        }
        let roots: Vec<_> = honest
            .iter()
            .map(|i| harness.validators[&(usize::from(*i) - 1)].applier.store().state_root(target).unwrap().unwrap())
            .collect();
        assert!(roots.windows(2).all(|w| w[0] == w[1]), "n={n} seed={seed}: honest roots differ at {target}");

        // Qualified sets: every honest dealer, no excluded one.
        let first = &harness.validators[&(usize::from(honest[0]) - 1)].applier;
        let snapshot = first.store().snapshot().unwrap();
        let view = first.ledger().dkg_view(&snapshot).unwrap();
        let mut finished = 0;
        for batch in 0..view.next_batch().unwrap() {
            let record = view.batch(batch).unwrap().unwrap();
            if !matches!(record.phase, Phase::Finished { .. }) {
                continue;
            }
            finished += 1;
            for h in record.dealt.iter().filter(|d| honest.contains(d)) {
                assert!(
                    record.qualified.contains(h),
                    "n={n}: honest {h} not in {:?} (batch {batch})",
                    record.qualified
                );
            }
            let f = usize::from((n - 1) / 3);
            assert!(record.qualified.len() > f, "batch {batch}: {record:?}");
            assert!(record.qualified.iter().any(|q| honest.contains(q)), "batch {batch}: {record:?}");
            for (b, behaviour) in byzantine {
                if behaviour.excluded() {
                    assert!(!record.qualified.contains(b), "n={n}: {behaviour:?} {b} in {:?}", record.qualified);
                }
                if *behaviour == Behaviour::BadPublicShares && record.published.contains(b) {
                    assert!(record.refused.contains(b), "n={n}: wrong public shares of {b} not refused");
                }
            }
        }
        assert!(finished >= 1);

        // Every key rebuilds from every t-subset of honest stored shares.
        let ledger_view = LedgerView::new(first.ledger(), &snapshot);
        let t = first.ledger().genesis().threshold();
        let total = ledger_view.total_keys().unwrap();
        for index in 0..total {
            let record = ledger_view.key(index).unwrap().unwrap();
            let public_key = point_from_bytes("pk", &record.public_key).unwrap();
            let mut shares = BTreeMap::new();
            for h in &honest {
                let stored = harness.validators[&(usize::from(*h) - 1)].applier.store().key_share(index).unwrap();
                let stored = stored.unwrap_or_else(|| panic!("n={n}: honest node {h} has no share of key {index}"));
                let share = scalar_from_bytes(stored.as_ref()).unwrap();
                let recorded = point_from_bytes("share", &record.public_shares[usize::from(*h) - 1]).unwrap();
                assert_eq!(recorded, generator() * share, "key {index}: node {h}'s recorded public share");
                shares.insert(*h, share);
            }
            for subset in subsets(&honest, t) {
                let chosen: Vec<Share> =
                    subset.iter().map(|j| Share { index: u32::from(*j), value: shares[j] }).collect();
                assert_eq!(
                    generator() * reconstruct_secret(&chosen).unwrap(),
                    public_key,
                    "key {index} from {subset:?}"
                );
            }
        }
    }
}

#[test]
fn four_nodes_with_a_dealer_of_bad_shares() {
    run(4, 41, &[(4, Behaviour::BadShare)], None, 32);
}

#[test]
fn five_nodes_with_a_silent_node_and_a_restart_mid_dkg() {
    run(5, 51, &[(5, Behaviour::Silent)], Some(2), 32);
}

#[test]
fn five_nodes_with_inconsistent_commitments() {
    run(5, 52, &[(3, Behaviour::InconsistentCommitments)], None, 32);
}

#[test]
fn seven_nodes_with_a_false_accuser_and_wrong_public_shares() {
    // Publications are verified lowest index first: node 1's wrong public
    // shares are checked (and refused) in every batch.
    run(7, 71, &[(6, Behaviour::FalseAccuser), (1, Behaviour::BadPublicShares)], None, 32);
}

#[test]
fn seven_nodes_with_a_malformed_dealer_and_one_that_withholds() {
    run(7, 72, &[(6, Behaviour::Malformed), (7, Behaviour::WithholdLater)], None, 32);
}

/// The store options of a test node (a fixed key-encryption key).
/// Makes keys with the DKG on `n` validators, then refreshes every share
/// (operators' `ProposeEpoch` for the same set, submitted to node 1), with
/// node `crash` killed once the handover is resharing and restarted 6 s
/// later: every node reaches epoch 1 with its new shares, the roots agree,
/// every public key is what it was, every public share changed, and every
/// key rebuilds from every t-subset of the new shares.
fn refresh(n: u16, seed: u64, crash: u16) {
    let dir = tempfile::Builder::new()
        .prefix("quorumkey-refresh-sim-")
        .tempdir_in(if Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "." })
        .unwrap();
    let dir_path = dir.path().to_path_buf();
    let runner = deterministic::Runner::new(
        deterministic::Config::new().with_seed(seed).with_timeout(Some(Duration::from_secs(900))),
    );
    runner.start(|context| async move {
        let epochs = quorumkey_ledger::EpochSettings { boundary_blocks: 16, refresh_blocks: 0 };
        let network =
            TestNetwork::with_epochs(n, seed, small_dkg(n, 16), quorumkey_ledger::testkit::unlimited_policy(), epochs);
        let mut harness = Harness::new(&context, network, n, seed, dir_path).await;
        for node in 0..usize::from(n) {
            harness.start(node, Behaviour::Honest).await;
        }
        let all: Vec<usize> = (0..usize::from(n)).collect();
        let deadline = context.current() + Duration::from_secs(300);
        while !all.iter().all(|node| harness.finished_keys(*node) >= 32) {
            assert!(context.current() < deadline, "n={n} seed={seed}: no 32 keys");
            context.sleep(Duration::from_millis(250)).await;
        }
        let first = harness.validators[&0].applier.clone();
        let before: Vec<quorumkey_ledger::KeyRecord> = {
            let snapshot = first.store().snapshot().unwrap();
            let view = LedgerView::new(first.ledger(), &snapshot);
            (0..view.total_keys().unwrap()).map(|index| view.key(index).unwrap().unwrap()).collect()
        };
        // The operators' refresh: the genesis nodes, with addresses.
        let nodes: Vec<quorumkey_ledger::EpochNode> = harness
            .network
            .ledger
            .genesis()
            .nodes
            .iter()
            .map(|node| quorumkey_ledger::EpochNode {
                consensus_key: node.consensus_key.clone(),
                secp256k1_key: node.secp256k1_key,
                p2p_address: format!("10.0.0.{}:7000", node.index),
                rpc_url: format!("http://10.0.0.{}:8000", node.index),
            })
            .collect();
        let quorum: Vec<u16> = (1..=(n - (n - 1) / 3)).collect();
        let proposal =
            harness.network.operators_tx(&quorum, quorumkey_ledger::TransactionBody::ProposeEpoch { epoch: 1, nodes });
        let submitter = harness.submitters.lock().unwrap()[&0].clone();
        submitter.submit(bytes::Bytes::from(proposal)).unwrap();
        // Crash a node once the handover reshares.
        loop {
            let snapshot = first.store().snapshot().unwrap();
            let handover = first.ledger().epoch_view(&snapshot).handover().unwrap();
            if handover.is_some_and(|h| matches!(h.stage, quorumkey_ledger::HandoverStage::Resharing { .. })) {
                break;
            }
            assert!(context.current() < deadline, "n={n} seed={seed}: the handover did not start");
            context.sleep(Duration::from_millis(50)).await;
        }
        let crashed = usize::from(crash) - 1;
        harness.crash(crashed).await;
        context.sleep(Duration::from_secs(6)).await;
        harness.start(crashed, Behaviour::Honest).await;
        // Every node in epoch 1, with its new shares.
        let deadline = context.current() + Duration::from_secs(300);
        loop {
            let done = all.iter().all(|node| {
                let applier = &harness.validators[node].applier;
                let snapshot = applier.store().snapshot().unwrap();
                let epoch = LedgerView::new(applier.ledger(), &snapshot).node_set().unwrap().epoch;
                epoch == 1 && applier.store().share_epoch().unwrap() == 1
            });
            if done {
                break;
            }
            assert!(context.current() < deadline, "n={n} seed={seed}: not every node reached epoch 1");
            context.sleep(Duration::from_millis(100)).await;
        }
        let target = all.iter().map(|node| harness.height(*node)).max().unwrap() + 2;
        while !all.iter().all(|node| harness.height(*node) >= target) {
            assert!(context.current() < deadline + Duration::from_secs(60), "nodes did not reach {target}");
            context.sleep(Duration::from_millis(100)).await;
        }
        let roots: Vec<_> = all
            .iter()
            .map(|node| harness.validators[node].applier.store().state_root(target).unwrap().unwrap())
            .collect();
        assert!(roots.windows(2).all(|w| w[0] == w[1]), "n={n} seed={seed}: roots differ at {target}");
        let snapshot = first.store().snapshot().unwrap();
        let view = LedgerView::new(first.ledger(), &snapshot);
        let t = first.ledger().genesis().threshold();
        let indexes: Vec<u16> = (1..=n).collect();
        for (index, old) in before.iter().enumerate() {
            let index = index as u64;
            let record = view.key(index).unwrap().unwrap();
            assert_eq!(record.public_key, old.public_key, "key {index}'s public key");
            let mut shares = BTreeMap::new();
            for j in &indexes {
                assert_ne!(
                    record.public_shares[usize::from(*j) - 1],
                    old.public_shares[usize::from(*j) - 1],
                    "key {index}: node {j}'s public share did not change"
                );
                let stored = harness.validators[&(usize::from(*j) - 1)].applier.store().key_share(index).unwrap();
                let share = scalar_from_bytes(stored.unwrap().as_ref()).unwrap();
                let recorded = point_from_bytes("share", &record.public_shares[usize::from(*j) - 1]).unwrap();
                assert_eq!(recorded, generator() * share, "key {index}: node {j}'s new public share");
                shares.insert(*j, share);
            }
            let public_key = point_from_bytes("pk", &record.public_key).unwrap();
            for subset in subsets(&indexes, t) {
                let chosen: Vec<Share> =
                    subset.iter().map(|j| Share { index: u32::from(*j), value: shares[j] }).collect();
                assert_eq!(
                    generator() * reconstruct_secret(&chosen).unwrap(),
                    public_key,
                    "key {index} from {subset:?}"
                );
            }
        }
    });
}

#[test]
fn four_nodes_refresh_every_share_with_a_crash_mid_handover() {
    refresh(4, 61, 4);
}

#[test]
fn five_nodes_refresh_every_share_with_a_crash_mid_handover() {
    refresh(5, 62, 2);
}

fn test_store_options() -> quorumkey_store::StoreOptions {
    quorumkey_store::StoreOptions::new(quorumkey_store::Kek::from_bytes(&[0x42; 32]))
}

/// The simulated network links every node from the start: nothing to
/// follow when the node sets change.
struct StaticPeers;

impl quorumkey_node::consensus::PeerSets for StaticPeers {
    fn follow(&mut self, _: &quorumkey_ledger::NodeSets) {}
}
