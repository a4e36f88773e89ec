//! Wiring of the commonware stack: simplex agrees on block digests, marshal
//! turns finalizations into a gap-free stream of finalized blocks (persisted,
//! and backfilled from peers when missing), the buffered broadcast engine
//! spreads full blocks, and [`marshal::standard::Inline`] wraps our
//! [`LedgerApplication`]. Everything is generic over the runtime and the
//! network, so the same code runs on tokio with TCP and on the deterministic
//! runtime with the simulated network.

use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use commonware_broadcast::buffered;
use commonware_consensus::Application;
use commonware_consensus::marshal::core::Actor as MarshalActor;
use commonware_consensus::marshal::resolver::p2p as marshal_resolver;
use commonware_consensus::marshal::standard::{Inline, Standard};
use commonware_consensus::marshal::{self, Start};
use commonware_consensus::simplex::elector::RoundRobin;
use commonware_consensus::simplex::scheme::ed25519::Scheme;
use commonware_consensus::simplex::{self, Floor, ForwardPolicy, SkipBudget, SkipPolicy};
use commonware_consensus::types::{Epocher as _, FixedEpocher, ViewDelta};
use commonware_cryptography::certificate::Verifier as _;
use commonware_cryptography::sha256::{Digest, Sha256};
use commonware_cryptography::{Digested, Digestible, Signer, ed25519};
use commonware_p2p::{Blocker, Provider, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::buffer::paged::CacheRef;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage, Supervisor};
use commonware_storage::archive::immutable;
use commonware_utils::NonZeroDuration;
use rand_core::CryptoRng;
use thiserror::Error;

use super::application::{ConsensusContext, LedgerApplication};
use super::block::{Block, BlockLimits, StateCheckpoint};
use super::block_feed::{EpochBoundaries, PeerSets, apply_finalized_blocks, finalized_channel};
use super::epochs::{EngineStarter, EpochEngines, epoch_partition, starting_epoch};
use super::finality_waiters::FinalityWaiters;
use super::gossip::{TransactionSubmitter, run_gossip, submitter};
use super::mempool::{Mempool, MempoolLimits};
use super::peers::{ObservedReceiver, PeerActivity};
use super::tip::AppliedTip;
use super::validators::ValidatorSchemes;
use crate::applier::BlockApplier;

/// The p2p channels, in the order they are registered.
pub mod channel {
    /// Simplex votes.
    pub(crate) const VOTES: u64 = 0;
    /// Simplex certificates.
    pub(crate) const CERTIFICATES: u64 = 1;
    /// Simplex's certificate resolver.
    pub(crate) const RESOLVER: u64 = 2;
    /// Full blocks (marshal's buffered broadcast).
    pub(crate) const BLOCKS: u64 = 3;
    /// Finalized block backfill (marshal's resolver).
    pub(crate) const BACKFILL: u64 = 4;
    /// Transaction gossip.
    pub(crate) const TRANSACTIONS: u64 = 5;
    /// All of them.
    pub const ALL: [u64; 6] = [VOTES, CERTIFICATES, RESOLVER, BLOCKS, BACKFILL, TRANSACTIONS];

    /// Messages per second each peer may send on `channel`. The network
    /// sizes each channel's inbound mailbox for one burst from every peer,
    /// so a quota costs memory up front: consensus sends a few messages per
    /// view and peer, far below these; gossip carries one message per
    /// submitted transaction.
    pub fn quota(channel: u64) -> commonware_runtime::Quota {
        if channel == TRANSACTIONS {
            commonware_runtime::Quota::per_second(commonware_utils::NZU32!(4096))
        } else {
            commonware_runtime::Quota::per_second(commonware_utils::NZU32!(1024))
        }
    }
}

/// A runtime the consensus stack can run on.
pub trait ConsensusRuntime: Clock + CryptoRng + Spawner + Storage + Metrics + Supervisor {}
impl<E: Clock + CryptoRng + Spawner + Storage + Metrics + Supervisor> ConsensusRuntime for E {}

