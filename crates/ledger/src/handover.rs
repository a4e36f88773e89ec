//! Handing every key over to the next epoch's node set, in the state
//! machine, as a deterministic function of the finalized log (the
//! protocol: `docs/dkg.md`, "Resharing").
//!
//! Once the operators' `ProposeEpoch` is applied, the handover is
//! **draining**: the DKG opens no new batch, and the batches in flight
//! finish, so that the keys to hand over, `0..next_key`, are fixed. It is
//! then **resharing**: the keys go over in batches of `K` consecutive
//! indexes; in each, old nodes deal (`ReshareDeal`) until `t` dealings
//! stand, new nodes respond with their complaints (`ReshareResponse`),
//! which are judged as they are applied, and when every new node responded
//! or the phase's deadline passed, the `t` lowest standing dealers form the
//! qualified set and the state machine computes every new public share,
//! checking each public key unchanged. If complaints leave fewer than `t`
//! dealers standing, the batch deals again (old nodes that have not dealt
//! top up). A batch is never abandoned: a handover waits for `t` old nodes.
//! Once every batch finished the handover is **ready**, and the new set
//! takes over at the first boundary height (a multiple of the genesis's
//! `boundary_blocks`, where consensus changes its validator set).
//! Assignments go on throughout; keys assigned meanwhile come from the
//! pool, whose keys are being handed over too.

use bytes::BufMut;
use commonware_codec::{Buf, Copying, Decode, Encode, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write};
use quorumkey_crypto::group::{AffinePoint, point_from_bytes};
use quorumkey_dkg::reshare::{
    ReshareContext, ReshareDealing, ReshareDealingBounds, ReshareParams, adjudicate_reshare, handover_keys,
};
use quorumkey_dkg::{Complaint, Verdict};

use crate::dkg::DkgEvent;
use crate::epoch::NodeSet;
use crate::genesis::{DEALING_BUDGET, DkgSettings, Genesis, MAX_NODES};
use crate::machine::{Effect, LedgerError, Rejection, parse_counter, parse_record};
use crate::state::{Overlay, StateRead, Table, state_key};
use crate::types::{KeyRecord, PointBytes};

/// The node set in force (absent: the genesis set).
pub(crate) const META_NODE_SET: &[u8] = b"epoch_nodes";
/// The handover to the next epoch, while one runs.
pub(crate) const META_HANDOVER: &[u8] = b"epoch_handover";
/// What is left to delete of the last epoch: its public shares and
/// reshare records.
const META_PRUNE: &[u8] = b"epoch_prune";
/// The first height of the epoch in force (absent: 0, the genesis's).
const META_EPOCH_STARTED: &[u8] = b"epoch_started";
/// The handover that made the epoch in force, with the set before it,
/// while its records are kept after the boundary ([`LastHandover`]).
const META_LAST_HANDOVER: &[u8] = b"epoch_last_handover";
/// Most keys a reshare batch hands over (a handover's batches are the
/// DKG's size, and no larger than this or than fits a transaction).
pub const MAX_RESHARE_BATCH_KEYS: u16 = 512;
/// Blocks a finished reshare batch's dealings stay in the state, so that a
/// new node that was away can still decrypt its shares.
pub const RESHARE_DEALING_RETENTION_BLOCKS: u64 = 64;
/// Entries the pruning of a past epoch deletes per block.
const PRUNE_PER_BLOCK: u64 = 4096;

/// Where a handover stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandoverStage {
    /// Waiting for the DKG's batches in flight to end; no new one opens.
    Draining,
    /// Handing keys `0..keys` over in batches of `batch_keys`.
    Resharing {
        /// Keys to hand over.
        keys: u64,
        /// Keys per batch `K` (the last batch may be shorter).
        batch_keys: u16,
        /// Batches opened so far.
        next_batch: u64,
        /// The lowest batch not finished.
        oldest_open: u64,
        /// The lowest batch whose dealings are still kept.
        oldest_unpruned: u64,
    },
    /// Every key is handed over; the next set takes over at `boundary`.
    Ready {
        /// Keys handed over.
        keys: u64,
        /// Keys per batch.
        batch_keys: u16,
        /// The lowest batch whose dealings are still kept (new nodes that
        /// were away recover their shares from them until the boundary).
        oldest_unpruned: u64,
        /// The first height the next set serves.
        boundary: u64,
    },
}

/// A handover in the replicated state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoverRecord {
    /// The next epoch's set.
    pub next: NodeSet,
    /// Height of the block that decided it.
    pub decided_height: u64,
    /// Where it stands.
    pub stage: HandoverStage,
}

/// Where a reshare batch stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResharePhase {
    /// Waiting for `t` standing dealings from old nodes.
    Dealing,
    /// Waiting for new nodes' complaints.
    Responding,
    /// Handed over: the new public shares are in the state.
    Finished,
}

/// A reshare batch's bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReshareBatchRecord {
    /// Where it stands.
    pub phase: ResharePhase,
    /// Height at which the phase began (or the batch finished).
    pub phase_height: u64,
    /// Block time at which the phase began.
    pub phase_time_ms: u64,
    /// Old nodes whose dealing was accepted.
    pub dealt: Vec<u16>,
    /// New nodes that posted their complaints (this round).
    pub responded: Vec<u16>,
    /// Old dealers with an upheld complaint.
    pub disqualified: Vec<u16>,
    /// The qualified dealers (fixed when the batch finishes).
    pub qualified: Vec<u16>,
}

