//! The `quorumkey` command's library part: what its subcommands do beyond
//! parsing arguments (the binary, `src/main.rs`, only parses and
//! dispatches).
//!
//! - [`client_commands`]: `lookup`, `login` and the token helpers, printed
//!   for people or as JSON.
//! - [`registry_commands`]: `verifier ...`, the registry through a node.
//! - [`operator_commands`]: `network init` and `network policy ...`.
//! - [`epoch_commands`]: `network epoch ...`, changing the node set.
//! - [`devnet_commands`]: `devnet-node status|stop|start`, a running
//!   devnet's nodes through its control socket.
//! - [`error`]: why a command failed.
//! - [`demo`]: `quorumkey demo`, the whole system once.
//! - [`bench`]: `quorumkey bench`, logins and the DKG measured against their floors.
//! - [`floors`]: the cost of the required cryptography on this machine.

pub mod bench;
pub mod client_commands;
pub mod demo;
pub mod devnet_commands;
pub mod epoch_commands;
pub mod error;
pub mod floors;
pub mod operator_commands;
pub mod registry_commands;
pub mod script_commands;