/// Timeouts and pacing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long to wait for a leader's proposal before voting to skip it.
    pub leader_timeout: Duration,
    /// How long to wait for a notarized proposal to be certified.
    pub certification_timeout: Duration,
    /// How often to rebroadcast a vote to skip a view that is stuck.
    pub timeout_retry: Duration,
    /// How long before a leader that keeps failing is skipped outright.
    pub skip_timeout: Duration,
    /// How long to wait for a peer to answer a fetch.
    pub fetch_timeout: Duration,
    /// An idle leader proposes an empty block after this long; below
    /// `leader_timeout`.
    pub heartbeat: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            leader_timeout: Duration::from_secs(2),
            certification_timeout: Duration::from_secs(3),
            timeout_retry: Duration::from_secs(4),
            skip_timeout: Duration::from_secs(8),
            fetch_timeout: Duration::from_secs(2),
            heartbeat: Duration::from_secs(1),
        }
    }
}

/// What a node needs to join consensus.
#[derive(Clone, Debug)]
pub struct ConsensusConfig {
    /// Separates this network's signatures from any other's.
    pub namespace: Vec<u8>,
    /// This node's consensus key (the validators of each epoch are the
    /// ledger's node set in force; a node outside it follows as an observer).
    pub signer: ed25519::PrivateKey,
    /// Prefix of every storage partition (unique per validator when
    /// validators share storage).
    pub partition_prefix: String,
    /// Timeouts and pacing.
    pub timing: Timing,
    /// Block bounds.
    pub block_limits: BlockLimits,
    /// Mempool bounds.
    pub mempool_limits: MempoolLimits,
    /// Capacity of each actor's mailbox.
    pub mailbox_size: NonZeroUsize,
}

/// Why consensus could not start.
#[derive(Debug, Error)]
pub enum ConsensusError {
    /// The block a restarted epoch builds on is missing from storage.
    #[error(
        "consensus storage lacks block {height}, the last of the epoch before the one to resume; \
         the consensus and ledger stores must be restored together"
    )]
    MissingBoundary {
        /// The block's height.
        height: u64,
    },
    /// The node sets cannot be read from the ledger store.
    #[error("cannot read the node sets from the ledger store: {0}")]
    NodeSets(String),
    /// A storage archive could not be opened.
    #[error("cannot open consensus storage `{partition}`: {reason}")]
    Storage {
        /// The archive.
        partition: String,
        /// Why.
        reason: String,
    },
    /// Consensus storage is ahead of the ledger store.
    #[error(
        "consensus storage has processed height {processed} but the ledger store only height {applied}; \
         the two must live in the same data directory and be restored together"
    )]
    StoresDisagree {
        /// Marshal's processed height.
        processed: u64,
        /// The ledger's applied height.
        applied: u64,
    },
}

/// The six channels: `(sender, receiver)` pairs in [`channel`] order.
#[derive(Debug)]
pub struct Channels<S, R> {
    /// Simplex votes.
    pub votes: (S, R),
    /// Simplex certificates.
    pub certificates: (S, R),
    /// Simplex's resolver.
    pub resolver: (S, R),
    /// Block broadcast.
    pub blocks: (S, R),
    /// Backfill.
    pub backfill: (S, R),
    /// Transaction gossip.
    pub transactions: (S, R),
}

/// The largest message any channel carries: for the largest node set a
/// ledger allows (sets change with epochs, and the limit must never shrink
/// while blocks that were within it are stored).
pub fn max_message_size(limits: &BlockLimits) -> u32 {
    let participants = u32::try_from(quorumkey_ledger::genesis::MAX_NODES).unwrap_or(u32::MAX);
    // Votes, certificates and the resolver carry an epoch prefix.
    let consensus = commonware_p2p::utils::mux::prefixed(simplex::max_payload_size::<Scheme, Digest>(participants));
    let blocks = marshal::max_payload_size::<Standard<Block>, Scheme>(participants, limits);
    let transactions = quorumkey_ledger::MAX_TRANSACTION_LEN;
    // Headroom for framing added by wrappers.
    let largest = consensus.max(blocks).max(transactions) + 1024;
    u32::try_from(largest).unwrap_or(u32::MAX)
}

