//! Transactions, their authorization, and their canonical encoding.
//!
//! Every transaction is signed over `network_id ‖ encode(body)`:
//! - node transactions (key assignment, DKG and handover messages, the test
//!   dealer) by a node's ed25519 key (a node of the current set; for a
//!   `ReshareResponse`, of the next set) under the namespace [`TX_NAMESPACE`];
//! - owner transactions (verifier registration and updates) by the
//!   owner's secp256k1 key: recoverable ECDSA over
//!   `keccak256(TX_NAMESPACE ‖ network_id ‖ encode(body))`;
//! - operators' decisions (the abuse policy, the next epoch) by at least
//!   2f + 1 nodes of the current set, each
//!   with its ed25519 key as for a node transaction.

use bytes::{BufMut, Bytes};
use commonware_codec::{Buf, Encode, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write};
use commonware_cryptography::{Signer as _, Verifier as _, ed25519};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::signature::{RECOVERABLE_SIGNATURE_LEN, RecoverableSignature};

use quorumkey_dkg::reshare::ReshareDealing;
use quorumkey_dkg::{BatchParams, Complaint, Dealing, PublicShares};

use crate::epoch::EpochNode;
use crate::genesis::{MAX_NODES, MAX_VERIFIER_CONFIG_LEN};
use crate::policy::NetworkPolicy;
#[cfg(feature = "test-dealer")]
use crate::types::KeyRecord;
use crate::types::{PointBytes, VerifierId, VerifierName};

/// Namespace of every transaction signature.
pub const TX_NAMESPACE: &[u8] = b"quorumkey/ledger-tx/v1";
/// Most keys one dealer transaction may add.
#[cfg(feature = "test-dealer")]
pub const MAX_DEALT_KEYS: usize = 1024;

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransactionBody {
    /// Give the pair a key from the pool (idempotent: a pair keeps its first
    /// key). Signed by a node.
    AssignKey {
        /// The verifier.
        verifier: VerifierName,
        /// The user within it.
        verifier_id: VerifierId,
    },
    /// Register a new verifier; names are first come, first served. Signed
    /// by `owner`.
    RegisterVerifier {
        /// Its name.
        name: VerifierName,
        /// Compressed secp256k1 key of the owner.
        owner: PointBytes,
        /// Its configuration.
        config: Bytes,
    },
    /// Replace a verifier's configuration or enable or disable it. Signed by
    /// its owner; `nonce` must be the record's nonce plus one.
    UpdateVerifier {
        /// Its name.
        name: VerifierName,
        /// The record's nonce plus one.
        nonce: u64,
        /// The new configuration.
        config: Bytes,
        /// Whether it takes assignments and logins.
        enabled: bool,
    },
    /// DKG phase 1: the signer's dealing for a batch.
    DkgDeal {
        /// The batch.
        batch: u64,
        /// Commitments and encrypted shares.
        dealing: Dealing,
    },
    /// DKG phase 2: the signer's complaints against dealers of a batch
    /// (none if all its shares checked out).
    DkgResponse {
        /// The batch.
        batch: u64,
        /// At most one per dealer.
        complaints: Vec<Complaint>,
    },
    /// DKG phase 3: the signer's public shares of a batch's keys.
    DkgPublicShares {
        /// The batch.
        batch: u64,
        /// `s_kj·G` for each key, with the proof.
        shares: PublicShares,
    },
    /// Store a verifier script's module on the ledger, under its sha-256,
    /// for script verifiers to name. Signed by `owner` (on the policy's
    /// allow list, if it has one); storing a module already stored changes
    /// nothing.
    PublishScript {
        /// Compressed secp256k1 key of the publisher.
        owner: PointBytes,
        /// The module (WebAssembly).
        module: Bytes,
    },
    /// Replace the network's abuse policy. Signed by at least 2f + 1 nodes
    /// ([`Authorization::Operators`]); `nonce` must be one above the last
    /// policy's (the genesis policy's is 0).
    SetPolicy {
        /// The new policy.
        policy: NetworkPolicy,
        /// The last policy's nonce plus one.
        nonce: u64,
    },
    /// Decide the next epoch's node set (nodes added, removed or replaced,
    /// or the same set for a refresh of every share). Signed by at least
    /// 2f + 1 nodes of the current set ([`Authorization::Operators`]);
    /// `epoch` must be the current one plus one, and no other handover may
    /// be under way.
    ProposeEpoch {
        /// The epoch it starts.
        epoch: u64,
        /// Its nodes, by index from 1.
        nodes: Vec<EpochNode>,
    },
    /// Handover: the signer's (a node of the current set) dealing of its
    /// shares of a reshare batch's keys to the next set.
    ReshareDeal {
        /// The epoch being handed over to.
        epoch: u64,
        /// The reshare batch.
        batch: u64,
        /// Commitments and encrypted shares.
        dealing: ReshareDealing,
    },
    /// Handover: the signer's (a node of the **next** set, by its index
    /// there) complaints against dealers of a reshare batch (none if all
    /// its shares checked out).
    ReshareResponse {
        /// The epoch being handed over to.
        epoch: u64,
        /// The reshare batch.
        batch: u64,
        /// At most one per dealer.
        complaints: Vec<Complaint>,
    },
    /// Test only: add keys dealt by a trusted dealer to the pool. Signed by
    /// a node. Release builds do not have this variant at all.
    #[cfg(feature = "test-dealer")]
    DealKeys {
        /// The keys, with every node's public share.
        keys: Vec<KeyRecord>,
    },
}

