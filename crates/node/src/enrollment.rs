//! Forming a network of independent operators: each operator makes its
//! node's keys on its own machine (`quorumkey node keygen`) and publishes
//! only its **enrollment**: the public keys, the addresses, and a signature
//! by each of the two keys over all of it. Whoever assembles the genesis
//! (`quorumkey network genesis`) checks every enrollment and gives the
//! nodes their indexes in the order of their consensus keys, so that every
//! operator who assembles the same enrollments gets the same
//! `network.toml` and the same network id, which they compare out of band.
//!
//! What the signatures prove: that whoever published the enrollment holds
//! both secret keys, and that nobody changed an address or swapped one of
//! the two keys on the way. They cannot prove that the enrollment is the
//! operator's at all (an attacker can enroll keys of its own): that is what
//! comparing the network id, which covers every key, is for.

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use commonware_codec::{DecodeExt as _, Encode as _};
use commonware_cryptography::{Signer as _, Verifier as _, ed25519};
use quorumkey_crypto::group::public_key_from_sec1;
use quorumkey_crypto::random::os_rng;
use quorumkey_crypto::signature::RecoverableSignature;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::addresses::{ListenOverrides, RpcUrl};
use crate::config::{
    ConfigError, HttpSettings, NETWORK_FILE, NetworkDkg, NetworkFile, NetworkNode, NetworkPolicyFile, NetworkVerifier,
    NodeSettings, ProviderSettings, RpcSettings, write_node_dir,
};
use crate::identity::NodeIdentity;

/// The enrollment file `node keygen` writes next to the keys.
pub const ENROLLMENT_FILE: &str = "enrollment.toml";

/// The domain of the enrollment signatures (no other signature of these
/// keys can be taken for one).
const ENROLLMENT_NAMESPACE: &[u8] = b"quorumkey/enrollment/v1";

/// A node's public enrollment: what its operator publishes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    /// ed25519 public key (consensus, p2p, ledger transactions), hex.
    pub consensus_key: String,
    /// Compressed secp256k1 public key (what clients check), hex.
    pub secp256k1_key: String,
    /// Where its peers reach it (what they dial).
    pub p2p_address: SocketAddr,
    /// Where clients reach its API.
    pub rpc_url: RpcUrl,
    /// The consensus key's signature over the enrollment, hex.
    pub consensus_signature: String,
    /// The secp256k1 key's signature over the enrollment (65 bytes,
    /// recoverable), hex.
    pub secp256k1_signature: String,
}

/// Why an enrollment or a set of them is refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnrollmentError {
    /// A key is not a key.
    #[error("{which} is not a valid public key: {reason}")]
    Key {
        /// `consensus_key` or `secp256k1_key`.
        which: &'static str,
        /// Why.
        reason: String,
    },
    /// A signature does not verify: the enrollment was changed after it
    /// was signed, or was not signed by these keys.
    #[error("the {0} does not verify: the enrollment was altered or not made with its keys")]
    Signature(&'static str),
    /// Two enrollments share a key or an address.
    #[error("two enrollments have the same {what} ({value})")]
    Duplicate {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: String,
    },
    /// No enrollments, or more than a network may have.
    #[error("a network has 1 to {max} nodes, not {got}")]
    Count {
        /// The largest network.
        max: usize,
        /// How many were given.
        got: usize,
    },
}

/// The decoded keys of an enrollment.
struct EnrollmentKeys {
    consensus: ed25519::PublicKey,
    secp256k1: [u8; 33],
}

