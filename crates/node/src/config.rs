//! Configuration files of a network and its nodes.
//!
//! - `network.toml` (public, the same for every node): each node's index,
//!   public keys and addresses, and the verifiers registered at genesis.
//!   The ledger's genesis, and so the network id, derive from it.
//! - `node-<i>/node.toml` (one per node): which node this is, where its
//!   keys, data and the network file are. Relative paths are relative to
//!   the directory of the file that names them.
//!
//! `quorumkey network init` writes both, and each node's keys.

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use commonware_codec::DecodeExt;
use commonware_cryptography::ed25519;
use quorumkey_crypto::random::os_rng;
use quorumkey_ledger::types::PointBytes;
use quorumkey_ledger::{DkgSettings, Genesis, GenesisNode, GenesisVerifier, VerifierName};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use quorumkey_login::network::{NetworkJson, NetworkJsonNode};

use crate::addresses::{ListenOverrides, RpcUrl};
use crate::identity::{KeyFileError, NodeIdentity};
use crate::jwks_cache::JwksCachePolicy;
use crate::provider_http::ProviderAccess;
use crate::token_verifier::ProviderLimits;

/// File name of the network description.
pub const NETWORK_FILE: &str = "network.toml";
/// File name of a node's configuration.
pub const NODE_CONFIG_FILE: &str = "node.toml";

/// Why a configuration could not be written or read.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A value in the file is not valid.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A key file problem.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// `network init` into a directory that is not empty.
    #[error("{0} exists and is not empty; choose a new directory")]
    NotEmpty(PathBuf),
}

/// One node in `network.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkNode {
    /// Index from 1.
    pub index: u16,
    /// ed25519 public key, 64 hex digits.
    pub consensus_key: String,
    /// Compressed secp256k1 public key, 66 hex digits.
    pub secp256k1_key: String,
    /// Where its peers reach it (what they dial).
    pub p2p_address: SocketAddr,
    /// Where clients reach its API (`/jrpc`, `/v1`, `/health`); the older
    /// `rpc_address = "IP:PORT"` reads as `http://IP:PORT`.
    #[serde(alias = "rpc_address")]
    pub rpc_url: RpcUrl,
}

/// A verifier registered at genesis, in `network.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkVerifier {
    /// Its name.
    pub name: String,
    /// Compressed secp256k1 key of its owner, 66 hex digits.
    pub owner: String,
    /// Its configuration document.
    pub config: String,
}

/// The `[dkg]` section of `network.toml`: how the key pool is kept full.
/// Every field is optional; an absent one takes the default for the
/// network's size (see `DkgSettings::default_for`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkDkg {
    /// Keys per batch.
    pub batch_keys: Option<u16>,
    /// Ready keys the pool refills to.
    pub pool_target: Option<u32>,
    /// A refill starts below this many ready keys.
    pub low_water: Option<u32>,
    /// Batches that may run at once.
    pub max_batches_in_flight: Option<u8>,
    /// Least blocks a phase waits for a silent node.
    pub phase_min_blocks: Option<u32>,
    /// Least milliseconds of block time a phase waits for a silent node.
    pub phase_min_ms: Option<u64>,
    /// A new epoch's node set (after a handover, which runs like the DKG)
    /// comes into force only at a height that is a multiple of this
    /// (default 64).
    pub epoch_boundary_blocks: Option<u32>,
    /// Every this many blocks of an epoch, the network refreshes every
    /// share by itself (default 0: only when operators propose it).
    pub refresh_every_blocks: Option<u64>,
}

impl NetworkDkg {
    fn settings(&self, nodes: usize) -> DkgSettings {
        let defaults = DkgSettings::default_for(nodes);
        DkgSettings {
            batch_keys: self.batch_keys.unwrap_or(defaults.batch_keys),
            pool_target: self.pool_target.unwrap_or(defaults.pool_target),
            low_water: self.low_water.unwrap_or(defaults.low_water),
            max_batches_in_flight: self.max_batches_in_flight.unwrap_or(defaults.max_batches_in_flight),
            phase_min_blocks: self.phase_min_blocks.unwrap_or(defaults.phase_min_blocks),
            phase_min_ms: self.phase_min_ms.unwrap_or(defaults.phase_min_ms),
        }
    }
}

