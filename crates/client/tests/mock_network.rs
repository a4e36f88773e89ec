//! The client against five in-process mock nodes that follow the login
//! rules of `quorumkey-login` (a reveal needs ⌈(n + t) / 2⌉ commitment
//! signatures on the recorded temporary key; aggregate sub-tokens bound at
//! commitment) and misbehave on command: refuse or rate-limit
//! commitments, serve a fake but self-consistent polynomial as the key's
//! public shares, answer the key slowly. The mocks do not check tokens
//! (the real nodes' token checks are tested in `crates/node` and
//! `crates/quorumkey/tests`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use quorumkey_client::{ClientError, ClientOptions, QuorumkeyClient};
use quorumkey_crypto::group::{NonZeroScalar, PublicKey, Scalar, generator, point_to_bytes, public_key_to_xy_hex};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::shamir::{Share, split};
use quorumkey_login::network::{EpochNodeJson, NetworkJson, NetworkJsonNode, NodeSetJson};
use quorumkey_login::rpc::{RATE_LIMITED, UNAUTHORIZED};
use quorumkey_login::share::{KeyContext, encrypt_share};
use quorumkey_login::{
    CommitmentRequest, KeyLookupResult, LoginError, LookupKey, Method, NodeKey, RpcError, RpcRequest, RpcResponse,
    ShareRequest, SignaturePolicy, required_signatures,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value, json};

const NODES: usize = 5;
const THRESHOLD: usize = 3;
const KEY_INDEX: u64 = 7;

/// How a mock node misbehaves.
#[derive(Clone, Debug, Default)]
struct Behaviour {
    /// The epoch `GET /v1/status` reports.
    epoch: u64,
    /// Out of the set in force: every JSON-RPC request is refused with
    /// `-32003`.
    not_in_set: bool,
    /// The node sets `GET /v1/network` serves (attested by this node), if
    /// any.
    node_set: Option<NodeSetJson>,
    /// Refuse this many more commitments with HTTP 429 and `Retry-After: 1`.
    rate_limit: u32,
    /// Refuse every commitment (an error answer).
    refuse_commitments: bool,
    /// Serve these public shares instead of the key's.
    public_shares: Option<Vec<String>>,
    /// Wait this long before serving the public shares.
    public_shares_delay: Duration,
    /// Answer this many more reveals with a share of another sharing (as a
    /// node still on the epoch before, at a boundary).
    stale_reveals: u32,
}

/// A commitment's temporary key and sub-token commitments.
type Record = (PublicKey, Vec<[u8; 32]>);