/// The namespace of a network's consensus signatures.
pub fn consensus_namespace(network_id: &[u8; 32]) -> Vec<u8> {
    let mut namespace = b"quorumkey/consensus/v1/".to_vec();
    namespace.extend_from_slice(network_id);
    namespace
}

/// A running validator.
pub struct RunningConsensus {
    /// Submits transactions.
    pub submitter: TransactionSubmitter,
    /// The applied tip.
    pub tip: AppliedTip,
    /// Which peers this node hears from.
    pub peers: PeerActivity,
    /// Clients waiting for their transactions.
    pub waiters: FinalityWaiters,
    /// The consensus engine; it runs until aborted or the runtime stops.
    pub engine: Handle<()>,
}

impl std::fmt::Debug for RunningConsensus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningConsensus").field("tip", &self.tip.get()).finish_non_exhaustive()
    }
}

/// The most clients waiting for finality at once.
pub(crate) const MAX_FINALITY_WAITERS: usize = 16_384;

const PAGE_SIZE: std::num::NonZeroU16 = commonware_utils::NZU16!(4096);
const PAGE_CACHE_PAGES: NonZeroUsize = commonware_utils::NZUsize!(1024);
const ITEMS_PER_SECTION: NonZeroU64 = commonware_utils::NZU64!(4096);
const WRITE_BUFFER: NonZeroUsize = commonware_utils::NZUsize!(64 * 1024);
const REPLAY_BUFFER: NonZeroUsize = commonware_utils::NZUsize!(1024 * 1024);

fn archive_config<C>(prefix: &str, name: &str, page_cache: &CacheRef, codec_config: C) -> immutable::Config<C> {
    immutable::Config {
        metadata_partition: format!("{prefix}-{name}-metadata"),
        freezer_table_partition: format!("{prefix}-{name}-freezer-table"),
        freezer_table_initial_size: 1024,
        freezer_table_resize_frequency: 4,
        freezer_table_resize_chunk_size: 1024,
        freezer_key_partition: format!("{prefix}-{name}-freezer-key"),
        freezer_key_page_cache: page_cache.clone(),
        freezer_value_partition: format!("{prefix}-{name}-freezer-value"),
        freezer_value_target_size: 64 * 1024 * 1024,
        freezer_value_compression: None,
        ordinal_partition: format!("{prefix}-{name}-ordinal"),
        items_per_section: ITEMS_PER_SECTION,
        codec_config,
        replay_buffer: REPLAY_BUFFER,
        freezer_key_write_buffer: WRITE_BUFFER,
        freezer_value_write_buffer: WRITE_BUFFER,
        ordinal_write_buffer: WRITE_BUFFER,
    }
}

