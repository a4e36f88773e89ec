//! The Rust client of a quorumkey network.
//!
//! ```no_run
//! # async fn example() -> Result<(), quorumkey_client::ClientError> {
//! use quorumkey_client::{ClientOptions, QuorumkeyClient};
//! let client = QuorumkeyClient::from_file("devnet/network.json".as_ref(), ClientOptions::default())?;
//! let (key, _assigned_now) = client.lookup_or_assign("quorumkey-dev", "alice@example.com").await?;
//! let login = client.login("quorumkey-dev", "alice@example.com", "<an ID token>").await?;
//! assert_eq!(login.key.address, key.address);
//! # Ok(()) }
//! ```
//!
//! A login: the ID token in the one spelling nodes accept
//! (`quorumkey_verifier::canonical_spelling`); a fresh temporary key;
//! `CommitmentRequest` to every node, dispatched in random order (a node
//! that refuses over a rate limit is asked again after the second it asks
//! for, until the request timeout); each signature checked as the nodes
//! will check it; as soon as the reveal quorum of ⌈(n + t) / 2⌉ nodes
//! signed ([`quorumkey_login::required_signatures`], what every node
//! demands before it serves a share), `ShareRequest` with those signatures
//! to `t` of them (to the others that signed if one fails or is slow);
//! each share is decrypted and checked against the node's public share
//! (as `t` nodes agree on the public shares: one node's answer is never
//! trusted alone); a wrong share is dropped and its node named; as soon as
//! `t` shares checked out they are interpolated (exactly `t`, no search
//! over subsets) and the result checked against the key's public key.
//! Aggregate verifiers: [`QuorumkeyClient::login_aggregate`]. Every request
//! has a timeout; transport errors are retried; every error says which
//! nodes failed and why.
//!
//! The nodes are those of the node set in force as the client last learned
//! it (`network.json`'s `node_set`, else the genesis nodes). A login that
//! fails short of nodes on a set the network has left (a node reports a
//! newer epoch) makes the client move to the newest set that `t` nodes of
//! a set it trusts attest ([`QuorumkeyClient::refresh_node_set`]) and start
//! again there, with the same temporary key, at most twice.
//!
//! The commitments' and the reveal's decisions (which node to send what
//! next, given the answers so far and the time) are a sans-IO state
//! machine, [`login_plan::LoginPlan`], that the async client drives and
//! that is property-tested without sockets.
//!
//! Why the quorum: any two sets of ⌈(n + t) / 2⌉ nodes share at least `t`
//! nodes. With at most `t − 1` faulty nodes, which may sign anything, the
//! shared ones include an honest node, and an honest node signs a token's
//! commitment for one temporary key only: once the user's key gathered the
//! quorum, no other key (a front-runner's) can, so no node that follows the
//! rule serves a share to anyone but the user. Revealing with fewer
//! signatures would be refused by the nodes anyway.

pub mod key_check;
pub mod login_plan;
pub mod network_discovery;
pub mod node_api_client;
pub mod registry;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use login_plan::{CommitOutcome, LoginPlan, PlanStep, ShareOutcome};
use network_discovery::{MAX_DESCRIPTION_BYTES, TrustedSet, accept_node_set, fetch_node_sets};
use quorumkey_crypto::group::{NonZeroScalar, PublicKey, public_key_from_xy_hex, public_key_to_xy_hex};
use quorumkey_crypto::hash::token_commitment_hex;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::shamir::Share;
use quorumkey_login::commitment::SUB_TOKEN_COMMITMENTS;
use quorumkey_login::error::NOT_ASSIGNED;
use quorumkey_login::network::{NetworkJson, NodeSetJson};
use quorumkey_login::reveal::{aggregate_id_token, script_id_token};
use quorumkey_login::rpc::{RATE_LIMITED, request_body};
use quorumkey_login::{
    KeyAssignAuthorization, LookupKey, Method, NodeKey, RpcError, RpcResponse, ShareRequestResult,
    check_commitment_signature, required_signatures,
};
use quorumkey_verifier::canonical_spelling;
use rand_core::Rng as _;
use serde_json::{Value, json};
use thiserror::Error;
use zeroize::Zeroizing;

pub use key_check::CheckedKey;
pub use quorumkey_login::network;

/// Timeouts and retries.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Longest wait for one node's answer to one request.
    pub request_timeout: Duration,
    /// `KeyAssign` waits for finality (and, with an empty pool, the DKG).
    pub assign_timeout: Duration,
    /// Extra tries after a transport error (not after an error answer).
    pub retries: u32,
    /// How long the nodes asked first (`t` of them, for lookups and
    /// reveals) have before the others are asked too: a hedge against a
    /// slow or hung node. A failure asks another node at once.
    pub hedge_delay: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            assign_timeout: Duration::from_secs(45),
            retries: 1,
            hedge_delay: Duration::from_millis(250),
        }
    }
}

/// One node's failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFailure {
    /// The node.
    pub node: u16,
    /// What went wrong.
    pub reason: String,
}

impl std::fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {}: {}", self.node, self.reason)
    }
}

fn list(failures: &[NodeFailure]) -> String {
    if failures.is_empty() {
        return "no node failed".to_owned();
    }
    failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Why a client call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// `network.json` is missing or wrong.
    #[error("network description {path}: {reason}")]
    Network {
        /// The file (or `<memory>`).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The pair has no key yet.
    #[error("{verifier} / {verifier_id} has no key yet; assign one first")]
    NotAssigned {
        /// The verifier.
        verifier: String,
        /// The user.
        verifier_id: String,
    },
    /// Fewer than `needed` nodes agreed or succeeded.
    #[error("{step}: {needed} nodes needed, {got} succeeded ({})", list(.failures))]
    Quorum {
        /// Which step.
        step: &'static str,
        /// Nodes needed.
        needed: usize,
        /// Nodes that succeeded (or agreed).
        got: usize,
        /// Why the others did not.
        failures: Vec<NodeFailure>,
    },
    /// The KeyAssign signer refused or could not be reached.
    #[error("the KeyAssign signer: {0}")]
    Signer(String),
    /// The key the nodes serve is inconsistent.
    #[error("the key's public data: {0}")]
    Key(String),
    /// A login failed on the node set the client uses, the nodes report a
    /// newer epoch, and no newer set could be trusted.
    #[error("{error}; the nodes report a newer epoch, but its node set could not be trusted: {reason}")]
    NodeSetMoved {
        /// The login's failure on the set in use.
        error: Box<ClientError>,
        /// Why the newer set was not taken.
        reason: String,
    },
    /// No newer node set could be trusted.
    #[error(transparent)]
    NodeSet(#[from] network_discovery::UntrustedNodeSet),
}

/// A key as the nodes agree on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// Its index in the pool.
    pub key_index: u64,
    /// The public key.
    pub public_key: PublicKey,
    /// Its Ethereum address (EIP-55).
    pub address: String,
}

/// What one node did in a login.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeReport {
    /// The node.
    pub node: u16,
    /// Its commitment answer: time taken, or why it failed (`None`: not
    /// answered by the end of the login, which waits only for the reveal
    /// quorum, ⌈(n + t) / 2⌉ signatures, and for more signers only when a
    /// reveal fails).
    pub commitment: Option<Result<Duration, String>>,
    /// How many times it refused the commitment over a rate limit before
    /// the answer in `commitment` (each refusal waited out, as long as the
    /// node asked, until the request timeout).
    pub rate_limited: u32,
    /// Its share: time taken, or why it was refused or dropped (`None`:
    /// not asked, or not needed in time).
    pub share: Option<Result<Duration, String>>,
    /// Whether its share is one of the `t` interpolated.
    pub used: bool,
}

/// How long each step took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoginTimings {
    /// Lookup (`t` agreeing nodes) and the key's public shares (`t`
    /// agreeing nodes; cached per key).
    pub lookup: Duration,
    /// Commitments until the reveal quorum (⌈(n + t) / 2⌉ nodes) signed
    /// with signatures that check out.
    pub commitment: Duration,
    /// Reveal until `t` checked shares, and the interpolation.
    pub reveal: Duration,
    /// All of it.
    pub total: Duration,
}