impl ReshareBatchRecord {
    fn new(height: u64, time_ms: u64) -> Self {
        Self {
            phase: ResharePhase::Dealing,
            phase_height: height,
            phase_time_ms: time_ms,
            dealt: Vec::new(),
            responded: Vec::new(),
            disqualified: Vec::new(),
            qualified: Vec::new(),
        }
    }

    /// Dealers with a dealing and no upheld complaint, lowest first.
    pub fn standing(&self) -> Vec<u16> {
        self.dealt.iter().copied().filter(|d| !self.disqualified.contains(d)).collect()
    }

    /// True if this dealing round tops up dealings lost to complaints.
    pub fn topping_up(&self) -> bool {
        self.phase == ResharePhase::Dealing && !self.disqualified.is_empty()
    }
}

fn insert_sorted(set: &mut Vec<u16>, node: u16) {
    if let Err(position) = set.binary_search(&node) {
        set.insert(position, node);
    }
}

/// The keys of reshare batch `batch`: `first..first + count`.
pub fn batch_keys_range(keys: u64, batch_keys: u16, batch: u64) -> (u64, u16) {
    let first = batch.saturating_mul(u64::from(batch_keys));
    let count = keys.saturating_sub(first).min(u64::from(batch_keys));
    (first, u16::try_from(count).unwrap_or(batch_keys))
}

/// Key of a per-epoch, per-batch entry.
fn epoch_batch_key(epoch: u64, batch: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&epoch.to_be_bytes());
    key[8..].copy_from_slice(&batch.to_be_bytes());
    key
}

fn epoch_batch_node_key(epoch: u64, batch: u64, node: u16) -> [u8; 18] {
    let mut key = [0u8; 18];
    key[..16].copy_from_slice(&epoch_batch_key(epoch, batch));
    key[16..].copy_from_slice(&node.to_be_bytes());
    key
}

/// Key of a key's public shares in an epoch.
pub(crate) fn epoch_key_key(epoch: u64, key: u64) -> [u8; 16] {
    epoch_batch_key(epoch, key)
}

/// The decoding bounds of a stored or submitted reshare dealing.
pub(crate) fn dealing_bounds() -> ReshareDealingBounds {
    ReshareDealingBounds { max_recipients: MAX_NODES, max_bytes: crate::machine::MAX_TRANSACTION_LEN }
}

/// What is left to delete of a past epoch, from height `not_before` on:
/// its batches and dealings stay [`RESHARE_DEALING_RETENTION_BLOCKS`]
/// after the boundary, so that a node whose participant was behind (or
/// down) at the boundary still stores its shares of the last batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PruneCursor {
    epoch: u64,
    next_key: u64,
    keys: u64,
    next_batch: u64,
    batches: u64,
    not_before: u64,
}

/// The handover that made the epoch in force, and the set before it, kept
/// until the boundary's grace period ends: what a node needs to store the
/// shares it had not stored when the new epoch came into force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastHandover {
    /// The set that dealt.
    pub previous: NodeSet,
    /// The handover, in its ready stage.
    pub handover: HandoverRecord,
}

impl Write for LastHandover {
    fn write(&self, buf: &mut impl BufMut) {
        self.previous.write(buf);
        self.handover.write(buf);
    }
}

impl EncodeSize for LastHandover {
    fn encode_size(&self) -> usize {
        self.previous.encode_size() + self.handover.encode_size()
    }
}

impl Read for LastHandover {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self { previous: NodeSet::read(buf)?, handover: HandoverRecord::read(buf)? })
    }
}

/// The node set in force in `state`.
pub(crate) fn current_set<S: StateRead + ?Sized>(
    overlay: &Overlay<'_, S>,
    genesis: &Genesis,
) -> Result<NodeSet, LedgerError> {
    Ok(parse_record(overlay.get(Table::Meta, META_NODE_SET)?, &(), "the node set does not decode")?
        .unwrap_or_else(|| NodeSet::from_genesis(genesis)))
}

/// The number of the epoch in force, without decoding its nodes (a node
/// set's encoding starts with its epoch, 8 bytes big-endian): what every
/// key lookup of a login needs.
pub(crate) fn current_epoch<S: StateRead + ?Sized>(overlay: &Overlay<'_, S>) -> Result<u64, LedgerError> {
    match overlay.get(Table::Meta, META_NODE_SET)? {
        None => Ok(0),
        Some(bytes) => bytes
            .get(..8)
            .and_then(|prefix| <[u8; 8]>::try_from(prefix).ok())
            .map(u64::from_be_bytes)
            .ok_or(LedgerError::CorruptState("the node set does not decode")),
    }
}

/// The handover under way in `state`, if any.
pub(crate) fn read_handover<S: StateRead + ?Sized>(
    overlay: &Overlay<'_, S>,
) -> Result<Option<HandoverRecord>, LedgerError> {
    parse_record(overlay.get(Table::Meta, META_HANDOVER)?, &(), "the handover record does not decode")
}

fn write_handover<S: StateRead + ?Sized>(overlay: &mut Overlay<'_, S>, record: &HandoverRecord) {
    overlay.put(Table::Meta, META_HANDOVER, record.encode().to_vec());
}

