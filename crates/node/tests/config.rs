//! `network init` output, node configuration and key files, on disk.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;

use commonware_cryptography::Signer as _;
use quorumkey_node::config::{
    ConfigError, InitOptions, NETWORK_FILE, NODE_CONFIG_FILE, NetworkFile, NodeConfig, init_network,
};
use quorumkey_node::identity::{CONSENSUS_KEY_FILE, KeyFileError, NodeIdentity, SECP256K1_KEY_FILE};

fn options(nodes: u16) -> InitOptions {
    InitOptions {
        nodes,
        p2p_base_port: 27000,
        rpc_base_port: 17000,
        verifiers: vec![],
        dkg: Default::default(),
        policy: Default::default(),
        rpc: Default::default(),
        http: Default::default(),
    }
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_a_consistent_network() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    let written = init_network(&out, &options(4)).unwrap();
    let network = NetworkFile::load(&out.join(NETWORK_FILE)).unwrap();
    assert_eq!(network, written);
    let genesis = network.genesis().unwrap();
    assert_eq!(genesis.node_count(), 4);
    for index in 1..=4u16 {
        let node_dir = out.join(format!("node-{index}"));
        assert_eq!(mode(&node_dir), 0o700);
        assert_eq!(mode(&node_dir.join(CONSENSUS_KEY_FILE)), 0o600);
        assert_eq!(mode(&node_dir.join(SECP256K1_KEY_FILE)), 0o600);
        let config = NodeConfig::load(&node_dir.join(NODE_CONFIG_FILE)).unwrap();
        assert_eq!(config.index, index);
        assert_eq!(NetworkFile::load(&config.network_file).unwrap(), network);
        let identity = NodeIdentity::load(&config.key_dir).unwrap();
        let node = genesis.node(index).unwrap();
        assert_eq!(identity.consensus.public_key(), node.consensus_key);
        assert_eq!(identity.secp256k1_public_bytes(), node.secp256k1_key);
        assert_eq!(network.nodes[usize::from(index) - 1].rpc_address.port(), 17000 + index);
    }
    // Keys are never overwritten, and a used directory is refused.
    let identity = NodeIdentity::load(&out.join("node-1")).unwrap();
    assert!(matches!(identity.save(&out.join("node-1")), Err(KeyFileError::Exists(_))));
    assert!(matches!(init_network(&out, &options(4)), Err(ConfigError::NotEmpty(_))));
    assert!(matches!(init_network(&dir.path().join("zero"), &options(0)), Err(ConfigError::Invalid { .. })));
}

#[test]
fn unsafe_or_corrupt_key_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    init_network(&out, &options(1)).unwrap();
    let node_dir = out.join("node-1");
    let key = node_dir.join(SECP256K1_KEY_FILE);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = NodeIdentity::load(&node_dir).unwrap_err();
    assert!(matches!(error, KeyFileError::Permissions { mode: 0o644, .. }), "{error}");
    assert!(error.to_string().contains("chmod 600"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&key, "00\n").unwrap();
    assert!(matches!(NodeIdentity::load(&node_dir), Err(KeyFileError::Invalid { kind: "secp256k1", .. })));
    std::fs::write(node_dir.join(CONSENSUS_KEY_FILE), "zz\n").unwrap();
    assert!(matches!(NodeIdentity::load(&node_dir), Err(KeyFileError::Invalid { kind: "ed25519", .. })));
}

#[test]
fn a_bad_network_file_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    init_network(&out, &options(2)).unwrap();
    let path = out.join(NETWORK_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let broken = text.replacen("secp256k1_key = \"0", "secp256k1_key = \"9", 1);
    std::fs::write(&path, broken).unwrap();
    let error = NetworkFile::load(&path).unwrap_err().to_string();
    assert!(error.contains("secp256k1_key"), "{error}");
    std::fs::write(&path, "nodes = 3").unwrap();
    assert!(matches!(NetworkFile::load(&path), Err(ConfigError::Parse { .. })));
}