/// What both keys sign: the namespace, then each field length-prefixed,
/// the keys as bytes (not as spelled) and the addresses in their one
/// canonical form.
fn message(consensus: &ed25519::PublicKey, secp256k1: &[u8; 33], p2p: &SocketAddr, rpc: &RpcUrl) -> Vec<u8> {
    let p2p = p2p.to_string();
    let rpc = rpc.as_str();
    let mut out = Vec::with_capacity(160);
    let fields: [&[u8]; 5] = [ENROLLMENT_NAMESPACE, consensus.as_ref(), secp256k1, p2p.as_bytes(), rpc.as_bytes()];
    for field in fields {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

impl Enrollment {
    /// The enrollment of `identity` at these addresses, signed by both of
    /// its keys.
    pub fn sign(identity: &NodeIdentity, p2p_address: SocketAddr, rpc_url: &RpcUrl) -> Self {
        let consensus = identity.consensus.public_key();
        let secp256k1 = identity.secp256k1_public_bytes();
        let message = message(&consensus, &secp256k1, &p2p_address, rpc_url);
        let consensus_signature = identity.consensus.sign(ENROLLMENT_NAMESPACE, &message);
        let secp256k1_signature = RecoverableSignature::sign_keccak(&identity.secp256k1, &message);
        Self {
            consensus_key: hex::encode(consensus.as_ref()),
            secp256k1_key: hex::encode(secp256k1),
            p2p_address,
            rpc_url: rpc_url.clone(),
            consensus_signature: hex::encode(consensus_signature.encode()),
            secp256k1_signature: hex::encode(secp256k1_signature.to_bytes()),
        }
    }

    fn keys(&self) -> Result<EnrollmentKeys, EnrollmentError> {
        let key = |which, reason: String| EnrollmentError::Key { which, reason };
        let bytes = hex::decode(&self.consensus_key).map_err(|_| key("consensus_key", "not hex".to_owned()))?;
        let consensus =
            ed25519::PublicKey::decode(bytes::Bytes::from(bytes)).map_err(|e| key("consensus_key", e.to_string()))?;
        let bytes = hex::decode(&self.secp256k1_key).map_err(|_| key("secp256k1_key", "not hex".to_owned()))?;
        public_key_from_sec1(&bytes).map_err(|e| key("secp256k1_key", e.to_string()))?;
        let secp256k1 = <[u8; 33]>::try_from(bytes.as_slice())
            .map_err(|_| key("secp256k1_key", "not a 33-byte compressed point".to_owned()))?;
        Ok(EnrollmentKeys { consensus, secp256k1 })
    }

    /// Checks both signatures.
    pub fn verify(&self) -> Result<(), EnrollmentError> {
        let keys = self.keys()?;
        let message = message(&keys.consensus, &keys.secp256k1, &self.p2p_address, &self.rpc_url);
        let signature = hex::decode(&self.consensus_signature)
            .ok()
            .and_then(|bytes| ed25519::Signature::decode(bytes::Bytes::from(bytes)).ok())
            .ok_or(EnrollmentError::Signature("consensus_signature"))?;
        if !keys.consensus.verify(ENROLLMENT_NAMESPACE, &message, &signature) {
            return Err(EnrollmentError::Signature("consensus_signature"));
        }
        let secp256k1 = public_key_from_sec1(&keys.secp256k1)
            .map_err(|e| EnrollmentError::Key { which: "secp256k1_key", reason: e.to_string() })?;
        hex::decode(&self.secp256k1_signature)
            .ok()
            .and_then(|bytes| RecoverableSignature::from_bytes(&bytes).ok())
            .and_then(|signature| signature.verify_keccak(&secp256k1, &message).ok())
            .ok_or(EnrollmentError::Signature("secp256k1_signature"))
    }

    /// Reads an enrollment file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_owned(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), reason: e.to_string() })
    }
}

/// How `network_from_enrollments` numbers the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeOrder {
    /// By consensus key: the same network whatever order the enrollments
    /// come in (`network genesis`).
    ByConsensusKey,
    /// In the order given (`network init`, whose node directories are
    /// numbered).
    AsGiven,
}

/// What a genesis holds besides its nodes.
#[derive(Clone, Debug, Default)]
pub struct GenesisParts {
    /// Verifiers registered at genesis.
    pub verifiers: Vec<NetworkVerifier>,
    /// DKG settings (defaults for the network's size if empty).
    pub dkg: NetworkDkg,
    /// The abuse policy.
    pub policy: NetworkPolicyFile,
}