/// Who signed a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authorization {
    /// A node, by index, with its ed25519 consensus key.
    Node {
        /// The node's index (1..=n).
        index: u16,
        /// ed25519 signature.
        signature: ed25519::Signature,
    },
    /// The owner named in, or recorded for, the transaction's verifier.
    Owner {
        /// `r ‖ s ‖ v` recoverable ECDSA signature.
        signature: [u8; RECOVERABLE_SIGNATURE_LEN],
    },
    /// Several nodes (the network's operators), each by index with its
    /// ed25519 consensus key over the same payload as a node transaction.
    Operators {
        /// One signature per node, by index.
        signatures: Vec<(u16, ed25519::Signature)>,
    },
}

/// A transaction with its authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTransaction {
    /// What it does.
    pub body: TransactionBody,
    /// Who signed it.
    pub authorization: Authorization,
}

/// Bounds on decoding that depend on the network.
#[derive(Clone, Copy, Debug)]
pub struct TransactionLimits {
    /// Number of nodes (the length of a key's public shares).
    pub nodes: usize,
    /// The shape of a DKG batch.
    pub dkg: BatchParams,
}

/// The bytes a signature covers.
pub fn signing_payload(network_id: &[u8; 32], body: &TransactionBody) -> Vec<u8> {
    let mut payload = Vec::with_capacity(32 + body.encode_size());
    payload.extend_from_slice(network_id);
    body.write(&mut payload);
    payload
}

/// The message an owner signs (keccak256 is applied by the signature).
pub fn owner_message(network_id: &[u8; 32], body: &TransactionBody) -> Vec<u8> {
    let mut message = TX_NAMESPACE.to_vec();
    message.extend_from_slice(&signing_payload(network_id, body));
    message
}

impl SignedTransaction {
    /// Signs a node transaction.
    pub fn sign_as_node(network_id: &[u8; 32], body: TransactionBody, index: u16, key: &ed25519::PrivateKey) -> Self {
        let signature = key.sign(TX_NAMESPACE, &signing_payload(network_id, &body));
        Self { body, authorization: Authorization::Node { index, signature } }
    }

