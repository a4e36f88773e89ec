//! A node's part in the DKG, as pure logic: given the committed ledger
//! state after a block, what to submit and what to persist. No I/O, no
//! clock: this crate depends only on the pure protocol crates, so Cargo
//! keeps it pure. The node's driver (`quorumkey-node`'s
//! `participant_driver`) feeds it applied heights and carries out its
//! actions in order; tests drive it directly.
//!
//! Everything it needs to resume after a restart is in the ledger (open
//! batches, accepted dealings) or in the node's share store (shares it
//! already computed): a node that restarts in any phase re-derives its
//! shares from the dealings with its secp256k1 key and carries on. A
//! dealing it made before a crash needs nothing: only the first dealing of
//! a dealer counts.

use std::collections::BTreeMap;

use quorumkey_crypto::group::{NonZeroScalar, Point};
use quorumkey_dkg::dealing::ParsedDealing;
use quorumkey_dkg::dealing::ShareFault;
use quorumkey_dkg::recipient::complain;
use quorumkey_dkg::{Dealing, KeyShares, PreparedDealing, ReceivedShares, open_dealings};
use quorumkey_ledger::{Ledger, LedgerError, Phase, StateRead, TransactionBody};
use rand_core::CryptoRng;

pub mod handover;
#[cfg(feature = "testkit")]
pub mod testkit;

/// Blocks after which a message that has not landed is sent again.
pub const RESUBMIT_AFTER_BLOCKS: u64 = 32;

/// What the participant wants done, in order.
#[derive(Debug)]
pub enum DkgAction {
    /// Sign as this node and submit.
    Submit(TransactionBody),
    /// Persist this node's shares of a batch's keys (before its public
    /// shares are published).
    StoreBatchShares {
        /// The batch.
        batch: u64,
        /// The shares.
        shares: KeyShares,
    },
    /// The batch finished: its shares belong to keys `first_key..`.
    AssignBatchShares {
        /// The batch.
        batch: u64,
        /// Index of the batch's first key.
        first_key: u64,
    },
    /// The batch was abandoned: forget its shares.
    DropBatchShares {
        /// The batch.
        batch: u64,
    },
    /// Something the operator should know (the driver logs it; this crate
    /// does no I/O).
    Notice(DkgNotice),
}

/// What the participant reports besides its actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DkgNotice {
    /// This node computed its shares of a batch that finished while it was
    /// away.
    Recovered {
        /// The batch.
        batch: u64,
    },
    /// A dealing could not be built (the node deals again when due).
    CannotDeal {
        /// The batch.
        batch: u64,
        /// Why.
        reason: String,
    },
    /// A dealer's shares to this node are wrong: this node complains.
    Complaining {
        /// The batch.
        batch: u64,
        /// The dealer.
        dealer: u16,
        /// What is wrong.
        fault: &'static str,
    },
    /// A complaint could not be built.
    CannotComplain {
        /// The batch.
        batch: u64,
        /// The dealer.
        dealer: u16,
        /// Why.
        reason: String,
    },
    /// A qualified dealer's shares to this node are wrong and the time to
    /// complain is past: this node sits the batch out (the others still
    /// rebuild every key).
    SittingOut {
        /// The batch.
        batch: u64,
        /// The dealer.
        dealer: u16,
        /// What is wrong.
        fault: &'static str,
    },
}

/// What the node's share store holds that the participant must know.
pub trait BatchShareStore {
    /// This node's stored shares of a batch (not yet assigned to keys).
    fn load_batch_shares(&self, batch: u64, node: u16) -> Option<KeyShares>;
    /// Batches with stored shares not yet assigned to keys.
    fn batches_with_shares(&self) -> Vec<u64>;
    /// True if this node holds a share of key `index`.
    fn has_key_share(&self, index: u64) -> bool;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Deal,
    Respond,
    Publish,
}

