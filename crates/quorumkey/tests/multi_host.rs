//! A network of independent operators on separate hosts: five Linux
//! network namespaces, each with its own addresses on a bridge this test
//! makes (10.231.0.0/24 and fd51:7a3b::/64, nothing else), one
//! `quorumkey node` in each.
//!
//! - Each operator runs `quorumkey node keygen` in its own directory; only
//!   the enrollments travel; `quorumkey network genesis` assembles the
//!   genesis, and every operator gets only the public `network.toml`.
//! - The nodes peer over IPv6, serve clients over IPv4 (node 5 over IPv6),
//!   and bind every interface (`[::]`, `0.0.0.0`), not the address they
//!   advertise; a node bound to 127.0.0.1 in its namespace would be
//!   unreachable.
//! - They start in a scrambled order; the first, alone, says on `/health`
//!   and in its log that it hears from too few peers.
//! - A client finds the network from one node's URL (`quorumkey network
//!   client-config`, checked by t nodes and the network id), and the
//!   unmodified torus.js 8.0.1 and the Rust client log users in through
//!   the addresses in it; one node is killed, logins go on, it restarts
//!   and catches up.
//! - No secret key file's content appears anywhere outside its
//!   operator's directory.
//!
//! The application's side (its development identity provider and KeyAssign
//! signer) runs on the host's end of the bridge. Verifier configurations
//! name only public or loopback providers, so each host reaches the
//! provider as `http://127.0.0.1:8550` through a relay in its namespace
//! (this test binary, re-run as `relay_into_namespace`), the way a host
//! would reach a provider through a local forwarder.
//!
//! Where namespaces cannot be made (no root, no `CAP_NET_ADMIN`, no `ip`),
//! the test says so and passes without running.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use quorumkey_client::{ClientOptions, QuorumkeyClient};
use quorumkey_devnet::dev_issuer::{DEV_AUDIENCE, MintRequest, dev_verifier_config, request_token};
use quorumkey_login::network::{NetworkJson, NetworkJsonAuxiliary};
use serde_json::Value;
use support::torusjs::{install, torus_js};

const HOSTS: u16 = 5;
const VERIFIER: &str = "multi-host-app";
const P2P_PORT: u16 = 9000;
const RPC_PORT: u16 = 8000;
const ISSUER_PORT: u16 = 8550;
/// Set in the environment of this binary re-run as a relay:
/// `LISTEN=TARGET`.
const RELAY_ENV: &str = "QUORUMKEY_TEST_RELAY";

/// Not a test of its own: when this binary is re-run with `RELAY_ENV` set
/// (inside a namespace), relays TCP from LISTEN to TARGET until killed.
#[test]
fn relay_into_namespace() {
    let Ok(spec) = std::env::var(RELAY_ENV) else { return };
    let (listen, target) = spec.split_once('=').unwrap();
    let (listen, target) = (listen.to_owned(), target.to_owned());
    tokio::runtime::Runtime::new().unwrap().block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
        loop {
            let (mut inbound, _) = listener.accept().await.unwrap();
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}

/// The relay of `host`'s namespace: its 127.0.0.1:8550 to the provider on
/// the bridge.
fn start_relay(hosts: &Hosts, host: u16) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &hosts.namespace(host)])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "relay_into_namespace", "--nocapture", "--test-threads=1"])
        .env(RELAY_ENV, format!("127.0.0.1:{ISSUER_PORT}=10.231.0.254:{ISSUER_PORT}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn ipv4(host: u16) -> String {
    format!("10.231.0.{host}")
}

fn ipv6(host: u16) -> String {
    format!("fd51:7a3b::{host:x}")
}

/// What the node on `host` advertises to clients.
fn rpc_url(host: u16) -> String {
    if host == 5 { format!("http://[{}]:{RPC_PORT}", ipv6(host)) } else { format!("http://{}:{RPC_PORT}", ipv4(host)) }
}

fn ip(args: &[&str]) -> Result<Output, String> {
    Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))
}

