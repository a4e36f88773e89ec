//! Deterministic simulations of whole validators: the real consensus stack
//! (simplex, marshal, broadcast, backfill), the real ledger and the real
//! store (redb on tmpfs), on commonware's deterministic runtime and
//! simulated network. Every run is seeded and reproducible: rerun a failure
//! with the seed it prints.
//!
//! Each scenario deals a key pool, submits hundreds of `AssignKey`
//! transactions to random live nodes while a fault is active, resubmits
//! (as a client would) any pair that did not finalize, and then checks that
//! every honest node reaches the same state root at the same height, that
//! every pair is assigned exactly once, and that no key has two owners.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use commonware_consensus::Application;
use commonware_consensus::marshal::ancestry::Ancestry;
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_cryptography::{Digested, Digestible, Signer, ed25519};
use commonware_p2p::simulated::{self, Link, Oracle};
use commonware_p2p::{Recipients, Sender as _};
use commonware_runtime::{Clock, Handle, Runner as _, Spawner as _, Supervisor as _, deterministic};
use commonware_utils::{NZUsize, probability};
use quorumkey_ledger::testkit::{TEST_VERIFIER, TestNetwork, id, name};
use quorumkey_ledger::{Assignment, LedgerView};
use quorumkey_node::applier::BlockApplier;
use quorumkey_node::consensus::application::ConsensusContext;
use quorumkey_node::consensus::{
    Block, BlockLimits, Channels, ConsensusConfig, LedgerApplication, MempoolLimits, StateCheckpoint, Timing,
    TransactionSubmitter, channel, consensus_namespace, max_message_size, start_consensus,
};
use quorumkey_node::observability::HealthCell;
use rand_core::{Rng, SeedableRng};

type Context = deterministic::Context;
type Sim = Oracle<ed25519::PublicKey, Context>;

const USERS: usize = 240;

/// What goes wrong during a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The last node is down for the whole run.
    Crash,
    /// Node 1 is cut off from the rest for 15 s, then healed.
    Partition,
    /// Every link drops 10% of messages.
    Loss,
    /// Node 2 is killed mid-run and restarted from its storage 15 s later.
    Restart,
    /// The last node proposes blocks with forged transactions and a wrong
    /// state checkpoint; with n = 7 the node before it only sends garbage
    /// on every channel.
    Byzantine,
}

/// How a Byzantine proposer misbehaves, in turn.
#[derive(Clone)]
struct ForgingProposer {
    inner: LedgerApplication,
    forged: Bytes,
    proposals: Arc<std::sync::atomic::AtomicU64>,
}

impl Application<Context> for ForgingProposer {
    type SigningScheme = Scheme;
    type Context = ConsensusContext;
    type Block = Block;
    type Input = ();

    async fn propose(
        &mut self,
        context: (Context, ConsensusContext),
        ancestry: impl Ancestry<Block>,
        input: (),
    ) -> Option<Digested<Block>> {
        let honest = self.inner.propose(context, ancestry, input).await?;
        let block = honest.inner();
        let turn = self.proposals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut transactions = block.transactions.clone();
        let mut checkpoint = block.checkpoint;
        match turn % 3 {
            // A transaction whose node signature does not verify.
            0 => transactions.push(self.forged.clone()),
            // A state root no honest node has.
            1 => checkpoint = StateCheckpoint { height: checkpoint.height, state_root: [0xee; 32] },
            // A checkpoint from the future.
            _ => checkpoint = StateCheckpoint { height: block.height + 1_000_000, state_root: [0; 32] },
        }
        let forged = Block::new(block.parent, block.height, block.timestamp_ms, checkpoint, transactions);
        let digest = forged.digest();
        Some(Digested::precomputed(forged, digest))
    }

    async fn verify(&mut self, context: (Context, ConsensusContext), ancestry: impl Ancestry<Block>) -> bool {
        self.inner.verify(context, ancestry).await
    }
}

