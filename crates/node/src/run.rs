//! Running one node as a process: configuration and keys from disk, the
//! ledger store and consensus storage under the data directory, consensus
//! over authenticated TCP connections to the other nodes, and the HTTP API.

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
use thiserror::Error;

use crate::api::{self, NodeApi, PEER_WINDOW, wall_clock_ms};
use crate::jwks_cache::{JwksCache, JwksCachePolicy};
use crate::rpc::{self, LoginKeys, RpcService};
use crate::token_verifier::TokenVerifier;
use commonware_runtime::Spawner as _;
use quorumkey_login::NodeKey;

use crate::applier::BlockApplier;
use crate::config::{ConfigError, NetworkFile, NetworkNode, NodeConfig};
use crate::consensus::{
    BlockLimits, Channels, ConsensusConfig, ConsensusError, MempoolLimits, Timing, channel, consensus_namespace,
    max_message_size, start_consensus,
};
use crate::http_server::{HttpServer, ServerLimits, fit_connections_to_file_limit};
use crate::identity::{KeyFileError, NodeIdentity};
use crate::observability::{
    HealthCell, METRIC_CONNECTED_PEERS, METRIC_LOGIN_RECORD_SWEEPS, METRIC_LOGIN_RECORDS_SWEPT, Telemetry,
};
use crate::participant::DkgParticipant;
use crate::participant_driver::{ParticipantIdentity, run_participant};

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

/// Runs the node until the process is interrupted (SIGINT or SIGTERM).
/// Everything acknowledged to consensus is durable whenever it stops.
pub fn run_node(config_path: &Path, telemetry: Option<Telemetry>) -> Result<(), NodeError> {
    let node = LoadedNode::load(config_path)?;
    let data_dir = node.config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| NodeError::Storage(format!("cannot create {}: {e}", data_dir.display())))?;
    let health = HealthCell::new(node.config.index, *node.ledger.network_id());
    let applier = Arc::new(
        BlockApplier::open(node.ledger.clone(), &data_dir.join(LEDGER_FILE), health.clone())
            .map_err(|e| NodeError::Storage(e.to_string()))?,
    );
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
    let jwks = JwksCache::new(JwksCachePolicy::default())
        .map_err(|e| NodeError::Mismatch(format!("cannot build the HTTP client for verifier keys: {e}")))?;
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
        RpcService::new(api_state.clone(), login_keys, TokenVerifier::new(Arc::new(jwks)), &node.config.rpc)
            .map_err(NodeError::Mismatch)?,
    );
    let mut limits = ServerLimits::new(&node.config.http).map_err(NodeError::Mismatch)?;
    limits.max_connections = fit_connections_to_file_limit(limits.max_connections).map_err(NodeError::Mismatch)?;
    let listener = tokio::net::TcpListener::bind(me.rpc_address)
        .await
        .map_err(|source| NodeError::Listen { address: me.rpc_address, source })?;
    let app = api::router(api_state, health, telemetry, rpc_service.address_limiter())
        .merge(rpc::router(rpc_service.clone()));
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
