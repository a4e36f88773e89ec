//! The decisions of a login's commitments and reveal, without I/O: which
//! node to send what next, given the answers so far and the time. A
//! [`LoginPlan`] sends nothing, spawns nothing and reads no clock; the
//! async client ([`crate::QuorumkeyClient`]) sends what [`LoginPlan::poll`]
//! says, checks each answer (signatures and shares need keys), hands the
//! outcome back, and wakes at [`LoginPlan::poll_timeout`] for the hedge.
//!
//! The rules:
//!
//! - Commitments go to every node at once, in the order given (the
//!   client's shuffled order). Each node's answer is recorded: a signature
//!   that checked out, or why not. The reveal becomes possible once the
//!   reveal quorum, ⌈(n + t) / 2⌉ nodes
//!   ([`quorumkey_login::required_signatures`]), signed; the nodes that
//!   signed are kept in the order their signatures came. When every
//!   commitment is answered with fewer signatures, the login fails at the
//!   `commitment` step.
//! - The reveal goes first to the first `t` signers in that order; for
//!   each share that fails, to one more signer, the next in that order
//!   (signers whose commitment comes during the reveal count too); once
//!   the hedge delay has passed since the reveal started without `t` good
//!   shares, to every signer. A reveal carries every signature known when
//!   it is sent. No node that did not sign is asked, and no node twice.
//! - Commitment answers still pending during the reveal are read only when
//!   another signer is needed: after the hedge, or while more shares have
//!   failed than signers were asked beyond the first `t`
//!   ([`LoginPlan::needs_commitment_answers`]).
//! - The login is done as soon as exactly `t` good shares are in; it fails
//!   at the `reveal` step when no request is pending any more with fewer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use quorumkey_login::required_signatures;

use crate::{ClientError, NodeFailure, NodeReport};

/// A node's answer to its `CommitmentRequest`, as the plan needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// It signed, with a signature that checks out as the nodes will check
    /// it.
    Signed,
    /// It did not (an error answer, no answer, an unusable signature):
    /// why, as the node's report will say it.
    Failed(String),
}

/// A node's answer to its `ShareRequest`, as the plan needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareOutcome {
    /// A share that decrypted and checked out against the node's public
    /// share.
    Good,
    /// A refusal, no answer, or a wrong share: why, as the node's report
    /// will say it.
    Failed(String),
}

/// What the loop driving a [`LoginPlan`] does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanStep {
    /// Send the `CommitmentRequest` to the node at `position`.
    SendCommitment {
        /// The node's position in the network's list.
        position: usize,
    },
    /// Send the `ShareRequest` to the node at `position`.
    SendReveal {
        /// The node's position in the network's list.
        position: usize,
        /// How many commitment signatures the request carries: those of
        /// the first `signatures` signers ([`LoginPlan::signers`]), every
        /// one known when the plan decided to send it.
        signatures: usize,
    },
    /// Nothing to send: wait for an answer to a request in flight (a
    /// commitment's only if [`LoginPlan::needs_commitment_answers`]) or
    /// for [`LoginPlan::poll_timeout`].
    Wait,
    /// The reveal quorum signed: start the reveal
    /// ([`LoginPlan::start_reveal`]) once the key is known.
    ReadyToReveal,
    /// `t` good shares are in: interpolate those of the nodes at `used`.
    Done {
        /// The positions of the nodes whose shares are used, exactly `t`,
        /// in the order the shares came.
        used: Vec<usize>,
    },
    /// The login failed: a step got fewer nodes than it needs.
    Failed(QuorumShortfall),
}

/// A step of a login that got fewer nodes than it needs: the plan's side
/// of [`ClientError::Quorum`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumShortfall {
    /// Which step: `commitment` or `reveal`.
    pub step: &'static str,
    /// Nodes needed: the reveal quorum for the commitments, `t` for the
    /// reveal.
    pub needed: usize,
    /// Nodes that signed, or that served a good share.
    pub got: usize,
    /// Why the others did not, node by node.
    pub failures: Vec<NodeFailure>,
}

impl From<QuorumShortfall> for ClientError {
    fn from(QuorumShortfall { step, needed, got, failures }: QuorumShortfall) -> Self {
        Self::Quorum { step, needed, got, failures }
    }
}

