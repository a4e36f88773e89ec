//! A local network on 127.0.0.1: one `quorumkey node run` process per node,
//! supervised. Creates the network's configuration on first use and reuses
//! it (and each node's data) afterwards, so a devnet can be stopped and
//! started again without losing anything. Writes `network.json`, the
//! description clients need, once every node has finalized a block.
//!
//! [`Devnet`] is the handle tests, the demo and the benchmark drive: it
//! starts, stops and kills nodes when told and never restarts one by
//! itself. [`run_until_stopped`] (`quorumkey devnet`) adds supervision: it
//! restarts a node whose process exits ([`crate::restart_policy`]) and
//! answers `quorumkey devnet-node` on the directory's control socket
//! ([`crate::control_socket`]).

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::process::{Child, Command};

use quorumkey_client::node_api_client::NodeApiClient;
use quorumkey_login::node_api::{EpochNodeInfo, EpochResponse};
use quorumkey_node::addresses::RpcUrl;
use quorumkey_node::config::NetworkVerifier;
use quorumkey_node::config::{
    ConfigError, HttpSettings, InitOptions, NETWORK_FILE, NetworkDkg, NetworkFile, NetworkPolicyFile, ProviderSettings,
    RpcSettings, init_network,
};
use quorumkey_node::enrollment::{ENROLLMENT_FILE, Enrollment};
use quorumkey_node::identity::{owner_public_bytes, save_owner_key};
use quorumkey_node::run::node_config_path;

use crate::control_socket::{
    ControlCall, ControlError, ControlRequest, ControlResponse, ControlServer, NodeChange, NodeReport, NodeState,
    SupervisorLock, format_duration_secs,
};
use crate::dev_issuer::{DEV_AUDIENCE, DEV_VERIFIER, dev_verifier_config};
pub use crate::node_set::{ChangeWatch, CompletedChange, NodeSetChange, Watched};
use crate::node_set::{NodeSetFile, NodeSetFileError, PendingChange};
use crate::restart_policy::SupervisedNode;
pub use quorumkey_login::network::{NetworkJson, NetworkJsonAuxiliary, NetworkJsonDevIssuer, NetworkJsonNode};

/// The file clients read.
pub const NETWORK_JSON: &str = "network.json";

/// Why a devnet could not run.
#[derive(Debug, Error)]
pub enum DevnetError {
    /// The configuration could not be written or read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The directory holds a network of another size.
    #[error("{dir} holds a network of {found} nodes, not {wanted}; use another --dir or --nodes {found}")]
    OtherNetwork {
        /// The directory.
        dir: PathBuf,
        /// Nodes there.
        found: usize,
        /// Nodes asked for.
        wanted: usize,
    },
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The development issuer's process exited.
    #[error("the development issuer exited ({status}); its log is {log}:\n{tail}")]
    IssuerExited {
        /// Exit status.
        status: String,
        /// Its log file.
        log: String,
        /// The log's end.
        tail: String,
    },
    /// A node process exited.
    #[error("node {index} exited ({status}); its log is {log}:\n{tail}")]
    NodeExited {
        /// The node.
        index: u16,
        /// How it exited.
        status: String,
        /// Its log file.
        log: String,
        /// The end of its log.
        tail: String,
    },
    /// The control socket could not be served, or another supervisor runs
    /// in the directory.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The network did not become ready in time.
    #[error("the network did not finalize a block within {0:?}; see the node logs in the devnet directory")]
    NotReady(Duration),
    /// The record of the nodes added and removed could not be read or
    /// written.
    #[error(transparent)]
    NodeSetFile(#[from] NodeSetFileError),
    /// A node could not be added or removed (the reason says why and what
    /// to do).
    #[error("{0}")]
    Change(String),
}

/// How to start a devnet.
#[derive(Clone, Debug)]
pub struct DevnetOptions {
    /// Number of nodes (for a new network).
    pub nodes: u16,
    /// The devnet directory.
    pub dir: PathBuf,
    /// Node i listens for peers on this + i (new network only).
    pub p2p_base_port: u16,
    /// Node i serves clients on this + i (new network only).
    pub rpc_base_port: u16,
    /// The `quorumkey` binary to run nodes with.
    pub binary: PathBuf,
    /// DKG settings (new network only).
    pub dkg: NetworkDkg,
    /// The abuse policy (new network only; defaults if empty).
    pub policy: NetworkPolicyFile,
    /// The nodes' client API limits (new network only; the devnet adds its
    /// KeyAssign signer).
    pub rpc: RpcSettings,
    /// How the nodes reach identity providers (new network only). A devnet
    /// allows private addresses (its development issuer is on 127.0.0.1):
    /// [`ProviderSettings::development`].
    pub providers: ProviderSettings,
    /// The nodes' HTTP connection settings (new network only).
    pub http: HttpSettings,
}

/// A base port such that `base..=base + nodes` are all free on 127.0.0.1
/// and at least `nodes + 1` away from `avoid`. Ports stay in
/// 20000..32000, below the kernel's ephemeral range (32768 and up): a
/// node's outgoing connection must never take the listening port of a
/// node that is down for a restart. `None` if 200 tries found none.
pub fn free_port_base(nodes: u16, avoid: u16) -> Option<u16> {
    // Processes started together (a test's subprocesses, two devnets) have
    // neighbouring ids: spread them over the range, and by the clock.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let seed = u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(nanos);
    let start = (seed % 12_000) as u16;
    (0..200u16).map(|k| (start.wrapping_add(k.wrapping_mul(97))) % 12_000 + 20_000).find(|&base| {
        // The base port itself too: a devnet's development issuer uses it.
        base.abs_diff(avoid) > nodes
            && (0..=nodes).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
    })
}

impl DevnetOptions {
    /// A new network of `nodes` nodes in `dir` on free ports of 127.0.0.1
    /// (see [`free_port_base`]), run with `binary`, default client limits.
    pub fn on_free_ports(nodes: u16, dir: PathBuf, binary: PathBuf, dkg: NetworkDkg) -> Option<Self> {
        let p2p_base_port = free_port_base(nodes, 0)?;
        let rpc_base_port = free_port_base(nodes, p2p_base_port)?;
        Some(Self {
            nodes,
            dir,
            p2p_base_port,
            rpc_base_port,
            binary,
            dkg,
            policy: NetworkPolicyFile::default(),
            rpc: RpcSettings::default(),
            providers: ProviderSettings::development(),
            http: HttpSettings::default(),
        })
    }
}

/// The file of the devnet verifier owner's key (mode 0600).
pub const DEV_VERIFIER_OWNER_KEY: &str = "dev-verifier-owner.key";
/// The file of the devnet KeyAssign signer's key (mode 0600).
pub const DEV_SIGNER_KEY: &str = "dev-signer.key";

/// The development issuer's address from the devnet's registered dev
/// verifier (its `issuer` is `http://127.0.0.1:PORT`).
fn dev_issuer_address(network: &NetworkFile) -> Option<String> {
    let verifier = network.verifiers.iter().find(|v| v.name == DEV_VERIFIER)?;
    let config: serde_json::Value = serde_json::from_str(&verifier.config).ok()?;
    let issuer = config.get("issuer")?.as_str()?;
    issuer.strip_prefix("http://").map(str::to_owned)
}

/// The devnet signer's public key (compressed, hex), if it has one.
fn devnet_signer_key(dir: &Path) -> Option<String> {
    quorumkey_node::identity::load_owner_key(&dir.join(DEV_SIGNER_KEY))
        .ok()
        .map(|key| hex::encode(owner_public_bytes(&key)))
}

/// The development issuer's log file in a devnet directory.
fn dev_issuer_log_path(dir: &Path) -> PathBuf {
    dir.join("dev-issuer.log")
}

/// The last `lines` lines of a log file, for a message (read from its last
/// 16 KiB: a node's log grows for as long as the devnet runs).
fn log_tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 16 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else { return String::new() };
    let start = file.metadata().map_or(0, |meta| meta.len()).saturating_sub(WINDOW);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).and_then(|_| file.take(WINDOW).read_to_end(&mut bytes)).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    // A window that starts inside the file starts inside a line: skip it.
    let whole = text.lines().skip(usize::from(start > 0));
    let mut tail: Vec<&str> = whole.collect();
    let keep = tail.len().saturating_sub(lines);
    tail.drain(..keep);
    tail.join("\n")
}

