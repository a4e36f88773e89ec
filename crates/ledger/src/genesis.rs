//! The network's genesis: its nodes, and the verifiers it starts with. The
//! network id, which every signature commits to, is a hash of it.

use bytes::{BufMut, Bytes};
use commonware_codec::{Buf, Encode, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write};
use commonware_cryptography::ed25519;
use quorumkey_crypto::group::public_key_from_sec1_named;
use quorumkey_crypto::shamir::majority_threshold;
use thiserror::Error;

use crate::policy::NetworkPolicy;
use crate::types::{PointBytes, VerifierName};

/// Bytes a dealing may take in its transaction (the transaction limit less
/// room for the batch number, the tag and the signature).
pub const DEALING_BUDGET: usize = crate::machine::MAX_TRANSACTION_LEN - 512;
/// Most batches a network may run at once.
pub const MAX_BATCHES_IN_FLIGHT: u8 = 16;

/// How the network keeps its key pool full. Part of the genesis: every
/// node must decide the same batches at the same heights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DkgSettings {
    /// Keys per batch `K` (bounded so that a dealing fits in a transaction).
    pub batch_keys: u16,
    /// Ready keys the pool refills to.
    pub pool_target: u32,
    /// A refill starts when fewer keys than this are ready.
    pub low_water: u32,
    /// Batches that may run at once.
    pub max_batches_in_flight: u8,
    /// A phase that some node has not finished lasts at least this many
    /// blocks…
    pub phase_min_blocks: u32,
    /// …and at least this many milliseconds of block time.
    pub phase_min_ms: u64,
}

impl DkgSettings {
    /// The defaults for `n` nodes: batches as large as a dealing's
    /// transaction allows, in multiples of 64 and at most 512 keys (448 for
    /// 5 nodes: larger batches spread each batch's blocks, messages and
    /// signatures over more keys), a pool of 1024 refilled below 512, four
    /// batches at once, and phase deadlines of `n + f + 2` blocks and
    /// `5 s + 500 ms·n` (both grow with `n`; the block count exceeds the
    /// `f + 1` views in which Byzantine leaders could keep a transaction
    /// out).
    pub fn default_for(nodes: usize) -> Self {
        let n = u16::try_from(nodes).unwrap_or(u16::MAX);
        let f = u32::from(n.saturating_sub(1) / 3);
        let batch_keys = quorumkey_dkg::BatchParams::largest_fitting(n, DEALING_BUDGET).map_or(1, |largest| {
            let capped = largest.min(512);
            if capped >= 64 { capped - capped % 64 } else { capped }
        });
        Self {
            batch_keys,
            pool_target: 1024,
            low_water: 512,
            max_batches_in_flight: 4,
            phase_min_blocks: u32::from(n) + f + 2,
            phase_min_ms: 5_000 + 500 * u64::from(n),
        }
    }

    /// The shape of every batch of a network of `n` nodes.
    pub fn batch_params(&self, nodes: usize) -> Result<quorumkey_dkg::BatchParams, GenesisError> {
        let n = u16::try_from(nodes).map_err(|_| GenesisError::NodeCount(nodes))?;
        quorumkey_dkg::BatchParams::new(n, self.batch_keys).map_err(|e| GenesisError::Dkg(e.to_string()))
    }

    fn validate(&self, nodes: usize) -> Result<(), GenesisError> {
        let params = self.batch_params(nodes)?;
        if params.dealing_len_bound() > DEALING_BUDGET {
            return Err(GenesisError::Dkg(format!(
                "a dealing of {} keys for {nodes} nodes does not fit in a transaction; use at most {}",
                self.batch_keys,
                quorumkey_dkg::BatchParams::largest_fitting(params.nodes(), DEALING_BUDGET).unwrap_or(0)
            )));
        }
        if self.low_water > self.pool_target {
            return Err(GenesisError::Dkg("the low-water mark is above the pool target".to_owned()));
        }
        if self.max_batches_in_flight == 0 || self.max_batches_in_flight > MAX_BATCHES_IN_FLIGHT {
            return Err(GenesisError::Dkg(format!("1 to {MAX_BATCHES_IN_FLIGHT} batches may run at once")));
        }
        let f = u32::from(params.max_faulty());
        if self.phase_min_blocks < f + 2 {
            return Err(GenesisError::Dkg(format!(
                "phases must last at least f + 2 = {} blocks so that a censored message gets in",
                f + 2
            )));
        }
        Ok(())
    }
}

/// How epochs change. Part of the genesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochSettings {
    /// A new node set takes over only at a height that is a multiple of
    /// this (where consensus may change its validator set): the first one
    /// after every key was handed over.
    pub boundary_blocks: u32,
    /// Every this many blocks after an epoch began, the ledger starts a
    /// refresh of every share by itself (a handover to the same set), so
    /// that a share leaked once is worthless after at most this long; 0:
    /// only when the operators propose one.
    pub refresh_blocks: u64,
}

impl Default for EpochSettings {
    /// Boundaries every 64 blocks; no scheduled refresh.
    fn default() -> Self {
        Self { boundary_blocks: 64, refresh_blocks: 0 }
    }
}

