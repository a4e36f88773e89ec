//! The ledger state machine: applies finalized blocks of transactions to
//! the state, deterministically, and returns the writes, a receipt per
//! transaction and the new state root.

use commonware_codec::{Copying, Decode, Encode, Read};
use quorumkey_crypto::group::public_key_from_sec1_named;
use quorumkey_crypto::signature::RecoverableSignature;
use thiserror::Error;

use crate::dkg::{DkgEvent, DkgMachine, DkgView};
use crate::epoch::NodeSet;
use crate::genesis::{Genesis, GenesisError, MAX_VERIFIER_CONFIG_LEN};
use crate::handover::{EpochView, HandoverMachine, current_epoch, current_set, key_record, read_handover};
use crate::lthash::LtHash;
use crate::policy::NetworkPolicy;
use crate::state::{Overlay, StateRead, StorageError, Table, WriteSet, read_accumulator, state_key};
use crate::transaction::{
    Authorization, SignedTransaction, TransactionBody, TransactionLimits, owner_message, transaction_hash,
};
use crate::types::{
    Assignment, KeyRecord, PointBytes, VerifierId, VerifierName, VerifierRecord, pair_key, parse_pair_key,
};

const META_HEIGHT: &[u8] = b"height";
pub(crate) const META_NEXT_KEY: &[u8] = b"next_key";
const META_NEXT_UNASSIGNED: &[u8] = b"next_unassigned";
const META_PENDING_HEAD: &[u8] = b"pending_head";
const META_PENDING_TAIL: &[u8] = b"pending_tail";
const META_VERIFIER_COUNT: &[u8] = b"verifier_count";
/// The policy in force, once operators changed the genesis one.
const META_POLICY: &[u8] = b"policy";
/// The last policy's nonce (the genesis policy's is 0).
const META_POLICY_NONCE: &[u8] = b"policy_nonce";

/// Largest encoded transaction accepted, in bytes.
pub const MAX_TRANSACTION_LEN: usize = 256 * 1024;

/// What an applied transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The pair got this key now.
    KeyAssigned {
        /// The key's index.
        key_index: u64,
    },
    /// The pair already had this key; nothing changed.
    AlreadyAssigned {
        /// The key's index.
        key_index: u64,
    },
    /// The pool was empty: the pair waits for the next ready key.
    AssignmentPending {
        /// Its place in the queue.
        sequence: u64,
    },
    /// A verifier was registered.
    VerifierRegistered,
    /// A verifier was updated.
    VerifierUpdated {
        /// Its new nonce.
        nonce: u64,
    },
    /// A DKG dealing was accepted.
    DkgDealingAccepted {
        /// Its batch.
        batch: u64,
    },
    /// A DKG response was accepted, its complaints judged.
    DkgResponseAccepted {
        /// Its batch.
        batch: u64,
        /// Complaints that disqualified their dealer.
        upheld: u16,
    },
    /// DKG public shares were recorded (verified when the phase ends).
    DkgPublicSharesAccepted {
        /// Their batch.
        batch: u64,
    },
    /// A verifier script's module is on the ledger (now, or already).
    ScriptPublished {
        /// Its sha-256.
        id: [u8; 32],
    },
    /// The operators replaced the abuse policy.
    PolicySet {
        /// Its nonce.
        nonce: u64,
    },
    /// The operators decided the next epoch's node set: the handover to it
    /// begins.
    EpochProposed {
        /// The epoch.
        epoch: u64,
    },
    /// A reshare dealing was accepted.
    ReshareDealingAccepted {
        /// The epoch being handed over to.
        epoch: u64,
        /// The reshare batch.
        batch: u64,
    },
    /// A reshare response was accepted, its complaints judged.
    ReshareResponseAccepted {
        /// The epoch being handed over to.
        epoch: u64,
        /// The reshare batch.
        batch: u64,
        /// Complaints that disqualified their dealer.
        upheld: u16,
    },
    /// Keys entered the pool (test dealer).
    KeysAdded {
        /// Index of the first new key.
        first_index: u64,
        /// How many.
        count: u64,
    },
}

/// Why a transaction in a finalized block was not applied. The block still
/// is; the rejection is recorded the same way on every node.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Rejection {
    /// Not a transaction of this ledger.
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// Signed by a node index that does not exist.
    #[error("unknown node index {0}")]
    UnknownNode(u16),
    /// A bad signature, or the wrong kind of signer for this transaction.
    #[error("bad authorization: {0}")]
    BadAuthorization(&'static str),
    /// The verifier is not registered.
    #[error("verifier {0} is not registered")]
    UnknownVerifier(String),
    /// The verifier is disabled.
    #[error("verifier {0} is disabled")]
    VerifierDisabled(String),
    /// The name is taken.
    #[error("verifier {0} is already registered")]
    VerifierExists(String),
    /// A verifier configuration that does not parse or breaks a rule.
    #[error("{0}")]
    InvalidVerifierConfig(String),
    /// A verifier script's module is refused.
    #[error("{0}")]
    InvalidScript(String),
    /// A script verifier names a module the ledger does not hold.
    #[error("no verifier script module {0} is on the ledger: publish it first (quorumkey verifier publish-script)")]
    UnknownScript(String),
    /// The update's nonce is not the next one.
    #[error("verifier {name}: nonce {got}, expected {expected}")]
    StaleNonce {
        /// The verifier.
        name: String,
        /// The nonce required.
        expected: u64,
        /// The nonce given.
        got: u64,
    },
    /// A key in a dealer transaction is not valid.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A DKG message that does not fit the batch's state or does not check.
    #[error("DKG: {0}")]
    Dkg(String),
    /// An epoch proposal or handover message that does not fit the state or
    /// does not check.
    #[error("epoch: {0}")]
    Epoch(String),
    /// The policy does not let this owner register.
    #[error("the network's policy does not let this owner register verifiers: {0}")]
    NotAllowed(&'static str),
    /// An owner's quota, or a size limit, of the policy.
    #[error("{0}")]
    Quota(String),
    /// A budget of the policy is spent for the current window.
    #[error("{what} is spent for this window of {window_secs} s; try again in the next one")]
    BudgetSpent {
        /// Which budget.
        what: String,
        /// The window's length.
        window_secs: u64,
    },
    /// A policy whose nonce is not the next one.
    #[error("policy nonce {got}, expected {expected}")]
    StalePolicyNonce {
        /// The nonce required.
        expected: u64,
        /// The nonce given.
        got: u64,
    },
}

/// A node signature that does not verify under the node set in force.
const NODE_SIGNATURE_INVALID: &str = "node signature does not verify";
/// An operator's signature that does not verify under the node set in force.
const OPERATOR_SIGNATURE_INVALID: &str = "an operator's signature does not verify";
/// Fewer operators of the set in force than a decision needs.
const TOO_FEW_OPERATORS: &str = "fewer than 2f + 1 operators signed";

impl Rejection {
    /// True if the rejection depends on which node sets are in force: a
    /// node whose ledger is a block ahead or behind, across an epoch's
    /// start or a handover's, may judge the same transaction otherwise
    /// (a signer's index in another set, a response for a handover it has
    /// not seen). Such a transaction from a peer is dropped, not held
    /// against the peer.
    pub fn depends_on_node_sets(&self) -> bool {
        match self {
            Self::UnknownNode(_) | Self::Epoch(_) => true,
            Self::BadAuthorization(reason) => {
                [NODE_SIGNATURE_INVALID, OPERATOR_SIGNATURE_INVALID, TOO_FEW_OPERATORS].contains(reason)
            }
            _ => false,
        }
    }
}

/// What one transaction of a block came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The transaction's hash ([`transaction_hash`] of its bytes).
    pub transaction: [u8; 32],
    /// What it did, or why not.
    pub result: Result<Effect, Rejection>,
}

