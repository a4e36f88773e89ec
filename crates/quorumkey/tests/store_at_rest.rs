//! A node's data at rest, on real `quorumkey` processes: no share in plain
//! form anywhere under a node's data directory after a devnet made keys
//! (every key share and batch share, read through the store with the
//! node's key-encryption key, searched for in every file), private files
//! and directories, `node rekey` (the old key refused, the new one works,
//! the shares unchanged), `node run` refusing an open data directory or a
//! missing, doubled or wrong key, and a corrupt login-log entry refused
//! at start, then reported (warning with its offset, metric) once the
//! operator accepts it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quorumkey_devnet::supervisor::Devnet;
use quorumkey_node::config::{NETWORK_FILE, NetworkDkg, NetworkFile};
use quorumkey_node::kek::{KEK_ENV, KEK_FILE, read_kek_file};
use quorumkey_store::{Kek, NewLoginRecord, NodeStore, StoreError};
use support::{devnet_options, start_devnet};

const NODES: u16 = 4;

fn quorumkey() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quorumkey"));
    command.env_remove(KEK_ENV);
    command
}

/// Runs `command` until it exits or `limit` passes (then kills it):
/// whether it exited, successfully, and its standard error.
fn run_for(mut command: Command, limit: Duration) -> (Option<bool>, String) {
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr.reopen().unwrap()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status.success());
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(stderr.path()).unwrap())
}

fn node_run(config: &Path) -> Command {
    let mut command = quorumkey();
    command.args(["node", "run", "--config", config.to_str().unwrap()]);
    command
}

/// `node run` with `command` must exit at once with an error saying
/// `expected`.
fn refused(command: Command, expected: &[&str]) {
    let (status, stderr) = run_for(command, Duration::from_secs(30));
    assert_eq!(status, Some(false), "the node must refuse to start: {stderr}");
    for text in expected {
        assert!(stderr.contains(text), "{text:?} in {stderr}");
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file under `dir`, with its content.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

/// Every file and directory under `dir` (itself included) is private.
fn assert_private(dir: &Path) {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_private(&path);
        } else {
            assert_eq!(mode(&path) & 0o077, 0, "{} (mode {:o})", path.display(), mode(&path));
        }
    }
}

/// A node's shares, read through its store with `kek`: key shares by
/// index, and each batch's stored shares.
struct Shares {
    keys: HashMap<u64, [u8; 32]>,
    batches: HashMap<u64, Vec<u8>>,
}

impl Shares {
    /// Every 32-byte secret: each key share, each value and blinding of
    /// each batch.
    fn secrets(&self) -> Vec<[u8; 32]> {
        let mut out: Vec<[u8; 32]> = self.keys.values().copied().collect();
        for blob in self.batches.values() {
            assert_eq!(blob.len() % 32, 0);
            out.extend(blob.chunks(32).map(|chunk| <[u8; 32]>::try_from(chunk).unwrap()));
        }
        out
    }
}

fn read_shares(devnet_dir: &Path, index: u16, kek: &Kek) -> Result<Shares, StoreError> {
    let network = NetworkFile::load(&devnet_dir.join(NETWORK_FILE)).unwrap();
    let ledger = quorumkey_ledger::Ledger::new(network.genesis().unwrap()).unwrap();
    let store = NodeStore::open(&ledger_file(devnet_dir, index), &ledger, kek)?;
    let keys = store
        .key_share_indexes()?
        .into_iter()
        .map(|i| Ok((i, *store.key_share(i)?.unwrap())))
        .collect::<Result<_, StoreError>>()?;
    let batches = store
        .batches_with_shares()?
        .into_iter()
        .map(|b| Ok((b, store.batch_shares(b)?.unwrap().to_vec())))
        .collect::<Result<_, StoreError>>()?;
    Ok(Shares { keys, batches })
}

fn node_dir(devnet_dir: &Path, index: u16) -> PathBuf {
    devnet_dir.join(format!("node-{index}"))
}

fn data_dir(devnet_dir: &Path, index: u16) -> PathBuf {
    node_dir(devnet_dir, index).join("data")
}

fn ledger_file(devnet_dir: &Path, index: u16) -> PathBuf {
    data_dir(devnet_dir, index).join(quorumkey_node::run::LEDGER_FILE)
}

fn kek_of(devnet_dir: &Path, index: u16) -> Kek {
    read_kek_file(&node_dir(devnet_dir, index).join(KEK_FILE)).unwrap()
}