fn ip_ok(args: &[&str]) -> Result<(), String> {
    let output = ip(args)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// The namespaces, veth pairs and bridge of one run, named after its
/// process id; removed when dropped (also when the test fails).
struct Hosts {
    tag: u32,
}

impl Hosts {
    fn namespace(&self, host: u16) -> String {
        format!("qk{}n{host}", self.tag)
    }

    fn bridge(&self) -> String {
        format!("qkb{}", self.tag)
    }

    /// Removes what earlier runs of this test left behind (their process
    /// is gone), so that their addresses cannot clash with this run's.
    fn remove_stale() {
        let alive = |tag: &str| Path::new(&format!("/proc/{tag}")).exists();
        if let Ok(output) = ip(&["netns", "list"]) {
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or_default();
                if let Some((tag, _)) = name.strip_prefix("qk").and_then(|rest| rest.split_once('n'))
                    && tag.chars().all(|c| c.is_ascii_digit())
                    && !alive(tag)
                {
                    let _ = ip(&["netns", "del", name]);
                }
            }
        }
        if let Ok(output) = ip(&["-o", "link", "show", "type", "bridge"]) {
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                let name = line.split(':').nth(1).unwrap_or_default().trim();
                if let Some(tag) = name.strip_prefix("qkb")
                    && tag.chars().all(|c| c.is_ascii_digit())
                    && !alive(tag)
                {
                    let _ = ip(&["link", "del", name]);
                }
            }
        }
    }

    /// Makes the bridge, the namespaces and their addresses; the host joins
    /// the bridge as 10.231.0.254 and fd51:7a3b::fe (the client's side).
    fn create() -> Result<Self, String> {
        Self::remove_stale();
        let hosts = Self { tag: std::process::id() % 100_000 };
        let bridge = hosts.bridge();
        ip_ok(&["link", "add", &bridge, "type", "bridge"])?;
        ip_ok(&["link", "set", &bridge, "up"])?;
        ip_ok(&["addr", "add", "10.231.0.254/24", "dev", &bridge])?;
        ip_ok(&["addr", "add", "fd51:7a3b::fe/64", "dev", &bridge, "nodad"])?;
        for host in 1..=HOSTS {
            let namespace = hosts.namespace(host);
            let veth = format!("qk{}v{host}", hosts.tag);
            ip_ok(&["netns", "add", &namespace])?;
            ip_ok(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &namespace])?;
            ip_ok(&["link", "set", &veth, "master", &bridge, "up"])?;
            let inside = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &namespace, "ip"];
                all.extend_from_slice(args);
                ip_ok(&all)
            };
            inside(&["addr", "add", &format!("{}/24", ipv4(host)), "dev", "eth0"])?;
            inside(&["addr", "add", &format!("{}/64", ipv6(host)), "dev", "eth0", "nodad"])?;
            inside(&["link", "set", "eth0", "up"])?;
            inside(&["link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for host in 1..=HOSTS {
            let _ = ip(&["netns", "del", &self.namespace(host)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

/// Whether this machine lets the test make namespaces (a probe that is
/// removed at once).
fn namespaces_permitted() -> Result<(), String> {
    let probe = format!("qkprobe{}", std::process::id() % 100_000);
    ip_ok(&["netns", "add", &probe])?;
    ip_ok(&["netns", "del", &probe])
}

fn quorumkey(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_quorumkey")).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The node of `host`, run inside its namespace, logging to its
/// operator's directory.
fn start_node(hosts: &Hosts, operator: &Path, host: u16) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(operator.join("node.log")).unwrap();
    Command::new("ip")
        .args(["netns", "exec", &hosts.namespace(host)])
        .arg(env!("CARGO_BIN_EXE_quorumkey"))
        .args(["node", "run", "--config"])
        .arg(operator.join("node.toml"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Stops the nodes (SIGTERM, then SIGKILL) when dropped.
struct Nodes(Vec<Option<Child>>);

impl Nodes {
    fn kill(&mut self, host: u16) {
        if let Some(mut child) = self.0[usize::from(host) - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in self.0.iter_mut().flatten() {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        for child in self.0.iter_mut().flatten() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn health(http: &reqwest::Client, host: u16) -> Option<Value> {
    let response = http.get(format!("{}/health", rpc_url(host))).send().await.ok()?;
    response.json().await.ok()
}

/// Waits until `check` holds for node `host`'s `/health`.
async fn wait_health(http: &reqwest::Client, host: u16, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let answer = health(http, host).await;
        if let Some(answer) = &answer
            && check(answer)
        {
            return answer.clone();
        }
        assert!(Instant::now() < deadline, "node {host}: no {what} within 120 s; last /health: {answer:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every file under `root`, recursively.
fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Checks that no operator's secret (each key file's text, and the bytes it
/// encodes) appears in any file outside that operator's directory.
fn no_secret_left_its_directory(work: &Path, operators: &[PathBuf]) {
    let all = files(work);
    let mut checked = 0;
    for operator in operators {
        for secret in ["consensus.key", "secp256k1.key", "kek.key"] {
            let text = std::fs::read_to_string(operator.join(secret)).unwrap();
            let text = text.trim();
            let mut needles = vec![text.as_bytes().to_vec()];
            if let Ok(bytes) = hex::decode(text) {
                needles.push(hex::encode_upper(&bytes).into_bytes());
                needles.push(bytes);
            }
            for file in all.iter().filter(|file| !file.starts_with(operator)) {
                let content = std::fs::read(file).unwrap_or_default();
                for needle in &needles {
                    assert!(
                        !content.windows(needle.len()).any(|window| window == needle.as_slice()),
                        "{}'s {secret} is in {}",
                        operator.display(),
                        file.display()
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
}

#[test]
fn five_operators_on_five_hosts_form_a_network_and_log_users_in() {
    if let Err(reason) = namespaces_permitted() {
        eprintln!("SKIPPED: this machine does not let the test make network namespaces ({reason})");
        return;
    }
    install();
    let hosts = Hosts::create().unwrap();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();

    // The application's side: a development issuer and the Torus
    // auxiliary hosts (its KeyAssign signer) on the host's bridge address.
    let app = work.join("app");
    std::fs::create_dir(&app).unwrap();
    let signer_key = app.join("signer.key");
    let (ok, stdout, stderr) = quorumkey(&["verifier", "owner-key", "--out", signer_key.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let signer_public = stdout.split_whitespace().find(|word| word.len() == 66).unwrap().to_owned();
    // Clients reach it on the bridge; nodes, through their relays, as
    // 127.0.0.1 (its `iss`).
    let issuer_url = format!("http://10.231.0.254:{ISSUER_PORT}");
    let issuer_name = format!("http://127.0.0.1:{ISSUER_PORT}");
    let issuer_log = std::fs::File::create(app.join("issuer.log")).unwrap();
    let issuer = Command::new(env!("CARGO_BIN_EXE_quorumkey"))
        .args(["dev-issuer", "--listen", &format!("10.231.0.254:{ISSUER_PORT}"), "--allow-public-bind"])
        .args(["--issuer-url", &issuer_name])
        .args(["--signer-key", signer_key.to_str().unwrap()])
        .stdout(issuer_log.try_clone().unwrap())
        .stderr(issuer_log)
        .spawn()
        .unwrap();
    let relays = (1..=HOSTS).map(|host| Some(start_relay(&hosts, host)));
    let _services = Nodes(std::iter::once(Some(issuer)).chain(relays).collect());

    // Each operator, on its own host: keys, and the enrollment it sends.
    let operators: Vec<PathBuf> = (1..=HOSTS).map(|host| work.join(format!("operator-{host}"))).collect();
    let mut enrollments = Vec::new();
    for (host, operator) in (1..=HOSTS).zip(&operators) {
        let (p2p, rpc) = (format!("[{}]:{P2P_PORT}", ipv6(host)), rpc_url(host));
        let rpc_listen = if host == 5 { format!("[::]:{RPC_PORT}") } else { format!("0.0.0.0:{RPC_PORT}") };
        let (ok, _, stderr) = quorumkey(&[
            "node",
            "keygen",
            "--out",
            operator.to_str().unwrap(),
            "--p2p-address",
            &p2p,
            "--p2p-listen",
            &format!("[::]:{P2P_PORT}"),
            "--rpc-url",
            &rpc,
            "--rpc-listen",
            &rpc_listen,
            "--key-assign-signer",
            &signer_public,
        ]);
        assert!(ok, "{stderr}");
        // The identity provider of this test is on a loopback address.
        let config = operator.join("node.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str("\n[providers]\nallow_private_addresses = true\n");
        std::fs::write(&config, text).unwrap();
        let sent = work.join(format!("enrollment-{host}.toml"));
        std::fs::copy(operator.join("enrollment.toml"), &sent).unwrap();
        enrollments.push(sent);
    }

    // Whoever assembles the genesis sees only the enrollments.
    let verifiers = work.join("verifiers.toml");
    let config = dev_verifier_config(&issuer_name, DEV_AUDIENCE);
    std::fs::write(
        &verifiers,
        format!("[[verifiers]]\nname = \"{VERIFIER}\"\nowner = \"{signer_public}\"\nconfig = '''{config}'''\n"),
    )
    .unwrap();
    let genesis = work.join("network.toml");
    let mut args = vec!["network", "genesis", "--out", genesis.to_str().unwrap(), "--verifiers"];
    args.push(verifiers.to_str().unwrap());
    for enrollment in &enrollments {
        args.extend(["--enrollment", enrollment.to_str().unwrap()]);
    }
    let (ok, stdout, stderr) = quorumkey(&args);
    assert!(ok, "{stderr}");
    let network_id = stdout.split_whitespace().nth(2).unwrap().to_owned();
    assert_eq!(network_id.len(), 64, "{stdout}");
    for operator in &operators {
        std::fs::copy(&genesis, operator.join("network.toml")).unwrap();
    }

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let mut nodes = Nodes((1..=HOSTS).map(|_| None).collect());
        // Node 5 first and alone: it says it hears from too few peers.
        let order = [5u16, 3, 1, 4, 2];
        nodes.0[4] = Some(start_node(&hosts, &operators[4], 5));
        let alone = wait_health(&http, 5, "warning", |h| h["peers"]["heard"] == 0 && h.get("warning").is_some()).await;
        assert!(alone["warning"].as_str().unwrap().contains("hears from 0 of 4 peers, consensus needs 3"), "{alone}");
        let log = operators[4].join("node.log");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("consensus needs 3") {
            assert!(Instant::now() < deadline, "node 5 did not log that it hears from too few peers");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        for &host in &order[1..] {
            nodes.0[usize::from(host) - 1] = Some(start_node(&hosts, &operators[usize::from(host) - 1], host));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for host in 1..=HOSTS {
            let ready = wait_health(&http, host, "quorum", |h| {
                h["status"] == "ok" && h["peers"]["heard"] == 4 && h.get("warning").is_none()
            })
            .await;
            assert_eq!(ready["network_id"], network_id.as_str());
        }

        // A client finds the network from one node's URL.
        let client_dir = work.join("client");
        std::fs::create_dir(&client_dir).unwrap();
        let found = client_dir.join("network.json");
        let (ok, stdout, stderr) = quorumkey(&[
            "network",
            "client-config",
            "--node",
            &rpc_url(3),
            "--network-id",
            &network_id,
            "--out",
            found.to_str().unwrap(),
        ]);
        assert!(ok, "{stderr}");
        assert!(stdout.contains("attested by nodes 1, 2, 3, 4, 5 (threshold 3 of 5)"), "{stdout}");
        let wrong = "00".repeat(32);
        let (ok, _, stderr) = quorumkey(&["network", "client-config", "--node", &rpc_url(1), "--network-id", &wrong]);
        assert!(!ok && stderr.contains("not the"), "{stderr}");
        let mut description = NetworkJson::parse(&std::fs::read_to_string(&found).unwrap()).unwrap();
        // Indexes follow the consensus keys, not the hosts: every host's
        // addresses, as it advertised them.
        for host in 1..=HOSTS {
            let node = description.nodes.iter().find(|node| node.api == rpc_url(host)).unwrap();
            assert_eq!(node.endpoint, format!("{}/jrpc", rpc_url(host)));
            assert_eq!(node.p2p_address, format!("[{}]:{P2P_PORT}", ipv6(host)));
        }
        assert!(description.nodes.iter().all(|node| node.log.is_none()));
        // The app adds its own services (its KeyAssign signer).
        description.auxiliary = Some(NetworkJsonAuxiliary {
            allow_host: format!("{issuer_url}/api/allow"),
            signer_host: format!("{issuer_url}/api/sign"),
            metadata_host: issuer_url.clone(),
            signer_key: signer_public.clone(),
        });
        let app_network = client_dir.join("app-network.json");
        std::fs::write(&app_network, serde_json::to_string_pretty(&description).unwrap()).unwrap();

        let token_endpoint = format!("{issuer_url}/dev/token");
        let mint = |email: &'static str| {
            let endpoint = token_endpoint.clone();
            async move { request_token(&endpoint, &MintRequest::for_email(email)).await.unwrap().id_token }
        };
        // torus.js, then the Rust client, through the addresses found.
        let token = mint("alice@example.com").await;
        let alice = torus_js(&app_network, VERIFIER, "alice@example.com", Some(&token)).expect("torus.js login");
        let address = alice["lookup"]["address"].as_str().unwrap().to_owned();
        assert_eq!(alice["login"]["ethAddress"], address.as_str());
        let client = QuorumkeyClient::from_file(&app_network, ClientOptions::default()).unwrap();
        let login = client.login(VERIFIER, "alice@example.com", &mint("alice@example.com").await).await.unwrap();
        assert_eq!(login.key.address, address, "the Rust client rebuilds the key torus.js got");
        let (bob, _) = client.lookup_or_assign(VERIFIER, "bob@example.com").await.unwrap();
        let login = client.login(VERIFIER, "bob@example.com", &mint("bob@example.com").await).await.unwrap();
        assert_eq!(login.key.address, bob.address);

        // The command line, as the operations guide's first login.
        let token_file = client_dir.join("dave.token");
        std::fs::write(&token_file, mint("dave@example.com").await).unwrap();
        let network_arg = app_network.to_str().unwrap();
        let (ok, stdout, stderr) = quorumkey(&[
            "login",
            "--network",
            network_arg,
            "--verifier",
            VERIFIER,
            "--verifier-id",
            "dave@example.com",
            "--id-token-file",
            token_file.to_str().unwrap(),
            "--json",
        ]);
        assert!(ok, "{stderr}");
        let dave: Value = serde_json::from_str(&stdout).unwrap();
        let (dave_key, _) = client.lookup_or_assign(VERIFIER, "dave@example.com").await.unwrap();
        assert_eq!(dave["address"], dave_key.address.as_str(), "{stdout}");

        // One host's node dies: logins go on; it restarts and catches up.
        nodes.kill(2);
        let token = mint("carol@example.com").await;
        let carol = torus_js(&app_network, VERIFIER, "carol@example.com", Some(&token)).expect("login, node 2 down");
        let login = client.login(VERIFIER, "bob@example.com", &mint("bob@example.com").await).await.unwrap();
        assert_eq!(login.key.address, bob.address);
        nodes.0[1] = Some(start_node(&hosts, &operators[1], 2));
        let height = health(&http, 1).await.unwrap()["height"].as_u64().unwrap();
        wait_health(&http, 2, "catch-up", |h| h["status"] == "ok" && h["height"].as_u64() >= Some(height)).await;
        let again = torus_js(&app_network, VERIFIER, "carol@example.com", Some(&mint("carol@example.com").await))
            .expect("login after node 2 is back");
        assert_eq!(again["login"]["privKey"], carol["login"]["privKey"]);
    });
    no_secret_left_its_directory(work, &operators);
}
