//! What `quorumkey devnet` does with a node whose process exits: it
//! restarts it after a delay that starts at 1 s and doubles with each exit
//! up to 30 s, back to 1 s once the node has stayed up 60 s. A node stopped
//! on request stays down until it is started on request, and a node removed
//! from the network (`quorumkey devnet-node remove`) for good. Pure: the
//! caller passes the time and does the starting and stopping.

use std::time::{Duration, Instant};

use crate::control_socket::{NodeChange, NodeReport, NodeState};

/// The delay before the first restart after an exit.
pub const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);
/// The longest delay between restarts.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// A node that stayed up this long before it exited is restarted after
/// [`FIRST_RESTART_DELAY`] again.
pub const STABLE_UPTIME: Duration = Duration::from_secs(60);

/// The delay before a node's next restart: exponential, reset by a long
/// enough run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartBackoff {
    next: Duration,
}

impl Default for RestartBackoff {
    fn default() -> Self {
        Self { next: FIRST_RESTART_DELAY }
    }
}

impl RestartBackoff {
    /// The node exited after running for `uptime`: how long to wait before
    /// restarting it. Each call doubles the next delay, up to
    /// [`MAX_RESTART_DELAY`]; an uptime of [`STABLE_UPTIME`] or more starts
    /// over from [`FIRST_RESTART_DELAY`].
    pub fn delay_after_exit(&mut self, uptime: Duration) -> Duration {
        if uptime >= STABLE_UPTIME {
            self.next = FIRST_RESTART_DELAY;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_RESTART_DELAY);
        delay
    }
}

/// Where a supervised node is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Its process runs, started at this time.
    Running { since: Instant },
    /// Stopped on request; not restarted until started on request.
    StoppedOnRequest,
    /// Its process exited (or could not be started); the next attempt is at
    /// `at`.
    WaitingToRestart { at: Instant, exit: String },
    /// Removed from the network: epoch `epoch` is in force without it.
    /// Never started again.
    Removed { epoch: u64 },
}

/// One node of a running `quorumkey devnet`, as its supervisor sees it.
#[derive(Clone, Debug)]
pub struct SupervisedNode {
    index: u16,
    phase: Phase,
    restarts: u32,
    backoff: RestartBackoff,
}

impl SupervisedNode {
    /// Node `index`, whose process was started at `now`.
    pub fn running(index: u16, now: Instant) -> Self {
        Self { index, phase: Phase::Running { since: now }, restarts: 0, backoff: RestartBackoff::default() }
    }

    /// Node `index`, removed from the network (epoch `epoch` is in force
    /// without it): never started.
    pub fn removed_from(index: u16, epoch: u64) -> Self {
        Self { index, phase: Phase::Removed { epoch }, restarts: 0, backoff: RestartBackoff::default() }
    }

    /// The node's index (from 1).
    pub fn index(&self) -> u16 {
        self.index
    }

    /// Whether its process should be running.
    pub fn is_running(&self) -> bool {
        matches!(self.phase, Phase::Running { .. })
    }

    /// Whether it was stopped on request.
    pub fn is_stopped_on_request(&self) -> bool {
        self.phase == Phase::StoppedOnRequest
    }

    /// The epoch in force without it, if it was removed from the network.
    pub fn removed_in(&self) -> Option<u64> {
        match self.phase {
            Phase::Removed { epoch } => Some(epoch),
            _ => None,
        }
    }

    /// It was removed from the network (epoch `epoch` is in force without
    /// it) and its process stopped: it is never restarted.
    pub fn mark_removed(&mut self, epoch: u64) {
        self.phase = Phase::Removed { epoch };
    }

    /// Automatic restarts so far (starts on request do not count).
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Its process exited at `now` (`exit` says how): returns the delay
    /// before the restart, which [`Self::restart_due`] then announces.
    pub fn exited(&mut self, exit: String, now: Instant) -> Duration {
        let uptime = match self.phase {
            Phase::Running { since } => now.saturating_duration_since(since),
            Phase::StoppedOnRequest | Phase::WaitingToRestart { .. } | Phase::Removed { .. } => Duration::ZERO,
        };
        let delay = self.backoff.delay_after_exit(uptime);
        self.phase = Phase::WaitingToRestart { at: now + delay, exit };
        delay
    }

    /// Whether it waits for a restart whose time has come.
    pub fn restart_due(&self, now: Instant) -> bool {
        matches!(self.phase, Phase::WaitingToRestart { at, .. } if at <= now)
    }

    /// The supervisor restarted its process at `now`.
    pub fn restarted(&mut self, now: Instant) {
        self.restarts = self.restarts.saturating_add(1);
        self.phase = Phase::Running { since: now };
    }

