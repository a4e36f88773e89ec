//! Epochs: the node set in force, and the next one once the operators
//! decided it. Epoch 0 is the genesis set; each later epoch comes from a
//! `ProposeEpoch` signed by 2f + 1 nodes of the current set, and takes
//! effect at a boundary height once every key has been handed over to it
//! (`crate::handover`).

use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, ReadRangeExt, Write};
use commonware_cryptography::ed25519;
use quorumkey_crypto::group::{Point, public_key_from_sec1_named};
use quorumkey_crypto::shamir::majority_threshold;

use crate::genesis::{Genesis, MAX_NODES};
use crate::types::PointBytes;

/// Longest advertised address (`p2p_address`, `rpc_url`), in bytes.
pub const MAX_ADDRESS_LEN: usize = 256;

/// One node of an epoch: its keys, and where it can be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochNode {
    /// ed25519 key for consensus, p2p and the node's ledger transactions.
    pub consensus_key: ed25519::PublicKey,
    /// Compressed secp256k1 key that clients verify and encrypt to, and
    /// that shares are dealt to.
    pub secp256k1_key: PointBytes,
    /// Where peers reach it (`host:port`); empty for genesis nodes, whose
    /// addresses are in the network's configuration.
    pub p2p_address: String,
    /// Where clients reach it; empty for genesis nodes.
    pub rpc_url: String,
}

/// The nodes of one epoch, by index (node `j` at position `j - 1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSet {
    /// The epoch's number (0 for the genesis set).
    pub epoch: u64,
    /// The nodes.
    pub nodes: Vec<EpochNode>,
}

/// Why a proposed node set is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeSetError {
    /// No nodes, or too many.
    #[error("a node set has 1 to {MAX_NODES} nodes, this one has {0}")]
    Size(usize),
    /// Two nodes share a key.
    #[error("two nodes share a {0} key")]
    DuplicateKey(&'static str),
    /// A key that is not a point.
    #[error("node {index}: {reason}")]
    InvalidKey {
        /// The node.
        index: usize,
        /// Why.
        reason: String,
    },
    /// An address that cannot be one.
    #[error("node {index}: {reason}")]
    InvalidAddress {
        /// The node.
        index: usize,
        /// Why.
        reason: &'static str,
    },
}

fn check_address(value: &str, index: usize) -> Result<(), NodeSetError> {
    if value.is_empty() {
        return Err(NodeSetError::InvalidAddress { index, reason: "a new epoch's node needs its addresses" });
    }
    if value.len() > MAX_ADDRESS_LEN || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(NodeSetError::InvalidAddress {
            index,
            reason: "an address is at most 256 printable ASCII characters without spaces",
        });
    }
    Ok(())
}

impl NodeSet {
    /// The genesis set (epoch 0).
    pub fn from_genesis(genesis: &Genesis) -> Self {
        Self {
            epoch: 0,
            nodes: genesis
                .nodes
                .iter()
                .map(|node| EpochNode {
                    consensus_key: node.consensus_key.clone(),
                    secp256k1_key: node.secp256k1_key,
                    p2p_address: String::new(),
                    rpc_url: String::new(),
                })
                .collect(),
        }
    }

    /// Checks a proposed set: its size, distinct and valid keys, and an
    /// address of each kind for every node.
    pub fn validate(&self) -> Result<(), NodeSetError> {
        let n = self.nodes.len();
        if n == 0 || n > MAX_NODES {
            return Err(NodeSetError::Size(n));
        }
        for (position, node) in self.nodes.iter().enumerate() {
            public_key_from_sec1_named("secp256k1 key", &node.secp256k1_key)
                .map_err(|e| NodeSetError::InvalidKey { index: position + 1, reason: e.to_string() })?;
            check_address(&node.p2p_address, position + 1)?;
            check_address(&node.rpc_url, position + 1)?;
        }
        let mut consensus: Vec<_> = self.nodes.iter().map(|n| n.consensus_key.clone()).collect();
        consensus.sort();
        consensus.dedup();
        if consensus.len() != n {
            return Err(NodeSetError::DuplicateKey("consensus"));
        }
        let mut secp: Vec<_> = self.nodes.iter().map(|n| n.secp256k1_key).collect();
        secp.sort();
        secp.dedup();
        if secp.len() != n {
            return Err(NodeSetError::DuplicateKey("secp256k1"));
        }
        Ok(())
    }

