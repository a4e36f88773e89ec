//! The login plan (`quorumkey_client::login_plan`) without sockets: its
//! commitment, reveal and hedging rules one by one on five nodes, then as
//! properties of whole logins simulated with random network sizes, answer
//! times (so random orders), failed commitments and shares, lookup times
//! and hedge delays.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use quorumkey_client::login_plan::{CommitOutcome, LoginPlan, PlanStep, QuorumShortfall, ShareOutcome};
use quorumkey_client::{ClientError, NodeFailure};

const N: usize = 5;
const T: usize = 3;
const QUORUM: usize = 4;
const HEDGE: Duration = Duration::from_millis(250);
const MS: Duration = Duration::from_millis(1);

/// A plan on five nodes (indices 1 to 5), commitments in position order.
fn plan() -> LoginPlan {
    LoginPlan::new(1..=N as u16, T, HEDGE, 0..N)
}

/// The requests the plan sends now (as `(position, signatures)`; a
/// commitment as `(position, 0)`), and the step after them.
fn drain(plan: &mut LoginPlan) -> (Vec<(usize, usize)>, PlanStep) {
    let mut sent = Vec::new();
    loop {
        match plan.poll() {
            PlanStep::SendCommitment { position } => sent.push((position, 0)),
            PlanStep::SendReveal { position, signatures } => sent.push((position, signatures)),
            other => return (sent, other),
        }
    }
}

fn signed(plan: &mut LoginPlan, position: usize) {
    assert!(plan.commitment_answered(position, CommitOutcome::Signed, MS, 0));
}

fn refused(plan: &mut LoginPlan, position: usize) {
    assert!(plan.commitment_answered(position, CommitOutcome::Failed(format!("refused by {position}")), MS, 0));
}

fn share(plan: &mut LoginPlan, position: usize, good: bool) {
    let outcome =
        if good { ShareOutcome::Good } else { ShareOutcome::Failed(format!("a wrong share from {position}")) };
    assert!(plan.share_answered(position, outcome, MS));
}

/// A plan whose commitments all went out and whose nodes at `signers`
/// signed, in that order, with the reveal started at `start`.
fn revealing(signers: &[usize], start: Instant) -> LoginPlan {
    let mut plan = plan();
    assert_eq!(drain(&mut plan).0.len(), N);
    for &position in signers {
        signed(&mut plan, position);
    }
    plan.start_reveal(start);
    plan
}

#[test]
fn commitments_go_to_every_node_at_once_in_the_order_given() {
    let mut plan = LoginPlan::new(1..=N as u16, T, HEDGE, [3, 1, 4, 0, 2]);
    let (sent, next) = drain(&mut plan);
    assert_eq!(sent, [(3, 0), (1, 0), (4, 0), (0, 0), (2, 0)]);
    assert_eq!(next, PlanStep::Wait);
    assert!(plan.needs_commitment_answers());
    assert_eq!((plan.threshold(), plan.reveal_quorum()), (T, QUORUM), "⌈(5 + 3) / 2⌉");
}

#[test]
fn no_reveal_before_the_reveal_quorum_signed() {
    let mut plan = plan();
    drain(&mut plan);
    for position in [4, 2, 0] {
        signed(&mut plan, position);
    }
    refused(&mut plan, 1);
    // Three signatures: a reveal now would be refused by every node.
    plan.start_reveal(Instant::now());
    assert_eq!(drain(&mut plan), (vec![], PlanStep::Wait), "three signatures are not the quorum");
    signed(&mut plan, 3);
    assert_eq!(drain(&mut plan), (vec![], PlanStep::ReadyToReveal));
    assert_eq!(plan.signers(), [4, 2, 0, 3], "in the order they signed");
    assert!(!plan.needs_commitment_answers(), "nothing pending");
}

#[test]
fn the_first_reveal_goes_to_the_first_t_signers_in_arrival_order() {
    let mut plan = revealing(&[2, 0, 4, 1], Instant::now());
    assert_eq!(drain(&mut plan), (vec![(2, 4), (0, 4), (4, 4)], PlanStep::Wait));
}

