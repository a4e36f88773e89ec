//! Pure checks of what nodes return about a key: the public shares (the
//! same from `t` nodes, all on one polynomial of degree `t - 1` whose value
//! at 0 is the key), each node's encrypted share opened and checked against
//! its public share, and the rebuilt key.

use quorumkey_crypto::ecies::{EciesCiphertext, TorusEncryptedShare, decrypt};
use quorumkey_crypto::group::{
    NonZeroScalar, Point, PublicKey, Scalar, point_from_bytes, scalar_from_bytes, scalar_from_u64,
};
use quorumkey_crypto::shamir::{Share, interpolate_points, reconstruct_secret};
use quorumkey_login::ShareRequestResult;

use crate::NodeFailure;

/// Why [`CheckedKey::open_share`] refuses a share that decrypts but is not
/// the node's share by the public shares the client holds: the node lies,
/// or the network moved to new shares (a refresh or another epoch) since
/// the client fetched them.
pub const WRONG_SHARE: &str = "wrong share: it does not match the node's public share on the ledger";

/// A key's public data, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedKey {
    /// The key's index in the pool.
    pub key_index: u64,
    /// The key.
    pub public_key: PublicKey,
    /// `s_j·G` for node j at position j - 1.
    pub public_shares: Vec<Point>,
}

/// Checks public shares (compressed hex, node j at position j - 1) of a
/// key of `nodes` nodes with threshold `threshold`: every one a point, the
/// first `threshold` interpolating to `public_key` at 0, and every other
/// one on the same polynomial.
pub fn check_public_shares(
    key_index: u64,
    public_key: &PublicKey,
    shares_hex: &[String],
    nodes: usize,
    threshold: usize,
) -> Result<CheckedKey, String> {
    check_public_share_points(key_index, public_key, parse_public_shares(shares_hex)?, nodes, threshold)
}

/// Parses public shares as a node serves them (compressed hex, node j at
/// position j - 1), naming the first that is not a point.
pub fn parse_public_shares(shares_hex: &[String]) -> Result<Vec<Point>, String> {
    shares_hex
        .iter()
        .zip(1..)
        .map(|(text, index): (&String, usize)| {
            let bytes = hex::decode(text).map_err(|_| format!("public share {index} is not hex"))?;
            point_from_bytes("public share", &bytes).map_err(|e| format!("public share {index}: {e}"))
        })
        .collect()
}

/// [`check_public_shares`] on shares already parsed.
pub fn check_public_share_points(
    key_index: u64,
    public_key: &PublicKey,
    points: Vec<Point>,
    nodes: usize,
    threshold: usize,
) -> Result<CheckedKey, String> {
    if points.len() != nodes {
        return Err(format!("{} public shares for {nodes} nodes", points.len()));
    }
    if threshold == 0 || threshold > nodes {
        return Err(format!("threshold {threshold} for {nodes} nodes"));
    }
    let basis: Vec<(u32, Point)> =
        points.iter().take(threshold).zip(1u32..).map(|(point, index)| (index, *point)).collect();
    let at_zero = interpolate_points(&basis, &Scalar::ZERO).map_err(|e| e.to_string())?;
    if at_zero != public_key.to_projective() {
        return Err("the public shares do not interpolate to the key".to_owned());
    }
    for (position, point) in points.iter().enumerate().skip(threshold) {
        let index = position as u64 + 1;
        let expected = interpolate_points(&basis, &scalar_from_u64(index)).map_err(|e| e.to_string())?;
        if expected != *point {
            return Err(format!("public share {index} is not on the key's polynomial"));
        }
    }
    Ok(CheckedKey { key_index, public_key: *public_key, public_shares: points })
}

/// The nodes' answers about a key's public shares, gathered until
/// `threshold` nodes gave the same shares (compared as points, whatever
/// their spelling), which are then checked ([`check_public_share_points`]).
///
/// One node's answer is never enough, even one that checks out: a faulty
/// node can serve another polynomial through the same key (pick any
/// `t − 1` points, the key fixes the rest), consistent in itself, against
/// which every honest node's share would look wrong and no login could
/// succeed. With at most `t − 1` faulty nodes, `t` agreeing nodes include
/// an honest one, which serves the shares on the ledger.
#[derive(Clone, Debug)]
pub struct PublicShareVotes {
    key_index: u64,
    public_key: PublicKey,
    nodes: usize,
    threshold: usize,
    /// Each distinct answer, the nodes that gave it, and, once `threshold`
    /// agreed on it and it failed the check, why.
    answers: Vec<Answer>,
    /// Nodes that gave no usable answer, and why.
    failed: Vec<NodeFailure>,
}

#[derive(Clone, Debug)]
struct Answer {
    points: Vec<Point>,
    nodes: Vec<u16>,
    refused: Option<String>,
}

impl PublicShareVotes {
    /// No answers yet, for key `key_index` (`public_key`) of a network of
    /// `nodes` nodes with threshold `threshold`.
    pub fn new(key_index: u64, public_key: &PublicKey, nodes: usize, threshold: usize) -> Self {
        Self { key_index, public_key: *public_key, nodes, threshold, answers: Vec::new(), failed: Vec::new() }
    }

