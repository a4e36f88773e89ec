//! Runs this node's DKG and handover participants: after every applied
//! block it reads the committed state, asks each participant what to do,
//! and does it in order (persist shares durably, then submit signed
//! transactions). The handover participant goes first: when a new epoch
//! comes into force it puts the new shares in place, and the DKG
//! participant then works for the new set (under this node's index there).

use bytes::Bytes;
use commonware_codec::Encode;
use commonware_cryptography::ed25519;
use quorumkey_crypto::group::{NonZeroScalar, Scalar, scalar_from_bytes, scalar_to_bytes};
use quorumkey_dkg::KeyShares;
use quorumkey_dkg::dealing::SharePair;
use quorumkey_ledger::{Ledger, LedgerError, SignedTransaction, StateRead};
use quorumkey_store::StoreError;
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::consensus::{AppliedTip, TransactionSubmitter};
use crate::state::{CommittedState, ShareStore};
use quorumkey_participant::handover::{HandoverAction, HandoverNotice, HandoverParticipant, HandoverShareStore};
use quorumkey_participant::{BatchShareStore, DkgAction, DkgNotice, DkgParticipant};

/// What a node does in the DKG after each block: the honest
/// [`DkgParticipant`], or (in tests) something that misbehaves.
pub trait DkgRole: Send + 'static {
    /// The actions after the block at `height` was applied to `state`.
    fn on_block(
        &mut self,
        ledger: &Ledger,
        state: &dyn StateRead,
        height: u64,
        now_ms: u64,
        store: &dyn BatchShareStore,
        rng: &mut dyn CryptoRng,
    ) -> Result<Vec<DkgAction>, LedgerError>;

    /// Work that can be done ahead of need, called after the actions of a
    /// block are carried out (the honest participant prepares its next
    /// dealing). Nothing by default.
    fn prepare(&mut self, _ledger: &Ledger, _rng: &mut dyn CryptoRng) -> Result<(), LedgerError> {
        Ok(())
    }
}

impl DkgRole for DkgParticipant {
    fn on_block(
        &mut self,
        ledger: &Ledger,
        state: &dyn StateRead,
        height: u64,
        now_ms: u64,
        store: &dyn BatchShareStore,
        rng: &mut dyn CryptoRng,
    ) -> Result<Vec<DkgAction>, LedgerError> {
        DkgParticipant::on_block(self, ledger, state, height, now_ms, store, rng)
    }

    fn prepare(&mut self, ledger: &Ledger, rng: &mut dyn CryptoRng) -> Result<(), LedgerError> {
        DkgParticipant::prepare(self, ledger, rng)
    }
}

/// The DKG role of a node outside the set in force: a node joining (until
/// the epoch that adds it comes into force) or one removed. It does
/// nothing; the handover participant, which runs beside it, deals and
/// receives the node's part of a handover.
#[derive(Clone, Copy, Debug, Default)]
pub struct OutsideTheSet;

impl DkgRole for OutsideTheSet {
    fn on_block(
        &mut self,
        _: &Ledger,
        _: &dyn StateRead,
        _: u64,
        _: u64,
        _: &dyn BatchShareStore,
        _: &mut dyn CryptoRng,
    ) -> Result<Vec<DkgAction>, LedgerError> {
        Ok(Vec::new())
    }
}

/// The node's share tables seen as the participant's [`BatchShareStore`].
struct StoredShares<'a> {
    store: &'a ShareStore,
}

/// Bytes of one stored share pair.
const PAIR_LEN: usize = 64;

fn encode_pairs(pairs: &[SharePair]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(pairs.len() * PAIR_LEN));
    for pair in pairs {
        out.extend_from_slice(&scalar_to_bytes(&pair.value));
        out.extend_from_slice(&scalar_to_bytes(&pair.blinding));
    }
    out
}

