//! Operators' own keys and the genesis from their public enrollments: an
//! altered enrollment is refused, the same enrollments in any order make
//! the same network, no key or address enrolls twice, and a node made by
//! `keygen` finds itself in the genesis by its keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use quorumkey_node::addresses::RpcUrl;
use quorumkey_node::config::{NETWORK_FILE, NODE_CONFIG_FILE};
use quorumkey_node::enrollment::{
    ENROLLMENT_FILE, Enrollment, EnrollmentError, GenesisParts, KeygenOptions, NodeOrder, keygen,
    network_from_enrollments,
};
use quorumkey_node::identity::{CONSENSUS_KEY_FILE, SECP256K1_KEY_FILE};
use quorumkey_node::run::{LoadedNode, NodeError};

fn address(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, (port % 200) as u8 + 1], port))
}

fn url(port: u16) -> RpcUrl {
    RpcUrl::parse(&format!("http://{}", address(port))).unwrap()
}

fn options() -> KeygenOptions {
    let mut options = KeygenOptions::default();
    options.rpc.allow_unsigned_key_assign = true;
    options
}

/// `count` nodes made by keygen in their own directories under `root`.
fn enroll(root: &Path, count: u16) -> Vec<Enrollment> {
    (1..=count)
        .map(|i| keygen(&root.join(format!("operator-{i}")), address(27000 + i), &url(17000 + i), &options()).unwrap())
        .collect()
}

#[test]
fn keygen_writes_private_keys_and_a_signed_public_enrollment() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("operator");
    let enrollment = keygen(&dir, address(27001), &url(17001), &options()).unwrap();
    enrollment.verify().unwrap();
    assert_eq!(Enrollment::load(&dir.join(ENROLLMENT_FILE)).unwrap(), enrollment);
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    for secret in [CONSENSUS_KEY_FILE, SECP256K1_KEY_FILE, "kek.key"] {
        let path = dir.join(secret);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "{secret}");
        // No secret is in the enrollment, the one file that leaves.
        let key = std::fs::read_to_string(&path).unwrap();
        let public = std::fs::read_to_string(dir.join(ENROLLMENT_FILE)).unwrap();
        assert!(!public.contains(key.trim()), "{secret} leaks into the enrollment");
    }
    // A directory in use is not overwritten.
    assert!(keygen(&dir, address(27001), &url(17001), &options()).is_err());
}

#[test]
fn an_altered_enrollment_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let [enrollment, other]: [Enrollment; 2] = enroll(root.path(), 2).try_into().unwrap();
    let altered = [
        Enrollment { p2p_address: address(30000), ..enrollment.clone() },
        Enrollment { rpc_url: url(30001), ..enrollment.clone() },
        // The same URL spelled otherwise is the same URL; a different one is not.
        Enrollment { rpc_url: RpcUrl::parse("https://node.example.org").unwrap(), ..enrollment.clone() },
        // Another node's key with this one's signatures, each key in turn.
        Enrollment { consensus_key: other.consensus_key.clone(), ..enrollment.clone() },
        Enrollment { secp256k1_key: other.secp256k1_key.clone(), ..enrollment.clone() },
        // Another node's signatures.
        Enrollment { consensus_signature: other.consensus_signature.clone(), ..enrollment.clone() },
        Enrollment { secp256k1_signature: other.secp256k1_signature.clone(), ..enrollment.clone() },
    ];
    for bad in altered {
        assert!(matches!(bad.verify(), Err(EnrollmentError::Signature(_))), "{bad:?}: {:?}", bad.verify());
        let refused =
            network_from_enrollments(&[bad, other.clone()], NodeOrder::ByConsensusKey, GenesisParts::default());
        assert!(refused.is_err());
    }
    // A key's other spelling (upper-case hex) is the same key: still valid.
    let respelled = Enrollment { consensus_key: enrollment.consensus_key.to_uppercase(), ..enrollment.clone() };
    respelled.verify().unwrap();
    let not_a_key = Enrollment { secp256k1_key: format!("05{}", "00".repeat(32)), ..enrollment };
    assert!(matches!(not_a_key.verify(), Err(EnrollmentError::Key { .. })));
}

