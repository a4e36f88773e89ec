//! A node's JSON-RPC service and `GET /v1/network` follow the node set in
//! force on its ledger (a real store, blocks applied as consensus would):
//! after a set change a node left out refuses every login request with
//! `-32003`, a newcomer signs, the signatures a reveal may carry are the
//! new set's size; the description shows the next set during the handover and the
//! new one after its boundary, attested by the node.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use commonware_cryptography::{Signer as _, ed25519};
use quorumkey_crypto::group::{NonZeroScalar, PublicKey, public_key_to_xy_hex};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_ledger::testkit::{TEST_VERIFIER, TestNetwork, compressed};
use quorumkey_ledger::{DkgSettings, EpochNode, TransactionBody};
use quorumkey_login::RpcResponse;
use quorumkey_login::network::{NetworkJson, NetworkJsonNode};
use quorumkey_login::rpc::{INVALID_PARAMS, NOT_IN_NODE_SET, UNAUTHORIZED};
use quorumkey_node::applier::{BlockApplier, FinalizedBlock};
use quorumkey_node::config::RpcSettings;
use quorumkey_node::consensus::gossip::submitter;
use quorumkey_node::consensus::{AppliedTip, FinalityWaiters, Mempool, MempoolLimits, PeerActivity, StateCheckpoint};
use quorumkey_node::http::client_address::ClientAddress;
use quorumkey_node::http::description::NetworkDescription;
use quorumkey_node::http::jrpc::{LoginKeys, RpcService};
use quorumkey_node::http::v1::NodeApi;
use quorumkey_node::jwks_cache::{JwksCache, JwksCachePolicy};
use quorumkey_node::login_store::{LoginStore, LoginStoreTask};
use quorumkey_node::observability::HealthCell;
use quorumkey_node::provider_http::ProviderAccess;
use quorumkey_node::token_verifier::{ProviderLimits, TokenVerifier};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value, json};

/// One node: its ledger, its JSON-RPC service and its description.
struct Node {
    applier: BlockApplier,
    rpc: RpcService,
    description: Arc<NetworkDescription>,
    api: NodeApi,
    task: Option<LoginStoreTask>,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(kit: &TestNetwork, consensus: ed25519::PrivateKey, secp: SigningKey, base: NetworkJson) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let options = quorumkey_store::StoreOptions::new(quorumkey_store::Kek::from_bytes(&[0x42; 32]));
        let health = HealthCell::new(1, *kit.ledger.network_id());
        let applier = BlockApplier::open(kit.ledger.clone(), &dir.path().join("node.redb"), health, &options).unwrap();
        let state = applier.committed_state();
        let description = Arc::new(NetworkDescription::new(base, secp.clone()));
        let api = NodeApi {
            node_key: commonware_cryptography::Signer::public_key(&consensus),
            state: state.clone(),
            submitter: submitter(state, Mempool::new(MempoolLimits::default())).0,
            tip: AppliedTip::new(StateCheckpoint { height: 0, state_root: [0; 32] }),
            peers: PeerActivity::default(),
            waiters: FinalityWaiters::new(16),
            shares: applier.share_store(),
            description: description.clone(),
        };
        let access = ProviderAccess::development();
        let policy = JwksCachePolicy {
            max_age: std::time::Duration::from_secs(60),
            max_stale: std::time::Duration::from_secs(60),
            min_refetch_interval: std::time::Duration::from_secs(1),
            fetch_timeout: std::time::Duration::from_secs(1),
        };
        let tokens =
            TokenVerifier::new(Arc::new(JwksCache::new(policy, &access).unwrap()), &access, ProviderLimits::default())
                .unwrap();
        let (records, task) = LoginStore::start(&applier).unwrap();
        let keys = LoginKeys { node_key: secp, consensus_key: consensus };
        let rpc = RpcService::new(api.clone(), keys, tokens, records, applier.share_store(), &RpcSettings::unlimited())
            .unwrap();
        Self { applier, rpc, description, api, task: Some(task), _dir: dir }
    }

    /// Applies one block (at height `height`) with `transactions`.
    fn apply(&self, height: u64, transactions: Vec<Vec<u8>>) {
        let block = FinalizedBlock {
            height,
            timestamp_ms: height * 1000,
            transactions: transactions.into_iter().map(bytes::Bytes::from).collect(),
        };
        self.applier.apply(&block, height * 1000).unwrap();
    }

    fn epoch(&self) -> u64 {
        self.api.state.read(|view| view.epoch().unwrap()).unwrap()
    }

    async fn call(&self, method: &str, params: Value) -> RpcResponse {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let client = ClientAddress::of("127.0.0.1".parse().unwrap());
        self.rpc.handle(client, &serde_json::to_vec(&body).unwrap()).await.1
    }

    fn description(&self) -> NetworkJson {
        serde_json::from_slice(&self.description.render(&self.api.state).unwrap()).unwrap()
    }

    async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            tokio::task::spawn_blocking(move || task.stop()).await.unwrap();
        }
    }
}