/// Node `index`'s log file in a devnet directory.
fn node_log_path(dir: &Path, index: u16) -> PathBuf {
    dir.join(format!("node-{index}")).join("node.log")
}

/// One node the devnet made: a genesis node (its number is its genesis
/// index) or one added since (`node-K`, numbered after them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevnetNode {
    /// Its number: its directory is `node-<number>`.
    pub number: u16,
    /// Its ed25519 consensus key, hex.
    pub consensus_key: String,
    /// Its compressed secp256k1 key, hex.
    pub secp256k1_key: String,
    /// Where its peers reach it.
    pub p2p_address: SocketAddr,
    /// Where clients reach it.
    pub rpc_url: RpcUrl,
}

/// A running devnet. Dropping it kills its nodes.
#[derive(Debug)]
pub struct Devnet {
    pub(crate) dir: PathBuf,
    binary: PathBuf,
    pub(crate) network: NetworkFile,
    /// Every node made, by number: the genesis's, then those added.
    pub(crate) nodes: Vec<DevnetNode>,
    /// What was added and removed since the genesis.
    pub(crate) node_set: NodeSetFile,
    /// The node set in force as a node last told it (`None`: not asked;
    /// the genesis set is assumed).
    pub(crate) in_force: Option<EpochResponse>,
    /// Each node's process, by number (node `k` at `k - 1`).
    children: Vec<Option<Child>>,
    issuer: Option<Child>,
}

/// The network in `options.dir`: created on first use (with the devnet's
/// development verifier and KeyAssign signer), loaded afterwards (then it
/// must have `options.nodes` nodes). Starts nothing.
pub fn prepare_network(options: &DevnetOptions) -> Result<NetworkFile, DevnetError> {
    let network_path = options.dir.join(NETWORK_FILE);
    let network = if network_path.exists() {
        let network = NetworkFile::load(&network_path)?;
        if network.nodes.len() != usize::from(options.nodes) {
            return Err(DevnetError::OtherNetwork {
                dir: options.dir.clone(),
                found: network.nodes.len(),
                wanted: usize::from(options.nodes),
            });
        }
        network
    } else {
        // The development issuer listens on the RPC base port (node i
        // uses base + i); its verifier is registered at genesis, owned
        // by a key kept in the devnet directory.
        let new_key = || {
            use quorumkey_crypto::k256::elliptic_curve::Generate;
            quorumkey_crypto::k256::ecdsa::SigningKey::generate_from_rng(&mut quorumkey_crypto::random::os_rng())
        };
        let (owner, signer) = (new_key(), new_key());
        // Every node requires the devnet signer's authorization on
        // KeyAssign, as a production network would require its own.
        let rpc =
            RpcSettings { key_assign_signer: Some(hex::encode(owner_public_bytes(&signer))), ..options.rpc.clone() };
        let issuer = format!("http://127.0.0.1:{}", options.rpc_base_port);
        init_network(
            &options.dir,
            &InitOptions {
                nodes: options.nodes,
                p2p_base_port: options.p2p_base_port,
                rpc_base_port: options.rpc_base_port,
                verifiers: vec![NetworkVerifier {
                    name: DEV_VERIFIER.to_owned(),
                    owner: hex::encode(owner_public_bytes(&owner)),
                    config: dev_verifier_config(&issuer, DEV_AUDIENCE),
                }],
                dkg: options.dkg.clone(),
                policy: options.policy.clone(),
                rpc,
                providers: options.providers.clone(),
                http: options.http.clone(),
            },
        )
        .and_then(|network| {
            for (file, key) in [(DEV_VERIFIER_OWNER_KEY, &owner), (DEV_SIGNER_KEY, &signer)] {
                save_owner_key(&options.dir.join(file), key)
                    .map_err(|e| ConfigError::Invalid { path: options.dir.join(file), reason: e.to_string() })?;
            }
            Ok(network)
        })?
    };
    Ok(network)
}

