//! Running one node as a process: configuration and keys from disk, the
//! ledger store and consensus storage under the data directory, consensus
//! over authenticated TCP connections to the other nodes, and the HTTP API.
//!
//! The data directory is private: created 0700, refused if group or
//! others may use it, and everything the process creates is 0600 or 0700
//! (umask 077). The shares in the store are encrypted with the node's
//! key-encryption key (`crate::kek`), loaded before the store is opened;
//! the store refuses another KEK.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use commonware_cryptography::{ChaCha20Poly1305, Signer, ed25519};
use commonware_p2p::authenticated::lookup;
use commonware_p2p::{Address, AddressableManager};
use commonware_runtime::Spawner as _;
use commonware_runtime::{Runner as _, Supervisor as _, tokio as cw_tokio};
use commonware_stream::cups::{self, Cups};
use commonware_stream::sake::{self, Sake};
use commonware_utils::NZUsize;
use commonware_utils::ordered::Map;
use quorumkey_ledger::{GenesisError, Ledger, LedgerError};
use quorumkey_participant::DkgParticipant;
use quorumkey_store::{NodeStore, StoreError, StoreOptions};
use thiserror::Error;

use commonware_utils::{Faults as _, N3f1};

use crate::addresses::{ListenAddresses, ListenOverrides};
use crate::applier::BlockApplier;
use crate::config::{ConfigError, NetworkFile, NetworkNode, NodeConfig};
use crate::consensus::{
    BlockLimits, Channels, ConsensusConfig, ConsensusError, MempoolLimits, RunningConsensus, Timing, channel,
    consensus_namespace, max_message_size, start_consensus,
};
use crate::housekeeping::{Chores, Housekeeping};
use crate::http::description::NetworkDescription;
use crate::http::jrpc::{LoginKeys, RpcService, RpcStartError};
use crate::http::server::{FileLimitError, HttpServer, ServerLimits, fit_connections_to_file_limit};
use crate::http::v1::{NodeApi, wall_clock_ms};
use crate::identity::{KeyFileError, NodeIdentity};
use crate::jwks_cache::JwksCache;
use crate::kek::{KekError, load_kek};
use crate::login_store::LoginStore;
use crate::observability::{HealthCell, METRIC_LOGIN_LOG_CORRUPT_ENTRIES, Telemetry};
use crate::participant_driver::{ParticipantHandles, ParticipantIdentity, run_participant};
use crate::provider_http::ProviderClientError;
use crate::token_verifier::TokenVerifier;

/// The ledger database inside the data directory.
pub const LEDGER_FILE: &str = "ledger.redb";
/// Consensus storage inside the data directory.
pub(crate) const CONSENSUS_DIR: &str = "consensus";