fn commitment_params(seed: u64) -> Value {
    let temp = NonZeroScalar::generate_from_rng(&mut ChaCha20Rng::seed_from_u64(seed));
    let (x, y) = public_key_to_xy_hex(&PublicKey::from_secret_scalar(&temp));
    json!({"messageprefix": "mug00", "tokencommitment": format!("{seed:064x}"),
           "temppubx": x, "temppuby": y, "verifieridentifier": TEST_VERIFIER})
}

fn share_params(signatures: usize) -> Value {
    json!({"encrypted": "yes", "item": [{"verifier_id": "a@example.com", "idtoken": "a.b.c",
           "nodesignatures": vec![Value::Null; signatures], "verifieridentifier": TEST_VERIFIER}]})
}

fn public(key: &SigningKey) -> PublicKey {
    PublicKey::from(key.verifying_key())
}

/// The genesis nodes as the network's description lists them.
fn base_description(kit: &TestNetwork) -> NetworkJson {
    let nodes = kit
        .secp256k1_keys
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
        .collect();
    NetworkJson {
        network_id: hex::encode(kit.ledger.network_id()),
        threshold: 3,
        nodes,
        verifiers: vec![TEST_VERIFIER.to_owned()],
        genesis: None,
        attestation: None,
        dev_issuer: None,
        auxiliary: None,
        node_set: None,
    }
}