/// The outcome of applying a block.
#[derive(Clone, Debug)]
pub struct BlockOutcome {
    /// The height applied.
    pub height: u64,
    /// The writes to persist atomically, with the height.
    pub writes: WriteSet,
    /// The state root after the block.
    pub state_root: [u8; 32],
    /// One receipt per transaction, in block order.
    pub receipts: Vec<Receipt>,
    /// What the DKG did at the end of the block.
    pub dkg_events: Vec<DkgEvent>,
}

/// A block that cannot be applied at all.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LedgerError {
    /// The block's height is not the next one.
    #[error("block at height {got}, but the next height is {expected}")]
    UnexpectedHeight {
        /// The next height.
        expected: u64,
        /// The block's.
        got: u64,
    },
    /// The state has no genesis yet.
    #[error("the ledger state is empty: apply the genesis first")]
    NotInitialized,
    /// The stored state cannot be read: corrupted storage.
    #[error("corrupted ledger state: {0}")]
    CorruptState(&'static str),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The state root for an accumulator.
pub fn state_root(accumulator: &LtHash) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"quorumkey/state-root/v1");
    hasher.update(&accumulator.to_bytes());
    *hasher.finalize().as_bytes()
}

/// The ledger of one network.
#[derive(Clone, Debug)]
pub struct Ledger {
    genesis: Genesis,
    network_id: [u8; 32],
    /// The DKG of the genesis set (later epochs' are made per block).
    dkg: DkgMachine,
    handover: HandoverMachine,
}

/// The node sets a transaction is checked against: the one in force, and
/// the next one while a handover to it runs (its nodes sign their
/// `ReshareResponse`s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSets {
    /// The set in force.
    pub current: NodeSet,
    /// The next set, decided and not yet in force.
    pub next: Option<NodeSet>,
}

/// A stored counter (absent means 0).
pub(crate) fn parse_counter(bytes: Option<Vec<u8>>) -> Result<u64, LedgerError> {
    match bytes {
        None => Ok(0),
        Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| LedgerError::CorruptState("a counter is not 8 bytes")),
    }
}

/// A stored record, decoded; a record that does not decode means the store
/// is corrupt.
pub(crate) fn parse_record<T: Read>(
    bytes: Option<Vec<u8>>,
    cfg: &T::Cfg,
    what: &'static str,
) -> Result<Option<T>, LedgerError> {
    bytes.map(|bytes| T::decode_cfg(Copying(&bytes), cfg).map_err(|_| LedgerError::CorruptState(what))).transpose()
}

/// Appends a newly registered verifier to the registration-order index.
fn index_verifier<S: StateRead + ?Sized>(overlay: &mut Overlay<'_, S>, name: &str) -> Result<(), LedgerError> {
    let count = read_u64(overlay, META_VERIFIER_COUNT)?;
    overlay.put(Table::VerifierIndex, &count.to_be_bytes(), name.as_bytes().to_vec());
    write_u64(overlay, META_VERIFIER_COUNT, count + 1);
    Ok(())
}

fn read_u64<S: StateRead + ?Sized>(overlay: &Overlay<'_, S>, key: &[u8]) -> Result<u64, LedgerError> {
    parse_counter(overlay.get(Table::Meta, key)?)
}

fn write_u64<S: StateRead + ?Sized>(overlay: &mut Overlay<'_, S>, key: &[u8], value: u64) {
    overlay.put(Table::Meta, key, value.to_be_bytes().to_vec());
}

impl Ledger {
    /// The ledger of the network with this genesis.
    pub fn new(genesis: Genesis) -> Result<Self, GenesisError> {
        genesis.validate()?;
        let network_id = genesis.network_id();
        let dkg = DkgMachine::new(&genesis, network_id)?;
        let handover = HandoverMachine {
            network_id,
            settings: genesis.dkg,
            boundary_blocks: u64::from(genesis.epochs.boundary_blocks),
            refresh_blocks: genesis.epochs.refresh_blocks,
        };
        Ok(Self { genesis, network_id, dkg, handover })
    }

    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The network id every signature commits to.
    pub fn network_id(&self) -> &[u8; 32] {
        &self.network_id
    }

    /// Decoding limits while `set` is in force.
    pub fn limits(&self, set: &NodeSet) -> Result<TransactionLimits, LedgerError> {
        Ok(TransactionLimits { nodes: set.len(), dkg: self.dkg_for(set)?.params })
    }