pub use quorumkey_login::node_api::NetworkPolicyFile;

/// Reads a policy file: the `[policy]` section's fields at the top level,
/// as `quorumkey network policy` takes them.
pub fn load_policy_file(path: &Path) -> Result<NetworkPolicyFile, ConfigError> {
    read_toml(path)
}

/// The `[[verifiers]]` of a file (`network genesis --verifiers`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisVerifiersFile {
    #[serde(default)]
    verifiers: Vec<NetworkVerifier>,
}

/// Reads a file of `[[verifiers]]` entries, as in `network.toml`.
pub fn load_genesis_verifiers(path: &Path) -> Result<Vec<NetworkVerifier>, ConfigError> {
    let file: GenesisVerifiersFile = read_toml(path)?;
    Ok(file.verifiers)
}

/// `network.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    /// The nodes, by index.
    pub nodes: Vec<NetworkNode>,
    /// Verifiers registered at genesis.
    #[serde(default)]
    pub verifiers: Vec<NetworkVerifier>,
    /// DKG settings (defaults for the network's size if absent).
    #[serde(default, skip_serializing_if = "is_default_dkg")]
    pub dkg: NetworkDkg,
    /// The abuse policy the network starts with (defaults if absent).
    #[serde(default, skip_serializing_if = "is_default_policy")]
    pub policy: NetworkPolicyFile,
}

fn is_default_policy(policy: &NetworkPolicyFile) -> bool {
    policy == &NetworkPolicyFile::default()
}

fn is_default_dkg(dkg: &NetworkDkg) -> bool {
    dkg == &NetworkDkg::default()
}

fn parse_point(hex_digits: &str) -> Result<PointBytes, String> {
    let bytes = hex::decode(hex_digits).map_err(|_| "not hex".to_owned())?;
    quorumkey_crypto::group::public_key_from_sec1(&bytes).map_err(|e| e.to_string())?;
    bytes.try_into().map_err(|_| "not a 33-byte compressed point".to_owned())
}

impl NetworkFile {
    /// Reads and checks `network.toml`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file: Self = read_toml(path)?;
        file.genesis().map_err(|reason| ConfigError::Invalid { path: path.to_owned(), reason })?;
        Ok(file)
    }

    /// The ledger genesis this file describes.
    pub fn genesis(&self) -> Result<Genesis, String> {
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let key_bytes = hex::decode(&node.consensus_key)
                .map_err(|_| format!("node {}: consensus_key is not hex", node.index))?;
            let consensus_key = ed25519::PublicKey::decode(key_bytes)
                .map_err(|e| format!("node {}: consensus_key: {e}", node.index))?;
            let secp256k1_key =
                parse_point(&node.secp256k1_key).map_err(|e| format!("node {}: secp256k1_key: {e}", node.index))?;
            nodes.push(GenesisNode { index: node.index, consensus_key, secp256k1_key });
        }
        let mut verifiers = Vec::with_capacity(self.verifiers.len());
        for verifier in &self.verifiers {
            let name = VerifierName::new(&verifier.name).map_err(|e| format!("verifier {:?}: {e}", verifier.name))?;
            let owner = parse_point(&verifier.owner).map_err(|e| format!("verifier {}: owner: {e}", verifier.name))?;
            verifiers.push(GenesisVerifier { name, owner, config: Bytes::from(verifier.config.clone().into_bytes()) });
        }
        let genesis = Genesis {
            dkg: self.dkg.settings(nodes.len()),
            nodes,
            verifiers,
            policy: self.policy.policy()?,
            epochs: quorumkey_ledger::EpochSettings {
                boundary_blocks: self
                    .dkg
                    .epoch_boundary_blocks
                    .unwrap_or(quorumkey_ledger::EpochSettings::default().boundary_blocks),
                refresh_blocks: self.dkg.refresh_every_blocks.unwrap_or(0),
            },
        };
        genesis.validate().map_err(|e| e.to_string())?;
        Ok(genesis)
    }
}

