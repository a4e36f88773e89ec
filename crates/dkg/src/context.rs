//! What binds every message, key and proof to one batch of one network.

use quorumkey_crypto::group::Scalar;
use quorumkey_crypto::transcript::Transcript;

use crate::params::BatchParams;

/// One batch of one network: every transcript, encryption key and batch
/// weight starts from [`BatchContext::id`], so nothing made for one batch
/// (or network) is accepted in another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchContext {
    network_id: [u8; 32],
    batch: u64,
    params: BatchParams,
    id: [u8; 32],
}

impl BatchContext {
    /// The context of batch `batch` of the network `network_id`.
    pub fn new(network_id: [u8; 32], batch: u64, params: BatchParams) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"quorumkey/dkg/batch/v1");
        hasher.update(&network_id);
        hasher.update(&batch.to_be_bytes());
        hasher.update(&params.nodes().to_be_bytes());
        hasher.update(&params.threshold().to_be_bytes());
        hasher.update(&params.keys().to_be_bytes());
        Self { network_id, batch, params, id: *hasher.finalize().as_bytes() }
    }

    /// The batch number.
    pub fn batch(&self) -> u64 {
        self.batch
    }

    /// The network.
    pub fn network_id(&self) -> &[u8; 32] {
        &self.network_id
    }

    /// The batch's shape.
    pub fn params(&self) -> &BatchParams {
        &self.params
    }

    /// A hash of everything above.
    pub fn id(&self) -> &[u8; 32] {
        &self.id
    }

    /// A Fiat-Shamir transcript for `domain` that starts with the batch.
    pub(crate) fn transcript(&self, domain: &'static [u8]) -> Transcript {
        let mut transcript = Transcript::new(domain);
        transcript.append_bytes(b"batch", &self.id);
        transcript
    }

    /// `count` 128-bit weights for a random linear combination, derived
    /// from the batch, a label and `seed` (everything the checked equations
    /// depend on, so nobody can pick inputs after seeing the weights).
    /// 128 bits give a cheating prover a 2^-128 chance per attempt.
    pub(crate) fn weights(&self, label: &[u8], seed: &[&[u8]], count: usize) -> Vec<Scalar> {
        derive_weights(&self.id, label, seed, count)
    }
}

/// `count` 128-bit weights hashed from a sharing's id (a DKG or reshare
/// batch), a label and `seed`.
pub(crate) fn derive_weights(id: &[u8; 32], label: &[u8], seed: &[&[u8]], count: usize) -> Vec<Scalar> {
    let mut hasher = blake3::Hasher::new_derive_key("quorumkey/dkg/batch-weights/v1");
    hasher.update(id);
    hasher.update(&(label.len() as u64).to_be_bytes());
    hasher.update(label);
    for part in seed {
        hasher.update(&(part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let mut reader = hasher.finalize_xof();
    let mut buf = [0u8; 16];
    (0..count)
        .map(|_| {
            reader.fill(&mut buf);
            Scalar::from(u128::from_be_bytes(buf))
        })
        .collect()
}

/// 64-bit weights from the caller's RNG, for a recipient's private check.
/// The dealer never sees them, so it cannot search for shares that pass:
/// wrong shares slip through with probability 2^-64, once, and the
/// shorter scalars halve the check's cost against 128-bit weights.
pub(crate) fn random_weights<R: rand_core::CryptoRng + ?Sized>(rng: &mut R, count: usize) -> Vec<Scalar> {
    (0..count).map(|_| Scalar::from(rng.next_u64())).collect()
}