    /// The DKG of the node set `set`: the genesis's, or one with the same
    /// settings for a later set (batches no larger than fit its dealings).
    pub(crate) fn dkg_for(&self, set: &NodeSet) -> Result<std::borrow::Cow<'_, DkgMachine>, LedgerError> {
        if set.epoch == 0 {
            return Ok(std::borrow::Cow::Borrowed(&self.dkg));
        }
        DkgMachine::for_set(self.genesis.dkg, self.network_id, set)
            .map(std::borrow::Cow::Owned)
            .map_err(|_| LedgerError::CorruptState("the node set in force cannot run the DKG"))
    }

    /// The node set in force in `state`, and the next one if a handover to
    /// it runs.
    pub fn node_sets<S: StateRead + ?Sized>(&self, state: &S) -> Result<NodeSets, LedgerError> {
        let overlay = Overlay::new(state);
        Ok(NodeSets {
            current: current_set(&overlay, &self.genesis)?,
            next: read_handover(&overlay)?.map(|handover| handover.next),
        })
    }

    /// Epochs and the handover in `state`.
    pub fn epoch_view<'a, S: StateRead + ?Sized>(&'a self, state: &'a S) -> EpochView<'a, S> {
        EpochView { state, genesis: &self.genesis, machine: &self.handover }
    }

    /// The state at height 0, for an empty store.
    pub fn genesis_outcome<S: StateRead + ?Sized>(&self, empty: &S) -> Result<BlockOutcome, LedgerError> {
        let mut overlay = Overlay::new(empty);
        write_u64(&mut overlay, META_HEIGHT, 0);
        for verifier in &self.genesis.verifiers {
            let record =
                VerifierRecord { owner: verifier.owner, config: verifier.config.clone(), nonce: 0, enabled: true };
            overlay.put(Table::Verifiers, verifier.name.as_str().as_bytes(), record.encode().to_vec());
            index_verifier(&mut overlay, verifier.name.as_str())?;
            count_owner_verifier(&mut overlay, &verifier.owner)?;
        }
        let (writes, accumulator) = overlay.finish()?;
        Ok(BlockOutcome {
            height: 0,
            writes,
            state_root: state_root(&accumulator),
            receipts: Vec::new(),
            dkg_events: Vec::new(),
        })
    }

    /// The height of the committed state (`None` before genesis).
    pub fn height<S: StateRead + ?Sized>(&self, state: &S) -> Result<Option<u64>, LedgerError> {
        match state.get(&state_key(Table::Meta, META_HEIGHT))? {
            None => Ok(None),
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
                .map(|b| Some(u64::from_be_bytes(b)))
                .map_err(|_| LedgerError::CorruptState("height is not 8 bytes")),
        }
    }

    /// The state root of the committed state.
    pub fn committed_root<S: StateRead + ?Sized>(&self, state: &S) -> Result<[u8; 32], LedgerError> {
        Ok(state_root(&read_accumulator(state)?))
    }

    /// Decodes a transaction and checks what can be checked without state:
    /// the encoding, a node's signature, and the signature of a
    /// registration (whose owner key it carries). Consensus uses this to
    /// refuse blocks that carry garbage.
    pub fn check_transaction(&self, bytes: &[u8], sets: &NodeSets) -> Result<SignedTransaction, Rejection> {
        if bytes.len() > MAX_TRANSACTION_LEN {
            return Err(Rejection::Malformed(format!(
                "{} bytes, over the limit of {MAX_TRANSACTION_LEN}",
                bytes.len()
            )));
        }
        let limits = self.limits(&sets.current).map_err(|e| Rejection::Malformed(e.to_string()))?;
        let transaction =
            SignedTransaction::decode_cfg(Copying(bytes), &limits).map_err(|e| Rejection::Malformed(e.to_string()))?;
        let node_transaction = match &transaction.body {
            TransactionBody::AssignKey { .. }
            | TransactionBody::DkgDeal { .. }
            | TransactionBody::DkgResponse { .. }
            | TransactionBody::DkgPublicShares { .. }
            | TransactionBody::ReshareDeal { .. }
            | TransactionBody::ReshareResponse { .. } => true,
            #[cfg(feature = "test-dealer")]
            TransactionBody::DealKeys { .. } => true,
            TransactionBody::RegisterVerifier { .. }
            | TransactionBody::UpdateVerifier { .. }
            | TransactionBody::PublishScript { .. }
            | TransactionBody::SetPolicy { .. }
            | TransactionBody::ProposeEpoch { .. } => false,
        };
        match (&transaction.authorization, &transaction.body) {
            (Authorization::Operators { signatures }, TransactionBody::SetPolicy { policy, .. }) => {
                self.check_operators(&transaction, signatures, &sets.current)?;
                policy.validate().map_err(|e| Rejection::Quota(e.to_string()))?;
            }
            (_, TransactionBody::SetPolicy { .. }) => {
                return Err(Rejection::BadAuthorization("a policy must be signed by 2f + 1 operators"));
            }
            (Authorization::Operators { signatures }, TransactionBody::ProposeEpoch { .. }) => {
                self.check_operators(&transaction, signatures, &sets.current)?;
            }
            (_, TransactionBody::ProposeEpoch { .. }) => {
                return Err(Rejection::BadAuthorization("an epoch must be proposed by 2f + 1 operators"));
            }
            (Authorization::Node { index, .. }, TransactionBody::ReshareResponse { .. }) => {
                // New nodes respond, by their index in the next set.
                let next = sets.next.as_ref().ok_or(Rejection::Epoch("no handover is under way".to_owned()))?;
                let node = next.node(*index).ok_or(Rejection::UnknownNode(*index))?;
                if !transaction.node_signature_valid(&self.network_id, &node.consensus_key) {
                    return Err(Rejection::BadAuthorization(NODE_SIGNATURE_INVALID));
                }
            }
            (Authorization::Node { index, .. }, _) if node_transaction => {
                let node = sets.current.node(*index).ok_or(Rejection::UnknownNode(*index))?;
                if !transaction.node_signature_valid(&self.network_id, &node.consensus_key) {
                    return Err(Rejection::BadAuthorization(NODE_SIGNATURE_INVALID));
                }
            }
            (Authorization::Owner { signature }, _) if !node_transaction => {
                if let TransactionBody::RegisterVerifier { owner, .. } | TransactionBody::PublishScript { owner, .. } =
                    &transaction.body
                {
                    let owner_key =
                        public_key_from_sec1_named("owner", owner).map_err(|e| Rejection::InvalidKey(e.to_string()))?;
                    check_owner_signature(
                        Some(*signature),
                        &owner_key,
                        &owner_message(&self.network_id, &transaction.body),
                    )?;
                }
            }
            _ if node_transaction => {
                return Err(Rejection::BadAuthorization("this transaction must be signed by a node"));
            }
            _ => return Err(Rejection::BadAuthorization("this transaction must be signed by its owner")),
        }
        Ok(transaction)
    }

    /// Every check a block would run on `transaction` (already through
    /// [`Ledger::check_transaction`]) against `state`, the latest committed
    /// one, as if the next block had time `time_ms`: the owner's signature
    /// against the record, the nonce, the policy's allow list, quotas and
    /// budgets, the verifier's existence. Nothing is written.
    ///
    /// DKG messages get no stateful check: a peer that applied one block
    /// more than this node may send the answer to a batch this node has
    /// not yet seen opened, and a block's checks will judge it anyway.
    /// A mempool runs this on admission, so a transaction that a block
    /// would reject now never waits there; a refusal here says nothing bad
    /// about the peer that gossiped it (its state may be newer or older).
    pub fn admit<S: StateRead + ?Sized>(
        &self,
        state: &S,
        transaction: &SignedTransaction,
        time_ms: u64,
    ) -> Result<Result<(), Rejection>, LedgerError> {
        if transaction_class(&transaction.body) == TransactionClass::Dkg {
            return Ok(Ok(()));
        }
        let mut overlay = Overlay::new(state);
        let current = current_set(&overlay, &self.genesis)?;
        let height = self.height(state)?.unwrap_or(0) + 1;
        Ok(self.apply_transaction(&mut overlay, transaction.clone(), time_ms, &current, height)?.map(|_| ()))
    }

    /// At least [`Genesis::operator_quorum`] distinct nodes signed the
    /// transaction's body.
    fn check_operators(
        &self,
        transaction: &SignedTransaction,
        signatures: &[(u16, commonware_cryptography::ed25519::Signature)],
        current: &NodeSet,
    ) -> Result<(), Rejection> {
        use commonware_cryptography::Verifier as _;
        let payload = crate::transaction::signing_payload(&self.network_id, &transaction.body);
        let mut signers: Vec<u16> = Vec::with_capacity(signatures.len());
        for (index, signature) in signatures {
            let node = current.node(*index).ok_or(Rejection::UnknownNode(*index))?;
            if signers.contains(index) {
                return Err(Rejection::BadAuthorization("an operator signed twice"));
            }
            if !node.consensus_key.verify(crate::transaction::TX_NAMESPACE, &payload, signature) {
                return Err(Rejection::BadAuthorization(OPERATOR_SIGNATURE_INVALID));
            }
            signers.push(*index);
        }
        if signers.len() < current.operator_quorum() {
            return Err(Rejection::BadAuthorization(TOO_FEW_OPERATORS));
        }
        Ok(())
    }

    /// The abuse policy in force in `state`.
    pub fn policy<S: StateRead + ?Sized>(&self, state: &S) -> Result<NetworkPolicy, LedgerError> {
        Ok(parse_record(state.get(&state_key(Table::Meta, META_POLICY))?, &(), "the stored policy does not decode")?
            .unwrap_or_else(|| self.genesis.policy.clone()))
    }

    /// The nonce of the policy in force (0 for the genesis policy); the
    /// next `SetPolicy` carries this plus one.
    pub fn policy_nonce<S: StateRead + ?Sized>(&self, state: &S) -> Result<u64, LedgerError> {
        parse_counter(state.get(&state_key(Table::Meta, META_POLICY_NONCE))?)
    }

    /// Applies the block at `height`, proposed at `time_ms` (milliseconds
    /// since the Unix epoch, as consensus finalized it), on top of `state`.
    /// Heights must follow each other; a caller that may see a block twice
    /// (at-least-once delivery) skips heights at or below
    /// [`Ledger::height`] first. After the transactions, the DKG moves its
    /// batches along (block time only feeds its phase deadlines).
    pub fn apply_block<S: StateRead + ?Sized, T: AsRef<[u8]>>(
        &self,
        state: &S,
        height: u64,
        time_ms: u64,
        transactions: &[T],
    ) -> Result<BlockOutcome, LedgerError> {
        let expected = self.height(state)?.ok_or(LedgerError::NotInitialized)? + 1;
        if height != expected {
            return Err(LedgerError::UnexpectedHeight { expected, got: height });
        }
        let sets = self.node_sets(state)?;
        let mut overlay = Overlay::new(state);
        write_u64(&mut overlay, META_HEIGHT, height);
        let mut receipts = Vec::with_capacity(transactions.len());
        for bytes in transactions {
            let bytes = bytes.as_ref();
            let result = match self.check_transaction(bytes, &sets) {
                Ok(transaction) => self.apply_transaction(&mut overlay, transaction, time_ms, &sets.current, height)?,
                Err(rejection) => Err(rejection),
            };
            receipts.push(Receipt { transaction: transaction_hash(bytes), result });
        }
        // The handover first: it may put the next set in force, whose DKG
        // then runs (and it pauses the DKG while it runs).
        let dkg_idle = self.dkg_for(&sets.current)?.idle(&overlay)?;
        let (mut dkg_events, dkg_may_open) =
            self.handover.end_block(&mut overlay, &self.genesis, height, time_ms, dkg_idle)?;
        let current = current_set(&overlay, &self.genesis)?;
        let dkg = self.dkg_for(&current)?;
        if current.epoch != sets.current.epoch {
            dkg.forget_retained(&mut overlay)?;
        }
        dkg_events.extend(dkg.end_block(&mut overlay, height, time_ms, dkg_may_open)?);
        let (writes, accumulator) = overlay.finish()?;
        Ok(BlockOutcome { height, writes, state_root: state_root(&accumulator), receipts, dkg_events })
    }

    fn apply_transaction<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
        transaction: SignedTransaction,
        time_ms: u64,
        current: &NodeSet,
        height: u64,
    ) -> Result<Result<Effect, Rejection>, LedgerError> {
        let (owner_signature, signer) = match &transaction.authorization {
            Authorization::Owner { signature } => (Some(*signature), 0),
            Authorization::Node { index, .. } => (None, *index),
            Authorization::Operators { .. } => (None, 0),
        };
        // The policy is read only where it applies (DKG messages, most of a
        // block, never need it); a SetPolicy earlier in the same block binds.
        match &transaction.body {
            TransactionBody::AssignKey { verifier, verifier_id } => {
                self.assign_key(overlay, &self.policy(overlay)?, time_ms, signer, verifier, verifier_id)
            }
            TransactionBody::RegisterVerifier { name, owner, config } => {
                // The owner's signature was checked with the encoding.
                if overlay.get(Table::Verifiers, name.as_str().as_bytes())?.is_some() {
                    return Ok(Err(Rejection::VerifierExists(name.as_str().to_owned())));
                }
                let policy = self.policy(overlay)?;
                if !policy.allows_owner(owner) {
                    return Ok(Err(Rejection::NotAllowed("the owner is not on the allow list")));
                }
                if let Err(rejection) = check_config(overlay, &policy, config)? {
                    return Ok(Err(rejection));
                }
                let owned = parse_counter(overlay.get(Table::OwnerVerifiers, owner)?)?;
                if owned >= u64::from(policy.verifiers_per_owner) {
                    return Ok(Err(Rejection::Quota(format!(
                        "this owner holds {owned} verifiers, the policy's most per owner"
                    ))));
                }
                let mut budget = WindowCounter::read(overlay, &policy, time_ms, BUDGET_REGISTRATIONS.to_vec())?;
                if budget.used >= policy.registrations_per_window {
                    return Ok(Err(Rejection::BudgetSpent {
                        what: "the network's registration budget".to_owned(),
                        window_secs: policy.window_ms / 1000,
                    }));
                }
                budget.used += 1;
                budget.write(overlay);
                let record = VerifierRecord { owner: *owner, config: config.clone(), nonce: 0, enabled: true };
                overlay.put(Table::Verifiers, name.as_str().as_bytes(), record.encode().to_vec());
                index_verifier(overlay, name.as_str())?;
                count_owner_verifier(overlay, owner)?;
                Ok(Ok(Effect::VerifierRegistered))
            }
            TransactionBody::PublishScript { owner, module } => {
                // The owner's signature was checked with the encoding.
                let id = quorumkey_script::ScriptModule::id_of(module);
                if overlay.get(Table::Scripts, &id)?.is_some() {
                    return Ok(Ok(Effect::ScriptPublished { id }));
                }
                let policy = self.policy(overlay)?;
                if !policy.allows_owner(owner) {
                    return Ok(Err(Rejection::NotAllowed("the owner is not on the allow list")));
                }
                // A module is state every node keeps for good, as a
                // verifier is: it spends the registration budget.
                let mut budget = WindowCounter::read(overlay, &policy, time_ms, BUDGET_REGISTRATIONS.to_vec())?;
                if budget.used >= policy.registrations_per_window {
                    return Ok(Err(Rejection::BudgetSpent {
                        what: "the network's registration budget".to_owned(),
                        window_secs: policy.window_ms / 1000,
                    }));
                }
                // Validated last: the dearest check (a full compilation).
                if let Err(error) = quorumkey_script::ScriptModule::validate(module) {
                    return Ok(Err(Rejection::InvalidScript(error.to_string())));
                }
                budget.used += 1;
                budget.write(overlay);
                overlay.put(Table::Scripts, &id, module.to_vec());
                Ok(Ok(Effect::ScriptPublished { id }))
            }
            TransactionBody::SetPolicy { policy, nonce } => {
                // The operators' signatures and the policy's values were
                // checked with the encoding.
                let expected = read_u64(overlay, META_POLICY_NONCE)? + 1;
                if *nonce != expected {
                    return Ok(Err(Rejection::StalePolicyNonce { expected, got: *nonce }));
                }
                overlay.put(Table::Meta, META_POLICY, policy.encode().to_vec());
                write_u64(overlay, META_POLICY_NONCE, *nonce);
                Ok(Ok(Effect::PolicySet { nonce: *nonce }))
            }
            TransactionBody::UpdateVerifier { name, nonce, config, enabled } => {
                let Some(record) = read_verifier(overlay, name)? else {
                    return Ok(Err(Rejection::UnknownVerifier(name.as_str().to_owned())));
                };
                let owner_key = public_key_from_sec1_named("owner", &record.owner)
                    .map_err(|_| LedgerError::CorruptState("a stored owner key is not a point"))?;
                let message = owner_message(&self.network_id, &transaction.body);
                if let Err(rejection) = check_owner_signature(owner_signature, &owner_key, &message) {
                    return Ok(Err(rejection));
                }
                let expected = record.nonce + 1;
                if *nonce != expected {
                    return Ok(Err(Rejection::StaleNonce { name: name.as_str().to_owned(), expected, got: *nonce }));
                }
                if let Err(rejection) = check_config(overlay, &self.policy(overlay)?, config)? {
                    return Ok(Err(rejection));
                }
                let record =
                    VerifierRecord { owner: record.owner, config: config.clone(), nonce: *nonce, enabled: *enabled };
                overlay.put(Table::Verifiers, name.as_str().as_bytes(), record.encode().to_vec());
                Ok(Ok(Effect::VerifierUpdated { nonce: *nonce }))
            }
            // The node signature was checked with the encoding.
            TransactionBody::DkgDeal { batch, dealing } => {
                self.dkg_for(current)?.apply_deal(overlay, signer, *batch, dealing)
            }
            TransactionBody::DkgResponse { batch, complaints } => {
                self.dkg_for(current)?.apply_response(overlay, signer, *batch, complaints)
            }
            TransactionBody::DkgPublicShares { batch, shares } => {
                self.dkg_for(current)?.apply_public_shares(overlay, signer, *batch, shares)
            }
            // The operators' signatures were checked with the encoding.
            TransactionBody::ProposeEpoch { epoch, nodes } => {
                self.handover.apply_propose(overlay, current, height, NodeSet { epoch: *epoch, nodes: nodes.clone() })
            }
            TransactionBody::ReshareDeal { epoch, batch, dealing } => {
                self.handover.apply_deal(overlay, current, signer, *epoch, *batch, dealing)
            }
            TransactionBody::ReshareResponse { epoch, batch, complaints } => {
                self.handover.apply_response(overlay, current, signer, *epoch, *batch, complaints)
            }
            #[cfg(feature = "test-dealer")]
            TransactionBody::DealKeys { keys } => self.add_keys(overlay, keys, current),
        }
    }

    fn assign_key<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
        policy: &NetworkPolicy,
        time_ms: u64,
        node: u16,
        verifier: &VerifierName,
        verifier_id: &VerifierId,
    ) -> Result<Result<Effect, Rejection>, LedgerError> {
        match read_verifier(overlay, verifier)? {
            None => return Ok(Err(Rejection::UnknownVerifier(verifier.as_str().to_owned()))),
            Some(record) if !record.enabled => {
                return Ok(Err(Rejection::VerifierDisabled(verifier.as_str().to_owned())));
            }
            Some(_) => {}
        }
        let pair = pair_key(verifier, verifier_id);
        if let Some(existing) =
            parse_record::<Assignment>(overlay.get(Table::Assignments, &pair)?, &(), "an assignment does not decode")?
        {
            return Ok(Ok(match existing {
                Assignment::Assigned { key_index } => Effect::AlreadyAssigned { key_index },
                Assignment::Pending { sequence } => Effect::AssignmentPending { sequence },
            }));
        }
        // A new assignment: within the policy's budgets.
        let mut budget = WindowCounter::read(overlay, policy, time_ms, BUDGET_ASSIGNMENTS.to_vec())?;
        let mut verifier_key = b"v".to_vec();
        verifier_key.extend_from_slice(verifier.as_str().as_bytes());
        let mut verifier_budget = WindowCounter::read(overlay, policy, time_ms, verifier_key)?;
        let mut node_key = b"n".to_vec();
        node_key.extend_from_slice(&node.to_be_bytes());
        let mut node_budget = WindowCounter::read(overlay, policy, time_ms, node_key)?;
        let spent = |what: String| Ok(Err(Rejection::BudgetSpent { what, window_secs: policy.window_ms / 1000 }));
        if budget.used >= policy.assignments_per_window {
            return spent("the network's assignment budget".to_owned());
        }
        if verifier_budget.used >= policy.assignments_per_verifier {
            return spent(format!("verifier {}'s assignment budget", verifier.as_str()));
        }
        if node_budget.used >= policy.assignments_per_node {
            return spent(format!("node {node}'s assignment budget"));
        }
        budget.used += 1;
        budget.write(overlay);
        verifier_budget.used += 1;
        verifier_budget.write(overlay);
        node_budget.used += 1;
        node_budget.write(overlay);
        let next_unassigned = read_u64(overlay, META_NEXT_UNASSIGNED)?;
        let next_key = read_u64(overlay, META_NEXT_KEY)?;
        if next_unassigned < next_key {
            give_key(overlay, &pair, next_unassigned);
            write_u64(overlay, META_NEXT_UNASSIGNED, next_unassigned + 1);
            Ok(Ok(Effect::KeyAssigned { key_index: next_unassigned }))
        } else {
            let sequence = read_u64(overlay, META_PENDING_TAIL)?;
            overlay.put(Table::Assignments, &pair, Assignment::Pending { sequence }.encode().to_vec());
            overlay.put(Table::Pending, &sequence.to_be_bytes(), pair);
            write_u64(overlay, META_PENDING_TAIL, sequence + 1);
            Ok(Ok(Effect::AssignmentPending { sequence }))
        }
    }

    /// Adds keys to the pool, then serves waiting pairs in order. The DKG
    /// calls this when a batch completes; the test dealer through its
    /// transaction.
    #[cfg(feature = "test-dealer")]
    fn add_keys<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
        keys: &[KeyRecord],
        current: &NodeSet,
    ) -> Result<Result<Effect, Rejection>, LedgerError> {
        for (position, key) in keys.iter().enumerate() {
            if key.public_shares.len() != current.len() {
                return Ok(Err(Rejection::InvalidKey(format!(
                    "key {position} has {} public shares for {} nodes",
                    key.public_shares.len(),
                    current.len()
                ))));
            }
            for point in std::iter::once(&key.public_key).chain(&key.public_shares) {
                if let Err(e) = public_key_from_sec1_named("dealt key", point) {
                    return Ok(Err(Rejection::InvalidKey(format!("key {position}: {e}"))));
                }
            }
        }
        let first_index = append_keys(overlay, keys)?;
        Ok(Ok(Effect::KeysAdded { first_index, count: keys.len() as u64 }))
    }

    /// The DKG's state, for the node set in force.
    pub fn dkg_view<'a, S: StateRead + ?Sized>(&'a self, state: &'a S) -> Result<DkgView<'a, S>, LedgerError> {
        let current = current_set(&Overlay::new(state), &self.genesis)?;
        Ok(DkgView { state, machine: self.dkg_for(&current)? })
    }
}

