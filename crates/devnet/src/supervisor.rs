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
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::process::{Child, Command};

use quorumkey_client::node_api_client::NodeApiClient;
use quorumkey_node::config::NetworkVerifier;
use quorumkey_node::config::{
    ConfigError, HttpSettings, InitOptions, NETWORK_FILE, NetworkDkg, NetworkFile, NetworkPolicyFile, ProviderSettings,
    RpcSettings, init_network,
};
use quorumkey_node::identity::{owner_public_bytes, save_owner_key};
use quorumkey_node::run::node_config_path;

use crate::control_socket::{
    ControlCall, ControlError, ControlRequest, ControlResponse, ControlServer, NodeReport, NodeState, SupervisorLock,
    format_duration_secs,
};
use crate::dev_issuer::{DEV_AUDIENCE, DEV_VERIFIER, dev_verifier_config};
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

/// A running devnet. Dropping it kills its nodes.
#[derive(Debug)]
pub struct Devnet {
    dir: PathBuf,
    binary: PathBuf,
    network: NetworkFile,
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

impl Devnet {
    /// Creates (or reuses) the network in `options.dir` ([`prepare_network`])
    /// and starts every node.
    pub fn launch(options: &DevnetOptions) -> Result<Self, DevnetError> {
        let network = prepare_network(options)?;
        let mut devnet = Self {
            dir: options.dir.clone(),
            binary: options.binary.clone(),
            children: network.nodes.iter().map(|_| None).collect(),
            network,
            issuer: None,
        };
        devnet.start_dev_issuer()?;
        for index in 1..=options.nodes {
            devnet.start_node(index)?;
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

    /// A client of node `index`.
    pub fn client(&self, index: u16) -> Option<NodeApiClient> {
        self.network
            .nodes
            .iter()
            .find(|node| node.index == index)
            .map(|node| NodeApiClient::new(node.rpc_url.to_string()))
    }

    /// Starts node `index` (again).
    pub fn start_node(&mut self, index: u16) -> Result<(), DevnetError> {
        let config = node_config_path(&self.dir, index);
        let args = ["node".as_ref(), "run".as_ref(), "--config".as_ref(), config.as_os_str()];
        let child = self.spawn_logged(&args, &node_log_path(&self.dir, index))?;
        if let Some(slot) = self.children.get_mut(usize::from(index) - 1) {
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
        if let Some(Some(mut child)) = self.children.get_mut(usize::from(index) - 1).map(Option::take) {
            let _ = child.kill().await;
        }
    }

    /// Stops node `index` as an operator would (SIGTERM: it stops serving
    /// and writes what it acknowledged), waiting up to `limit` before
    /// killing it; true if it stopped on its own.
    pub async fn stop_node(&mut self, index: u16, limit: Duration) -> bool {
        let Some(Some(mut child)) = self.children.get_mut(usize::from(index) - 1).map(Option::take) else {
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
                let Some(client) = self.client(position as u16 + 1) else { continue };
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

    /// The client description of this network.
    pub fn network_json(&self) -> Result<NetworkJson, DevnetError> {
        let mut description = self
            .network
            .client_description()
            .map_err(|reason| ConfigError::Invalid { path: self.dir.join(NETWORK_FILE), reason })?;
        for node in &mut description.nodes {
            node.log = Some(node_log_path(&self.dir, node.index).display().to_string());
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

    /// Writes `network.json` into the devnet directory.
    pub fn write_network_json(&self) -> Result<PathBuf, DevnetError> {
        let path = self.dir.join(NETWORK_JSON);
        let json = serde_json::to_string_pretty(&self.network_json()?).unwrap_or_default();
        std::fs::write(&path, json + "\n").map_err(|source| DevnetError::Io { path: path.clone(), source })?;
        Ok(path)
    }
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
    let path = devnet.write_network_json()?;
    let description = devnet.network_json()?;
    println!("network id  {}", description.network_id);
    println!("threshold   {} of {}", description.threshold, description.nodes.len());
    for node in &description.nodes {
        println!("node {:<3}    {}  log {}", node.index, node.endpoint, node.log.as_deref().unwrap_or("-"));
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
        "control     {}  (quorumkey devnet-node status|stop|start --dir {}; a node that exits is restarted)",
        control.path().display(),
        devnet.dir().display()
    );
    println!("ready: {} (Ctrl-C stops the network; its data stays in {})", path.display(), devnet.dir().display());
    let mut supervision = Supervision::new(devnet, launched);
    let mut tick = tokio::time::interval(SUPERVISION_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome = loop {
        tokio::select! {
            biased;
            () = &mut stop => break Ok(()),
            _ = tick.tick() => {
                if let Err(error) = supervision.check(Instant::now()) {
                    break Err(error);
                }
            }
            Some(call) = calls.recv() => supervision.answer(call).await,
        }
    };
    println!("stopping ...");
    // Commands say "no devnet" from here on.
    drop(control);
    supervision.devnet.stop().await;
    outcome
}

/// The running devnet and each node's supervision state, owned by
/// [`run_until_stopped`]'s loop: every change to a node goes through it,
/// one at a time.
struct Supervision {
    devnet: Devnet,
    nodes: Vec<SupervisedNode>,
}

impl Supervision {
    /// Supervises `devnet`, whose every node was started by `now`.
    fn new(devnet: Devnet, now: Instant) -> Self {
        let nodes = devnet.network().nodes.iter().map(|node| SupervisedNode::running(node.index, now)).collect();
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
                    NodeState::StoppedOnRequest | NodeState::RestartingAfterExit { .. } => String::new(),
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
        };
        call.answer(response);
    }

    /// Stops node `index` (SIGTERM, killed after [`STOP_ON_REQUEST_LIMIT`])
    /// and keeps it down.
    async fn stop(&mut self, index: u16) -> ControlResponse {
        let dir_flag = Self::dir_flag(&self.devnet);
        let count = self.nodes.len();
        let Some(node) = self.nodes.iter_mut().find(|node| node.index() == index) else {
            return unknown_node(index, count);
        };
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

/// `node`'s report, with what the devnet knows of it.
fn report(devnet: &Devnet, node: &SupervisedNode, now: Instant) -> NodeReport {
    let index = node.index();
    let rpc_url = devnet
        .network()
        .nodes
        .iter()
        .find(|described| described.index == index)
        .map(|described| described.rpc_url.to_string())
        .unwrap_or_default();
    let log = node_log_path(devnet.dir(), index).display().to_string();
    node.report(now, devnet.pid(index), rpc_url, log)
}
