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
use commonware_runtime::Spawner as _;
use commonware_runtime::{Runner as _, Supervisor as _, tokio as cw_tokio};
use commonware_stream::cups::{self, Cups};
use commonware_stream::sake::{self, Sake};
use commonware_utils::NZUsize;
use quorumkey_ledger::{GenesisError, Ledger};
use quorumkey_store::{NodeStore, StoreError, StoreOptions};
use thiserror::Error;

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
use crate::participant_driver::{ParticipantHandles, ParticipantIdentity, role_in_force, run_participant};
use crate::peer_directory::{LookupPeers, peer_limit};
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
    /// The network file lists no node with this node's keys, and it has
    /// no enrollment to join with.
    #[error("{file} lists no node with the keys in {key_dir} (is it the genesis this node enrolled in?), {reason}")]
    NotEnrolled {
        /// The key directory.
        key_dir: PathBuf,
        /// The network file.
        file: PathBuf,
        /// Why the node cannot join instead.
        reason: String,
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
    ParticipantState(StoreError),
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
    /// This node's entry in the network file; for a node that joins
    /// through an epoch change (not in the genesis), its own enrollment
    /// with index 0.
    pub me: NetworkNode,
    /// Whether this node is not a genesis node: it joins, or joined, by an
    /// epoch change that the operators signed (`quorumkey network epoch`).
    /// Its index is the one it has in the node set in force, if any.
    pub joining: bool,
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
            None => match network.nodes.iter().find(|node| node.consensus_key == consensus_key) {
                Some(node) => node,
                None => {
                    let me = joining_entry(config_path, &identity).map_err(|reason| NodeError::NotEnrolled {
                        key_dir: config.key_dir.clone(),
                        file: config.network_file.clone(),
                        reason,
                    })?;
                    let overrides = ListenOverrides { p2p: config.p2p_listen, rpc: config.rpc_listen };
                    let listen = overrides
                        .resolve(me.p2p_address, &me.rpc_url)
                        .map_err(|reason| NodeError::ListenAddress { file: config_path.to_owned(), reason })?;
                    return Ok(Self { config, network, ledger, identity, me, joining: true, listen });
                }
            },
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
        Ok(Self { config, network, ledger, identity, me, joining: false, listen })
    }
}

/// The entry of a node not in the genesis: its enrollment (written by
/// `node keygen` beside its `node.toml`), checked to be signed by this
/// node's keys. Its index is 0 here: indexes after the genesis are
/// positions in the node set in force, which the ledger holds.
fn joining_entry(config_path: &Path, identity: &NodeIdentity) -> Result<NetworkNode, String> {
    let dir = config_path.parent().unwrap_or(Path::new("."));
    let path = dir.join(crate::enrollment::ENROLLMENT_FILE);
    if !path.exists() {
        return Err(format!(
            "nor is there an enrollment at {} (a node that joins by an epoch change runs with the enrollment its operator proposed)",
            path.display()
        ));
    }
    let enrollment = crate::enrollment::Enrollment::load(&path).map_err(|e| e.to_string())?;
    enrollment.verify().map_err(|e| format!("{}: {e}", path.display()))?;
    let consensus_key = hex::encode(identity.consensus.public_key().as_ref());
    let secp256k1_key = hex::encode(identity.secp256k1_public_bytes());
    if enrollment.consensus_key != consensus_key || enrollment.secp256k1_key != secp256k1_key {
        return Err(format!("the enrollment at {} is for other keys than this node's", path.display()));
    }
    Ok(NetworkNode {
        index: 0,
        consensus_key,
        secp256k1_key,
        p2p_address: enrollment.p2p_address,
        rpc_url: enrollment.rpc_url,
    })
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
    // The largest peer set this process can track: the sets it knows now
    // with room for nodes joining and leaving (see `LookupPeers`).
    let sets = applier.committed_state().node_sets().map_err(NodeError::ParticipantState)?;
    let known = sets.current.nodes.len().max(sets.next.as_ref().map_or(0, |next| next.nodes.len()));
    let max_peers = peer_limit(known) + node.config.bootstrap_peers.len();
    let (channels, oracle) = start_p2p(&context, &node, max_peers)?;
    let configured = node
        .ledger
        .genesis()
        .nodes
        .iter()
        .zip(&node.network.nodes)
        .map(|(genesis, entry)| (genesis.consensus_key.clone(), entry.p2p_address));
    // Checked when node.toml was loaded.
    let bootstrap = node
        .config
        .bootstrap_peers
        .iter()
        .filter_map(|entry| crate::config::parse_bootstrap_peer(entry).ok())
        .collect();
    let peer_sets = Box::new(LookupPeers::new(oracle.clone(), configured, bootstrap, max_peers));
    let config = ConsensusConfig {
        namespace: consensus_namespace(node.ledger.network_id()),
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
        peer_sets,
        applier.clone(),
        |application| application,
    )
    .await?;
    if node.joining {
        tracing::warn!(
            "this node is not in the genesis: it follows consensus as an observer, and serves and signs once an \
             epoch change its operators signed adds it"
        );
    }
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
    let housekeeping = Housekeeping::start(Chores {
        login_store,
        rpc,
        peers: running.peers.clone(),
        state: applier.committed_state(),
        me: node.identity.consensus.public_key(),
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

/// Authenticated, encrypted connections to the other validators, one
/// channel per consensus stream. Whom it connects to is set by consensus
/// as it reads the ledger's node sets ([`LookupPeers`]).
fn start_p2p(
    context: &cw_tokio::Context,
    node: &LoadedNode,
    max_peers: usize,
) -> Result<(P2pChannels, lookup::Oracle<ed25519::PublicKey>), NodeError> {
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
    let mut p2p_config = lookup::Config::local(
        handshake,
        &namespace,
        node.listen.p2p,
        std::num::NonZeroUsize::new(max_peers).unwrap_or(NZUsize!(1)),
        max_message_size(&BlockLimits::default()),
        NZUsize!(4096),
    );
    // `LookupPeers` puts every peer it wants in its newest set (the nodes
    // that just left included), so one set is all there is to keep; every
    // channel's inbound queue is allocated for (peers × sets × burst).
    p2p_config.tracked_peer_sets = NZUsize!(1);
    let (mut network, oracle) = lookup::Network::new(context.child("p2p"), p2p_config);
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
    // Indexes change with the node set: this node's is the one it has in
    // the set in force now.
    let secp256k1 = *node.identity.secp256k1.as_nonzero_scalar();
    let (index, role) = role_in_force(&applier.committed_state(), &node.identity.consensus.public_key(), secp256k1)
        .map_err(NodeError::ParticipantState)?;
    let identity = ParticipantIdentity { index, node_key: node.identity.consensus.clone(), secp256k1 };
    let handles = ParticipantHandles {
        state: applier.committed_state(),
        shares: applier.share_store(),
        tip: running.tip.clone(),
        submitter: running.submitter.clone(),
    };
    Ok(context
        .child("dkg")
        .shared(true)
        .spawn(move |_| run_participant(handles, identity, role, quorumkey_crypto::random::os_rng(), wall_clock_ms)))
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
        node_key: node.identity.consensus.public_key(),
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
    // A node that joined is not among the genesis nodes the description
    // lists: its attestation could not be checked, so it gives none (its
    // `node_set` is attested, by the set in force).
    if !node.joining {
        description
            .attest(node.me.index, &node.identity.secp256k1)
            .map_err(|e| NodeError::Genesis { file: file.clone(), reason: e.to_string() })?;
    }
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
