//! `network init` output, node configuration and key files, on disk.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;

use commonware_cryptography::Signer as _;
use quorumkey_node::config::{
    ConfigError, InitOptions, NETWORK_FILE, NODE_CONFIG_FILE, NetworkFile, NetworkPolicyFile, NodeConfig,
    ProviderSettings, RpcSettings, init_network,
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
        rpc: RpcSettings { allow_unsigned_key_assign: true, ..Default::default() },
        providers: Default::default(),
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
        assert_eq!(config.index, Some(index));
        assert_eq!(NetworkFile::load(&config.network_file).unwrap(), network);
        let identity = NodeIdentity::load(&config.key_dir).unwrap();
        let node = genesis.node(index).unwrap();
        assert_eq!(identity.consensus.public_key(), node.consensus_key);
        assert_eq!(identity.secp256k1_public_bytes(), node.secp256k1_key);
        assert_eq!(
            network.nodes[usize::from(index) - 1].rpc_url.as_str(),
            format!("http://127.0.0.1:{}", 17000 + index)
        );
    }
    // Keys are never overwritten, and a used directory is refused.
    let identity = NodeIdentity::load(&out.join("node-1")).unwrap();
    assert!(matches!(identity.save(&out.join("node-1")), Err(KeyFileError::Exists(_))));
    assert!(matches!(init_network(&out, &options(4)), Err(ConfigError::NotEmpty(_))));
    assert!(matches!(init_network(&dir.path().join("zero"), &options(0)), Err(ConfigError::Invalid { .. })));
}

#[test]
fn key_assign_needs_a_signer_unless_the_operator_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    // network init refuses to write a network whose nodes would hand out
    // keys to anyone.
    let unsigned = InitOptions { rpc: RpcSettings::default(), ..options(1) };
    let error = init_network(&dir.path().join("a"), &unsigned).unwrap_err().to_string();
    assert!(error.contains("rpc.key_assign_signer is not set"), "{error}");
    assert!(error.contains("allow_unsigned_key_assign"), "{error}");
    assert!(!dir.path().join("a").exists());
    // A node.toml edited to drop the signer is refused at load.
    let out = dir.path().join("b");
    init_network(&out, &options(1)).unwrap();
    let path = out.join("node-1").join(NODE_CONFIG_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("allow_unsigned_key_assign = true"), "{text}");
    std::fs::write(&path, text.replace("allow_unsigned_key_assign = true", "")).unwrap();
    let error = NodeConfig::load(&path).unwrap_err().to_string();
    assert!(error.contains("rpc.key_assign_signer is not set"), "{error}");
    // A signer that is not a key is refused too.
    let bad =
        InitOptions { rpc: RpcSettings { key_assign_signer: Some("02zz".into()), ..Default::default() }, ..options(1) };
    assert!(init_network(&dir.path().join("c"), &bad).unwrap_err().to_string().contains("rpc.key_assign_signer"));
}

#[test]
fn the_policy_section_round_trips_and_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = NetworkPolicyFile { assignments_per_node: Some(7), window_secs: Some(30), ..Default::default() };
    let out = dir.path().join("net");
    init_network(&out, &InitOptions { policy: file.clone(), ..options(2) }).unwrap();
    let network = NetworkFile::load(&out.join(NETWORK_FILE)).unwrap();
    assert_eq!(network.policy, file);
    let policy = network.genesis().unwrap().policy;
    assert_eq!(policy.assignments_per_node, 7);
    assert_eq!(policy.window_ms, 30_000);
    assert_eq!(policy.assignments_per_verifier, 600);
    assert_eq!(NetworkPolicyFile::from_policy(&policy).policy().unwrap(), policy);
    // Owners listed in any order, case or with repeats make one policy.
    let owners: Vec<String> = (0..2)
        .map(|_| {
            use quorumkey_crypto::k256::elliptic_curve::Generate;
            let key =
                quorumkey_crypto::k256::ecdsa::SigningKey::generate_from_rng(&mut quorumkey_crypto::random::os_rng());
            hex::encode(quorumkey_node::identity::owner_public_bytes(&key))
        })
        .collect();
    let listed = |list: Vec<String>| NetworkPolicyFile { allowed_owners: Some(list), ..Default::default() }.policy();
    let one = listed(vec![owners[0].clone(), owners[1].clone()]).unwrap();
    let other = listed(vec![owners[1].to_uppercase(), owners[0].clone(), owners[1].clone()]).unwrap();
    assert_eq!(one, other);
    // A zero budget, a short window or a bad owner key never reaches a genesis.
    for bad in [
        NetworkPolicyFile { assignments_per_window: Some(0), ..Default::default() },
        NetworkPolicyFile { window_secs: Some(0), ..Default::default() },
        NetworkPolicyFile { allowed_owners: Some(vec!["05".repeat(33)]), ..Default::default() },
        NetworkPolicyFile { max_config_len: Some(1 << 20), ..Default::default() },
    ] {
        let error = init_network(&dir.path().join("bad"), &InitOptions { policy: bad, ..options(1) }).unwrap_err();
        assert!(matches!(error, ConfigError::Invalid { .. }), "{error}");
    }
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