/// Adds keys to the pool with consecutive indexes, then serves waiting
/// pairs in order. Returns the first new index.
pub(crate) fn append_keys<S: StateRead + ?Sized>(
    overlay: &mut Overlay<'_, S>,
    keys: &[KeyRecord],
) -> Result<u64, LedgerError> {
    let first_index = read_u64(overlay, META_NEXT_KEY)?;
    for (offset, key) in keys.iter().enumerate() {
        overlay.put(Table::Keys, &(first_index + offset as u64).to_be_bytes(), key.encode().to_vec());
    }
    write_u64(overlay, META_NEXT_KEY, first_index + keys.len() as u64);
    serve_pending(overlay)?;
    Ok(first_index)
}

/// Keys in the pool not yet assigned.
pub(crate) fn ready_keys<S: StateRead + ?Sized>(overlay: &Overlay<'_, S>) -> Result<u64, LedgerError> {
    Ok(read_u64(overlay, META_NEXT_KEY)?.saturating_sub(read_u64(overlay, META_NEXT_UNASSIGNED)?))
}

/// Pairs waiting for a key.
pub(crate) fn pending_assignments<S: StateRead + ?Sized>(overlay: &Overlay<'_, S>) -> Result<u64, LedgerError> {
    Ok(read_u64(overlay, META_PENDING_TAIL)?.saturating_sub(read_u64(overlay, META_PENDING_HEAD)?))
}