fn decode_pairs(bytes: &[u8]) -> Option<Vec<SharePair>> {
    if !bytes.len().is_multiple_of(PAIR_LEN) {
        return None;
    }
    bytes
        .chunks_exact(PAIR_LEN)
        .map(|chunk| {
            Some(SharePair {
                value: scalar_from_bytes(&chunk[..32]).ok()?,
                blinding: scalar_from_bytes(&chunk[32..]).ok()?,
            })
        })
        .collect()
}

impl BatchShareStore for StoredShares<'_> {
    fn load_batch_shares(&self, batch: u64, node: u16) -> Option<KeyShares> {
        match self.store.batch_shares(batch) {
            Ok(Some(bytes)) => decode_pairs(&bytes).map(|pairs| KeyShares::from_pairs(node, pairs)),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(batch, error = %e, "cannot read stored batch shares");
                None
            }
        }
    }

    fn batches_with_shares(&self) -> Vec<u64> {
        self.store.batches_with_shares().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot list stored batch shares");
            Vec::new()
        })
    }

    fn has_key_share(&self, index: u64) -> bool {
        // On a read error, claim the share: recovery is retried next block.
        self.store.has_key_share(index).unwrap_or(true)
    }
}

impl HandoverShareStore for StoredShares<'_> {
    fn key_share(&self, index: u64) -> Option<Scalar> {
        match self.store.key_share(index) {
            Ok(Some(bytes)) => scalar_from_bytes(&bytes[..]).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(index, error = %e, "cannot read a key share");
                None
            }
        }
    }

    fn share_epoch(&self) -> u64 {
        // On a read error, claim the newest epoch: nothing is activated
        // twice, and the next block retries.
        self.store.share_epoch().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the epoch of this node's shares");
            u64::MAX
        })
    }

    fn has_next_shares(&self, epoch: u64, batch: u64) -> bool {
        // On a read error, claim them: recovery is retried next block.
        self.store.has_next_shares(epoch, batch).unwrap_or(true)
    }
}

/// What the participant reads and writes: the committed state, this
/// node's key shares, the applied tip it follows, and consensus for its
/// transactions.
pub struct ParticipantHandles {
    /// The committed ledger state.
    pub state: CommittedState,
    /// This node's key shares.
    pub shares: ShareStore,
    /// The applied tip.
    pub tip: AppliedTip,
    /// Consensus submissions.
    pub submitter: TransactionSubmitter,
}

/// Who this node is in the DKG.
pub struct ParticipantIdentity {
    /// Its index in the node set in force (`None` once an epoch it is not
    /// a member of came into force).
    pub index: Option<u16>,
    /// Its ed25519 key, which signs its DKG transactions.
    pub node_key: ed25519::PrivateKey,
    /// Its secp256k1 key, which shares are dealt to.
    pub secp256k1: NonZeroScalar,
}

/// This node's index in the set in force and its DKG role there: the
/// participant under that index, or [`OutsideTheSet`]. A node finds itself
/// by its consensus key (indexes change with the set).
pub fn role_in_force(
    state: &CommittedState,
    node_key: &ed25519::PublicKey,
    secp256k1: NonZeroScalar,
) -> Result<(Option<u16>, Box<dyn DkgRole>), StoreError> {
    let sets = state.node_sets()?;
    let position = sets.current.nodes.iter().position(|node| node.consensus_key == *node_key);
    let index = position.and_then(|position| u16::try_from(position + 1).ok());
    let Some(index) = index else {
        return Ok((None, Box::new(OutsideTheSet)));
    };
    let participant = DkgParticipant::for_set(&sets.current, index, secp256k1)?;
    Ok((Some(index), Box::new(participant)))
}