struct MockNode {
    key: SigningKey,
    share: Scalar,
    public_key: PublicKey,
    public_shares: Vec<String>,
    nodes: Vec<NodeKey>,
    behaviour: Mutex<Behaviour>,
    /// What each commitment was recorded with.
    records: Mutex<HashMap<[u8; 32], Record>>,
    commitment_requests: AtomicU32,
    /// Shares served, and the signatures each reveal carried.
    reveals: Mutex<Vec<usize>>,
    /// The network's description it serves (set once all nodes started).
    network: Mutex<Option<NetworkJson>>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn answer(status: StatusCode, id: Value, outcome: Result<Value, RpcError>) -> Response {
    let body = match outcome {
        Ok(result) => RpcResponse::result(id, result),
        Err(error) => RpcResponse::error(id, error),
    };
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn refused(data: String) -> RpcError {
    RpcError::new(UNAUTHORIZED, "Unauthorized", data)
}

async fn jrpc(State(node): State<Arc<MockNode>>, body: axum::body::Bytes) -> Response {
    let request = RpcRequest::parse(&body).unwrap();
    let id = request.id.clone();
    let behaviour = node.behaviour.lock().unwrap().clone();
    if behaviour.not_in_set {
        if request.method == Method::Commitment {
            node.commitment_requests.fetch_add(1, Ordering::SeqCst);
        }
        let refusal = LoginError::NotInNodeSet { epoch: behaviour.epoch }.to_rpc();
        return answer(StatusCode::OK, id, Err(refusal));
    }
    match request.method {
        Method::VerifierLookup => {
            let result = KeyLookupResult { keys: vec![LookupKey::new(KEY_INDEX, &node.public_key)] };
            answer(StatusCode::OK, id, Ok(serde_json::to_value(result).unwrap()))
        }
        Method::Commitment => {
            node.commitment_requests.fetch_add(1, Ordering::SeqCst);
            let behaviour = {
                let mut behaviour = node.behaviour.lock().unwrap();
                let now = behaviour.clone();
                behaviour.rate_limit = behaviour.rate_limit.saturating_sub(1);
                now
            };
            if behaviour.rate_limit > 0 {
                let error = RpcError::new(RATE_LIMITED, "Rate limited", "too many logins for this verifier");
                return answer(StatusCode::TOO_MANY_REQUESTS, id, Err(error));
            }
            if behaviour.refuse_commitments {
                return answer(StatusCode::OK, id, Err(refused("Duplicate token found".to_owned())));
            }
            let commitment = CommitmentRequest::parse(&request.params).unwrap();
            let record = commitment.sign(&node.key, now());
            node.records
                .lock()
                .unwrap()
                .insert(commitment.commitment, (commitment.temp_public, commitment.sub_tokens.clone()));
            let public = PublicKey::from(node.key.verifying_key());
            answer(StatusCode::OK, id, Ok(serde_json::to_value(record.result(&public)).unwrap()))
        }
        Method::Share => {
            let reveal = ShareRequest::parse(&request.params, NODES).unwrap();
            let Some((recorded, sub_tokens)) = node.records.lock().unwrap().get(&reveal.commitment).cloned() else {
                return answer(StatusCode::OK, id, Err(refused("no commitment".to_owned())));
            };
            if reveal.sub_token_commitments() != sub_tokens {
                return answer(StatusCode::OK, id, Err(refused("other sub-tokens".to_owned())));
            }
            let required = required_signatures(NODES, THRESHOLD);
            if let Err(error) =
                reveal.check_node_signatures(&node.nodes, &recorded, required, now(), SignaturePolicy::default())
            {
                return answer(StatusCode::OK, id, Err(error.to_rpc()));
            }
            let carried = reveal.node_signatures.iter().filter(|entry| !entry.is_null()).count();
            node.reveals.lock().unwrap().push(carried);
            let context = KeyContext {
                key_index: KEY_INDEX,
                public_key: &node.public_key,
                verifier: &reveal.verifier,
                verifier_id: &reveal.verifier_id,
            };
            let stale = {
                let mut behaviour = node.behaviour.lock().unwrap();
                let stale = behaviour.stale_reveals > 0;
                behaviour.stale_reveals = behaviour.stale_reveals.saturating_sub(1);
                stale
            };
            let share = if stale { node.share + Scalar::ONE } else { node.share };
            let result = encrypt_share(&share, &recorded, &context, &mut quorumkey_crypto::random::os_rng());
            answer(StatusCode::OK, id, Ok(serde_json::to_value(result).unwrap()))
        }
        Method::KeyAssign => answer(StatusCode::OK, id, Err(refused("not in this mock".to_owned()))),
    }
}

async fn key_answer(State(node): State<Arc<MockNode>>) -> Response {
    let behaviour = node.behaviour.lock().unwrap().clone();
    tokio::time::sleep(behaviour.public_shares_delay).await;
    let public_shares = behaviour.public_shares.unwrap_or_else(|| node.public_shares.clone());
    axum::Json(json!({"key_index": KEY_INDEX, "public_shares": public_shares})).into_response()
}

async fn status_answer(State(node): State<Arc<MockNode>>) -> Response {
    let epoch = node.behaviour.lock().unwrap().epoch;
    axum::Json(json!({"epoch": epoch})).into_response()
}

async fn network_answer(State(node): State<Arc<MockNode>>) -> Response {
    let mut network = node.network.lock().unwrap().clone().unwrap();
    network.node_set = node.behaviour.lock().unwrap().node_set.clone();
    if let Some(set) = network.node_set.as_mut() {
        set.attest(&network.network_id, &node.key).unwrap();
    }
    axum::Json(network).into_response()
}

fn public_shares_of(shares: &[Share]) -> Vec<String> {
    shares.iter().map(|share| hex::encode(point_to_bytes(&(generator() * share.value)))).collect()
}

struct MockNetwork {
    nodes: Vec<Arc<MockNode>>,
    network: NetworkJson,
    secret: Scalar,
}

impl MockNetwork {
    async fn start(seed: u64) -> Self {
        let secret = NonZeroScalar::generate_from_rng(&mut ChaCha20Rng::seed_from_u64(seed + 1000));
        Self::sharing(seed, secret).await
    }

    /// Nodes of their own (keys from `seed`) holding shares of `secret`:
    /// another node set of the same network, after a reshare.
    async fn sharing(seed: u64, secret: NonZeroScalar) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let public_key = PublicKey::from_secret_scalar(&secret);
        let shares = split(*secret, THRESHOLD as u32, NODES as u32, &mut rng).unwrap();
        let public_shares = public_shares_of(&shares);
        let keys: Vec<SigningKey> = (0..NODES).map(|_| SigningKey::generate_from_rng(&mut rng)).collect();
        let node_keys: Vec<NodeKey> = keys
            .iter()
            .zip(1u16..)
            .map(|(key, index)| NodeKey { index, public: PublicKey::from(key.verifying_key()) })
            .collect();
        let mut nodes = Vec::new();
        let mut described = Vec::new();
        for ((key, share), node_key) in keys.into_iter().zip(&shares).zip(&node_keys) {
            let node = Arc::new(MockNode {
                key,
                share: share.value,
                public_key,
                public_shares: public_shares.clone(),
                nodes: node_keys.clone(),
                behaviour: Mutex::new(Behaviour::default()),
                records: Mutex::new(HashMap::new()),
                commitment_requests: AtomicU32::new(0),
                reveals: Mutex::new(Vec::new()),
                network: Mutex::new(None),
            });
            let router = axum::Router::new()
                .route("/jrpc", post(jrpc))
                .route("/v1/keys/{index}", get(key_answer))
                .route("/v1/status", get(status_answer))
                .route("/v1/network", get(network_answer))
                .with_state(node.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, router).await });
            let (x, y) = public_key_to_xy_hex(&node_key.public);
            described.push(NetworkJsonNode {
                index: node_key.index,
                endpoint: format!("http://{address}/jrpc"),
                api: format!("http://{address}"),
                pub_key_x: x,
                pub_key_y: y,
                p2p_address: "127.0.0.1:1".to_owned(),
                log: None,
            });
            nodes.push(node);
        }
        let network = NetworkJson {
            network_id: "00".repeat(32),
            threshold: THRESHOLD,
            nodes: described,
            verifiers: Vec::new(),
            genesis: None,
            attestation: None,
            dev_issuer: None,
            auxiliary: None,
            node_set: None,
        };
        for node in &nodes {
            *node.network.lock().unwrap() = Some(network.clone());
        }
        Self { nodes, network, secret: *secret }
    }

    /// This network's nodes as the node set of `epoch`.
    fn node_set(&self, epoch: u64) -> NodeSetJson {
        let nodes = self
            .network
            .nodes
            .iter()
            .map(|node| EpochNodeJson {
                index: node.index,
                endpoint: node.endpoint.clone(),
                api: node.api.clone(),
                pub_key_x: node.pub_key_x.clone(),
                pub_key_y: node.pub_key_y.clone(),
                consensus_key: "ab".repeat(32),
                p2p_address: node.p2p_address.clone(),
            })
            .collect();
        NodeSetJson { epoch, threshold: THRESHOLD, nodes, next: None, attestation: None }
    }

    fn client(&self, options: ClientOptions) -> QuorumkeyClient {
        QuorumkeyClient::new(self.network.clone(), options).unwrap()
    }

    fn set(&self, node: usize, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.nodes[node - 1].behaviour.lock().unwrap());
    }

    fn commitment_requests(&self, node: usize) -> u32 {
        self.nodes[node - 1].commitment_requests.load(Ordering::SeqCst)
    }

    fn fake_public_shares(&self, seed: u64) -> Vec<String> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        public_shares_of(&split(self.secret, THRESHOLD as u32, NODES as u32, &mut rng).unwrap())
    }

    fn expected_private_key(&self) -> [u8; 32] {
        quorumkey_crypto::group::scalar_to_bytes(&self.secret)
    }
}