/// A successful login.
pub struct Login {
    /// The key.
    pub key: KeyInfo,
    /// The private key, 32 bytes big-endian. Secret.
    pub private_key: Zeroizing<[u8; 32]>,
    /// What each node did.
    pub nodes: Vec<NodeReport>,
    /// Step timings.
    pub timings: LoginTimings,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("key", &self.key)
            .field("private_key", &"<redacted>")
            .field("nodes", &self.nodes)
            .field("timings", &self.timings)
            .finish()
    }
}

impl Login {
    /// The nodes whose shares were wrong or refused, with the reason.
    pub fn failed_nodes(&self) -> Vec<NodeFailure> {
        self.nodes
            .iter()
            .filter_map(|report| match (&report.commitment, &report.share) {
                (_, Some(Err(reason))) | (Some(Err(reason)), _) => {
                    Some(NodeFailure { node: report.node, reason: reason.clone() })
                }
                _ => None,
            })
            .collect()
    }
}

struct Node {
    index: u16,
    /// Parsed once: reqwest would parse a string on every request.
    endpoint: reqwest::Url,
    api: String,
    public: PublicKey,
}

impl Node {
    /// A node at `endpoint` (an http or https URL with a host).
    fn new(index: u16, endpoint: &str, api: &str, public: PublicKey) -> Result<Self, String> {
        let refused = |why: String| format!("node {index}: endpoint {endpoint:?}: {why}");
        let url = reqwest::Url::parse(endpoint).map_err(|e| refused(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(refused("not an http or https URL with a host".to_owned()));
        }
        Ok(Self { index, endpoint: url, api: api.trim_end_matches('/').to_owned(), public })
    }
}

/// The node set a client uses: the one in force as it last learned it,
/// and the next one if it knows it.
struct NodeView {
    /// Bumped at each change of the set in force (cached public shares are
    /// a set's).
    generation: u64,
    epoch: u64,
    nodes: Vec<Node>,
    threshold: usize,
    /// Commitment signatures a reveal needs: ⌈(n + t) / 2⌉.
    reveal_quorum: usize,
    /// The next epoch's set, while a handover runs.
    next: Option<TrustedSet>,
    /// When each node (by position) last failed to answer (transport error
    /// or timeout).
    unanswered: Arc<std::sync::Mutex<HashMap<usize, Instant>>>,
}

impl NodeView {
    /// The set `network` describes: its `node_set` if it has one, else the
    /// genesis nodes (epoch 0).
    fn of_network(network: &NetworkJson) -> Result<Self, String> {
        if let Some(set) = &network.node_set {
            return Self::of_node_set(set, 0);
        }
        let keys = network.node_keys()?;
        let nodes = network
            .nodes
            .iter()
            .zip(keys)
            .map(|(node, public)| Node::new(node.index, &node.endpoint, &node.api, public))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::with(0, 0, nodes, network.threshold, None))
    }

    /// The sets `set` describes, as view `generation`.
    fn of_node_set(set: &NodeSetJson, generation: u64) -> Result<Self, String> {
        let keys = set.node_keys()?;
        let nodes = set
            .nodes
            .iter()
            .zip(keys)
            .map(|(node, public)| Node::new(node.index, &node.endpoint, &node.api, public))
            .collect::<Result<Vec<_>, _>>()?;
        let next = set.next.as_ref().map(TrustedSet::of_next).transpose()?;
        Ok(Self::with(generation, set.epoch, nodes, set.threshold, next))
    }

    fn with(generation: u64, epoch: u64, nodes: Vec<Node>, threshold: usize, next: Option<TrustedSet>) -> Self {
        Self {
            generation,
            epoch,
            reveal_quorum: required_signatures(nodes.len(), threshold),
            nodes,
            threshold,
            next,
            unanswered: Arc::new(std::sync::Mutex::new(HashMap::new())),
        }
    }

    /// The sets whose nodes the client believes: the one in force, and the
    /// next one.
    fn trusted(&self) -> Vec<TrustedSet> {
        let current = TrustedSet {
            epoch: self.epoch,
            threshold: self.threshold,
            nodes: self.nodes.iter().map(|node| (node.public, node.api.clone())).collect(),
        };
        std::iter::once(current).chain(self.next.clone()).collect()
    }

    /// Whether `other` has the same nodes (keys, in order, and endpoints)
    /// and threshold.
    fn same_set(&self, other: &Self) -> bool {
        self.threshold == other.threshold
            && self.nodes.len() == other.nodes.len()
            && self.nodes.iter().zip(&other.nodes).all(|(a, b)| a.public == b.public && a.endpoint == b.endpoint)
    }
}

/// A client of one network.
pub struct QuorumkeyClient {
    network: NetworkJson,
    /// The node set in use; replaced when the network moves to another.
    view: std::sync::RwLock<Arc<NodeView>>,
    http: reqwest::Client,
    options: ClientOptions,
    /// Checked public data of keys seen, with the generation of the node
    /// set they are for (a key's public shares change with the epoch).
    checked_keys: std::sync::Mutex<HashMap<u64, (u64, CheckedKey)>>,
}

/// How long a node that did not answer is asked after the others.
const ASK_LAST_FOR: Duration = Duration::from_secs(30);

/// Times a login fetches a key's public shares again on shares that do
/// not match them (nodes switching to new shares one by one).
const MAX_PUBLIC_SHARE_REFETCHES: usize = 3;

/// Keys whose checked public data a client keeps.
const CHECKED_KEY_CACHE: usize = 4096;

/// Times a login moves to a newer node set and starts again (its
/// temporary key kept, so that nodes that signed its commitment answer as
/// before).
const MAX_NODE_SET_MOVES: usize = 2;

impl std::fmt::Debug for QuorumkeyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let view = self.view();
        f.debug_struct("QuorumkeyClient")
            .field("network_id", &self.network.network_id)
            .field("epoch", &view.epoch)
            .field("nodes", &view.nodes.len())
            .field("threshold", &view.threshold)
            .field("reveal_quorum", &view.reveal_quorum)
            .finish()
    }
}

/// An answer from one node: a result, an error answer, or no answer.
enum Answer {
    Result(Value),
    Error(RpcError),
    Transport(String),
}

impl Answer {
    fn describe(&self) -> String {
        match self {
            Self::Result(_) => "answered".to_owned(),
            Self::Error(error) => error.data.clone(),
            Self::Transport(reason) => reason.clone(),
        }
    }
}

fn shuffled(count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..count).collect();
    let mut rng = quorumkey_crypto::random::os_rng();
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