/// Carries out one action. A storage failure stops the participant (the
/// node can no longer keep its shares safe); a refused submission is
/// logged and retried by the participant later.
fn execute(
    action: DkgAction,
    ledger: &Ledger,
    store: &ShareStore,
    submitter: &TransactionSubmitter,
    identity: &ParticipantIdentity,
) -> Result<(), StoreError> {
    match action {
        DkgAction::Submit(body) => {
            let Some(index) = identity.index else { return Ok(()) };
            let transaction = SignedTransaction::sign_as_node(ledger.network_id(), body, index, &identity.node_key);
            if let Err(e) = submitter.submit(Bytes::from(transaction.encode().to_vec())) {
                tracing::warn!(error = %e, "a DKG transaction was not accepted; it will be sent again");
            }
        }
        DkgAction::StoreBatchShares { batch, shares } => {
            store.put_batch_shares(batch, &encode_pairs(shares.shares()))?;
        }
        DkgAction::AssignBatchShares { batch, first_key } => {
            if let Some(bytes) = store.batch_shares(batch)? {
                let values: Zeroizing<Vec<[u8; 32]>> = Zeroizing::new(
                    bytes
                        .chunks_exact(PAIR_LEN)
                        .map(|pair| {
                            let mut value = [0u8; 32];
                            value.copy_from_slice(&pair[..32]);
                            value
                        })
                        .collect(),
                );
                store.assign_batch_shares(batch, first_key, &values)?;
                tracing::info!(batch, first_key, keys = values.len(), "stored this node's shares of a finished batch");
            }
        }
        DkgAction::DropBatchShares { batch } => {
            store.drop_batch_shares(batch)?;
            tracing::warn!(batch, "dropped this node's shares of an abandoned batch");
        }
        DkgAction::Notice(notice) => log_notice(&notice),
    }
    Ok(())
}

/// Carries out one handover action; an epoch in force makes a DKG
/// participant for this node's index in the new set (or none).
fn execute_handover(
    action: HandoverAction,
    state: &CommittedState,
    store: &ShareStore,
    submitter: &TransactionSubmitter,
    identity: &mut ParticipantIdentity,
    role: &mut Box<dyn DkgRole>,
) -> Result<(), StoreError> {
    let ledger = state.ledger();
    match action {
        HandoverAction::Submit { index, body } => {
            let transaction = SignedTransaction::sign_as_node(ledger.network_id(), body, index, &identity.node_key);
            if let Err(e) = submitter.submit(Bytes::from(transaction.encode().to_vec())) {
                tracing::warn!(error = %e, "a handover transaction was not accepted; it will be sent again");
            }
        }
        HandoverAction::StoreNextShares { epoch, batch, first_key, shares } => {
            let bytes: Zeroizing<Vec<[u8; 32]>> = Zeroizing::new(shares.iter().map(scalar_to_bytes).collect());
            store.put_next_shares(epoch, batch, first_key, &bytes)?;
            tracing::info!(epoch, batch, first_key, keys = bytes.len(), "stored this node's shares for the next epoch");
        }
        HandoverAction::ActivateEpoch { epoch, index } => {
            let held = store.activate_epoch(epoch, index.is_some())?;
            match index {
                Some(index) => {
                    tracing::info!(epoch, index, key_shares = held, "epoch in force: this node's new shares serve");
                    if identity.index != Some(index) {
                        let current = state
                            .node_sets()
                            .map_err(|e| StoreError::Open { path: "ledger state".to_owned(), reason: e.to_string() })?;
                        match DkgParticipant::for_set(&current.current, index, identity.secp256k1) {
                            Ok(participant) => *role = Box::new(participant),
                            Err(e) => tracing::error!(error = %e, "cannot take part in the new epoch's DKG"),
                        }
                    }
                    identity.index = Some(index);
                }
                None => {
                    // A node that held no index was never in a set it
                    // replayed (it joins later): nothing of it was deleted.
                    if identity.index.is_some() {
                        tracing::warn!(epoch, "epoch in force without this node: every key share it held is deleted");
                    } else {
                        tracing::info!(epoch, "epoch in force without this node (it is not in that set)");
                    }
                    identity.index = None;
                    *role = Box::new(OutsideTheSet);
                }
            }
        }
        HandoverAction::Notice(notice) => match notice {
            HandoverNotice::CannotDeal { batch, reason } => {
                tracing::warn!(batch, reason, "cannot deal in a reshare batch; the other old nodes deal")
            }
            HandoverNotice::Complaining { batch, dealer, fault } => {
                tracing::warn!(batch, dealer, fault, "complaining about a reshare dealer")
            }
            HandoverNotice::SittingOut { batch, reason } => tracing::error!(
                batch,
                reason,
                "this node holds no next-epoch shares of a reshare batch (the others rebuild every key)"
            ),
        },
    }
    Ok(())
}