/// Key `index`'s record with the public shares of the epoch in force: the
/// shares its latest handover computed, or (for a key made in the current
/// epoch, which no handover touched yet) the ones it was made with.
pub(crate) fn key_record<S: StateRead + ?Sized>(
    overlay: &Overlay<'_, S>,
    epoch: u64,
    index: u64,
) -> Result<Option<KeyRecord>, LedgerError> {
    let Some(mut record) = parse_record::<KeyRecord>(
        overlay.get(Table::Keys, &index.to_be_bytes())?,
        &MAX_NODES,
        "a key record does not decode",
    )?
    else {
        return Ok(None);
    };
    if epoch > 0
        && let Some(shares) = overlay.get(Table::PublicShares, &epoch_key_key(epoch, index))?
    {
        record.public_shares = Vec::<PointBytes>::decode_cfg(Copying(&shares), &(RangeCfg::new(1..=MAX_NODES), ()))
            .map_err(|_| LedgerError::CorruptState("a key's public shares do not decode"))?;
    }
    Ok(Some(record))
}

/// A running handover, its key count and batch size, and one of its open
/// batches.
type OpenBatch = (HandoverRecord, u64, u16, ReshareBatchRecord);

/// The handover half of the state machine.
#[derive(Clone, Debug)]
pub(crate) struct HandoverMachine {
    pub(crate) network_id: [u8; 32],
    pub(crate) settings: DkgSettings,
    pub(crate) boundary_blocks: u64,
    pub(crate) refresh_blocks: u64,
}

impl HandoverMachine {
    /// The shape of batch `batch` of a handover from `current` to `next`.
    pub(crate) fn params(
        current: &NodeSet,
        next: &NodeSet,
        keys: u64,
        batch_keys: u16,
        batch: u64,
    ) -> Option<ReshareParams> {
        let (_, count) = batch_keys_range(keys, batch_keys, batch);
        ReshareParams::new(current.size(), next.size(), count).ok()
    }

    /// The batch size of a handover between these sets: the DKG's batch
    /// size, within what fits a dealing's transaction and
    /// [`MAX_RESHARE_BATCH_KEYS`].
    pub(crate) fn batch_keys(&self, current: &NodeSet, next: &NodeSet) -> u16 {
        ReshareParams::largest_fitting(current.size(), next.size(), DEALING_BUDGET)
            .map_or(1, |p| p.keys().min(MAX_RESHARE_BATCH_KEYS).min(self.settings.batch_keys.max(1)))
    }

    /// The context of a batch of the handover into `next`.
    pub(crate) fn context(
        &self,
        current: &NodeSet,
        next: &NodeSet,
        keys: u64,
        batch_keys: u16,
        batch: u64,
    ) -> Option<ReshareContext> {
        let params = Self::params(current, next, keys, batch_keys, batch)?;
        let (first, _) = batch_keys_range(keys, batch_keys, batch);
        Some(ReshareContext::new(self.network_id, next.epoch, batch, first, params))
    }

    fn read_batch<S: StateRead + ?Sized>(
        overlay: &Overlay<'_, S>,
        epoch: u64,
        batch: u64,
    ) -> Result<Option<ReshareBatchRecord>, LedgerError> {
        parse_record(
            overlay.get(Table::ReshareBatches, &epoch_batch_key(epoch, batch))?,
            &(),
            "a reshare batch record does not decode",
        )
    }

    fn write_batch<S: StateRead + ?Sized>(
        overlay: &mut Overlay<'_, S>,
        epoch: u64,
        batch: u64,
        record: &ReshareBatchRecord,
    ) {
        overlay.put(Table::ReshareBatches, &epoch_batch_key(epoch, batch), record.encode().to_vec());
    }

    fn read_dealing<S: StateRead + ?Sized>(
        overlay: &Overlay<'_, S>,
        epoch: u64,
        batch: u64,
        dealer: u16,
    ) -> Result<ReshareDealing, LedgerError> {
        parse_record(
            overlay.get(Table::ReshareDealings, &epoch_batch_node_key(epoch, batch, dealer))?,
            &dealing_bounds(),
            "a stored reshare dealing does not decode",
        )?
        .ok_or(LedgerError::CorruptState("an accepted reshare dealing is missing"))
    }

    /// Dealer `dealer`'s public shares of keys `first..first + count` in
    /// the epoch in force.
    fn old_public_shares<S: StateRead + ?Sized>(
        overlay: &Overlay<'_, S>,
        epoch: u64,
        dealer: u16,
        first: u64,
        count: u16,
    ) -> Result<Vec<AffinePoint>, LedgerError> {
        let position = usize::from(dealer).checked_sub(1).ok_or(LedgerError::CorruptState("dealer index 0"))?;
        (first..first + u64::from(count))
            .map(|index| {
                let record = key_record(overlay, epoch, index)?
                    .ok_or(LedgerError::CorruptState("a key to hand over has no record"))?;
                let share = record
                    .public_shares
                    .get(position)
                    .ok_or(LedgerError::CorruptState("a key lacks a public share of a node in force"))?;
                point_from_bytes("public share", share)
                    .map(|p| p.to_affine())
                    .map_err(|_| LedgerError::CorruptState("a stored public share is not a point"))
            })
            .collect()
    }