/// The network file of `enrollments` (each checked; no key or address
/// twice), numbered by `order`, with `parts`.
pub fn network_from_enrollments(
    enrollments: &[Enrollment],
    order: NodeOrder,
    parts: GenesisParts,
) -> Result<NetworkFile, EnrollmentError> {
    let max = quorumkey_ledger::genesis::MAX_NODES;
    if enrollments.is_empty() || enrollments.len() > max {
        return Err(EnrollmentError::Count { max, got: enrollments.len() });
    }
    let mut checked = Vec::with_capacity(enrollments.len());
    for enrollment in enrollments {
        enrollment.verify()?;
        checked.push((enrollment.keys()?, enrollment));
    }
    let mut seen = std::collections::HashSet::new();
    for (keys, enrollment) in &checked {
        for (what, value) in [
            ("consensus_key", hex::encode(keys.consensus.as_ref())),
            ("secp256k1_key", hex::encode(keys.secp256k1)),
            ("address", enrollment.p2p_address.to_string()),
            ("address", enrollment.rpc_url.to_string()),
        ] {
            if !seen.insert((what, value.clone())) {
                return Err(EnrollmentError::Duplicate { what, value });
            }
        }
    }
    if order == NodeOrder::ByConsensusKey {
        checked.sort_by(|(a, _), (b, _)| a.consensus.as_ref().cmp(b.consensus.as_ref()));
    }
    let nodes = checked
        .iter()
        .zip(1u16..)
        .map(|((keys, enrollment), index)| NetworkNode {
            index,
            consensus_key: hex::encode(keys.consensus.as_ref()),
            secp256k1_key: hex::encode(keys.secp256k1),
            p2p_address: enrollment.p2p_address,
            rpc_url: enrollment.rpc_url.clone(),
        })
        .collect();
    Ok(NetworkFile { nodes, verifiers: parts.verifiers, dkg: parts.dkg, policy: parts.policy })
}

/// What `node keygen` writes besides the keys.
#[derive(Clone, Debug, Default)]
pub struct KeygenOptions {
    /// Where the node binds, if not the addresses it advertises.
    pub listen: ListenOverrides,
    /// `[rpc]` of node.toml.
    pub rpc: RpcSettings,
    /// `[providers]` of node.toml.
    pub providers: ProviderSettings,
    /// `[http]` of node.toml.
    pub http: HttpSettings,
}

/// A new node in `out` (created 0700; refused if it holds anything): its
/// secret keys (0600), its key-encryption key (0600), a `node.toml` that
/// finds the node's index in `network.toml` (to be put beside it) by its
/// keys, and its public enrollment, which it returns. Refuses addresses
/// the node could not bind (an `rpc_url` naming a host, with no
/// `listen.rpc`).
pub fn keygen(
    out: &Path,
    p2p_address: SocketAddr,
    rpc_url: &RpcUrl,
    options: &KeygenOptions,
) -> Result<Enrollment, ConfigError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ConfigError::Io { path, source }
    };
    if out.exists() && std::fs::read_dir(out).map_err(io(out))?.next().is_some() {
        return Err(ConfigError::NotEmpty(out.to_owned()));
    }
    options.rpc.validate().map_err(|reason| ConfigError::Invalid { path: out.to_owned(), reason })?;
    options
        .listen
        .resolve(p2p_address, rpc_url)
        .map_err(|reason| ConfigError::Invalid { path: out.to_owned(), reason })?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(out).map_err(io(out))?;
    let settings =
        NodeSettings { listen: options.listen, rpc: &options.rpc, providers: &options.providers, http: &options.http };
    let identity = write_node_dir(out, None, PathBuf::from(NETWORK_FILE), &settings, &mut os_rng())?;
    let enrollment = Enrollment::sign(&identity, p2p_address, rpc_url);
    let path = out.join(ENROLLMENT_FILE);
    let text = toml::to_string_pretty(&enrollment)
        .map_err(|e| ConfigError::Invalid { path: path.clone(), reason: e.to_string() })?;
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(enrollment)
}