#[tokio::test]
async fn login_requests_and_the_description_follow_the_node_set_in_force() {
    // An empty pool: the handover has nothing to hand over and reaches its
    // boundary (height 64) at once.
    let kit = TestNetwork::with_dkg(4, 11, DkgSettings { pool_target: 0, low_water: 0, ..DkgSettings::default_for(4) });
    let base = base_description(&kit);
    let newcomer_secp = SigningKey::generate_from_rng(&mut ChaCha20Rng::seed_from_u64(90));
    let newcomer_consensus = ed25519::PrivateKey::from_seed(90);
    // Genesis node 2 (which leaves), genesis node 3 (which stays, as node
    // 2), and the newcomer (node 4).
    let leaving = Node::start(&kit, kit.node_keys[1].clone(), kit.secp256k1_keys[1].clone(), base.clone());
    let staying = Node::start(&kit, kit.node_keys[2].clone(), kit.secp256k1_keys[2].clone(), base.clone());
    let joining = Node::start(&kit, newcomer_consensus.clone(), newcomer_secp.clone(), base.clone());
    let nodes = [&leaving, &staying, &joining];

    // Epoch 0: node 2 signs; the newcomer is not in the set in force yet.
    let signed = leaving.call("CommitmentRequest", commitment_params(1)).await;
    assert!(signed.error.is_none(), "{:?}", signed.error);
    let refused = joining.call("CommitmentRequest", commitment_params(1)).await.error.unwrap();
    assert_eq!(refused.code, NOT_IN_NODE_SET, "{}", refused.data);
    assert!(refused.data.contains("(epoch 0)"), "{}", refused.data);
    // Four nodes: a reveal carries at most four signatures.
    let five = staying.call("ShareRequest", share_params(5)).await.error.unwrap();
    assert_eq!(five.code, INVALID_PARAMS, "{}", five.data);
    let described = staying.description();
    let set = described.node_set.as_ref().unwrap();
    assert_eq!((set.epoch, set.nodes.len(), set.next.is_none()), (0, 4, true));
    assert_eq!(set.nodes[1].api, "http://10.0.1.2:8000", "a genesis node's address from the description");
    assert_eq!(set.attested_by(&described.network_id).unwrap(), public(&kit.secp256k1_keys[2]));

    // Node 2 leaves, two newcomers join.
    let mut members: Vec<EpochNode> = kit
        .ledger
        .genesis()
        .nodes
        .iter()
        .map(|node| EpochNode {
            consensus_key: node.consensus_key.clone(),
            secp256k1_key: node.secp256k1_key,
            p2p_address: format!("10.0.1.{}:7000", node.index),
            rpc_url: format!("http://10.0.1.{}:8000", node.index),
        })
        .collect();
    members.remove(1);
    members.push(EpochNode {
        consensus_key: newcomer_consensus.public_key(),
        secp256k1_key: compressed(&newcomer_secp),
        p2p_address: "10.0.0.90:7000".to_owned(),
        rpc_url: "http://10.0.0.90:8000".to_owned(),
    });
    // A second newcomer (no process here): five nodes, t = 3.
    members.push(EpochNode {
        consensus_key: ed25519::PrivateKey::from_seed(91).public_key(),
        secp256k1_key: compressed(&SigningKey::generate_from_rng(&mut ChaCha20Rng::seed_from_u64(91))),
        p2p_address: "10.0.0.91:7000".to_owned(),
        rpc_url: "http://10.0.0.91:8000".to_owned(),
    });
    let proposal = kit.operators_tx(&[1, 2, 3], TransactionBody::ProposeEpoch { epoch: 1, nodes: members });
    for node in nodes {
        node.apply(1, vec![proposal.clone()]);
    }
    // During the handover the set in force is unchanged; the next one shows.
    let described = joining.description();
    let set = described.node_set.as_ref().unwrap();
    assert_eq!(set.epoch, 0);
    let next = set.next.as_ref().unwrap();
    assert_eq!((next.epoch, next.threshold, next.nodes.len()), (1, 3, 5));
    assert_eq!(next.nodes[3].endpoint, "http://10.0.0.90:8000/jrpc");
    assert_eq!(set.attested_by(&described.network_id).unwrap(), public(&newcomer_secp));
    assert!(joining.call("CommitmentRequest", commitment_params(2)).await.error.is_some());

    let mut height = 1;
    while staying.epoch() == 0 {
        height += 1;
        assert!(height <= 64, "the new set never came into force");
        for node in nodes {
            node.apply(height, Vec::new());
        }
    }
    // Epoch 1: node 2 is out and refuses everything, precisely.
    for (method, params) in [
        ("VerifierLookupRequest", json!({"verifier": TEST_VERIFIER, "verifier_id": "a@example.com"})),
        ("CommitmentRequest", commitment_params(3)),
        ("ShareRequest", share_params(2)),
    ] {
        let refused = leaving.call(method, params).await.error.unwrap();
        assert_eq!(refused.code, NOT_IN_NODE_SET, "{method}: {}", refused.data);
        assert!(refused.data.contains("not in the node set in force (epoch 1)"), "{method}: {}", refused.data);
    }
    // The newcomer signs with its own key.
    let signed = joining.call("CommitmentRequest", commitment_params(4)).await;
    let result = signed.result.unwrap_or_else(|| panic!("{:?}", signed.error));
    let (x, _) = public_key_to_xy_hex(&public(&newcomer_secp));
    assert_eq!(result["nodepubx"], json!(x));
    // Five nodes: a reveal with five signatures is read now, and goes on
    // to the records (none here).
    let five = staying.call("ShareRequest", share_params(5)).await.error.unwrap();
    assert_eq!(five.code, UNAUTHORIZED, "{}", five.data);
    assert!(five.data.contains("no commitment"), "{}", five.data);
    let six = staying.call("ShareRequest", share_params(6)).await.error.unwrap();
    assert_eq!(six.code, INVALID_PARAMS, "{}", six.data);
    // The description: epoch 1, the newcomer as node 4, node 3 as node 2.
    let described = leaving.description();
    let set = described.node_set.as_ref().unwrap();
    assert_eq!((set.epoch, set.threshold, set.next.is_none()), (1, 3, true));
    assert_eq!(set.nodes[1].api, "http://10.0.1.3:8000");
    assert_eq!(set.nodes[3].api, "http://10.0.0.90:8000");
    assert_eq!(set.attested_by(&described.network_id).unwrap(), public(&kit.secp256k1_keys[1]));
    // Unchanged state, the same answer (signed once).
    assert_eq!(
        leaving.description.render(&leaving.api.state).unwrap(),
        leaving.description.render(&leaving.api.state).unwrap()
    );

    for node in [leaving, staying, joining] {
        node.stop().await;
    }
}