    /// Adds node `node`'s answer: the public shares it served (compressed
    /// hex), or why it served none. Returns the checked key once
    /// `threshold` nodes gave the same shares and those pass the check.
    pub fn add(&mut self, node: u16, answer: Result<Vec<String>, String>) -> Option<CheckedKey> {
        let points = match answer.and_then(|shares| parse_public_shares(&shares)) {
            Ok(points) => points,
            Err(reason) => {
                self.failed.push(NodeFailure { node, reason });
                return None;
            }
        };
        let position = match self.answers.iter().position(|answer| answer.points == points) {
            Some(position) => position,
            None => {
                self.answers.push(Answer { points, nodes: Vec::new(), refused: None });
                self.answers.len() - 1
            }
        };
        let answer = &mut self.answers[position];
        if answer.nodes.contains(&node) {
            return None;
        }
        answer.nodes.push(node);
        if answer.refused.is_some() || answer.nodes.len() < self.threshold {
            return None;
        }
        match check_public_share_points(
            self.key_index,
            &self.public_key,
            answer.points.clone(),
            self.nodes,
            self.threshold,
        ) {
            Ok(checked) => Some(checked),
            Err(reason) => {
                answer.refused = Some(reason);
                None
            }
        }
    }

    /// The most nodes that gave one answer not refused by the check.
    pub fn agreeing(&self) -> usize {
        self.answers
            .iter()
            .filter(|answer| answer.refused.is_none())
            .map(|answer| answer.nodes.len())
            .max()
            .unwrap_or(0)
    }

    /// Why no answer was accepted, node by node (nodes 1 to n): its own
    /// failure, the answer it gave and who else gave it, or that it had
    /// not answered.
    pub fn failures(&self) -> Vec<NodeFailure> {
        let distinct = self.answers.len();
        let mut failures = self.failed.clone();
        for answer in &self.answers {
            let nodes = answer.nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            let reason = match &answer.refused {
                Some(why) => format!("public shares that nodes {nodes} agree on but that fail the check: {why}"),
                None => format!(
                    "public shares that only nodes {nodes} served ({} must agree; {distinct} different answers)",
                    self.threshold
                ),
            };
            failures.extend(answer.nodes.iter().map(|&node| NodeFailure { node, reason: reason.clone() }));
        }
        let unanswered: Vec<NodeFailure> = (1..=self.nodes)
            .filter_map(|node| u16::try_from(node).ok())
            .filter(|node| !failures.iter().any(|failure| failure.node == *node))
            .map(|node| NodeFailure { node, reason: "not waited for (no answer could reach agreement)".to_owned() })
            .collect();
        failures.extend(unanswered);
        failures.sort_by_key(|failure| failure.node);
        failures
    }
}

impl CheckedKey {
    /// Whether `share` is node `index`'s share of this key.
    pub fn share_matches(&self, index: u16, share: &Scalar) -> bool {
        usize::from(index)
            .checked_sub(1)
            .and_then(|position| self.public_shares.get(position))
            .is_some_and(|public| Point::mul_by_generator(share) == *public)
    }

    /// Node `node`'s share from its `ShareRequest` answer: one key, this
    /// one, decrypted with the temporary key, and equal to the node's
    /// public share.
    pub fn open_share(
        &self,
        answer: &ShareRequestResult,
        temp_secret: &NonZeroScalar,
        node: u16,
    ) -> Result<Scalar, String> {
        let [entry] = answer.keys.as_slice() else {
            return Err(format!("{} keys in the answer, not one", answer.keys.len()));
        };
        if u64::from_str_radix(&entry.index, 16).ok() != Some(self.key_index) {
            return Err(format!("a share of key {:?}, not of key {:x}", entry.index, self.key_index));
        }
        let wire = TorusEncryptedShare { share: entry.share.clone(), metadata: entry.metadata.clone() };
        let ciphertext = EciesCiphertext::try_from(&wire).map_err(|e| format!("the encrypted share: {e}"))?;
        let plaintext = decrypt(temp_secret, &ciphertext).map_err(|e| format!("the share does not decrypt: {e}"))?;
        let share = scalar_from_bytes(&plaintext).map_err(|e| format!("the share: {e}"))?;
        if !self.share_matches(node, &share) {
            return Err(WRONG_SHARE.to_owned());
        }
        Ok(share)
    }

    /// True if `other` records other public shares for the key (the
    /// network moved to new shares between the two fetches).
    pub fn public_shares_differ(&self, other: &Self) -> bool {
        self.public_shares != other.public_shares
    }

    /// The key from exactly `threshold` checked shares, checked against the
    /// public key.
    pub fn rebuild(&self, shares: &[Share]) -> Result<Scalar, String> {
        let secret = reconstruct_secret(shares).map_err(|e| e.to_string())?;
        if Point::mul_by_generator(&secret) != self.public_key.to_projective() {
            return Err("the rebuilt key does not match the public key".to_owned());
        }
        Ok(secret)
    }
}
