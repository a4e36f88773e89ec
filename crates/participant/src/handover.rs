//! A node's part in a handover to the next epoch, as pure logic: given the
//! committed state after a block, the dealings it owes as an old node, the
//! responses it owes as a new node, the new shares to keep, and when the
//! next epoch's shares take over. Everything it needs after a restart is
//! in the ledger (the handover, its batches and dealings) or the node's
//! share store.

use std::collections::BTreeMap;

use quorumkey_crypto::group::{NonZeroScalar, Point, Scalar, point_to_bytes};
use quorumkey_dkg::dealing::ShareFault;
use quorumkey_dkg::reshare::recipient::DealingToOpen;
use quorumkey_dkg::reshare::{
    ParsedReshareDealing, ReceivedReshare, ReshareDealing, ReshareSecrets, combine_reshared, complain_reshare,
    open_reshare_dealings,
};
use quorumkey_ledger::handover::batch_keys_range;
use quorumkey_ledger::{HandoverStage, Ledger, LedgerError, NodeSet, ResharePhase, StateRead, TransactionBody};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::RESUBMIT_AFTER_BLOCKS;

/// What the handover participant wants done, in order.
#[derive(Debug)]
pub enum HandoverAction {
    /// Sign as the node with this index (in the set the message belongs
    /// to: the current set for a dealing, the next set for a response) and
    /// submit.
    Submit {
        /// The signer's index.
        index: u16,
        /// The transaction.
        body: TransactionBody,
    },
    /// Keep this node's shares of keys `first_key..` for epoch `epoch`
    /// (not in force yet; the current shares stay in use until then).
    StoreNextShares {
        /// The epoch they belong to.
        epoch: u64,
        /// The reshare batch.
        batch: u64,
        /// The first key's index.
        first_key: u64,
        /// The shares, in key order. Secret.
        shares: Zeroizing<Vec<Scalar>>,
    },
    /// Epoch `epoch` is in force: its stored shares replace this node's
    /// shares, and the old ones are deleted (all of them, if this node is
    /// not in the new set).
    ActivateEpoch {
        /// The epoch.
        epoch: u64,
        /// This node's index in it, if it is in it.
        index: Option<u16>,
    },
    /// Something the operator should know.
    Notice(HandoverNotice),
}

/// What the handover participant reports besides its actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoverNotice {
    /// This node lacks its share of a key it should deal (it was away
    /// when the key was made); the other old nodes deal instead.
    CannotDeal {
        /// The batch.
        batch: u64,
        /// Why.
        reason: String,
    },
    /// A dealer's shares to this node are wrong: it complains.
    Complaining {
        /// The batch.
        batch: u64,
        /// The dealer.
        dealer: u16,
        /// What is wrong.
        fault: &'static str,
    },
    /// A qualified dealer's shares to this node are wrong, or its dealing
    /// is gone: this node holds no shares of the batch's keys in the next
    /// epoch (the others still rebuild every key).
    SittingOut {
        /// The batch.
        batch: u64,
        /// Why.
        reason: String,
    },
}

/// What the node's share store tells the handover participant.
pub trait HandoverShareStore {
    /// This node's share of key `index` in the epoch its shares are for.
    fn key_share(&self, index: u64) -> Option<Scalar>;
    /// The epoch the node's shares in use are for.
    fn share_epoch(&self) -> u64;
    /// True if this node keeps its shares of reshare batch `batch` for
    /// epoch `epoch`.
    fn has_next_shares(&self, epoch: u64, batch: u64) -> bool;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Deal,
    Respond,
}

/// A finished reshare batch, as [`HandoverParticipant::store_finished`]
/// takes it.
#[derive(Clone, Copy)]
struct FinishedBatch<'a> {
    context: &'a quorumkey_dkg::reshare::ReshareContext,
    /// The epoch whose public shares the dealers dealt from.
    old_epoch: u64,
    epoch: u64,
    batch: u64,
    first: u64,
    count: u16,
}

/// One node's handover participant.
pub struct HandoverParticipant {
    secret: NonZeroScalar,
    public: [u8; 33],
    /// What each dealer of a batch sent this node, checked, by (epoch,
    /// batch).
    received: BTreeMap<(u64, u64), BTreeMap<u16, Result<ReceivedReshare, ShareFault>>>,
    /// When each message was last submitted, by (epoch, batch, step, the
    /// phase's start height).
    submitted: BTreeMap<(u64, u64, Step, u64), u64>,
    /// Batches this node holds no next-epoch shares of.
    sitting_out: Vec<(u64, u64)>,
}