/// Which part of a node's mempool a transaction waits in, from the most
/// urgent: the DKG's messages (its phases have deadlines, and keys stop
/// being made while they wait), then assignments (users waiting for a
/// key), then client transactions (owners' registrations and updates,
/// operators' policies), which anyone may send and so must never crowd out
/// the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TransactionClass {
    /// `DkgDeal`, `DkgResponse`, `DkgPublicShares` (and the test dealer's
    /// `DealKeys`).
    Dkg,
    /// `AssignKey`.
    Assignment,
    /// `RegisterVerifier`, `UpdateVerifier`, `SetPolicy`.
    Client,
}

/// The class of a transaction's body.
pub fn transaction_class(body: &TransactionBody) -> TransactionClass {
    match body {
        TransactionBody::DkgDeal { .. }
        | TransactionBody::DkgResponse { .. }
        | TransactionBody::DkgPublicShares { .. }
        | TransactionBody::ReshareDeal { .. }
        | TransactionBody::ReshareResponse { .. } => TransactionClass::Dkg,
        #[cfg(feature = "test-dealer")]
        TransactionBody::DealKeys { .. } => TransactionClass::Dkg,
        TransactionBody::AssignKey { .. } => TransactionClass::Assignment,
        TransactionBody::RegisterVerifier { .. }
        | TransactionBody::UpdateVerifier { .. }
        | TransactionBody::PublishScript { .. }
        | TransactionBody::SetPolicy { .. }
        | TransactionBody::ProposeEpoch { .. } => TransactionClass::Client,
    }
}