#[tokio::test]
async fn a_login_reveals_only_with_the_reveal_quorum() {
    let network = MockNetwork::start(1).await;
    let client = network.client(ClientOptions::default());
    assert_eq!(client.reveal_quorum(), 4, "⌈(5 + 3) / 2⌉");

    let login = client.login("app", "alice@example.com", "a.token.one").await.unwrap();
    assert_eq!(*login.private_key, network.expected_private_key());
    assert!(login.nodes.iter().filter(|n| matches!(n.commitment, Some(Ok(_)))).count() >= 4);
    assert_eq!(login.nodes.iter().filter(|n| n.used).count(), THRESHOLD);
    for node in &network.nodes {
        assert!(node.reveals.lock().unwrap().iter().all(|&carried| carried >= 4), "a reveal carried too few");
    }

    // One node refuses: the other four are the quorum.
    network.set(5, |b| b.refuse_commitments = true);
    let login = client.login("app", "alice@example.com", "a.token.two").await.unwrap();
    assert_eq!(*login.private_key, network.expected_private_key());
    // Its refusal is reported if it came before the quorum did.
    assert!(!matches!(login.nodes[4].commitment, Some(Ok(_))) && !login.nodes[4].used, "{:?}", login.nodes[4]);

    // Two refuse: three signatures are not enough, and the token is never
    // revealed.
    network.set(4, |b| b.refuse_commitments = true);
    let reveals_before: usize = network.nodes.iter().map(|n| n.reveals.lock().unwrap().len()).sum();
    let error = client.login("app", "alice@example.com", "a.token.three").await.unwrap_err();
    match &error {
        ClientError::Quorum { step: "commitment", needed: 4, got: 3, failures } => {
            assert_eq!(failures.iter().map(|f| f.node).collect::<Vec<_>>(), [4, 5], "{error}");
        }
        other => panic!("{other}"),
    }
    let reveals_after: usize = network.nodes.iter().map(|n| n.reveals.lock().unwrap().len()).sum();
    assert_eq!(reveals_before, reveals_after);
}