/// One node's DKG participant.
pub struct DkgParticipant {
    me: u16,
    secret: NonZeroScalar,
    recipients: Vec<Point>,
    /// What each dealer of a batch sent this node, checked.
    received: BTreeMap<u64, BTreeMap<u16, Result<ReceivedShares, ShareFault>>>,
    /// When each message was last submitted (height), by batch, step and
    /// the height at which that phase began (a batch that goes back to
    /// dealing deals and responds afresh).
    submitted: BTreeMap<(u64, Step, u64), u64>,
    /// Batches this node cannot hold shares of.
    sitting_out: Vec<u64>,
    /// The polynomials and commitments of this node's next dealing, made
    /// while it waited (see [`DkgParticipant::prepare`]).
    prepared: Option<PreparedDealing>,
}

impl std::fmt::Debug for DkgParticipant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkgParticipant").field("me", &self.me).finish_non_exhaustive()
    }
}

impl DkgParticipant {
    /// Node `me` of the ledger's network, with its secp256k1 secret key.
    pub fn new(ledger: &Ledger, me: u16, secret: NonZeroScalar) -> Result<Self, LedgerError> {
        let recipients = ledger
            .genesis()
            .nodes
            .iter()
            .map(|node| {
                quorumkey_crypto::group::point_from_bytes("node secp256k1 key", &node.secp256k1_key)
                    .map_err(|_| LedgerError::CorruptState("a genesis node key is not a point"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            me,
            secret,
            recipients,
            received: BTreeMap::new(),
            submitted: BTreeMap::new(),
            sitting_out: Vec::new(),
            prepared: None,
        })
    }

    /// Node `me` of the node set `set` (the one in force), with its
    /// secp256k1 secret key: after an epoch change, the driver makes a new
    /// participant for the new set.
    pub fn for_set(set: &quorumkey_ledger::NodeSet, me: u16, secret: NonZeroScalar) -> Result<Self, LedgerError> {
        let recipients =
            set.secp256k1_points().ok_or(LedgerError::CorruptState("a node key of the set in force is not a point"))?;
        Ok(Self {
            me,
            secret,
            recipients,
            received: BTreeMap::new(),
            submitted: BTreeMap::new(),
            sitting_out: Vec::new(),
            prepared: None,
        })
    }

    /// Makes the polynomials and commitments of this node's next dealing
    /// ahead of time, if none are ready: the driver calls it once it has
    /// acted on a block, so a batch that opens later waits only for the
    /// encryption of the shares. Depends on nothing but the batch shape.
    pub fn prepare<R: CryptoRng + ?Sized>(&mut self, ledger: &Ledger, rng: &mut R) -> Result<(), LedgerError> {
        if self.prepared.is_none() {
            let params = ledger
                .genesis()
                .dkg
                .batch_params(ledger.genesis().nodes.len())
                .map_err(|_| LedgerError::CorruptState("the genesis batch shape is invalid"))?;
            self.prepared = Some(PreparedDealing::new(params, rng));
        }
        Ok(())
    }

    /// This node's index.
    pub fn me(&self) -> u16 {
        self.me
    }

    fn due(&mut self, batch: u64, step: Step, phase_height: u64, height: u64) -> bool {
        match self.submitted.get(&(batch, step, phase_height)) {
            Some(at) if height < at.saturating_add(RESUBMIT_AFTER_BLOCKS) => false,
            _ => {
                self.submitted.insert((batch, step, phase_height), height);
                true
            }
        }
    }

    /// The actions after the block at `height` was applied to `state`, at
    /// local time `now_ms` (milliseconds since the Unix epoch).
    pub fn on_block<S: StateRead + ?Sized, R: CryptoRng + ?Sized>(
        &mut self,
        ledger: &Ledger,
        state: &S,
        height: u64,
        now_ms: u64,
        store: &dyn BatchShareStore,
        rng: &mut R,
    ) -> Result<Vec<DkgAction>, LedgerError> {
        let view = ledger.dkg_view(state)?;
        let mut actions = Vec::new();
        // Batches whose shares wait for the batch's end.
        for batch in store.batches_with_shares() {
            match view.batch(batch)?.map(|record| record.phase) {
                Some(Phase::Finished { first_key }) => actions.push(DkgAction::AssignBatchShares { batch, first_key }),
                Some(Phase::Abandoned) | None => actions.push(DkgAction::DropBatchShares { batch }),
                _ => {}
            }
        }
        let oldest = view.oldest_open()?;
        let next = view.next_batch()?;
        let oldest_unpruned = view.oldest_unpruned()?;
        // Batches that finished while this node was down, whose dealings
        // are still kept: recover this node's shares from them.
        for batch in oldest_unpruned..oldest {
            let Some(record) = view.batch(batch)? else { continue };
            let Phase::Finished { first_key } = record.phase else { continue };
            if self.sitting_out.contains(&batch)
                || store.has_key_share(first_key)
                || store.load_batch_shares(batch, self.me).is_some()
            {
                continue;
            }
            match self.sum_shares(ledger, state, batch, &record.qualified, &mut actions, rng)? {
                Some(shares) => {
                    actions.push(DkgAction::Notice(DkgNotice::Recovered { batch }));
                    actions.push(DkgAction::StoreBatchShares { batch, shares });
                    actions.push(DkgAction::AssignBatchShares { batch, first_key });
                }
                None => self.sitting_out.push(batch),
            }
            self.received.remove(&batch);
        }
        self.received.retain(|batch, _| *batch >= oldest);
        self.submitted.retain(|(batch, _, _), _| *batch >= oldest);
        self.sitting_out.retain(|batch| *batch >= oldest_unpruned);
        // A node that is not a designated dealer of a batch deals only if
        // the batch still lacks dealings halfway to the phase deadline, in
        // blocks and in time (blocks come fast under load; a designated
        // dealer needs time to compute its dealing), or if complaints took
        // dealings out and the batch is topping up.
        let settings = ledger.genesis().dkg;
        let standby_blocks = u64::from(settings.phase_min_blocks / 2);
        let standby_ms = settings.phase_min_ms / 2;
        for batch in oldest..next {
            let Some(record) = view.batch(batch)? else { continue };
            let context = view.context(batch);
            match record.phase {
                Phase::Dealing
                    if !record.dealt.contains(&self.me)
                        && (view.params().designated_dealer(batch, self.me)
                            || record.topping_up()
                            || (height >= record.phase_height.saturating_add(standby_blocks)
                                && now_ms >= record.phase_time_ms.saturating_add(standby_ms)))
                        && self.due(batch, Step::Deal, record.phase_height, height) =>
                {
                    let prepared = match self.prepared.take() {
                        Some(prepared) if prepared.params() == view.params() => prepared,
                        _ => PreparedDealing::new(view.params(), rng),
                    };
                    match prepared.seal(&context, self.me, &self.recipients, rng) {
                        Ok(dealing) => actions.push(DkgAction::Submit(TransactionBody::DkgDeal { batch, dealing })),
                        Err(e) => {
                            actions.push(DkgAction::Notice(DkgNotice::CannotDeal { batch, reason: e.to_string() }))
                        }
                    }
                }
                Phase::Responding
                    if !record.responded.contains(&self.me)
                        && self.due(batch, Step::Respond, record.phase_height, height) =>
                {
                    self.open_all(ledger, state, batch, &record.dealt, rng)?;
                    let mut complaints = Vec::new();
                    for dealer in record.dealt.iter().filter(|d| !record.disqualified.contains(d)) {
                        if let Err(fault) = self.opened(batch, *dealer) {
                            let (dealer, fault) = (*dealer, fault.describe());
                            actions.push(DkgAction::Notice(DkgNotice::Complaining { batch, dealer, fault }));
                            let Some(dealing) = view.dealing(batch, dealer)? else { continue };
                            let Ok(parsed) = dealing.parse_accepted(&view.params()) else { continue };
                            match complain(&context, dealer, &parsed, self.me, &self.secret, rng) {
                                Ok(complaint) => complaints.push(complaint),
                                Err(e) => actions.push(DkgAction::Notice(DkgNotice::CannotComplain {
                                    batch,
                                    dealer,
                                    reason: e.to_string(),
                                })),
                            }
                        }
                    }
                    actions.push(DkgAction::Submit(TransactionBody::DkgResponse { batch, complaints }));
                }
                Phase::Publishing if !record.published.contains(&self.me) && !self.sitting_out.contains(&batch) => {
                    let shares = match store.load_batch_shares(batch, self.me) {
                        Some(shares) => shares,
                        None => match self.sum_shares(ledger, state, batch, &record.qualified, &mut actions, rng)? {
                            Some(shares) => {
                                actions.push(DkgAction::StoreBatchShares { batch, shares: shares.clone() });
                                shares
                            }
                            None => {
                                self.sitting_out.push(batch);
                                continue;
                            }
                        },
                    };
                    if self.due(batch, Step::Publish, record.phase_height, height) {
                        let shares = shares.prove_public_shares(&context, rng);
                        actions.push(DkgAction::Submit(TransactionBody::DkgPublicShares { batch, shares }));
                    }
                }
                _ => {}
            }
        }
        Ok(actions)
    }

    /// This node's shares of a batch's keys: the sum of what the qualified
    /// dealers sent it. `None` if one of them sent wrong shares and the
    /// node missed the chance to complain (it then sits the batch out; the
    /// others still rebuild every key).
    fn sum_shares<S: StateRead + ?Sized, R: CryptoRng + ?Sized>(
        &mut self,
        ledger: &Ledger,
        state: &S,
        batch: u64,
        qualified: &[u16],
        actions: &mut Vec<DkgAction>,
        rng: &mut R,
    ) -> Result<Option<KeyShares>, LedgerError> {
        self.open_all(ledger, state, batch, qualified, rng)?;
        for dealer in qualified {
            if let Err(fault) = self.opened(batch, *dealer) {
                let (dealer, fault) = (*dealer, fault.describe());
                actions.push(DkgAction::Notice(DkgNotice::SittingOut { batch, dealer, fault }));
                return Ok(None);
            }
        }
        let Some(received) = self.received.get(&batch) else { return Ok(None) };
        let mine: Vec<&ReceivedShares> =
            qualified.iter().filter_map(|dealer| received.get(dealer).and_then(|r| r.as_ref().ok())).collect();
        if mine.len() != qualified.len() {
            return Ok(None);
        }
        let params = ledger.dkg_view(state)?.params();
        Ok(KeyShares::aggregate(&params, self.me, &mine).ok())
    }

    /// Opens and checks, all in one multi-scalar multiplication, what the
    /// given dealers sent this node (those not opened before).
    fn open_all<S: StateRead + ?Sized, R: CryptoRng + ?Sized>(
        &mut self,
        ledger: &Ledger,
        state: &S,
        batch: u64,
        dealers: &[u16],
        rng: &mut R,
    ) -> Result<(), LedgerError> {
        let view = ledger.dkg_view(state)?;
        let context = view.context(batch);
        let known = self.received.get(&batch);
        let mut dealings = Vec::new();
        for dealer in dealers {
            if known.is_some_and(|received| received.contains_key(dealer)) {
                continue;
            }
            let Some(dealing) = view.dealing(batch, *dealer)? else { continue };
            let parsed = dealing
                .parse_accepted(context.params())
                .map_err(|_| LedgerError::CorruptState("an accepted dealing no longer parses"))?;
            dealings.push((*dealer, dealing, parsed));
        }
        if dealings.is_empty() {
            return Ok(());
        }
        let items: Vec<(u16, &Dealing, &ParsedDealing)> =
            dealings.iter().map(|(d, dealing, p)| (*d, dealing, p)).collect();
        let results = open_dealings(&context, &items, self.me, &self.secret, rng);
        let received = self.received.entry(batch).or_default();
        for ((dealer, _, _), result) in dealings.iter().zip(results) {
            received.insert(*dealer, result);
        }
        Ok(())
    }

    /// What `dealer` sent this node in `batch`, as [`Self::open_all`]
    /// found it (a dealing that is not there counts as undecryptable).
    fn opened(&self, batch: u64, dealer: u16) -> Result<(), ShareFault> {
        match self.received.get(&batch).and_then(|received| received.get(&dealer)) {
            Some(result) => result.as_ref().map(|_| ()).map_err(|fault| *fault),
            None => Err(ShareFault::Undecryptable),
        }
    }
}