/// Where a login is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Commitments out, fewer than the reveal quorum signed so far.
    Committing,
    /// The reveal quorum signed; the reveal has not started.
    ReadyToReveal,
    /// Reveals out, fewer than `t` good shares so far.
    Revealing,
    /// `t` good shares.
    Done,
    /// Too few signatures or good shares.
    Failed(QuorumShortfall),
}

/// Where one node's `ShareRequest` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RevealRequest {
    NotAsked,
    Pending,
    Answered,
}

/// The commitments and the reveal of one login, as a state machine: the
/// answers and the time go in ([`Self::commitment_answered`],
/// [`Self::start_reveal`], [`Self::share_answered`],
/// [`Self::handle_timeout`]), the requests to send and the outcome come out
/// ([`Self::poll`], [`Self::poll_timeout`]), with each node's
/// [`NodeReport`].
#[derive(Clone, Debug)]
pub struct LoginPlan {
    threshold: usize,
    reveal_quorum: usize,
    hedge_delay: Duration,
    phase: Phase,
    /// Requests decided and not yet handed out by [`Self::poll`].
    outbox: VecDeque<PlanStep>,
    /// What each node did, by position.
    reports: Vec<NodeReport>,
    /// Whether each node's commitment is out and not answered yet.
    commitment_pending: Vec<bool>,
    commitments_pending: usize,
    /// Positions of the nodes that signed, in the order they answered.
    signers: Vec<usize>,
    reveals: Vec<RevealRequest>,
    reveals_pending: usize,
    /// Signers asked for their share: the first `asked` of `signers`.
    asked: usize,
    /// Shares that failed.
    failed_shares: usize,
    /// Positions of the nodes whose share is good, in the order they came.
    good_shares: Vec<usize>,
    /// When the reveal asks every signer (`None`: not started, or never).
    hedge_at: Option<Instant>,
    hedged: bool,
}

impl LoginPlan {
    /// A login on the nodes `nodes` (their indices, by position) with
    /// threshold `threshold`, hedging its reveal after `hedge_delay`; its
    /// commitments go to the positions of `order`, in that order (a
    /// position out of range, or given twice, is skipped).
    pub fn new(
        nodes: impl IntoIterator<Item = u16>,
        threshold: usize,
        hedge_delay: Duration,
        order: impl IntoIterator<Item = usize>,
    ) -> Self {
        let reports: Vec<NodeReport> =
            nodes.into_iter().map(|node| NodeReport { node, ..NodeReport::default() }).collect();
        let count = reports.len();
        let mut plan = Self {
            threshold,
            reveal_quorum: required_signatures(count, threshold),
            hedge_delay,
            phase: Phase::Committing,
            outbox: VecDeque::with_capacity(count),
            reports,
            commitment_pending: vec![false; count],
            commitments_pending: 0,
            signers: Vec::with_capacity(count),
            reveals: vec![RevealRequest::NotAsked; count],
            reveals_pending: 0,
            asked: 0,
            failed_shares: 0,
            good_shares: Vec::with_capacity(threshold.min(count)),
            hedge_at: None,
            hedged: false,
        };
        for position in order {
            if let Some(pending @ false) = plan.commitment_pending.get_mut(position) {
                *pending = true;
                plan.commitments_pending += 1;
                plan.outbox.push_back(PlanStep::SendCommitment { position });
            }
        }
        plan.settle_commitments();
        plan
    }

    /// Shares needed to rebuild the key (`t`).
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Commitment signatures the reveal needs: ⌈(n + t) / 2⌉.
    pub fn reveal_quorum(&self) -> usize {
        self.reveal_quorum
    }

    /// The positions of the nodes that signed, in the order their
    /// signatures came.
    pub fn signers(&self) -> &[usize] {
        &self.signers
    }

    /// What each node did so far, by position.
    pub fn reports(&self) -> &[NodeReport] {
        &self.reports
    }

    /// What each node did, by position, for the login's result.
    pub fn into_reports(self) -> Vec<NodeReport> {
        self.reports
    }

    /// The next thing to do: a request to send (each one once), else
    /// where the login is.
    pub fn poll(&mut self) -> PlanStep {
        if let Some(step) = self.outbox.pop_front() {
            return step;
        }
        match &self.phase {
            Phase::Committing | Phase::Revealing => PlanStep::Wait,
            Phase::ReadyToReveal => PlanStep::ReadyToReveal,
            Phase::Done => PlanStep::Done { used: self.good_shares.clone() },
            Phase::Failed(shortfall) => PlanStep::Failed(shortfall.clone()),
        }
    }