    /// It was stopped on request: no restart until [`Self::started_on_request`].
    pub fn stopped_on_request(&mut self) {
        self.phase = Phase::StoppedOnRequest;
    }

    /// It was started on request at `now`: a fresh start, so the restart
    /// delay starts over too.
    pub fn started_on_request(&mut self, now: Instant) {
        self.backoff = RestartBackoff::default();
        self.phase = Phase::Running { since: now };
    }

    /// Its state at `now`, for `quorumkey devnet-node status`.
    pub fn state(&self, now: Instant) -> NodeState {
        match &self.phase {
            Phase::Running { since } => NodeState::Running { up_secs: now.saturating_duration_since(*since).as_secs() },
            Phase::StoppedOnRequest => NodeState::StoppedOnRequest,
            Phase::WaitingToRestart { at, exit } => NodeState::RestartingAfterExit {
                exit: exit.clone(),
                next_attempt_in_ms: u64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX),
            },
            Phase::Removed { epoch } => NodeState::Removed { epoch: *epoch },
        }
    }

    /// Its report at `now`, with what only the caller knows (`change`:
    /// what it does in the node-set change under way).
    pub fn report(
        &self,
        now: Instant,
        pid: Option<u32>,
        rpc_url: String,
        log: String,
        change: Option<NodeChange>,
    ) -> NodeReport {
        NodeReport { index: self.index, state: self.state(now), pid, restarts: self.restarts, rpc_url, log, change }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_up_to_the_cap_and_resets_after_a_stable_run() {
        let mut backoff = RestartBackoff::default();
        let quick = Duration::from_secs(2);
        let delays: Vec<u64> = (0..8).map(|_| backoff.delay_after_exit(quick).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff.delay_after_exit(STABLE_UPTIME), FIRST_RESTART_DELAY);
        assert_eq!(backoff.delay_after_exit(quick), Duration::from_secs(2));
        // Just short of stable still counts as a crash loop.
        assert_eq!(backoff.delay_after_exit(STABLE_UPTIME - Duration::from_millis(1)), Duration::from_secs(4));
    }

    #[test]
    fn a_node_that_exits_waits_restarts_and_counts() {
        let start = Instant::now();
        let mut node = SupervisedNode::running(3, start);
        assert!(node.is_running() && !node.restart_due(start));
        let at = start + Duration::from_secs(5);
        assert_eq!(node.exited("signal: 9 (SIGKILL)".to_owned(), at), Duration::from_secs(1));
        assert!(!node.is_running());
        assert!(!node.restart_due(at + Duration::from_millis(999)));
        assert_eq!(
            node.state(at + Duration::from_millis(400)),
            NodeState::RestartingAfterExit { exit: "signal: 9 (SIGKILL)".to_owned(), next_attempt_in_ms: 600 }
        );
        assert!(node.restart_due(at + Duration::from_secs(1)));
        node.restarted(at + Duration::from_secs(1));
        assert_eq!(node.restarts(), 1);
        assert_eq!(node.state(at + Duration::from_secs(4)), NodeState::Running { up_secs: 3 });
        // A second quick exit waits twice as long.
        assert_eq!(node.exited("exit status: 1".to_owned(), at + Duration::from_secs(4)), Duration::from_secs(2));
    }

    #[test]
    fn a_node_stopped_on_request_is_never_due_and_a_start_resets_the_delay() {
        let start = Instant::now();
        let mut node = SupervisedNode::running(1, start);
        for _ in 0..4 {
            node.exited("exit status: 1".to_owned(), start);
        }
        node.stopped_on_request();
        assert!(node.is_stopped_on_request());
        assert!(!node.restart_due(start + Duration::from_secs(3600)));
        assert_eq!(node.state(start), NodeState::StoppedOnRequest);
        node.started_on_request(start);
        assert!(node.is_running());
        assert_eq!(node.restarts(), 0, "a start on request is not an automatic restart");
        assert_eq!(node.exited("exit status: 1".to_owned(), start), FIRST_RESTART_DELAY);
    }

    #[test]
    fn a_removed_node_is_never_due() {
        let start = Instant::now();
        let mut node = SupervisedNode::running(5, start);
        assert_eq!(node.removed_in(), None);
        node.mark_removed(1);
        assert_eq!(node.removed_in(), Some(1));
        assert!(!node.is_running() && !node.is_stopped_on_request());
        assert!(!node.restart_due(start + Duration::from_secs(3600)));
        assert_eq!(node.state(start), NodeState::Removed { epoch: 1 });
        let restarted = SupervisedNode::removed_from(5, 2);
        assert!(!restarted.restart_due(start + Duration::from_secs(3600)));
        assert_eq!(restarted.state(start).to_string(), "removed from the network (epoch 2 is in force without it)");
    }
}