/// Node `number`'s directory in a devnet directory.
pub(crate) fn node_dir(dir: &Path, number: u16) -> PathBuf {
    dir.join(format!("node-{number}"))
}

/// An added node as its enrollment (in its directory) describes it.
fn added_node(dir: &Path, number: u16) -> Result<DevnetNode, DevnetError> {
    let path = node_dir(dir, number).join(ENROLLMENT_FILE);
    let enrollment = Enrollment::load(&path)?;
    enrollment.verify().map_err(|e| ConfigError::Invalid { path: path.clone(), reason: e.to_string() })?;
    Ok(DevnetNode {
        number,
        consensus_key: enrollment.consensus_key,
        secp256k1_key: enrollment.secp256k1_key,
        p2p_address: enrollment.p2p_address,
        rpc_url: enrollment.rpc_url,
    })
}

/// How long one node may take to answer the devnet's questions about the
/// epoch.
pub(crate) const EPOCH_QUESTION_LIMIT: Duration = Duration::from_secs(5);

impl Devnet {
    /// Creates (or reuses) the network in `options.dir` ([`prepare_network`])
    /// and starts every node: the genesis's and those added since, except
    /// those removed (`node-set.toml`, [`crate::node_set`]).
    pub fn launch(options: &DevnetOptions) -> Result<Self, DevnetError> {
        let network = prepare_network(options)?;
        let node_set = NodeSetFile::load(&options.dir, network.nodes.len())?;
        let mut nodes: Vec<DevnetNode> = network
            .nodes
            .iter()
            .map(|node| DevnetNode {
                number: node.index,
                consensus_key: node.consensus_key.clone(),
                secp256k1_key: node.secp256k1_key.clone(),
                p2p_address: node.p2p_address,
                rpc_url: node.rpc_url.clone(),
            })
            .collect();
        for &number in &node_set.added {
            nodes.push(added_node(&options.dir, number)?);
        }
        let highest = nodes.iter().map(|node| node.number).max().unwrap_or(0);
        let mut devnet = Self {
            dir: options.dir.clone(),
            binary: options.binary.clone(),
            children: (0..highest).map(|_| None).collect(),
            network,
            nodes,
            node_set,
            in_force: None,
            issuer: None,
        };
        devnet.start_dev_issuer()?;
        let starting: Vec<u16> = devnet
            .nodes
            .iter()
            .map(|node| node.number)
            .filter(|&number| devnet.node_set.removed_in(number).is_none())
            .collect();
        for number in starting {
            devnet.start_node(number)?;
        }
        Ok(devnet)
    }

    /// Starts the development issuer (a `quorumkey dev-issuer` process), if
    /// the network registers one.
    fn start_dev_issuer(&mut self) -> Result<(), DevnetError> {
        let Some(address) = dev_issuer_address(&self.network) else { return Ok(()) };
        let signer_key = self.dir.join(DEV_SIGNER_KEY);
        let mut args = vec!["dev-issuer".as_ref(), "--listen".as_ref(), std::ffi::OsStr::new(&address)];
        if signer_key.exists() {
            args.extend(["--signer-key".as_ref(), signer_key.as_os_str()]);
        }
        self.issuer = Some(self.spawn_logged(&args, &dev_issuer_log_path(&self.dir))?);
        Ok(())
    }

    /// Runs this devnet's binary with `args`, its output appended to
    /// `log_path`; killed if the devnet is dropped.
    fn spawn_logged(&self, args: &[&std::ffi::OsStr], log_path: &Path) -> Result<Child, DevnetError> {
        let io = |source| DevnetError::Io { path: log_path.to_owned(), source };
        let log = OpenOptions::new().create(true).append(true).open(log_path).map_err(io)?;
        let log_err = log.try_clone().map_err(io)?;
        Command::new(&self.binary)
            .args(args)
            // Each node has its KEK file: a variable in the developer's
            // shell would conflict with it.
            .env_remove(quorumkey_node::kek::KEK_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| DevnetError::Io { path: self.binary.clone(), source })
    }

    /// The network description.
    pub fn network(&self) -> &NetworkFile {
        &self.network
    }

    /// The devnet directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every node the devnet made, by number (removed ones too).
    pub fn nodes(&self) -> &[DevnetNode] {
        &self.nodes
    }

    /// The epoch from which node `number` is out of the network, if it was
    /// removed (it is not started again).
    pub fn removed_in(&self, number: u16) -> Option<u64> {
        self.node_set.removed_in(number)
    }

    /// The change decided whose epoch is not in force yet.
    pub fn pending_change(&self) -> Option<&PendingChange> {
        self.node_set.pending.as_ref()
    }

    /// What node `number` is about to do in the pending change.
    pub fn node_change(&self, number: u16) -> Option<NodeChange> {
        let pending = self.node_set.pending.as_ref()?;
        if pending.added == Some(number) {
            Some(NodeChange::Joining { epoch: pending.epoch })
        } else if pending.removed == Some(number) {
            Some(NodeChange::Leaving { epoch: pending.epoch })
        } else {
            None
        }
    }

