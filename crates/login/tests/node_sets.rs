//! The login rules follow the node set in force on the ledger, and
//! `node_set` (what `GET /v1/network` adds) describes it: after a set
//! change a node's index is its position in the new set, a node left out
//! refuses (`-32003`), the reveal quorum is the new set's; the described
//! sets are attested and nothing changes under the attestation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use commonware_cryptography::{Signer as _, ed25519};
use quorumkey_crypto::group::{PublicKey, public_key_from_sec1, public_key_to_xy_hex};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_ledger::testkit::{TestNetwork, compressed};
use quorumkey_ledger::{
    DkgEvent, DkgSettings, EpochNode, EpochSettings, HandoverStage, LedgerView, MemoryState, TransactionBody,
};
use quorumkey_login::network::{DescriptionError, NetworkJsonNode, NodeSetJson};
use quorumkey_login::rpc::NOT_IN_NODE_SET;
use quorumkey_login::{LoginError, NodeSetKeys, required_signatures};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const NETWORK_ID: &str = "0101010101010101010101010101010101010101010101010101010101010101";

fn public(key: &SigningKey) -> PublicKey {
    PublicKey::from(key.verifying_key())
}

/// A four-node ledger with an empty pool (a handover goes straight to its
/// boundary), the genesis secp256k1 keys, and a newcomer's keys.
struct Chain {
    kit: TestNetwork,
    state: MemoryState,
    height: u64,
}

impl Chain {
    fn new() -> Self {
        let dkg = DkgSettings { pool_target: 0, low_water: 0, ..DkgSettings::default_for(4) };
        let kit = TestNetwork::with_dkg(4, 5, dkg);
        let mut state = MemoryState::default();
        state.commit(&kit.ledger.genesis_outcome(&state).unwrap().writes);
        Self { kit, state, height: 0 }
    }

    fn apply(&mut self, transactions: &[Vec<u8>]) -> Vec<DkgEvent> {
        self.height += 1;
        let outcome = self.kit.ledger.apply_block(&self.state, self.height, self.height * 1000, transactions).unwrap();
        self.state.commit(&outcome.writes);
        outcome.dkg_events
    }

    fn view(&self) -> LedgerView<'_, MemoryState> {
        LedgerView::new(&self.kit.ledger, &self.state)
    }
}

fn newcomer(seed: u64) -> (SigningKey, EpochNode) {
    let key = SigningKey::generate_from_rng(&mut ChaCha20Rng::seed_from_u64(seed));
    let node = EpochNode {
        consensus_key: ed25519::PrivateKey::from_seed(seed).public_key(),
        secp256k1_key: compressed(&key),
        p2p_address: format!("10.0.0.{seed}:7000"),
        rpc_url: format!("http://10.0.0.{seed}:8000/"),
    };
    (key, node)
}

/// The genesis nodes as the network's description lists them.
fn listed(kit: &TestNetwork) -> Vec<NetworkJsonNode> {
    kit.secp256k1_keys
        .iter()
        .zip(1u16..)
        .map(|(key, index)| {
            let (pub_key_x, pub_key_y) = public_key_to_xy_hex(&public(key));
            NetworkJsonNode {
                index,
                endpoint: format!("http://10.0.1.{index}:8000/jrpc"),
                api: format!("http://10.0.1.{index}:8000"),
                pub_key_x,
                pub_key_y,
                p2p_address: format!("10.0.1.{index}:7000"),
                log: None,
            }
        })
        .collect()
}