    /// Signs an owner transaction.
    pub fn sign_as_owner(network_id: &[u8; 32], body: TransactionBody, key: &SigningKey) -> Self {
        let signature = RecoverableSignature::sign_keccak(key, &owner_message(network_id, &body)).to_bytes();
        Self { body, authorization: Authorization::Owner { signature } }
    }

    /// Checks a node signature against the node's key.
    pub fn node_signature_valid(&self, network_id: &[u8; 32], key: &ed25519::PublicKey) -> bool {
        match &self.authorization {
            Authorization::Node { signature, .. } => {
                key.verify(TX_NAMESPACE, &signing_payload(network_id, &self.body), signature)
            }
            Authorization::Owner { .. } | Authorization::Operators { .. } => false,
        }
    }

    /// One operator's signature of `body` (node `key`'s, as for a node
    /// transaction): operators sign apart, and [`Self::from_operators`]
    /// puts their signatures together.
    pub fn operator_signature(
        network_id: &[u8; 32],
        body: &TransactionBody,
        key: &ed25519::PrivateKey,
    ) -> ed25519::Signature {
        key.sign(TX_NAMESPACE, &signing_payload(network_id, body))
    }

    /// An operators' decision with their signatures (node index, signature).
    pub fn from_operators(body: TransactionBody, mut signatures: Vec<(u16, ed25519::Signature)>) -> Self {
        signatures.sort_by_key(|(index, _)| *index);
        Self { body, authorization: Authorization::Operators { signatures } }
    }

    /// The transaction's hash: blake3 of its encoding.
    pub fn hash(&self) -> [u8; 32] {
        transaction_hash(&self.encode())
    }
}

/// The hash of an encoded transaction, as the ledger names it.
pub fn transaction_hash(encoded: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"quorumkey/tx-hash/v1");
    hasher.update(encoded);
    *hasher.finalize().as_bytes()
}

const TAG_ASSIGN_KEY: u8 = 0;
const TAG_REGISTER_VERIFIER: u8 = 1;
const TAG_UPDATE_VERIFIER: u8 = 2;
const TAG_DKG_DEAL: u8 = 3;
const TAG_DKG_RESPONSE: u8 = 4;
const TAG_DKG_PUBLIC_SHARES: u8 = 5;
const TAG_SET_POLICY: u8 = 6;
const TAG_PUBLISH_SCRIPT: u8 = 7;
const TAG_PROPOSE_EPOCH: u8 = 8;
const TAG_RESHARE_DEAL: u8 = 9;
const TAG_RESHARE_RESPONSE: u8 = 10;
#[cfg(feature = "test-dealer")]
const TAG_DEAL_KEYS: u8 = 200;

impl Write for TransactionBody {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Self::AssignKey { verifier, verifier_id } => {
                TAG_ASSIGN_KEY.write(buf);
                verifier.write(buf);
                verifier_id.write(buf);
            }
            Self::RegisterVerifier { name, owner, config } => {
                TAG_REGISTER_VERIFIER.write(buf);
                name.write(buf);
                owner.write(buf);
                config.write(buf);
            }
            Self::UpdateVerifier { name, nonce, config, enabled } => {
                TAG_UPDATE_VERIFIER.write(buf);
                name.write(buf);
                nonce.write(buf);
                config.write(buf);
                enabled.write(buf);
            }
            Self::DkgDeal { batch, dealing } => {
                TAG_DKG_DEAL.write(buf);
                batch.write(buf);
                dealing.write(buf);
            }
            Self::DkgResponse { batch, complaints } => {
                TAG_DKG_RESPONSE.write(buf);
                batch.write(buf);
                complaints.write(buf);
            }
            Self::DkgPublicShares { batch, shares } => {
                TAG_DKG_PUBLIC_SHARES.write(buf);
                batch.write(buf);
                shares.write(buf);
            }
            Self::SetPolicy { policy, nonce } => {
                TAG_SET_POLICY.write(buf);
                policy.write(buf);
                nonce.write(buf);
            }
            Self::PublishScript { owner, module } => {
                TAG_PUBLISH_SCRIPT.write(buf);
                owner.write(buf);
                module.write(buf);
            }
            Self::ProposeEpoch { epoch, nodes } => {
                TAG_PROPOSE_EPOCH.write(buf);
                epoch.write(buf);
                nodes.write(buf);
            }
            Self::ReshareDeal { epoch, batch, dealing } => {
                TAG_RESHARE_DEAL.write(buf);
                epoch.write(buf);
                batch.write(buf);
                dealing.write(buf);
            }
            Self::ReshareResponse { epoch, batch, complaints } => {
                TAG_RESHARE_RESPONSE.write(buf);
                epoch.write(buf);
                batch.write(buf);
                complaints.write(buf);
            }
            #[cfg(feature = "test-dealer")]
            Self::DealKeys { keys } => {
                TAG_DEAL_KEYS.write(buf);
                keys.write(buf);
            }
        }
    }
}