/// The participant's notices, in the node's log.
fn log_notice(notice: &DkgNotice) {
    match notice {
        DkgNotice::Recovered { batch } => {
            tracing::info!(batch, "recovered this node's shares of a batch that finished while it was away");
        }
        DkgNotice::CannotDeal { batch, reason } => tracing::error!(batch, error = %reason, "cannot build a dealing"),
        DkgNotice::Complaining { batch, dealer, fault } => {
            tracing::warn!(batch, dealer, fault, "complaining about a dealer");
        }
        DkgNotice::CannotComplain { batch, dealer, reason } => {
            tracing::error!(batch, dealer, error = %reason, "cannot build a complaint");
        }
        DkgNotice::SittingOut { batch, dealer, fault } => tracing::error!(
            batch,
            dealer,
            fault,
            "a qualified dealer's shares to this node are wrong; this node sits the batch out"
        ),
    }
}

/// Runs the participant until the store fails: acts on the current state
/// at once (a restarted node resumes), then after every applied block
/// (skipping heights that went by while it worked: it acts on the latest
/// state). `now_ms` reads the clock (milliseconds since the Unix epoch).
pub async fn run_participant<R: CryptoRng + Send>(
    ParticipantHandles { state, shares: store, tip, submitter }: ParticipantHandles,
    mut identity: ParticipantIdentity,
    mut role: Box<dyn DkgRole>,
    mut rng: R,
    now_ms: impl Fn() -> u64 + Send,
) {
    let mut handover = HandoverParticipant::new(identity.secp256k1);
    let mut next = 0;
    loop {
        let height = tip.wait_for(next).await.height;
        next = height + 1;
        if state.halted().is_some() {
            return;
        }
        let snapshot = match state.snapshot() {
            Ok(snapshot) => snapshot,
            Err(e) => {
                tracing::error!(error = %e, "DKG participant stopped: cannot read the ledger state");
                return;
            }
        };
        let shares = StoredShares { store: &store };
        let now = now_ms();
        let actions = match handover.on_block(state.ledger(), &snapshot, height, now, &shares, &mut rng) {
            Ok(actions) => actions,
            Err(e) => {
                tracing::error!(error = %e, "handover participant stopped: the ledger state is unreadable");
                return;
            }
        };
        for action in actions {
            if let Err(e) = execute_handover(action, &state, &store, &submitter, &mut identity, &mut role) {
                tracing::error!(error = %e, "DKG participant stopped: cannot persist key shares");
                return;
            }
        }
        if identity.index.is_none() {
            continue;
        }
        let actions = match role.on_block(state.ledger(), &snapshot, height, now, &shares, &mut rng) {
            Ok(actions) => actions,
            Err(e) => {
                tracing::error!(error = %e, "DKG participant stopped: the ledger state is unreadable");
                return;
            }
        };
        drop(snapshot);
        for action in actions {
            if let Err(e) = execute(action, state.ledger(), &store, &submitter, &identity) {
                tracing::error!(error = %e, "DKG participant stopped: cannot persist key shares");
                return;
            }
        }
        if let Err(e) = role.prepare(state.ledger(), &mut rng) {
            tracing::error!(error = %e, "DKG participant stopped: cannot prepare a dealing");
            return;
        }
    }
}