/// A configuration within the policy's size and valid; a script
/// verifier's module on the ledger.
fn check_config<S: StateRead + ?Sized>(
    overlay: &Overlay<'_, S>,
    policy: &NetworkPolicy,
    config: &[u8],
) -> Result<Result<(), Rejection>, LedgerError> {
    if config.len() > policy.max_config_len as usize {
        return Ok(Err(Rejection::Quota(format!(
            "a configuration of {} bytes, over the policy's {}",
            config.len(),
            policy.max_config_len
        ))));
    }
    let parsed = match quorumkey_verifier::VerifierConfig::parse(config) {
        Ok(parsed) => parsed,
        Err(e) => return Ok(Err(Rejection::InvalidVerifierConfig(e.to_string()))),
    };
    if let quorumkey_verifier::VerifierConfig::Script(script) = &parsed {
        let id = script.module_id().unwrap_or_default();
        if overlay.get(Table::Scripts, &id)?.is_none() {
            return Ok(Err(Rejection::UnknownScript(script.module.clone())));
        }
    }
    Ok(Ok(()))
}

/// Counts one more verifier for `owner`.
fn count_owner_verifier<S: StateRead + ?Sized>(
    overlay: &mut Overlay<'_, S>,
    owner: &PointBytes,
) -> Result<(), LedgerError> {
    let owned = parse_counter(overlay.get(Table::OwnerVerifiers, owner)?)?;
    overlay.put(Table::OwnerVerifiers, owner, (owned + 1).to_be_bytes().to_vec());
    Ok(())
}

