//! The block that consensus orders: a parent link, a height, the proposer's
//! clock, a state checkpoint, and opaque ledger transactions.
//!
//! The encoding is canonical (fixed-width integers, varint lengths that the
//! codec refuses in non-minimal form) and bounded by [`BlockLimits`], so a
//! peer cannot make a node allocate more than a block's worth of bytes.

use bytes::{BufMut, Bytes};
use commonware_codec::{Buf, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write, varint::UInt};
use commonware_consensus::types::Height;
use commonware_consensus::{Block as ConsensusBlock, BoundedBlock, Heightable};
use commonware_cryptography::sha256::{Digest, Sha256};
use commonware_cryptography::{Digestible, Hasher};
use quorumkey_ledger::MAX_TRANSACTION_LEN;

/// Domain tag hashed in front of every block encoding.
const BLOCK_DOMAIN: &[u8] = b"quorumkey/block/v1";

/// The most transactions one block carries.
pub const MAX_BLOCK_TRANSACTIONS: usize = 2048;

/// The most transaction bytes one block carries (the sum of their lengths).
pub const MAX_BLOCK_TRANSACTION_BYTES: usize = 1024 * 1024;

/// Bounds applied while decoding a block from a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLimits {
    /// The most transactions in a block.
    pub max_transactions: usize,
    /// The largest single transaction.
    pub max_transaction_len: usize,
    /// The most transaction bytes in a block.
    pub max_transaction_bytes: usize,
}

impl Default for BlockLimits {
    fn default() -> Self {
        Self {
            max_transactions: MAX_BLOCK_TRANSACTIONS,
            max_transaction_len: MAX_TRANSACTION_LEN,
            max_transaction_bytes: MAX_BLOCK_TRANSACTION_BYTES,
        }
    }
}

/// A state root that the block's proposer had committed, at a height below
/// the block. Every honest node checks it against its own before voting, so
/// a finalized checkpoint is one that a quorum with an honest majority
/// agreed on: a node whose own root differs there has diverged and halts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateCheckpoint {
    /// The height of the root.
    pub height: u64,
    /// The ledger's state root after applying that height.
    pub state_root: [u8; 32],
}

/// A block of ledger transactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The digest of the parent block.
    pub parent: Digest,
    /// Its height; the genesis block is 0.
    pub height: u64,
    /// The proposer's clock, milliseconds since the Unix epoch. Never less
    /// than the parent's.
    pub timestamp_ms: u64,
    /// A root the proposer had committed.
    pub checkpoint: StateCheckpoint,
    /// Encoded ledger transactions, in order.
    pub transactions: Vec<Bytes>,
    digest: Digest,
}

impl Block {
    /// Builds a block and computes its digest.
    pub fn new(
        parent: Digest,
        height: u64,
        timestamp_ms: u64,
        checkpoint: StateCheckpoint,
        transactions: Vec<Bytes>,
    ) -> Self {
        let mut block = Self { parent, height, timestamp_ms, checkpoint, transactions, digest: Digest::from([0; 32]) };
        block.digest = block.compute_digest();
        block
    }

    /// The genesis block of the network whose consensus namespace (which
    /// commits to the network id) is `namespace`: height 0, no
    /// transactions, and the genesis state root as its checkpoint.
    pub fn genesis(namespace: &[u8], genesis_root: [u8; 32]) -> Self {
        let parent = Sha256::hash(&[BLOCK_DOMAIN, b"genesis-parent", namespace]);
        Self::new(parent, 0, 0, StateCheckpoint { height: 0, state_root: genesis_root }, Vec::new())
    }

    fn write_body(&self, buf: &mut impl BufMut) {
        self.parent.write(buf);
        UInt(self.height).write(buf);
        self.timestamp_ms.write(buf);
        self.checkpoint.height.write(buf);
        self.checkpoint.state_root.write(buf);
        self.transactions.write(buf);
    }

    fn compute_digest(&self) -> Digest {
        let mut encoded = Vec::with_capacity(self.encode_size());
        self.write_body(&mut encoded);
        Sha256::hash(&[BLOCK_DOMAIN, &encoded])
    }
}

impl Write for Block {
    fn write(&self, buf: &mut impl BufMut) {
        self.write_body(buf);
    }
}

impl EncodeSize for Block {
    fn encode_size(&self) -> usize {
        self.parent.encode_size()
            + UInt(self.height).encode_size()
            + self.timestamp_ms.encode_size()
            + self.checkpoint.height.encode_size()
            + self.checkpoint.state_root.encode_size()
            + self.transactions.encode_size()
    }
}

impl Read for Block {
    type Cfg = BlockLimits;

    fn read_cfg(buf: &mut impl Buf, limits: &BlockLimits) -> Result<Self, CodecError> {
        let parent = Digest::read(buf)?;
        let height = UInt::<u64>::read(buf)?.0;
        let timestamp_ms = u64::read(buf)?;
        let checkpoint = StateCheckpoint { height: u64::read(buf)?, state_root: <[u8; 32]>::read(buf)? };
        let transactions = Vec::<Bytes>::read_cfg(
            buf,
            &(RangeCfg::from(0..=limits.max_transactions), RangeCfg::from(1..=limits.max_transaction_len)),
        )?;
        let total: usize = transactions.iter().map(Bytes::len).sum();
        if total > limits.max_transaction_bytes {
            return Err(CodecError::Invalid("Block", "transactions exceed the block's byte limit"));
        }
        if checkpoint.height >= height && height > 0 {
            return Err(CodecError::Invalid("Block", "checkpoint is not below the block"));
        }
        Ok(Self::new(parent, height, timestamp_ms, checkpoint, transactions))
    }
}

impl Digestible for Block {
    type Digest = Digest;

    fn digest(&self) -> Digest {
        self.digest
    }
}

impl Heightable for Block {
    fn height(&self) -> Height {
        Height::new(self.height)
    }
}

impl ConsensusBlock for Block {
    fn parent(&self) -> Digest {
        self.parent
    }
}

impl BoundedBlock for Block {
    fn max_encode_size(limits: &BlockLimits) -> usize {
        // parent + height varint + timestamp + checkpoint + the vector's
        // length varint + one length varint per transaction + the bytes.
        32 + UInt(u64::MAX).encode_size()
            + 8
            + 8
            + 32
            + UInt(limits.max_transactions as u64).encode_size()
            + limits.max_transactions * UInt(limits.max_transaction_len as u64).encode_size()
            + limits.max_transaction_bytes
    }
}
