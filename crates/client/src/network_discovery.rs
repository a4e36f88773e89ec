//! Finding a network from one node's URL (`quorumkey network
//! client-config`): the description that node serves at `GET /v1/network`
//! is accepted only when it is consistent with its own genesis (whose hash
//! is the network id) and when `t` of the nodes it lists, each at the
//! address it lists, serve a description that means the same and is signed
//! by that node's key.
//!
//! Who may misbehave, and why the result still holds:
//! - **The node asked first, or whatever answers at its URL**, may make up
//!   a whole network. It cannot make up one with the real network id: the
//!   id is the hash of the genesis, and the genesis lists every node key.
//!   So the network id must be compared out of band (`--network-id`, or the
//!   printed id against the operators' published one); the command prints
//!   it and says so.
//! - **Up to t − 1 nodes** may attest any description, for instance with
//!   addresses of their choosing. Descriptions of the real network with
//!   other addresses gather at most t − 1 attestations by the real keys;
//!   the command needs `t`, so one honest node vouches for every address.
//! - **A proxy or a man in the middle** of plain HTTP may answer for a node;
//!   without its key it cannot attest for it.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use quorumkey_crypto::group::PublicKey;
use quorumkey_login::network::{DescriptionError, NetworkJson, NextNodeSetJson, NodeSetJson};
use thiserror::Error;

/// The largest description a node may send: a genesis at its limits (every
/// verifier with its largest configuration), twice as hex, and room for
/// the nodes.
pub const MAX_DESCRIPTION_BYTES: usize =
    2 * quorumkey_ledger::genesis::MAX_GENESIS_VERIFIERS * (quorumkey_ledger::genesis::MAX_VERIFIER_CONFIG_LEN + 256)
        + (1 << 20);

/// Room for another node's attestation (index, 130 hex digits) beside the
/// first description's length.
const ATTESTATION_SLACK: usize = 1024;

/// Why no description could be trusted.
#[derive(Debug, Error)]
pub enum DiscoveryError {
    /// A node's description could not be fetched.
    #[error("{url}: {reason}")]
    Fetch {
        /// The URL asked.
        url: String,
        /// Why.
        reason: String,
    },
    /// The first node's description does not hold together.
    #[error("{url}: {source}")]
    Description {
        /// The URL asked.
        url: String,
        /// What is wrong.
        source: DescriptionError,
    },
    /// The network is not the one expected.
    #[error("the network at {url} has id {got}, not the {expected} you expect")]
    NetworkId {
        /// The URL asked.
        url: String,
        /// The id expected.
        expected: String,
        /// The id found.
        got: String,
    },
    /// Fewer than `t` nodes vouch for the description.
    #[error("only {agreeing} of the {nodes} nodes attest this description and {threshold} must:\n{failures}")]
    TooFewAgree {
        /// Nodes that attested it.
        agreeing: usize,
        /// Nodes listed.
        nodes: usize,
        /// The threshold.
        threshold: usize,
        /// Why each other node does not count, one per line.
        failures: String,
    },
}

/// A description `t` nodes vouch for.
#[derive(Debug)]
pub struct DiscoveredNetwork {
    /// The description, without any attestation; with the node set in
    /// force if `t` genesis nodes attest the same one.
    pub description: NetworkJson,
    /// Why the description carries no node set, if it does not (the
    /// client then starts from the genesis nodes and follows the network
    /// from there).
    pub node_set_problem: Option<String>,
    /// The nodes that attested it.
    pub agreeing: Vec<u16>,
    /// The nodes that did not, and why.
    pub failures: BTreeMap<u16, String>,
}