impl std::fmt::Debug for HandoverParticipant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandoverParticipant").finish_non_exhaustive()
    }
}

impl HandoverParticipant {
    /// The node with this secp256k1 secret key (it finds itself in each
    /// node set by the key's public half).
    pub fn new(secret: NonZeroScalar) -> Self {
        let public = point_to_bytes(&(Point::GENERATOR * secret.as_ref()));
        Self { secret, public, received: BTreeMap::new(), submitted: BTreeMap::new(), sitting_out: Vec::new() }
    }

    /// This node's index in `set`, if it is a member.
    pub fn index_in(&self, set: &NodeSet) -> Option<u16> {
        set.index_of_secp256k1(&self.public)
    }

    fn due(&mut self, key: (u64, u64, Step, u64), height: u64) -> bool {
        match self.submitted.get(&key) {
            Some(at) if height < at.saturating_add(RESUBMIT_AFTER_BLOCKS) => false,
            _ => {
                self.submitted.insert(key, height);
                true
            }
        }
    }

    /// The actions after the block at `height` was applied to `state`, at
    /// local time `now_ms`.
    pub fn on_block<S: StateRead + ?Sized, R: CryptoRng + ?Sized>(
        &mut self,
        ledger: &Ledger,
        state: &S,
        height: u64,
        now_ms: u64,
        store: &dyn HandoverShareStore,
        rng: &mut R,
    ) -> Result<Vec<HandoverAction>, LedgerError> {
        let view = ledger.epoch_view(state);
        let current = view.current()?;
        let mut actions = Vec::new();
        if store.share_epoch() < current.epoch {
            self.catch_up_before_activation(ledger, state, &current, store, &mut actions, rng)?;
            actions.push(HandoverAction::ActivateEpoch { epoch: current.epoch, index: self.index_in(&current) });
            self.received.clear();
            self.submitted.clear();
            self.sitting_out.clear();
        }
        let Some(handover) = view.handover()? else { return Ok(actions) };
        let epoch = handover.next.epoch;
        let (keys, batch_keys, next_batch, oldest_open, oldest_unpruned) = match handover.stage {
            HandoverStage::Draining => return Ok(actions),
            HandoverStage::Resharing { keys, batch_keys, next_batch, oldest_open, oldest_unpruned } => {
                (keys, batch_keys, next_batch, oldest_open, oldest_unpruned)
            }
            HandoverStage::Ready { keys, batch_keys, oldest_unpruned, .. } => {
                let batches = keys.div_ceil(u64::from(batch_keys));
                (keys, batch_keys, batches, batches, oldest_unpruned)
            }
        };
        let me_old = self.index_in(&current);
        let me_new = self.index_in(&handover.next);
        let settings = view.settings();
        let standby_blocks = u64::from(settings.phase_min_blocks / 2);
        let standby_ms = settings.phase_min_ms / 2;
        let new_keys =
            handover.next.secp256k1_points().ok_or(LedgerError::CorruptState("a next-set node key is not a point"))?;
        self.received.retain(|(e, batch), _| *e == epoch && *batch >= oldest_unpruned);
        self.sitting_out.retain(|(e, batch)| *e == epoch && *batch >= oldest_unpruned);
        for batch in oldest_unpruned..next_batch {
            let Some(record) = view.batch(epoch, batch)? else { continue };
            let Some(context) = view.context(&current, &handover, batch) else { continue };
            let (first, count) = batch_keys_range(keys, batch_keys, batch);
            match record.phase {
                ResharePhase::Dealing if batch >= oldest_open => {
                    let Some(me) = me_old else { continue };
                    if record.dealt.contains(&me)
                        || !(context.params().designated_dealer(batch, me)
                            || record.topping_up()
                            || (height >= record.phase_height.saturating_add(standby_blocks)
                                && now_ms >= record.phase_time_ms.saturating_add(standby_ms)))
                        || !self.due((epoch, batch, Step::Deal, record.phase_height), height)
                    {
                        continue;
                    }
                    let shares: Option<Zeroizing<Vec<Scalar>>> = (first..first + u64::from(count))
                        .map(|index| store.key_share(index))
                        .collect::<Option<Vec<_>>>()
                        .map(Zeroizing::new);
                    let Some(shares) = shares.filter(|_| store.share_epoch() == current.epoch) else {
                        actions.push(HandoverAction::Notice(HandoverNotice::CannotDeal {
                            batch,
                            reason: format!(
                                "this node lacks a share of a key in {first}..{}",
                                first + u64::from(count)
                            ),
                        }));
                        continue;
                    };
                    let dealing = ReshareSecrets::new(*context.params(), &shares, rng)
                        .and_then(|secrets| secrets.deal(&context, me, &new_keys, rng));
                    match dealing {
                        Ok(dealing) => actions.push(HandoverAction::Submit {
                            index: me,
                            body: TransactionBody::ReshareDeal { epoch, batch, dealing },
                        }),
                        Err(e) => actions
                            .push(HandoverAction::Notice(HandoverNotice::CannotDeal { batch, reason: e.to_string() })),
                    }
                }
                ResharePhase::Responding => {
                    let Some(me) = me_new else { continue };
                    if record.responded.contains(&me)
                        || !self.due((epoch, batch, Step::Respond, record.phase_height), height)
                    {
                        continue;
                    }
                    let standing = record.standing();
                    self.open(ledger, state, &context, current.epoch, epoch, batch, &standing, first, count, me, rng)?;
                    let mut complaints = Vec::new();
                    for dealer in standing {
                        if let Err(fault) = self.opened(epoch, batch, dealer) {
                            actions.push(HandoverAction::Notice(HandoverNotice::Complaining {
                                batch,
                                dealer,
                                fault: fault.describe(),
                            }));
                            let Some(dealing) = view.dealing(epoch, batch, dealer)? else { continue };
                            let Ok(parsed) = dealing.parse_accepted(context.params()) else { continue };
                            if let Ok(complaint) = complain_reshare(&context, dealer, &parsed, me, &self.secret, rng) {
                                complaints.push(complaint);
                            }
                        }
                    }
                    actions.push(HandoverAction::Submit {
                        index: me,
                        body: TransactionBody::ReshareResponse { epoch, batch, complaints },
                    });
                }
                ResharePhase::Finished => {
                    let Some(me) = me_new else { continue };
                    if store.has_next_shares(epoch, batch) || self.sitting_out.contains(&(epoch, batch)) {
                        continue;
                    }
                    let finished =
                        FinishedBatch { context: &context, old_epoch: current.epoch, epoch, batch, first, count };
                    self.store_finished(ledger, state, &finished, &record.qualified, me, &mut actions, rng)?;
                }
                _ => {}
            }
        }
        Ok(actions)
    }