#[tokio::test]
async fn rate_limited_commitments_are_asked_again_until_the_request_timeout() {
    let network = MockNetwork::start(2).await;
    // Node 5 refuses outright, so the login needs node 2, which refuses
    // twice over a rate limit before it signs.
    network.set(5, |b| b.refuse_commitments = true);
    network.set(2, |b| b.rate_limit = 2);
    let client = network.client(ClientOptions::default());
    let started = Instant::now();
    let login = client.login("app", "alice@example.com", "a.token.one").await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2), "Retry-After: 1 was honoured");
    assert_eq!(*login.private_key, network.expected_private_key());
    assert_eq!(login.nodes[1].rate_limited, 2);
    assert!(matches!(login.nodes[1].commitment, Some(Ok(_))), "{:?}", login.nodes[1]);
    assert_eq!(network.commitment_requests(2), 3);
    assert_eq!(network.commitment_requests(5), 1, "other error answers are not retried");
    assert!(login.failed_nodes().iter().all(|f| f.node == 5), "{:?}", login.failed_nodes());

    // A limit that outlasts the request timeout: the client gives up.
    network.set(2, |b| b.rate_limit = 100);
    let short = network.client(ClientOptions { request_timeout: Duration::from_millis(1500), ..Default::default() });
    let started = Instant::now();
    let error = short.login("app", "alice@example.com", "a.token.two").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(1500), "gave up once another try would be too late");
    let ClientError::Quorum { step: "commitment", failures, .. } = &error else { panic!("{error}") };
    let node2 = failures.iter().find(|f| f.node == 2).expect("node 2 named");
    assert!(node2.reason.contains("rate limit 2 times"), "{}", node2.reason);
    assert_eq!(network.commitment_requests(2), 5);
}

