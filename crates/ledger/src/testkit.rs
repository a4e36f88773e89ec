//! Test networks and signed transactions, for the tests of this crate and
//! of the crates above it. Only with the `test-dealer` feature.

use bytes::Bytes;
use commonware_codec::Encode;
use commonware_cryptography::{Signer, ed25519};
use quorumkey_crypto::group::{Point, point_to_bytes};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::genesis::{DkgSettings, EpochSettings, Genesis, GenesisNode, GenesisVerifier};
use crate::machine::Ledger;
use crate::policy::NetworkPolicy;
use crate::transaction::{SignedTransaction, TransactionBody};
use crate::types::{KeyRecord, PointBytes, VerifierId, VerifierName};

/// The verifier every test network registers at genesis.
pub const TEST_VERIFIER: &str = "test-verifier";

/// A network of `n` nodes with deterministic keys.
#[derive(Clone, Debug)]
pub struct TestNetwork {
    /// Its ledger.
    pub ledger: Ledger,
    /// Node i's ed25519 key at position i-1.
    pub node_keys: Vec<ed25519::PrivateKey>,
    /// The owner of [`TEST_VERIFIER`].
    pub owner: SigningKey,
    /// Node i's secp256k1 key at position i-1.
    pub secp256k1_keys: Vec<SigningKey>,
}

/// A secp256k1 verifying key in the ledger's compressed form.
pub fn compressed(key: &SigningKey) -> PointBytes {
    point_to_bytes(&Point::from(*key.verifying_key().as_affine()))
}

/// A valid verifier name (panics on an invalid one: test input).
#[allow(clippy::expect_used, reason = "test kit: the names are the test's own")]
pub fn name(s: &str) -> VerifierName {
    VerifierName::new(s).expect("valid verifier name")
}

/// A valid verifier_id (panics on an invalid one: test input).
#[allow(clippy::expect_used, reason = "test kit: the ids are the test's own")]
pub fn id(s: &str) -> VerifierId {
    VerifierId::new(s).expect("valid verifier_id")
}

impl TestNetwork {
    /// A network of `n` nodes whose keys all derive from `seed`.
    pub fn new(n: u16, seed: u64) -> Self {
        Self::with_dkg(n, seed, DkgSettings::default_for(usize::from(n)))
    }

    /// A network of `n` nodes with the given DKG settings and no abuse
    /// limits ([`unlimited_policy`]).
    pub fn with_dkg(n: u16, seed: u64, dkg: DkgSettings) -> Self {
        Self::with_policy(n, seed, dkg, unlimited_policy())
    }

    /// A network of `n` nodes with the given DKG settings and abuse policy.
    pub fn with_policy(n: u16, seed: u64, dkg: DkgSettings, policy: NetworkPolicy) -> Self {
        Self::with_epochs(n, seed, dkg, policy, EpochSettings::default())
    }

    /// A network of `n` nodes with the given DKG, policy and epoch
    /// settings.
    #[allow(clippy::expect_used, reason = "test kit: the generated genesis is valid by construction")]
    pub fn with_epochs(n: u16, seed: u64, dkg: DkgSettings, policy: NetworkPolicy, epochs: EpochSettings) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let node_keys: Vec<ed25519::PrivateKey> =
            (0..n).map(|i| ed25519::PrivateKey::from_seed(seed.wrapping_mul(1000) + u64::from(i))).collect();
        let owner = SigningKey::generate_from_rng(&mut rng);
        let secp256k1_keys: Vec<SigningKey> = (0..n).map(|_| SigningKey::generate_from_rng(&mut rng)).collect();
        let nodes: Vec<GenesisNode> = node_keys
            .iter()
            .zip(&secp256k1_keys)
            .zip(1u16..)
            .map(|((key, secp), index)| GenesisNode {
                index,
                consensus_key: key.public_key(),
                secp256k1_key: compressed(secp),
            })
            .collect();
        let verifiers = vec![GenesisVerifier {
            name: name(TEST_VERIFIER),
            owner: compressed(&owner),
            config: test_verifier_config(),
        }];
        let ledger = Ledger::new(Genesis { dkg, nodes, verifiers, policy, epochs }).expect("valid test genesis");
        Self { ledger, node_keys, owner, secp256k1_keys }
    }

    /// A transaction signed by node `node` (from 1).
    pub fn node_tx(&self, node: u16, body: TransactionBody) -> Vec<u8> {
        let key = &self.node_keys[usize::from(node) - 1];
        SignedTransaction::sign_as_node(self.ledger.network_id(), body, node, key).encode().to_vec()
    }

    /// An operators' decision signed by the nodes `signers` (from 1).
    pub fn operators_tx(&self, signers: &[u16], body: TransactionBody) -> Vec<u8> {
        let signatures = signers
            .iter()
            .map(|&node| {
                let key = &self.node_keys[usize::from(node) - 1];
                (node, SignedTransaction::operator_signature(self.ledger.network_id(), &body, key))
            })
            .collect();
        SignedTransaction::from_operators(body, signatures).encode().to_vec()
    }

    /// A transaction signed by an owner key.
    pub fn owner_tx(&self, key: &SigningKey, body: TransactionBody) -> Vec<u8> {
        SignedTransaction::sign_as_owner(self.ledger.network_id(), body, key).encode().to_vec()
    }

    /// `AssignKey` for a user of a verifier, signed by `node`.
    pub fn assign(&self, node: u16, verifier: &str, user: &str) -> Vec<u8> {
        self.node_tx(node, TransactionBody::AssignKey { verifier: name(verifier), verifier_id: id(user) })
    }

    /// `DealKeys` of `count` random (public) keys, signed by `node`.
    pub fn deal(&self, node: u16, count: usize, seed: u64) -> Vec<u8> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let n = self.ledger.genesis().node_count();
        let keys = (0..count)
            .map(|_| KeyRecord {
                public_key: point_to_bytes(&Point::generate_from_rng(&mut rng)),
                public_shares: (0..n).map(|_| point_to_bytes(&Point::generate_from_rng(&mut rng))).collect(),
            })
            .collect();
        self.node_tx(node, TransactionBody::DealKeys { keys })
    }
}

/// Small DKG settings for tests: batches of `keys` keys, a pool of
/// `2·keys` refilled below `keys`, two batches at once, and the default
/// phase deadlines for `n` nodes.
pub fn small_dkg(n: u16, keys: u16) -> DkgSettings {
    DkgSettings {
        batch_keys: keys,
        pool_target: 2 * u32::from(keys),
        low_water: u32::from(keys),
        max_batches_in_flight: 2,
        ..DkgSettings::default_for(usize::from(n))
    }
}

/// A valid JWT verifier configuration for tests: issuer
/// `https://issuer.test`, client id `quorumkey-test`, keys from
/// `https://issuer.test/jwks`, the `email` claim as the verifier_id.
pub fn test_verifier_config() -> Bytes {
    Bytes::from_static(
        br#"{"type":"jwt","issuer":"https://issuer.test","audiences":["quorumkey-test"],"keys":{"jwks_url":"https://issuer.test/jwks"},"verifier_id_claim":"email","lowercase_verifier_id":true,"max_token_age_secs":3600}"#,
    )
}

/// A policy that limits nothing: for tests and benchmarks that assign keys
/// and register verifiers in bulk.
pub fn unlimited_policy() -> NetworkPolicy {
    NetworkPolicy {
        verifiers_per_owner: u32::MAX,
        registrations_per_window: u32::MAX,
        assignments_per_verifier: u32::MAX,
        assignments_per_node: u32::MAX,
        assignments_per_window: u32::MAX,
        ..NetworkPolicy::default()
    }
}
