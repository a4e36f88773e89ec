//! The DKG in the state machine: batches open, move through their phases
//! and finish (or are abandoned) as a deterministic function of the
//! finalized log. Every node runs this code on the same blocks, so every
//! node sees the same batch open at the same height, the same qualified
//! set and the same keys; there is nothing to agree on beside the log.
//!
//! Phases of batch `b` (see `docs/dkg.md`):
//! 1. **Dealing**: valid `DkgDeal`s count (one per node) until the batch
//!    has `f + 1` not disqualified; designated dealers rotate with the
//!    batch number.
//! 2. **Responding**: each node may post one `DkgResponse` with its
//!    complaints; each complaint is judged as it is applied. If upheld
//!    complaints leave fewer than `f + 1` dealers, the batch goes back to
//!    dealing for the nodes that have not dealt (and responding again).
//! 3. **Publishing**: the qualified set (dealers with a dealing and no
//!    upheld complaint) is fixed and its commitments summed; each node may
//!    post `DkgPublicShares`, verified together when the phase ends.
//!
//! A phase ends at the end of a block once every node has acted in it (for
//! dealing: once it has its `f + 1` dealings), or
//! once it has lasted both [`DkgSettings::phase_min_blocks`] blocks and
//! [`DkgSettings::phase_min_ms`] of block time. A batch that cannot reach
//! `f + 1` qualified dealers, or that ends with fewer than `t` valid public
//! share vectors, is abandoned whole: none of its keys enter the pool.

use bytes::BufMut;
use commonware_codec::{Buf, Copying, Decode, Encode, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write};
use quorumkey_crypto::group::{AffinePoint, public_key_from_sec1_named};
use quorumkey_dkg::dealing::ParsedDealing;
use quorumkey_dkg::{
    AggregateCommitments, BatchContext, BatchParams, Complaint, Dealing, PublicShares, Verdict, adjudicate,
    finish_keys, verify_public_shares,
};

use crate::genesis::{DkgSettings, Genesis};
use crate::machine::{Effect, LedgerError, Rejection};
use crate::state::{Overlay, StateRead, Table};
use crate::types::KeyRecord;

/// Blocks a finished batch's dealings stay in the state, so that a node
/// that restarted during the batch can still decrypt its shares.
pub const DEALING_RETENTION_BLOCKS: u64 = 64;

pub(crate) const META_NEXT_BATCH: &[u8] = b"dkg_next_batch";
const META_OLDEST_OPEN: &[u8] = b"dkg_oldest_open";
const META_OLDEST_UNPRUNED: &[u8] = b"dkg_oldest_unpruned";
const META_REFILLING: &[u8] = b"dkg_refilling";

/// Where a batch stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for dealings.
    Dealing,
    /// Waiting for complaints.
    Responding,
    /// The qualified set is fixed; waiting for public shares.
    Publishing,
    /// Its keys are in the pool from this index on.
    Finished {
        /// Index of its first key.
        first_key: u64,
    },
    /// Given up; none of its keys exist.
    Abandoned,
}

/// A batch's bookkeeping in the replicated state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRecord {
    /// Where it stands.
    pub phase: Phase,
    /// Height at which the current phase began (or the batch ended).
    pub phase_height: u64,
    /// Block time at which the current phase began (or the batch ended).
    pub phase_time_ms: u64,
    /// Nodes whose dealing was accepted.
    pub dealt: Vec<u16>,
    /// Nodes that posted their complaints.
    pub responded: Vec<u16>,
    /// Dealers with an upheld complaint.
    pub disqualified: Vec<u16>,
    /// The qualified set (fixed when Responding ends).
    pub qualified: Vec<u16>,
    /// Nodes that posted public shares (verified when Publishing ends).
    pub published: Vec<u16>,
    /// Nodes whose public shares failed verification.
    pub refused: Vec<u16>,
}

