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
//! public shares matching the stored shares. Handovers run on the same
//! stack with a node crashed in the middle of each: a refresh (the same
//! set) for n = 4 and 5, a node joining (4 → 5) and a node leaving
//! (5 → 4). Every key keeps its public key, the new shares match the new
//! public shares and rebuild every key, a removed node holds nothing, and
//! consensus then runs on the new validators (epochs of 16 blocks).
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
use quorumkey_crypto::k256::elliptic_curve::Generate as _;
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
use quorumkey_node::participant_driver::{
    DkgRole, ParticipantHandles, ParticipantIdentity, role_in_force, run_participant,
};
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
    /// Every node's consensus and secp256k1 keys: the genesis nodes', then
    /// those of nodes that join later.
    node_keys: Vec<ed25519::PrivateKey>,
    secp256k1: Vec<NonZeroScalar>,
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
        let ledger = self.network.ledger.clone();
        let health = HealthCell::new(node as u16 + 1, *ledger.network_id());
        let path = self.dir.join(format!("node-{node}.redb"));
        let applier = Arc::new(BlockApplier::open(ledger.clone(), &path, health, &test_store_options()).unwrap());
        let config = ConsensusConfig {
            namespace: consensus_namespace(ledger.network_id()),
            signer: self.node_keys[node].clone(),
            partition_prefix: format!("node-{node}"),
            timing: Timing::default(),
            block_limits: BlockLimits::default(),
            mempool_limits: MempoolLimits::default(),
            mailbox_size: NZUsize!(1024),
        };
        let secret = self.secp256k1[node];
        // Where the node stands in the set in force (a restart after an
        // epoch change, a node joining or one removed).
        let (index, role) =
            role_in_force(&applier.committed_state(), &self.node_keys[node].public_key(), secret).unwrap();
        let role: Box<dyn DkgRole> = match (behaviour, index) {
            (Behaviour::Honest, _) | (_, None) => role,
            (behaviour, Some(index)) => {
                Box::new(Misbehaving { inner: DkgParticipant::new(&ledger, index, secret).unwrap(), behaviour, secret })
            }
        };
        let identity = ParticipantIdentity { index, node_key: self.node_keys[node].clone(), secp256k1: secret };
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
        Self::with_joiners(context, network, n, 0, seed, dir).await
    }

    /// As [`Harness::new`], with `joiners` more nodes (not in the genesis)
    /// on the network, not started.
    async fn with_joiners(
        context: &Context,
        network: TestNetwork,
        n: u16,
        joiners: u16,
        seed: u64,
        dir: PathBuf,
    ) -> Self {
        let mut node_keys = network.node_keys.clone();
        let mut secp256k1: Vec<NonZeroScalar> =
            network.secp256k1_keys.iter().map(|key| *key.as_nonzero_scalar()).collect();
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x6a6f696e);
        for joiner in 0..u64::from(joiners) {
            node_keys.push(ed25519::PrivateKey::from_seed(seed.wrapping_mul(1000) + 500 + joiner));
            secp256k1.push(*quorumkey_crypto::k256::ecdsa::SigningKey::generate_from_rng(&mut rng).as_nonzero_scalar());
        }
        let n = n + joiners;
        let keys_ed: Vec<ed25519::PublicKey> = node_keys.iter().map(|key| key.public_key()).collect();
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
            node_keys,
            secp256k1,
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
/// Makes keys with the DKG on the `n` genesis validators, then hands every
/// key over to the node set `next` (harness positions: `0..n` are the
/// genesis nodes, `n..` nodes that join), proposed by the operators and
/// submitted to node 1, with node `crash` (a position) killed once the
/// handover is resharing and restarted 6 s later. Then:
///
/// - every node of the next set reaches epoch 1 with its new shares, and
///   every running node agrees on the state root;
/// - every public key is what it was, every new public share matches the
///   share its node stores (and differs from the old one where a node kept
///   its index), and every key rebuilds from every t-subset of the new set;
/// - a node removed holds no share;
/// - consensus runs on the new validators: with every node outside the
///   next set stopped and f genesis nodes of it crashed, blocks still
///   finalize, which needs the joined nodes' votes, and when nodes left,
///   could not happen with the old set.
fn handover(n: u16, joiners: u16, next: &[usize], seed: u64, crash: usize) {
    let dir = tempfile::Builder::new()
        .prefix("quorumkey-handover-sim-")
        .tempdir_in(if Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "." })
        .unwrap();
    let dir_path = dir.path().to_path_buf();
    let next = next.to_vec();
    let runner = deterministic::Runner::new(
        deterministic::Config::new().with_seed(seed).with_timeout(Some(Duration::from_secs(900))),
    );
    runner.start(|context| async move {
        let epochs = quorumkey_ledger::EpochSettings { boundary_blocks: 16, refresh_blocks: 0 };
        let network =
            TestNetwork::with_epochs(n, seed, small_dkg(n, 16), quorumkey_ledger::testkit::unlimited_policy(), epochs);
        let mut harness = Harness::with_joiners(&context, network, n, joiners, seed, dir_path).await;
        let everyone: Vec<usize> = (0..usize::from(n + joiners)).collect();
        let genesis: Vec<usize> = (0..usize::from(n)).collect();
        for &node in &genesis {
            harness.start(node, Behaviour::Honest).await;
        }
        let deadline = context.current() + Duration::from_secs(300);
        while !genesis.iter().all(|node| harness.finished_keys(*node) >= 32) {
            assert!(context.current() < deadline, "n={n} seed={seed}: no 32 keys");
            context.sleep(Duration::from_millis(250)).await;
        }
        // Let a few consensus epochs go by before anyone joins.
        while joiners > 0 && harness.height(0) < 3 * 16 + 2 {
            assert!(context.current() < deadline, "n={n} seed={seed}: no 3 epochs");
            context.sleep(Duration::from_millis(250)).await;
        }
        let first = harness.validators[&0].applier.clone();
        let before: Vec<quorumkey_ledger::KeyRecord> = {
            let snapshot = first.store().snapshot().unwrap();
            let view = LedgerView::new(first.ledger(), &snapshot);
            (0..view.total_keys().unwrap()).map(|index| view.key(index).unwrap().unwrap()).collect()
        };
        // The operators' proposal: the next set, with addresses.
        let nodes: Vec<quorumkey_ledger::EpochNode> = next
            .iter()
            .map(|&node| quorumkey_ledger::EpochNode {
                consensus_key: harness.node_keys[node].public_key(),
                secp256k1_key: quorumkey_crypto::group::point_to_bytes(&(generator() * *harness.secp256k1[node])),
                p2p_address: format!("10.0.0.{}:7000", node + 1),
                rpc_url: format!("http://10.0.0.{}:8000", node + 1),
            })
            .collect();
        let quorum: Vec<u16> = (1..=(n - (n - 1) / 3)).collect();
        let proposal =
            harness.network.operators_tx(&quorum, quorumkey_ledger::TransactionBody::ProposeEpoch { epoch: 1, nodes });
        let submitter = harness.submitters.lock().unwrap()[&0].clone();
        submitter.submit(bytes::Bytes::from(proposal)).unwrap();
        // The joining nodes start now, with empty stores: each replays the
        // ledger from the genesis, epoch by epoch (several have gone by),
        // checking each epoch's blocks with the validators its own state
        // names.
        let height_at_join = harness.height(0);
        for node in everyone.iter().filter(|node| !genesis.contains(node)) {
            harness.start(*node, Behaviour::Honest).await;
        }
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
        harness.crash(crash).await;
        context.sleep(Duration::from_secs(6)).await;
        harness.start(crash, Behaviour::Honest).await;
        // Every node of the next set in epoch 1, with its new shares.
        let deadline = context.current() + Duration::from_secs(300);
        loop {
            let done = next.iter().all(|node| {
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
        let target = everyone.iter().map(|node| harness.height(*node)).max().unwrap() + 2;
        while !everyone.iter().all(|node| harness.height(*node) >= target) {
            assert!(context.current() < deadline + Duration::from_secs(60), "nodes did not reach {target}");
            context.sleep(Duration::from_millis(100)).await;
        }
        let roots: Vec<_> = everyone
            .iter()
            .map(|node| harness.validators[node].applier.store().state_root(target).unwrap().unwrap())
            .collect();
        assert!(roots.windows(2).all(|w| w[0] == w[1]), "n={n} seed={seed}: roots differ at {target}");
        let snapshot = first.store().snapshot().unwrap();
        let view = LedgerView::new(first.ledger(), &snapshot);
        let t = next.len() / 2 + 1;
        let indexes: Vec<u16> = (1..=next.len() as u16).collect();
        for (index, old) in before.iter().enumerate() {
            let index = index as u64;
            let record = view.key(index).unwrap().unwrap();
            assert_eq!(record.public_key, old.public_key, "key {index}'s public key");
            assert_eq!(record.public_shares.len(), next.len(), "key {index}: one public share per node of the set");
            let mut shares = BTreeMap::new();
            for j in &indexes {
                let node = next[usize::from(*j) - 1];
                if node == usize::from(*j) - 1 && node < old.public_shares.len() {
                    assert_ne!(
                        record.public_shares[usize::from(*j) - 1],
                        old.public_shares[usize::from(*j) - 1],
                        "key {index}: node {j}'s public share did not change"
                    );
                }
                let stored = harness.validators[&node].applier.store().key_share(index).unwrap();
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
        let removed: Vec<usize> = everyone.iter().copied().filter(|node| !next.contains(node)).collect();
        for node in &removed {
            let store = harness.validators[node].applier.store();
            assert_eq!(store.key_share_count().unwrap(), 0, "removed node {} still holds shares", node + 1);
        }
        // Consensus on the new validators: stop every removed node and f
        // genesis nodes of the next set. What is left is a quorum of the
        // new set only if the nodes that joined sign; when nodes left, what
        // is left is short of the old set's quorum.
        for node in &removed {
            harness.crash(*node).await;
        }
        let f = (next.len() - 1) / 3;
        drop(first);
        for node in next.iter().rev().filter(|node| genesis.contains(node)).take(f).copied().collect::<Vec<_>>() {
            harness.crash(node).await;
        }
        let left: Vec<usize> = next.iter().copied().filter(|node| harness.validators.contains_key(node)).collect();
        if !removed.is_empty() {
            let old_quorum = usize::from(n) - (usize::from(n) - 1) / 3;
            let old_signers = left.iter().filter(|node| genesis.contains(node)).count();
            assert!(old_signers < old_quorum, "the test must leave the old set short of its quorum");
        }
        let from = left.iter().map(|node| harness.height(*node)).max().unwrap();
        let goal = from + 20;
        let deadline = context.current() + Duration::from_secs(120);
        while !left.iter().all(|node| harness.height(*node) >= goal) {
            assert!(
                context.current() < deadline,
                "n={n} seed={seed}: the new validators {left:?} did not finalize 20 more blocks from {from}"
            );
            context.sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "n={n} -> {} seed={seed}: {} keys handed over; joiners started at height {height_at_join}; the new validators {left:?} finalized up to {goal}",
            next.len(),
            before.len()
        );
    });
}

/// A refresh: the same nodes, every share new.
#[test]
fn four_nodes_refresh_every_share_with_a_crash_mid_handover() {
    handover(4, 0, &[0, 1, 2, 3], 61, 3);
}

#[test]
fn five_nodes_refresh_every_share_with_a_crash_mid_handover() {
    handover(5, 0, &[0, 1, 2, 3, 4], 62, 1);
}

/// 4 → 5: node 5 starts once the change is proposed, replays the ledger
/// from the genesis across several epochs, joins (crashed mid-handover),
/// then signs blocks.
#[test]
fn four_nodes_grow_to_five_with_the_joining_node_crashed_mid_handover() {
    handover(4, 1, &[0, 1, 2, 3, 4], 63, 4);
}

/// 5 → 4: node 5 leaves, node 2 is crashed mid-handover.
#[test]
fn five_nodes_shrink_to_four_with_a_current_node_crashed_mid_handover() {
    handover(5, 0, &[0, 1, 2, 3], 64, 1);
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