    /// The node set in force as a node last told the devnet (at start and
    /// after each change; `None` before it asked).
    pub fn set_in_force(&self) -> Option<&EpochResponse> {
        self.in_force.as_ref()
    }

    /// The number of the node with this consensus key (hex).
    pub(crate) fn number_of(&self, consensus_key: &str) -> Option<u16> {
        self.nodes.iter().find(|node| node.consensus_key == consensus_key).map(|node| node.number)
    }

    /// A client of node `number`.
    pub fn client(&self, number: u16) -> Option<NodeApiClient> {
        self.nodes.iter().find(|node| node.number == number).map(|node| NodeApiClient::new(node.rpc_url.to_string()))
    }

    /// Starts node `index` (again).
    pub fn start_node(&mut self, index: u16) -> Result<(), DevnetError> {
        if let Some(epoch) = self.node_set.removed_in(index) {
            return Err(DevnetError::Change(format!(
                "node {index} was removed from the network (epoch {epoch} is in force without it); it is not started again"
            )));
        }
        let config = node_config_path(&self.dir, index);
        let args = ["node".as_ref(), "run".as_ref(), "--config".as_ref(), config.as_os_str()];
        let child = self.spawn_logged(&args, &node_log_path(&self.dir, index))?;
        let position = usize::from(index).saturating_sub(1);
        if self.children.len() <= position {
            self.children.resize_with(position + 1, || None);
        }
        if let Some(slot) = self.children.get_mut(position) {
            *slot = Some(child);
        }
        Ok(())
    }

    /// The process id of node `index`, if it runs (to signal it, e.g.
    /// SIGSTOP for a hung node).
    pub fn pid(&self, index: u16) -> Option<u32> {
        self.children.get(usize::from(index).checked_sub(1)?)?.as_ref()?.id()
    }

    /// Kills node `index` at once (SIGKILL), as a crash would.
    pub async fn kill_node(&mut self, index: u16) {
        let Some(position) = usize::from(index).checked_sub(1) else { return };
        if let Some(Some(mut child)) = self.children.get_mut(position).map(Option::take) {
            let _ = child.kill().await;
        }
    }