impl BatchRecord {
    fn new(height: u64, time_ms: u64) -> Self {
        Self {
            phase: Phase::Dealing,
            phase_height: height,
            phase_time_ms: time_ms,
            dealt: Vec::new(),
            responded: Vec::new(),
            disqualified: Vec::new(),
            qualified: Vec::new(),
            published: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// True once the batch finished or was abandoned.
    pub fn ended(&self) -> bool {
        matches!(self.phase, Phase::Finished { .. } | Phase::Abandoned)
    }

    /// Dealers with a dealing and no upheld complaint (so far).
    pub fn standing_dealers(&self) -> usize {
        self.dealt.iter().filter(|dealer| !self.disqualified.contains(dealer)).count()
    }

    /// True if this dealing phase tops up a batch whose dealings lost some
    /// to complaints (every node that has not dealt may deal at once).
    pub fn topping_up(&self) -> bool {
        self.phase == Phase::Dealing && !self.disqualified.is_empty()
    }
}

fn insert_sorted(set: &mut Vec<u16>, node: u16) {
    if let Err(position) = set.binary_search(&node) {
        set.insert(position, node);
    }
}

impl Write for Phase {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Self::Dealing => 0u8.write(buf),
            Self::Responding => 1u8.write(buf),
            Self::Publishing => 2u8.write(buf),
            Self::Finished { first_key } => {
                3u8.write(buf);
                first_key.write(buf);
            }
            Self::Abandoned => 4u8.write(buf),
        }
    }
}
impl EncodeSize for Phase {
    fn encode_size(&self) -> usize {
        match self {
            Self::Finished { .. } => 9,
            _ => 1,
        }
    }
}
impl Read for Phase {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(Self::Dealing),
            1 => Ok(Self::Responding),
            2 => Ok(Self::Publishing),
            3 => Ok(Self::Finished { first_key: u64::read(buf)? }),
            4 => Ok(Self::Abandoned),
            tag => Err(CodecError::InvalidEnum(tag)),
        }
    }
}

impl Write for BatchRecord {
    fn write(&self, buf: &mut impl BufMut) {
        self.phase.write(buf);
        self.phase_height.write(buf);
        self.phase_time_ms.write(buf);
        for set in [&self.dealt, &self.responded, &self.disqualified, &self.qualified, &self.published, &self.refused] {
            set.write(buf);
        }
    }
}
impl EncodeSize for BatchRecord {
    fn encode_size(&self) -> usize {
        self.phase.encode_size()
            + 16
            + [&self.dealt, &self.responded, &self.disqualified, &self.qualified, &self.published, &self.refused]
                .iter()
                .map(|set| set.encode_size())
                .sum::<usize>()
    }
}
impl Read for BatchRecord {
    /// The number of nodes.
    type Cfg = usize;
    fn read_cfg(buf: &mut impl Buf, nodes: &usize) -> Result<Self, CodecError> {
        let range = (RangeCfg::new(0..=*nodes), ());
        Ok(Self {
            phase: Phase::read(buf)?,
            phase_height: u64::read(buf)?,
            phase_time_ms: u64::read(buf)?,
            dealt: Vec::<u16>::read_cfg(buf, &range)?,
            responded: Vec::<u16>::read_cfg(buf, &range)?,
            disqualified: Vec::<u16>::read_cfg(buf, &range)?,
            qualified: Vec::<u16>::read_cfg(buf, &range)?,
            published: Vec::<u16>::read_cfg(buf, &range)?,
            refused: Vec::<u16>::read_cfg(buf, &range)?,
        })
    }
}