    /// When the plan next needs [`Self::handle_timeout`]: the hedge, while
    /// the reveal runs and has not hedged.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Revealing if !self.hedged => self.hedge_at,
            _ => None,
        }
    }

    /// Whether the loop reads answers to commitments still pending: always
    /// while the commitments run; during the reveal only when another
    /// signer is needed (after the hedge, or while more shares failed than
    /// signers were asked beyond the first `t`); never otherwise.
    pub fn needs_commitment_answers(&self) -> bool {
        self.commitments_pending > 0
            && match self.phase {
                Phase::Committing => true,
                Phase::Revealing => self.hedged || self.failed_shares > self.asked.saturating_sub(self.threshold),
                Phase::ReadyToReveal | Phase::Done | Phase::Failed(_) => false,
            }
    }

    /// Records the answer to the commitment sent to `position`, which came
    /// `took` after the commitments started, after `rate_limited` refusals
    /// over a rate limit. `false` (and nothing recorded) if no commitment
    /// to that node is pending or the login is over.
    pub fn commitment_answered(
        &mut self,
        position: usize,
        outcome: CommitOutcome,
        took: Duration,
        rate_limited: u32,
    ) -> bool {
        if matches!(self.phase, Phase::Done | Phase::Failed(_)) {
            return false;
        }
        let (Some(pending @ true), Some(report)) =
            (self.commitment_pending.get_mut(position), self.reports.get_mut(position))
        else {
            return false;
        };
        *pending = false;
        self.commitments_pending -= 1;
        report.rate_limited = rate_limited;
        match outcome {
            CommitOutcome::Signed => {
                report.commitment = Some(Ok(took));
                self.signers.push(position);
            }
            CommitOutcome::Failed(reason) => report.commitment = Some(Err(reason)),
        }
        match self.phase {
            Phase::Committing => self.settle_commitments(),
            Phase::Revealing => {
                self.ask_signers();
                self.settle_reveal();
            }
            Phase::ReadyToReveal | Phase::Done | Phase::Failed(_) => {}
        }
        true
    }

    /// Starts the reveal at `now` (the hedge is `hedge_delay` later): the
    /// first `t` signers are asked. Nothing happens unless the plan is at
    /// [`PlanStep::ReadyToReveal`].
    pub fn start_reveal(&mut self, now: Instant) {
        if self.phase != Phase::ReadyToReveal {
            return;
        }
        self.phase = Phase::Revealing;
        self.hedge_at = now.checked_add(self.hedge_delay);
        while self.asked < self.threshold.min(self.signers.len()) {
            self.ask_next_signer();
        }
        self.settle_reveal();
    }

    /// Records the answer to the reveal sent to `position`, which came
    /// `took` after the reveal started. `false` (and nothing recorded) if
    /// no reveal to that node is pending or the login is over.
    pub fn share_answered(&mut self, position: usize, outcome: ShareOutcome, took: Duration) -> bool {
        if self.phase != Phase::Revealing {
            return false;
        }
        let (Some(request @ RevealRequest::Pending), Some(report)) =
            (self.reveals.get_mut(position), self.reports.get_mut(position))
        else {
            return false;
        };
        *request = RevealRequest::Answered;
        self.reveals_pending -= 1;
        match outcome {
            ShareOutcome::Good => {
                report.share = Some(Ok(took));
                report.used = true;
                self.good_shares.push(position);
            }
            ShareOutcome::Failed(reason) => {
                report.share = Some(Err(reason));
                self.failed_shares += 1;
            }
        }
        self.ask_signers();
        self.settle_reveal();
        true
    }

    /// A share counted good turns out not to be (the client fetched the
    /// key's public shares again and it does not match them): it no longer
    /// counts, and the plan asks other signers for theirs.
    pub fn revoke_share(&mut self, position: usize, reason: String) {
        if self.phase != Phase::Revealing {
            return;
        }
        let Some(found) = self.good_shares.iter().position(|p| *p == position) else { return };
        self.good_shares.remove(found);
        if let Some(report) = self.reports.get_mut(position) {
            report.share = Some(Err(reason));
            report.used = false;
        }
        self.failed_shares += 1;
        self.ask_signers();
        self.settle_reveal();
    }

    /// A share counted failed turns out good (the client fetched the key's
    /// public shares again and it matches them): it counts now, with the
    /// time its answer took.
    pub fn reinstate_share(&mut self, position: usize, took: Duration) {
        if self.phase != Phase::Revealing || self.good_shares.contains(&position) {
            return;
        }
        let (Some(RevealRequest::Answered), Some(report)) =
            (self.reveals.get(position), self.reports.get_mut(position))
        else {
            return;
        };
        if !matches!(report.share, Some(Err(_))) {
            return;
        }
        report.share = Some(Ok(took));
        report.used = true;
        self.good_shares.push(position);
        self.failed_shares = self.failed_shares.saturating_sub(1);
        self.settle_reveal();
    }

    /// The time is `now`: once the hedge is due, every signer not asked
    /// yet is (and every later one will be as soon as it signs).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Revealing && !self.hedged && self.hedge_at.is_some_and(|at| now >= at) {
            self.hedged = true;
            self.ask_signers();
            self.settle_reveal();
        }
    }

    /// Ends the plan when the loop has no answer left to wait for: the
    /// requests still pending count as unanswered, and the step under way
    /// fails (a login already done stays done).
    pub fn abandon(&mut self) {
        match self.phase {
            Phase::Committing => self.fail_commitments(),
            Phase::ReadyToReveal | Phase::Revealing => self.fail_reveal(),
            Phase::Done | Phase::Failed(_) => {}
        }
    }

    /// After a commitment answer: ready once the reveal quorum signed;
    /// failed once every commitment is answered with fewer.
    fn settle_commitments(&mut self) {
        if self.signers.len() >= self.reveal_quorum {
            self.phase = Phase::ReadyToReveal;
        } else if self.commitments_pending == 0 {
            self.fail_commitments();
        }
    }

    /// One more signer asked beyond the first `t` for each failed share,
    /// every signer once hedged, as far as there are signers not asked.
    fn ask_signers(&mut self) {
        let wanted = if self.hedged { usize::MAX } else { self.failed_shares };
        while wanted > self.asked.saturating_sub(self.threshold) && self.asked < self.signers.len() {
            self.ask_next_signer();
        }
    }

    fn ask_next_signer(&mut self) {
        let Some(&position) = self.signers.get(self.asked) else { return };
        self.asked += 1;
        if let Some(request @ RevealRequest::NotAsked) = self.reveals.get_mut(position) {
            *request = RevealRequest::Pending;
            self.reveals_pending += 1;
            self.outbox.push_back(PlanStep::SendReveal { position, signatures: self.signers.len() });
        }
    }

    /// After a reveal answer, a new signer or the hedge: done at `t` good
    /// shares; failed once nothing is pending with fewer.
    fn settle_reveal(&mut self) {
        if self.good_shares.len() >= self.threshold {
            self.phase = Phase::Done;
            self.outbox.clear();
        } else if self.reveals_pending == 0 && self.commitments_pending == 0 {
            self.fail_reveal();
        }
    }

    fn fail_commitments(&mut self) {
        self.fail(QuorumShortfall {
            step: "commitment",
            needed: self.reveal_quorum,
            got: self.signers.len(),
            failures: failures_of(&self.reports, |report| &report.commitment),
        });
    }

    fn fail_reveal(&mut self) {
        self.fail(QuorumShortfall {
            step: "reveal",
            needed: self.threshold,
            got: self.good_shares.len(),
            failures: failures_of(&self.reports, |report| &report.share),
        });
    }

    fn fail(&mut self, shortfall: QuorumShortfall) {
        self.phase = Phase::Failed(shortfall);
        self.outbox.clear();
    }
}

/// Every node without a good answer in `field` (its commitment, or its
/// share), with why.
fn failures_of(
    reports: &[NodeReport],
    field: impl Fn(&NodeReport) -> &Option<Result<Duration, String>>,
) -> Vec<NodeFailure> {
    reports
        .iter()
        .filter_map(|report| {
            let reason = match (&report.commitment, field(report)) {
                (_, Some(Ok(_))) => return None,
                (_, Some(Err(reason))) => reason.clone(),
                (Some(Err(reason)), None) => format!("no commitment: {reason}"),
                (_, None) => "no answer in time".to_owned(),
            };
            Some(NodeFailure { node: report.node, reason })
        })
        .collect()
}