    /// Stops node `index` as an operator would (SIGTERM: it stops serving
    /// and writes what it acknowledged), waiting up to `limit` before
    /// killing it; true if it stopped on its own.
    pub async fn stop_node(&mut self, index: u16, limit: Duration) -> bool {
        let Some(position) = usize::from(index).checked_sub(1) else { return false };
        let Some(Some(mut child)) = self.children.get_mut(position).map(Option::take) else {
            return false;
        };
        if let Some(pid) = child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => status.is_ok_and(|status| status.success()),
            Err(_) => {
                let _ = child.kill().await;
                false
            }
        }
    }

    /// Asks every node to stop (SIGTERM) and waits for them.
    pub async fn stop(mut self) {
        for child in self.children.iter_mut().flatten().chain(self.issuer.iter_mut()) {
            if let Some(pid) = child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        for child in self.children.iter_mut().flatten().chain(self.issuer.iter_mut()) {
            if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }

    /// An error if a node process (or the development issuer) has exited.
    pub fn check_alive(&mut self) -> Result<(), DevnetError> {
        self.check_issuer()?;
        let count = u16::try_from(self.children.len()).unwrap_or(u16::MAX);
        for index in 1..=count {
            if let Some(status) = self.node_exit(index) {
                let log = node_log_path(&self.dir, index);
                return Err(DevnetError::NodeExited {
                    index,
                    status: status.to_string(),
                    log: log.display().to_string(),
                    tail: log_tail(&log, 15),
                });
            }
        }
        Ok(())
    }

    /// An error if the development issuer has exited.
    pub fn check_issuer(&mut self) -> Result<(), DevnetError> {
        if let Some(issuer) = &mut self.issuer
            && let Ok(Some(status)) = issuer.try_wait()
        {
            self.issuer = None;
            let log = dev_issuer_log_path(&self.dir);
            return Err(DevnetError::IssuerExited {
                status: status.to_string(),
                log: log.display().to_string(),
                tail: log_tail(&log, 15),
            });
        }
        Ok(())
    }

    /// How node `index`'s process ended, if it has; the node then counts as
    /// not running (as after [`Self::kill_node`]) until started again.
    /// `None` while it runs, or if it was not started.
    pub fn node_exit(&mut self, index: u16) -> Option<ExitStatus> {
        let slot = self.children.get_mut(usize::from(index).checked_sub(1)?)?;
        let status = slot.as_mut()?.try_wait().ok()??;
        *slot = None;
        Some(status)
    }

    /// Waits until every running node has applied at least `height`.
    pub async fn wait_for_height(&mut self, height: u64, limit: Duration) -> Result<(), DevnetError> {
        let deadline = Instant::now() + limit;
        loop {
            self.check_alive()?;
            let mut ready = true;
            for (position, child) in self.children.iter().enumerate() {
                if child.is_none() {
                    continue;
                }
                let Some(client) = u16::try_from(position + 1).ok().and_then(|number| self.client(number)) else {
                    continue;
                };
                match client.status().await {
                    Ok(status) if status.height >= height => {}
                    _ => ready = false,
                }
            }
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DevnetError::NotReady(limit));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The client description of this network: the nodes of the set in
    /// force as the devnet last learned it ([`Self::refresh_set_in_force`];
    /// the genesis set until then), each at its index in that set, with
    /// its log file.
    pub fn network_json(&self) -> Result<NetworkJson, DevnetError> {
        let invalid = |reason| ConfigError::Invalid { path: self.dir.join(NETWORK_FILE), reason };
        let mut description = self.network.client_description().map_err(invalid)?;
        for node in &mut description.nodes {
            node.log = Some(node_log_path(&self.dir, node.index).display().to_string());
        }
        if let Some(in_force) = self.in_force.as_ref().filter(|answer| answer.epoch > 0) {
            let nodes = in_force.nodes.iter().map(|info| self.described_node(info)).collect::<Result<Vec<_>, String>>();
            description.nodes = nodes.map_err(invalid)?;
            let count = u32::try_from(description.nodes.len()).unwrap_or(u32::MAX);
            description.threshold = quorumkey_crypto::shamir::majority_threshold(count) as usize;
        }
        let dev_issuer = dev_issuer_address(&self.network).map(|address| {
            let issuer = format!("http://{address}");
            NetworkJsonDevIssuer {
                jwks_url: format!("{issuer}/jwks"),
                token_endpoint: format!("{issuer}/dev/token"),
                verifier: DEV_VERIFIER.to_owned(),
                audience: DEV_AUDIENCE.to_owned(),
                issuer,
            }
        });
        let signer = devnet_signer_key(&self.dir);
        let auxiliary =
            dev_issuer_address(&self.network).zip(signer).map(|(address, signer_key)| NetworkJsonAuxiliary {
                allow_host: format!("http://{address}/api/allow"),
                signer_host: format!("http://{address}/api/sign"),
                metadata_host: format!("http://{address}"),
                signer_key,
            });
        description.dev_issuer = dev_issuer;
        description.auxiliary = auxiliary;
        Ok(description)
    }

    /// A node of the set in force as `network.json` lists it: the ledger's
    /// addresses (`network.toml`'s for a genesis node the ledger gives
    /// none), its key, and its log if the devnet runs it.
    fn described_node(&self, info: &EpochNodeInfo) -> Result<NetworkJsonNode, String> {
        let listed = self.nodes.iter().find(|node| node.consensus_key == info.consensus_key);
        let rpc_url = match (info.rpc_url.is_empty(), listed) {
            (false, _) => RpcUrl::parse(&info.rpc_url).map_err(|e| format!("node {}: {e}", info.index))?,
            (true, Some(node)) => node.rpc_url.clone(),
            (true, None) => return Err(format!("node {} of the set in force has no address", info.index)),
        };
        let p2p_address = match (info.p2p_address.is_empty(), listed) {
            (false, _) => info.p2p_address.clone(),
            (true, Some(node)) => node.p2p_address.to_string(),
            (true, None) => String::new(),
        };
        let key = hex::decode(&info.secp256k1_key)
            .ok()
            .and_then(|bytes| quorumkey_crypto::group::public_key_from_sec1(&bytes).ok())
            .ok_or_else(|| format!("node {}: its secp256k1 key is not a point", info.index))?;
        let (pub_key_x, pub_key_y) = quorumkey_crypto::group::public_key_to_xy_hex(&key);
        Ok(NetworkJsonNode {
            index: info.index,
            endpoint: rpc_url.endpoint(),
            api: rpc_url.to_string(),
            pub_key_x,
            pub_key_y,
            p2p_address,
            log: listed.map(|node| node_log_path(&self.dir, node.number).display().to_string()),
        })
    }

    /// Asks the running nodes for the node set in force and remembers the
    /// answer of the one furthest ahead (what [`Self::network_json`]
    /// describes).
    pub async fn refresh_set_in_force(&mut self) -> Result<&EpochResponse, DevnetError> {
        let (_, answer) = self.ask_epoch(None).await?;
        Ok(self.in_force.insert(answer))
    }

    /// `GET /v1/epoch` of every running node (but `except`), each given
    /// [`EPOCH_QUESTION_LIMIT`]: the answer with the highest height, and a
    /// client of the node that gave it.
    pub(crate) async fn ask_epoch(&self, except: Option<u16>) -> Result<(NodeApiClient, EpochResponse), DevnetError> {
        let mut best: Option<(NodeApiClient, EpochResponse)> = None;
        let mut failures = Vec::new();
        for node in &self.nodes {
            if Some(node.number) == except || self.pid(node.number).is_none() {
                continue;
            }
            let client = NodeApiClient::new(node.rpc_url.to_string());
            match tokio::time::timeout(EPOCH_QUESTION_LIMIT, client.epoch()).await {
                Ok(Ok(answer)) => {
                    if best.as_ref().is_none_or(|(_, known)| answer.height > known.height) {
                        best = Some((client, answer));
                    }
                }
                Ok(Err(error)) => failures.push(format!("node {}: {error}", node.number)),
                Err(_) => failures.push(format!("node {}: no answer within {EPOCH_QUESTION_LIMIT:?}", node.number)),
            }
        }
        best.ok_or_else(|| {
            DevnetError::Change(format!(
                "no running node told the node set in force (GET /v1/epoch): {}",
                if failures.is_empty() { "no node runs".to_owned() } else { failures.join("; ") }
            ))
        })
    }

    /// Writes `network.json` into the devnet directory (a new file renamed
    /// over the old one: a client reading it meanwhile reads one or the
    /// other whole).
    pub fn write_network_json(&self) -> Result<PathBuf, DevnetError> {
        let path = self.dir.join(NETWORK_JSON);
        let fresh = self.dir.join(format!(".{NETWORK_JSON}.new"));
        let json = serde_json::to_string_pretty(&self.network_json()?).unwrap_or_default();
        std::fs::write(&fresh, json + "\n")
            .and_then(|()| std::fs::rename(&fresh, &path))
            .map_err(|source| DevnetError::Io { path: path.clone(), source })?;
        Ok(path)
    }
}

impl DevnetNode {
    /// The port of its API.
    pub(crate) fn rpc_url_port(&self) -> u16 {
        self.rpc_url.listen_default().map_or(0, |address| address.port())
    }
}

/// What [`run_until_stopped`]'s watch of a pending change saw.
enum WatchStep {
    /// The new epoch is in force: `network.json` describes the new set.
    InForce(EpochResponse),
    /// The joining and leaving nodes switched too: the change is complete.
    Switched(Watched),
}

/// How long a node stopped on request may take to exit after SIGTERM
/// before it is killed.
pub const STOP_ON_REQUEST_LIMIT: Duration = Duration::from_secs(10);
/// How often the supervisor looks for exited nodes and due restarts.
const SUPERVISION_TICK: Duration = Duration::from_millis(250);
/// Lines of a node's log shown when it exits.
const EXIT_LOG_LINES: usize = 10;

/// Runs a devnet in the foreground (`quorumkey devnet`): takes the devnet
/// directory (one supervisor per directory), starts the network, waits for
/// its first finalized block, writes `network.json`, prints where
/// everything is, then supervises it until Ctrl-C or SIGTERM. A node whose
/// process exits is reported on stderr (its exit status and the end of its
/// log) and restarted with a growing delay ([`crate::restart_policy`]); a
/// node stopped through the control socket stays down until started
/// through it. Fatal, and returned as the error: a node exiting before the
/// first block (a misconfiguration, not a crash to ride out), and the
/// development issuer exiting at any time (its signing key is in its memory
/// only: a restarted issuer would sign with another, and the tokens it gave
/// out would stop verifying). The network's data stays in its directory
/// either way.
pub async fn run_until_stopped(options: &DevnetOptions) -> Result<(), DevnetError> {
    // Before anything starts: a second supervisor would start every node
    // a second time.
    let lock = SupervisorLock::acquire(&options.dir)?;
    let launched = Instant::now();
    let mut devnet = Devnet::launch(options)?;
    let (control, mut calls) = match ControlServer::start(&lock) {
        Ok(started) => started,
        Err(error) => {
            devnet.stop().await;
            return Err(error.into());
        }
    };
    println!("starting {} nodes in {} ...", devnet.network().nodes.len(), devnet.dir().display());
    let stop = quorumkey_node::run::shutdown_signal();
    tokio::pin!(stop);
    let ready = {
        let ready = devnet.wait_for_height(1, Duration::from_secs(120));
        tokio::pin!(ready);
        loop {
            tokio::select! {
                biased;
                () = &mut stop => break None,
                result = &mut ready => break Some(result),
                Some(call) = calls.recv() => call.answer(ControlResponse::refused(
                    "the devnet is starting: it answers once every node has finalized a block",
                )),
            }
        }
    };
    match ready {
        Some(Ok(())) => {}
        Some(Err(error)) => {
            drop(control);
            devnet.stop().await;
            return Err(error);
        }
        None => {
            println!("stopping ...");
            drop(control);
            devnet.stop().await;
            return Ok(());
        }
    }
    // The set in force (the genesis set until nodes are added or
    // removed): what network.json describes.
    let epoch = match devnet.refresh_set_in_force().await {
        Ok(answer) => answer.epoch,
        Err(error) => {
            eprintln!("devnet: {error}; network.json describes the genesis set");
            0
        }
    };
    let path = devnet.write_network_json()?;
    let description = devnet.network_json()?;
    println!("network id  {}", description.network_id);
    println!("threshold   {} of {} (epoch {epoch})", description.threshold, description.nodes.len());
    for node in &description.nodes {
        println!("node {:<3}    {}  log {}", node.index, node.endpoint, node.log.as_deref().unwrap_or("-"));
    }
    for node in devnet.nodes() {
        if let Some(removed) = devnet.removed_in(node.number) {
            println!("node-{:<3}    removed from the network in epoch {removed}; not started", node.number);
        }
    }
    if let Some(pending) = devnet.pending_change() {
        println!("change      epoch {}: {pending}; the handover is under way", pending.epoch);
    }
    if let Some(issuer) = &description.dev_issuer {
        println!(
            "dev issuer  {}  verifier {}  (quorumkey dev-token --email you@example.com)",
            issuer.issuer, issuer.verifier
        );
    }
    if let Some(auxiliary) = &description.auxiliary {
        println!(
            "aux hosts   allow {}  signer {}  metadata {}",
            auxiliary.allow_host, auxiliary.signer_host, auxiliary.metadata_host
        );
    }
    println!(
        "control     {}  (quorumkey devnet-node status|stop|start|add|remove --dir {}; a node that exits is restarted)",
        control.path().display(),
        devnet.dir().display()
    );
    println!("ready: {} (Ctrl-C stops the network; its data stays in {})", path.display(), devnet.dir().display());
    let mut supervision = Supervision::new(devnet, launched);
    let mut tick = tokio::time::interval(SUPERVISION_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The pending change's watch, on its own task (it only asks nodes):
    // first until its epoch is in force, then until the nodes switched.
    let mut watch: Option<tokio::task::JoinHandle<WatchStep>> = None;
    let outcome = loop {
        if watch.is_none()
            && let Some(change) = supervision.devnet.change_watch()
        {
            let in_force = supervision.devnet.set_in_force().filter(|answer| answer.epoch >= change.pending().epoch);
            watch = Some(match in_force.cloned() {
                Some(epoch) => tokio::spawn(async move {
                    let leaving_shares_deleted = change.wait_switched().await;
                    WatchStep::Switched(Watched { epoch, leaving_shares_deleted })
                }),
                None => tokio::spawn(async move { WatchStep::InForce(change.wait_in_force().await) }),
            });
        }
        let watched = async {
            match watch.as_mut() {
                Some(handle) => handle.await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            biased;
            () = &mut stop => Event::Stop,
            _ = tick.tick() => Event::Tick,
            Some(call) = calls.recv() => Event::Call(call),
            joined = watched => Event::Watched(joined),
        };
        match event {
            Event::Stop => break Ok(()),
            Event::Tick => {
                if let Err(error) = supervision.check(Instant::now()) {
                    break Err(error);
                }
            }
            Event::Call(call) => supervision.answer(call).await,
            Event::Watched(joined) => {
                watch = None;
                match joined {
                    Ok(WatchStep::InForce(answer)) => supervision.epoch_in_force(answer),
                    Ok(WatchStep::Switched(watched)) => supervision.change_in_force(watched).await,
                    Err(error) => eprintln!("devnet: following the change failed ({error}); following it again"),
                }
            }
        }
    };
    if let Some(handle) = watch {
        handle.abort();
    }
    println!("stopping ...");
    // Commands say "no devnet" from here on.
    drop(control);
    supervision.devnet.stop().await;
    outcome
}

/// What woke [`run_until_stopped`]'s loop.
enum Event {
    Stop,
    Tick,
    Call(ControlCall),
    Watched(Result<WatchStep, tokio::task::JoinError>),
}

/// The running devnet and each node's supervision state, owned by
/// [`run_until_stopped`]'s loop: every change to a node goes through it,
/// one at a time.
struct Supervision {
    devnet: Devnet,
    nodes: Vec<SupervisedNode>,
}

impl Supervision {
    /// Supervises `devnet`, whose every node but the removed ones was
    /// started by `now`.
    fn new(devnet: Devnet, now: Instant) -> Self {
        let nodes = devnet
            .nodes()
            .iter()
            .map(|node| match devnet.removed_in(node.number) {
                Some(epoch) => SupervisedNode::removed_from(node.number, epoch),
                None => SupervisedNode::running(node.number, now),
            })
            .collect();
        Self { devnet, nodes }
    }

    /// `--dir ...` for the hints in messages.
    fn dir_flag(devnet: &Devnet) -> String {
        format!("--dir {}", devnet.dir().display())
    }

    /// Reports and schedules the restart of every node whose process has
    /// exited, and restarts those whose time has come. An error only if
    /// the development issuer has exited.
    fn check(&mut self, now: Instant) -> Result<(), DevnetError> {
        self.devnet.check_issuer()?;
        for node in &mut self.nodes {
            let index = node.index();
            if node.is_running() {
                let Some(status) = self.devnet.node_exit(index) else { continue };
                let up = match node.state(now) {
                    NodeState::Running { up_secs } => format!(" after {} up", format_duration_secs(up_secs)),
                    NodeState::StoppedOnRequest | NodeState::RestartingAfterExit { .. } | NodeState::Removed { .. } => {
                        String::new()
                    }
                };
                let delay = node.exited(status.to_string(), now);
                let log = node_log_path(self.devnet.dir(), index);
                let tail = log_tail(&log, EXIT_LOG_LINES);
                let mut report = format!("devnet: node {index} exited ({status}){up}; its log {} ends:", log.display());
                for line in tail.lines() {
                    report.push_str("\n    ");
                    report.push_str(line);
                }
                eprintln!("{report}");
                eprintln!(
                    "devnet: restarting node {index} in {} s (`quorumkey devnet-node stop --index {index} {}` keeps it down)",
                    delay.as_secs(),
                    Self::dir_flag(&self.devnet)
                );
            } else if node.restart_due(now) {
                match self.devnet.start_node(index) {
                    Ok(()) => {
                        node.restarted(now);
                        let pid = self.devnet.pid(index).map_or_else(|| "-".to_owned(), |pid| pid.to_string());
                        eprintln!("devnet: node {index} restarted (pid {pid}, restart {})", node.restarts());
                    }
                    Err(error) => {
                        let delay = node.exited(format!("could not be started: {error}"), now);
                        eprintln!(
                            "devnet: node {index} could not be started ({error}); next attempt in {} s",
                            delay.as_secs()
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Carries out one request from the control socket and answers it.
    async fn answer(&mut self, call: ControlCall) {
        let response = match call.request {
            ControlRequest::Status => {
                let now = Instant::now();
                ControlResponse::Status {
                    nodes: self.nodes.iter().map(|node| report(&self.devnet, node, now)).collect(),
                }
            }
            ControlRequest::Stop { index } => self.stop(index).await,
            ControlRequest::Start { index } => self.start(index),
            ControlRequest::Add { replace: None } => {
                let changed = self.devnet.add_node().await;
                self.changed(changed)
            }
            ControlRequest::Add { replace: Some(number) } => {
                let changed = self.devnet.replace_node(number).await;
                self.changed(changed)
            }
            ControlRequest::Remove { node } => {
                let changed = self.devnet.remove_node(node).await;
                self.changed(changed)
            }
        };
        call.answer(response);
    }

    /// The answer to an add or a remove; supervises the node added.
    fn changed(&mut self, changed: Result<NodeSetChange, DevnetError>) -> ControlResponse {
        let now = Instant::now();
        // A node the devnet made is supervised even if its start failed
        // (it is then restarted as any node that exits).
        for node in self.devnet.nodes() {
            if !self.nodes.iter().any(|known| known.index() == node.number) {
                let mut supervised = SupervisedNode::running(node.number, now);
                if self.devnet.pid(node.number).is_none() {
                    supervised.exited("could not be started".to_owned(), now);
                }
                self.nodes.push(supervised);
            }
        }
        let change = match changed {
            Ok(change) => change,
            Err(error) => return ControlResponse::refused(error.to_string()),
        };
        let dir_flag = Self::dir_flag(&self.devnet);
        let epoch = change.epoch;
        let (number, message) = match (change.added, change.removed) {
            (Some((number, _)), _) => {
                let pid = self.devnet.pid(number).map_or_else(|| "-".to_owned(), |pid| pid.to_string());
                let message = format!(
                    "{change}; node {number} started (pid {pid}): it syncs the ledger as an observer and signs once epoch {epoch} is in force{}",
                    change.removed.map_or_else(String::new, |removed| format!(
                        "; node {removed} runs until then, then it is stopped"
                    ))
                );
                (number, message)
            }
            (None, Some(number)) => {
                (number, format!("{change}; node {number} runs until epoch {epoch} is in force, then it is stopped"))
            }
            (None, None) => return ControlResponse::refused("nothing to change"),
        };
        eprintln!("devnet: {change} (submitted to {})", change.submitted_to);
        let message = format!("{message} (`quorumkey devnet-node status {dir_flag}` shows when)");
        match self.nodes.iter().find(|node| node.index() == number) {
            Some(node) => ControlResponse::Done { message, node: report(&self.devnet, node, now) },
            None => ControlResponse::refused(format!("node {number} is not supervised")),
        }
    }

    /// The pending change's epoch is in force: `network.json` describes
    /// the new set.
    fn epoch_in_force(&mut self, answer: EpochResponse) {
        let epoch = answer.epoch;
        let nodes = answer.nodes.len();
        match self.devnet.epoch_in_force(answer) {
            Ok(path) => eprintln!("devnet: epoch {epoch} in force ({nodes} nodes); {} describes them", path.display()),
            Err(error) => eprintln!("devnet: epoch {epoch} in force, but network.json could not be written: {error}"),
        }
    }

    /// The nodes switched to the pending change's epoch: the removed node
    /// is stopped and stays down.
    async fn change_in_force(&mut self, watched: Watched) {
        match self.devnet.finish_change(watched).await {
            Ok(done) => {
                if let Some(number) = done.removed
                    && let Some(node) = self.nodes.iter_mut().find(|node| node.index() == number)
                {
                    node.mark_removed(done.epoch);
                }
                let mut report = format!("devnet: epoch {} in force", done.epoch);
                if let Some(number) = done.added {
                    report.push_str(&format!("; node {number} joined"));
                }
                if let Some(number) = done.removed {
                    let shares = match done.removed_shares_deleted {
                        Some(true) => "it had deleted its shares",
                        _ => "it did not say it had deleted its shares in time; see its log",
                    };
                    report.push_str(&format!("; node {number} removed and stopped ({shares})"));
                }
                eprintln!("{report}");
            }
            Err(error) => eprintln!("devnet: completing the change failed: {error}"),
        }
    }

    /// Stops node `index` (SIGTERM, killed after [`STOP_ON_REQUEST_LIMIT`])
    /// and keeps it down.
    async fn stop(&mut self, index: u16) -> ControlResponse {
        let dir_flag = Self::dir_flag(&self.devnet);
        let count = self.nodes.len();
        let Some(node) = self.nodes.iter_mut().find(|node| node.index() == index) else {
            return unknown_node(index, count);
        };
        if let Some(epoch) = node.removed_in() {
            return removed_node(index, epoch);
        }
        let stays_down = format!("it stays down until `quorumkey devnet-node start --index {index} {dir_flag}`");
        let message = if node.is_stopped_on_request() {
            format!("node {index} is already stopped on request; {stays_down}")
        } else {
            let detail = if node.is_running() {
                let clean = self.devnet.stop_node(index, STOP_ON_REQUEST_LIMIT).await;
                if clean {
                    "it exited cleanly on SIGTERM".to_owned()
                } else {
                    format!(
                        "it did not exit cleanly within {} s of SIGTERM; see its log",
                        STOP_ON_REQUEST_LIMIT.as_secs()
                    )
                }
            } else {
                "it was waiting to restart after it exited".to_owned()
            };
            node.stopped_on_request();
            eprintln!("devnet: node {index} stopped on request ({detail})");
            format!("node {index} stopped ({detail}); {stays_down}")
        };
        ControlResponse::Done { message, node: report(&self.devnet, node, Instant::now()) }
    }

    /// Starts node `index` now, whether stopped on request or waiting to
    /// restart.
    fn start(&mut self, index: u16) -> ControlResponse {
        let count = self.nodes.len();
        let Some(node) = self.nodes.iter_mut().find(|node| node.index() == index) else {
            return unknown_node(index, count);
        };
        if let Some(epoch) = node.removed_in() {
            return removed_node(index, epoch);
        }
        let now = Instant::now();
        if node.is_running() {
            let pid = self.devnet.pid(index).map_or_else(|| "-".to_owned(), |pid| pid.to_string());
            return ControlResponse::Done {
                message: format!("node {index} is already running (pid {pid})"),
                node: report(&self.devnet, node, now),
            };
        }
        if let Err(error) = self.devnet.start_node(index) {
            return ControlResponse::refused(format!("node {index} could not be started: {error}"));
        }
        node.started_on_request(now);
        let pid = self.devnet.pid(index).map_or_else(|| "-".to_owned(), |pid| pid.to_string());
        eprintln!("devnet: node {index} started on request (pid {pid})");
        ControlResponse::Done {
            message: format!("node {index} started (pid {pid}); it catches up from its storage"),
            node: report(&self.devnet, node, now),
        }
    }
}

/// The refusal of a request for a node that does not exist.
fn unknown_node(index: u16, count: usize) -> ControlResponse {
    ControlResponse::refused(format!("node {index} does not exist (this devnet has {count} nodes)"))
}

/// The refusal of a stop or start of a removed node.
fn removed_node(index: u16, epoch: u64) -> ControlResponse {
    ControlResponse::refused(format!(
        "node {index} was removed from the network (epoch {epoch} is in force without it); it is not started or stopped any more"
    ))
}

/// `node`'s report, with what the devnet knows of it.
fn report(devnet: &Devnet, node: &SupervisedNode, now: Instant) -> NodeReport {
    let index = node.index();
    let rpc_url = devnet
        .nodes()
        .iter()
        .find(|described| described.number == index)
        .map(|described| described.rpc_url.to_string())
        .unwrap_or_default();
    let log = node_log_path(devnet.dir(), index).display().to_string();
    node.report(now, devnet.pid(index), rpc_url, log, devnet.node_change(index))
}