    /// `ProposeEpoch`, its operators' signatures already checked.
    pub(crate) fn apply_propose<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
        current: &NodeSet,
        height: u64,
        next: NodeSet,
    ) -> Result<Result<Effect, Rejection>, LedgerError> {
        if let Some(running) = read_handover(overlay)? {
            return Ok(Err(Rejection::Epoch(format!(
                "the handover to epoch {} is under way; propose the next change after it",
                running.next.epoch
            ))));
        }
        if next.epoch != current.epoch + 1 {
            return Ok(Err(Rejection::Epoch(format!(
                "epoch {} proposed, but the next epoch is {}",
                next.epoch,
                current.epoch + 1
            ))));
        }
        if overlay.get(Table::Meta, META_PRUNE)?.is_some() {
            return Ok(Err(Rejection::Epoch(format!(
                "epoch {} began less than {RESHARE_DEALING_RETENTION_BLOCKS} blocks ago and its handover's records are still kept; propose again later",
                current.epoch
            ))));
        }
        if let Err(e) = next.validate() {
            return Ok(Err(Rejection::Epoch(e.to_string())));
        }
        let epoch = next.epoch;
        write_handover(overlay, &HandoverRecord { next, decided_height: height, stage: HandoverStage::Draining });
        Ok(Ok(Effect::EpochProposed { epoch }))
    }

    /// A running handover's resharing stage, or why a message for it is
    /// out of place.
    fn resharing<S: StateRead + ?Sized>(
        overlay: &Overlay<'_, S>,
        epoch: u64,
        batch: u64,
    ) -> Result<Result<OpenBatch, Rejection>, LedgerError> {
        let Some(handover) = read_handover(overlay)? else {
            return Ok(Err(Rejection::Epoch("no handover is under way".to_owned())));
        };
        if handover.next.epoch != epoch {
            return Ok(Err(Rejection::Epoch(format!(
                "the handover under way is to epoch {}, not {epoch}",
                handover.next.epoch
            ))));
        }
        let HandoverStage::Resharing { keys, batch_keys, .. } = handover.stage else {
            return Ok(Err(Rejection::Epoch(format!("the handover to epoch {epoch} is not resharing"))));
        };
        let Some(record) = Self::read_batch(overlay, epoch, batch)? else {
            return Ok(Err(Rejection::Epoch(format!("reshare batch {batch} is not open"))));
        };
        Ok(Ok((handover, keys, batch_keys, record)))
    }

    /// `ReshareDeal` by old node `signer` (its signature checked).
    pub(crate) fn apply_deal<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
        current: &NodeSet,
        signer: u16,
        epoch: u64,
        batch: u64,
        dealing: &ReshareDealing,
    ) -> Result<Result<Effect, Rejection>, LedgerError> {
        let (handover, keys, batch_keys, mut record) = match Self::resharing(overlay, epoch, batch)? {
            Ok(found) => found,
            Err(rejection) => return Ok(Err(rejection)),
        };
        if record.phase != ResharePhase::Dealing {
            return Ok(Err(Rejection::Epoch(format!("reshare batch {batch} is not dealing"))));
        }
        if record.dealt.contains(&signer) {
            return Ok(Err(Rejection::Epoch(format!("node {signer} already dealt in reshare batch {batch}"))));
        }
        if record.standing().len() >= current.threshold() {
            return Ok(Err(Rejection::Epoch(format!("reshare batch {batch} has all the dealings it takes"))));
        }
        let Some(context) = self.context(current, &handover.next, keys, batch_keys, batch) else {
            return Err(LedgerError::CorruptState("a reshare batch has no shape"));
        };
        if let Err(e) = dealing.parse(&context, signer) {
            return Ok(Err(Rejection::Epoch(format!("invalid reshare dealing: {e}"))));
        }
        overlay.put(Table::ReshareDealings, &epoch_batch_node_key(epoch, batch, signer), dealing.encode().to_vec());
        insert_sorted(&mut record.dealt, signer);
        Self::write_batch(overlay, epoch, batch, &record);
        Ok(Ok(Effect::ReshareDealingAccepted { epoch, batch }))
    }

    /// `ReshareResponse` by new node `signer` (its signature checked
    /// against the next set): each complaint judged as it is applied.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply_response<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
        current: &NodeSet,
        signer: u16,
        epoch: u64,
        batch: u64,
        complaints: &[Complaint],
    ) -> Result<Result<Effect, Rejection>, LedgerError> {
        let (handover, keys, batch_keys, mut record) = match Self::resharing(overlay, epoch, batch)? {
            Ok(found) => found,
            Err(rejection) => return Ok(Err(rejection)),
        };
        if record.phase != ResharePhase::Responding {
            return Ok(Err(Rejection::Epoch(format!("reshare batch {batch} is not taking responses"))));
        }
        if record.responded.contains(&signer) {
            return Ok(Err(Rejection::Epoch(format!("node {signer} already responded in reshare batch {batch}"))));
        }
        let mut accused: Vec<u16> = complaints.iter().map(|c| c.dealer).collect();
        accused.sort_unstable();
        if accused.windows(2).any(|pair| pair[0] == pair[1]) {
            return Ok(Err(Rejection::Epoch("two complaints against one dealer".to_owned())));
        }
        if let Some(unknown) = accused.iter().find(|dealer| !record.dealt.contains(dealer)) {
            return Ok(Err(Rejection::Epoch(format!("complaint against node {unknown}, which has no dealing"))));
        }
        let Some(context) = self.context(current, &handover.next, keys, batch_keys, batch) else {
            return Err(LedgerError::CorruptState("a reshare batch has no shape"));
        };
        let Some(recipient_key) =
            handover.next.node(signer).and_then(|node| point_from_bytes("secp256k1 key", &node.secp256k1_key).ok())
        else {
            return Ok(Err(Rejection::UnknownNode(signer)));
        };
        let (first, count) = batch_keys_range(keys, batch_keys, batch);
        let mut upheld = 0u16;
        for complaint in complaints {
            if record.disqualified.contains(&complaint.dealer) {
                continue;
            }
            let dealing = Self::read_dealing(overlay, epoch, batch, complaint.dealer)?;
            let parsed = dealing
                .parse_accepted(context.params())
                .map_err(|_| LedgerError::CorruptState("an accepted reshare dealing no longer parses"))?;
            let old = Self::old_public_shares(overlay, current.epoch, complaint.dealer, first, count)?;
            if let Verdict::DealerFaulty(_) = adjudicate_reshare(
                &context,
                complaint.dealer,
                &dealing,
                &parsed,
                &old,
                signer,
                &recipient_key,
                complaint,
            ) {
                insert_sorted(&mut record.disqualified, complaint.dealer);
                upheld += 1;
            }
        }
        insert_sorted(&mut record.responded, signer);
        Self::write_batch(overlay, epoch, batch, &record);
        Ok(Ok(Effect::ReshareResponseAccepted { epoch, batch, upheld }))
    }

    /// End of block: move the handover along and, at the boundary, put the
    /// next set in force. Returns the events and whether the DKG may open
    /// batches (not while a handover runs).
    pub(crate) fn end_block<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
        genesis: &Genesis,
        height: u64,
        time_ms: u64,
        dkg_idle: bool,
    ) -> Result<(Vec<DkgEvent>, bool), LedgerError> {
        let mut events = Vec::new();
        self.prune(overlay, height)?;
        let current = current_set(overlay, genesis)?;
        let Some(mut handover) = read_handover(overlay)? else {
            // A scheduled refresh: a handover to the same set, decided by
            // the ledger itself once the epoch has lasted long enough.
            let started = parse_counter(overlay.get(Table::Meta, META_EPOCH_STARTED)?)?;
            let cleaning = overlay.get(Table::Meta, META_PRUNE)?.is_some();
            if self.refresh_blocks > 0 && !cleaning && height >= started.saturating_add(self.refresh_blocks) {
                let next = NodeSet { epoch: current.epoch + 1, nodes: current.nodes.clone() };
                events.push(DkgEvent::RefreshScheduled { epoch: next.epoch });
                write_handover(
                    overlay,
                    &HandoverRecord { next, decided_height: height, stage: HandoverStage::Draining },
                );
                return Ok((events, false));
            }
            return Ok((events, true));
        };
        let epoch = handover.next.epoch;
        if handover.stage == HandoverStage::Draining && dkg_idle {
            let keys = parse_counter(overlay.get(Table::Meta, crate::machine::META_NEXT_KEY)?)?;
            let batch_keys = self.batch_keys(&current, &handover.next);
            let batches = keys.div_ceil(u64::from(batch_keys));
            events.push(DkgEvent::HandoverStarted { epoch, keys, batches });
            handover.stage =
                HandoverStage::Resharing { keys, batch_keys, next_batch: 0, oldest_open: 0, oldest_unpruned: 0 };
        }
        if let HandoverStage::Resharing { keys, batch_keys, mut next_batch, mut oldest_open, mut oldest_unpruned } =
            handover.stage
        {
            let batches = keys.div_ceil(u64::from(batch_keys));
            let mut in_flight = 0u64;
            let mut dealing = false;
            let mut lowest_open = next_batch;
            for batch in oldest_open..next_batch {
                let Some(mut record) = Self::read_batch(overlay, epoch, batch)? else {
                    return Err(LedgerError::CorruptState("an open reshare batch has no record"));
                };
                if record.phase != ResharePhase::Finished {
                    if let Some(event) = self.advance(
                        overlay,
                        &current,
                        &handover.next,
                        keys,
                        batch_keys,
                        batch,
                        &mut record,
                        height,
                        time_ms,
                    )? {
                        events.push(event);
                    }
                    Self::write_batch(overlay, epoch, batch, &record);
                }
                if record.phase != ResharePhase::Finished {
                    lowest_open = lowest_open.min(batch);
                    in_flight += 1;
                    dealing |= record.phase == ResharePhase::Dealing;
                }
            }
            oldest_open = lowest_open;
            // Dealings of batches finished long enough ago.
            while oldest_unpruned < oldest_open {
                let Some(record) = Self::read_batch(overlay, epoch, oldest_unpruned)? else {
                    return Err(LedgerError::CorruptState("a finished reshare batch has no record"));
                };
                if height < record.phase_height.saturating_add(RESHARE_DEALING_RETENTION_BLOCKS) {
                    break;
                }
                for dealer in &record.dealt {
                    overlay.delete(Table::ReshareDealings, &epoch_batch_node_key(epoch, oldest_unpruned, *dealer));
                }
                oldest_unpruned += 1;
            }
            if next_batch < batches && !dealing && in_flight < u64::from(self.settings.max_batches_in_flight) {
                Self::write_batch(overlay, epoch, next_batch, &ReshareBatchRecord::new(height, time_ms));
                events.push(DkgEvent::ReshareBatchOpened { epoch, batch: next_batch });
                next_batch += 1;
            }
            handover.stage = if next_batch == batches && oldest_open >= batches {
                let boundary = (height / self.boundary_blocks + 1) * self.boundary_blocks;
                events.push(DkgEvent::HandoverFinished { epoch, boundary });
                // The dealings left are pruned with the epoch's records.
                HandoverStage::Ready { keys, batch_keys, oldest_unpruned, boundary }
            } else {
                HandoverStage::Resharing { keys, batch_keys, next_batch, oldest_open, oldest_unpruned }
            };
        }
        if let HandoverStage::Ready { keys, batch_keys, boundary, .. } = handover.stage
            && height + 1 >= boundary
        {
            let batches = keys.div_ceil(u64::from(batch_keys));
            overlay.put(Table::Meta, META_NODE_SET, handover.next.encode().to_vec());
            overlay.delete(Table::Meta, META_HANDOVER);
            overlay.put(Table::Meta, META_EPOCH_STARTED, (height + 1).to_be_bytes().to_vec());
            let last = LastHandover { previous: current.clone(), handover: handover.clone() };
            overlay.put(Table::Meta, META_LAST_HANDOVER, last.encode().to_vec());
            let cursor = PruneCursor {
                epoch: current.epoch,
                next_key: 0,
                keys,
                next_batch: 0,
                batches,
                not_before: height + 1 + RESHARE_DEALING_RETENTION_BLOCKS,
            };
            // The new epoch's records stay; the old epoch's go, a bounded
            // number per block (epoch 0's shares are in the key records,
            // which the new ones shadow).
            let mut pending = Vec::with_capacity(56);
            cursor.write(&mut pending, epoch);
            overlay.put(Table::Meta, META_PRUNE, pending);
            events.push(DkgEvent::EpochStarted { epoch, height: height + 1 });
            return Ok((events, true));
        }
        write_handover(overlay, &handover);
        Ok((events, false))
    }

    #[allow(clippy::too_many_arguments)]
    fn advance<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
        current: &NodeSet,
        next: &NodeSet,
        keys: u64,
        batch_keys: u16,
        batch: u64,
        record: &mut ReshareBatchRecord,
        height: u64,
        time_ms: u64,
    ) -> Result<Option<DkgEvent>, LedgerError> {
        let t = current.threshold();
        let deadline = height >= record.phase_height.saturating_add(u64::from(self.phase_min_blocks(current, next)))
            && time_ms >= record.phase_time_ms.saturating_add(self.settings.phase_min_ms);
        match record.phase {
            // A handover never gives a batch up: it waits for t dealers.
            ResharePhase::Dealing if record.standing().len() >= t => {
                record.phase = ResharePhase::Responding;
                record.phase_height = height;
                record.phase_time_ms = time_ms;
                Ok(None)
            }
            ResharePhase::Responding if record.responded.len() == next.len() || deadline => {
                let standing = record.standing();
                if standing.len() < t {
                    record.responded.clear();
                    record.phase = ResharePhase::Dealing;
                    record.phase_height = height;
                    record.phase_time_ms = time_ms;
                    return Ok(None);
                }
                // The t lowest standing dealers: with the designated ones
                // {1..t}, every Lagrange coefficient is a small integer.
                let qualified: Vec<u16> = standing[..t].to_vec();
                let Some(context) = self.context(current, next, keys, batch_keys, batch) else {
                    return Err(LedgerError::CorruptState("a reshare batch has no shape"));
                };
                let (first, count) = batch_keys_range(keys, batch_keys, batch);
                let mut dealings = Vec::with_capacity(t);
                for dealer in &qualified {
                    let dealing = Self::read_dealing(overlay, next.epoch, batch, *dealer)?;
                    let parsed = dealing
                        .parse_accepted(context.params())
                        .map_err(|_| LedgerError::CorruptState("an accepted reshare dealing no longer parses"))?;
                    let old = Self::old_public_shares(overlay, current.epoch, *dealer, first, count)?;
                    dealings.push((*dealer, parsed, old));
                }
                let mut public_keys = Vec::with_capacity(usize::from(count));
                for index in first..first + u64::from(count) {
                    let record = key_record(overlay, current.epoch, index)?
                        .ok_or(LedgerError::CorruptState("a key to hand over has no record"))?;
                    public_keys.push(
                        point_from_bytes("public key", &record.public_key)
                            .map(|p| p.to_affine())
                            .map_err(|_| LedgerError::CorruptState("a stored public key is not a point"))?,
                    );
                }
                let qualified_refs: Vec<_> = dealings.iter().map(|(d, p, o)| (*d, p, o.as_slice())).collect();
                let handed = handover_keys(context.params(), &qualified_refs, &public_keys).map_err(|_| {
                    LedgerError::CorruptState("the recorded public shares of a key are not on one polynomial")
                })?;
                for (offset, key) in handed.iter().enumerate() {
                    overlay.put(
                        Table::PublicShares,
                        &epoch_key_key(next.epoch, first + offset as u64),
                        key.public_shares.encode().to_vec(),
                    );
                }
                record.qualified = qualified.clone();
                record.phase = ResharePhase::Finished;
                record.phase_height = height;
                record.phase_time_ms = time_ms;
                Ok(Some(DkgEvent::ReshareBatchFinished {
                    epoch: next.epoch,
                    batch,
                    first_key: first,
                    keys: u64::from(count),
                    qualified,
                }))
            }
            _ => Ok(None),
        }
    }

    /// A phase's least length in blocks: the DKG's setting, and at least
    /// `f + 2` of the larger set (a censored message must get in).
    fn phase_min_blocks(&self, current: &NodeSet, next: &NodeSet) -> u32 {
        let larger = current.len().max(next.len()) as u32;
        self.settings.phase_min_blocks.max(larger.saturating_sub(1) / 3 + 2)
    }

    /// Deletes a bounded part of the last epoch's public shares and reshare
    /// records.
    fn prune<S: StateRead + ?Sized>(&self, overlay: &mut Overlay<'_, S>, height: u64) -> Result<(), LedgerError> {
        let Some(bytes) = overlay.get(Table::Meta, META_PRUNE)? else {
            return Ok(());
        };
        let (mut cursor, new_epoch) = PruneCursor::read(&bytes)?;
        if height < cursor.not_before {
            return Ok(());
        }
        let mut budget = PRUNE_PER_BLOCK;
        while budget > 0 && cursor.next_key < cursor.keys {
            if cursor.epoch > 0 {
                overlay.delete(Table::PublicShares, &epoch_key_key(cursor.epoch, cursor.next_key));
            }
            cursor.next_key += 1;
            budget -= 1;
        }
        while budget > 0 && cursor.next_batch < cursor.batches {
            if let Some(record) = Self::read_batch(overlay, new_epoch, cursor.next_batch)? {
                for dealer in &record.dealt {
                    overlay
                        .delete(Table::ReshareDealings, &epoch_batch_node_key(new_epoch, cursor.next_batch, *dealer));
                }
                overlay.delete(Table::ReshareBatches, &epoch_batch_key(new_epoch, cursor.next_batch));
            }
            cursor.next_batch += 1;
            budget -= 1;
        }
        if cursor.next_key >= cursor.keys && cursor.next_batch >= cursor.batches {
            overlay.delete(Table::Meta, META_PRUNE);
            overlay.delete(Table::Meta, META_LAST_HANDOVER);
        } else {
            let mut pending = Vec::with_capacity(56);
            cursor.write(&mut pending, new_epoch);
            overlay.put(Table::Meta, META_PRUNE, pending);
        }
        Ok(())
    }
}

