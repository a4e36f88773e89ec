//! The `quorumkey` command's library part: what its subcommands do beyond
//! parsing arguments (the binary, `src/main.rs`, only parses and
//! dispatches).
//!
//! - [`client_commands`]: `lookup` and `login`, printed for people or as JSON.
//! - [`demo`]: `quorumkey demo`, the whole system once.
//! - [`bench`]: `quorumkey bench`, logins and the DKG measured against their floors.
//! - [`floors`]: the cost of the required cryptography on this machine.
//! - [`policy_commands`]: `network policy sign|submit`, the operators'
//!   change of the abuse policy.

pub mod bench;
pub mod client_commands;
pub mod demo;
pub mod floors;
pub mod policy_commands;