/// Something the DKG did at the end of a block, for logs and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DkgEvent {
    /// A batch opened.
    BatchOpened {
        /// The batch.
        batch: u64,
    },
    /// The qualified set of a batch was fixed.
    QualifiedSetFixed {
        /// The batch.
        batch: u64,
        /// The qualified dealers.
        qualified: Vec<u16>,
    },
    /// A batch's keys entered the pool.
    BatchFinished {
        /// The batch.
        batch: u64,
        /// Index of its first key.
        first_key: u64,
        /// How many keys.
        keys: u64,
    },
    /// A batch was given up.
    BatchAbandoned {
        /// The batch.
        batch: u64,
        /// Why.
        reason: &'static str,
    },
    /// The epoch lasted the genesis's `refresh_blocks`: the ledger decided
    /// a refresh of every share (a handover to the same set, `epoch`).
    RefreshScheduled {
        /// The epoch the refresh makes.
        epoch: u64,
    },
    /// The DKG drained and the handover to `epoch` fixed its keys.
    HandoverStarted {
        /// The epoch handed over to.
        epoch: u64,
        /// Keys to hand over (`0..keys`).
        keys: u64,
        /// Reshare batches it takes.
        batches: u64,
    },
    /// A reshare batch opened.
    ReshareBatchOpened {
        /// The epoch handed over to.
        epoch: u64,
        /// The batch.
        batch: u64,
    },
    /// A reshare batch's keys have their new public shares.
    ReshareBatchFinished {
        /// The epoch handed over to.
        epoch: u64,
        /// The batch.
        batch: u64,
        /// Its first key.
        first_key: u64,
        /// How many keys.
        keys: u64,
        /// The qualified old dealers.
        qualified: Vec<u16>,
    },
    /// Every key is handed over; the next set serves from `boundary` on.
    HandoverFinished {
        /// The epoch handed over to.
        epoch: u64,
        /// The first height of the new epoch.
        boundary: u64,
    },
    /// The new set is in force from `height` on.
    EpochStarted {
        /// The epoch.
        epoch: u64,
        /// Its first height.
        height: u64,
    },
}

/// Key of a per-batch, per-node entry.
pub(crate) fn batch_node_key(batch: u64, node: u16) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[..8].copy_from_slice(&batch.to_be_bytes());
    key[8..].copy_from_slice(&node.to_be_bytes());
    key
}

/// The DKG half of the state machine for one network.
#[derive(Clone, Debug)]
pub(crate) struct DkgMachine {
    pub(crate) settings: DkgSettings,
    pub(crate) params: BatchParams,
    pub(crate) network_id: [u8; 32],
    /// Node j's secp256k1 key at position j - 1.
    node_keys: Vec<quorumkey_crypto::group::Point>,
}

fn read_u64<S: StateRead + ?Sized>(overlay: &Overlay<'_, S>, key: &[u8]) -> Result<u64, LedgerError> {
    crate::machine::parse_counter(overlay.get(Table::Meta, key)?)
}

fn write_u64<S: StateRead + ?Sized>(overlay: &mut Overlay<'_, S>, key: &[u8], value: u64) {
    overlay.put(Table::Meta, key, value.to_be_bytes().to_vec());
}