#[test]
fn providers_are_reached_at_public_addresses_unless_the_node_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    init_network(&out, &options(1)).unwrap();
    let path = out.join("node-1").join(NODE_CONFIG_FILE);
    // `network init` writes production nodes: no [providers] section, so
    // the defaults, which allow public addresses only.
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(!written.contains("[providers]"), "{written}");
    let config = NodeConfig::load(&path).unwrap();
    assert_eq!(config.providers, ProviderSettings::default());
    assert!(!config.providers.allow_private_addresses);
    assert!(!config.providers.access().allows_non_public());
    let limits = config.providers.limits();
    assert_eq!((limits.calls_per_second_per_verifier, limits.answer_ttl.as_secs()), (20, 60));
    let jwks = config.providers.jwks_policy();
    assert_eq!((jwks.max_age.as_secs(), jwks.max_stale.as_secs()), (600, 3600));

    // The development setting, as a devnet writes it.
    std::fs::write(&path, format!("{written}\n[providers]\nallow_private_addresses = true\n")).unwrap();
    let config = NodeConfig::load(&path).unwrap();
    assert!(config.providers.access().allows_non_public());
    assert_eq!(config.providers, ProviderSettings::development());

    // Bad values are refused, naming the setting.
    for (setting, message) in [
        ("calls_per_second_per_verifier = 0", "providers.calls_per_second_per_verifier must be at least 1"),
        ("jwks_max_stale_secs = 10", "providers.jwks_max_stale_secs must be at least providers.jwks_max_age_secs"),
        ("answer_cache_secs = 86400", "providers.answer_cache_secs must be at most 3600"),
        ("answer_cache_entries = 4000000000", "providers.answer_cache_entries must be at most"),
        ("allow_loopback = true", "unknown field"),
    ] {
        std::fs::write(&path, format!("{written}\n[providers]\n{setting}\n")).unwrap();
        let error = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(error.contains(message), "{setting}: {error}");
    }
}

#[test]
fn a_network_file_with_the_older_rpc_address_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    init_network(&out, &options(4)).unwrap();
    let path = out.join(NETWORK_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    // As `network init` wrote it before nodes advertised a URL.
    let older = text.replace("rpc_url = \"http://127.0.0.1:17001\"", "rpc_address = \"127.0.0.1:17001\"");
    assert_ne!(older, text);
    std::fs::write(&path, older).unwrap();
    let network = NetworkFile::load(&path).unwrap();
    assert_eq!(network.nodes[0].rpc_url.as_str(), "http://127.0.0.1:17001");
    assert_eq!(network.nodes[0].rpc_url.listen_default(), Some("127.0.0.1:17001".parse().unwrap()));
    // A URL a node could not serve is refused, with the field named.
    let bad = text.replace("rpc_url = \"http://127.0.0.1:17001\"", "rpc_url = \"ftp://127.0.0.1:17001\"");
    std::fs::write(&path, bad).unwrap();
    let error = NetworkFile::load(&path).unwrap_err().to_string();
    assert!(error.contains("scheme must be http or https"), "{error}");
}

#[test]
fn a_node_binds_what_its_operator_chose_or_what_it_advertises() {
    use quorumkey_node::run::{LoadedNode, NodeError};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    init_network(&out, &options(4)).unwrap();
    let config = out.join("node-2").join(NODE_CONFIG_FILE);
    let node = LoadedNode::load(&config).unwrap();
    assert_eq!(node.listen.rpc, "127.0.0.1:17002".parse().unwrap());
    assert_eq!(node.listen.p2p, "127.0.0.1:27002".parse().unwrap());
    let text = std::fs::read_to_string(&config).unwrap();
    let chosen =
        text.replacen("network_file", "p2p_listen = \"0.0.0.0:27002\"\nrpc_listen = \"[::]:8000\"\nnetwork_file", 1);
    std::fs::write(&config, chosen).unwrap();
    let node = LoadedNode::load(&config).unwrap();
    assert_eq!(node.listen.rpc, "[::]:8000".parse().unwrap());
    assert_eq!(node.listen.p2p, "0.0.0.0:27002".parse().unwrap());
    // A node advertising a host name must be told where to bind.
    let network = out.join(NETWORK_FILE);
    let named = std::fs::read_to_string(&network)
        .unwrap()
        .replace("rpc_url = \"http://127.0.0.1:17001\"", "rpc_url = \"https://node1.example.org\"");
    std::fs::write(&network, named).unwrap();
    match LoadedNode::load(&out.join("node-1").join(NODE_CONFIG_FILE)) {
        Err(error @ NodeError::ListenAddress { .. }) => assert!(error.to_string().contains("rpc_listen"), "{error}"),
        other => panic!("{:?}", other.map(|node| node.listen)),
    }
}

#[test]
fn bootstrap_peers_are_checked_when_node_toml_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    init_network(&out, &options(1)).unwrap();
    let path = out.join("node-1").join(NODE_CONFIG_FILE);
    let written = std::fs::read_to_string(&path).unwrap();
    let key = "11".repeat(32);
    // bootstrap_peers is a top-level key: it goes before any [section].
    let with = |entry: &str| format!("bootstrap_peers = [\"{entry}\"]\n{written}");
    for (entry, message) in [
        (format!("{key}127.0.0.1:9000"), "no `@`"),
        ("zz@127.0.0.1:9000".to_owned(), "the key is not hex"),
        (format!("{key}@example.com:9000"), "the address is not IP:PORT"),
        (format!("{}@127.0.0.1:9000", "11".repeat(8)), "not an ed25519 key"),
    ] {
        std::fs::write(&path, with(&entry)).unwrap();
        let error = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(error.contains(message), "{entry}: {error}");
    }
    // A real node key loads.
    let network = quorumkey_node::config::NetworkFile::load(&out.join("network.toml")).unwrap();
    let real = format!("{}@127.0.0.1:9000", network.nodes[0].consensus_key);
    std::fs::write(&path, with(&real)).unwrap();
    assert_eq!(NodeConfig::load(&path).unwrap().bootstrap_peers, vec![real.clone()]);
    let (key, address) = quorumkey_node::config::parse_bootstrap_peer(&real).unwrap();
    assert_eq!(hex::encode(key.as_ref()), network.nodes[0].consensus_key);
    assert_eq!(address.port(), 9000);
}