impl EncodeSize for TransactionBody {
    fn encode_size(&self) -> usize {
        1 + match self {
            Self::AssignKey { verifier, verifier_id } => verifier.encode_size() + verifier_id.encode_size(),
            Self::RegisterVerifier { name, owner, config } => {
                name.encode_size() + owner.encode_size() + config.encode_size()
            }
            Self::UpdateVerifier { name, nonce, config, enabled } => {
                name.encode_size() + nonce.encode_size() + config.encode_size() + enabled.encode_size()
            }
            Self::DkgDeal { batch, dealing } => batch.encode_size() + dealing.encode_size(),
            Self::DkgResponse { batch, complaints } => batch.encode_size() + complaints.encode_size(),
            Self::DkgPublicShares { batch, shares } => batch.encode_size() + shares.encode_size(),
            Self::SetPolicy { policy, nonce } => policy.encode_size() + nonce.encode_size(),
            Self::PublishScript { owner, module } => owner.encode_size() + module.encode_size(),
            Self::ProposeEpoch { epoch, nodes } => epoch.encode_size() + nodes.encode_size(),
            Self::ReshareDeal { epoch, batch, dealing } => {
                epoch.encode_size() + batch.encode_size() + dealing.encode_size()
            }
            Self::ReshareResponse { epoch, batch, complaints } => {
                epoch.encode_size() + batch.encode_size() + complaints.encode_size()
            }
            #[cfg(feature = "test-dealer")]
            Self::DealKeys { keys } => keys.encode_size(),
        }
    }
}