impl DkgMachine {
    pub(crate) fn new(genesis: &Genesis, network_id: [u8; 32]) -> Result<Self, crate::GenesisError> {
        let params = genesis.dkg.batch_params(genesis.node_count())?;
        let node_keys = genesis
            .nodes
            .iter()
            .map(|node| {
                public_key_from_sec1_named("node secp256k1 key", &node.secp256k1_key)
                    .map(|key| key.to_projective())
                    .map_err(|e| crate::GenesisError::InvalidPoint(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { settings: genesis.dkg, params, network_id, node_keys })
    }

    /// The DKG of a later epoch's set, with the genesis's settings: batches
    /// no larger than fit that set's dealings, phases at least `f + 2`
    /// blocks long.
    pub(crate) fn for_set(
        settings: DkgSettings,
        network_id: [u8; 32],
        set: &crate::epoch::NodeSet,
    ) -> Result<Self, crate::GenesisError> {
        let n = set.size();
        let largest = BatchParams::largest_fitting(n, crate::genesis::DEALING_BUDGET).unwrap_or(1);
        let keys = settings.batch_keys.min(largest).max(1);
        let params = BatchParams::new(n, keys).map_err(|e| crate::GenesisError::Dkg(e.to_string()))?;
        let f = u32::from(params.max_faulty());
        let settings =
            DkgSettings { batch_keys: keys, phase_min_blocks: settings.phase_min_blocks.max(f + 2), ..settings };
        let node_keys =
            set.secp256k1_points().ok_or(crate::GenesisError::InvalidPoint("a node key of the set".to_owned()))?;
        Ok(Self { settings, params, network_id, node_keys })
    }

    /// True if no batch is in flight (every opened batch ended).
    pub(crate) fn idle<S: StateRead + ?Sized>(&self, overlay: &Overlay<'_, S>) -> Result<bool, LedgerError> {
        let next_batch = read_u64(overlay, META_NEXT_BATCH)?;
        let oldest_open = read_u64(overlay, META_OLDEST_OPEN)?;
        if oldest_open >= next_batch {
            return Ok(true);
        }
        // The cursor moves at the end of a block: check the batches.
        for batch in oldest_open..next_batch {
            match self.read_batch(overlay, batch)? {
                Some(record) if record.ended() => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// At an epoch's start: drops the dealings the last epoch's batches
    /// kept for late recipients (their keys were handed over since).
    pub(crate) fn forget_retained<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
    ) -> Result<(), LedgerError> {
        let mut oldest = read_u64(overlay, META_OLDEST_UNPRUNED)?;
        let next_batch = read_u64(overlay, META_NEXT_BATCH)?;
        while oldest < next_batch {
            if let Some(record) = self.read_batch(overlay, oldest)? {
                for dealer in &record.dealt {
                    overlay.delete(Table::DkgDealings, &batch_node_key(oldest, *dealer));
                }
            }
            oldest += 1;
        }
        write_u64(overlay, META_OLDEST_UNPRUNED, oldest);
        write_u64(overlay, META_OLDEST_OPEN, next_batch);
        Ok(())
    }

    pub(crate) fn context(&self, batch: u64) -> BatchContext {
        BatchContext::new(self.network_id, batch, self.params)
    }

    fn parse_batch(&self, bytes: Option<Vec<u8>>) -> Result<Option<BatchRecord>, LedgerError> {
        crate::machine::parse_record(bytes, &crate::genesis::MAX_NODES, "a DKG batch record does not decode")
    }

    fn parse_dealing(&self, bytes: Option<Vec<u8>>) -> Result<Option<Dealing>, LedgerError> {
        crate::machine::parse_record(bytes, &self.params, "a stored dealing does not decode")
    }

    pub(crate) fn read_batch<S: StateRead + ?Sized>(
        &self,
        overlay: &Overlay<'_, S>,
        batch: u64,
    ) -> Result<Option<BatchRecord>, LedgerError> {
        self.parse_batch(overlay.get(Table::DkgBatches, &batch.to_be_bytes())?)
    }

    fn write_batch<S: StateRead + ?Sized>(&self, overlay: &mut Overlay<'_, S>, batch: u64, record: &BatchRecord) {
        overlay.put(Table::DkgBatches, &batch.to_be_bytes(), record.encode().to_vec());
    }

    /// An accepted dealing and its public parts (its proof was checked
    /// when it was accepted).
    fn read_dealing<S: StateRead + ?Sized>(
        &self,
        overlay: &Overlay<'_, S>,
        batch: u64,
        dealer: u16,
    ) -> Result<(Dealing, ParsedDealing), LedgerError> {
        let dealing = self
            .parse_dealing(overlay.get(Table::DkgDealings, &batch_node_key(batch, dealer))?)?
            .ok_or(LedgerError::CorruptState("an accepted dealing is missing"))?;
        let parsed = dealing
            .parse_accepted(&self.params)
            .map_err(|_| LedgerError::CorruptState("an accepted dealing no longer parses"))?;
        Ok((dealing, parsed))
    }

    /// Finds the open batch `batch`, or says why a message for it is late
    /// or early.
    fn open_batch<S: StateRead + ?Sized>(
        &self,
        overlay: &Overlay<'_, S>,
        batch: u64,
        phase: Phase,
    ) -> Result<Result<BatchRecord, Rejection>, LedgerError> {
        let Some(record) = self.read_batch(overlay, batch)? else {
            return Ok(Err(Rejection::Dkg(format!("batch {batch} does not exist"))));
        };
        if record.phase != phase {
            return Ok(Err(Rejection::Dkg(format!("batch {batch} is in phase {:?}, not {phase:?}", record.phase))));
        }
        Ok(Ok(record))
    }

    pub(crate) fn apply_deal<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
        signer: u16,
        batch: u64,
        dealing: &Dealing,
    ) -> Result<Result<Effect, Rejection>, LedgerError> {
        let mut record = match self.open_batch(overlay, batch, Phase::Dealing)? {
            Ok(record) => record,
            Err(rejection) => return Ok(Err(rejection)),
        };
        if record.dealt.contains(&signer) {
            return Ok(Err(Rejection::Dkg(format!("node {signer} already dealt in batch {batch}"))));
        }
        if record.standing_dealers() >= usize::from(self.params.dealers()) {
            return Ok(Err(Rejection::Dkg(format!("batch {batch} has all the dealings it takes"))));
        }
        if let Err(e) = dealing.parse(&self.context(batch), signer) {
            return Ok(Err(Rejection::Dkg(format!("invalid dealing: {e}"))));
        }
        overlay.put(Table::DkgDealings, &batch_node_key(batch, signer), dealing.encode().to_vec());
        insert_sorted(&mut record.dealt, signer);
        self.write_batch(overlay, batch, &record);
        Ok(Ok(Effect::DkgDealingAccepted { batch }))
    }

    pub(crate) fn apply_response<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
        signer: u16,
        batch: u64,
        complaints: &[Complaint],
    ) -> Result<Result<Effect, Rejection>, LedgerError> {
        let mut record = match self.open_batch(overlay, batch, Phase::Responding)? {
            Ok(record) => record,
            Err(rejection) => return Ok(Err(rejection)),
        };
        if record.responded.contains(&signer) {
            return Ok(Err(Rejection::Dkg(format!("node {signer} already responded in batch {batch}"))));
        }
        let mut accused: Vec<u16> = complaints.iter().map(|c| c.dealer).collect();
        accused.sort_unstable();
        if accused.windows(2).any(|pair| pair[0] == pair[1]) {
            return Ok(Err(Rejection::Dkg("two complaints against one dealer".to_owned())));
        }
        if let Some(unknown) = accused.iter().find(|dealer| !record.dealt.contains(dealer)) {
            return Ok(Err(Rejection::Dkg(format!("complaint against node {unknown}, which has no dealing"))));
        }
        let context = self.context(batch);
        let Some(recipient_key) = usize::from(signer).checked_sub(1).and_then(|i| self.node_keys.get(i)).copied()
        else {
            return Ok(Err(Rejection::UnknownNode(signer)));
        };
        let mut upheld = 0u16;
        for complaint in complaints {
            if record.disqualified.contains(&complaint.dealer) {
                continue;
            }
            let (dealing, parsed) = self.read_dealing(overlay, batch, complaint.dealer)?;
            if let Verdict::DealerFaulty(_) =
                adjudicate(&context, complaint.dealer, &dealing, &parsed, signer, &recipient_key, complaint)
            {
                insert_sorted(&mut record.disqualified, complaint.dealer);
                upheld += 1;
            }
        }
        insert_sorted(&mut record.responded, signer);
        self.write_batch(overlay, batch, &record);
        Ok(Ok(Effect::DkgResponseAccepted { batch, upheld }))
    }

    pub(crate) fn apply_public_shares<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
        signer: u16,
        batch: u64,
        shares: &PublicShares,
    ) -> Result<Result<Effect, Rejection>, LedgerError> {
        let mut record = match self.open_batch(overlay, batch, Phase::Publishing)? {
            Ok(record) => record,
            Err(rejection) => return Ok(Err(rejection)),
        };
        if record.published.contains(&signer) {
            return Ok(Err(Rejection::Dkg(format!("node {signer} already published in batch {batch}"))));
        }
        overlay.put(Table::DkgPublications, &batch_node_key(batch, signer), shares.encode().to_vec());
        insert_sorted(&mut record.published, signer);
        self.write_batch(overlay, batch, &record);
        Ok(Ok(Effect::DkgPublicSharesAccepted { batch }))
    }

    /// End of block: move batches along, finish or abandon them, prune old
    /// dealings, and open a batch if the pool needs one.
    pub(crate) fn end_block<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
        height: u64,
        time_ms: u64,
        may_open: bool,
    ) -> Result<Vec<DkgEvent>, LedgerError> {
        let mut events = Vec::new();
        let next_batch = read_u64(overlay, META_NEXT_BATCH)?;
        let first_open = read_u64(overlay, META_OLDEST_OPEN)?;
        // One pass over the batches that may still run: advance each, and
        // note what the pool and the next opening need to know.
        let mut oldest_open = next_batch;
        let mut in_flight = 0u64;
        let mut dealing = false;
        for batch in first_open..next_batch {
            let Some(mut record) = self.read_batch(overlay, batch)? else {
                return Err(LedgerError::CorruptState("an open DKG batch has no record"));
            };
            if !record.ended() {
                if let Some(event) = self.advance(overlay, batch, &mut record, height, time_ms)? {
                    events.push(event);
                }
                self.write_batch(overlay, batch, &record);
            }
            if !record.ended() {
                oldest_open = oldest_open.min(batch);
                in_flight += 1;
                dealing |= record.phase == Phase::Dealing;
            }
        }
        write_u64(overlay, META_OLDEST_OPEN, oldest_open);
        self.prune(overlay, height, oldest_open)?;
        if self.should_open(overlay, in_flight, dealing)? && may_open {
            self.write_batch(overlay, next_batch, &BatchRecord::new(height, time_ms));
            write_u64(overlay, META_NEXT_BATCH, next_batch + 1);
            events.push(DkgEvent::BatchOpened { batch: next_batch });
        }
        Ok(events)
    }

    fn deadline_passed(&self, record: &BatchRecord, height: u64, time_ms: u64) -> bool {
        height >= record.phase_height.saturating_add(u64::from(self.settings.phase_min_blocks))
            && time_ms >= record.phase_time_ms.saturating_add(self.settings.phase_min_ms)
    }

    fn enter(record: &mut BatchRecord, phase: Phase, height: u64, time_ms: u64) {
        record.phase = phase;
        record.phase_height = height;
        record.phase_time_ms = time_ms;
    }

    fn advance<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
        batch: u64,
        record: &mut BatchRecord,
        height: u64,
        time_ms: u64,
    ) -> Result<Option<DkgEvent>, LedgerError> {
        let n = usize::from(self.params.nodes());
        let f = usize::from(self.params.max_faulty());
        let t = usize::from(self.params.threshold());
        let deadline = self.deadline_passed(record, height, time_ms);
        match record.phase {
            Phase::Dealing if record.standing_dealers() >= usize::from(self.params.dealers()) || deadline => {
                if record.standing_dealers() < f + 1 {
                    return Ok(Some(self.abandon(
                        overlay,
                        batch,
                        record,
                        height,
                        time_ms,
                        "fewer than f + 1 dealings",
                    )));
                }
                Self::enter(record, Phase::Responding, height, time_ms);
                Ok(None)
            }
            Phase::Responding if record.responded.len() == n || deadline => {
                let qualified: Vec<u16> =
                    record.dealt.iter().copied().filter(|d| !record.disqualified.contains(d)).collect();
                if qualified.len() < f + 1 {
                    // Complaints took dealers out: the nodes that have not
                    // dealt yet deal (and everyone responds) again, if
                    // enough of them are left.
                    if n - record.dealt.len() >= f + 1 - qualified.len() {
                        record.responded.clear();
                        Self::enter(record, Phase::Dealing, height, time_ms);
                        return Ok(None);
                    }
                    let reason = "fewer than f + 1 qualified dealers";
                    return Ok(Some(self.abandon(overlay, batch, record, height, time_ms, reason)));
                }
                let mut parsed = Vec::with_capacity(qualified.len());
                for dealer in &qualified {
                    parsed.push(self.read_dealing(overlay, batch, *dealer)?.1);
                }
                let aggregate = AggregateCommitments::sum(self.params, &parsed.iter().collect::<Vec<_>>())
                    .map_err(|_| LedgerError::CorruptState("the qualified commitments do not sum"))?;
                overlay.put(Table::DkgAggregates, &batch.to_be_bytes(), aggregate.to_bytes());
                record.qualified.clone_from(&qualified);
                Self::enter(record, Phase::Publishing, height, time_ms);
                Ok(Some(DkgEvent::QualifiedSetFixed { batch, qualified }))
            }
            Phase::Publishing if record.published.len() == n || deadline => {
                let pending: Vec<u16> =
                    record.published.iter().copied().filter(|p| !record.refused.contains(p)).collect();
                let valid = if pending.len() < t { Vec::new() } else { self.verify(overlay, batch, record, &pending)? };
                if valid.len() < t {
                    // Nothing more can come once every node has published.
                    if deadline || record.published.len() == n {
                        let reason = "fewer than t valid public share vectors";
                        return Ok(Some(self.abandon(overlay, batch, record, height, time_ms, reason)));
                    }
                    return Ok(None);
                }
                let finished = finish_keys(&self.params, &valid)
                    .map_err(|_| LedgerError::CorruptState("verified public shares do not interpolate"))?;
                let keys: Vec<KeyRecord> = finished
                    .into_iter()
                    .map(|key| KeyRecord { public_key: key.public_key, public_shares: key.public_shares })
                    .collect();
                let first_key = crate::machine::append_keys(overlay, &keys)?;
                self.clear_batch(overlay, batch, record);
                Self::enter(record, Phase::Finished { first_key }, height, time_ms);
                Ok(Some(DkgEvent::BatchFinished { batch, first_key, keys: keys.len() as u64 }))
            }
            _ => Ok(None),
        }
    }