#[test]
fn each_failed_share_asks_the_next_signer_once() {
    let mut plan = revealing(&[2, 0, 4, 1], Instant::now());
    drain(&mut plan);
    share(&mut plan, 2, true);
    assert_eq!(drain(&mut plan), (vec![], PlanStep::Wait), "a good share asks no one");
    share(&mut plan, 0, false);
    assert_eq!(drain(&mut plan), (vec![(1, 4)], PlanStep::Wait), "one more, the next in arrival order");
    assert!(!plan.needs_commitment_answers(), "one failure, one more signer asked");
}

/// A share counted good is taken back (it is of the epoch before the
/// network's public shares the client fetched again): it no longer
/// counts, and the next signer is asked in its place.
#[test]
fn a_revoked_share_no_longer_counts_and_asks_the_next_signer() {
    let mut plan = revealing(&[2, 0, 4, 1, 3], Instant::now());
    drain(&mut plan);
    share(&mut plan, 2, true);
    share(&mut plan, 0, true);
    plan.revoke_share(2, "of the last epoch".to_owned());
    assert_eq!(drain(&mut plan), (vec![(1, 5)], PlanStep::Wait), "node 2's place goes to the next signer");
    // Revoking a share never counted, or twice, changes nothing.
    plan.revoke_share(3, "never answered".to_owned());
    plan.revoke_share(2, "again".to_owned());
    assert_eq!(drain(&mut plan), (vec![], PlanStep::Wait));
    share(&mut plan, 4, true);
    share(&mut plan, 1, true);
    assert_eq!(drain(&mut plan), (vec![], PlanStep::Done { used: vec![0, 4, 1] }));
    let reports = plan.into_reports();
    assert!(!reports[2].used, "the revoked share is not used");
    assert_eq!(reports[2].share, Some(Err("of the last epoch".to_owned())));
}

/// A share counted failed turns out good (it is of the epoch the public
/// shares, fetched again, now hold): it counts, and can finish the login.
#[test]
fn a_reinstated_share_counts_again() {
    let mut plan = revealing(&[2, 0, 4, 1, 3], Instant::now());
    drain(&mut plan);
    share(&mut plan, 2, false);
    assert_eq!(drain(&mut plan), (vec![(1, 5)], PlanStep::Wait), "a failure asks the next signer");
    share(&mut plan, 0, true);
    // Not answered, or already good: nothing changes.
    plan.reinstate_share(3, MS);
    plan.reinstate_share(0, MS);
    plan.reinstate_share(2, MS);
    share(&mut plan, 4, true);
    assert_eq!(drain(&mut plan), (vec![], PlanStep::Done { used: vec![0, 2, 4] }));
    let reports = plan.into_reports();
    assert!(reports[2].used, "the reinstated share is used");
    assert_eq!(reports[2].share, Some(Ok(MS)));
}

#[test]
fn pending_commitments_are_read_only_when_another_signer_is_needed() {
    let mut plan = revealing(&[2, 0, 4, 1], Instant::now());
    drain(&mut plan);
    assert!(!plan.needs_commitment_answers(), "the first t are asked, none failed");
    share(&mut plan, 2, false);
    assert_eq!(drain(&mut plan).0, [(1, 4)]);
    assert!(!plan.needs_commitment_answers(), "the failure's replacement is a signer already known");
    share(&mut plan, 0, false);
    assert_eq!(drain(&mut plan), (vec![], PlanStep::Wait), "no signer left to ask");
    assert!(plan.needs_commitment_answers(), "another signer is needed");
    // The late signer is asked, with its own signature on board.
    signed(&mut plan, 3);
    assert_eq!(drain(&mut plan), (vec![(3, 5)], PlanStep::Wait));
    assert!(!plan.needs_commitment_answers(), "nothing pending");
}

#[test]
fn the_hedge_asks_every_signer_once_its_delay_passed_since_the_reveal_started() {
    let start = Instant::now() + Duration::from_secs(5);
    let mut plan = revealing(&[2, 0, 4, 1], start);
    drain(&mut plan);
    assert_eq!(plan.poll_timeout(), Some(start + HEDGE));
    plan.handle_timeout(start + HEDGE - MS);
    assert_eq!(drain(&mut plan), (vec![], PlanStep::Wait), "not yet");
    assert!(!plan.needs_commitment_answers());
    plan.handle_timeout(start + HEDGE);
    assert_eq!(drain(&mut plan), (vec![(1, 4)], PlanStep::Wait), "every signer not asked yet");
    assert_eq!(plan.poll_timeout(), None, "one hedge");
    assert!(plan.needs_commitment_answers(), "after the hedge, every signer is wanted");
    signed(&mut plan, 3);
    assert_eq!(drain(&mut plan), (vec![(3, 5)], PlanStep::Wait), "a later signer at once");
}