    /// This node's shares of a finished batch's keys from the qualified
    /// dealers, to keep for the next epoch (or why it sits the batch out).
    #[allow(clippy::too_many_arguments)]
    fn store_finished<S: StateRead + ?Sized, R: CryptoRng + ?Sized>(
        &mut self,
        ledger: &Ledger,
        state: &S,
        finished: &FinishedBatch<'_>,
        qualified: &[u16],
        me: u16,
        actions: &mut Vec<HandoverAction>,
        rng: &mut R,
    ) -> Result<(), LedgerError> {
        let FinishedBatch { context, old_epoch, epoch, batch, first, count } = *finished;
        self.open(ledger, state, context, old_epoch, epoch, batch, qualified, first, count, me, rng)?;
        let Some(received) = self.received.get(&(epoch, batch)) else { return Ok(()) };
        let mut mine = Vec::with_capacity(qualified.len());
        let mut missing = None;
        for dealer in qualified {
            match received.get(dealer) {
                Some(Ok(shares)) => mine.push(shares),
                Some(Err(fault)) => missing = Some(format!("dealer {dealer}: {}", fault.describe())),
                None => missing = Some(format!("dealer {dealer}'s dealing is no longer kept")),
            }
        }
        match missing {
            None => match combine_reshared(context.params(), &mine) {
                Ok(shares) => actions.push(HandoverAction::StoreNextShares { epoch, batch, first_key: first, shares }),
                Err(e) => {
                    actions.push(HandoverAction::Notice(HandoverNotice::SittingOut { batch, reason: e.to_string() }))
                }
            },
            Some(reason) => {
                self.sitting_out.push((epoch, batch));
                actions.push(HandoverAction::Notice(HandoverNotice::SittingOut { batch, reason }));
            }
        }
        self.received.remove(&(epoch, batch));
        Ok(())
    }