impl NetworkFile {
    /// The description clients use (`network.json`, `GET /v1/network`):
    /// each node's endpoints, key and p2p address, the threshold, the
    /// genesis verifiers, and the genesis itself (which the network id
    /// hashes), unattested and without devnet-only parts.
    pub fn client_description(&self) -> Result<NetworkJson, String> {
        let genesis = self.genesis()?;
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for (node, entry) in self.nodes.iter().zip(&genesis.nodes) {
            let key = quorumkey_crypto::group::public_key_from_sec1(&entry.secp256k1_key)
                .map_err(|e| format!("node {}: secp256k1_key: {e}", node.index))?;
            let (pub_key_x, pub_key_y) = quorumkey_crypto::group::public_key_to_xy_hex(&key);
            nodes.push(NetworkJsonNode {
                index: node.index,
                endpoint: node.rpc_url.endpoint(),
                api: node.rpc_url.to_string(),
                pub_key_x,
                pub_key_y,
                p2p_address: node.p2p_address.to_string(),
                log: None,
            });
        }
        Ok(NetworkJson {
            network_id: hex::encode(genesis.network_id()),
            threshold: genesis.threshold(),
            nodes,
            verifiers: genesis.verifiers.iter().map(|verifier| verifier.name.as_str().to_owned()).collect(),
            genesis: Some(hex::encode(commonware_codec::Encode::encode(&genesis))),
            attestation: None,
            dev_issuer: None,
            auxiliary: None,
            node_set: None,
        })
    }
}

/// `node-<i>/node.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's index in the network file; absent (as `node keygen`
    /// writes it): the node finds itself there by its keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u16>,
    /// The network description.
    pub network_file: PathBuf,
    /// The directory of this node's key files.
    pub key_dir: PathBuf,
    /// The directory of this node's database and consensus storage
    /// (created 0700; the node refuses to start if group or others may
    /// use it).
    pub data_dir: PathBuf,
    /// The file of the key-encryption key of this node's shares at rest
    /// (see `crate::kek`); absent: the `QUORUMKEY_KEK` environment
    /// variable must hold it. Best on another volume than `data_dir`, so
    /// that a copy of the data directory holds no key to its shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek_file: Option<PathBuf>,
    /// The address the p2p listener binds (every interface: `0.0.0.0:PORT`
    /// for an IPv4 `p2p_address`, `[::]:PORT` for an IPv6 one; the family
    /// must match); absent: the `p2p_address` the network lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2p_listen: Option<SocketAddr>,
    /// The address the API binds; absent: the address of the `rpc_url`
    /// the network lists (which must then be `http` to an IP address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_listen: Option<SocketAddr>,
    /// The client API's limits and options (`[rpc]`; defaults if absent).
    #[serde(default, skip_serializing_if = "RpcSettings::is_default")]
    pub rpc: RpcSettings,
    /// How this node reaches identity providers (`[providers]`; defaults
    /// if absent).
    #[serde(default, skip_serializing_if = "ProviderSettings::is_default")]
    pub providers: ProviderSettings,
    /// The HTTP server's connection limits and timeouts (`[http]`;
    /// defaults if absent).
    #[serde(default, skip_serializing_if = "HttpSettings::is_default")]
    pub http: HttpSettings,
    /// Nodes to dial besides the ledger's node sets, `CONSENSUS_KEY@IP:PORT`
    /// (the key in hex): what a node joining by an epoch change needs when
    /// the genesis nodes of `network.toml`, which it dials first while it
    /// replays the ledger, are gone. They accept it once the epoch change
    /// that adds it is decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bootstrap_peers: Vec<String>,
}