#[test]
fn a_signature_that_comes_during_the_reveal_rides_on_later_reveals() {
    // Node 3 signs only after the reveal started: node 1's failure asks
    // node 4, node 4's failure needs another signer, and node 3's reveal,
    // once it signed, carries five signatures, the others four.
    let start = Instant::now();
    let mut plan = plan();
    drain(&mut plan);
    for position in [0, 1, 2, 4] {
        signed(&mut plan, position);
    }
    plan.start_reveal(start);
    assert_eq!(drain(&mut plan).0, [(0, 4), (1, 4), (2, 4)]);
    share(&mut plan, 1, false);
    assert_eq!(drain(&mut plan).0, [(4, 4)]);
    share(&mut plan, 4, false);
    assert!(plan.needs_commitment_answers());
    signed(&mut plan, 3);
    assert_eq!(drain(&mut plan), (vec![(3, 5)], PlanStep::Wait));
}

#[test]
fn exactly_t_good_shares_finish_the_login() {
    let start = Instant::now();
    let mut plan = revealing(&[2, 0, 4, 1], start);
    drain(&mut plan);
    plan.handle_timeout(start + HEDGE);
    assert_eq!(drain(&mut plan).0, [(1, 4)]);
    share(&mut plan, 4, true);
    share(&mut plan, 1, true);
    assert_eq!(drain(&mut plan), (vec![], PlanStep::Wait), "two of three");
    share(&mut plan, 2, true);
    assert_eq!(drain(&mut plan), (vec![], PlanStep::Done { used: vec![4, 1, 2] }));
    // The fourth share comes too late to count.
    assert!(!plan.share_answered(0, ShareOutcome::Good, MS));
    assert_eq!(plan.poll(), PlanStep::Done { used: vec![4, 1, 2] });
    let used: Vec<usize> = (0..N).filter(|&position| plan.reports()[position].used).collect();
    assert_eq!(used, [1, 2, 4]);
    assert_eq!(plan.reports()[0].share, None, "not needed in time");
}

#[test]
fn too_few_signatures_fail_the_commitment_step_once_every_commitment_is_answered() {
    let mut plan = plan();
    drain(&mut plan);
    refused(&mut plan, 3);
    signed(&mut plan, 0);
    refused(&mut plan, 4);
    signed(&mut plan, 1);
    assert_eq!(drain(&mut plan), (vec![], PlanStep::Wait), "node 2 could still sign");
    signed(&mut plan, 2);
    let expected = QuorumShortfall {
        step: "commitment",
        needed: QUORUM,
        got: 3,
        failures: vec![
            NodeFailure { node: 4, reason: "refused by 3".to_owned() },
            NodeFailure { node: 5, reason: "refused by 4".to_owned() },
        ],
    };
    assert_eq!(drain(&mut plan), (vec![], PlanStep::Failed(expected.clone())));
    plan.start_reveal(Instant::now());
    assert_eq!(drain(&mut plan), (vec![], PlanStep::Failed(expected.clone())), "no reveal after a failure");
    assert_eq!(
        ClientError::from(expected).to_string(),
        "commitment: 4 nodes needed, 3 succeeded (node 4: refused by 3; node 5: refused by 4)"
    );
}

#[test]
fn too_few_good_shares_fail_the_reveal_step_once_nothing_is_pending() {
    let start = Instant::now();
    let mut plan = revealing(&[2, 0, 4, 1], start);
    drain(&mut plan);
    share(&mut plan, 2, false);
    assert_eq!(drain(&mut plan).0, [(1, 4)]);
    share(&mut plan, 0, true);
    share(&mut plan, 1, false);
    share(&mut plan, 4, true);
    assert_eq!(drain(&mut plan), (vec![], PlanStep::Wait), "node 3's commitment is still pending");
    refused(&mut plan, 3);
    let PlanStep::Failed(shortfall) = plan.poll() else { panic!("{:?}", plan.poll()) };
    assert_eq!((shortfall.step, shortfall.needed, shortfall.got), ("reveal", T, 2));
    assert_eq!(
        shortfall.failures,
        [
            NodeFailure { node: 2, reason: "a wrong share from 1".to_owned() },
            NodeFailure { node: 3, reason: "a wrong share from 2".to_owned() },
            NodeFailure { node: 4, reason: "no commitment: refused by 3".to_owned() },
        ]
    );
}

