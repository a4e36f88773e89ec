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
//! A login: a fresh temporary key; `CommitmentRequest` to every node,
//! dispatched in random order; as soon as `t` nodes signed, `ShareRequest`
//! with those signatures to those `t` nodes (to the others that sign if
//! one fails or is slow); each share is decrypted and checked against
//! the node's public share from the ledger (a wrong one is dropped and its
//! node named); as soon as `t` shares checked out they are interpolated
//! (exactly `t`, no search over subsets) and the result checked against the
//! key's public key. Every request has a timeout; transport errors are
//! retried; every error says which nodes failed and why.

pub mod key_check;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use quorumkey_crypto::group::{NonZeroScalar, PublicKey, public_key_from_xy_hex, public_key_to_xy_hex};
use quorumkey_crypto::hash::token_commitment_hex;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::shamir::Share;
use quorumkey_login::error::NOT_ASSIGNED;
use quorumkey_login::network::NetworkJson;
use quorumkey_login::rpc::request_body;
use quorumkey_login::{
    KeyAssignAuthorization, LookupKey, Method, NodeKey, RpcError, RpcResponse, ShareRequestResult,
    check_commitment_signature,
};
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
    /// answered by the end of the login, which waits only for `t`).
    pub commitment: Option<Result<Duration, String>>,
    /// Its share: time taken, or why it was refused or dropped (`None`:
    /// not asked, or not needed in time).
    pub share: Option<Result<Duration, String>>,
    /// Whether its share is one of the `t` interpolated.
    pub used: bool,
}

/// How long each step took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoginTimings {
    /// Lookup (`t` agreeing nodes) and the key's public shares.
    pub lookup: Duration,
    /// Commitments until `t` nodes signed.
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

/// A client of one network.
pub struct QuorumkeyClient {
    network: NetworkJson,
    nodes: Vec<Node>,
    threshold: usize,
    http: reqwest::Client,
    options: ClientOptions,
    /// Checked public data of keys seen (a key's public shares never change).
    checked_keys: std::sync::Mutex<HashMap<u64, CheckedKey>>,
    /// When each node last failed to answer (transport error or timeout).
    unanswered: Arc<std::sync::Mutex<HashMap<usize, Instant>>>,
}

/// How long a node that did not answer is asked after the others.
const ASK_LAST_FOR: Duration = Duration::from_secs(30);

/// Keys whose checked public data a client keeps.
const CHECKED_KEY_CACHE: usize = 4096;