/// The network's registration budget's key in `Table::AssignmentBudgets`.
const BUDGET_REGISTRATIONS: &[u8] = b"r";
/// The network's assignment budget's key in `Table::AssignmentBudgets`.
const BUDGET_ASSIGNMENTS: &[u8] = b"a";

/// A budget's use in the current window of block time, stored under `key`
/// of `Table::AssignmentBudgets` as the window (u64) and the use (u32): the
/// network's registrations (`r`) and assignments (`a`), and each
/// verifier's (`v` + name) and node's (`n` + index) assignments. A stored
/// window older than the current one reads as nothing used.
struct WindowCounter {
    key: Vec<u8>,
    window: u64,
    used: u32,
}

impl WindowCounter {
    fn read<S: StateRead + ?Sized>(
        overlay: &Overlay<'_, S>,
        policy: &NetworkPolicy,
        time_ms: u64,
        key: Vec<u8>,
    ) -> Result<Self, LedgerError> {
        let window = policy.window(time_ms);
        let Some(bytes) = overlay.get(Table::AssignmentBudgets, &key)? else {
            return Ok(Self { key, window, used: 0 });
        };
        let bytes: [u8; 12] =
            bytes.try_into().map_err(|_| LedgerError::CorruptState("an assignment budget record is not 12 bytes"))?;
        let mut stored = [0u8; 8];
        let mut used = [0u8; 4];
        stored.copy_from_slice(&bytes[..8]);
        used.copy_from_slice(&bytes[8..]);
        let used = if u64::from_be_bytes(stored) == window { u32::from_be_bytes(used) } else { 0 };
        Ok(Self { key, window, used })
    }

    fn write<S: StateRead + ?Sized>(&self, overlay: &mut Overlay<'_, S>) {
        let mut bytes = Vec::with_capacity(12);
        bytes.extend_from_slice(&self.window.to_be_bytes());
        bytes.extend_from_slice(&self.used.to_be_bytes());
        overlay.put(Table::AssignmentBudgets, &self.key, bytes);
    }
}

fn check_owner_signature(
    signature: Option<[u8; 65]>,
    owner: &quorumkey_crypto::group::PublicKey,
    message: &[u8],
) -> Result<(), Rejection> {
    let signature = signature.ok_or(Rejection::BadAuthorization("must be signed by the owner"))?;
    let signature = RecoverableSignature::from_bytes(&signature)
        .map_err(|_| Rejection::BadAuthorization("owner signature does not parse"))?;
    signature
        .verify_keccak(owner, message)
        .map_err(|_| Rejection::BadAuthorization("owner signature does not verify under the owner's key"))
}

