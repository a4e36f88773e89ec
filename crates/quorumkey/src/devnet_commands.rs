//! `quorumkey devnet-node status|stop|start|add|remove`: one node of a
//! running `quorumkey devnet`, through the control socket in its
//! directory.

use std::path::Path;
use std::time::Duration;

use quorumkey_client::node_api_client::NodeApiClient;
use quorumkey_devnet::control_socket::{ControlRequest, NodeChange, NodeReport, NodeState, change_node, node_statuses};

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

/// Adds a node (replacing node `replace` if given); with `wait`, follows
/// the handover until the new epoch is in force.
pub async fn add(dir: &Path, replace: Option<u16>, wait: bool) -> Result<(), CommandError> {
    let (message, node) = change_node(dir, &ControlRequest::Add { replace }).await?;
    println!("{message}");
    if wait {
        wait_for_change(dir, &node).await?;
    }
    Ok(())
}

/// Removes node `node`; with `wait`, follows the handover until the new
/// epoch is in force and the node is stopped.
pub async fn remove(dir: &Path, node: u16, wait: bool) -> Result<(), CommandError> {
    let (message, report) = change_node(dir, &ControlRequest::Remove { node }).await?;
    println!("{message}");
    if wait {
        wait_for_change(dir, &report).await?;
    }
    Ok(())
}

/// Shows the handover's progress (as `network epoch show --watch`, from a
/// node that neither joins nor leaves), then waits until the devnet has
/// finished the change of `changed` (as the add or remove answered it)
/// and prints the nodes.
async fn wait_for_change(dir: &Path, changed: &NodeReport) -> Result<(), CommandError> {
    let nodes = node_statuses(dir).await?;
    let steady = nodes.iter().find(|node| node.change.is_none() && matches!(node.state, NodeState::Running { .. }));
    if let Some(node) = steady {
        crate::epoch_commands::watch(&NodeApiClient::new(node.rpc_url.clone()), Duration::from_millis(500)).await?;
    }
    loop {
        let nodes = node_statuses(dir).await?;
        if nodes.iter().find(|node| node.index == changed.index).is_none_or(|node| node.change.is_none()) {
            let number = changed.index;
            match changed.change {
                Some(NodeChange::Joining { epoch }) => println!("node {number} joined: epoch {epoch} is in force"),
                Some(NodeChange::Leaving { epoch }) => {
                    println!("node {number} removed: epoch {epoch} is in force and the node is stopped");
                }
                None => {}
            }
            print!("{}", status_table(&nodes));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The nodes as a table, the state last (its width varies).
fn status_table(nodes: &[NodeReport]) -> String {
    let url_width = nodes.iter().map(|node| node.rpc_url.len()).max().unwrap_or(0).max(3);
    let mut table = format!("{:<5} {:<8} {:<8} {:<url_width$}  state\n", "node", "pid", "restarts", "rpc");
    for node in nodes {
        let pid = node.pid.map_or_else(|| "-".to_owned(), |pid| pid.to_string());
        let change = node.change.map_or_else(String::new, |change| format!("; {change}"));
        table.push_str(&format!(
            "{:<5} {:<8} {:<8} {:<url_width$}  {}{change}\n",
            node.index, pid, node.restarts, node.rpc_url, node.state
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_each_node_on_one_line() {
        let node = |index, state, pid| NodeReport {
            index,
            state,
            pid,
            restarts: u32::from(index) - 1,
            rpc_url: format!("http://127.0.0.1:1700{index}"),
            log: String::new(),
            change: None,
        };
        let table = status_table(&[
            node(1, NodeState::Running { up_secs: 5 }, Some(4242)),
            node(2, NodeState::StoppedOnRequest, None),
            node(3, NodeState::RestartingAfterExit { exit: "exit status: 1".into(), next_attempt_in_ms: 1500 }, None),
            NodeReport {
                change: Some(NodeChange::Leaving { epoch: 1 }),
                ..node(4, NodeState::Running { up_secs: 9 }, Some(7))
            },
            node(5, NodeState::Removed { epoch: 1 }, None),
            NodeReport {
                change: Some(NodeChange::Joining { epoch: 2 }),
                ..node(6, NodeState::Running { up_secs: 1 }, Some(8))
            },
        ]);
        assert_eq!(
            table,
            "node  pid      restarts rpc                     state\n\
             1     4242     0        http://127.0.0.1:17001  running (up 5s)\n\
             2     -        1        http://127.0.0.1:17002  stopped on request\n\
             3     -        2        http://127.0.0.1:17003  restarting after exit (exit status: 1), next attempt in 1.5 s\n\
             4     7        3        http://127.0.0.1:17004  running (up 9s); leaves at epoch 1 (handover under way)\n\
             5     -        4        http://127.0.0.1:17005  removed from the network (epoch 1 is in force without it)\n\
             6     8        5        http://127.0.0.1:17006  running (up 1s); joins in epoch 2 (handover under way)\n"
        );
    }
}