    /// Before a new epoch's shares are put in force: the shares of the
    /// finished batches of the handover that made it which this node has
    /// not stored yet (its participant was behind, or it was down, at the
    /// boundary), from the records the ledger keeps a while after it.
    fn catch_up_before_activation<S: StateRead + ?Sized, R: CryptoRng + ?Sized>(
        &mut self,
        ledger: &Ledger,
        state: &S,
        current: &NodeSet,
        store: &dyn HandoverShareStore,
        actions: &mut Vec<HandoverAction>,
        rng: &mut R,
    ) -> Result<(), LedgerError> {
        let view = ledger.epoch_view(state);
        let Some(last) = view.last_handover()? else { return Ok(()) };
        let Some(me) = self.index_in(current) else { return Ok(()) };
        if last.handover.next.epoch != current.epoch {
            return Ok(());
        }
        let HandoverStage::Ready { keys, batch_keys, oldest_unpruned, .. } = last.handover.stage else {
            return Ok(());
        };
        let epoch = current.epoch;
        for batch in oldest_unpruned..keys.div_ceil(u64::from(batch_keys)) {
            if store.has_next_shares(epoch, batch) || self.sitting_out.contains(&(epoch, batch)) {
                continue;
            }
            let Some(record) = view.batch(epoch, batch)? else { continue };
            let Some(context) = view.context(&last.previous, &last.handover, batch) else { continue };
            if record.phase != ResharePhase::Finished {
                continue;
            }
            let (first, count) = batch_keys_range(keys, batch_keys, batch);
            let finished =
                FinishedBatch { context: &context, old_epoch: last.previous.epoch, epoch, batch, first, count };
            self.store_finished(ledger, state, &finished, &record.qualified, me, actions, rng)?;
        }
        Ok(())
    }

    /// Opens and checks, in one multi-scalar multiplication, what the
    /// given dealers sent this node in a batch (those not opened before).
    #[allow(clippy::too_many_arguments)]
    fn open<S: StateRead + ?Sized, R: CryptoRng + ?Sized>(
        &mut self,
        ledger: &Ledger,
        state: &S,
        context: &quorumkey_dkg::reshare::ReshareContext,
        old_epoch: u64,
        epoch: u64,
        batch: u64,
        dealers: &[u16],
        first: u64,
        count: u16,
        me: u16,
        rng: &mut R,
    ) -> Result<(), LedgerError> {
        let view = ledger.epoch_view(state);
        let known = self.received.get(&(epoch, batch));
        let mut dealings: Vec<(u16, ReshareDealing, ParsedReshareDealing, Vec<quorumkey_crypto::group::AffinePoint>)> =
            Vec::new();
        for dealer in dealers {
            if known.is_some_and(|received| received.contains_key(dealer)) {
                continue;
            }
            let Some(dealing) = view.dealing(epoch, batch, *dealer)? else { continue };
            let parsed = dealing
                .parse_accepted(context.params())
                .map_err(|_| LedgerError::CorruptState("an accepted reshare dealing no longer parses"))?;
            let old = view.public_shares_in(old_epoch, *dealer, first, count)?;
            dealings.push((*dealer, dealing, parsed, old));
        }
        if dealings.is_empty() {
            return Ok(());
        }
        let items: Vec<DealingToOpen<'_>> =
            dealings.iter().map(|(dealer, dealing, parsed, old)| (*dealer, dealing, parsed, old.as_slice())).collect();
        let results = open_reshare_dealings(context, &items, me, &self.secret, rng);
        let received = self.received.entry((epoch, batch)).or_default();
        for ((dealer, _, _, _), result) in dealings.iter().zip(results) {
            received.insert(*dealer, result);
        }
        Ok(())
    }

    fn opened(&self, epoch: u64, batch: u64, dealer: u16) -> Result<(), ShareFault> {
        match self.received.get(&(epoch, batch)).and_then(|received| received.get(&dealer)) {
            Some(result) => result.as_ref().map(|_| ()).map_err(|fault| *fault),
            None => Err(ShareFault::Undecryptable),
        }
    }
}