#[test]
fn answers_not_asked_for_change_nothing() {
    let mut plan = revealing(&[2, 0, 4, 1], Instant::now());
    drain(&mut plan);
    assert!(!plan.commitment_answered(2, CommitOutcome::Failed("again".to_owned()), MS, 0), "answered already");
    assert!(!plan.commitment_answered(N, CommitOutcome::Signed, MS, 0), "no such node");
    assert!(!plan.share_answered(1, ShareOutcome::Good, MS), "not asked");
    assert!(!plan.share_answered(3, ShareOutcome::Good, MS), "never signed");
    assert_eq!(plan.signers(), [2, 0, 4, 1]);
    assert_eq!(drain(&mut plan), (vec![], PlanStep::Wait));
}

#[test]
fn abandoning_fails_the_step_under_way() {
    let mut committing = plan();
    drain(&mut committing);
    signed(&mut committing, 0);
    committing.abandon();
    let PlanStep::Failed(shortfall) = committing.poll() else { panic!() };
    assert_eq!((shortfall.step, shortfall.needed, shortfall.got), ("commitment", QUORUM, 1));
    assert!(shortfall.failures.iter().all(|failure| failure.reason == "no answer in time"));

    let mut reveal = revealing(&[2, 0, 4, 1], Instant::now());
    drain(&mut reveal);
    share(&mut reveal, 2, true);
    reveal.abandon();
    let PlanStep::Failed(shortfall) = reveal.poll() else { panic!() };
    assert_eq!((shortfall.step, shortfall.needed, shortfall.got), ("reveal", T, 1));
}

/// One node's part in a simulated login.
#[derive(Clone, Debug)]
struct NodeScript {
    /// When its commitment answer comes, in ms since the commitments went
    /// out.
    commit_ms: u64,
    /// Whether it signs (else it refuses).
    signs: bool,
    /// How long its share answer takes once asked, in ms.
    share_ms: u64,
    /// Whether its share checks out.
    good_share: bool,
}

#[derive(Clone, Debug)]
struct Scenario {
    threshold: usize,
    /// The order the commitments are sent in.
    order: Vec<usize>,
    nodes: Vec<NodeScript>,
    /// When the key is known, in ms since the commitments went out: the
    /// reveal starts then, or at the reveal quorum if later.
    lookup_ms: u64,
    hedge_ms: u64,
    /// Picks among events that come at the same millisecond.
    tie_break: u64,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (3usize..=10).prop_flat_map(|n| {
        let node = (0u64..200, prop::bool::weighted(0.9), 0u64..200, prop::bool::weighted(0.75))
            .prop_map(|(commit_ms, signs, share_ms, good_share)| NodeScript { commit_ms, signs, share_ms, good_share });
        (
            Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
            prop::collection::vec(node, n),
            0u64..150,
            0u64..300,
            any::<u64>(),
        )
            .prop_map(move |(order, nodes, lookup_ms, hedge_ms, tie_break)| Scenario {
                threshold: n / 2 + 1,
                order,
                nodes,
                lookup_ms,
                hedge_ms,
                tie_break,
            })
    })
}

/// What the next event of a simulated reveal is.
#[derive(Clone, Copy, Debug)]
enum Event {
    Share(usize),
    Commitment,
    Hedge,
}

