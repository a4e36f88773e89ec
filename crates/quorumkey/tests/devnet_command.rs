//! The `quorumkey devnet` command as a real process, with its four node
//! processes: a node killed with `kill -9` is reported and restarted while
//! the network keeps finalizing; `quorumkey devnet-node stop` keeps a node
//! down past the restart delay and `start` brings it back to catch up; a
//! second supervisor on the same directory is refused, a stale control
//! socket is not, and the commands' errors are precise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use quorumkey_client::node_api_client::NodeApiClient;
use quorumkey_devnet::control_socket::{CONTROL_SOCKET, NodeReport, NodeState};
use quorumkey_devnet::supervisor::{NETWORK_JSON, prepare_network};
use rustix::process::{Pid, Signal, kill_process, test_kill_process};
use support::supervisor::Supervisor;
use support::{devnet_options, small_dkg};

const NODES: u16 = 4;

/// `quorumkey ARGS`: success, stdout, stderr.
fn quorumkey(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_quorumkey")).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Each node's process id, by index.
fn pids(nodes: &[NodeReport]) -> Vec<Option<u32>> {
    nodes.iter().map(|node| node.pid).collect()
}

/// `quorumkey devnet-node status --json`.
fn status(dir: &str) -> Vec<NodeReport> {
    let (ok, out, err) = quorumkey(&["devnet-node", "status", "--json", "--dir", dir]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// Waits up to `limit` until `ready` holds for the nodes' status.
fn wait_for_status(dir: &str, limit: Duration, what: &str, ready: impl Fn(&[NodeReport]) -> bool) -> Vec<NodeReport> {
    let deadline = Instant::now() + limit;
    loop {
        let nodes = status(dir);
        if ready(&nodes) {
            return nodes;
        }
        assert!(Instant::now() < deadline, "{what} within {limit:?}: {nodes:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Node `index`'s applied height, if it answers.
async fn height(nodes: &[NodeReport], index: u16) -> Option<u64> {
    let url = &nodes[usize::from(index) - 1].rpc_url;
    NodeApiClient::new(url.clone()).status().await.ok().map(|status| status.height)
}

/// Waits until every node in `indices` has applied at least `target`.
async fn wait_for_height(nodes: &[NodeReport], indices: &[u16], target: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    for &index in indices {
        while height(nodes, index).await.is_none_or(|height| height < target) {
            assert!(Instant::now() < deadline, "node {index} did not reach height {target} within {limit:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[test]
fn the_devnet_command_restarts_crashed_nodes_and_stops_and_starts_them_on_request() {
    let work = tempfile::tempdir().unwrap();
    let options = devnet_options(work.path(), NODES, small_dkg());
    // The network is made here with a small DKG and free ports; the
    // command resumes it, as it resumes any devnet directory.
    prepare_network(&options).unwrap();
    let dir = options.dir.to_str().unwrap().to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // Nothing runs yet: precise errors, for a directory with no socket and
    // for a socket a crashed supervisor left behind.
    let elsewhere = work.path().join("elsewhere");
    let (ok, _, err) = quorumkey(&["devnet-node", "status", "--dir", elsewhere.to_str().unwrap()]);
    assert!(!ok);
    assert_eq!(err.trim(), format!("error: no devnet is running in {}/ (no control socket)", elsewhere.display()));
    drop(std::os::unix::net::UnixListener::bind(options.dir.join(CONTROL_SOCKET)).unwrap());
    let (ok, _, err) = quorumkey(&["devnet-node", "stop", "--index", "1", "--dir", &dir]);
    assert!(!ok && err.contains(&format!("no devnet is running in {dir}/ (its control socket")), "{err}");

    // The stale socket does not stop a new supervisor.
    let mut supervisor = Supervisor::start(&options.dir, NODES, work.path(), "devnet");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !options.dir.join(NETWORK_JSON).exists() || !supervisor.stdout().contains("ready:") {
        supervisor.assert_running();
        assert!(Instant::now() < deadline, "no network.json within 120 s:\n{}", supervisor.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();

    // A second supervisor on the same directory is refused, and disturbs
    // nothing.
    let before = status(&dir);
    let mut second = Supervisor::start(&options.dir, NODES, work.path(), "second");
    let refused = second.wait(Duration::from_secs(20)).expect("the second supervisor exits");
    assert!(!refused.success());
    assert_eq!(
        second.stderr().trim(),
        format!(
            "error: a devnet is already running in {dir}/ (another `quorumkey devnet` holds it); stop that one (Ctrl-C) or use another --dir"
        )
    );
    assert_eq!(pids(&status(&dir)), pids(&before));
    assert!(before.iter().all(|node| matches!(node.state, NodeState::Running { .. }) && node.pid.is_some()));
    assert!(before.iter().all(|node| node.restarts == 0));

    // Precise errors from the running supervisor.
    for index in ["9", "0"] {
        let (ok, _, err) = quorumkey(&["devnet-node", "stop", "--index", index, "--dir", &dir]);
        assert!(!ok);
        assert_eq!(err.trim(), format!("error: node {index} does not exist (this devnet has {NODES} nodes)"));
    }
    let (ok, out, err) = quorumkey(&["devnet-node", "status", "--dir", &dir]);
    assert!(ok && out.starts_with("node  pid") && out.matches("running (up").count() == 4, "{out}{err}");

    runtime.block_on(async {
        // kill -9 node 2: the supervisor reports it and restarts it.
        let killed = before[1].pid.unwrap();
        let at_kill = height(&before, 1).await.unwrap();
        kill_process(Pid::from_raw(killed as i32).unwrap(), Signal::KILL).unwrap();
        let after = wait_for_status(&dir, Duration::from_secs(20), "node 2 restarted", |nodes| {
            nodes[1].restarts == 1 && nodes[1].pid.is_some_and(|pid| pid != killed)
        });
        assert!(matches!(after[1].state, NodeState::Running { .. }), "{after:#?}");
        supervisor.assert_running();
        let reported = supervisor.stderr();
        let log = options.dir.join("node-2").join("node.log");
        assert!(
            reported.contains("devnet: node 2 exited (signal: 9 (SIGKILL)) after ")
                && reported.contains(&format!("its log {} ends:\n    ", log.display()))
                && reported.contains("devnet: restarting node 2 in 1 s")
                && reported.contains("devnet: node 2 restarted (pid"),
            "{reported}"
        );
        // The others were not touched, and the network keeps finalizing
        // with node 2 back in it.
        assert_eq!([pids(&after)[0], pids(&after)[2], pids(&after)[3]], [before[0].pid, before[2].pid, before[3].pid]);
        wait_for_height(&after, &[1, 2, 3, 4], at_kill + 3, Duration::from_secs(30)).await;

        // Stopped on request, node 3 stays down past the restart delay
        // while the other three finalize.
        let (ok, out, err) = quorumkey(&["devnet-node", "stop", "--index", "3", "--dir", &dir]);
        assert!(ok, "{err}");
        assert_eq!(
            out.trim(),
            format!(
                "node 3 stopped (it exited cleanly on SIGTERM); it stays down until `quorumkey devnet-node start --index 3 --dir {dir}`"
            )
        );
        let at_stop = height(&after, 1).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let stopped = status(&dir);
        assert_eq!(stopped[2].state, NodeState::StoppedOnRequest);
        assert_eq!(stopped[2].pid, None);
        assert!(height(&stopped, 3).await.is_none(), "node 3 answers while stopped");
        wait_for_height(&stopped, &[1, 2, 4], at_stop + 3, Duration::from_secs(30)).await;
        let (ok, out, _) = quorumkey(&["devnet-node", "status", "--dir", &dir]);
        assert!(ok && out.lines().any(|line| line.starts_with("3 ") && line.ends_with("stopped on request")), "{out}");
        let (ok, out, _) = quorumkey(&["devnet-node", "stop", "--index", "3", "--dir", &dir]);
        assert!(ok && out.starts_with("node 3 is already stopped on request"), "{out}");

        // Started on request, it comes back and catches up.
        let (ok, out, err) = quorumkey(&["devnet-node", "start", "--index", "3", "--dir", &dir]);
        assert!(ok && out.starts_with("node 3 started (pid ") && out.contains("catches up"), "{out}{err}");
        let restarted = status(&dir);
        assert!(matches!(restarted[2].state, NodeState::Running { .. }) && restarted[2].pid.is_some());
        assert_eq!(restarted[2].restarts, 0, "a start on request is not an automatic restart");
        let target = height(&restarted, 1).await.unwrap() + 1;
        wait_for_height(&restarted, &[3], target, Duration::from_secs(30)).await;
        let (ok, out, _) = quorumkey(&["devnet-node", "start", "--index", "3", "--dir", &dir]);
        assert!(ok && out.starts_with("node 3 is already running (pid "), "{out}");
    });
    supervisor.assert_running();
    let last = status(&dir);

    // SIGTERM stops everything and removes the socket.
    supervisor.signal(Signal::TERM);
    let stopped = supervisor.wait(Duration::from_secs(30)).expect("the supervisor stops on SIGTERM");
    assert!(stopped.success(), "{stopped}: {}", supervisor.stderr());
    assert!(supervisor.stdout().contains("stopping ..."));
    assert!(!options.dir.join(CONTROL_SOCKET).exists(), "the control socket is removed on exit");
    for node in &last {
        let pid = Pid::from_raw(node.pid.unwrap() as i32).unwrap();
        assert!(test_kill_process(pid).is_err(), "node {} (pid {pid:?}) outlived the supervisor", node.index);
    }
    let (ok, _, err) = quorumkey(&["devnet-node", "status", "--dir", &dir]);
    assert!(!ok && err.trim() == format!("error: no devnet is running in {dir}/ (no control socket)"), "{err}");
    eprintln!("supervised for {:?}; its output:\n{}{}", started.elapsed(), supervisor.stdout(), supervisor.stderr());
}