/// A running validator as the harness sees it.
struct Validator {
    submitter: TransactionSubmitter,
    applier: Arc<BlockApplier>,
    handle: Handle<()>,
}

struct Harness {
    context: Context,
    oracle: Sim,
    network: TestNetwork,
    keys: Vec<ed25519::PublicKey>,
    dir: PathBuf,
    validators: BTreeMap<usize, Validator>,
    link: Link,
    timing: Timing,
}

/// Heights per consensus epoch in these runs.
const EPOCH_BLOCKS: u64 = 8;

fn store_path(dir: &Path, node: usize) -> PathBuf {
    dir.join(format!("node-{node}.redb"))
}

impl Harness {
    fn config(&self, node: usize) -> ConsensusConfig {
        ConsensusConfig {
            namespace: consensus_namespace(self.network.ledger.network_id()),
            signer: self.network.node_keys[node].clone(),
            partition_prefix: format!("node-{node}"),
            timing: self.timing,
            block_limits: BlockLimits::default(),
            mempool_limits: MempoolLimits::default(),
            mailbox_size: NZUsize!(1024),
        }
    }

    async fn channels(
        &self,
        node: usize,
    ) -> Channels<simulated::Sender<ed25519::PublicKey, Context>, simulated::Receiver<ed25519::PublicKey>> {
        let control = self.oracle.control(self.keys[node].clone());
        let mut pairs = Vec::new();
        for ch in channel::ALL {
            pairs.push(control.register(ch, channel::quota(ch)).await.unwrap());
        }
        let mut pairs = pairs.into_iter();
        let mut next = || pairs.next().unwrap();
        Channels {
            votes: next(),
            certificates: next(),
            resolver: next(),
            blocks: next(),
            backfill: next(),
            transactions: next(),
        }
    }

    /// Starts (or restarts, on the same storage) node `node`.
    async fn start(&mut self, node: usize, byzantine: bool) {
        let channels = self.channels(node).await;
        let health = HealthCell::new(node as u16 + 1, *self.network.ledger.network_id());
        let applier = Arc::new(
            BlockApplier::open(
                self.network.ledger.clone(),
                &store_path(&self.dir, node),
                health,
                &test_store_options(),
            )
            .unwrap(),
        );
        let config = self.config(node);
        let blocker = self.oracle.control(self.keys[node].clone());
        let provider = self.oracle.manager();
        let forged = forged_transaction(&self.network);
        let (sender, receiver) = futures::channel::oneshot::channel();
        let task_applier = applier.clone();
        let handle = self.context.child("validator").with_attribute("node", node).spawn(move |context| async move {
            let running = if byzantine {
                start_consensus(
                    context.child("node"),
                    config,
                    channels,
                    blocker,
                    provider,
                    Box::new(StaticPeers),
                    task_applier,
                    |inner| ForgingProposer { inner, forged, proposals: Arc::default() },
                )
                .await
            } else {
                start_consensus(
                    context.child("node"),
                    config,
                    channels,
                    blocker,
                    provider,
                    Box::new(StaticPeers),
                    task_applier,
                    |a| a,
                )
                .await
            }
            .unwrap();
            let _ = sender.send(running.submitter);
            let _ = running.engine.await;
        });
        let submitter = receiver.await.unwrap();
        self.validators.insert(node, Validator { submitter, applier, handle });
    }

    /// Kills node `node` (its tasks and everything they hold).
    async fn crash(&mut self, node: usize) {
        let validator = self.validators.remove(&node).unwrap();
        validator.handle.abort();
        let _ = validator.handle.await;
        drop(validator.submitter);
        // Aborted descendants are dropped when the executor next visits them.
        self.context.sleep(Duration::from_millis(10)).await;
        // The aborted tasks dropped their references; this was the last.
        assert_eq!(Arc::strong_count(&validator.applier), 1, "the crashed node's store is still referenced");
    }