impl PruneCursor {
    fn write(&self, buf: &mut Vec<u8>, new_epoch: u64) {
        for value in [self.epoch, self.next_key, self.keys, self.next_batch, self.batches, new_epoch, self.not_before] {
            buf.extend_from_slice(&value.to_be_bytes());
        }
    }

    fn read(bytes: &[u8]) -> Result<(Self, u64), LedgerError> {
        if bytes.len() != 56 {
            return Err(LedgerError::CorruptState("the epoch pruning cursor is not 56 bytes"));
        }
        let at = |i: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_be_bytes(word)
        };
        let cursor =
            Self { epoch: at(0), next_key: at(1), keys: at(2), next_batch: at(3), batches: at(4), not_before: at(6) };
        Ok((cursor, at(5)))
    }
}

/// A batch size as stored: never 0 (batches of keys divide by it).
fn nonzero_batch(buf: &mut impl Buf) -> Result<u16, CodecError> {
    match u16::read(buf)? {
        0 => Err(CodecError::Invalid("handover", "a batch of 0 keys")),
        keys => Ok(keys),
    }
}

impl Write for HandoverStage {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Self::Draining => 0u8.write(buf),
            Self::Resharing { keys, batch_keys, next_batch, oldest_open, oldest_unpruned } => {
                1u8.write(buf);
                keys.write(buf);
                batch_keys.write(buf);
                next_batch.write(buf);
                oldest_open.write(buf);
                oldest_unpruned.write(buf);
            }
            Self::Ready { keys, batch_keys, oldest_unpruned, boundary } => {
                2u8.write(buf);
                keys.write(buf);
                batch_keys.write(buf);
                oldest_unpruned.write(buf);
                boundary.write(buf);
            }
        }
    }
}