/// Runs a whole login of `scenario` through a plan, as the async client
/// would (every request answered when its script says; a commitment
/// answer read during the reveal only when the plan needs one; the hedge
/// timer at the plan's deadline), and checks the plan's rules at every
/// step and its outcome.
fn simulate(scenario: &Scenario) -> Result<(), TestCaseError> {
    let Scenario { threshold: t, order, nodes, lookup_ms, hedge_ms, tie_break } = scenario;
    let (n, t) = (nodes.len(), *t);
    let quorum = (n + t).div_ceil(2);
    let epoch = Instant::now();
    let at = |ms: u64| epoch + Duration::from_millis(ms);
    let reason = |position: usize| format!("node at {position} refused");
    let total_signers = nodes.iter().filter(|node| node.signs).count();
    let obtainable = total_signers >= quorum && nodes.iter().filter(|node| node.signs && node.good_share).count() >= t;

    let mut plan = LoginPlan::new(1..=n as u16, t, Duration::from_millis(*hedge_ms), order.iter().copied());
    prop_assert_eq!(plan.reveal_quorum(), quorum);
    let (sent, step) = drain(&mut plan);
    prop_assert_eq!(sent.iter().map(|&(position, _)| position).collect::<Vec<_>>(), order.clone());
    prop_assert_eq!(step, PlanStep::Wait);

    // The commitments: answers in the order they come (ties in the order
    // sent), until the plan is ready to reveal or fails.
    let mut coming: Vec<usize> = order.clone();
    coming.sort_by_key(|&position| nodes[position].commit_ms);
    let mut coming = VecDeque::from(coming);
    let mut signers: Vec<usize> = Vec::new();
    let mut now = 0u64;
    let commitment = |plan: &mut LoginPlan, signers: &mut Vec<usize>, position: usize, now: u64| {
        let outcome = if nodes[position].signs {
            signers.push(position);
            CommitOutcome::Signed
        } else {
            CommitOutcome::Failed(reason(position))
        };
        plan.commitment_answered(position, outcome, Duration::from_millis(now), position as u32)
    };
    loop {
        match plan.poll() {
            PlanStep::Wait => {
                prop_assert!(signers.len() < quorum, "waits with the quorum signed");
                prop_assert!(plan.needs_commitment_answers());
                let Some(position) = coming.pop_front() else {
                    return Err(TestCaseError::fail("waits with every commitment answered"));
                };
                now = nodes[position].commit_ms;
                prop_assert!(commitment(&mut plan, &mut signers, position, now));
            }
            PlanStep::ReadyToReveal => {
                prop_assert_eq!(signers.len(), quorum, "ready as soon as the quorum signed, not before");
                prop_assert!(!plan.needs_commitment_answers(), "the commitment loop stops reading");
                break;
            }
            PlanStep::Failed(shortfall) => {
                prop_assert!(total_signers < quorum && coming.is_empty() && !obtainable);
                prop_assert_eq!(
                    (shortfall.step, shortfall.needed, shortfall.got),
                    ("commitment", quorum, total_signers)
                );
                let refusing: Vec<NodeFailure> = (0..n)
                    .filter(|&position| !nodes[position].signs)
                    .map(|position| NodeFailure { node: position as u16 + 1, reason: reason(position) })
                    .collect();
                prop_assert_eq!(shortfall.failures, refusing);
                return Ok(());
            }
            other => return Err(TestCaseError::fail(format!("{other:?} while committing"))),
        }
    }
    prop_assert_eq!(plan.signers(), signers.as_slice());

    // The reveal.
    let start = now.max(*lookup_ms);
    let hedge_at = start + hedge_ms;
    now = start;
    plan.start_reveal(at(start));
    let mut asked: Vec<usize> = Vec::new();
    let mut sent_at: Vec<Option<u64>> = vec![None; n];
    let mut answered = vec![false; n];
    let (mut failed, mut good) = (0usize, Vec::new());
    let mut hedged = false;
    let mut first = true;
    let mut ties = *tie_break;
    loop {
        let mut batch = Vec::new();
        let step = loop {
            match plan.poll() {
                PlanStep::SendReveal { position, signatures } => {
                    prop_assert!(signers.len() >= quorum, "a reveal before the reveal quorum signed");
                    prop_assert!(signers.contains(&position), "a reveal to a node that did not sign");
                    prop_assert!(!asked.contains(&position), "a node asked twice");
                    prop_assert_eq!(position, signers[asked.len()], "not the next signer in arrival order");
                    prop_assert_eq!(signatures, signers.len(), "a reveal without every signature known");
                    asked.push(position);
                    batch.push(position);
                    sent_at[position] = Some(now);
                }
                other => break other,
            }
        };
        if first {
            prop_assert_eq!(batch.as_slice(), &signers[..t], "the first reveal is not to the first t signers");
            first = false;
        }
        match step {
            PlanStep::Wait => {}
            PlanStep::Done { used } => {
                prop_assert!(obtainable, "a login without t good shares to be had");
                prop_assert_eq!(used.len(), t);
                prop_assert_eq!(&used, &good, "not the good shares, in the order they came");
                for (position, report) in plan.reports().iter().enumerate() {
                    prop_assert_eq!(report.used, used.contains(&position));
                }
                prop_assert_eq!(plan.poll(), PlanStep::Done { used });
                return Ok(());
            }
            PlanStep::Failed(shortfall) => {
                prop_assert!(!obtainable, "failed with t good shares to be had");
                prop_assert_eq!((shortfall.step, shortfall.needed, shortfall.got), ("reveal", t, good.len()));
                prop_assert!(coming.is_empty() && asked.len() == signers.len(), "failed with a signer not asked");
                prop_assert!(asked.iter().all(|&position| answered[position]), "failed with a reveal pending");
                let named: Vec<u16> = shortfall.failures.iter().map(|failure| failure.node).collect();
                let without_share: Vec<u16> =
                    (0..n).filter(|position| !good.contains(position)).map(|position| position as u16 + 1).collect();
                prop_assert_eq!(named, without_share);
                return Ok(());
            }
            other => return Err(TestCaseError::fail(format!("{other:?} while revealing"))),
        }

        // Who is asked: before the hedge, t and one per failed share; after
        // it, every signer.
        if hedged {
            prop_assert_eq!(asked.len(), signers.len(), "a signer not asked after the hedge");
        } else {
            prop_assert_eq!(asked.len(), (t + failed).min(signers.len()), "before the hedge, t + failed shares");
            prop_assert_eq!(plan.poll_timeout(), Some(at(hedge_at)), "the hedge runs from the reveal's start");
        }
        let another_needed = hedged || failed > asked.len() - t;
        prop_assert_eq!(plan.needs_commitment_answers(), !coming.is_empty() && another_needed);

        // The next event: the earliest answer the loop would read, or the
        // hedge; events at the same millisecond in an order of the seed's.
        let mut events: Vec<(u64, Event)> = asked
            .iter()
            .filter(|&&position| !answered[position])
            .map(|&position| (sent_at[position].unwrap_or(now) + nodes[position].share_ms, Event::Share(position)))
            .collect();
        if let (true, Some(&position)) = (plan.needs_commitment_answers(), coming.front()) {
            events.push((nodes[position].commit_ms.max(now), Event::Commitment));
        }
        if let Some(deadline) = plan.poll_timeout() {
            events.push(((deadline - epoch).as_millis() as u64, Event::Hedge));
        }
        prop_assert!(!events.is_empty(), "the plan waits with nothing to wait for");
        let earliest = events.iter().map(|&(ms, _)| ms).min().unwrap_or(now);
        let tied: Vec<Event> = events.iter().filter(|&&(ms, _)| ms == earliest).map(|&(_, event)| event).collect();
        ties = ties.rotate_left(7) ^ 0x9e37_79b9_7f4a_7c15;
        now = earliest;
        match tied[(ties % tied.len() as u64) as usize] {
            Event::Share(position) => {
                answered[position] = true;
                let outcome = if nodes[position].good_share {
                    good.push(position);
                    ShareOutcome::Good
                } else {
                    failed += 1;
                    ShareOutcome::Failed(format!("a wrong share from {position}"))
                };
                prop_assert!(plan.share_answered(position, outcome, Duration::from_millis(now - start)));
            }
            Event::Commitment => {
                let position = coming.pop_front().unwrap_or(n);
                prop_assert!(commitment(&mut plan, &mut signers, position, now));
            }
            Event::Hedge => {
                plan.handle_timeout(at(now));
                hedged = true;
            }
        }
        // A wake-up before the hedge is due changes nothing.
        if now < hedge_at {
            plan.handle_timeout(at(now));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whole logins: every rule holds at every step, the login succeeds
    /// exactly when `t` good shares from signers are to be had (with the
    /// reveal quorum signed), with exactly `t` used, and a failure names
    /// its step, what it needed and what it got.
    #[test]
    fn a_simulated_login_follows_every_rule(scenario in scenario()) {
        simulate(&scenario)?;
    }
}
