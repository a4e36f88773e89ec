//! The network's genesis: its nodes, and the verifiers it starts with. The
//! network id, which every signature commits to, is a hash of it.

use bytes::{BufMut, Bytes};
use commonware_codec::{Buf, Encode, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write};
use commonware_cryptography::ed25519;
use quorumkey_crypto::group::public_key_from_sec1_named;
use quorumkey_crypto::shamir::majority_threshold;
use thiserror::Error;

use crate::types::{PointBytes, VerifierName};

/// Most nodes a network may have.
pub const MAX_NODES: usize = 256;
/// Largest verifier configuration, in bytes.
pub const MAX_VERIFIER_CONFIG_LEN: usize = 16 * 1024;
/// Most verifiers a genesis may pre-register.
pub const MAX_GENESIS_VERIFIERS: usize = 1024;

/// One node of the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenesisNode {
    /// Position from 1; also the x-coordinate of the node's key shares.
    pub index: u16,
    /// ed25519 key for consensus, p2p and the node's ledger transactions.
    pub consensus_key: ed25519::PublicKey,
    /// Compressed secp256k1 key that clients verify (commitment signatures)
    /// and encrypt to.
    pub secp256k1_key: PointBytes,
}

/// A verifier registered from the start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenesisVerifier {
    /// Its name.
    pub name: VerifierName,
    /// Compressed secp256k1 key of its owner.
    pub owner: PointBytes,
    /// Its configuration (see [`crate::VerifierRecord::config`]).
    pub config: Bytes,
}

/// The network's genesis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Genesis {
    /// The nodes, by index 1..=n.
    pub nodes: Vec<GenesisNode>,
    /// Verifiers registered at height 0.
    pub verifiers: Vec<GenesisVerifier>,
}

/// Why a genesis is not usable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GenesisError {
    /// No nodes, or more than [`MAX_NODES`].
    #[error("a network has 1 to {MAX_NODES} nodes, this genesis has {0}")]
    NodeCount(usize),
    /// Node indexes must be 1..=n in order.
    #[error("node at position {position} has index {index}; indexes must be 1..=n in order")]
    NodeIndex {
        /// Position in the list, from 1.
        position: usize,
        /// The index it has.
        index: u16,
    },
    /// Two nodes share a key.
    #[error("two nodes share a {0} key")]
    DuplicateKey(&'static str),
    /// A key that is not a secp256k1 point.
    #[error("{0}")]
    InvalidPoint(String),
    /// Two verifiers share a name.
    #[error("verifier {0} is registered twice")]
    DuplicateVerifier(String),
    /// A verifier configuration over [`MAX_VERIFIER_CONFIG_LEN`].
    #[error("verifier {0} has a configuration over 16 KiB")]
    ConfigTooLarge(String),
}

impl Genesis {
    /// Checks the genesis.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let n = self.nodes.len();
        if n == 0 || n > MAX_NODES {
            return Err(GenesisError::NodeCount(n));
        }
        for (position, node) in self.nodes.iter().enumerate() {
            if usize::from(node.index) != position + 1 {
                return Err(GenesisError::NodeIndex { position: position + 1, index: node.index });
            }
            public_key_from_sec1_named("node secp256k1 key", &node.secp256k1_key)
                .map_err(|e| GenesisError::InvalidPoint(format!("node {}: {e}", node.index)))?;
        }
        let mut consensus: Vec<_> = self.nodes.iter().map(|n| n.consensus_key.clone()).collect();
        consensus.sort();
        consensus.dedup();
        if consensus.len() != n {
            return Err(GenesisError::DuplicateKey("consensus"));
        }
        let mut secp: Vec<_> = self.nodes.iter().map(|n| n.secp256k1_key).collect();
        secp.sort();
        secp.dedup();
        if secp.len() != n {
            return Err(GenesisError::DuplicateKey("secp256k1"));
        }
        let mut names: Vec<&str> = Vec::with_capacity(self.verifiers.len());
        for verifier in &self.verifiers {
            public_key_from_sec1_named("verifier owner", &verifier.owner)
                .map_err(|e| GenesisError::InvalidPoint(format!("verifier {}: {e}", verifier.name.as_str())))?;
            if verifier.config.len() > MAX_VERIFIER_CONFIG_LEN {
                return Err(GenesisError::ConfigTooLarge(verifier.name.as_str().to_owned()));
            }
            if names.contains(&verifier.name.as_str()) {
                return Err(GenesisError::DuplicateVerifier(verifier.name.as_str().to_owned()));
            }
            names.push(verifier.name.as_str());
        }
        Ok(())
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Shares needed to rebuild a key: `floor(n/2) + 1`.
    pub fn threshold(&self) -> usize {
        majority_threshold(self.nodes.len() as u32) as usize
    }

    /// The node with this index.
    pub fn node(&self, index: u16) -> Option<&GenesisNode> {
        self.nodes.get(usize::from(index).checked_sub(1)?)
    }

    /// The network id: a hash of the canonical genesis encoding. Every
    /// transaction signature commits to it, so nothing signed for one
    /// network is valid on another.
    pub fn network_id(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"quorumkey/network-id/v1");
        hasher.update(&self.encode());
        *hasher.finalize().as_bytes()
    }
}

impl Write for GenesisNode {
    fn write(&self, buf: &mut impl BufMut) {
        self.index.write(buf);
        self.consensus_key.write(buf);
        self.secp256k1_key.write(buf);
    }
}
impl EncodeSize for GenesisNode {
    fn encode_size(&self) -> usize {
        self.index.encode_size() + self.consensus_key.encode_size() + self.secp256k1_key.encode_size()
    }
}
impl Read for GenesisNode {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            index: u16::read(buf)?,
            consensus_key: ed25519::PublicKey::read(buf)?,
            secp256k1_key: PointBytes::read(buf)?,
        })
    }
}

impl Write for GenesisVerifier {
    fn write(&self, buf: &mut impl BufMut) {
        self.name.write(buf);
        self.owner.write(buf);
        self.config.write(buf);
    }
}
impl EncodeSize for GenesisVerifier {
    fn encode_size(&self) -> usize {
        self.name.encode_size() + self.owner.encode_size() + self.config.encode_size()
    }
}
impl Read for GenesisVerifier {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            name: VerifierName::read(buf)?,
            owner: PointBytes::read(buf)?,
            config: Bytes::read_cfg(buf, &RangeCfg::new(0..=MAX_VERIFIER_CONFIG_LEN))?,
        })
    }
}

impl Write for Genesis {
    fn write(&self, buf: &mut impl BufMut) {
        self.nodes.write(buf);
        self.verifiers.write(buf);
    }
}
impl EncodeSize for Genesis {
    fn encode_size(&self) -> usize {
        self.nodes.encode_size() + self.verifiers.encode_size()
    }
}
impl Read for Genesis {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            nodes: Vec::<GenesisNode>::read_cfg(buf, &(RangeCfg::new(1..=MAX_NODES), ()))?,
            verifiers: Vec::<GenesisVerifier>::read_cfg(buf, &(RangeCfg::new(0..=MAX_GENESIS_VERIFIERS), ()))?,
        })
    }
}
