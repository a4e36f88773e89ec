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
use quorumkey_login::network::{DescriptionError, NetworkJson};
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
    /// The description, without any attestation.
    pub description: NetworkJson,
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
    while let Some((index, answer)) = answers.next().await {
        match answer.map_err(|e| e.to_string()).and_then(|answer| vouches(&first, index, &answer)) {
            Ok(()) => agreeing.push(index),
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
    Ok(DiscoveredNetwork { description, agreeing, failures })
}