/// Parses a `bootstrap_peers` entry, `CONSENSUS_KEY@IP:PORT`.
pub fn parse_bootstrap_peer(entry: &str) -> Result<(ed25519::PublicKey, SocketAddr), String> {
    let bad = |why: &str| format!("bootstrap peer `{entry}`: {why} (expected CONSENSUS_KEY_HEX@IP:PORT)");
    let (key, address) = entry.trim().split_once('@').ok_or_else(|| bad("no `@`"))?;
    let bytes = hex::decode(key).map_err(|_| bad("the key is not hex"))?;
    let key = ed25519::PublicKey::decode(bytes::Bytes::from(bytes)).map_err(|_| bad("not an ed25519 key"))?;
    let address = address.parse::<SocketAddr>().map_err(|_| bad("the address is not IP:PORT"))?;
    Ok((key, address))
}

/// The `[providers]` section of `node.toml`: how this node reaches the
/// identity providers of registered verifiers (JWKS documents,
/// introspection endpoints), whose URLs anyone may register.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderSettings {
    /// FOR DEVELOPMENT ONLY: also connect to providers at loopback and
    /// private addresses (127.0.0.1, 10.0.0.0/8, 192.168.0.0/16, fd00::/8,
    /// link-local 169.254.0.0/16 ...). Off, the node connects only to
    /// public addresses, checked after DNS resolution, so no verifier can
    /// make it send requests into its own network. The devnet turns it on.
    pub allow_private_addresses: bool,
    /// Sustained introspection calls per second this node makes for one
    /// verifier; over it, logins of the verifier are refused ("rate
    /// limited") until the budget refills.
    pub calls_per_second_per_verifier: u32,
    /// Introspection calls for one verifier that may be made at once above
    /// that rate.
    pub call_burst_per_verifier: u32,
    /// Seconds an introspection answer about a token is reused (never past
    /// the token's own expiry); 0 turns the cache off.
    pub answer_cache_secs: u64,
    /// Most introspection answers kept.
    pub answer_cache_entries: u32,
    /// Seconds a verifier's JWKS keys are used before they are fetched
    /// again.
    pub jwks_max_age_secs: u64,
    /// Seconds after their last successful fetch that JWKS keys are still
    /// used while the provider does not answer; after that, logins of the
    /// verifier fail until it answers again. At least `jwks_max_age_secs`.
    pub jwks_max_stale_secs: u64,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        let limits = ProviderLimits::default();
        let jwks = JwksCachePolicy::default();
        Self {
            allow_private_addresses: false,
            calls_per_second_per_verifier: limits.calls_per_second_per_verifier,
            call_burst_per_verifier: limits.call_burst_per_verifier,
            answer_cache_secs: limits.answer_ttl.as_secs(),
            answer_cache_entries: u32::try_from(limits.answer_cache_entries).unwrap_or(u32::MAX),
            jwks_max_age_secs: jwks.max_age.as_secs(),
            jwks_max_stale_secs: jwks.max_stale.as_secs(),
        }
    }
}

/// Most introspection answers a node may be told to keep (about 4 MB).
pub(crate) const MAX_ANSWER_CACHE_ENTRIES: u32 = 1_000_000;

impl ProviderSettings {
    /// The development setting: providers at any address (the devnet's).
    pub fn development() -> Self {
        Self { allow_private_addresses: true, ..Self::default() }
    }

    fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("calls_per_second_per_verifier", self.calls_per_second_per_verifier),
            ("call_burst_per_verifier", self.call_burst_per_verifier),
        ] {
            if value == 0 {
                return Err(format!("providers.{name} must be at least 1"));
            }
        }
        if self.answer_cache_secs > 3600 {
            return Err("providers.answer_cache_secs must be at most 3600".to_owned());
        }
        if self.answer_cache_entries > MAX_ANSWER_CACHE_ENTRIES {
            return Err(format!("providers.answer_cache_entries must be at most {MAX_ANSWER_CACHE_ENTRIES}"));
        }
        if self.jwks_max_age_secs == 0 {
            return Err("providers.jwks_max_age_secs must be at least 1".to_owned());
        }
        if self.jwks_max_stale_secs < self.jwks_max_age_secs {
            return Err("providers.jwks_max_stale_secs must be at least providers.jwks_max_age_secs".to_owned());
        }
        Ok(())
    }

    /// The address rule.
    pub fn access(&self) -> ProviderAccess {
        ProviderAccess::new(self.allow_private_addresses)
    }

    /// The limits on introspection calls.
    pub fn limits(&self) -> ProviderLimits {
        ProviderLimits {
            calls_per_second_per_verifier: self.calls_per_second_per_verifier,
            call_burst_per_verifier: self.call_burst_per_verifier,
            answer_ttl: Duration::from_secs(self.answer_cache_secs),
            answer_cache_entries: self.answer_cache_entries as usize,
        }
    }

    /// The JWKS cache's policy.
    pub fn jwks_policy(&self) -> JwksCachePolicy {
        JwksCachePolicy {
            max_age: Duration::from_secs(self.jwks_max_age_secs),
            max_stale: Duration::from_secs(self.jwks_max_stale_secs),
            ..JwksCachePolicy::default()
        }
    }
}

/// The `[http]` section of `node.toml`: connections to the node's HTTP
/// server (the client JSON-RPC API, `/v1` and `/health`, `/metrics`).
/// See `quorumkey_node::http::server`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Connections open at once, in all. At the cap a new connection
    /// replaces the one idle the longest, or is closed if none is idle.
    /// Lowered at start to what the process's open-file limit leaves room
    /// for.
    pub max_connections: u32,
    /// Connections open at once from one client address (an IPv4 address
    /// or an IPv6 /64; trusted proxies are not counted). At the cap a new
    /// connection replaces that address's connection idle the longest, or
    /// is closed.
    pub max_connections_per_address: u32,
    /// Seconds a client has to send a request's whole head (request line
    /// and headers), from the first byte; and to send its first request on
    /// a new connection.
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body, from the end
    /// of its head (a slower body gets 408 and the connection is closed).
    pub body_timeout_secs: u64,
    /// Seconds a kept-alive connection may wait for its next request.
    pub idle_timeout_secs: u64,
    /// Reverse proxies whose `X-Forwarded-For` the node believes:
    /// addresses or CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`). Empty: the
    /// client is the TCP peer.
    pub trusted_proxies: Vec<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_address: 128,
            header_timeout_secs: 10,
            body_timeout_secs: 20,
            idle_timeout_secs: 30,
            trusted_proxies: Vec::new(),
        }
    }
}

impl HttpSettings {
    /// Connection caps lifted to the global one, for a benchmark or a
    /// test whose whole load comes from one address.
    pub fn one_address_load() -> Self {
        let defaults = Self::default();
        Self { max_connections_per_address: defaults.max_connections, ..defaults }
    }

    fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("max_connections", u64::from(self.max_connections)),
            ("max_connections_per_address", u64::from(self.max_connections_per_address)),
            ("header_timeout_secs", self.header_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
        ] {
            if value == 0 {
                return Err(format!("http.{name} must be at least 1"));
            }
        }
        for (name, value) in [
            ("header_timeout_secs", self.header_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
        ] {
            if value > MAX_HTTP_TIMEOUT_SECS {
                return Err(format!("http.{name} is {value}; at most {MAX_HTTP_TIMEOUT_SECS}"));
            }
        }
        crate::http::client_address::TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| format!("http.trusted_proxies: {e}"))?;
        Ok(())
    }
}

/// The longest `[http]` timeout (an hour).
pub(crate) const MAX_HTTP_TIMEOUT_SECS: u64 = 3600;

/// Default of `[rpc] max_pending_records_per_verifier`.
pub(crate) const DEFAULT_MAX_PENDING_RECORDS_PER_VERIFIER: u64 = 1_000_000;
/// Default of `[rpc] max_pending_records_per_address`.
pub(crate) const DEFAULT_MAX_PENDING_RECORDS_PER_ADDRESS: u64 = 10_000;
/// Default of `[rpc] max_pending_records`.
pub(crate) const DEFAULT_MAX_PENDING_RECORDS: u64 = 2_000_000;