    async fn link_all(&self, link: &Link, nodes: &[usize]) {
        for &a in nodes {
            for &b in nodes {
                if a != b {
                    let _ = self.oracle.add_link(self.keys[a].clone(), self.keys[b].clone(), link.clone()).await;
                }
            }
        }
    }

    async fn cut(&self, group: &[usize], rest: &[usize]) {
        for &a in group {
            for &b in rest {
                let _ = self.oracle.remove_link(self.keys[a].clone(), self.keys[b].clone()).await;
                let _ = self.oracle.remove_link(self.keys[b].clone(), self.keys[a].clone()).await;
            }
        }
    }

    fn height(&self, node: usize) -> u64 {
        self.validators[&node]
            .applier
            .store()
            .snapshot()
            .ok()
            .and_then(|s| self.validators[&node].applier.ledger().height(&s).ok().flatten())
            .unwrap_or(0)
    }

    fn assignment(&self, node: usize, user: &str) -> Option<Assignment> {
        let applier = &self.validators[&node].applier;
        let snapshot = applier.store().snapshot().unwrap();
        LedgerView::new(applier.ledger(), &snapshot).assignment(&name(TEST_VERIFIER), &id(user)).unwrap()
    }

    fn submit(&self, node: usize, transaction: Vec<u8>) {
        // A full mempool or a halted node is the client's problem to retry.
        let _ = self.validators[&node].submitter.submit(Bytes::from(transaction));
    }

    /// Waits until every listed node has applied `height`.
    async fn wait_for_height(&self, nodes: &[usize], height: u64, limit: Duration) -> bool {
        let deadline = self.context.current() + limit;
        loop {
            if nodes.iter().all(|&node| self.height(node) >= height) {
                return true;
            }
            if self.context.current() > deadline {
                return false;
            }
            self.context.sleep(Duration::from_millis(100)).await;
        }
    }
}

fn forged_transaction(network: &TestNetwork) -> Bytes {
    // Node 1's transaction with a byte of the signature flipped.
    let mut transaction = network.assign(1, TEST_VERIFIER, "forged-user");
    let last = transaction.len() - 1;
    transaction[last] ^= 1;
    Bytes::from(transaction)
}

fn user(i: usize) -> String {
    format!("user-{i}@example.com")
}

