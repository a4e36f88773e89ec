//! Whom the node's p2p layer connects to, as the ledger's node sets change.
//!
//! The authenticated p2p network accepts and dials only the peers of the
//! sets it is told to track (lookup refuses anyone else at the handshake).
//! [`LookupPeers`] tells it, from the ledger:
//!
//! - the set in force and, once a `ProposeEpoch` is applied, the next set,
//!   both as primary peers: the nodes joining are dialled and accepted from
//!   the moment the handover is decided, so they follow consensus and answer
//!   their share of the handover before they sign;
//! - after a boundary, the nodes that left, as secondary peers: they may
//!   still fetch the last blocks of their epoch from us, but nobody dials
//!   them.
//!
//! A genesis node's address is in `network.toml`; a node that joined later
//! has its `p2p_address` in the ledger (written by the `ProposeEpoch` that
//! added it). The `bootstrap_peers` of `node.toml` are always dialled: a
//! node that joins replays the ledger from the genesis, and dials the
//! genesis nodes first, which may be long gone.

use std::collections::HashMap;
use std::net::SocketAddr;

use commonware_cryptography::ed25519;
use commonware_p2p::authenticated::lookup;
use commonware_p2p::{Address, AddressableManager as _, AddressableTrackedPeers};
use commonware_utils::ordered::Map;
use quorumkey_ledger::{EpochNode, NodeSets};

use crate::consensus::PeerSets;

/// The most peers this process tracks when the largest node set it knows
/// at start has `known` nodes: room for a next set twice that size and
/// the nodes that left, this node included; at most three of the ledger's
/// largest sets. The p2p layer allocates every channel's inbound queue for
/// this many peers up front, so it is not simply the ledger's maximum. A
/// set beyond it is cut (see [`LookupPeers`]) until the node restarts.
pub fn peer_limit(known: usize) -> usize {
    (3 * known + 8).min(3 * quorumkey_ledger::genesis::MAX_NODES + 1)
}

/// Follows the ledger's node sets on a lookup network.
pub struct LookupPeers {
    oracle: lookup::Oracle<ed25519::PublicKey>,
    /// Genesis nodes' addresses, from `network.toml`.
    configured: HashMap<ed25519::PublicKey, SocketAddr>,
    /// `bootstrap_peers` of `node.toml`: always dialled.
    bootstrap: Vec<(ed25519::PublicKey, SocketAddr)>,
    /// Lookup wants each new tracked set under a larger id.
    next_id: u64,
    /// The most peers in one set ([`peer_limit`]); tracking more panics.
    max_peers: usize,
    /// The set in force at the last call, and the one before it.
    current: Option<(u64, Vec<EpochNode>)>,
    departed: Vec<EpochNode>,
}

impl std::fmt::Debug for LookupPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupPeers").field("next_id", &self.next_id).finish_non_exhaustive()
    }
}

impl LookupPeers {
    /// `configured`: the addresses of `network.toml`; `bootstrap`: the
    /// `bootstrap_peers` of `node.toml`; `max_peers`: the network's
    /// `max_peers_per_set`.
    pub fn new(
        oracle: lookup::Oracle<ed25519::PublicKey>,
        configured: impl IntoIterator<Item = (ed25519::PublicKey, SocketAddr)>,
        bootstrap: Vec<(ed25519::PublicKey, SocketAddr)>,
        max_peers: usize,
    ) -> Self {
        Self {
            oracle,
            configured: configured.into_iter().collect(),
            bootstrap,
            next_id: 0,
            max_peers,
            current: None,
            departed: Vec::new(),
        }
    }

    fn address(&self, node: &EpochNode) -> Option<Address> {
        if !node.p2p_address.is_empty() {
            return match node.p2p_address.parse::<SocketAddr>() {
                Ok(address) => Some(Address::from(address)),
                Err(_) => {
                    tracing::warn!(
                        address = node.p2p_address,
                        "a node's p2p address is not IP:PORT; it is not dialled"
                    );
                    None
                }
            };
        }
        let address = self.configured.get(&node.consensus_key).copied();
        if address.is_none() {
            tracing::warn!(key = %node.consensus_key, "no p2p address known for a node of the set");
        }
        address.map(Address::from)
    }
}

impl PeerSets for LookupPeers {
    fn follow(&mut self, sets: &NodeSets) {
        let epoch = sets.current.epoch;
        match &self.current {
            Some((known, nodes)) if *known != epoch => {
                self.departed = nodes
                    .iter()
                    .filter(|node| !sets.current.nodes.iter().any(|now| now.consensus_key == node.consensus_key))
                    .cloned()
                    .collect();
            }
            _ => {}
        }
        self.current = Some((epoch, sets.current.nodes.clone()));
        let primary_nodes = sets.current.nodes.iter().chain(sets.next.iter().flat_map(|next| next.nodes.iter()));
        let mut primary: Vec<(ed25519::PublicKey, Address)> = Vec::new();
        for node in primary_nodes {
            if !primary.iter().any(|(key, _)| *key == node.consensus_key)
                && let Some(address) = self.address(node)
            {
                primary.push((node.consensus_key.clone(), address));
            }
        }
        for (key, address) in &self.bootstrap {
            if !primary.iter().any(|(known, _)| known == key) {
                primary.push((key.clone(), Address::from(*address)));
            }
        }
        let mut secondary: Vec<(ed25519::PublicKey, Address)> = self
            .departed
            .iter()
            .filter(|node| !primary.iter().any(|(key, _)| *key == node.consensus_key))
            .filter_map(|node| self.address(node).map(|address| (node.consensus_key.clone(), address)))
            .collect();
        // This node counts towards the limit too.
        let room = self.max_peers.saturating_sub(1);
        if primary.len() + secondary.len() > room {
            secondary.truncate(room.saturating_sub(primary.len()));
            if primary.len() > room {
                tracing::error!(
                    wanted = primary.len(),
                    room,
                    "the node sets have more nodes than this process can connect to; restart it to connect to all"
                );
                primary.truncate(room);
            }
        }
        let peers = AddressableTrackedPeers::new(Map::from_iter_dedup(primary), Map::from_iter_dedup(secondary));
        tracing::info!(
            id = self.next_id,
            epoch,
            primary = peers.primary.len(),
            secondary = peers.secondary.len(),
            "p2p peers follow the node sets"
        );
        let _ = self.oracle.track(self.next_id, peers);
        self.next_id += 1;
    }
}