#[tokio::test]
async fn public_shares_come_from_t_agreeing_nodes_not_the_fastest() {
    let network = MockNetwork::start(3).await;
    // Node 1 answers first with another polynomial through the same key:
    // it checks out on its own, and every honest share would look wrong.
    let fake = network.fake_public_shares(30);
    network.set(1, |b| b.public_shares = Some(fake));
    for node in 2..=5 {
        network.set(node, |b| b.public_shares_delay = Duration::from_millis(150));
    }
    let client = network.client(ClientOptions::default());
    let login = client.login("app", "alice@example.com", "a.token.one").await.unwrap();
    assert_eq!(*login.private_key, network.expected_private_key());
    assert!(login.failed_nodes().is_empty(), "{:?}", login.failed_nodes());

    // Only two nodes serve the real shares: no answer has the three
    // agreeing nodes it needs, and every node is named.
    let other = MockNetwork::start(4).await;
    other.set(1, |b| b.public_shares = Some(other.fake_public_shares(40)));
    other.set(2, |b| b.public_shares = Some(other.fake_public_shares(41)));
    other.set(3, |b| b.public_shares = Some(vec!["zz".to_owned(); NODES]));
    let client = other.client(ClientOptions::default());
    let error = client.login("app", "alice@example.com", "a.token.two").await.unwrap_err();
    let ClientError::Quorum { step: "public shares", needed: 3, got, failures } = &error else { panic!("{error}") };
    assert!(*got <= 2, "{error}");
    assert_eq!(failures.iter().map(|f| f.node).collect::<Vec<_>>(), [1, 2, 3, 4, 5], "{error}");
    assert!(failures[2].reason.contains("not hex"), "{error}");
}

#[tokio::test]
async fn aggregate_logins_commit_to_each_sub_token_and_reveal_them() {
    let network = MockNetwork::start(5).await;
    let client = network.client(ClientOptions::default());
    let subs = [("google".to_owned(), "sub.token.a".to_owned()), ("email".to_owned(), "sub.token.b".to_owned())];
    let login = client.login_aggregate("app-aggregate", "alice@example.com", &subs).await.unwrap();
    assert_eq!(*login.private_key, network.expected_private_key());
    let key = login.key.clone();
    let subs = [("google".to_owned(), "sub.token.c".to_owned())];
    let again = client.login_aggregate_key("app-aggregate", "alice@example.com", &subs, &key).await.unwrap();
    assert_eq!(*again.private_key, network.expected_private_key());
    for node in &network.nodes {
        let records = node.records.lock().unwrap();
        assert!(records.values().any(|(_, subs)| subs.len() == 2) && records.values().any(|(_, subs)| subs.len() == 1));
    }
}

/// Moves the network from `old`'s nodes to `new`'s (epoch 1): the old
/// nodes refuse as out of the set in force, and every node reports epoch 1
/// and serves `served` (each attests its own answer).
fn move_to(old: &MockNetwork, new: &MockNetwork, served: impl Fn(usize) -> Option<NodeSetJson>) {
    for (position, node) in old.nodes.iter().enumerate() {
        let mut behaviour = node.behaviour.lock().unwrap();
        behaviour.not_in_set = true;
        behaviour.epoch = 1;
        behaviour.node_set = served(position);
    }
    for node in &new.nodes {
        let mut behaviour = node.behaviour.lock().unwrap();
        behaviour.epoch = 1;
        behaviour.node_set = Some(new.node_set(1));
    }
}

#[tokio::test]
async fn a_login_follows_the_network_to_its_new_node_set() {
    let old = MockNetwork::start(6).await;
    let new = MockNetwork::sharing(7, NonZeroScalar::new(old.secret).unwrap()).await;
    let client = old.client(ClientOptions::default());
    let login = client.login("app", "alice@example.com", "a.token.one").await.unwrap();
    assert_eq!(*login.private_key, old.expected_private_key());
    assert_eq!(client.epoch(), 0);

    // Every key is handed over to five other nodes; the old ones leave.
    move_to(&old, &new, |_| Some(new.node_set(1)));
    let login = client.login("app", "alice@example.com", "a.token.two").await.unwrap();
    assert_eq!(*login.private_key, old.expected_private_key(), "the same key, from the new set's shares");
    assert_eq!(client.epoch(), 1);
    let endpoints: Vec<String> = client.nodes().into_iter().map(|(_, endpoint)| endpoint).collect();
    assert_eq!(endpoints, new.network.nodes.iter().map(|node| node.endpoint.clone()).collect::<Vec<_>>());
    assert_eq!(login.nodes.iter().filter(|node| node.used).count(), THRESHOLD);
    // Each old node was asked once more, and refused; the login moved on.
    for position in 1..=NODES {
        assert_eq!(old.commitment_requests(position), 2, "old node {position}");
        assert_eq!(new.commitment_requests(position), 1, "new node {position}");
    }
    // The next login goes to the new set straight away.
    client.login("app", "alice@example.com", "a.token.three").await.unwrap();
    assert!((1..=NODES).all(|position| old.commitment_requests(position) == 2));
}