/// Fetches a description of at most `limit` bytes from `base` (a node's
/// API base) with `http`; returns it and its length.
async fn fetch(http: &reqwest::Client, base: &str, limit: usize) -> Result<(NetworkJson, usize), DiscoveryError> {
    let url = format!("{}/v1/network", base.trim_end_matches('/'));
    let fail = |reason: String| DiscoveryError::Fetch { url: url.clone(), reason };
    let mut response = http.get(&url).send().await.map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("HTTP {}", response.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| fail(e.to_string()))? {
        if body.len() + chunk.len() > limit {
            return Err(fail(format!("the description exceeds {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    let description = serde_json::from_slice(&body).map_err(|e| fail(format!("not a network description: {e}")))?;
    Ok((description, body.len()))
}

/// Checks one node's answer against the description being collected:
/// attested by the node listed at this position, meaning the same.
fn vouches(expected: &NetworkJson, index: u16, answer: &NetworkJson) -> Result<(), String> {
    let signer = answer.attested_by().map_err(|e| e.to_string())?;
    if signer != index {
        return Err(format!("attested by node {signer}, not by node {index}"));
    }
    match answer.same_as(expected) {
        Ok(true) => Ok(()),
        Ok(false) => Err("it describes the network differently".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// The network whose node answers at `bootstrap`, once `t` of its nodes
/// vouch for it; `expected_id` (hex) pins the network id.
pub async fn discover(
    bootstrap: &str,
    expected_id: Option<&str>,
    timeout: Duration,
) -> Result<DiscoveredNetwork, DiscoveryError> {
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| DiscoveryError::Fetch { url: bootstrap.to_owned(), reason: e.to_string() })?;
    let (first, first_len) = fetch(&http, bootstrap, MAX_DESCRIPTION_BYTES).await?;
    let description_error = |source| DiscoveryError::Description { url: bootstrap.to_owned(), source };
    let genesis = first.checked_genesis().map_err(description_error)?;
    first.attested_by().map_err(description_error)?;
    let id = hex::encode(genesis.network_id());
    if let Some(expected) = expected_id {
        let expected = expected.trim().to_ascii_lowercase();
        if expected.trim_start_matches("0x") != id {
            return Err(DiscoveryError::NetworkId { url: bootstrap.to_owned(), expected, got: id });
        }
    }
    let mut answers: FuturesUnordered<_> = first
        .nodes
        .iter()
        .map(|node| {
            let http = &http;
            // A description that means the same is as long, but for its
            // attestation: up to n of them at once stay within n times the
            // first's size, whatever the nodes it lists send.
            async move { (node.index, fetch(http, &node.api, first_len + ATTESTATION_SLACK).await.map(|(d, _)| d)) }
        })
        .collect();
    let mut agreeing = Vec::new();
    let mut failures = BTreeMap::new();
    let keys = first.node_keys().map_err(|e| description_error(DescriptionError::Invalid(e)))?;
    let mut node_sets = Vec::new();
    while let Some((index, answer)) = answers.next().await {
        let vouched = answer.map_err(|e| e.to_string()).and_then(|answer| {
            vouches(&first, index, &answer)?;
            Ok(answer)
        });
        match vouched {
            Ok(answer) => {
                agreeing.push(index);
                if let Some(key) = keys.get(usize::from(index).saturating_sub(1)) {
                    node_sets.push((*key, answer.node_set.ok_or_else(|| "no node set".to_owned())));
                }
            }
            Err(reason) => {
                failures.insert(index, reason);
            }
        }
    }
    drop(answers);
    agreeing.sort_unstable();
    let threshold = genesis.threshold();
    if agreeing.len() < threshold {
        let failures = failures.iter().map(|(index, reason)| format!("  node {index}: {reason}")).collect::<Vec<_>>();
        return Err(DiscoveryError::TooFewAgree {
            agreeing: agreeing.len(),
            nodes: first.nodes.len(),
            threshold,
            failures: failures.join("\n"),
        });
    }
    let mut description = first;
    description.attestation = None;
    // The node set in force, as the genesis nodes attest it.
    let genesis_set = TrustedSet::of_description(&NetworkJson { node_set: None, ..description.clone() })
        .map_err(|e| description_error(DescriptionError::Invalid(e)))?;
    let (node_set, node_set_problem) =
        match accept_node_set(&description.network_id, std::slice::from_ref(&genesis_set), node_sets) {
            Ok(set) => (Some(set), None),
            Err(problem) => (None, Some(problem.to_string())),
        };
    description.node_set = node_set;
    Ok(DiscoveredNetwork { description, node_set_problem, agreeing, failures })
}

/// Asks every node of the `trusted` sets (each key once, at the API URL
/// listed for it) for its description of network `network_id` (at most
/// `limit` bytes, within `timeout`), all at once; returns each node's node
/// sets or why it gave none, for [`accept_node_set`].
pub async fn fetch_node_sets(
    http: &reqwest::Client,
    network_id: &str,
    trusted: &[TrustedSet],
    limit: usize,
    timeout: Duration,
) -> Vec<NodeSetAnswer> {
    let mut asked: Vec<(PublicKey, &str)> = Vec::new();
    for (key, api) in trusted.iter().flat_map(|set| &set.nodes) {
        if !asked.iter().any(|(seen, _)| seen == key) {
            asked.push((*key, api));
        }
    }
    let wanted = network_id.trim_start_matches("0x").to_ascii_lowercase();
    let mut pending: FuturesUnordered<_> = asked
        .into_iter()
        .map(|(key, api)| {
            let wanted = &wanted;
            async move {
                let answer = match tokio::time::timeout(timeout, fetch(http, api, limit)).await {
                    Err(_) => Err(format!("{api}: no answer within {} ms", timeout.as_millis())),
                    Ok(Err(error)) => Err(error.to_string()),
                    Ok(Ok((description, _))) if description.network_id.to_ascii_lowercase() != *wanted => {
                        Err(format!("{api}: describes network {}, not this one", description.network_id))
                    }
                    Ok(Ok((description, _))) => {
                        description.node_set.ok_or_else(|| format!("{api}: the answer has no node set"))
                    }
                };
                (key, answer)
            }
        })
        .collect();
    let mut answers = Vec::new();
    while let Some(answer) = pending.next().await {
        answers.push(answer);
    }
    answers
}

/// A node set the client believes, by its nodes' keys: the one it uses, or
/// the next one it learned of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedSet {
    /// Its epoch.
    pub epoch: u64,
    /// Its threshold `t`.
    pub threshold: usize,
    /// Each node's secp256k1 key and API URL, by index.
    pub nodes: Vec<(PublicKey, String)>,
}

impl TrustedSet {
    /// The next set a description announces.
    pub fn of_next(next: &NextNodeSetJson) -> Result<Self, String> {
        let keys = quorumkey_login::network::NodeSetJson {
            epoch: next.epoch,
            threshold: next.threshold,
            nodes: next.nodes.clone(),
            next: None,
            attestation: None,
        }
        .node_keys()?;
        Ok(Self {
            epoch: next.epoch,
            threshold: next.threshold,
            nodes: keys.into_iter().zip(&next.nodes).map(|(key, node)| (key, node.api.clone())).collect(),
        })
    }

    /// The set `description` lists: its `node_set` if it has one, else the
    /// genesis nodes (epoch 0).
    pub fn of_description(description: &NetworkJson) -> Result<Self, String> {
        match &description.node_set {
            Some(set) => Ok(Self {
                epoch: set.epoch,
                threshold: set.threshold,
                nodes: set
                    .node_keys()?
                    .into_iter()
                    .zip(&set.nodes)
                    .map(|(key, node)| (key, node.api.clone()))
                    .collect(),
            }),
            None => Ok(Self {
                epoch: 0,
                threshold: description.threshold,
                nodes: description
                    .node_keys()?
                    .into_iter()
                    .zip(&description.nodes)
                    .map(|(key, node)| (key, node.api.clone()))
                    .collect(),
            }),
        }
    }

    /// How many of `keys` are this set's nodes.
    fn count(&self, keys: &[PublicKey]) -> usize {
        self.nodes.iter().filter(|(key, _)| keys.contains(key)).count()
    }

    /// Whether `keys` are this set's, in order.
    fn is(&self, keys: &[PublicKey]) -> bool {
        keys.len() == self.nodes.len() && self.nodes.iter().zip(keys).all(|((mine, _), theirs)| mine == theirs)
    }
}

/// Why no node set could be trusted.
#[derive(Debug, Error)]
#[error("no newer node set is attested by t nodes of a set this client trusts (epoch {epoch}): {details}")]
pub struct UntrustedNodeSet {
    /// The epoch of the set in use.
    pub epoch: u64,
    /// What each set got, and why each other answer did not count.
    pub details: String,
}

/// A node's answer about the node sets: the key of the node asked (as a
/// trusted set lists it) and the sets it serves, or why it gave none.
pub type NodeSetAnswer = (PublicKey, Result<NodeSetJson, String>);

/// The newest node set in force that `t` nodes of a trusted set attest
/// (without attestation), from the nodes' `answers`; pure.
///
/// - An answer counts only if it is attested, for network `network_id`,
///   by the key of the node that was asked.
/// - A set in force is accepted when, for a trusted set of the same epoch
///   or an earlier one, at least its `t` nodes attest it; at a trusted
///   set's own epoch, only that very set (same keys, same order) is.
///   With at most `t − 1` faulty nodes in each trusted set, one honest
///   node vouches for the result: the ledger's set in force, which a set
///   before it decided.
/// - The next set the result announces is kept when the same trusted set's
///   `t` nodes, or `t` nodes of the accepted set, attest it; its boundary
///   is the latest one those nodes report (it only tells when).
/// - `trusted`: the set in use first, then the next one if known.
pub fn accept_node_set(
    network_id: &str,
    trusted: &[TrustedSet],
    answers: Vec<NodeSetAnswer>,
) -> Result<NodeSetJson, UntrustedNodeSet> {
    /// One distinct set in force: what it means, its nodes' keys, and each
    /// node that attests it with its answer.
    struct Attested {
        content: Vec<u8>,
        keys: Vec<PublicKey>,
        epoch: u64,
        answers: Vec<(PublicKey, NodeSetJson)>,
    }
    let mut problems = Vec::new();
    let mut groups: Vec<Attested> = Vec::new();
    for (asked, answer) in answers {
        let checked = answer.and_then(|set| {
            let signer = set.attested_by(network_id).map_err(|e| e.to_string())?;
            if signer != asked {
                return Err("attested by another key than the node's".to_owned());
            }
            Ok((set.current_content().map_err(|e| e.to_string())?, set.node_keys()?, set))
        });
        let (content, keys, set) = match checked {
            Ok(checked) => checked,
            Err(reason) => {
                let name = hex::encode(quorumkey_crypto::group::point_to_bytes(&asked.to_projective()));
                problems.push(format!("node {name}: {reason}"));
                continue;
            }
        };
        match groups.iter_mut().find(|group| group.content == content) {
            Some(group) if group.answers.iter().any(|(attestor, _)| attestor == &asked) => {}
            Some(group) => group.answers.push((asked, set)),
            None => groups.push(Attested { content, keys, epoch: set.epoch, answers: vec![(asked, set)] }),
        }
    }
    // The newest set a trusted set vouches for, and the set that does.
    let mut best: Option<(&TrustedSet, &Attested)> = None;
    for group in &groups {
        let attestors: Vec<PublicKey> = group.answers.iter().map(|(key, _)| *key).collect();
        let by = trusted.iter().find(|set| {
            set.epoch <= group.epoch
                && (set.epoch < group.epoch || set.is(&group.keys))
                && set.count(&attestors) >= set.threshold
        });
        match by {
            Some(by) if best.is_none_or(|(_, chosen)| chosen.epoch < group.epoch) => best = Some((by, group)),
            Some(_) => {}
            None => problems.push(format!("epoch {}: attested by {} node(s) only", group.epoch, attestors.len())),
        }
    }
    let Some(((by, group), (_, first))) = best.and_then(|best| Some((best, best.1.answers.first()?))) else {
        let epoch = trusted.first().map_or(0, |set| set.epoch);
        return Err(UntrustedNodeSet { epoch, details: problems.join("; ") });
    };
    let mut accepted = first.clone();
    accepted.attestation = None;
    // The next set: grouped by what it means (the boundary aside), kept if
    // `t` nodes of the vouching set or of the accepted set attest it.
    let mut nexts: Vec<(Vec<u8>, Vec<PublicKey>, NextNodeSetJson)> = Vec::new();
    for (attestor, set) in &group.answers {
        let (Ok(Some(content)), Some(next)) = (set.next_content(), set.next.as_ref()) else { continue };
        match nexts.iter_mut().find(|(known, _, _)| known == &content) {
            Some((_, attestors, kept)) => {
                attestors.push(*attestor);
                kept.boundary = kept.boundary.max(next.boundary);
            }
            None => nexts.push((content, vec![*attestor], next.clone())),
        }
    }
    accepted.next = nexts
        .into_iter()
        .filter(|(_, attestors, _)| {
            by.count(attestors) >= by.threshold
                || attestors.iter().filter(|key| group.keys.contains(key)).count() >= accepted.threshold
        })
        .max_by_key(|(_, attestors, _)| attestors.len())
        .map(|(_, _, next)| next);
    Ok(accepted)
}