impl QuorumkeyClient {
    /// A client of the network `network` describes.
    /// A client of the network `network` describes, starting from its
    /// `node_set` if it has one (else the genesis nodes).
    pub fn new(network: NetworkJson, options: ClientOptions) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::Network { path: "<memory>".to_owned(), reason };
        // The genesis list is checked even when a node set replaces it.
        network.node_keys().map_err(invalid)?;
        let view = NodeView::of_network(&network).map_err(invalid)?;
        let http = reqwest::Client::builder()
            .connect_timeout(options.request_timeout)
            .build()
            .map_err(|e| invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            network,
            view: std::sync::RwLock::new(Arc::new(view)),
            http,
            options,
            checked_keys: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The node set in use.
    fn view(&self) -> Arc<NodeView> {
        self.view.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// A client of the network described in the file at `path`.
    pub fn from_file(path: &Path, options: ClientOptions) -> Result<Self, ClientError> {
        let fail = |reason: String| ClientError::Network { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let network = NetworkJson::parse(&text).map_err(fail)?;
        Self::new(network, options).map_err(|e| match e {
            ClientError::Network { reason, .. } => fail(reason),
            other => other,
        })
    }

    /// The network description (as given: the node set in use is
    /// [`Self::epoch`]'s).
    pub fn network(&self) -> &NetworkJson {
        &self.network
    }

    /// The epoch of the node set in use.
    pub fn epoch(&self) -> u64 {
        self.view().epoch
    }

    /// The indexes and JSON-RPC endpoints of the nodes in use.
    pub fn nodes(&self) -> Vec<(u16, String)> {
        self.view().nodes.iter().map(|node| (node.index, node.endpoint.to_string())).collect()
    }

    /// Shares needed to rebuild a key.
    pub fn threshold(&self) -> usize {
        self.view().threshold
    }

    /// Commitment signatures a login gathers before it reveals the token:
    /// ⌈(n + t) / 2⌉, as every node requires
    /// ([`quorumkey_login::required_signatures`]).
    pub fn reveal_quorum(&self) -> usize {
        self.view().reveal_quorum
    }

    /// One JSON-RPC request to the node at `position`, as its own task:
    /// when the caller stops waiting (it heard from enough nodes), the
    /// request still completes and its connection goes back to the pool,
    /// instead of being cut mid-answer and costing a later request a new
    /// connection. The answer comes with the time since `step`.
    fn send(
        &self,
        view: &NodeView,
        position: usize,
        body: Bytes,
        timeout: Duration,
        step: Instant,
        on_rate_limit: OnRateLimit,
    ) -> NodeCall {
        let (http, retries) = (self.http.clone(), self.options.retries);
        let endpoint = view.nodes[position].endpoint.clone();
        let unanswered = view.unanswered.clone();
        let task = tokio::spawn(async move {
            let (answer, rate_limited) = call(&http, &endpoint, body, timeout, retries, on_rate_limit).await;
            if let Ok(mut unanswered) = unanswered.lock() {
                if matches!(answer, Answer::Transport(_)) {
                    unanswered.insert(position, Instant::now());
                } else {
                    unanswered.remove(&position);
                }
            }
            (answer, rate_limited)
        });
        Box::pin(async move {
            let (answer, rate_limited) =
                task.await.unwrap_or_else(|e| (Answer::Transport(format!("the request failed: {e}")), 0));
            Reply { position, answer, took: step.elapsed(), rate_limited }
        })
    }

    /// The nodes in random order, those that did not answer in the last
    /// [`ASK_LAST_FOR`] last: requests go to the first `t` and move down
    /// the list only on failure or after the hedge delay.
    fn order(&self, view: &NodeView) -> Vec<usize> {
        let mut order = shuffled(view.nodes.len());
        if let Ok(unanswered) = view.unanswered.lock() {
            let now = Instant::now();
            // Stable: random among the answering, random among the others.
            order.sort_by_key(|position| {
                unanswered.get(position).is_some_and(|at| now.duration_since(*at) < ASK_LAST_FOR)
            });
        }
        order
    }

    /// The key of `verifier_id` at `verifier`, if it has one: `t` nodes
    /// must give the same answer.
    pub async fn lookup(&self, verifier: &str, verifier_id: &str) -> Result<Option<KeyInfo>, ClientError> {
        self.lookup_in(&self.view(), verifier, verifier_id).await
    }

    /// [`Self::lookup`] on the nodes of `view`.
    async fn lookup_in(
        &self,
        view: &NodeView,
        verifier: &str,
        verifier_id: &str,
    ) -> Result<Option<KeyInfo>, ClientError> {
        let body = json_bytes(&request_body(
            Method::VerifierLookup,
            json!({ "verifier": verifier, "verifier_id": verifier_id }),
        ));
        let step = Instant::now();
        // `t` nodes first; another one for each that fails or disagrees,
        // and all of them once the hedge delay passes.
        let mut others = self.order(view).into_iter();
        let ask =
            |position| self.send(view, position, body.clone(), self.options.request_timeout, step, OnRateLimit::Answer);
        let mut pending: FuturesUnordered<NodeCall> = others.by_ref().take(view.threshold).map(ask).collect();
        let hedge = tokio::time::sleep(self.options.hedge_delay);
        tokio::pin!(hedge);
        // Each distinct answer (a key, or none) and how many nodes gave it.
        let mut votes: HashMap<Option<LookupKey>, usize> = HashMap::new();
        let mut failures = Vec::new();
        loop {
            let next = tokio::select! {
                next = pending.next() => next,
                () = &mut hedge, if others.len() > 0 => {
                    pending.extend(others.by_ref().map(ask));
                    continue;
                }
            };
            let Some(Reply { position, answer, .. }) = next else { break };
            let node = view.nodes[position].index;
            let vote = match answer {
                Answer::Result(result) => match serde_json::from_value::<quorumkey_login::KeyLookupResult>(result) {
                    Ok(found) if found.keys.len() == 1 => Some(found.keys.into_iter().next()),
                    _ => {
                        failures.push(NodeFailure { node, reason: "a malformed lookup answer".to_owned() });
                        None
                    }
                },
                Answer::Error(error) if error.data.contains(NOT_ASSIGNED) => Some(None),
                other => {
                    failures.push(NodeFailure { node, reason: other.describe() });
                    None
                }
            };
            if let Some(vote) = vote {
                let count = votes.entry(vote.clone()).or_insert(0);
                *count += 1;
                if *count >= view.threshold {
                    return match vote {
                        None => Ok(None),
                        Some(key) => self.key_info(&key).map(Some),
                    };
                }
            }
            // Enough nodes in flight for the leading answer to reach `t`.
            let leading = votes.values().copied().max().unwrap_or(0);
            while pending.len() + leading < view.threshold {
                let Some(position) = others.next() else { break };
                pending.push(ask(position));
            }
        }
        let got = votes.values().copied().max().unwrap_or(0);
        if votes.len() > 1 {
            failures.push(NodeFailure { node: 0, reason: format!("the nodes gave {} different answers", votes.len()) });
        }
        Err(ClientError::Quorum { step: "lookup", needed: view.threshold, got, failures })
    }

    fn key_info(&self, key: &LookupKey) -> Result<KeyInfo, ClientError> {
        let public_key =
            public_key_from_xy_hex(&key.pub_key_x, &key.pub_key_y).map_err(|e| ClientError::Key(e.to_string()))?;
        let key_index = u64::from_str_radix(&key.key_index, 16)
            .map_err(|_| ClientError::Key(format!("key index {:?} is not hex", key.key_index)))?;
        let address = quorumkey_crypto::address::eth_address(&public_key);
        if address != key.address {
            return Err(ClientError::Key(format!("the nodes' address {} is not the key's ({address})", key.address)));
        }
        Ok(KeyInfo { key_index, public_key, address })
    }

    /// Asks the network's KeyAssign signer (if `network.json` names one)
    /// to approve the assignment on `node`.
    async fn authorize(&self, node: &Node, body: &Value) -> Result<Option<KeyAssignAuthorization>, ClientError> {
        let Some(auxiliary) = &self.network.auxiliary else { return Ok(None) };
        let (x, y) = public_key_to_xy_hex(&node.public);
        let response = self
            .http
            .post(&auxiliary.signer_host)
            .header("pubKeyX", x)
            .header("pubKeyY", y)
            .json(body)
            .timeout(self.options.request_timeout)
            .send()
            .await
            .map_err(|e| ClientError::Signer(format!("unreachable: {}", e.without_url())))?;
        let status = response.status();
        let bytes = read_capped(response).await.map_err(ClientError::Signer)?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(ClientError::Signer(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>())));
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| ClientError::Signer(format!("not an authorization: {e}")))
    }

    /// Assigns a key to `verifier_id` at `verifier` (idempotent), through
    /// the nodes in random order until one succeeds, then confirms with a
    /// lookup.
    pub async fn assign(&self, verifier: &str, verifier_id: &str) -> Result<KeyInfo, ClientError> {
        let body = request_body(Method::KeyAssign, json!({ "verifier": verifier, "verifier_id": verifier_id }));
        let mut failures = Vec::new();
        let view = self.view();
        for position in self.order(&view) {
            let node = &view.nodes[position];
            let mut request = body.clone();
            if let Some(authorization) = self.authorize(node, &body).await?
                && let (Some(object), Ok(Value::Object(fields))) =
                    (request.as_object_mut(), serde_json::to_value(&authorization))
            {
                object.extend(fields);
            }
            let Reply { answer, .. } = self
                .send(
                    &view,
                    position,
                    json_bytes(&request),
                    self.options.assign_timeout,
                    Instant::now(),
                    OnRateLimit::Answer,
                )
                .await;
            match answer {
                Answer::Result(_) => {
                    // Other nodes may apply the block a moment later.
                    let deadline = Instant::now() + Duration::from_secs(5);
                    loop {
                        match self.lookup(verifier, verifier_id).await {
                            Ok(Some(key)) => return Ok(key),
                            Ok(None) | Err(_) if Instant::now() < deadline => {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Ok(None) => {
                                return Err(ClientError::NotAssigned {
                                    verifier: verifier.to_owned(),
                                    verifier_id: verifier_id.to_owned(),
                                });
                            }
                            Err(error) => return Err(error),
                        }
                    }
                }
                Answer::Error(error) if error.code == quorumkey_login::rpc::INVALID_PARAMS => {
                    // Wrong verifier or parameters: every node would say so.
                    failures.push(NodeFailure { node: node.index, reason: error.data });
                    return Err(ClientError::Quorum { step: "KeyAssign", needed: 1, got: 0, failures });
                }
                other => failures.push(NodeFailure { node: node.index, reason: other.describe() }),
            }
        }
        Err(ClientError::Quorum { step: "KeyAssign", needed: 1, got: 0, failures })
    }

    /// The pair's key, assigning one if it has none; `true` if it was
    /// assigned now.
    pub async fn lookup_or_assign(&self, verifier: &str, verifier_id: &str) -> Result<(KeyInfo, bool), ClientError> {
        match self.lookup(verifier, verifier_id).await? {
            Some(key) => Ok((key, false)),
            None => Ok((self.assign(verifier, verifier_id).await?, true)),
        }
    }

    /// Whether a node of `view` (or of the next set it knows) reports (`GET
    /// /v1/status`) a later epoch than `view`'s: a hint, checked by
    /// [`Self::refresh_node_set`] before anything changes (a lying node
    /// costs one refresh).
    async fn epoch_moved(&self, view: &NodeView) -> bool {
        #[derive(serde::Deserialize)]
        struct Status {
            #[serde(default)]
            epoch: u64,
        }
        let timeout = self.options.request_timeout;
        let mut apis: Vec<&str> = Vec::new();
        let next_apis = view.next.iter().flat_map(|next| next.nodes.iter().map(|(_, api)| api.as_str()));
        for api in view.nodes.iter().map(|node| node.api.as_str()).chain(next_apis) {
            if !apis.contains(&api) {
                apis.push(api);
            }
        }
        let mut pending: FuturesUnordered<_> = apis
            .into_iter()
            .map(|api| {
                let url = format!("{}/v1/status", api.trim_end_matches('/'));
                async move {
                    let response = self.http.get(&url).timeout(timeout).send().await.ok()?;
                    let body = read_capped(response).await.ok()?;
                    serde_json::from_slice::<Status>(&body).ok().map(|status| status.epoch)
                }
            })
            .collect();
        while let Some(answer) = pending.next().await {
            if answer.is_some_and(|epoch| epoch > view.epoch) {
                return true;
            }
        }
        false
    }

    /// Asks the nodes of the sets this client trusts (the set in use, and
    /// the next one if it knows it) for their node sets (`node_set` in `GET
    /// /v1/network`), and moves to the newest set in force that `t` nodes
    /// of a trusted set attest for this network
    /// ([`network_discovery::accept_node_set`]). Returns whether the set
    /// in force changed (not only its epoch number, or the next set).
    /// Logins do this on their own when they fail on a set the network has
    /// left.
    pub async fn refresh_node_set(&self) -> Result<bool, ClientError> {
        let seen = self.view();
        let trusted = seen.trusted();
        let answers = fetch_node_sets(
            &self.http,
            &self.network.network_id,
            &trusted,
            MAX_DESCRIPTION_BYTES,
            self.options.request_timeout,
        )
        .await;
        let accepted = accept_node_set(&self.network.network_id, &trusted, answers)?;
        self.adopt(&accepted)
    }

    /// Uses the node sets `accepted` unless the set in use is newer.
    fn adopt(&self, accepted: &NodeSetJson) -> Result<bool, ClientError> {
        let mut current = self.view.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.epoch > accepted.epoch {
            return Ok(false);
        }
        let invalid = |reason: String| {
            ClientError::NodeSet(network_discovery::UntrustedNodeSet {
                epoch: current.epoch,
                details: format!("the attested node set is not usable: {reason}"),
            })
        };
        let mut view = NodeView::of_node_set(accepted, current.generation + 1).map_err(invalid)?;
        let changed = !current.same_set(&view);
        if !changed {
            // Same nodes: keep what the client learned of them.
            view.generation = current.generation;
            view.unanswered = current.unanswered.clone();
        }
        *current = Arc::new(view);
        Ok(changed)
    }

    /// The key's public shares as `t` nodes agree on them (all asked at
    /// once), checked, and kept for later logins (a refresh or a new epoch
    /// may change them since: a login that meets a share that does not
    /// match fetches them again, see [`Self::refetch_public_shares`]).
    async fn public_shares(&self, view: &NodeView, key: &KeyInfo) -> Result<CheckedKey, ClientError> {
        let cached = self.checked_keys.lock().ok().and_then(|cache| cache.get(&key.key_index).cloned());
        if let Some((_, checked)) = cached
            .filter(|(generation, checked)| *generation == view.generation && checked.public_key == key.public_key)
        {
            return Ok(checked);
        }
        self.refetch_public_shares(view, key).await
    }

    /// The key's public shares fetched afresh, and kept.
    /// The reveal's last resort at an epoch boundary: after
    /// [`EPOCH_SWITCH_PAUSE`], the key's public shares fetched again and
    /// the same reveal (a node answers it again for the same commitment)
    /// sent to every node at once. The `t` shares that match those public
    /// shares, if that many do: all of one epoch, so they rebuild the key.
    async fn reveal_once_more(
        &self,
        view: &NodeView,
        key: &KeyInfo,
        body: &Bytes,
        temp_secret: &NonZeroScalar,
    ) -> Option<(CheckedKey, Vec<Share>)> {
        tokio::time::sleep(EPOCH_SWITCH_PAUSE).await;
        let checked = self.refetch_public_shares(view, key).await.ok()?;
        let step = Instant::now();
        let mut pending: FuturesUnordered<NodeCall> = (0..view.nodes.len())
            .map(|position| {
                self.send(view, position, body.clone(), self.options.request_timeout, step, OnRateLimit::Answer)
            })
            .collect();
        let mut shares = Vec::with_capacity(view.threshold);
        while let Some(Reply { position, answer, .. }) = pending.next().await {
            let Answer::Result(result) = answer else { continue };
            let Ok(parsed) = serde_json::from_value::<ShareRequestResult>(result) else { continue };
            let index = view.nodes[position].index;
            if let Ok(value) = checked.open_share(&parsed, temp_secret, index) {
                shares.push(Share { index: u32::from(index), value });
                if shares.len() == view.threshold {
                    return Some((checked, shares));
                }
            }
        }
        None
    }

    async fn refetch_public_shares(&self, view: &NodeView, key: &KeyInfo) -> Result<CheckedKey, ClientError> {
        let checked = self.fetch_public_shares(view, key).await?;
        if let Ok(mut cache) = self.checked_keys.lock() {
            if cache.len() >= CHECKED_KEY_CACHE {
                cache.clear();
            }
            cache.insert(key.key_index, (view.generation, checked.clone()));
        }
        Ok(checked)
    }

    /// `GET /v1/keys/{index}` to every node at once; the first public
    /// shares that `t` nodes served and that check out
    /// ([`key_check::PublicShareVotes`]), never one node's alone.
    async fn fetch_public_shares(&self, view: &NodeView, key: &KeyInfo) -> Result<CheckedKey, ClientError> {
        #[derive(serde::Deserialize)]
        struct KeyAnswer {
            public_shares: Vec<String>,
        }
        let fetch = |node: &Node| {
            let url = format!("{}/v1/keys/{}", node.api, key.key_index);
            async move {
                let response = self
                    .http
                    .get(&url)
                    .timeout(self.options.request_timeout)
                    .send()
                    .await
                    .map_err(|e| e.without_url().to_string())?;
                if !response.status().is_success() {
                    return Err(format!("HTTP {}", response.status()));
                }
                let answer: KeyAnswer = serde_json::from_slice(&read_capped(response).await?)
                    .map_err(|e| format!("not a key answer: {e}"))?;
                Ok(answer.public_shares)
            }
        };
        let mut pending: FuturesUnordered<_> = shuffled(view.nodes.len())
            .into_iter()
            .map(|position| {
                let node = &view.nodes[position];
                let request = fetch(node);
                async move { (node.index, request.await) }
            })
            .collect();
        let mut votes =
            key_check::PublicShareVotes::new(key.key_index, &key.public_key, view.nodes.len(), view.threshold);
        // Until an answer has `t` nodes, or none can reach `t` any more.
        while votes.agreeing() + pending.len() >= view.threshold {
            let Some((node, answer)) = pending.next().await else { break };
            if let Some(checked) = votes.add(node, answer) {
                return Ok(checked);
            }
        }
        Err(ClientError::Quorum {
            step: "public shares",
            needed: view.threshold,
            got: votes.agreeing(),
            failures: votes.failures(),
        })
    }

    /// Logs `verifier_id` in with `id_token` (which the verifier must
    /// accept for that user) and rebuilds the private key. The lookup and
    /// the commitments run at once, so the token is spent even when the
    /// pair turns out to have no key ([`ClientError::NotAssigned`]: assign
    /// one, see [`Self::lookup_or_assign`], then log in with a fresh token).
    ///
    /// The token is committed to and revealed in the one spelling the
    /// nodes accept (`quorumkey_verifier::canonical_spelling`: canonical
    /// base64url, an ES256 signature with a low `s`), so a token that its
    /// issuer spelled otherwise logs in all the same.
    pub async fn login(&self, verifier: &str, verifier_id: &str, id_token: &str) -> Result<Login, ClientError> {
        self.login_with(&LoginRequest::new(verifier, verifier_id, Credential::token(id_token)), None).await
    }

    /// [`Self::login`] for a key already looked up (e.g. by
    /// [`Self::lookup_or_assign`]): no second lookup.
    pub async fn login_key(
        &self,
        verifier: &str,
        verifier_id: &str,
        id_token: &str,
        key: &KeyInfo,
    ) -> Result<Login, ClientError> {
        self.login_with(&LoginRequest::new(verifier, verifier_id, Credential::token(id_token)), Some(key)).await
    }

    /// Logs `verifier_id` in at the aggregate verifier `verifier` with one
    /// token per sub-verifier: `sub_tokens` lists (sub-verifier, token)
    /// pairs, each token accepted by its sub-verifier for that user. The
    /// commitment is to the aggregate's `idtoken` (keccak256 of the
    /// sub-tokens, sorted and joined with 0x1D) and lists each sub-token's
    /// commitment (`sub_token_commitments`), so every sub-token serves this
    /// one login; the reveal carries the sub-tokens (`verify_params`,
    /// `sub_verifier_ids`, in the order given). Each sub-token is sent in
    /// its canonical spelling, as in [`Self::login`].
    pub async fn login_aggregate(
        &self,
        verifier: &str,
        verifier_id: &str,
        sub_tokens: &[(String, String)],
    ) -> Result<Login, ClientError> {
        self.login_with(&LoginRequest::new(verifier, verifier_id, Credential::aggregate(sub_tokens)), None).await
    }

    /// Logs `verifier_id` in at the script verifier `verifier`: one token
    /// per sub-verifier (`sub_tokens`, (sub-verifier, token) pairs, each
    /// checked by its sub-verifier) and the evidence the script reads
    /// (`evidence`: a wallet's message and signature, a passkey's
    /// assertion; text fields). The script, run by every node, must name
    /// `verifier_id`. The commitment is to keccak256 of the sub-tokens and
    /// the evidence ([`quorumkey_login::reveal::script_id_token`]) and lists
    /// each sub-token's commitment, so nothing of the login can be changed
    /// or reused between the commitment and the reveal.
    pub async fn login_script(
        &self,
        verifier: &str,
        verifier_id: &str,
        sub_tokens: &[(String, String)],
        evidence: &std::collections::BTreeMap<String, String>,
    ) -> Result<Login, ClientError> {
        self.login_with(&LoginRequest::new(verifier, verifier_id, Credential::script(sub_tokens, evidence)), None).await
    }

    /// [`Self::login_script`] for a key already looked up.
    pub async fn login_script_key(
        &self,
        verifier: &str,
        verifier_id: &str,
        sub_tokens: &[(String, String)],
        evidence: &std::collections::BTreeMap<String, String>,
        key: &KeyInfo,
    ) -> Result<Login, ClientError> {
        self.login_with(&LoginRequest::new(verifier, verifier_id, Credential::script(sub_tokens, evidence)), Some(key))
            .await
    }

    /// [`Self::login_aggregate`] for a key already looked up.
    pub async fn login_aggregate_key(
        &self,
        verifier: &str,
        verifier_id: &str,
        sub_tokens: &[(String, String)],
        key: &KeyInfo,
    ) -> Result<Login, ClientError> {
        self.login_with(&LoginRequest::new(verifier, verifier_id, Credential::aggregate(sub_tokens)), Some(key)).await
    }

    /// Every kind of login, on the node set in use; when it fails short of
    /// nodes and the network has moved to another node set since (a node
    /// reports a newer epoch, [`Self::refresh_node_set`] finds a newer set
    /// that `t` trusted nodes attest), again on the new set, at most
    /// [`MAX_NODE_SET_MOVES`] times. Every try commits to the same
    /// temporary key: a node that signed the commitment before answers
    /// with that signature again, and a node of the new set signs it.
    async fn login_with(&self, request: &LoginRequest<'_>, known: Option<&KeyInfo>) -> Result<Login, ClientError> {
        let temp_secret = NonZeroScalar::generate_from_rng(&mut quorumkey_crypto::random::os_rng());
        let mut view = self.view();
        let mut moves = 0;
        loop {
            let error = match self.login_on(&view, request, known, &temp_secret).await {
                Ok(login) => return Ok(login),
                Err(error) => error,
            };
            if moves >= MAX_NODE_SET_MOVES || !matches!(error, ClientError::Quorum { .. } | ClientError::Key(_)) {
                return Err(error);
            }
            moves += 1;
            let latest = self.view();
            if latest.generation != view.generation {
                // Another call moved to a newer set meanwhile.
                view = latest;
                continue;
            }
            if !self.epoch_moved(&view).await {
                return Err(error);
            }
            match self.refresh_node_set().await {
                Ok(true) => view = self.view(),
                Ok(false) => return Err(error),
                Err(refresh) => {
                    return Err(ClientError::NodeSetMoved { error: Box::new(error), reason: refresh.to_string() });
                }
            }
        }
    }

    /// One try of a login on the nodes of `view`: the key (looked up
    /// unless `known`) and its public shares while the commitments run,
    /// then the reveal.
    async fn login_on(
        &self,
        view: &NodeView,
        request: &LoginRequest<'_>,
        known: Option<&KeyInfo>,
        temp_secret: &NonZeroScalar,
    ) -> Result<Login, ClientError> {
        let started = Instant::now();
        let key = async {
            let key = match known {
                Some(key) => key.clone(),
                None => self.lookup_in(view, request.verifier, request.verifier_id).await?.ok_or_else(|| {
                    ClientError::NotAssigned {
                        verifier: request.verifier.to_owned(),
                        verifier_id: request.verifier_id.to_owned(),
                    }
                })?,
            };
            let checked = self.public_shares(view, &key).await?;
            Ok::<_, ClientError>(KnownKey { key, checked, took: started.elapsed() })
        };
        let (key, committed) = tokio::join!(key, self.commit(view, request, temp_secret));
        self.reveal(view, request, key?, committed?, started).await
    }

    /// `CommitmentRequest` to every node at once (in random order); returns
    /// once [`Self::reveal_quorum`] nodes signed, the other requests still
    /// running. All at once, not a few first: a front-runner that sees the
    /// commitment (a Byzantine node asked first) could otherwise bind the
    /// nodes not asked yet to its own temporary key before the user gets to
    /// them, and block the login with a single faulty node. A node that
    /// refuses over a rate limit is asked again when it says (see
    /// [`OnRateLimit::WaitAndRetry`]). The decisions are the
    /// [`LoginPlan`]'s; this loop sends, checks signatures and waits.
    async fn commit(
        &self,
        view: &NodeView,
        request: &LoginRequest<'_>,
        temp_secret: &NonZeroScalar,
    ) -> Result<Committed, ClientError> {
        let temp_secret = *temp_secret;
        let temp_public = PublicKey::from_secret_scalar(&temp_secret);
        let commitment = token_commitment_hex(request.credential.id_token());
        let body = json_bytes(&request_body(Method::Commitment, request.commitment_params(&temp_public)));
        let step = Instant::now();
        let send = |position| {
            self.send(view, position, body.clone(), self.options.request_timeout, step, OnRateLimit::WaitAndRetry)
        };
        let plan = LoginPlan::new(
            view.nodes.iter().map(|node| node.index),
            view.threshold,
            self.options.hedge_delay,
            self.order(view),
        );
        let mut committed = Committed {
            temp_secret,
            temp_public,
            commitment,
            verifier: request.verifier.to_owned(),
            signatures: vec![None; view.nodes.len()],
            plan,
            pending: FuturesUnordered::new(),
            took: Duration::ZERO,
        };
        loop {
            match committed.plan.poll() {
                PlanStep::SendCommitment { position } => committed.pending.push(send(position)),
                PlanStep::Wait => match committed.pending.next().await {
                    Some(reply) => committed.record(&view.nodes, reply),
                    None => committed.plan.abandon(),
                },
                PlanStep::Failed(shortfall) => return Err(shortfall.into()),
                // The reveal quorum signed (the reveal's steps come only
                // once `reveal` starts it).
                PlanStep::ReadyToReveal | PlanStep::SendReveal { .. } | PlanStep::Done { .. } => break,
            }
        }
        committed.took = step.elapsed();
        Ok(committed)
    }

    /// The reveal: `ShareRequest` with the signatures so far to the `t`
    /// nodes that signed first; for each that fails, to another node that
    /// signed (one that already did, or whose commitment comes later); to
    /// every node that signed when the hedge delay passes without `t` good
    /// shares; then the interpolation. The decisions are the
    /// [`LoginPlan`]'s; this loop sends, checks shares and wakes for the
    /// hedge. If too few shares check out and some decrypted but matched
    /// no public share the client held (nodes switching epochs one by one
    /// at a boundary, beyond what refetching the public shares resolved),
    /// it asks every node once more ([`Self::reveal_once_more`]).
    async fn reveal(
        &self,
        view: &NodeView,
        request: &LoginRequest<'_>,
        key: KnownKey,
        mut committed: Committed,
        started: Instant,
    ) -> Result<Login, ClientError> {
        let KnownKey { key, mut checked, took: lookup } = key;
        let mut refetches = 0;
        // Whether a share decrypted but matched no public share the client
        // held: the network may have been switching epochs node by node.
        let mut wrong_share_seen = false;
        let mut timings = LoginTimings { lookup, commitment: committed.took, ..LoginTimings::default() };
        let share_body = |signatures: &[Option<Value>]| {
            let entries: Vec<&Value> = signatures.iter().map(|s| s.as_ref().unwrap_or(&Value::Null)).collect();
            json_bytes(&request_body(
                Method::Share,
                json!({"encrypted": "yes", "item": [request.share_item(&entries)]}),
            ))
        };
        let mut body = share_body(&committed.signatures);
        let mut carried = committed.plan.signers().len();
        let step = Instant::now();
        let ask = |position: usize, body: &Bytes| {
            self.send(view, position, body.clone(), self.options.request_timeout, step, OnRateLimit::Answer)
        };
        committed.plan.start_reveal(step);
        let mut pending: FuturesUnordered<NodeCall> = FuturesUnordered::new();
        // Each good share, by position, until the plan names the `t` used.
        let mut shares: Vec<Option<Share>> = vec![None; view.nodes.len()];
        // Each answer that decrypted, with its time, to check again if the
        // key's public shares turn out to have moved.
        let mut answers: Vec<Option<(ShareRequestResult, Duration)>> = vec![None; view.nodes.len()];
        let used = loop {
            match committed.plan.poll() {
                PlanStep::SendReveal { position, signatures } => {
                    if signatures != carried {
                        // Later reveals carry the signatures that came since.
                        body = share_body(&committed.signatures);
                        carried = signatures;
                    }
                    pending.push(ask(position, &body));
                    continue;
                }
                PlanStep::Done { used } => break Ok(used),
                PlanStep::Failed(shortfall) => break Err(shortfall),
                // Every commitment went out before the reveal started.
                PlanStep::Wait | PlanStep::SendCommitment { .. } | PlanStep::ReadyToReveal => {}
            }
            let hedge = committed.plan.poll_timeout();
            tokio::select! {
                Some(Reply { position, answer, took, .. }) = pending.next(), if !pending.is_empty() => {
                    let node = view.nodes[position].index;
                    let answer = match answer {
                        Answer::Result(result) => serde_json::from_value::<ShareRequestResult>(result)
                            .map_err(|e| format!("a malformed share answer: {e}")),
                        other => Err(other.describe()),
                    };
                    let mut opened =
                        answer.as_ref().map_err(Clone::clone).and_then(|a| checked.open_share(a, &committed.temp_secret, node));
                    // A share that decrypts but does not match the public
                    // share the client holds: the network may be moving to
                    // new shares (a refresh, another epoch), node by node.
                    // Fetch the public shares again (a few times per login
                    // at most, while nodes switch); if they moved, check
                    // every answer so far against them: shares of the
                    // epoch before no longer count, shares of the new one
                    // now do, so that the shares used are all of one epoch.
                    if opened.as_ref().is_err_and(|reason| reason == key_check::WRONG_SHARE) {
                        wrong_share_seen = true;
                    }
                    if let (Err(reason), Ok(parsed)) = (&opened, &answer)
                        && reason == key_check::WRONG_SHARE
                        && refetches < MAX_PUBLIC_SHARE_REFETCHES
                    {
                        refetches += 1;
                        if let Ok(fresh) = self.refetch_public_shares(view, &key).await
                            && fresh.public_shares_differ(&checked)
                        {
                            checked = fresh;
                            opened = checked.open_share(parsed, &committed.temp_secret, node);
                            for earlier in 0..view.nodes.len() {
                                let Some((earlier_answer, earlier_took)) = &answers[earlier] else { continue };
                                let index = view.nodes[earlier].index;
                                match (checked.open_share(earlier_answer, &committed.temp_secret, index), shares[earlier].is_some()) {
                                    (Err(reason), true) => {
                                        shares[earlier] = None;
                                        committed.plan.revoke_share(earlier, reason);
                                    }
                                    (Ok(value), false) => {
                                        shares[earlier] = Some(Share { index: u32::from(index), value });
                                        committed.plan.reinstate_share(earlier, *earlier_took);
                                    }
                                    _ => {}
                                }
                            }
                        }
                    }
                    if let Ok(parsed) = answer {
                        answers[position] = Some((parsed, took));
                    }
                    let outcome = match opened {
                        Ok(value) => {
                            shares[position] = Some(Share { index: u32::from(node), value });
                            ShareOutcome::Good
                        }
                        Err(reason) => ShareOutcome::Failed(reason),
                    };
                    committed.plan.share_answered(position, outcome, took);
                }
                // Commitments still coming are read (and their signatures
                // checked) only when another signer is needed.
                Some(reply) = committed.pending.next(), if committed.plan.needs_commitment_answers() => {
                    committed.record(&view.nodes, reply);
                }
                () = tokio::time::sleep_until(hedge.unwrap_or(step).into()), if hedge.is_some() => {
                    committed.plan.handle_timeout(Instant::now());
                }
                else => committed.plan.abandon(),
            }
        };
        // Commitment requests still running finish on their own.
        let reports = committed.plan.into_reports();
        let shares: Vec<Share> = match used {
            Ok(used) => used.into_iter().filter_map(|position| shares.get_mut(position)?.take()).collect(),
            // Too few good shares, some of them of another epoch than the
            // public shares: ask every node once more, a moment later.
            Err(shortfall) if wrong_share_seen => {
                match self.reveal_once_more(view, &key, &body, &committed.temp_secret).await {
                    Some((fresh, again)) => {
                        checked = fresh;
                        again
                    }
                    None => return Err(shortfall.into()),
                }
            }
            Err(shortfall) => return Err(shortfall.into()),
        };
        let secret = checked.rebuild(&shares).map_err(ClientError::Key)?;
        timings.reveal = step.elapsed();
        timings.total = started.elapsed();
        Ok(Login {
            key,
            private_key: Zeroizing::new(quorumkey_crypto::group::scalar_to_bytes(&secret)),
            nodes: reports,
            timings,
        })
    }
}

/// What a login proves the user with, each token in the one spelling the
/// nodes accept.
enum Credential {
    /// One token, committed to and revealed as `idtoken`.
    Token(String),
    /// An aggregate verifier's sub-tokens.
    Aggregate {
        /// keccak256 of the sub-tokens, sorted and joined with 0x1D, in
        /// lower-case hex (`aggregate_id_token`): committed to and
        /// revealed as `idtoken`.
        id_token: String,
        /// The sub-verifiers, in the caller's order.
        sub_verifier_ids: Vec<String>,
        /// Their tokens, in the same order.
        sub_tokens: Vec<String>,
        /// A script login's evidence (`script_params`), bound by its
        /// `idtoken`; `None` for an aggregate login.
        evidence: Option<std::collections::BTreeMap<String, String>>,
    },
}

impl Credential {
    fn token(id_token: &str) -> Self {
        Self::Token(canonical_spelling(id_token).into_owned())
    }

    fn aggregate(sub_tokens: &[(String, String)]) -> Self {
        let (sub_verifier_ids, sub_tokens): (Vec<String>, Vec<String>) = sub_tokens
            .iter()
            .map(|(sub_verifier, token)| (sub_verifier.clone(), canonical_spelling(token).into_owned()))
            .unzip();
        Self::Aggregate { id_token: aggregate_id_token(&sub_tokens), sub_verifier_ids, sub_tokens, evidence: None }
    }

    fn script(sub_tokens: &[(String, String)], evidence: &std::collections::BTreeMap<String, String>) -> Self {
        let (sub_verifier_ids, sub_tokens): (Vec<String>, Vec<String>) = sub_tokens
            .iter()
            .map(|(sub_verifier, token)| (sub_verifier.clone(), canonical_spelling(token).into_owned()))
            .unzip();
        Self::Aggregate {
            id_token: script_id_token(&sub_tokens, evidence),
            sub_verifier_ids,
            sub_tokens,
            evidence: Some(evidence.clone()),
        }
    }

    /// The token the commitment is to, revealed as `idtoken`.
    fn id_token(&self) -> &str {
        match self {
            Self::Token(id_token) | Self::Aggregate { id_token, .. } => id_token,
        }
    }
}

/// One login as asked.
struct LoginRequest<'a> {
    verifier: &'a str,
    verifier_id: &'a str,
    credential: Credential,
}

impl<'a> LoginRequest<'a> {
    fn new(verifier: &'a str, verifier_id: &'a str, credential: Credential) -> Self {
        Self { verifier, verifier_id, credential }
    }