#[test]
fn after_a_set_change_indexes_membership_and_the_quorum_are_the_new_sets() {
    let mut chain = Chain::new();
    let genesis_keys: Vec<SigningKey> = chain.kit.secp256k1_keys.clone();
    // Epoch 0: the genesis set, each node at its genesis index.
    let set = chain.view().node_set().unwrap();
    for (key, index) in genesis_keys.iter().zip(1u16..) {
        let keys = NodeSetKeys::new(&set, &public(key)).unwrap();
        assert_eq!((keys.epoch, keys.member().unwrap()), (0, index));
        assert_eq!((keys.threshold, keys.required), (3, required_signatures(4, 3)));
    }

    // Genesis node 2 leaves, two newcomers join: five nodes, t = 3.
    let (first_key, first) = newcomer(60);
    let (second_key, second) = newcomer(61);
    let mut nodes: Vec<EpochNode> = chain
        .kit
        .ledger
        .genesis()
        .nodes
        .iter()
        .map(|n| EpochNode {
            consensus_key: n.consensus_key.clone(),
            secp256k1_key: n.secp256k1_key,
            p2p_address: format!("10.0.1.{}:7000", n.index),
            rpc_url: format!("http://10.0.1.{}:8000", n.index),
        })
        .collect();
    nodes.remove(1);
    nodes.extend([first, second]);
    let proposal = chain.kit.operators_tx(&[1, 2, 3], TransactionBody::ProposeEpoch { epoch: 1, nodes });
    chain.apply(&[proposal]);
    // While the handover runs the set in force is still the genesis's: node
    // 2 still serves, the newcomers do not.
    let set = chain.view().node_set().unwrap();
    assert_eq!(NodeSetKeys::new(&set, &public(&genesis_keys[1])).unwrap().member().unwrap(), 2);
    let outsider = NodeSetKeys::new(&set, &public(&first_key)).unwrap();
    assert_eq!(outsider.member(), Err(LoginError::NotInNodeSet { epoch: 0 }));

    let boundary = u64::from(EpochSettings::default().boundary_blocks);
    while !chain.apply(&[]).contains(&DkgEvent::EpochStarted { epoch: 1, height: boundary }) {
        assert!(chain.height < boundary, "the new set never came into force");
    }
    let set = chain.view().node_set().unwrap();
    let keys_of = |key: &SigningKey| NodeSetKeys::new(&set, &public(key)).unwrap();
    // Genesis node 3 is node 2 now, node 4 is node 3; the newcomers are 4
    // and 5; genesis node 2 is out.
    assert_eq!(keys_of(&genesis_keys[0]).member().unwrap(), 1);
    assert_eq!(keys_of(&genesis_keys[2]).member().unwrap(), 2);
    assert_eq!(keys_of(&genesis_keys[3]).member().unwrap(), 3);
    assert_eq!(keys_of(&first_key).member().unwrap(), 4);
    assert_eq!(keys_of(&second_key).member().unwrap(), 5);
    let removed = keys_of(&genesis_keys[1]);
    assert_eq!(removed.own_index, None);
    let refusal = removed.member().unwrap_err();
    assert_eq!(refusal, LoginError::NotInNodeSet { epoch: 1 });
    let rpc = refusal.to_rpc();
    assert_eq!(rpc.code, NOT_IN_NODE_SET);
    assert!(rpc.data.contains("not in the node set in force (epoch 1)"), "{}", rpc.data);
    // The reveal quorum and the keys a signature is checked against.
    let keys = keys_of(&first_key);
    assert_eq!((keys.epoch, keys.threshold, keys.required), (1, 3, required_signatures(5, 3)));
    assert_eq!(keys.required, 4);
    assert!(!keys.nodes.iter().any(|node| node.public == public(&genesis_keys[1])));
    assert_eq!(keys.nodes[3].public, public(&first_key));
}