/// Runs one scenario; panics (with the seed) if an invariant breaks.
fn run(n: usize, fault: Fault, seed: u64) {
    let dir = tempfile::Builder::new()
        .prefix("quorumkey-sim-")
        .tempdir_in(if Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "." })
        .unwrap();
    let runner = deterministic::Runner::new(
        deterministic::Config::new().with_seed(seed).with_timeout(Some(Duration::from_secs(900))),
    );
    let dir_path = dir.path().to_path_buf();
    runner.start(|context| async move {
        // Consensus epochs of 8 blocks: every run crosses many epoch
        // boundaries (a new engine each) under its fault.
        let network = TestNetwork::with_epochs(
            n as u16,
            seed,
            quorumkey_ledger::DkgSettings::default_for(n),
            quorumkey_ledger::testkit::unlimited_policy(),
            quorumkey_ledger::EpochSettings { boundary_blocks: EPOCH_BLOCKS as u32, refresh_blocks: 0 },
        );
        let keys: Vec<ed25519::PublicKey> = network.node_keys.iter().map(|key| key.public_key()).collect();
        let (sim, oracle) = simulated::Network::new_with_peers(
            context.child("network"),
            simulated::Config {
                max_size: max_message_size(&BlockLimits::default()),
                max_peers_per_set: NZUsize!(n),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            keys.clone(),
        )
        .await;
        sim.start();
        let success_rate = if fault == Fault::Loss { probability!(0.9) } else { probability!(1.0) };
        let link = Link { latency: Duration::from_millis(10), jitter: Duration::from_millis(3), success_rate };
        let mut harness = Harness {
            context: context.child("harness"),
            oracle,
            network,
            keys,
            dir: dir_path,
            validators: BTreeMap::new(),
            link: link.clone(),
            timing: Timing::default(),
        };
        let everyone: Vec<usize> = (0..n).collect();
        harness.link_all(&link, &everyone).await;

        // Who is faulty, and who must end up agreeing.
        let mut byzantine = Vec::new();
        let mut down = Vec::new();
        match fault {
            Fault::Crash => down.push(n - 1),
            Fault::Byzantine => byzantine.push(n - 1),
            _ => {}
        }
        let garbage = (fault == Fault::Byzantine && n >= 7).then_some(n - 2);
        let honest: Vec<usize> =
            everyone.iter().copied().filter(|i| !byzantine.contains(i) && !down.contains(i) && Some(*i) != garbage).collect();
        for &node in &everyone {
            if down.contains(&node) || Some(node) == garbage {
                continue;
            }
            harness.start(node, byzantine.contains(&node)).await;
        }
        if let Some(node) = garbage {
            spawn_garbage_sender(&harness, node).await;
        }
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);

        // A key pool for every user, dealt by node 1.
        let first = honest[0];
        harness.submit(first, harness.network.deal(first as u16 + 1, USERS + 16, seed));
        assert!(harness.wait_for_height(&honest, 1, Duration::from_secs(60)).await, "seed {seed}: no progress");

        // Submissions while the fault is active.
        let fault_at = 20usize;
        let heal_at = 60usize;
        for round in 0..120usize {
            if round == fault_at {
                match fault {
                    Fault::Partition => {
                        let rest: Vec<usize> = everyone.iter().copied().filter(|&i| i != 1).collect();
                        harness.cut(&[1], &rest).await;
                    }
                    Fault::Restart => harness.crash(2).await,
                    _ => {}
                }
            }
            if round == heal_at {
                match fault {
                    Fault::Partition => harness.link_all(&harness.link.clone(), &everyone).await,
                    Fault::Restart => harness.start(2, false).await,
                    _ => {}
                }
            }
            for k in 0..2 {
                let index = round * 2 + k;
                if index >= USERS {
                    break;
                }
                let live: Vec<usize> = harness.validators.keys().copied().collect();
                let node = live[rng.next_u32() as usize % live.len()];
                harness.submit(node, harness.network.assign(node as u16 + 1, TEST_VERIFIER, &user(index)));
            }
            context.sleep(Duration::from_millis(250)).await;
        }

        // A client retries what did not finalize (its node crashed, or was
        // cut off); assignments are idempotent, so retrying is always safe.
        for attempt in 0..20 {
            let missing: Vec<usize> =
                (0..USERS).filter(|&i| harness.assignment(honest[0], &user(i)).is_none()).collect();
            if missing.is_empty() {
                break;
            }
            assert!(attempt < 19, "seed {seed}: {} pairs never finalized", missing.len());
            for &i in &missing {
                let node = honest[i % honest.len()];
                harness.submit(node, harness.network.assign(node as u16 + 1, TEST_VERIFIER, &user(i)));
            }
            context.sleep(Duration::from_secs(5)).await;
        }

        // Every honest node reaches a common height with the same root.
        let target = honest.iter().map(|&node| harness.height(node)).max().unwrap() + 2;
        assert!(
            harness.wait_for_height(&honest, target, Duration::from_secs(120)).await,
            "seed {seed}: honest nodes did not all reach height {target}: {:?}",
            honest.iter().map(|&node| harness.height(node)).collect::<Vec<_>>()
        );
        let roots: HashSet<[u8; 32]> = honest
            .iter()
            .map(|&node| harness.validators[&node].applier.store().state_root(target).unwrap().unwrap())
            .collect();
        assert_eq!(roots.len(), 1, "seed {seed}: honest nodes disagree on the root at height {target}");

        // Every pair exactly once; no key twice.
        for &node in &honest {
            let mut keys_seen = HashSet::new();
            for i in 0..USERS {
                match harness.assignment(node, &user(i)) {
                    Some(Assignment::Assigned { key_index }) => {
                        assert!(keys_seen.insert(key_index), "seed {seed}: key {key_index} assigned twice");
                        let applier = &harness.validators[&node].applier;
                        let snapshot = applier.store().snapshot().unwrap();
                        let owner = LedgerView::new(applier.ledger(), &snapshot).key_owner(key_index).unwrap();
                        assert_eq!(owner, Some((name(TEST_VERIFIER), id(&user(i)))), "seed {seed}");
                    }
                    other => panic!("seed {seed}: node {node} has {other:?} for {}", user(i)),
                }
            }
            // The forged transaction never made it into the ledger.
            assert_eq!(harness.assignment(node, "forged-user"), None, "seed {seed}");
            assert!(harness.validators[&node].applier.halted().is_none(), "seed {seed}: honest node {node} halted");
        }
        assert!(target >= 4 * EPOCH_BLOCKS, "seed {seed}: the run crossed fewer than 4 consensus epochs");
        eprintln!(
            "n={n} {fault:?} seed={seed}: honest nodes agree at height {target} (consensus epoch {}, root {}), {USERS} pairs assigned once each, simulated {:?}",
            target / EPOCH_BLOCKS,
            hex::encode(roots.iter().next().unwrap()),
            context.current().duration_since(std::time::UNIX_EPOCH).unwrap()
        );
        context.stop(0, None).await.unwrap();
    });
}