    /// The `CommitmentRequest` params for temporary key `temp_public`: the
    /// token's commitment and, for an aggregate, each sub-token's.
    fn commitment_params(&self, temp_public: &PublicKey) -> Value {
        let (x, y) = public_key_to_xy_hex(temp_public);
        let commitment = token_commitment_hex(self.credential.id_token());
        let mut params = json!({"messageprefix": "mug00", "tokencommitment": commitment,
                                "temppubx": x, "temppuby": y, "verifieridentifier": self.verifier});
        if let (Credential::Aggregate { sub_tokens, .. }, Some(fields)) = (&self.credential, params.as_object_mut()) {
            let commitments: Vec<String> = sub_tokens.iter().map(|token| token_commitment_hex(token)).collect();
            fields.insert(SUB_TOKEN_COMMITMENTS.to_owned(), json!(commitments));
        }
        params
    }

    /// The `ShareRequest` item with `signatures` (one entry per node).
    fn share_item(&self, signatures: &[&Value]) -> Value {
        let mut item = json!({"verifier_id": self.verifier_id, "idtoken": self.credential.id_token(),
                              "nodesignatures": signatures, "verifieridentifier": self.verifier});
        if let (Credential::Aggregate { sub_verifier_ids, sub_tokens, evidence, .. }, Some(fields)) =
            (&self.credential, item.as_object_mut())
        {
            let verify_params: Vec<Value> =
                sub_tokens.iter().map(|token| json!({"verifier_id": self.verifier_id, "idtoken": token})).collect();
            fields.insert("verify_params".to_owned(), json!(verify_params));
            fields.insert("sub_verifier_ids".to_owned(), json!(sub_verifier_ids));
            if let Some(evidence) = evidence {
                fields.insert("script_params".to_owned(), json!(evidence));
            }
        }
        item
    }
}

/// The key of a login, its checked public data, and how long getting them
/// took.
struct KnownKey {
    key: KeyInfo,
    checked: CheckedKey,
    took: Duration,
}

/// The commitments of a login: the temporary key, the signatures so far,
/// the plan, and the requests still running.
struct Committed {
    temp_secret: NonZeroScalar,
    temp_public: PublicKey,
    /// The token commitment (hex).
    commitment: String,
    verifier: String,
    /// Each node's signed commitment, by position.
    signatures: Vec<Option<Value>>,
    /// The decisions: who signed and in what order, what to send next.
    plan: LoginPlan,
    /// Commitment requests not answered yet.
    pending: FuturesUnordered<NodeCall>,
    /// Until the reveal quorum signed.
    took: Duration,
}

impl Committed {
    /// Checks one node's commitment answer (a signature the nodes will
    /// accept, or why not), keeps its signature, and hands the outcome to
    /// the plan.
    fn record(&mut self, nodes: &[Node], Reply { position, answer, took, rate_limited }: Reply) {
        let node = NodeKey { index: nodes[position].index, public: nodes[position].public };
        let signed = match answer {
            Answer::Result(result) => {
                check_commitment_signature(&result, &node, &self.commitment, &self.verifier, &self.temp_public)
                    .map(|()| result)
                    .map_err(|reason| format!("an unusable commitment signature: {reason}"))
            }
            Answer::Error(error) if error.code == RATE_LIMITED => Err(format!(
                "refused over a rate limit {rate_limited} times in {} ms (another try would pass the request timeout): {}",
                took.as_millis(),
                error.data
            )),
            other => Err(other.describe()),
        };
        let (outcome, signature) = match signed {
            Ok(result) => (CommitOutcome::Signed, Some(result)),
            Err(reason) => (CommitOutcome::Failed(reason), None),
        };
        if self.plan.commitment_answered(position, outcome, took, rate_limited)
            && let (Some(signature), Some(slot)) = (signature, self.signatures.get_mut(position))
        {
            *slot = Some(signature);
        }
    }
}

/// What a request does when a node refuses it over a rate limit
/// (JSON-RPC error `RATE_LIMITED`, which nodes send with HTTP 429 and
/// `Retry-After: 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnRateLimit {
    /// Takes the refusal as the node's answer.
    Answer,
    /// Waits as long as the node asks (`Retry-After`, 1 s if it does not
    /// say) and sends the request again, until the request timeout has
    /// passed since the first try. For commitments: an attacker can trip a
    /// node's per-verifier limit to keep the user's commitment away from
    /// honest nodes, while the login needs the signatures of all but
    /// ⌊(n − t) / 2⌋ of them.
    WaitAndRetry,
}