fn read_verifier<S: StateRead + ?Sized>(
    overlay: &Overlay<'_, S>,
    name: &VerifierName,
) -> Result<Option<VerifierRecord>, LedgerError> {
    parse_record(
        overlay.get(Table::Verifiers, name.as_str().as_bytes())?,
        &MAX_VERIFIER_CONFIG_LEN,
        "a verifier record does not decode",
    )
}

fn give_key<S: StateRead + ?Sized>(overlay: &mut Overlay<'_, S>, pair: &[u8], key_index: u64) {
    overlay.put(Table::Assignments, pair, Assignment::Assigned { key_index }.encode().to_vec());
    overlay.put(Table::KeyOwners, &key_index.to_be_bytes(), pair.to_vec());
}

/// Gives ready keys to waiting pairs, oldest first.
fn serve_pending<S: StateRead + ?Sized>(overlay: &mut Overlay<'_, S>) -> Result<(), LedgerError> {
    let mut head = read_u64(overlay, META_PENDING_HEAD)?;
    let tail = read_u64(overlay, META_PENDING_TAIL)?;
    let mut next_unassigned = read_u64(overlay, META_NEXT_UNASSIGNED)?;
    let next_key = read_u64(overlay, META_NEXT_KEY)?;
    while head < tail && next_unassigned < next_key {
        let pair = overlay
            .get(Table::Pending, &head.to_be_bytes())?
            .ok_or(LedgerError::CorruptState("a pending entry is missing"))?;
        parse_pair_key(&pair).map_err(|_| LedgerError::CorruptState("a pending entry does not decode"))?;
        overlay.delete(Table::Pending, &head.to_be_bytes());
        give_key(overlay, &pair, next_unassigned);
        next_unassigned += 1;
        head += 1;
    }
    write_u64(overlay, META_PENDING_HEAD, head);
    write_u64(overlay, META_NEXT_UNASSIGNED, next_unassigned);
    Ok(())
}

/// Read-only queries over a committed state.
pub struct LedgerView<'a, S: StateRead + ?Sized> {
    state: &'a S,
    genesis: &'a Genesis,
}

impl<'a, S: StateRead + ?Sized> LedgerView<'a, S> {
    /// A view of `state` for the network of `ledger`.
    pub fn new(ledger: &'a Ledger, state: &'a S) -> Self {
        Self { state, genesis: &ledger.genesis }
    }

    /// The node set in force.
    pub fn node_set(&self) -> Result<NodeSet, LedgerError> {
        current_set(&Overlay::new(self.state), self.genesis)
    }

    /// Where a pair stands, if it ever asked for a key.
    pub fn assignment(
        &self,
        verifier: &VerifierName,
        verifier_id: &VerifierId,
    ) -> Result<Option<Assignment>, LedgerError> {
        let bytes = self.state.get(&state_key(Table::Assignments, &pair_key(verifier, verifier_id)))?;
        parse_record(bytes, &(), "an assignment does not decode")
    }

    /// A key of the pool, assigned or not.
    /// Its public shares are those of the epoch in force.
    pub fn key(&self, index: u64) -> Result<Option<KeyRecord>, LedgerError> {
        let overlay = Overlay::new(self.state);
        key_record(&overlay, current_epoch(&overlay)?, index)
    }

    /// The number of the epoch in force (0: the genesis set).
    pub fn epoch(&self) -> Result<u64, LedgerError> {
        current_epoch(&Overlay::new(self.state))
    }

    /// The pair a key is assigned to.
    pub fn key_owner(&self, index: u64) -> Result<Option<(VerifierName, VerifierId)>, LedgerError> {
        self.state
            .get(&state_key(Table::KeyOwners, &index.to_be_bytes()))?
            .map(|bytes| parse_pair_key(&bytes).map_err(|_| LedgerError::CorruptState("a key owner does not decode")))
            .transpose()
    }

    /// A registered verifier.
    pub fn verifier(&self, name: &VerifierName) -> Result<Option<VerifierRecord>, LedgerError> {
        let bytes = self.state.get(&state_key(Table::Verifiers, name.as_str().as_bytes()))?;
        parse_record(bytes, &MAX_VERIFIER_CONFIG_LEN, "a verifier record does not decode")
    }

    /// A verifier script's module, by its sha-256.
    pub fn script_module(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.state.get(&state_key(Table::Scripts, id))?)
    }

    /// Verifiers ever registered.
    pub fn verifier_count(&self) -> Result<u64, LedgerError> {
        self.counter(META_VERIFIER_COUNT)
    }

    /// The `position`-th verifier registered (from 0), with its record.
    pub fn verifier_at(&self, position: u64) -> Result<Option<(VerifierName, VerifierRecord)>, LedgerError> {
        let Some(bytes) = self.state.get(&state_key(Table::VerifierIndex, &position.to_be_bytes()))? else {
            return Ok(None);
        };
        let name = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| VerifierName::new(text).ok())
            .ok_or(LedgerError::CorruptState("a verifier index entry is not a name"))?;
        let record = self.verifier(&name)?.ok_or(LedgerError::CorruptState("an indexed verifier has no record"))?;
        Ok(Some((name, record)))
    }

    fn counter(&self, key: &[u8]) -> Result<u64, LedgerError> {
        parse_counter(self.state.get(&state_key(Table::Meta, key))?)
    }

    /// Keys in the pool not yet assigned.
    pub fn ready_keys(&self) -> Result<u64, LedgerError> {
        Ok(self.counter(META_NEXT_KEY)?.saturating_sub(self.counter(META_NEXT_UNASSIGNED)?))
    }

    /// Keys ever added to the pool.
    pub fn total_keys(&self) -> Result<u64, LedgerError> {
        self.counter(META_NEXT_KEY)
    }

    /// Pairs waiting for a key.
    pub fn pending_assignments(&self) -> Result<u64, LedgerError> {
        Ok(self.counter(META_PENDING_TAIL)?.saturating_sub(self.counter(META_PENDING_HEAD)?))
    }
}