    /// Gives the batch up whole: none of its keys will exist.
    fn abandon<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
        batch: u64,
        record: &mut BatchRecord,
        height: u64,
        time_ms: u64,
        reason: &'static str,
    ) -> DkgEvent {
        self.clear_batch(overlay, batch, record);
        Self::enter(record, Phase::Abandoned, height, time_ms);
        DkgEvent::BatchAbandoned { batch, reason }
    }

    /// Verifies the `pending` publications (sorted by node), lowest index
    /// first and only as many as are still needed: with every node honest,
    /// one batched check of t publications decides, and the other nodes'
    /// public shares follow by interpolation. Refused ones are recorded.
    fn verify<S: StateRead + ?Sized>(
        &self,
        overlay: &Overlay<'_, S>,
        batch: u64,
        record: &mut BatchRecord,
        pending: &[u16],
    ) -> Result<Vec<(u16, Vec<AffinePoint>)>, LedgerError> {
        let t = usize::from(self.params.threshold());
        let aggregate_bytes = overlay
            .get(Table::DkgAggregates, &batch.to_be_bytes())?
            .ok_or(LedgerError::CorruptState("a publishing batch has no aggregate"))?;
        let aggregate = AggregateCommitments::from_bytes(self.params, &aggregate_bytes)
            .map_err(|_| LedgerError::CorruptState("stored aggregate commitments do not parse"))?;
        let context = self.context(batch);
        let mut valid = Vec::with_capacity(t);
        let mut next = 0;
        while valid.len() < t && next < pending.len() {
            let chunk = &pending[next..pending.len().min(next + t - valid.len())];
            next += chunk.len();
            let mut publications = Vec::with_capacity(chunk.len());
            for node in chunk {
                let bytes = overlay
                    .get(Table::DkgPublications, &batch_node_key(batch, *node))?
                    .ok_or(LedgerError::CorruptState("a publication is missing"))?;
                publications.push(
                    PublicShares::decode_cfg(Copying(&bytes), &self.params)
                        .map_err(|_| LedgerError::CorruptState("a stored publication does not decode"))?,
                );
            }
            let items: Vec<(u16, &PublicShares)> = chunk.iter().copied().zip(publications.iter()).collect();
            for (node, result) in chunk.iter().zip(verify_public_shares(&context, &aggregate, &items)) {
                match result {
                    Ok(points) => valid.push((*node, points)),
                    Err(_) => insert_sorted(&mut record.refused, *node),
                }
            }
        }
        Ok(valid)
    }

    /// Deletes a batch's aggregate and publications (its dealings stay for
    /// [`DEALING_RETENTION_BLOCKS`]).
    fn clear_batch<S: StateRead + ?Sized>(&self, overlay: &mut Overlay<'_, S>, batch: u64, record: &BatchRecord) {
        overlay.delete(Table::DkgAggregates, &batch.to_be_bytes());
        for node in &record.published {
            overlay.delete(Table::DkgPublications, &batch_node_key(batch, *node));
        }
    }

    fn prune<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
        height: u64,
        oldest_open: u64,
    ) -> Result<(), LedgerError> {
        let mut oldest = read_u64(overlay, META_OLDEST_UNPRUNED)?;
        while oldest < oldest_open {
            let Some(record) = self.read_batch(overlay, oldest)? else {
                return Err(LedgerError::CorruptState("an ended DKG batch has no record"));
            };
            if height < record.phase_height.saturating_add(DEALING_RETENTION_BLOCKS) {
                break;
            }
            for dealer in &record.dealt {
                overlay.delete(Table::DkgDealings, &batch_node_key(oldest, *dealer));
            }
            oldest += 1;
        }
        write_u64(overlay, META_OLDEST_UNPRUNED, oldest);
        Ok(())
    }

    /// Whether the pool needs a new batch now, given the `in_flight`
    /// batches still running (and whether one of them is dealing).
    fn should_open<S: StateRead + ?Sized>(
        &self,
        overlay: &mut Overlay<'_, S>,
        in_flight: u64,
        dealing: bool,
    ) -> Result<bool, LedgerError> {
        let ready = crate::machine::ready_keys(overlay)?;
        let pending = crate::machine::pending_assignments(overlay)?;
        let coming = in_flight * u64::from(self.params.keys());
        let mut refilling = read_u64(overlay, META_REFILLING)? == 1;
        if ready < u64::from(self.settings.low_water) || pending > 0 {
            refilling = true;
        }
        let wanted = u64::from(self.settings.pool_target) + pending;
        if ready + coming >= wanted {
            refilling = false;
        }
        write_u64(overlay, META_REFILLING, u64::from(refilling));
        // One batch deals at a time: dealing is the costly step for every
        // node, and the next batch opens as soon as this one's dealings are
        // in, so batches still overlap in their later phases.
        Ok(refilling && !dealing && in_flight < u64::from(self.settings.max_batches_in_flight))
    }
}