/// How long a login waits before it asks every node for its share once
/// more, when shares of two epochs came (nodes switch within a block or
/// two of each other).
const EPOCH_SWITCH_PAUSE: Duration = Duration::from_millis(500);

/// A node's answer to one request.
struct Reply {
    /// The node's position.
    position: usize,
    answer: Answer,
    /// When it came, since the step started.
    took: Duration,
    /// How many times the node refused the request over a rate limit.
    rate_limited: u32,
}

/// A request in flight (see [`QuorumkeyClient::send`]).
type NodeCall = futures::future::BoxFuture<'static, Reply>;

/// A JSON-RPC request's body, serialized once for every node it goes to.
fn json_bytes(body: &Value) -> Bytes {
    // Serializing a `Value` cannot fail.
    Bytes::from(serde_json::to_vec(body).unwrap_or_default())
}

/// How long to wait after a rate-limit refusal that names no time.
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);
/// The least wait after a rate-limit refusal, whatever the node says.
const MIN_RATE_LIMIT_WAIT: Duration = Duration::from_millis(100);

/// One JSON-RPC call ([`attempt`]) and, with [`OnRateLimit::WaitAndRetry`],
/// another after each rate-limit refusal, as long as the wait ends within
/// `timeout` of the first try. Returns the answer and how many rate-limit
/// refusals the node gave.
async fn call(
    http: &reqwest::Client,
    endpoint: &reqwest::Url,
    body: Bytes,
    timeout: Duration,
    retries: u32,
    on_rate_limit: OnRateLimit,
) -> (Answer, u32) {
    let deadline = Instant::now() + timeout;
    let mut refusals = 0u32;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (answer, retry_after) = attempt(http, endpoint, body.clone(), left, retries).await;
        if !matches!(&answer, Answer::Error(error) if error.code == RATE_LIMITED) {
            return (answer, refusals);
        }
        refusals += 1;
        let wait = retry_after.unwrap_or(RATE_LIMIT_WAIT).max(MIN_RATE_LIMIT_WAIT);
        if on_rate_limit == OnRateLimit::Answer || Instant::now() + wait >= deadline {
            return (answer, refusals);
        }
        tokio::time::sleep(wait).await;
    }
}