impl EncodeSize for HandoverStage {
    fn encode_size(&self) -> usize {
        1 + match self {
            Self::Draining => 0,
            Self::Resharing { .. } => 8 + 2 + 8 + 8 + 8,
            Self::Ready { .. } => 8 + 2 + 8 + 8,
        }
    }
}

impl Read for HandoverStage {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(Self::Draining),
            1 => Ok(Self::Resharing {
                keys: u64::read(buf)?,
                batch_keys: nonzero_batch(buf)?,
                next_batch: u64::read(buf)?,
                oldest_open: u64::read(buf)?,
                oldest_unpruned: u64::read(buf)?,
            }),
            2 => Ok(Self::Ready {
                keys: u64::read(buf)?,
                batch_keys: nonzero_batch(buf)?,
                oldest_unpruned: u64::read(buf)?,
                boundary: u64::read(buf)?,
            }),
            tag => Err(CodecError::InvalidEnum(tag)),
        }
    }
}

impl Write for HandoverRecord {
    fn write(&self, buf: &mut impl BufMut) {
        self.next.write(buf);
        self.decided_height.write(buf);
        self.stage.write(buf);
    }
}

impl EncodeSize for HandoverRecord {
    fn encode_size(&self) -> usize {
        self.next.encode_size() + 8 + self.stage.encode_size()
    }
}