impl std::fmt::Debug for QuorumkeyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumkeyClient")
            .field("network_id", &self.network.network_id)
            .field("nodes", &self.nodes.len())
            .field("threshold", &self.threshold)
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
    pub fn new(network: NetworkJson, options: ClientOptions) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::Network { path: "<memory>".to_owned(), reason };
        let keys = network.node_keys().map_err(invalid)?;
        let nodes = network
            .nodes
            .iter()
            .zip(keys)
            .map(|(node, public)| {
                let refused =
                    |why: String| invalid(format!("node {}: endpoint {:?}: {why}", node.index, node.endpoint));
                let endpoint = reqwest::Url::parse(&node.endpoint).map_err(|e| refused(e.to_string()))?;
                if !matches!(endpoint.scheme(), "http" | "https") || !endpoint.has_host() {
                    return Err(refused("not an http or https URL with a host".to_owned()));
                }
                Ok(Node { index: node.index, endpoint, api: node.api.trim_end_matches('/').to_owned(), public })
            })
            .collect::<Result<_, ClientError>>()?;
        let http = reqwest::Client::builder()
            .connect_timeout(options.request_timeout)
            .build()
            .map_err(|e| invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            threshold: network.threshold,
            nodes,
            network,
            http,
            options,
            checked_keys: std::sync::Mutex::new(HashMap::new()),
            unanswered: Arc::new(std::sync::Mutex::new(HashMap::new())),
        })
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

    /// The network description.
    pub fn network(&self) -> &NetworkJson {
        &self.network
    }

    /// Shares needed to rebuild a key.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// One JSON-RPC request to the node at `position`, as its own task:
    /// when the caller stops waiting (it heard from enough nodes), the
    /// request still completes and its connection goes back to the pool,
    /// instead of being cut mid-answer and costing a later request a new
    /// connection. The answer comes with the time since `step`.
    fn send(&self, position: usize, body: Bytes, timeout: Duration, step: Instant) -> NodeCall {
        let (http, retries) = (self.http.clone(), self.options.retries);
        let endpoint = self.nodes[position].endpoint.clone();
        let unanswered = self.unanswered.clone();
        let task = tokio::spawn(async move {
            let answer = call(&http, &endpoint, body, timeout, retries).await;
            if let Ok(mut unanswered) = unanswered.lock() {
                if matches!(answer, Answer::Transport(_)) {
                    unanswered.insert(position, Instant::now());
                } else {
                    unanswered.remove(&position);
                }
            }
            answer
        });
        Box::pin(async move {
            let answer = task.await.unwrap_or_else(|e| Answer::Transport(format!("the request failed: {e}")));
            (position, answer, step.elapsed())
        })
    }

    /// The nodes in random order, those that did not answer in the last
    /// [`ASK_LAST_FOR`] last: requests go to the first `t` and move down
    /// the list only on failure or after the hedge delay.
    fn order(&self) -> Vec<usize> {
        let mut order = shuffled(self.nodes.len());
        if let Ok(unanswered) = self.unanswered.lock() {
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
        let body = json_bytes(&request_body(
            Method::VerifierLookup,
            json!({ "verifier": verifier, "verifier_id": verifier_id }),
        ));
        let step = Instant::now();
        // `t` nodes first; another one for each that fails or disagrees,
        // and all of them once the hedge delay passes.
        let mut others = self.order().into_iter();
        let ask = |position| self.send(position, body.clone(), self.options.request_timeout, step);
        let mut pending: FuturesUnordered<NodeCall> = others.by_ref().take(self.threshold).map(ask).collect();
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
            let Some((position, answer, _)) = next else { break };
            let node = self.nodes[position].index;
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
                if *count >= self.threshold {
                    return match vote {
                        None => Ok(None),
                        Some(key) => self.key_info(&key).map(Some),
                    };
                }
            }
            // Enough nodes in flight for the leading answer to reach `t`.
            let leading = votes.values().copied().max().unwrap_or(0);
            while pending.len() + leading < self.threshold {
                let Some(position) = others.next() else { break };
                pending.push(ask(position));
            }
        }
        let got = votes.values().copied().max().unwrap_or(0);
        if votes.len() > 1 {
            failures.push(NodeFailure { node: 0, reason: format!("the nodes gave {} different answers", votes.len()) });
        }
        Err(ClientError::Quorum { step: "lookup", needed: self.threshold, got, failures })
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
        for position in self.order() {
            let node = &self.nodes[position];
            let mut request = body.clone();
            if let Some(authorization) = self.authorize(node, &body).await?
                && let (Some(object), Ok(Value::Object(fields))) =
                    (request.as_object_mut(), serde_json::to_value(&authorization))
            {
                object.extend(fields);
            }
            let (_, answer, _) =
                self.send(position, json_bytes(&request), self.options.assign_timeout, Instant::now()).await;
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

    /// The key's public shares from the first node whose answer checks out
    /// (all asked at once), kept for later logins.
    async fn public_shares(&self, key: &KeyInfo) -> Result<CheckedKey, ClientError> {
        let cached = self.checked_keys.lock().ok().and_then(|cache| cache.get(&key.key_index).cloned());
        if let Some(checked) = cached.filter(|checked| checked.public_key == key.public_key) {
            return Ok(checked);
        }
        let checked = self.fetch_public_shares(key).await?;
        if let Ok(mut cache) = self.checked_keys.lock() {
            if cache.len() >= CHECKED_KEY_CACHE {
                cache.clear();
            }
            cache.insert(key.key_index, checked.clone());
        }
        Ok(checked)
    }

    async fn fetch_public_shares(&self, key: &KeyInfo) -> Result<CheckedKey, ClientError> {
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
                key_check::check_public_shares(
                    key.key_index,
                    &key.public_key,
                    &answer.public_shares,
                    self.nodes.len(),
                    self.threshold,
                )
            }
        };
        let mut pending: FuturesUnordered<_> = shuffled(self.nodes.len())
            .into_iter()
            .map(|position| {
                let node = &self.nodes[position];
                let request = fetch(node);
                async move { (node.index, request.await) }
            })
            .collect();
        let mut failures = Vec::new();
        while let Some((node, answer)) = pending.next().await {
            match answer {
                Ok(checked) => return Ok(checked),
                Err(reason) => failures.push(NodeFailure { node, reason }),
            }
        }
        Err(ClientError::Quorum { step: "public shares", needed: 1, got: 0, failures })
    }

    /// Logs `verifier_id` in with `id_token` (which the verifier must
    /// accept for that user) and rebuilds the private key. The lookup and
    /// the commitments run at once, so the token is spent even when the
    /// pair turns out to have no key ([`ClientError::NotAssigned`]: assign
    /// one, see [`Self::lookup_or_assign`], then log in with a fresh token).
    pub async fn login(&self, verifier: &str, verifier_id: &str, id_token: &str) -> Result<Login, ClientError> {
        let started = Instant::now();
        let key = async {
            let key = self.lookup(verifier, verifier_id).await?.ok_or_else(|| ClientError::NotAssigned {
                verifier: verifier.to_owned(),
                verifier_id: verifier_id.to_owned(),
            })?;
            let checked = self.public_shares(&key).await?;
            Ok::<_, ClientError>((key, checked, started.elapsed()))
        };
        let (key, commitment) = tokio::join!(key, self.commit(verifier, id_token));
        let (key, checked, lookup) = key?;
        self.finish_login(verifier, verifier_id, id_token, key, checked, commitment?, lookup, started).await
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
        let started = Instant::now();
        let shares = async {
            let checked = self.public_shares(key).await?;
            Ok::<_, ClientError>((checked, started.elapsed()))
        };
        let (shares, commitment) = tokio::join!(shares, self.commit(verifier, id_token));
        let (checked, lookup) = shares?;
        self.finish_login(verifier, verifier_id, id_token, key.clone(), checked, commitment?, lookup, started).await
    }

    /// `CommitmentRequest` to every node at once (in random order); returns
    /// once `t` signed, the other requests still running. All at once, not
    /// `t` first: a front-runner that sees the commitment (a Byzantine
    /// node asked first) could otherwise bind the nodes not asked yet to
    /// its own temporary key before the user gets to them, and block the
    /// login with a single faulty node.
    async fn commit(&self, verifier: &str, id_token: &str) -> Result<Committed, ClientError> {
        let temp_secret = NonZeroScalar::generate_from_rng(&mut quorumkey_crypto::random::os_rng());
        let temp_public = PublicKey::from_secret_scalar(&temp_secret);
        let (x, y) = public_key_to_xy_hex(&temp_public);
        let commitment = token_commitment_hex(id_token);
        let body = json_bytes(&request_body(
            Method::Commitment,
            json!({"messageprefix": "mug00", "tokencommitment": commitment,
                   "temppubx": x, "temppuby": y, "verifieridentifier": verifier}),
        ));
        let step = Instant::now();
        let mut committed = Committed {
            temp_secret,
            temp_public,
            commitment,
            verifier: verifier.to_owned(),
            signatures: vec![None; self.nodes.len()],
            arrival: Vec::with_capacity(self.nodes.len()),
            reports: self.nodes.iter().map(|node| NodeReport { node: node.index, ..NodeReport::default() }).collect(),
            pending: self
                .order()
                .into_iter()
                .map(|position| self.send(position, body.clone(), self.options.request_timeout, step))
                .collect(),
            took: Duration::ZERO,
        };
        while committed.arrival.len() < self.threshold {
            let Some(answer) = committed.pending.next().await else { break };
            committed.record(&self.nodes, answer);
        }
        if committed.arrival.len() < self.threshold {
            return Err(ClientError::Quorum {
                step: "commitment",
                needed: self.threshold,
                got: committed.arrival.len(),
                failures: failures_of(&committed.reports, |r| &r.commitment),
            });
        }
        committed.took = step.elapsed();
        Ok(committed)
    }

    /// The reveal: `ShareRequest` with the signatures so far to the `t`
    /// nodes that signed first; for each that fails, to another node that
    /// signed (now, or when its commitment comes); to every node that
    /// signed when the hedge delay passes without `t` good shares; then the
    /// interpolation.
    #[allow(clippy::too_many_arguments, reason = "one private step of login with everything it produced so far")]
    async fn finish_login(
        &self,
        verifier: &str,
        verifier_id: &str,
        id_token: &str,
        key: KeyInfo,
        checked: CheckedKey,
        mut committed: Committed,
        lookup: Duration,
        started: Instant,
    ) -> Result<Login, ClientError> {
        let mut timings = LoginTimings { lookup, commitment: committed.took, ..LoginTimings::default() };
        let share_body = |signatures: &[Option<Value>]| {
            let entries: Vec<&Value> = signatures.iter().map(|s| s.as_ref().unwrap_or(&Value::Null)).collect();
            json_bytes(&request_body(
                Method::Share,
                json!({"encrypted": "yes", "item": [{"verifier_id": verifier_id, "idtoken": id_token,
                       "nodesignatures": entries, "verifieridentifier": verifier}]}),
            ))
        };
        let mut body = share_body(&committed.signatures);
        let step = Instant::now();
        let ask = |position: usize, body: &Bytes| self.send(position, body.clone(), self.options.request_timeout, step);
        let mut pending: FuturesUnordered<NodeCall> =
            committed.arrival.iter().take(self.threshold).map(|&position| ask(position, &body)).collect();
        let mut asked = pending.len();
        let hedge = tokio::time::sleep(self.options.hedge_delay);
        tokio::pin!(hedge);
        let (mut hedged, mut wanted) = (false, 0usize);
        let mut shares: Vec<Share> = Vec::with_capacity(self.threshold);
        while shares.len() < self.threshold {
            tokio::select! {
                Some((position, answer, took)) = pending.next(), if !pending.is_empty() => {
                    let node = self.nodes[position].index;
                    let outcome = match answer {
                        Answer::Result(result) => serde_json::from_value::<ShareRequestResult>(result)
                            .map_err(|e| format!("a malformed share answer: {e}"))
                            .and_then(|answer| checked.open_share(&answer, &committed.temp_secret, node)),
                        other => Err(other.describe()),
                    };
                    match outcome {
                        Ok(value) => {
                            shares.push(Share { index: u32::from(node), value });
                            committed.reports[position].share = Some(Ok(took));
                            committed.reports[position].used = true;
                        }
                        Err(reason) => {
                            committed.reports[position].share = Some(Err(reason));
                            wanted += 1;
                        }
                    }
                }
                // Commitments still coming are read (and their signatures
                // checked) only when another signer is needed.
                Some(answer) = committed.pending.next(), if !committed.pending.is_empty() && (hedged || wanted > asked.saturating_sub(self.threshold)) => {
                    if committed.record(&self.nodes, answer) {
                        // Later reveals carry this signature too.
                        body = share_body(&committed.signatures);
                    }
                }
                () = &mut hedge, if !hedged => hedged = true,
                else => break,
            }
            // Beyond the first `t`, one reveal per failure (all once hedged).
            let want = if hedged { usize::MAX } else { wanted };
            while want > asked.saturating_sub(self.threshold) && asked < committed.arrival.len() {
                pending.push(ask(committed.arrival[asked], &body));
                asked += 1;
            }
            if pending.is_empty() && committed.pending.is_empty() && shares.len() < self.threshold {
                break;
            }
        }
        // Commitment requests still running finish on their own.
        let reports = committed.reports;
        if shares.len() < self.threshold {
            return Err(ClientError::Quorum {
                step: "reveal",
                needed: self.threshold,
                got: shares.len(),
                failures: failures_of(&reports, |r| &r.share),
            });
        }
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

/// The commitments of a login: what came so far, and the requests still
/// running.
struct Committed {
    temp_secret: NonZeroScalar,
    temp_public: PublicKey,
    /// The token commitment (hex).
    commitment: String,
    verifier: String,
    /// Each node's signed commitment, by position.
    signatures: Vec<Option<Value>>,
    /// Positions of the nodes that signed, in the order they answered.
    arrival: Vec<usize>,
    reports: Vec<NodeReport>,
    /// Commitment requests not answered yet.
    pending: FuturesUnordered<NodeCall>,
    /// Until `t` signed.
    took: Duration,
}

impl Committed {
    /// Records one node's commitment answer; `true` if it signed, with a
    /// signature the nodes will accept.
    fn record(&mut self, nodes: &[Node], (position, answer, took): NodeAnswer) -> bool {
        let node = NodeKey { index: nodes[position].index, public: nodes[position].public };
        let signed = match answer {
            Answer::Result(result) => {
                check_commitment_signature(&result, &node, &self.commitment, &self.verifier, &self.temp_public)
                    .map(|()| result)
                    .map_err(|reason| format!("an unusable commitment signature: {reason}"))
            }
            other => Err(other.describe()),
        };
        match signed {
            Ok(result) => {
                self.signatures[position] = Some(result);
                self.arrival.push(position);
                self.reports[position].commitment = Some(Ok(took));
                true
            }
            Err(reason) => {
                self.reports[position].commitment = Some(Err(reason));
                false
            }
        }
    }
}

/// A node's answer to one request: its position, the answer, and when it
/// came (since the step started).
type NodeAnswer = (usize, Answer, Duration);
/// A request in flight (see [`QuorumkeyClient::send`]).
type NodeCall = futures::future::BoxFuture<'static, NodeAnswer>;

/// A JSON-RPC request's body, serialized once for every node it goes to.
fn json_bytes(body: &Value) -> Bytes {
    // Serializing a `Value` cannot fail.
    Bytes::from(serde_json::to_vec(body).unwrap_or_default())
}

/// One JSON-RPC call, with the timeout and retries on transport errors.
async fn call(http: &reqwest::Client, endpoint: &reqwest::Url, body: Bytes, timeout: Duration, retries: u32) -> Answer {
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
        let bytes = match read_capped(response).await {
            Ok(bytes) => bytes,
            Err(reason) => return Answer::Transport(reason),
        };
        match serde_json::from_slice::<RpcResponse>(&bytes) {
            Ok(RpcResponse { result: Some(result), error: None, .. }) => return Answer::Result(result),
            Ok(RpcResponse { error: Some(error), .. }) => return Answer::Error(error),
            Ok(_) => return Answer::Transport("an answer with neither result nor error".to_owned()),
            Err(error) if status.is_success() => {
                return Answer::Transport(format!("not a JSON-RPC answer: {error}"));
            }
            Err(_) => last = format!("HTTP {status}"),
        }
    }
    Answer::Transport(last)
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

fn failures_of(
    reports: &[NodeReport],
    field: impl Fn(&NodeReport) -> &Option<Result<Duration, String>>,
) -> Vec<NodeFailure> {
    reports
        .iter()
        .filter_map(|report| {
            let reason = match (&report.commitment, field(report)) {
                (_, Some(Ok(_))) => return None,
                (_, Some(Err(reason))) => reason.clone(),
                (Some(Err(reason)), None) => format!("no commitment: {reason}"),
                (_, None) => "no answer in time".to_owned(),
            };
            Some(NodeFailure { node: report.node, reason })
        })
        .collect()
}