/// One JSON-RPC request, with the timeout and retries on transport errors;
/// with a rate-limit refusal, the wait the node asked for (`Retry-After`
/// in seconds).
async fn attempt(
    http: &reqwest::Client,
    endpoint: &reqwest::Url,
    body: Bytes,
    timeout: Duration,
    retries: u32,
) -> (Answer, Option<Duration>) {
    let mut last = String::new();
    for attempt in 0..=retries {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
        }
        let sent = http
            .post(endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .timeout(timeout)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                last = if error.is_timeout() {
                    format!("no answer within {} ms", timeout.as_millis())
                } else {
                    format!("unreachable: {}", error.without_url())
                };
                continue;
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .filter(|_| status == reqwest::StatusCode::TOO_MANY_REQUESTS)
            .and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match read_capped(response).await {
            Ok(bytes) => bytes,
            Err(reason) => return (Answer::Transport(reason), None),
        };
        let answer = match serde_json::from_slice::<RpcResponse>(&bytes) {
            Ok(RpcResponse { result: Some(result), error: None, .. }) => Answer::Result(result),
            Ok(RpcResponse { error: Some(error), .. }) => Answer::Error(error),
            Ok(_) => Answer::Transport("an answer with neither result nor error".to_owned()),
            Err(error) if status.is_success() => Answer::Transport(format!("not a JSON-RPC answer: {error}")),
            Err(_) => {
                last = format!("HTTP {status}");
                continue;
            }
        };
        return (answer, retry_after);
    }
    (Answer::Transport(last), None)
}

