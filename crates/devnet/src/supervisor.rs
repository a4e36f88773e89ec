//! A local network on 127.0.0.1: one `quorumkey node run` process per node,
//! supervised. Creates the network's configuration on first use and reuses
//! it (and each node's data) afterwards, so a devnet can be stopped and
//! started again without losing anything. Writes `network.json`, the
//! description clients need, once every node has finalized a block.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
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

use crate::dev_issuer::{DEV_AUDIENCE, DEV_VERIFIER, dev_verifier_config};
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
    /// A node process exited.
    #[error("the development issuer exited ({status}); its log is {log}:\n{tail}")]
    IssuerExited {
        /// Exit status.
        status: String,
        /// Its log file.
        log: String,
        /// The log's end.
        tail: String,
    },
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

/// The last 15 lines of a log file, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
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

impl Devnet {
    /// Creates (or reuses) the network in `options.dir` and starts every node.
    pub fn launch(options: &DevnetOptions) -> Result<Self, DevnetError> {
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
            let rpc = RpcSettings {
                key_assign_signer: Some(hex::encode(owner_public_bytes(&signer))),
                ..options.rpc.clone()
            };
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
        if let Some(issuer) = &mut self.issuer
            && let Ok(Some(status)) = issuer.try_wait()
        {
            self.issuer = None;
            let log = dev_issuer_log_path(&self.dir);
            return Err(DevnetError::IssuerExited {
                status: status.to_string(),
                log: log.display().to_string(),
                tail: log_tail(&log),
            });
        }
        for (position, slot) in self.children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                let index = position as u16 + 1;
                let log = node_log_path(&self.dir, index);
                *slot = None;
                return Err(DevnetError::NodeExited {
                    index,
                    status: status.to_string(),
                    log: log.display().to_string(),
                    tail: log_tail(&log),
                });
            }
        }
        Ok(())
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

/// Runs a devnet in the foreground (`quorumkey devnet`): starts it, waits
/// for its first finalized block, writes `network.json`, prints where
/// everything is, then supervises it until Ctrl-C or until a process dies
/// (the error names it, with the end of its log). The network's data stays
/// in its directory either way.
pub async fn run_until_stopped(options: &DevnetOptions) -> Result<(), DevnetError> {
    let mut devnet = Devnet::launch(options)?;
    println!("starting {} nodes in {} ...", devnet.network().nodes.len(), devnet.dir().display());
    if let Err(error) = devnet.wait_for_height(1, Duration::from_secs(120)).await {
        devnet.stop().await;
        return Err(error);
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
    println!("ready: {} (Ctrl-C stops the network; its data stays in {})", path.display(), devnet.dir().display());
    let stop = quorumkey_node::run::shutdown_signal();
    tokio::pin!(stop);
    let outcome = loop {
        tokio::select! {
            () = &mut stop => break Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if let Err(error) = devnet.check_alive() {
                    break Err(error);
                }
            }
        }
    };
    println!("stopping ...");
    devnet.stop().await;
    outcome
}