#[test]
fn node_sets_are_described_with_the_next_set_and_attested() {
    let mut chain = Chain::new();
    let listed = listed(&chain.kit);
    // Epoch 0: the genesis nodes have no addresses in the ledger; the
    // description's are used.
    let epoch = chain.kit.ledger.epoch_view(&chain.state);
    let described = NodeSetJson::from_ledger(&epoch.current().unwrap(), None, &listed).unwrap();
    assert_eq!((described.epoch, described.threshold, described.nodes.len()), (0, 3, 4));
    assert_eq!(described.nodes[1].api, "http://10.0.1.2:8000");
    assert_eq!(described.nodes[1].endpoint, "http://10.0.1.2:8000/jrpc");
    assert_eq!(described.nodes[1].p2p_address, "10.0.1.2:7000");
    assert!(described.next.is_none());

    // A proposal: the next set appears, without a boundary until ready.
    let (_, joining) = newcomer(70);
    let mut nodes = epoch.current().unwrap().nodes;
    for (node, index) in nodes.iter_mut().zip(1u16..) {
        node.p2p_address = format!("10.0.1.{index}:7000");
        node.rpc_url = format!("http://10.0.1.{index}:8000");
    }
    nodes.push(joining);
    let proposal = chain.kit.operators_tx(&[1, 2, 3], TransactionBody::ProposeEpoch { epoch: 1, nodes });
    chain.apply(&[proposal]);
    let mut ready = None;
    for _ in 0..8 {
        let epoch = chain.kit.ledger.epoch_view(&chain.state);
        let handover = epoch.handover().unwrap().unwrap();
        let described = NodeSetJson::from_ledger(&epoch.current().unwrap(), Some(&handover), &listed).unwrap();
        let next = described.next.clone().unwrap();
        assert_eq!((next.epoch, next.threshold, next.nodes.len()), (1, 3, 5));
        assert_eq!(next.nodes[4].api, "http://10.0.0.70:8000", "a trailing slash is not part of the URL");
        assert_eq!(next.nodes[4].endpoint, "http://10.0.0.70:8000/jrpc");
        match handover.stage {
            HandoverStage::Ready { boundary, .. } => {
                assert_eq!(next.boundary, Some(boundary));
                ready = Some(described);
                break;
            }
            _ => assert_eq!(next.boundary, None),
        }
        chain.apply(&[]);
    }
    let mut described = ready.expect("the handover of an empty pool is ready at once");

    // Attested by a node, for this network.
    let signer = chain.kit.secp256k1_keys[2].clone();
    assert_eq!(described.attested_by(NETWORK_ID), Err(DescriptionError::NotAttested));
    described.attest(NETWORK_ID, &signer).unwrap();
    assert_eq!(described.attested_by(NETWORK_ID).unwrap(), public(&signer));
    assert_eq!(
        public_key_from_sec1(&hex::decode(&described.attestation.as_ref().unwrap().node_key).unwrap()).unwrap(),
        public(&signer)
    );
    // Another spelling of the same values verifies; through JSON too.
    let mut respelled = described.clone();
    respelled.nodes[0].pub_key_x = respelled.nodes[0].pub_key_x.to_uppercase();
    respelled.nodes[0].consensus_key = respelled.nodes[0].consensus_key.to_uppercase();
    assert_eq!(respelled.attested_by(&NETWORK_ID.to_uppercase()).unwrap(), public(&signer));
    let read: NodeSetJson = serde_json::from_str(&serde_json::to_string(&described).unwrap()).unwrap();
    assert_eq!(read.attested_by(NETWORK_ID).unwrap(), public(&signer));
    assert_eq!(read.current_content().unwrap(), respelled.current_content().unwrap());

    // Nothing changes under it: not the network, an address, a key, the
    // threshold, the next set or its boundary.
    type Change = Box<dyn Fn(&mut NodeSetJson)>;
    let changes: Vec<(&str, Change)> = vec![
        ("epoch", Box::new(|d| d.epoch += 1)),
        ("api", Box::new(|d| d.nodes[1].api = "http://evil.example:8000".to_owned())),
        ("endpoint", Box::new(|d| d.nodes[0].endpoint = "http://evil.example:8000/jrpc".to_owned())),
        ("p2p", Box::new(|d| d.nodes[2].p2p_address = "10.9.9.9:7000".to_owned())),
        ("consensus key", Box::new(|d| d.nodes[3].consensus_key = "11".repeat(32))),
        (
            "swapped keys",
            Box::new(|d| {
                let (x, y) = (d.nodes[0].pub_key_x.clone(), d.nodes[0].pub_key_y.clone());
                d.nodes[0].pub_key_x = d.nodes[1].pub_key_x.clone();
                d.nodes[0].pub_key_y = d.nodes[1].pub_key_y.clone();
                d.nodes[1].pub_key_x = x;
                d.nodes[1].pub_key_y = y;
            }),
        ),
        ("next dropped", Box::new(|d| d.next = None)),
        (
            "next node",
            Box::new(|d| {
                d.next.as_mut().unwrap().nodes[4].api = "http://evil.example:8000".to_owned();
            }),
        ),
        ("boundary", Box::new(|d| d.next.as_mut().unwrap().boundary = Some(1 << 40))),
    ];
    for (what, change) in changes {
        let mut changed = described.clone();
        change(&mut changed);
        assert!(changed.attested_by(NETWORK_ID).is_err(), "{what} changed under the attestation");
    }
    assert_eq!(
        described.attested_by(&"02".repeat(32)),
        Err(DescriptionError::BadNodeSetAttestation),
        "another network"
    );
    let mut relabelled = described.clone();
    relabelled.attestation.as_mut().unwrap().node_key =
        hex::encode(quorumkey_crypto::group::point_to_bytes(&public(&chain.kit.secp256k1_keys[0]).to_projective()));
    assert_eq!(relabelled.attested_by(NETWORK_ID), Err(DescriptionError::BadNodeSetAttestation));
    // A next set that is not the next epoch, or a wrong threshold, does
    // not describe anything.
    let mut skipping = described.clone();
    skipping.next.as_mut().unwrap().epoch = 2;
    assert!(matches!(skipping.attest(NETWORK_ID, &signer), Err(DescriptionError::Invalid(_))));
    let mut minority = described.clone();
    minority.threshold = 2;
    assert!(matches!(minority.attest(NETWORK_ID, &signer), Err(DescriptionError::Invalid(_))));
    // The boundary aside, the next set's meaning is what votes compare.
    let mut later = described.clone();
    later.next.as_mut().unwrap().boundary = None;
    assert_eq!(later.next_content().unwrap(), described.next_content().unwrap());
    assert_ne!(later.next_content().unwrap(), described.current_content().ok());
}
