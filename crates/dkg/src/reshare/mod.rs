//! Resharing: the keys of one node set handed to the next (or refreshed
//! within the same set), batched like the DKG, with every public key
//! unchanged.
//!
//! Old node `i` holds `s_ki`, its share of key `k`, whose public share
//! `Y_ki = s_ki·G` is on the ledger. To hand a batch of `K` keys over, each
//! of `t` qualified old dealers draws, per key, a polynomial `a_ik` of the
//! new degree `t' - 1` whose constant term is its own share, `a_ik(0) =
//! s_ki`, and publishes Feldman commitments to the other coefficients,
//! `C_ikl = a_ikl·G` for `1 ≤ l < t'`; the constant's commitment is not
//! sent: it is `Y_ki`, taken from the ledger. New node `j` receives
//! `a_ik(j)` encrypted, checks it against `Y_ki + Σ_l j^l·C_ikl`, and its
//! new share is `s'_kj = Σ_{i∈Q} λ_i·a_ik(j)` (Lagrange at 0 over the
//! qualified old indexes `Q`). The new public shares are public:
//! `Y'_kj = Σ_{i∈Q} λ_i·(Y_ki + Σ_l j^l·C_ikl)`, and the public key
//! `Σ_{i∈Q} λ_i·Y_ki` is the old one. Complaints and their judging are the
//! DKG's ([`crate::complaint::Complaint`]). The protocol and its security
//! argument: `docs/dkg.md`, "Resharing".
//!
//! - [`ReshareParams`], [`ReshareContext`]: the shape of a batch and what
//!   binds its messages.
//! - [`dealing`]: an old dealer's message.
//! - [`recipient`]: a new node opens and checks its shares, complains, and
//!   combines the qualified dealers' shares.
//! - [`judge`]: a complaint against a reshare dealer, judged from public
//!   data.
//! - [`handover`]: every key's new public shares, with its public key
//!   checked unchanged.

pub mod dealing;
pub mod handover;
pub mod judge;
pub mod recipient;

use quorumkey_crypto::shamir::majority_threshold;
use quorumkey_crypto::transcript::Transcript;

use crate::error::DkgError;
use crate::params::{MAX_BATCH_KEYS, MAX_NODES, TAG_LEN};
use crate::points::AFFINE_POINT_LEN;

pub use dealing::{ParsedReshareDealing, ReshareDealing, ReshareDealingBounds, ReshareSecrets};
pub use handover::handover_keys;
pub use judge::adjudicate_reshare;
pub use recipient::{ReceivedReshare, combine_reshared, complain_reshare, open_reshare_dealings};

/// Bytes of one recipient's share of one key in a reshare ciphertext.
pub const RESHARE_SHARE_LEN: usize = 32;

/// The shape of one reshare batch: the old set, the new set, and how many
/// keys. Thresholds follow from the sizes (`floor(n/2) + 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReshareParams {
    old_nodes: u16,
    old_threshold: u16,
    new_nodes: u16,
    new_threshold: u16,
    keys: u16,
}

impl ReshareParams {
    /// A batch of `keys` keys from `old_nodes` nodes to `new_nodes` nodes.
    pub fn new(old_nodes: u16, new_nodes: u16, keys: u16) -> Result<Self, DkgError> {
        if old_nodes == 0 || old_nodes > MAX_NODES || new_nodes == 0 || new_nodes > MAX_NODES {
            return Err(DkgError::InvalidParameters("each node set has 1 to 256 nodes"));
        }
        if keys == 0 || keys > MAX_BATCH_KEYS {
            return Err(DkgError::InvalidParameters("a reshare batch hands over 1 to 1024 keys"));
        }
        Ok(Self {
            old_nodes,
            old_threshold: majority_threshold(u32::from(old_nodes)) as u16,
            new_nodes,
            new_threshold: majority_threshold(u32::from(new_nodes)) as u16,
            keys,
        })
    }

    /// The largest batch of keys whose dealing fits in `limit` bytes (at
    /// most [`MAX_BATCH_KEYS`]), or `None` if not even one key fits.
    pub fn largest_fitting(old_nodes: u16, new_nodes: u16, limit: usize) -> Option<Self> {
        let one = Self::new(old_nodes, new_nodes, 1).ok()?;
        let fixed = one.dealing_len() - one.per_key_len();
        let keys = limit.checked_sub(fixed)? / one.per_key_len();
        let keys = u16::try_from(keys.min(usize::from(MAX_BATCH_KEYS))).ok()?;
        Self::new(old_nodes, new_nodes, keys).ok()
    }

    /// Nodes in the set that deals, `n`.
    pub fn old_nodes(&self) -> u16 {
        self.old_nodes
    }