/// A node that sends random bytes on every channel, to everyone.
async fn spawn_garbage_sender(harness: &Harness, node: usize) {
    let control = harness.oracle.control(harness.keys[node].clone());
    let mut senders = Vec::new();
    for ch in channel::ALL {
        let (sender, receiver) = control.register(ch, channel::quota(ch)).await.unwrap();
        drop(receiver);
        senders.push(sender);
    }
    harness.context.child("garbage").spawn(move |context| async move {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(node as u64);
        loop {
            for sender in &mut senders {
                let len = 1 + rng.next_u32() as usize % 512;
                let mut message = vec![0u8; len];
                rng.fill_bytes(&mut message);
                sender.send(Recipients::All, message, false);
            }
            context.sleep(Duration::from_millis(50)).await;
        }
    });
}

#[test]
fn four_nodes_one_crashed() {
    run(4, Fault::Crash, 1);
}

#[test]
fn four_nodes_partition_heals() {
    run(4, Fault::Partition, 2);
}

#[test]
fn four_nodes_lossy_links() {
    run(4, Fault::Loss, 3);
}

#[test]
fn four_nodes_restart() {
    run(4, Fault::Restart, 4);
}

#[test]
fn four_nodes_byzantine_proposer() {
    run(4, Fault::Byzantine, 5);
}

#[test]
fn seven_nodes_one_crashed() {
    run(7, Fault::Crash, 11);
}

#[test]
fn seven_nodes_partition_heals() {
    run(7, Fault::Partition, 12);
}

#[test]
fn seven_nodes_lossy_links() {
    run(7, Fault::Loss, 13);
}

#[test]
fn seven_nodes_restart() {
    run(7, Fault::Restart, 14);
}

#[test]
fn seven_nodes_byzantine_proposer_and_garbage() {
    run(7, Fault::Byzantine, 15);
}

/// The store options of a test node (a fixed key-encryption key).
fn test_store_options() -> quorumkey_store::StoreOptions {
    quorumkey_store::StoreOptions::new(quorumkey_store::Kek::from_bytes(&[0x42; 32]))
}

/// The simulated network links every node from the start: nothing to
/// follow when the node sets change.
struct StaticPeers;

impl quorumkey_node::consensus::PeerSets for StaticPeers {
    fn follow(&mut self, _: &quorumkey_ledger::NodeSets) {}
}