#[tokio::test]
async fn a_new_set_too_few_trusted_nodes_attest_is_not_followed() {
    let old = MockNetwork::start(8).await;
    let new = MockNetwork::sharing(9, NonZeroScalar::new(old.secret).unwrap()).await;
    let client = old.client(ClientOptions::default());
    // Only two of the old nodes vouch for the new set (t = 3); the others
    // serve none, and the new set's own nodes are strangers to the client.
    move_to(&old, &new, |position| (position < 2).then(|| new.node_set(1)));
    let error = client.login("app", "alice@example.com", "a.token.one").await.unwrap_err();
    let ClientError::NodeSetMoved { error: failed, reason } = &error else { panic!("{error}") };
    assert!(matches!(**failed, ClientError::Quorum { .. }), "{failed}");
    assert!(reason.contains("epoch 1: attested by 2 node(s) only"), "{reason}");
    assert!(error.to_string().contains("not in the node set in force (epoch 1)"), "{error}");
    assert_eq!(client.epoch(), 0, "the client stays where it was");
    assert!((1..=NODES).all(|position| old.commitment_requests(position) == 1), "one try, no loop");
    assert!((1..=NODES).all(|position| new.commitment_requests(position) == 0));
}

#[tokio::test]
async fn a_node_claiming_a_newer_epoch_costs_one_refresh_and_no_second_try() {
    let network = MockNetwork::start(10).await;
    // Two nodes refuse commitments: the login fails on its own. One node
    // claims epoch 5, but t nodes attest the set in use, unchanged.
    network.set(4, |b| b.refuse_commitments = true);
    network.set(5, |b| b.refuse_commitments = true);
    network.set(1, |b| b.epoch = 5);
    for node in &network.nodes {
        node.behaviour.lock().unwrap().node_set = Some(network.node_set(0));
    }
    let client = network.client(ClientOptions::default());
    let error = client.login("app", "alice@example.com", "a.token.one").await.unwrap_err();
    assert!(matches!(error, ClientError::Quorum { step: "commitment", needed: 4, got: 3, .. }), "{error}");
    assert_eq!(client.epoch(), 0);
    assert!((1..=NODES).all(|position| network.commitment_requests(position) == 1), "not tried again");
}

/// At an epoch boundary three of five nodes still answer with a share of
/// the epoch before while the public shares are already the new ones (and
/// fetching them again changes nothing): two good shares, three needed.
/// The client asks every node once more a moment later, by when they
/// have switched, and logs in. Without that second round the login fails.
#[tokio::test]
async fn shares_of_the_epoch_before_are_asked_again_once_the_nodes_switched() {
    let network = MockNetwork::start(21).await;
    let client = network.client(ClientOptions::default());
    for node in 1..=3 {
        network.set(node, |b| b.stale_reveals = 1);
    }
    let login = client.login("app", "carol@example.com", "a.token.stale").await.unwrap();
    assert_eq!(*login.private_key, network.expected_private_key());
    // Each node was asked twice at most: once in the login, once more.
    for node in &network.nodes {
        assert!(node.reveals.lock().unwrap().len() <= 2);
    }

    // Nodes that keep serving stale shares do not make it succeed.
    for node in 1..=3 {
        network.set(node, |b| b.stale_reveals = 100);
    }
    let error = client.login("app", "carol@example.com", "a.token.stale.again").await.unwrap_err();
    assert!(matches!(error, ClientError::Quorum { step: "reveal", .. }), "{error}");
}
