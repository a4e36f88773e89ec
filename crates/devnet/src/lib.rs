//! Development services, kept out of the node: nothing here runs in a
//! production network, and `quorumkey-node` does not depend on this crate
//! (`cargo tree -p quorumkey-node` shows it).
//!
//! - [`dev_issuer`]: a development OpenID Connect provider that mints an
//!   ID token for any email it is asked for (so a devnet signs users in
//!   with no outside service).
//! - [`auxiliary`]: the allow, signer and metadata hosts the public Torus
//!   client calls besides the nodes.
//! - [`supervisor`]: a local network of `quorumkey node run` processes on
//!   127.0.0.1, supervised, with the issuer and the auxiliary hosts
//!   (`quorumkey devnet`).
//! - [`restart_policy`]: when `quorumkey devnet` restarts a node whose
//!   process exited, and which nodes it leaves down.
//! - [`control_socket`]: how `quorumkey devnet-node` reaches a running
//!   `quorumkey devnet` (a Unix socket in its directory), and the lock that
//!   keeps one supervisor per directory.
//! - [`node_set`]: nodes added to and removed from a running devnet by
//!   epoch changes (`quorumkey devnet-node add|remove`), and the file that
//!   remembers them.

pub mod auxiliary;
pub mod control_socket;
pub mod dev_issuer;
pub mod node_set;
pub mod restart_policy;
pub mod supervisor;

pub use supervisor::{Devnet, DevnetError, DevnetOptions, NETWORK_JSON, run_until_stopped};