/// Longest answer read from a node or the signer: a node answers in a few
/// KiB; a faulty one must not make the client allocate without bound.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The body of `response`, refused past [`MAX_ANSWER_BYTES`].
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("reading the answer: {}", e.without_url()))? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!("an answer over {MAX_ANSWER_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use quorumkey_crypto::hash::token_commitment;
    use quorumkey_login::{CommitmentRequest, ShareRequest};

    use super::*;

    /// An ES256 JWT whose signature segment is padded: nodes accept only
    /// the unpadded spelling.
    fn padded(payload: &str) -> (String, String) {
        let canonical = format!("eyJhbGciOiJFUzI1NiJ9.{payload}.{}", "A".repeat(86));
        (format!("{canonical}=="), canonical)
    }

    fn temp_key() -> PublicKey {
        PublicKey::from_secret_scalar(&NonZeroScalar::generate_from_rng(&mut quorumkey_crypto::random::os_rng()))
    }

    #[test]
    fn a_login_commits_to_and_reveals_the_canonical_spelling() {
        let (token, canonical) = padded("e30");
        let request = LoginRequest::new("app", "alice@example.com", Credential::token(&token));
        let commitment = CommitmentRequest::parse(&request.commitment_params(&temp_key())).unwrap();
        assert_eq!(commitment.commitment, token_commitment(&canonical));
        assert!(commitment.sub_tokens.is_empty());
        let reveal = ShareRequest::parse(&json!({"encrypted": "yes", "item": [request.share_item(&[])]}), 5).unwrap();
        assert_eq!(reveal.id_token, canonical);
        assert_eq!(reveal.commitment, commitment.commitment);
        assert!(reveal.aggregate.is_none());
    }

    #[test]
    fn an_aggregate_login_commits_to_each_canonical_sub_token_and_reveals_them_bound() {
        let (first, first_canonical) = padded("eyJhIjoxfQ");
        let (_, second) = padded("eyJiIjoyfQ");
        let subs = [("google".to_owned(), first), ("email".to_owned(), second.clone())];
        let request = LoginRequest::new("app-aggregate", "alice@example.com", Credential::aggregate(&subs));
        let commitment = CommitmentRequest::parse(&request.commitment_params(&temp_key())).unwrap();
        commitment.check_kind(true).unwrap();
        let mut expected = vec![token_commitment(&first_canonical), token_commitment(&second)];
        expected.sort_unstable();
        assert_eq!(commitment.sub_tokens, expected);
        let id_token = aggregate_id_token(&[first_canonical.clone(), second.clone()]);
        assert_eq!(commitment.commitment, token_commitment(&id_token));

        // The node's parser checks the binding of `idtoken` to the sub-tokens.
        let null = Value::Null;
        let item = request.share_item(&[&null, &null]);
        let reveal = ShareRequest::parse(&json!({"encrypted": "yes", "item": [item]}), 5).unwrap();
        assert_eq!(reveal.id_token, id_token);
        assert_eq!(reveal.commitment, commitment.commitment);
        assert_eq!(reveal.node_signatures.len(), 2);
        assert_eq!(reveal.sub_token_commitments(), commitment.sub_tokens, "the sub-tokens committed are revealed");
        let aggregate = reveal.aggregate.unwrap();
        assert_eq!(aggregate.sub_verifier_ids, ["google", "email"], "in the caller's order");
        assert_eq!(aggregate.tokens, [first_canonical, second]);
    }
}