impl Read for HandoverRecord {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self { next: NodeSet::read(buf)?, decided_height: u64::read(buf)?, stage: HandoverStage::read(buf)? })
    }
}

impl Write for ResharePhase {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Self::Dealing => 0u8,
            Self::Responding => 1u8,
            Self::Finished => 2u8,
        }
        .write(buf);
    }
}

impl Read for ResharePhase {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(Self::Dealing),
            1 => Ok(Self::Responding),
            2 => Ok(Self::Finished),
            tag => Err(CodecError::InvalidEnum(tag)),
        }
    }
}

impl Write for ReshareBatchRecord {
    fn write(&self, buf: &mut impl BufMut) {
        self.phase.write(buf);
        self.phase_height.write(buf);
        self.phase_time_ms.write(buf);
        self.dealt.write(buf);
        self.responded.write(buf);
        self.disqualified.write(buf);
        self.qualified.write(buf);
    }
}

impl EncodeSize for ReshareBatchRecord {
    fn encode_size(&self) -> usize {
        1 + 8
            + 8
            + self.dealt.encode_size()
            + self.responded.encode_size()
            + self.disqualified.encode_size()
            + self.qualified.encode_size()
    }
}

impl Read for ReshareBatchRecord {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let set = (RangeCfg::new(0..=MAX_NODES), ());
        Ok(Self {
            phase: ResharePhase::read(buf)?,
            phase_height: u64::read(buf)?,
            phase_time_ms: u64::read(buf)?,
            dealt: Vec::<u16>::read_cfg(buf, &set)?,
            responded: Vec::<u16>::read_cfg(buf, &set)?,
            disqualified: Vec::<u16>::read_cfg(buf, &set)?,
            qualified: Vec::<u16>::read_cfg(buf, &set)?,
        })
    }
}