/// Starts a validator on `context`: consensus (one simplex engine per
/// epoch, see [`super::epochs`]), marshal, block broadcast and backfill,
/// the finalized-block applier and transaction gossip. `peers` is told the
/// node sets now and whenever they change. `wrap` receives the ledger
/// application and returns the one consensus uses (the node passes it
/// through; tests wrap it to misbehave).
#[allow(clippy::too_many_arguments)]
pub async fn start_consensus<E, S, R, B, P, A>(
    context: E,
    config: ConsensusConfig,
    channels: Channels<S, R>,
    blocker: B,
    peer_provider: P,
    mut peers_to_follow: Box<dyn PeerSets>,
    applier: Arc<BlockApplier>,
    wrap: impl FnOnce(LedgerApplication) -> A,
) -> Result<RunningConsensus, ConsensusError>
where
    E: ConsensusRuntime,
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
    B: Blocker<PublicKey = ed25519::PublicKey>,
    P: Provider<PublicKey = ed25519::PublicKey>,
    A: Application<E, Block = Block, SigningScheme = Scheme, Context = ConsensusContext, Input = ()>,
{
    let public_key = config.signer.public_key();
    let prefix = config.partition_prefix.clone();
    let fetch_timeout = NonZeroDuration::new(config.timing.fetch_timeout)
        .unwrap_or(commonware_utils::NZDuration!(Duration::from_secs(2)));
    let peers = PeerActivity::default();
    let clock = Arc::new(context.child("peers"));
    let observe = |(sender, receiver): (S, R)| (sender, ObservedReceiver::new(receiver, peers.clone(), clock.clone()));
    let channels = Channels {
        votes: observe(channels.votes),
        certificates: observe(channels.certificates),
        resolver: observe(channels.resolver),
        blocks: observe(channels.blocks),
        backfill: observe(channels.backfill),
        transactions: observe(channels.transactions),
    };
    let page_cache = CacheRef::new(PAGE_SIZE, PAGE_CACHE_PAGES);

    // The ledger side: applied tip, mempool, submissions.
    let (applied_height, applied_root) = applier.applied();
    let tip = AppliedTip::new(StateCheckpoint { height: applied_height, state_root: applied_root });
    let mempool = Mempool::new(config.mempool_limits);
    let state = applier.committed_state();
    let (submitter, outbound) = submitter(state.clone(), mempool.clone());

    // The epoch to resume and its validators: the ledger's node set in
    // force after its applied height. Peers first, so that the nodes of a
    // set being handed over to are connected too.
    let epoch_length = NonZeroU64::new(u64::from(applier.ledger().genesis().epochs.boundary_blocks).max(2))
        .unwrap_or(commonware_utils::NZU64!(64));
    let epocher = FixedEpocher::new(epoch_length);
    let sets = state.node_sets().map_err(|error| ConsensusError::NodeSets(error.to_string()))?;
    peers_to_follow.follow(&sets);
    let schemes = ValidatorSchemes::new(&config.namespace, config.signer.clone());
    let first_epoch = starting_epoch(&epocher, applied_height);
    let first_scheme =
        schemes.install(first_epoch, sets.current.nodes.iter().map(|node| node.consensus_key.clone()).collect());

    // Block broadcast and backfill.
    let (blocks_engine, buffer) = buffered::Engine::new(
        context.child("blocks"),
        buffered::Config {
            public_key: public_key.clone(),
            mailbox_size: config.mailbox_size,
            deque_size: 64,
            priority: false,
            codec_config: config.block_limits,
            peer_provider: peer_provider.clone(),
            strategy: Sequential,
        },
    );
    blocks_engine.start(channels.blocks);
    let backfill = marshal_resolver::init(
        context.child("backfill"),
        marshal_resolver::Config {
            public_key: public_key.clone(),
            peer_provider: peer_provider.clone(),
            blocker: blocker.clone(),
            mailbox_size: config.mailbox_size,
            fetch_timeout,
            fetch_retry_delay: Duration::from_millis(100),
            priority_requests: false,
            priority_responses: false,
        },
        channels.backfill,
    );

    // Marshal and its archives.
    let finalizations = immutable::Archive::init(
        context.child("finalizations"),
        archive_config(&prefix, "finalizations", &page_cache, Scheme::certificate_codec_config_unbounded()),
    )
    .await
    .map_err(|e| ConsensusError::Storage { partition: format!("{prefix}-finalizations"), reason: e.to_string() })?;
    let finalized_blocks = immutable::Archive::init(
        context.child("finalized_blocks"),
        archive_config(&prefix, "blocks", &page_cache, config.block_limits),
    )
    .await
    .map_err(|e| ConsensusError::Storage { partition: format!("{prefix}-blocks"), reason: e.to_string() })?;
    let genesis = Block::genesis(&config.namespace, applier.genesis_root());
    let genesis_digest = genesis.digest();
    let (marshal_actor, marshal_mailbox, floor) = MarshalActor::init(
        context.child("marshal"),
        finalizations,
        finalized_blocks,
        marshal::Config {
            provider: schemes.clone(),
            epocher: epocher.clone(),
            start: Start::Genesis(Digested::precomputed(genesis, genesis_digest)),
            partition_prefix: format!("{prefix}-marshal"),
            mailbox_size: config.mailbox_size,
            view_retention: ViewDelta::new(64),
            prunable_items_per_section: ITEMS_PER_SECTION,
            page_cache: page_cache.clone(),
            replay_buffer: REPLAY_BUFFER,
            key_write_buffer: WRITE_BUFFER,
            value_write_buffer: WRITE_BUFFER,
            block_codec_config: config.block_limits,
            max_repair: commonware_utils::NZUsize!(16),
            max_pending_acks: commonware_utils::NZUsize!(8),
            strategy: Sequential,
        },
    )
    .await;
    if let Some(processed) = floor.processed() {
        let processed = processed.height().get();
        if processed > applied_height {
            return Err(ConsensusError::StoresDisagree { processed, applied: applied_height });
        }
    }
    let (reporter, finalized) = finalized_channel();
    marshal_actor.start(reporter, buffer, backfill);

    // The block the resumed epoch builds on: the last of the epoch before.
    let first_floor = match first_epoch.previous().and_then(|previous| epocher.last(previous)) {
        None => genesis_digest,
        Some(height) => match marshal_mailbox.get_block(height).await {
            Some(block) => block.digest(),
            None => return Err(ConsensusError::MissingBoundary { height: height.get() }),
        },
    };

    // Consensus: one engine per epoch, all feeding the same marshal.
    let application = wrap(LedgerApplication::new(
        state.clone(),
        mempool.clone(),
        tip.clone(),
        config.block_limits,
        config.timing.heartbeat,
    ));
    let inline = Inline::new(context.child("inline"), application, marshal_mailbox.clone(), epocher.clone());
    let timing = config.timing;
    let mailbox_size = config.mailbox_size;
    let engine_context = context.child("simplex");
    let engine_prefix = prefix.clone();
    let engine_blocker = blocker.clone();
    let start_engine: EngineStarter<S> = Box::new(move |epoch, floor, scheme, (votes, certificates, resolver)| {
        let engine = simplex::Engine::new(
            engine_context.child("engine").with_attribute("epoch", epoch),
            simplex::Config {
                scheme: scheme.as_ref().clone(),
                elector: RoundRobin::<Sha256>::default(),
                blocker: engine_blocker.clone(),
                automaton: inline.clone(),
                relay: inline.clone(),
                reporter: inline.clone(),
                strategy: Sequential,
                partition: epoch_partition(&engine_prefix, epoch),
                mailbox_size,
                epoch,
                floor: Floor::Genesis(floor),
                replay_buffer: REPLAY_BUFFER,
                write_buffer: WRITE_BUFFER,
                page_cache: page_cache.clone(),
                leader_timeout: timing.leader_timeout,
                certification_timeout: timing.certification_timeout,
                timeout_retry: timing.timeout_retry,
                view_retention: ViewDelta::new(64),
                skip: SkipPolicy::Enabled { timeout: timing.skip_timeout, budget: SkipBudget::Participants },
                fetch_timeout,
                fetch_retry_delay: Duration::from_millis(100),
                forward: ForwardPolicy::Disabled,
                track_historical_votes: false,
            },
        );
        engine.start(votes, certificates, resolver)
    });
    let engines = EpochEngines::new(context.child("consensus"), epocher.clone(), marshal_mailbox, prefix, start_engine);
    let (engine, switch) = engines.start(
        channels.votes,
        channels.certificates,
        channels.resolver,
        (first_epoch, first_floor, first_scheme),
    );

    // The ledger's tasks.
    let waiters = FinalityWaiters::new(MAX_FINALITY_WAITERS);
    let boundaries = EpochBoundaries { epocher, schemes, switch, peers: peers_to_follow, followed: sets };
    let (apply_applier, apply_mempool, apply_tip, apply_waiters) =
        (applier.clone(), mempool.clone(), tip.clone(), waiters.clone());
    context.child("applier").spawn(move |context| {
        apply_finalized_blocks(context, finalized, apply_applier, apply_mempool, apply_tip, apply_waiters, boundaries)
    });
    let (gossip_sender, gossip_receiver) = channels.transactions;
    let (gossip_state, gossip_mempool, gossip_blocker) = (state, mempool, blocker);
    context.child("gossip").spawn(move |_| {
        run_gossip(gossip_sender, gossip_receiver, gossip_blocker, outbound, gossip_state, gossip_mempool)
    });
    Ok(RunningConsensus { submitter, tip, peers, waiters, engine })
}