/// The `[rpc]` section of `node.toml`: limits and options of the client
/// JSON-RPC API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcSettings {
    /// The signer whose authorization `KeyAssign` needs (a compressed
    /// secp256k1 key, 66 hex digits): the anti-abuse service that checks a
    /// user's token before a key leaves the pool for them. Required unless
    /// `allow_unsigned_key_assign` is set.
    pub key_assign_signer: Option<String>,
    /// Serve `KeyAssign` without a signer's authorization (default false):
    /// anyone may then make this node take keys from the pool for any
    /// verifier_id, within the ledger's assignment budgets. For development
    /// networks and for networks whose verifiers all need no signer.
    pub allow_unsigned_key_assign: bool,
    /// Sustained requests per second from one client address (an IPv4
    /// address or an IPv6 /64; see `client_address`), `/jrpc` and `/v1`
    /// together.
    pub requests_per_second_per_ip: u32,
    /// Requests one client address may send at once above that rate.
    pub burst_per_ip: u32,
    /// Sustained commitments (logins) per second for one verifier.
    pub logins_per_second_per_verifier: u32,
    /// Sustained key assignments per second for one verifier.
    pub assignments_per_second_per_verifier: u32,
    /// Most unexpired login records that commitments for one verifier may
    /// hold on this node (each kept about a day; see
    /// `quorumkey_node::pending_records`).
    pub max_pending_records_per_verifier: u64,
    /// Most unexpired login records that commitments from one client
    /// address (an IPv4 address or an IPv6 /64) may hold on this node.
    /// Counted in memory: a restart forgets these counts.
    pub max_pending_records_per_address: u64,
    /// Most unexpired login records that commitments may hold on this node
    /// in all: the bound on the disk they take.
    pub max_pending_records: u64,
}

impl Default for RpcSettings {
    fn default() -> Self {
        Self {
            key_assign_signer: None,
            allow_unsigned_key_assign: false,
            requests_per_second_per_ip: 100,
            burst_per_ip: 200,
            logins_per_second_per_verifier: 500,
            assignments_per_second_per_verifier: 50,
            max_pending_records_per_verifier: DEFAULT_MAX_PENDING_RECORDS_PER_VERIFIER,
            max_pending_records_per_address: DEFAULT_MAX_PENDING_RECORDS_PER_ADDRESS,
            max_pending_records: DEFAULT_MAX_PENDING_RECORDS,
        }
    }
}

impl RpcSettings {
    /// Every rate limit lifted, unsigned `KeyAssign` allowed: for a benchmark or a
    /// test whose whole load comes from one address and one verifier
    /// (limits made for real users would refuse the load itself).
    pub fn unlimited() -> Self {
        Self {
            key_assign_signer: None,
            allow_unsigned_key_assign: true,
            requests_per_second_per_ip: 1_000_000,
            burst_per_ip: 1_000_000,
            logins_per_second_per_verifier: 1_000_000,
            assignments_per_second_per_verifier: 1_000_000,
            max_pending_records_per_verifier: DEFAULT_MAX_PENDING_RECORDS,
            max_pending_records_per_address: DEFAULT_MAX_PENDING_RECORDS,
            max_pending_records: DEFAULT_MAX_PENDING_RECORDS,
        }
    }

    fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.key_assign_signer, self.allow_unsigned_key_assign) {
            (Some(signer), _) => {
                parse_point(signer).map_err(|e| format!("rpc.key_assign_signer: {e}"))?;
            }
            (None, true) => {}
            (None, false) => {
                return Err("rpc.key_assign_signer is not set, so KeyAssign would give any caller a key from the \
                            pool for any verifier_id: set it to your signer's compressed secp256k1 key (66 hex \
                            digits), or set rpc.allow_unsigned_key_assign = true to serve unsigned requests \
                            (development only)"
                    .to_owned());
            }
        }
        for (name, value) in [
            ("requests_per_second_per_ip", self.requests_per_second_per_ip),
            ("burst_per_ip", self.burst_per_ip),
            ("logins_per_second_per_verifier", self.logins_per_second_per_verifier),
            ("assignments_per_second_per_verifier", self.assignments_per_second_per_verifier),
        ] {
            if value == 0 {
                return Err(format!("rpc.{name} must be at least 1"));
            }
        }
        for (name, value) in [
            ("max_pending_records_per_verifier", self.max_pending_records_per_verifier),
            ("max_pending_records_per_address", self.max_pending_records_per_address),
            ("max_pending_records", self.max_pending_records),
        ] {
            if value == 0 {
                return Err(format!("rpc.{name} must be at least 1"));
            }
        }
        Ok(())
    }
}

impl NodeConfig {
    /// Reads `node.toml`, resolving its paths against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = read_toml(path)?;
        config.rpc.validate().map_err(|reason| ConfigError::Invalid { path: path.to_owned(), reason })?;
        config.providers.validate().map_err(|reason| ConfigError::Invalid { path: path.to_owned(), reason })?;
        config.http.validate().map_err(|reason| ConfigError::Invalid { path: path.to_owned(), reason })?;
        for entry in &config.bootstrap_peers {
            parse_bootstrap_peer(entry).map_err(|reason| ConfigError::Invalid { path: path.to_owned(), reason })?;
        }
        let base = path.parent().unwrap_or(Path::new("."));
        for field in [&mut config.network_file, &mut config.key_dir, &mut config.data_dir]
            .into_iter()
            .chain(config.kek_file.as_mut())
        {
            if field.is_relative() {
                *field = base.join(&*field);
            }
        }
        Ok(config)
    }
}

/// A node's `[rpc]`, `[providers]` and `[http]` sections, as written into
/// its `node.toml`.
pub(crate) struct NodeSettings<'a> {
    pub(crate) listen: ListenOverrides,
    pub(crate) rpc: &'a RpcSettings,
    pub(crate) providers: &'a ProviderSettings,
    pub(crate) http: &'a HttpSettings,
}

/// Fills a new node directory `dir` (which exists, mode 0700): fresh
/// secret keys (0600), a key-encryption key (0600) and a `node.toml` with
/// `index` (or none: the node finds itself by its keys) and `network_file`;
/// returns the keys.
pub(crate) fn write_node_dir(
    dir: &Path,
    index: Option<u16>,
    network_file: PathBuf,
    settings: &NodeSettings<'_>,
    rng: &mut quorumkey_crypto::random::OsRng,
) -> Result<NodeIdentity, ConfigError> {
    let identity = NodeIdentity::generate(rng);
    identity.save(dir)?;
    crate::kek::write_new_kek(&dir.join(crate::kek::KEK_FILE))?;
    let config = NodeConfig {
        index,
        network_file,
        key_dir: PathBuf::from("."),
        data_dir: PathBuf::from("data"),
        kek_file: Some(PathBuf::from(crate::kek::KEK_FILE)),
        p2p_listen: settings.listen.p2p,
        rpc_listen: settings.listen.rpc,
        rpc: settings.rpc.clone(),
        providers: settings.providers.clone(),
        http: settings.http.clone(),
        bootstrap_peers: Vec::new(),
    };
    let config_path = dir.join(NODE_CONFIG_FILE);
    write_file(&config_path, &to_toml(&config, &config_path)?)?;
    Ok(identity)
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_owned(), source })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), reason: e.to_string() })
}

fn write_file(path: &Path, text: &str) -> Result<(), ConfigError> {
    std::fs::write(path, text).map_err(|source| ConfigError::Io { path: path.to_owned(), source })
}

fn to_toml<T: Serialize>(value: &T, path: &Path) -> Result<String, ConfigError> {
    toml::to_string_pretty(value).map_err(|e| ConfigError::Invalid { path: path.to_owned(), reason: e.to_string() })
}