impl Write for EpochSettings {
    fn write(&self, buf: &mut impl BufMut) {
        self.boundary_blocks.write(buf);
        self.refresh_blocks.write(buf);
    }
}
impl EncodeSize for EpochSettings {
    fn encode_size(&self) -> usize {
        4 + 8
    }
}
impl Read for EpochSettings {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self { boundary_blocks: u32::read(buf)?, refresh_blocks: u64::read(buf)? })
    }
}

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
    /// How the key pool is kept full.
    pub dkg: DkgSettings,
    /// The abuse policy it starts with (operators change it with
    /// `SetPolicy`).
    pub policy: NetworkPolicy,
    /// How epochs change.
    pub epochs: EpochSettings,
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
    /// A verifier configuration that does not parse or breaks a rule.
    #[error("verifier {name}: {reason}")]
    InvalidVerifierConfig {
        /// The verifier.
        name: String,
        /// Why.
        reason: String,
    },
    /// DKG settings that cannot work.
    #[error("DKG settings: {0}")]
    Dkg(String),
    /// An abuse policy with values that cannot work.
    #[error("policy: {0}")]
    Policy(String),
    /// Epoch settings that cannot work.
    #[error("epochs: {0}")]
    Epochs(String),
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
            match quorumkey_verifier::VerifierConfig::parse(&verifier.config) {
                Err(e) => {
                    return Err(GenesisError::InvalidVerifierConfig {
                        name: verifier.name.as_str().to_owned(),
                        reason: e.to_string(),
                    });
                }
                // The genesis holds no modules.
                Ok(quorumkey_verifier::VerifierConfig::Script(_)) => {
                    return Err(GenesisError::InvalidVerifierConfig {
                        name: verifier.name.as_str().to_owned(),
                        reason: "a script verifier names a module published on the ledger: register it after genesis"
                            .to_owned(),
                    });
                }
                Ok(_) => {}
            }
            if names.contains(&verifier.name.as_str()) {
                return Err(GenesisError::DuplicateVerifier(verifier.name.as_str().to_owned()));
            }
            names.push(verifier.name.as_str());
        }
        self.policy.validate()?;
        if self.epochs.refresh_blocks != 0 && self.epochs.refresh_blocks < u64::from(self.epochs.boundary_blocks) {
            return Err(GenesisError::Epochs(
                "a scheduled refresh must come at most once per epoch boundary interval (refresh_blocks >= boundary_blocks)"
                    .to_owned(),
            ));
        }
        if self.epochs.boundary_blocks < 2 {
            return Err(GenesisError::Epochs(
                "epoch boundaries must be at least 2 blocks apart (consensus re-proposes each epoch's last block)"
                    .to_owned(),
            ));
        }
        self.dkg.validate(n)
    }

    /// Node signatures an operators' decision (`SetPolicy`) needs: 2f + 1,
    /// f = ⌊(n − 1) / 3⌋ (the faults consensus tolerates), at most n.
    pub fn operator_quorum(&self) -> usize {
        let n = self.nodes.len();
        (2 * (n.saturating_sub(1) / 3) + 1).min(n)
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

impl Write for DkgSettings {
    fn write(&self, buf: &mut impl BufMut) {
        self.batch_keys.write(buf);
        self.pool_target.write(buf);
        self.low_water.write(buf);
        self.max_batches_in_flight.write(buf);
        self.phase_min_blocks.write(buf);
        self.phase_min_ms.write(buf);
    }
}
impl EncodeSize for DkgSettings {
    fn encode_size(&self) -> usize {
        2 + 4 + 4 + 1 + 4 + 8
    }
}
impl Read for DkgSettings {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            batch_keys: u16::read(buf)?,
            pool_target: u32::read(buf)?,
            low_water: u32::read(buf)?,
            max_batches_in_flight: u8::read(buf)?,
            phase_min_blocks: u32::read(buf)?,
            phase_min_ms: u64::read(buf)?,
        })
    }
}

impl Write for Genesis {
    fn write(&self, buf: &mut impl BufMut) {
        self.nodes.write(buf);
        self.verifiers.write(buf);
        self.dkg.write(buf);
        self.policy.write(buf);
        self.epochs.write(buf);
    }
}
impl EncodeSize for Genesis {
    fn encode_size(&self) -> usize {
        self.nodes.encode_size()
            + self.verifiers.encode_size()
            + self.dkg.encode_size()
            + self.policy.encode_size()
            + self.epochs.encode_size()
    }
}
impl Read for Genesis {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            nodes: Vec::<GenesisNode>::read_cfg(buf, &(RangeCfg::new(1..=MAX_NODES), ()))?,
            verifiers: Vec::<GenesisVerifier>::read_cfg(buf, &(RangeCfg::new(0..=MAX_GENESIS_VERIFIERS), ()))?,
            dkg: DkgSettings::read(buf)?,
            policy: NetworkPolicy::read(buf)?,
            epochs: EpochSettings::read(buf)?,
        })
    }
}