impl Read for TransactionBody {
    type Cfg = TransactionLimits;
    fn read_cfg(buf: &mut impl Buf, limits: &TransactionLimits) -> Result<Self, CodecError> {
        let config_range = RangeCfg::new(0..=MAX_VERIFIER_CONFIG_LEN);
        match u8::read(buf)? {
            TAG_ASSIGN_KEY => {
                Ok(Self::AssignKey { verifier: VerifierName::read(buf)?, verifier_id: VerifierId::read(buf)? })
            }
            TAG_REGISTER_VERIFIER => Ok(Self::RegisterVerifier {
                name: VerifierName::read(buf)?,
                owner: PointBytes::read(buf)?,
                config: Bytes::read_cfg(buf, &config_range)?,
            }),
            TAG_UPDATE_VERIFIER => Ok(Self::UpdateVerifier {
                name: VerifierName::read(buf)?,
                nonce: u64::read(buf)?,
                config: Bytes::read_cfg(buf, &config_range)?,
                enabled: bool::read(buf)?,
            }),
            TAG_DKG_DEAL => Ok(Self::DkgDeal { batch: u64::read(buf)?, dealing: Dealing::read_cfg(buf, &limits.dkg)? }),
            TAG_DKG_RESPONSE => Ok(Self::DkgResponse {
                batch: u64::read(buf)?,
                complaints: Vec::<Complaint>::read_cfg(buf, &(RangeCfg::new(0..=limits.nodes), ()))?,
            }),
            TAG_DKG_PUBLIC_SHARES => {
                Ok(Self::DkgPublicShares { batch: u64::read(buf)?, shares: PublicShares::read_cfg(buf, &limits.dkg)? })
            }
            TAG_SET_POLICY => Ok(Self::SetPolicy { policy: NetworkPolicy::read(buf)?, nonce: u64::read(buf)? }),
            TAG_PUBLISH_SCRIPT => Ok(Self::PublishScript {
                owner: PointBytes::read(buf)?,
                module: Bytes::read_cfg(buf, &RangeCfg::new(1..=quorumkey_script::MAX_MODULE_BYTES))?,
            }),
            TAG_PROPOSE_EPOCH => Ok(Self::ProposeEpoch {
                epoch: u64::read(buf)?,
                nodes: Vec::<EpochNode>::read_cfg(buf, &(RangeCfg::new(1..=MAX_NODES), ()))?,
            }),
            TAG_RESHARE_DEAL => Ok(Self::ReshareDeal {
                epoch: u64::read(buf)?,
                batch: u64::read(buf)?,
                dealing: ReshareDealing::read_cfg(buf, &crate::handover::dealing_bounds())?,
            }),
            TAG_RESHARE_RESPONSE => Ok(Self::ReshareResponse {
                epoch: u64::read(buf)?,
                batch: u64::read(buf)?,
                complaints: Vec::<Complaint>::read_cfg(buf, &(RangeCfg::new(0..=MAX_NODES), ()))?,
            }),
            #[cfg(feature = "test-dealer")]
            TAG_DEAL_KEYS => Ok(Self::DealKeys {
                keys: Vec::<KeyRecord>::read_cfg(buf, &(RangeCfg::new(1..=MAX_DEALT_KEYS), limits.nodes))?,
            }),
            tag => Err(CodecError::InvalidEnum(tag)),
        }
    }
}

impl Write for Authorization {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Self::Node { index, signature } => {
                0u8.write(buf);
                index.write(buf);
                signature.write(buf);
            }
            Self::Owner { signature } => {
                1u8.write(buf);
                signature.write(buf);
            }
            Self::Operators { signatures } => {
                2u8.write(buf);
                signatures.write(buf);
            }
        }
    }
}

impl EncodeSize for Authorization {
    fn encode_size(&self) -> usize {
        1 + match self {
            Self::Node { index, signature } => index.encode_size() + signature.encode_size(),
            Self::Owner { signature } => signature.encode_size(),
            Self::Operators { signatures } => signatures.encode_size(),
        }
    }
}

impl Read for Authorization {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(Self::Node { index: u16::read(buf)?, signature: ed25519::Signature::read(buf)? }),
            1 => Ok(Self::Owner { signature: <[u8; RECOVERABLE_SIGNATURE_LEN]>::read(buf)? }),
            2 => Ok(Self::Operators {
                signatures: Vec::<(u16, ed25519::Signature)>::read_cfg(buf, &(RangeCfg::new(1..=MAX_NODES), ((), ())))?,
            }),
            tag => Err(CodecError::InvalidEnum(tag)),
        }
    }
}

impl Write for SignedTransaction {
    fn write(&self, buf: &mut impl BufMut) {
        self.body.write(buf);
        self.authorization.write(buf);
    }
}

impl EncodeSize for SignedTransaction {
    fn encode_size(&self) -> usize {
        self.body.encode_size() + self.authorization.encode_size()
    }
}

impl Read for SignedTransaction {
    type Cfg = TransactionLimits;
    fn read_cfg(buf: &mut impl Buf, limits: &TransactionLimits) -> Result<Self, CodecError> {
        Ok(Self { body: TransactionBody::read_cfg(buf, limits)?, authorization: Authorization::read(buf)? })
    }
}
