//! `quorumkey devnet-node status|stop|start`: one node of a running
//! `quorumkey devnet`, through the control socket in its directory.

use std::path::Path;

use quorumkey_devnet::control_socket::{ControlRequest, NodeReport, change_node, node_statuses};

use crate::error::CommandError;

/// Prints every node's state: a table, or JSON (`--json`).
pub async fn status(dir: &Path, json: bool) -> Result<(), CommandError> {
    let nodes = node_statuses(dir).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
    } else {
        print!("{}", status_table(&nodes));
    }
    Ok(())
}

/// Stops node `index` and keeps it down.
pub async fn stop(dir: &Path, index: u16) -> Result<(), CommandError> {
    let (message, _) = change_node(dir, &ControlRequest::Stop { index }).await?;
    println!("{message}");
    Ok(())
}

/// Starts node `index` now.
pub async fn start(dir: &Path, index: u16) -> Result<(), CommandError> {
    let (message, _) = change_node(dir, &ControlRequest::Start { index }).await?;
    println!("{message}");
    Ok(())
}

/// The nodes as a table, the state last (its width varies).
fn status_table(nodes: &[NodeReport]) -> String {
    let url_width = nodes.iter().map(|node| node.rpc_url.len()).max().unwrap_or(0).max(3);
    let mut table = format!("{:<5} {:<8} {:<8} {:<url_width$}  state\n", "node", "pid", "restarts", "rpc");
    for node in nodes {
        let pid = node.pid.map_or_else(|| "-".to_owned(), |pid| pid.to_string());
        table.push_str(&format!(
            "{:<5} {:<8} {:<8} {:<url_width$}  {}\n",
            node.index, pid, node.restarts, node.rpc_url, node.state
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumkey_devnet::control_socket::NodeState;

    #[test]
    fn the_table_shows_each_node_on_one_line() {
        let node = |index, state, pid| NodeReport {
            index,
            state,
            pid,
            restarts: u32::from(index) - 1,
            rpc_url: format!("http://127.0.0.1:1700{index}"),
            log: String::new(),
        };
        let table = status_table(&[
            node(1, NodeState::Running { up_secs: 5 }, Some(4242)),
            node(2, NodeState::StoppedOnRequest, None),
            node(3, NodeState::RestartingAfterExit { exit: "exit status: 1".into(), next_attempt_in_ms: 1500 }, None),
        ]);
        assert_eq!(
            table,
            "node  pid      restarts rpc                     state\n\
             1     4242     0        http://127.0.0.1:17001  running (up 5s)\n\
             2     -        1        http://127.0.0.1:17002  stopped on request\n\
             3     -        2        http://127.0.0.1:17003  restarting after exit (exit status: 1), next attempt in 1.5 s\n"
        );
    }
}
