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
use commonware_runtime::{Runner as _, Supervisor as _, tokio as cw_tokio};
use commonware_stream::cups::{self, Cups};
use commonware_stream::sake::{self, Sake};
use commonware_utils::NZUsize;
use commonware_utils::ordered::Map;
use quorumkey_ledger::Ledger;
use quorumkey_store::{NodeStore, StoreOptions};
use thiserror::Error;

use crate::http::jrpc::{LoginKeys, RpcService};
use crate::http::v1::{NodeApi, PEER_WINDOW, wall_clock_ms};
use crate::jwks_cache::JwksCache;
use crate::token_verifier::TokenVerifier;
use commonware_runtime::Spawner as _;
use quorumkey_login::NodeKey;

use crate::applier::BlockApplier;
use crate::config::{ConfigError, NetworkFile, NetworkNode, NodeConfig};
use crate::consensus::{
    BlockLimits, Channels, ConsensusConfig, ConsensusError, MempoolLimits, Timing, channel, consensus_namespace,
    max_message_size, start_consensus,
};
use crate::http::server::{HttpServer, ServerLimits, fit_connections_to_file_limit};
use crate::identity::{KeyFileError, NodeIdentity};
use crate::kek::{KekError, load_kek};
use crate::observability::{
    HealthCell, METRIC_CONNECTED_PEERS, METRIC_LOGIN_LOG_CORRUPT_ENTRIES, METRIC_LOGIN_RECORD_SWEEPS,
    METRIC_LOGIN_RECORDS_SWEPT, Telemetry,
};
use crate::participant_driver::{ParticipantIdentity, run_participant};
use quorumkey_participant::DkgParticipant;

/// The ledger database inside the data directory.
pub const LEDGER_FILE: &str = "ledger.redb";
/// Consensus storage inside the data directory.
pub const CONSENSUS_DIR: &str = "consensus";

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
    /// The configuration contradicts itself.
    #[error("{0}")]
    Mismatch(String),
    /// The data directory or the store cannot be used.
    #[error("{0}")]
    Storage(String),
    /// Consensus could not start.
    #[error(transparent)]
    Consensus(#[from] ConsensusError),
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
}