/// Read access to epochs and the handover, for participants and the API.
pub struct EpochView<'a, S: StateRead + ?Sized> {
    pub(crate) state: &'a S,
    pub(crate) genesis: &'a Genesis,
    pub(crate) machine: &'a HandoverMachine,
}

impl<S: StateRead + ?Sized> EpochView<'_, S> {
    fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.state.get(&state_key(Table::Meta, key))?)
    }

    /// The node set in force.
    pub fn current(&self) -> Result<NodeSet, LedgerError> {
        Ok(parse_record(self.meta(META_NODE_SET)?, &(), "the node set does not decode")?
            .unwrap_or_else(|| NodeSet::from_genesis(self.genesis)))
    }

    /// The handover under way, if any.
    pub fn handover(&self) -> Result<Option<HandoverRecord>, LedgerError> {
        parse_record(self.meta(META_HANDOVER)?, &(), "the handover record does not decode")
    }

    /// A reshare batch of the handover into `epoch`.
    pub fn batch(&self, epoch: u64, batch: u64) -> Result<Option<ReshareBatchRecord>, LedgerError> {
        parse_record(
            self.state.get(&state_key(Table::ReshareBatches, &epoch_batch_key(epoch, batch)))?,
            &(),
            "a reshare batch record does not decode",
        )
    }

    /// An accepted reshare dealing (until it is pruned).
    pub fn dealing(&self, epoch: u64, batch: u64, dealer: u16) -> Result<Option<ReshareDealing>, LedgerError> {
        parse_record(
            self.state.get(&state_key(Table::ReshareDealings, &epoch_batch_node_key(epoch, batch, dealer)))?,
            &dealing_bounds(),
            "a stored reshare dealing does not decode",
        )
    }

    /// The context and shape of batch `batch` of `handover` (which must be
    /// resharing or ready).
    pub fn context(&self, current: &NodeSet, handover: &HandoverRecord, batch: u64) -> Option<ReshareContext> {
        let (keys, batch_keys) = match handover.stage {
            HandoverStage::Resharing { keys, batch_keys, .. } | HandoverStage::Ready { keys, batch_keys, .. } => {
                (keys, batch_keys)
            }
            HandoverStage::Draining => return None,
        };
        self.machine.context(current, &handover.next, keys, batch_keys, batch)
    }

    /// The handover that made the epoch in force, with the set before it,
    /// while its records are kept after the boundary.
    pub fn last_handover(&self) -> Result<Option<LastHandover>, LedgerError> {
        parse_record(self.meta(META_LAST_HANDOVER)?, &(), "the last handover record does not decode")
    }

    /// Node `dealer`'s public shares of keys `first..first + count` in
    /// epoch `epoch` (the one in force, or the one before it while its
    /// handover's records are kept).
    pub fn public_shares_in(
        &self,
        epoch: u64,
        dealer: u16,
        first: u64,
        count: u16,
    ) -> Result<Vec<AffinePoint>, LedgerError> {
        HandoverMachine::old_public_shares(&Overlay::new(self.state), epoch, dealer, first, count)
    }

    /// The settings phases run by (the genesis's DKG settings).
    pub fn settings(&self) -> DkgSettings {
        self.machine.settings
    }

    /// Node `dealer`'s public shares (in the epoch in force) of the keys
    /// of a batch.
    pub fn old_public_shares(&self, dealer: u16, first: u64, count: u16) -> Result<Vec<AffinePoint>, LedgerError> {
        let overlay = Overlay::new(self.state);
        let epoch = self.current()?.epoch;
        HandoverMachine::old_public_shares(&overlay, epoch, dealer, first, count)
    }
}