/// Ports and verifiers for a new network.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Number of nodes.
    pub nodes: u16,
    /// Node i listens for peers on `p2p_base_port + i` and for clients on
    /// `rpc_base_port + i`, on 127.0.0.1.
    pub p2p_base_port: u16,
    /// See `p2p_base_port`.
    pub rpc_base_port: u16,
    /// Verifiers registered at genesis.
    pub verifiers: Vec<NetworkVerifier>,
    /// DKG settings (absent fields take the defaults).
    pub dkg: NetworkDkg,
    /// The abuse policy (absent fields take the defaults).
    pub policy: NetworkPolicyFile,
    /// Each node's client API settings.
    pub rpc: RpcSettings,
    /// How each node reaches identity providers.
    pub providers: ProviderSettings,
    /// Each node's HTTP connection settings.
    pub http: HttpSettings,
}

/// Writes a new network into `out`: `network.toml`, and for each node
/// `node-<i>/node.toml`, its keys and the key-encryption key of its shares
/// at rest (`kek.key`; mode 0600, in a 0700 directory).
/// Refuses a directory that exists and is not empty.
pub fn init_network(out: &Path, options: &InitOptions) -> Result<NetworkFile, ConfigError> {
    if options.nodes == 0 || usize::from(options.nodes) > quorumkey_ledger::genesis::MAX_NODES {
        return Err(ConfigError::Invalid {
            path: out.to_owned(),
            reason: format!("a network has 1 to {} nodes", quorumkey_ledger::genesis::MAX_NODES),
        });
    }
    options.rpc.validate().map_err(|reason| ConfigError::Invalid { path: out.to_owned(), reason })?;
    options.policy.policy().map_err(|reason| ConfigError::Invalid { path: out.to_owned(), reason })?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ConfigError::Io { path, source }
    };
    if out.exists() && std::fs::read_dir(out).map_err(io(out))?.next().is_some() {
        return Err(ConfigError::NotEmpty(out.to_owned()));
    }
    let highest = u32::from(options.nodes);
    for base in [options.p2p_base_port, options.rpc_base_port] {
        if u32::from(base) + highest > u32::from(u16::MAX) {
            return Err(ConfigError::Invalid {
                path: out.to_owned(),
                reason: format!("base port {base} + {highest} nodes exceeds 65535"),
            });
        }
    }
    std::fs::create_dir_all(out).map_err(io(out))?;
    let mut rng = os_rng();
    let mut enrollments = Vec::with_capacity(usize::from(options.nodes));
    for index in 1..=options.nodes {
        let dir = out.join(format!("node-{index}"));
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(io(&dir))?;
        let settings = NodeSettings {
            listen: ListenOverrides::default(),
            rpc: &options.rpc,
            providers: &options.providers,
            http: &options.http,
        };
        let identity = write_node_dir(&dir, Some(index), PathBuf::from("..").join(NETWORK_FILE), &settings, &mut rng)?;
        // The same two steps as operators on their own machines take
        // (`node keygen`, `network genesis`), numbered as the directories.
        enrollments.push(crate::enrollment::Enrollment::sign(
            &identity,
            SocketAddr::from(([127, 0, 0, 1], options.p2p_base_port + index)),
            &RpcUrl::parse(&SocketAddr::from(([127, 0, 0, 1], options.rpc_base_port + index)).to_string())
                .map_err(|reason| ConfigError::Invalid { path: out.to_owned(), reason })?,
        ));
    }
    let path = out.join(NETWORK_FILE);
    let parts = crate::enrollment::GenesisParts {
        verifiers: options.verifiers.clone(),
        dkg: options.dkg.clone(),
        policy: options.policy.clone(),
    };
    let network =
        crate::enrollment::network_from_enrollments(&enrollments, crate::enrollment::NodeOrder::AsGiven, parts)
            .map_err(|e| ConfigError::Invalid { path: path.clone(), reason: e.to_string() })?;
    network.genesis().map_err(|reason| ConfigError::Invalid { path: path.clone(), reason })?;
    write_file(&path, &to_toml(&network, &path)?)?;
    Ok(network)
}