/// Why a node could not run.
#[derive(Debug, Error)]
pub enum NodeError {
    /// A configuration file is missing or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key file is missing or unsafe.
    #[error(transparent)]
    Keys(#[from] KeyFileError),
    /// No usable key-encryption key.
    #[error(transparent)]
    Kek(#[from] KekError),
    /// The network file describes no valid genesis.
    #[error("{file}: {reason}")]
    Genesis {
        /// The network file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The genesis is not one the ledger accepts.
    #[error("{file}: the genesis is not a valid ledger: {source}")]
    Ledger {
        /// The network file.
        file: PathBuf,
        /// Why.
        source: GenesisError,
    },
    /// `node.toml` names a node the network does not list.
    #[error("node {index} is not in {file}")]
    NotInNetwork {
        /// The node.
        index: u16,
        /// The network file.
        file: PathBuf,
    },
    /// The network file lists no node with this node's keys.
    #[error("{file} lists no node with the keys in {key_dir}: is it the genesis this node enrolled in?")]
    NotEnrolled {
        /// The key directory.
        key_dir: PathBuf,
        /// The network file.
        file: PathBuf,
    },
    /// The key files are not the node's keys in the network file.
    #[error("the keys in {key_dir} are not the ones {file} lists for node {index}")]
    KeysDiffer {
        /// The key directory.
        key_dir: PathBuf,
        /// The network file.
        file: PathBuf,
        /// The node.
        index: u16,
    },
    /// The data directory cannot be made or read.
    #[error("cannot {action} {path}: {source}")]
    DataDir {
        /// What failed (`create`, `read`, `make private`).
        action: &'static str,
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory is open to group or others.
    #[error(
        "the data directory {path} is open to group or others (mode {mode:03o}): its files hold this node's login records and encrypted shares; run chmod 700 {path}"
    )]
    DataDirOpen {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The ledger store cannot be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The login store's threads cannot be started.
    #[error("cannot start the login store: {0}")]
    LoginStore(std::io::Error),
    /// The p2p network did not give every channel.
    #[error("channel registration failed")]
    Channels,
    /// The DKG participant cannot start on this ledger.
    #[error("cannot start the DKG participant: {0}")]
    Participant(LedgerError),
    /// The identity-provider client cannot be built.
    #[error(transparent)]
    Providers(#[from] ProviderClientError),
    /// The JSON-RPC service cannot start.
    #[error(transparent)]
    Rpc(#[from] RpcStartError),
    /// `[http]` is not usable.
    #[error("[http]: {0}")]
    Http(String),
    /// Too few open files.
    #[error(transparent)]
    FileLimit(#[from] FileLimitError),
    /// Consensus could not start.
    #[error(transparent)]
    Consensus(#[from] ConsensusError),
    /// `node.toml` does not say where to bind and the advertised address
    /// cannot tell.
    #[error("{file}: {reason}")]
    ListenAddress {
        /// `node.toml`.
        file: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The API address cannot be bound.
    #[error("cannot listen for clients on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Everything a node process needs, loaded and checked.
#[derive(Debug)]
pub struct LoadedNode {
    /// `node.toml`.
    pub config: NodeConfig,
    /// `network.toml`.
    pub network: NetworkFile,
    /// The ledger of that network.
    pub ledger: Ledger,
    /// This node's keys.
    pub identity: NodeIdentity,
    /// This node's entry in the network file.
    pub me: NetworkNode,
    /// Where it binds (its `node.toml`'s choice, or what it advertises).
    pub listen: ListenAddresses,
}

impl LoadedNode {
    /// Loads `node.toml`, the network file and the keys, and checks that
    /// the keys are the ones the network lists for this node.
    pub fn load(config_path: &Path) -> Result<Self, NodeError> {
        let config = NodeConfig::load(config_path)?;
        let network = NetworkFile::load(&config.network_file)?;
        let file = config.network_file.clone();
        let genesis = network.genesis().map_err(|reason| NodeError::Genesis { file: file.clone(), reason })?;
        let ledger = Ledger::new(genesis).map_err(|source| NodeError::Ledger { file, source })?;
        let identity = NodeIdentity::load(&config.key_dir)?;
        let consensus_key = hex::encode(identity.consensus.public_key().as_ref());
        let me = match config.index {
            Some(index) => network
                .nodes
                .iter()
                .find(|node| node.index == index)
                .ok_or_else(|| NodeError::NotInNetwork { index, file: config.network_file.clone() })?,
            // A node made by `node keygen` finds itself by its keys.
            None => network.nodes.iter().find(|node| node.consensus_key == consensus_key).ok_or_else(|| {
                NodeError::NotEnrolled { key_dir: config.key_dir.clone(), file: config.network_file.clone() }
            })?,
        }
        .clone();
        if me.consensus_key != consensus_key || me.secp256k1_key != hex::encode(identity.secp256k1_public_bytes()) {
            return Err(NodeError::KeysDiffer {
                key_dir: config.key_dir.clone(),
                file: config.network_file.clone(),
                index: me.index,
            });
        }
        let overrides = ListenOverrides { p2p: config.p2p_listen, rpc: config.rpc_listen };
        let listen = overrides
            .resolve(me.p2p_address, &me.rpc_url)
            .map_err(|reason| NodeError::ListenAddress { file: config_path.to_owned(), reason })?;
        Ok(Self { config, network, ledger, identity, me, listen })
    }
}

/// Choices for one run of a node, beyond its configuration (the command
/// line's).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Start even though a login record this node answered for was lost
    /// to a corrupt log entry and could still matter (see
    /// `quorumkey_store::StoreOptions`): the operator's choice for this
    /// start only (the log is emptied when the store opens). Default: the
    /// node refuses to start until the lost record's tokens have expired.
    pub accept_lost_login_records: bool,
}

/// Runs the node until the process is interrupted (SIGINT or SIGTERM).
/// Everything acknowledged to consensus is durable whenever it stops.
pub fn run_node_with(config_path: &Path, telemetry: Option<Telemetry>, options: &RunOptions) -> Result<(), NodeError> {
    // Whatever this process creates (the consensus storage above all) is
    // its own only.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let node = LoadedNode::load(config_path)?;
    let kek = load_kek(node.config.kek_file.as_deref(), config_path)?;
    let data_dir = node.config.data_dir.clone();
    prepare_data_dir(&data_dir)?;
    let health = HealthCell::new(node.me.index, *node.ledger.network_id());
    let store_options = StoreOptions { kek, accept_lost_login_records: options.accept_lost_login_records };
    let applier =
        Arc::new(BlockApplier::open(node.ledger.clone(), &data_dir.join(LEDGER_FILE), health.clone(), &store_options)?);
    report_login_log_damage(applier.store());
    let runtime = cw_tokio::Runner::new(
        cw_tokio::Config::new().with_storage_directory(data_dir.join(CONSENSUS_DIR)).with_worker_threads(2),
    );
    runtime.start(|context| async move { serve(context, node, applier, health, telemetry).await })
}

/// The node's tasks, started in order, stopped in reverse on a signal:
/// p2p and consensus ([`start_p2p`], `start_consensus`), the DKG
/// participant ([`start_dkg`]), the login store and the HTTP surface
/// ([`start_http`]), housekeeping.
async fn serve(
    context: cw_tokio::Context,
    node: LoadedNode,
    applier: Arc<BlockApplier>,
    health: HealthCell,
    telemetry: Option<Telemetry>,
) -> Result<(), NodeError> {
    let index = node.me.index;
    let (channels, oracle) = start_p2p(&context, &node)?;
    let config = ConsensusConfig {
        namespace: consensus_namespace(node.ledger.network_id()),
        participants: node.ledger.genesis().nodes.iter().map(|entry| entry.consensus_key.clone()).collect(),
        signer: node.identity.consensus.clone(),
        partition_prefix: format!("node-{index}"),
        timing: Timing::default(),
        block_limits: BlockLimits::default(),
        mempool_limits: MempoolLimits::default(),
        mailbox_size: NZUsize!(4096),
    };
    let running = start_consensus(
        context.child("consensus"),
        config,
        channels,
        oracle.clone(),
        oracle,
        applier.clone(),
        |application| application,
    )
    .await?;
    tracing::info!(
        index,
        p2p = %node.me.p2p_address,
        p2p_listen = %node.listen.p2p,
        rpc = %node.me.rpc_url,
        rpc_listen = %node.listen.rpc,
        "node started"
    );
    let dkg = start_dkg(&context, &node, &applier, &running)?;
    let (login_store, login_task) = LoginStore::start(&applier).map_err(NodeError::LoginStore)?;
    let health_for_chores = health.clone();
    let (server, rpc) = start_http(&node, &applier, &running, health, telemetry, login_store.clone()).await?;
    let peer_set = node
        .ledger
        .genesis()
        .nodes
        .iter()
        .filter(|entry| entry.index != index)
        .map(|entry| (entry.index, entry.consensus_key.clone()))
        .collect();
    // Simplex finalizes with a quorum of n − f votes (f = ⌊(n − 1)/3⌋),
    // this node's own among them.
    let nodes = node.ledger.genesis().node_count().max(1);
    let peers_needed = (N3f1::quorum(nodes) as usize).saturating_sub(1);
    let housekeeping = Housekeeping::start(Chores {
        login_store,
        rpc,
        peers: running.peers.clone(),
        peer_set,
        peers_needed,
        health: health_for_chores,
    });

    shutdown_signal().await;
    tracing::info!(index, "stopping on signal");
    // No new requests and no new DKG work (the participant re-derives what
    // it was doing from the ledger at the next start); then no new chores;
    // then every login record already queued is written and answered
    // before the process exits.
    server.abort();
    dkg.abort();
    housekeeping.stop().await;
    let _ = tokio::task::spawn_blocking(move || login_task.stop()).await;
    Ok(())
}

/// The p2p channels of [`start_p2p`].
type P2pChannels =
    Channels<lookup::Sender<ed25519::PublicKey, cw_tokio::Context>, lookup::Receiver<ed25519::PublicKey>>;

/// Authenticated, encrypted connections to the other validators (every
/// address from `network.toml`), one channel per consensus stream.
fn start_p2p(
    context: &cw_tokio::Context,
    node: &LoadedNode,
) -> Result<(P2pChannels, lookup::Oracle<ed25519::PublicKey>), NodeError> {
    let genesis = node.ledger.genesis();
    let addresses: Vec<(ed25519::PublicKey, Address)> = genesis
        .nodes
        .iter()
        .zip(&node.network.nodes)
        .map(|(genesis, entry)| (genesis.consensus_key.clone(), Address::from(entry.p2p_address)))
        .collect();
    let namespace = consensus_namespace(node.ledger.network_id());
    let signer = node.identity.consensus.clone();
    let handshake = Cups::<_, ChaCha20Poly1305>::new(
        Sake {
            signer,
            synchrony_bound: Duration::from_secs(5),
            max_handshake_age: Duration::from_secs(10),
            version: sake::Version::V1,
        },
        cups::Version::V1,
    );
    let nodes = genesis.nodes.len();
    let p2p_config = lookup::Config::local(
        handshake,
        &namespace,
        node.listen.p2p,
        NZUsize!(nodes.max(1)),
        max_message_size(nodes, &BlockLimits::default()),
        NZUsize!(4096),
    );
    let (mut network, mut oracle) = lookup::Network::new(context.child("p2p"), p2p_config);
    let _ = oracle.track(0, Map::from_iter_dedup(addresses));
    let mut pairs = Vec::with_capacity(channel::ALL.len());
    for ch in channel::ALL {
        pairs.push(network.register(ch, channel::quota(ch)));
    }
    network.start();
    let mut pairs = pairs.into_iter();
    let mut next = || pairs.next().ok_or(NodeError::Channels);
    let channels = Channels {
        votes: next()?,
        certificates: next()?,
        resolver: next()?,
        blocks: next()?,
        backfill: next()?,
        transactions: next()?,
    };
    Ok((channels, oracle))
}

/// The DKG participant, on a blocking thread of the runtime (its batch
/// checks are long computations); it stops when the node halts or its
/// store fails, or when its handle is aborted.
fn start_dkg(
    context: &cw_tokio::Context,
    node: &LoadedNode,
    applier: &BlockApplier,
    running: &RunningConsensus,
) -> Result<commonware_runtime::Handle<()>, NodeError> {
    let index = node.me.index;
    let participant = DkgParticipant::new(&node.ledger, index, *node.identity.secp256k1.as_nonzero_scalar())
        .map_err(NodeError::Participant)?;
    let identity = ParticipantIdentity {
        index: Some(index),
        node_key: node.identity.consensus.clone(),
        secp256k1: *node.identity.secp256k1.as_nonzero_scalar(),
    };
    let handles = ParticipantHandles {
        state: applier.committed_state(),
        shares: applier.share_store(),
        tip: running.tip.clone(),
        submitter: running.submitter.clone(),
    };
    Ok(context.child("dkg").shared(true).spawn(move |_| {
        run_participant(handles, identity, Box::new(participant), quorumkey_crypto::random::os_rng(), wall_clock_ms)
    }))
}

/// The HTTP surface (`/v1`, `/health`, `/metrics`, `/jrpc`) on the node's
/// RPC address; returns the server's task and the JSON-RPC service.
async fn start_http(
    node: &LoadedNode,
    applier: &BlockApplier,
    running: &RunningConsensus,
    health: HealthCell,
    telemetry: Option<Telemetry>,
    login_store: LoginStore,
) -> Result<(tokio::task::JoinHandle<()>, Arc<RpcService>), NodeError> {
    let description = Arc::new(attested_description(node)?);
    let api_state = NodeApi {
        index: node.me.index,
        state: applier.committed_state(),
        submitter: running.submitter.clone(),
        tip: running.tip.clone(),
        peers: running.peers.clone(),
        waiters: running.waiters.clone(),
        shares: applier.share_store(),
        description,
    };
    let providers = &node.config.providers;
    let access = providers.access();
    if access.allows_non_public() {
        tracing::warn!(
            "providers.allow_private_addresses is on: verifiers can make this node connect to loopback and private addresses (development only)"
        );
    }
    // One client (one connection pool, one TLS configuration) for every
    // request to identity providers.
    let provider_client = access.client(providers.jwks_policy().fetch_timeout)?;
    let jwks = Arc::new(JwksCache::with_client(providers.jwks_policy(), &provider_client));
    let tokens = TokenVerifier::with_client(jwks, &provider_client, providers.limits());
    // The other nodes' keys and this node's index come from the node set
    // in force on the ledger, at each request.
    let login_keys =
        LoginKeys { node_key: node.identity.secp256k1.clone(), consensus_key: node.identity.consensus.clone() };
    let rpc = Arc::new(RpcService::new(
        api_state.clone(),
        login_keys,
        tokens,
        login_store,
        applier.share_store(),
        &node.config.rpc,
    )?);
    let mut limits = ServerLimits::new(&node.config.http).map_err(NodeError::Http)?;
    limits.max_connections = fit_connections_to_file_limit(limits.max_connections)?;
    let address = node.listen.rpc;
    let listener =
        tokio::net::TcpListener::bind(address).await.map_err(|source| NodeError::Listen { address, source })?;
    let app = crate::http::router(api_state, health, telemetry, rpc.clone());
    tracing::info!(
        max_connections = limits.max_connections,
        max_connections_per_address = limits.max_connections_per_address,
        "serving clients"
    );
    Ok((tokio::spawn(HttpServer::new(limits).serve(listener, app)), rpc))
}

/// The network's description as this node serves it at `/v1/network`:
/// with the genesis, attested by this node's secp256k1 key, and the node
/// sets of the committed state at each request.
fn attested_description(node: &LoadedNode) -> Result<NetworkDescription, NodeError> {
    let file = node.config.network_file.clone();
    let mut description =
        node.network.client_description().map_err(|reason| NodeError::Genesis { file: file.clone(), reason })?;
    description
        .attest(node.me.index, &node.identity.secp256k1)
        .map_err(|e| NodeError::Genesis { file: file.clone(), reason: e.to_string() })?;
    Ok(NetworkDescription::new(description, node.identity.secp256k1.clone()))
}

/// Creates the data directory (mode 0700) and its consensus storage
/// directory if absent; refuses a data directory group or others may use.
fn prepare_data_dir(data_dir: &Path) -> Result<(), NodeError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let create = |dir: &Path| {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|source| NodeError::DataDir {
            action: "create",
            path: dir.to_owned(),
            source,
        })
    };
    create(data_dir)?;
    let mode = std::fs::metadata(data_dir)
        .map_err(|source| NodeError::DataDir { action: "read", path: data_dir.to_owned(), source })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(NodeError::DataDirOpen { path: data_dir.to_owned(), mode });
    }
    let consensus = data_dir.join(CONSENSUS_DIR);
    create(&consensus)?;
    // One an older version made with the umask.
    std::fs::set_permissions(&consensus, std::fs::Permissions::from_mode(0o700)).map_err(|source| NodeError::DataDir {
        action: "make private",
        path: consensus,
        source,
    })
}

/// Reports the damaged login-log entries the store skipped on opening: a
/// warning each (where, never what) and a counter.
fn report_login_log_damage(store: &NodeStore) {
    for damage in store.login_log_damage() {
        let acknowledged = if damage.acknowledged { "true" } else { "false" };
        metrics::counter!(METRIC_LOGIN_LOG_CORRUPT_ENTRIES, "acknowledged" => acknowledged).increment(1);
        if damage.acknowledged {
            tracing::warn!(
                log = %damage.path.display(),
                offset = damage.offset,
                bytes = damage.len,
                lost_until = ?damage.lost_until,
                "a corrupt login-log entry was skipped: a login record this node answered for is lost (started with --accept-lost-login-records, or its tokens have expired)"
            );
        } else {
            tracing::warn!(
                log = %damage.path.display(),
                offset = damage.offset,
                bytes = damage.len,
                "a corrupt login-log entry in the last write before a crash was skipped (never answered for)"
            );
        }
    }
}

/// Resolves on SIGINT or SIGTERM (a process that must clean up on either).
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// The config path of node `index` in a directory made by `network init`.
pub fn node_config_path(network_dir: &Path, index: u16) -> PathBuf {
    network_dir.join(format!("node-{index}")).join(crate::config::NODE_CONFIG_FILE)
}