    /// Number of nodes `n`.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if the set has no nodes (never, for a valid set).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// `n` as the DKG counts it.
    pub fn size(&self) -> u16 {
        u16::try_from(self.nodes.len()).unwrap_or(u16::MAX)
    }

    /// Shares that rebuild a key: `floor(n/2) + 1`.
    pub fn threshold(&self) -> usize {
        majority_threshold(self.nodes.len() as u32) as usize
    }

    /// Node signatures an operators' decision needs: `2f + 1`, at most `n`.
    pub fn operator_quorum(&self) -> usize {
        let n = self.nodes.len();
        (2 * (n.saturating_sub(1) / 3) + 1).min(n)
    }

    /// The node with this index.
    pub fn node(&self, index: u16) -> Option<&EpochNode> {
        self.nodes.get(usize::from(index).checked_sub(1)?)
    }

    /// The index of the node with this consensus key.
    pub fn index_of(&self, consensus_key: &ed25519::PublicKey) -> Option<u16> {
        self.nodes.iter().position(|node| &node.consensus_key == consensus_key).and_then(|p| u16::try_from(p + 1).ok())
    }

    /// The index of the node with this secp256k1 key (compressed).
    pub fn index_of_secp256k1(&self, key: &PointBytes) -> Option<u16> {
        self.nodes.iter().position(|node| &node.secp256k1_key == key).and_then(|p| u16::try_from(p + 1).ok())
    }

    /// Every node's secp256k1 key as a point (node `j` at `j - 1`); `None`
    /// if one does not parse (a validated set's always do).
    pub fn secp256k1_points(&self) -> Option<Vec<Point>> {
        self.nodes
            .iter()
            .map(|node| {
                public_key_from_sec1_named("secp256k1 key", &node.secp256k1_key).ok().map(|k| k.to_projective())
            })
            .collect()
    }
}

fn write_str(value: &str, buf: &mut impl BufMut) {
    value.as_bytes().write(buf);
}

fn read_str(buf: &mut impl Buf) -> Result<String, CodecError> {
    let bytes = Vec::<u8>::read_range(buf, 0..=MAX_ADDRESS_LEN)?;
    String::from_utf8(bytes).map_err(|_| CodecError::Invalid("address", "not UTF-8"))
}

impl Write for EpochNode {
    fn write(&self, buf: &mut impl BufMut) {
        self.consensus_key.write(buf);
        self.secp256k1_key.write(buf);
        write_str(&self.p2p_address, buf);
        write_str(&self.rpc_url, buf);
    }
}

impl EncodeSize for EpochNode {
    fn encode_size(&self) -> usize {
        self.consensus_key.encode_size()
            + self.secp256k1_key.encode_size()
            + self.p2p_address.as_bytes().encode_size()
            + self.rpc_url.as_bytes().encode_size()
    }
}

impl Read for EpochNode {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            consensus_key: ed25519::PublicKey::read(buf)?,
            secp256k1_key: PointBytes::read(buf)?,
            p2p_address: read_str(buf)?,
            rpc_url: read_str(buf)?,
        })
    }
}

impl Write for NodeSet {
    fn write(&self, buf: &mut impl BufMut) {
        self.epoch.write(buf);
        self.nodes.write(buf);
    }
}

impl EncodeSize for NodeSet {
    fn encode_size(&self) -> usize {
        self.epoch.encode_size() + self.nodes.encode_size()
    }
}

impl Read for NodeSet {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            epoch: u64::read(buf)?,
            nodes: Vec::<EpochNode>::read_cfg(buf, &(RangeCfg::new(1..=MAX_NODES), ()))?,
        })
    }
}