impl LoadedNode {
    /// Loads `node.toml`, the network file and the keys, and checks that
    /// the keys are the ones the network lists for this node.
    pub fn load(config_path: &Path) -> Result<Self, NodeError> {
        let config = NodeConfig::load(config_path)?;
        let network = NetworkFile::load(&config.network_file)?;
        let genesis = network.genesis().map_err(NodeError::Mismatch)?;
        let ledger = Ledger::new(genesis).map_err(|e| NodeError::Mismatch(e.to_string()))?;
        let identity = NodeIdentity::load(&config.key_dir)?;
        let me = network.nodes.iter().find(|node| node.index == config.index).cloned().ok_or_else(|| {
            NodeError::Mismatch(format!("node {} is not in {}", config.index, config.network_file.display()))
        })?;
        if me.consensus_key != hex::encode(identity.consensus.public_key().as_ref())
            || me.secp256k1_key != hex::encode(identity.secp256k1_public_bytes())
        {
            return Err(NodeError::Mismatch(format!(
                "the keys in {} are not the ones {} lists for node {}",
                config.key_dir.display(),
                config.network_file.display(),
                config.index
            )));
        }
        Ok(Self { config, network, ledger, identity, me })
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

/// [`run_node_with`] the default options.
pub fn run_node(config_path: &Path, telemetry: Option<Telemetry>) -> Result<(), NodeError> {
    run_node_with(config_path, telemetry, &RunOptions::default())
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
    let health = HealthCell::new(node.config.index, *node.ledger.network_id());
    let store_options = StoreOptions { kek, accept_lost_login_records: options.accept_lost_login_records };
    let applier = Arc::new(
        BlockApplier::open(node.ledger.clone(), &data_dir.join(LEDGER_FILE), health.clone(), &store_options)
            .map_err(|e| NodeError::Storage(e.to_string()))?,
    );
    report_login_log_damage(applier.store());
    let runtime = cw_tokio::Runner::new(
        cw_tokio::Config::new().with_storage_directory(data_dir.join(CONSENSUS_DIR)).with_worker_threads(2),
    );
    runtime.start(|context| async move { serve(context, node, applier, health, telemetry).await })
}

async fn serve(
    context: cw_tokio::Context,
    node: LoadedNode,
    applier: Arc<BlockApplier>,
    health: HealthCell,
    telemetry: Option<Telemetry>,
) -> Result<(), NodeError> {
    let index = node.config.index;
    let me = node.me.clone();
    let participants: Vec<ed25519::PublicKey> =
        node.ledger.genesis().nodes.iter().map(|entry| entry.consensus_key.clone()).collect();
    let addresses: Vec<(ed25519::PublicKey, Address)> = node
        .ledger
        .genesis()
        .nodes
        .iter()
        .zip(&node.network.nodes)
        .map(|(genesis, entry)| (genesis.consensus_key.clone(), Address::from(entry.p2p_address)))
        .collect();
    let namespace = consensus_namespace(node.ledger.network_id());
    let limits = BlockLimits::default();
    let signer = node.identity.consensus.clone();

    // Authenticated, encrypted connections to the other validators.
    let handshake = Cups::<_, ChaCha20Poly1305>::new(
        Sake {
            signer: signer.clone(),
            synchrony_bound: Duration::from_secs(5),
            max_handshake_age: Duration::from_secs(10),
            version: sake::Version::V1,
        },
        cups::Version::V1,
    );
    let p2p_config = lookup::Config::local(
        handshake,
        &namespace,
        me.p2p_address,
        NZUsize!(participants.len().max(1)),
        max_message_size(participants.len(), &limits),
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
    let mut next = || pairs.next().ok_or_else(|| NodeError::Mismatch("channel registration failed".into()));
    let channels = Channels {
        votes: next()?,
        certificates: next()?,
        resolver: next()?,
        blocks: next()?,
        backfill: next()?,
        transactions: next()?,
    };

    let config = ConsensusConfig {
        namespace,
        participants,
        signer,
        partition_prefix: format!("node-{index}"),
        timing: Timing::default(),
        block_limits: limits,
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
    tracing::info!(index, p2p = %me.p2p_address, rpc = %me.rpc_address, "node started");

    // The DKG participant, on a blocking thread (its batch checks are
    // long computations).
    let participant = DkgParticipant::new(&node.ledger, index, *node.identity.secp256k1.as_nonzero_scalar())
        .map_err(|e| NodeError::Mismatch(format!("cannot start the DKG participant: {e}")))?;
    let identity = ParticipantIdentity { index, node_key: node.identity.consensus.clone() };
    let (dkg_applier, dkg_tip, dkg_submitter) = (applier.clone(), running.tip.clone(), running.submitter.clone());
    context.child("dkg").shared(true).spawn(move |_| {
        run_participant(
            dkg_applier,
            dkg_tip,
            dkg_submitter,
            identity,
            Box::new(participant),
            quorumkey_crypto::random::os_rng(),
            wall_clock_ms,
        )
    });

    // The HTTP API.
    let api_state = NodeApi {
        index,
        applier,
        submitter: running.submitter.clone(),
        tip: running.tip.clone(),
        peers: running.peers.clone(),
        waiters: running.waiters.clone(),
    };
    let providers = &node.config.providers;
    let access = providers.access();
    if access.allows_non_public() {
        tracing::warn!(
            "providers.allow_private_addresses is on: verifiers can make this node connect to loopback and private addresses (development only)"
        );
    }
    let jwks =
        Arc::new(JwksCache::new(providers.jwks_policy(), &access).map_err(|e| NodeError::Mismatch(e.to_string()))?);
    let tokens =
        TokenVerifier::new(jwks, &access, providers.limits()).map_err(|e| NodeError::Mismatch(e.to_string()))?;
    let login_keys = LoginKeys {
        node_key: node.identity.secp256k1.clone(),
        consensus_key: node.identity.consensus.clone(),
        nodes: node
            .ledger
            .genesis()
            .nodes
            .iter()
            .map(|entry| {
                quorumkey_crypto::group::public_key_from_sec1(&entry.secp256k1_key)
                    .map(|public| NodeKey { index: entry.index, public })
                    .map_err(|e| NodeError::Mismatch(format!("node {}: secp256k1 key: {e}", entry.index)))
            })
            .collect::<Result<_, _>>()?,
        threshold: node.ledger.genesis().threshold(),
    };
    let rpc_service = Arc::new(
        RpcService::new(api_state.clone(), login_keys, tokens, &node.config.rpc).map_err(NodeError::Mismatch)?,
    );
    let mut limits = ServerLimits::new(&node.config.http).map_err(NodeError::Mismatch)?;
    limits.max_connections = fit_connections_to_file_limit(limits.max_connections).map_err(NodeError::Mismatch)?;
    let listener = tokio::net::TcpListener::bind(me.rpc_address)
        .await
        .map_err(|source| NodeError::Listen { address: me.rpc_address, source })?;
    let app = crate::http::router(api_state, health, telemetry, rpc_service.clone());
    tracing::info!(
        max_connections = limits.max_connections,
        max_connections_per_address = limits.max_connections_per_address,
        "serving clients"
    );
    let server = tokio::spawn(HttpServer::new(limits).serve(listener, app));

    // Expired login records and idle rate-limit entries: at start (a node
    // that was down may hold many), then once a minute.
    tokio::spawn(async move {
        loop {
            let service = rpc_service.clone();
            match tokio::task::spawn_blocking(move || service.sweep()).await {
                Ok(Ok(swept)) => {
                    metrics::counter!(METRIC_LOGIN_RECORD_SWEEPS).increment(1);
                    metrics::counter!(METRIC_LOGIN_RECORDS_SWEPT).increment(swept as u64);
                    if swept > 0 {
                        tracing::debug!(swept, "forgot expired login records");
                    }
                }
                Ok(Err(error)) => tracing::warn!(%error, "cannot sweep expired login records"),
                Err(error) => tracing::warn!(%error, "the login record sweep failed"),
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    });

    // The peers gauge.
    let peers = running.peers.clone();
    tokio::spawn(async move {
        loop {
            metrics::gauge!(METRIC_CONNECTED_PEERS).set(peers.active(wall_clock_ms(), PEER_WINDOW) as f64);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });

    shutdown_signal().await;
    tracing::info!(index, "stopping on signal");
    server.abort();
    Ok(())
}

/// Creates the data directory (mode 0700) and its consensus storage
/// directory if absent; refuses a data directory group or others may use.
fn prepare_data_dir(data_dir: &Path) -> Result<(), NodeError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let create = |dir: &Path| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| NodeError::Storage(format!("cannot create {}: {e}", dir.display())))
    };
    create(data_dir)?;
    let mode = std::fs::metadata(data_dir)
        .map_err(|e| NodeError::Storage(format!("cannot read {}: {e}", data_dir.display())))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(NodeError::Storage(format!(
            "the data directory {} is open to group or others (mode {mode:03o}): its files hold this node's login records and encrypted shares; run chmod 700 {}",
            data_dir.display(),
            data_dir.display()
        )));
    }
    let consensus = data_dir.join(CONSENSUS_DIR);
    create(&consensus)?;
    // One an older version made with the umask.
    std::fs::set_permissions(&consensus, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| NodeError::Storage(format!("cannot make {} private: {e}", consensus.display())))
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