/// Read access to the DKG's state for the nodes' participants and the API.
pub struct DkgView<'a, S: StateRead + ?Sized> {
    pub(crate) state: &'a S,
    pub(crate) machine: std::borrow::Cow<'a, DkgMachine>,
}

impl<S: StateRead + ?Sized> DkgView<'_, S> {
    /// The context of a batch (for building and checking its messages).
    pub fn context(&self, batch: u64) -> BatchContext {
        self.machine.context(batch)
    }

    /// The shape of every batch.
    pub fn params(&self) -> BatchParams {
        self.machine.params
    }

    /// Batches opened so far (`0..next_batch`).
    pub fn next_batch(&self) -> Result<u64, LedgerError> {
        self.counter(META_NEXT_BATCH)
    }

    /// The oldest batch that has not ended.
    pub fn oldest_open(&self) -> Result<u64, LedgerError> {
        self.counter(META_OLDEST_OPEN)
    }

    /// The oldest batch whose dealings are still in the state.
    pub fn oldest_unpruned(&self) -> Result<u64, LedgerError> {
        self.counter(META_OLDEST_UNPRUNED)
    }

    fn counter(&self, key: &[u8]) -> Result<u64, LedgerError> {
        crate::machine::parse_counter(self.state.get(&crate::state::state_key(Table::Meta, key))?)
    }

    /// A batch's record.
    pub fn batch(&self, batch: u64) -> Result<Option<BatchRecord>, LedgerError> {
        self.machine.parse_batch(self.state.get(&crate::state::state_key(Table::DkgBatches, &batch.to_be_bytes()))?)
    }

    /// A dealer's accepted dealing in a batch (until it is pruned).
    pub fn dealing(&self, batch: u64, dealer: u16) -> Result<Option<Dealing>, LedgerError> {
        self.machine.parse_dealing(
            self.state.get(&crate::state::state_key(Table::DkgDealings, &batch_node_key(batch, dealer)))?,
        )
    }
}