/// The DKG never rests (the pool's target is out of reach), so batches
/// are in flight, their shares stored, whenever the devnet stops.
fn busy_dkg() -> NetworkDkg {
    NetworkDkg { batch_keys: Some(16), pool_target: Some(100_000), low_water: Some(100_000), ..NetworkDkg::default() }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_share_is_stored_in_plain_form_and_a_rekey_keeps_them() {
    let work = tempfile::tempdir().unwrap();
    let options = devnet_options(work.path(), NODES, busy_dkg());
    let dir = options.dir.clone();
    let (devnet, _) = start_devnet(&options, 16).await;
    devnet.stop().await;

    // Stop at moments when some node holds a batch's shares too.
    let mut attempt = 0;
    let (snapshots, shares) = loop {
        let snapshots: Vec<Vec<(PathBuf, Vec<u8>)>> = (1..=NODES).map(|i| files_under(&data_dir(&dir, i))).collect();
        let shares: Vec<Shares> = (1..=NODES).map(|i| read_shares(&dir, i, &kek_of(&dir, i)).unwrap()).collect();
        if shares.iter().any(|s| !s.batches.is_empty()) || attempt == 10 {
            break (snapshots, shares);
        }
        attempt += 1;
        let mut devnet = Devnet::launch(&options).unwrap();
        devnet.wait_for_height(1, Duration::from_secs(120)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(700 * attempt)).await;
        devnet.stop().await;
    };
    let key_shares: usize = shares.iter().map(|s| s.keys.len()).sum();
    let batch_shares: usize = shares.iter().map(|s| s.batches.len()).sum();
    assert!(key_shares >= 16, "the nodes hold shares of the ready keys: {key_shares}");
    assert!(batch_shares > 0, "some node held a batch's shares when the devnet stopped");

    // Not one share in any file under any node's data directory.
    for (index, (files, shares)) in (1u16..).zip(snapshots.iter().zip(&shares)) {
        let secrets = shares.secrets();
        assert!(files.iter().any(|(path, _)| path.ends_with(quorumkey_node::run::LEDGER_FILE)));
        for (path, bytes) in files {
            for (i, secret) in secrets.iter().enumerate() {
                assert!(
                    !bytes.windows(32).any(|window| window == secret),
                    "node {index}: secret {i} of {} in plain form in {}",
                    secrets.len(),
                    path.display()
                );
            }
        }
        // Private: the data directory, the consensus storage, every file.
        assert_private(&data_dir(&dir, index));
        assert_eq!(mode(&node_dir(&dir, index).join(KEK_FILE)), 0o600);
    }

    // Rekey node 1: the old key is refused, the new one opens the same
    // shares.
    let new_kek = work.path().join("node-1-new.kek");
    let output = quorumkey().args(["node", "new-kek", "--out", new_kek.to_str().unwrap()]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(mode(&new_kek), 0o600);
    let config = node_dir(&dir, 1).join("node.toml");
    let output = quorumkey()
        .args(["node", "rekey", "--config", config.to_str().unwrap(), "--new-kek", new_kek.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(&format!("re-encrypted {} key shares", shares[0].keys.len())), "{stdout}");
    let new = read_kek_file(&new_kek).unwrap();
    assert!(matches!(read_shares(&dir, 1, &kek_of(&dir, 1)), Err(StoreError::WrongKek { .. })));
    let rekeyed = read_shares(&dir, 1, &new).unwrap();
    assert_eq!(rekeyed.keys, shares[0].keys);
    assert_eq!(rekeyed.batches, shares[0].batches);
    let after = files_under(&data_dir(&dir, 1));
    for (path, bytes) in &after {
        for secret in rekeyed.secrets() {
            assert!(!bytes.windows(32).any(|window| window == secret), "{}", path.display());
        }
    }
    // The node refuses its old key (node.toml still names it) and runs
    // with the new one, given through the environment.
    refused(node_run(&config), &["is not the one", &kek_of(&dir, 1).id().to_string(), &new.id().to_string()]);
    let text = std::fs::read_to_string(&config).unwrap();
    let without_file: String =
        text.lines().filter(|line| !line.starts_with("kek_file")).map(|l| format!("{l}\n")).collect();
    assert_ne!(text, without_file);
    std::fs::write(&config, &without_file).unwrap();
    let mut with_env = node_run(&config);
    with_env.env(KEK_ENV, std::fs::read_to_string(&new_kek).unwrap().trim());
    let (status, stderr) = run_for(with_env, Duration::from_secs(8));
    assert_eq!(status, None, "node 1 runs with the new key: {stderr}");
    assert!(stderr.contains("node started"), "{stderr}");
}

fn free_base(avoid: u16) -> u16 {
    quorumkey_devnet::supervisor::free_port_base(1, avoid).unwrap()
}

/// A one-node network made by `network init`, and node 1's config.
fn one_node(work: &Path) -> (PathBuf, PathBuf) {
    let out = work.join("net");
    let p2p = free_base(0);
    let rpc = free_base(p2p);
    let output = quorumkey()
        .args(["network", "init", "--nodes", "1", "--out", out.to_str().unwrap(), "--allow-unsigned-key-assign"])
        .args(["--p2p-base-port", &p2p.to_string(), "--rpc-base-port", &rpc.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let config = out.join("node-1").join("node.toml");
    (out, config)
}

#[test]
fn node_run_refuses_an_open_data_directory_and_a_missing_doubled_or_bad_key() {
    let work = tempfile::tempdir().unwrap();
    let (out, config) = one_node(work.path());
    let node = out.join("node-1");
    assert_eq!(mode(&node.join(KEK_FILE)), 0o600, "network init writes the node's KEK");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("kek_file = \"kek.key\""), "{text}");

    // A data directory others may read.
    let data = node.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    refused(node_run(&config), &[&data.display().to_string(), "chmod 700"]);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();

    // Both a file and the environment; a key file others may read.
    let mut both = node_run(&config);
    both.env(KEK_ENV, "00".repeat(32));
    refused(both, &["both kek_file", KEK_ENV]);
    std::fs::set_permissions(node.join(KEK_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(node_run(&config), &["chmod 600"]);
    std::fs::set_permissions(node.join(KEK_FILE), std::fs::Permissions::from_mode(0o600)).unwrap();

    // No key at all; a variable that is not a key.
    let without_file: String =
        text.lines().filter(|line| !line.starts_with("kek_file")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&config, without_file).unwrap();
    refused(node_run(&config), &["no key-encryption key", "new-kek", KEK_ENV]);
    let mut bad = node_run(&config);
    bad.env(KEK_ENV, "not a key");
    refused(bad, &["is not a key-encryption key"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_login_log_entry_stops_the_node_until_accepted_then_is_reported() {
    let work = tempfile::tempdir().unwrap();
    let (out, config) = one_node(work.path());
    let node = out.join("node-1");
    let data = node.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let db = data.join(quorumkey_node::run::LEDGER_FILE);
    // Three appends of a login record each (entries of equal length) that
    // expire in an hour, the middle one's then damaged.
    let network = NetworkFile::load(&out.join(NETWORK_FILE)).unwrap();
    let ledger = quorumkey_ledger::Ledger::new(network.genesis().unwrap()).unwrap();
    let expires_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3_600;
    {
        let store = NodeStore::open(&db, &ledger, &read_kek_file(&node.join(KEK_FILE)).unwrap()).unwrap();
        for key in ["key-1", "key-2", "key-3"] {
            let record = NewLoginRecord { key: key.as_bytes().to_vec(), value: vec![9; 100], expires_at };
            store.insert_login_records(&[record]).unwrap();
        }
    }
    let log = NodeStore::login_log_path(&db);
    let mut bytes = std::fs::read(&log).unwrap();
    let entry = bytes.len() / 3;
    bytes[entry + 30] ^= 0x08;
    std::fs::write(&log, bytes).unwrap();

    refused(node_run(&config), &["corrupt entry at byte", &entry.to_string(), "--accept-lost-login-records"]);

    let mut accepted = node_run(&config);
    accepted.arg("--accept-lost-login-records").env("RUST_LOG", "warn");
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let mut child = accepted.stdout(Stdio::null()).stderr(Stdio::from(stderr.reopen().unwrap())).spawn().unwrap();
    let metrics_url = format!("{}/metrics", network.nodes[0].rpc_url);
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        if let Ok(answer) = reqwest::get(&metrics_url).await
            && let Ok(text) = answer.text().await
            && text.contains("quorumkey_login_log_corrupt_entries_total")
        {
            break text;
        }
        assert!(child.try_wait().unwrap().is_none(), "{}", std::fs::read_to_string(stderr.path()).unwrap());
        assert!(Instant::now() < deadline, "no metric");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(metrics.contains(r#"quorumkey_login_log_corrupt_entries_total{acknowledged="true"} 1"#), "{metrics}");
    let log_text = std::fs::read_to_string(stderr.path()).unwrap();
    assert!(
        log_text.contains("corrupt login-log entry") && log_text.contains(&format!("offset={entry}")),
        "{log_text}"
    );

    // The other records survived; the next start is clean.
    let store = NodeStore::open(&db, &ledger, &read_kek_file(&node.join(KEK_FILE)).unwrap()).unwrap();
    assert!(store.login_log_damage().is_empty());
    assert!(store.login_record(b"key-1").unwrap().is_some());
    assert!(store.login_record(b"key-2").unwrap().is_none());
    assert!(store.login_record(b"key-3").unwrap().is_some());
}