    /// The old threshold `t`: the qualified dealings a batch takes (the
    /// old shares lie on a polynomial of degree `t - 1`, so `t` of them
    /// determine each key).
    pub fn old_threshold(&self) -> u16 {
        self.old_threshold
    }

    /// Nodes in the set that receives, `n'`.
    pub fn new_nodes(&self) -> u16 {
        self.new_nodes
    }

    /// The new threshold `t'`; the dealt polynomials have degree `t' - 1`.
    pub fn new_threshold(&self) -> u16 {
        self.new_threshold
    }

    /// Keys per batch `K`.
    pub fn keys(&self) -> u16 {
        self.keys
    }

    /// Qualified dealings a batch takes: `t`.
    pub fn dealers(&self) -> u16 {
        self.old_threshold
    }

    /// True if old node `node` is one of batch `batch`'s designated
    /// dealers: `t` consecutive old indexes, rotating with the batch.
    /// Others deal only when one of them is late or disqualified.
    pub fn designated_dealer(&self, batch: u64, node: u16) -> bool {
        let n = u64::from(self.old_nodes);
        if node == 0 || node > self.old_nodes {
            return false;
        }
        let position = (u64::from(node) - 1 + n - batch % n) % n;
        position < u64::from(self.dealers())
    }

    /// Commitments per key: the coefficients `1..t'` (the constant's is the
    /// dealer's public share, on the ledger).
    pub fn commitments_per_key(&self) -> usize {
        usize::from(self.new_threshold) - 1
    }

    /// Bytes of a dealing's commitments.
    pub fn commitments_len(&self) -> usize {
        usize::from(self.keys) * self.commitments_per_key() * AFFINE_POINT_LEN
    }

    /// Bytes of one recipient's ciphertext: `K` shares and the tag.
    pub fn ciphertext_len(&self) -> usize {
        usize::from(self.keys) * RESHARE_SHARE_LEN + TAG_LEN
    }

    fn per_key_len(&self) -> usize {
        self.commitments_per_key() * AFFINE_POINT_LEN + usize::from(self.new_nodes) * RESHARE_SHARE_LEN
    }

    /// Bytes of an encoded dealing (the codec's length prefixes included,
    /// generously).
    pub fn dealing_len(&self) -> usize {
        // Commitments and ciphertexts with their varint prefixes, the
        // ephemeral key and its proof.
        let prefix = 5;
        prefix
            + self.commitments_len()
            + 33
            + crate::schnorr::SCHNORR_PROOF_LEN
            + prefix
            + usize::from(self.new_nodes) * (prefix + self.ciphertext_len())
    }
}

/// One reshare batch of one network: every transcript, encryption key and
/// weight starts from [`ReshareContext::id`], which hashes the network, the
/// epoch being formed, the batch, the first key's index and the shape, so
/// nothing made for one batch (or epoch, or DKG batch) is accepted in
/// another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReshareContext {
    epoch: u64,
    batch: u64,
    first_key: u64,
    params: ReshareParams,
    id: [u8; 32],
}

impl ReshareContext {
    /// The context of batch `batch` of the handover into epoch `epoch`,
    /// whose keys are `first_key .. first_key + K`.
    pub fn new(network_id: [u8; 32], epoch: u64, batch: u64, first_key: u64, params: ReshareParams) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"quorumkey/reshare/batch/v1");
        hasher.update(&network_id);
        hasher.update(&epoch.to_be_bytes());
        hasher.update(&batch.to_be_bytes());
        hasher.update(&first_key.to_be_bytes());
        for value in [params.old_nodes, params.old_threshold, params.new_nodes, params.new_threshold, params.keys] {
            hasher.update(&value.to_be_bytes());
        }
        Self { epoch, batch, first_key, params, id: *hasher.finalize().as_bytes() }
    }

    /// The epoch the keys are handed into.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The batch number within the handover.
    pub fn batch(&self) -> u64 {
        self.batch
    }

    /// The index of the batch's first key.
    pub fn first_key(&self) -> u64 {
        self.first_key
    }

    /// The batch's shape.
    pub fn params(&self) -> &ReshareParams {
        &self.params
    }

    /// A hash of everything above.
    pub fn id(&self) -> &[u8; 32] {
        &self.id
    }

    pub(crate) fn transcript(&self, domain: &'static [u8]) -> Transcript {
        let mut transcript = Transcript::new(domain);
        transcript.append_bytes(b"reshare-batch", &self.id);
        transcript
    }

    /// `count` 128-bit weights derived from the batch, a label and `seed`.
    pub(crate) fn weights(&self, label: &[u8], seed: &[&[u8]], count: usize) -> Vec<quorumkey_crypto::group::Scalar> {
        crate::context::derive_weights(&self.id, label, seed, count)
    }
}

#[cfg(test)]
mod tests;