#[test]
fn the_same_enrollments_in_any_order_make_the_same_network() {
    let root = tempfile::tempdir().unwrap();
    let enrollments = enroll(root.path(), 5);
    let network = network_from_enrollments(&enrollments, NodeOrder::ByConsensusKey, GenesisParts::default()).unwrap();
    let id = network.genesis().unwrap().network_id();
    for rotation in 1..enrollments.len() {
        let mut reordered = enrollments.clone();
        reordered.rotate_left(rotation);
        reordered.swap(0, 1);
        let again = network_from_enrollments(&reordered, NodeOrder::ByConsensusKey, GenesisParts::default()).unwrap();
        assert_eq!(again, network);
        assert_eq!(again.genesis().unwrap().network_id(), id);
    }
    // Indexes follow the consensus keys; `AsGiven` keeps the order given.
    let keys: Vec<&String> = network.nodes.iter().map(|node| &node.consensus_key).collect();
    assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "{keys:?}");
    let given = network_from_enrollments(&enrollments, NodeOrder::AsGiven, GenesisParts::default()).unwrap();
    assert_eq!(given.nodes[0].consensus_key, enrollments[0].consensus_key);
}

#[test]
fn no_key_or_address_enrolls_twice() {
    let root = tempfile::tempdir().unwrap();
    let enrollments = enroll(root.path(), 3);
    let twice = [enrollments[0].clone(), enrollments[1].clone(), enrollments[0].clone()];
    assert!(matches!(
        network_from_enrollments(&twice, NodeOrder::ByConsensusKey, GenesisParts::default()),
        Err(EnrollmentError::Duplicate { what: "consensus_key", .. })
    ));
    // A node enrolled at another node's address (signed, so only its own
    // operator could have made it).
    let dir = root.path().join("late");
    let same_address = keygen(&dir, enrollments[1].p2p_address, &url(19999), &options()).unwrap();
    let both = [enrollments[1].clone(), same_address];
    assert!(matches!(
        network_from_enrollments(&both, NodeOrder::ByConsensusKey, GenesisParts::default()),
        Err(EnrollmentError::Duplicate { what: "address", .. })
    ));
    assert!(matches!(
        network_from_enrollments(&[], NodeOrder::ByConsensusKey, GenesisParts::default()),
        Err(EnrollmentError::Count { got: 0, .. })
    ));
}

#[test]
fn a_node_made_by_keygen_finds_itself_in_the_genesis() {
    let root = tempfile::tempdir().unwrap();
    let enrollments = enroll(root.path(), 3);
    let network = network_from_enrollments(&enrollments, NodeOrder::ByConsensusKey, GenesisParts::default()).unwrap();
    let text = toml::to_string_pretty(&network).unwrap();
    for (i, enrollment) in enrollments.iter().enumerate() {
        let dir = root.path().join(format!("operator-{}", i + 1));
        std::fs::write(dir.join(NETWORK_FILE), &text).unwrap();
        let node = LoadedNode::load(&dir.join(NODE_CONFIG_FILE)).unwrap();
        let listed = network.nodes.iter().find(|node| node.consensus_key == enrollment.consensus_key).unwrap();
        assert_eq!(node.me.index, listed.index);
        assert_eq!(node.me.p2p_address, enrollment.p2p_address);
    }
    // A node not in the genesis runs as one that joins by an epoch change,
    // from its own enrollment (it follows consensus as an observer until
    // an epoch change adds it)...
    let stranger = root.path().join("stranger");
    let enrollment = keygen(&stranger, address(28000), &url(18000), &options()).unwrap();
    std::fs::write(stranger.join(NETWORK_FILE), &text).unwrap();
    let joining = LoadedNode::load(&stranger.join(NODE_CONFIG_FILE)).unwrap();
    assert!(joining.joining);
    assert_eq!(joining.me.index, 0);
    assert_eq!(joining.me.p2p_address, enrollment.p2p_address);
    // ... and without an enrollment it is refused, naming why.
    std::fs::remove_file(stranger.join(quorumkey_node::enrollment::ENROLLMENT_FILE)).unwrap();
    let refused = LoadedNode::load(&stranger.join(NODE_CONFIG_FILE)).unwrap_err();
    assert!(matches!(refused, NodeError::NotEnrolled { .. }), "{refused}");
    assert!(refused.to_string().contains("enrollment"), "{refused}");
    // An enrollment of other keys is refused too.
    let other = root.path().join("other");
    keygen(&other, address(28001), &url(18001), &options()).unwrap();
    std::fs::copy(
        other.join(quorumkey_node::enrollment::ENROLLMENT_FILE),
        stranger.join(quorumkey_node::enrollment::ENROLLMENT_FILE),
    )
    .unwrap();
    let refused = LoadedNode::load(&stranger.join(NODE_CONFIG_FILE)).unwrap_err();
    assert!(refused.to_string().contains("other keys"), "{refused}");
}
