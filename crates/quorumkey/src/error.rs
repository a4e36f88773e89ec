//! Why a `quorumkey` command failed: one enum with the cause of each
//! failure, printed by the binary as `error: ...`.

use std::path::PathBuf;

use quorumkey_client::ClientError;
use quorumkey_client::node_api_client::ApiClientError;
use quorumkey_client::registry::RegistryError;
use quorumkey_devnet::DevnetError;
use quorumkey_node::config::ConfigError;
use quorumkey_node::identity::KeyFileError;
use quorumkey_node::kek::RekeyError;
use quorumkey_node::observability::TelemetryError;
use quorumkey_node::run::NodeError;
use thiserror::Error;

/// Why a command failed.
#[derive(Debug, Error)]
pub enum CommandError {
    /// The command line lacks something clap cannot require.
    #[error("{0}")]
    Usage(&'static str),
    /// A `network.json` could not be read.
    #[error("cannot read {path} ({source}); {hint}")]
    ReadNetworkJson {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
        /// What to do instead.
        hint: &'static str,
    },
    /// A file is not a valid `network.json`.
    #[error("{path} is not a network.json: {reason}")]
    NotNetworkJson {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The network runs no development issuer.
    #[error("{path} lists no development issuer; pass --issuer")]
    NoDevIssuer {
        /// The network.json.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A verifier configuration file is too large.
    #[error("{path} is larger than the 16 KiB a verifier configuration may have")]
    ConfigTooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Standard input could not be read.
    #[error("cannot read the ID token from standard input: {0}")]
    Stdin(std::io::Error),
    /// The token on standard input is too long.
    #[error("the ID token on standard input is longer than {0} bytes")]
    TokenTooLong(u64),
    /// Standard input held no token.
    #[error("no ID token on standard input (or pass --id-token)")]
    NoToken,
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// This program's path is unknown.
    #[error("cannot find this program's path: {0}")]
    CurrentExe(std::io::Error),
    /// The development issuer refused or failed.
    #[error("{0}")]
    DevIssuer(String),
    /// A policy file is not a valid policy.
    #[error("{path}: {reason}")]
    Policy {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The network file describes no valid genesis.
    #[error("{0}")]
    Genesis(String),
    /// An operator's signature is not `INDEX:HEX` of an ed25519 signature.
    #[error("signature {text:?}{reason}")]
    Signature {
        /// The signature as given.
        text: String,
        /// What is wrong (from its first character: ` is not hex`).
        reason: String,
    },
    /// A policy change with the wrong nonce.
    #[error(
        "the policy in force has nonce {current}, so a change must carry nonce {} (this one has {got}); sign again",
        .current + 1
    )]
    PolicyNonce {
        /// The nonce in force.
        current: u64,
        /// The nonce given.
        got: u64,
    },
    /// The ledger rejected the policy change.
    #[error("the network rejected the policy: {0}")]
    PolicyRejected(String),
    /// The policy change did not finalize in time.
    #[error("the policy change was not finalized in time (status {0}); check with `quorumkey network policy show`")]
    PolicyNotFinalized(String),
    /// The policy could not be written as TOML.
    #[error("cannot write the policy as TOML: {0}")]
    Toml(#[from] toml::ser::Error),
    /// JSON output could not be written.
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A public key given on the command line is not one.
    #[error(transparent)]
    Key(#[from] quorumkey_crypto::CryptoError),
    /// The key a login rebuilt is not the key the lookup named.
    #[error("the login's key differs from the looked-up key")]
    KeyMismatch,
    /// A file to create exists.
    #[error("{0} exists; choose another --out")]
    Exists(PathBuf),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An epoch proposal file is not one.
    #[error("{path}: {reason}")]
    Proposal {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An epoch change could not be made.
    #[error("{0}")]
    Epoch(String),
    /// The network file lists no node with this node's keys.
    #[error("{0} lists no node with this node's keys")]
    NotEnrolled(PathBuf),
    /// An enrollment is refused.
    #[error(transparent)]
    Enrollment(#[from] quorumkey_node::enrollment::EnrollmentError),
    /// The client failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A node's `/v1` API failed.
    #[error(transparent)]
    Api(#[from] ApiClientError),
    /// A verifier script's module is refused.
    #[error(transparent)]
    ScriptModule(#[from] quorumkey_script::ModuleError),
    /// A verifier script gave no verifier_id.
    #[error(transparent)]
    ScriptRun(#[from] quorumkey_script::ScriptError),
    /// A verifier script's input is unusable.
    #[error("{0}")]
    Script(String),
    /// No network description could be trusted.
    #[error(transparent)]
    Discovery(#[from] quorumkey_client::network_discovery::DiscoveryError),
    /// A registry command failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A configuration file is missing or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key file is missing or unsafe.
    #[error(transparent)]
    Keys(#[from] KeyFileError),
    /// Re-encrypting the shares failed.
    #[error(transparent)]
    Rekey(#[from] RekeyError),
    /// The metrics recorder could not be installed.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// The node stopped with an error.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The devnet failed.
    #[error(transparent)]
    Devnet(#[from] DevnetError),
    /// A running devnet could not be reached, or refused the request.
    #[error(transparent)]
    DevnetControl(#[from] quorumkey_devnet::control_socket::ControlError),
    /// No temporary directory.
    #[error("cannot make a temporary directory: {0}")]
    TempDir(std::io::Error),
    /// No free ports for a devnet.
    #[error("no free ports on 127.0.0.1")]
    NoFreePorts,
    /// Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
    /// The DKG made no key in time.
    #[error("the DKG made no key within {} minutes; see the node logs", .0.as_secs() / 60)]
    NoKeys(std::time::Duration),
    /// The rebuilt key's signature does not verify against the looked-up
    /// public key.
    #[error("the signature does not verify against the looked-up key: {0}")]
    SignatureCheck(quorumkey_crypto::CryptoError),
    /// The DKG did not fill the bench's pool in time.
    #[error("the DKG made {made} of {pool} keys in {} minutes", .within.as_secs() / 60)]
    PoolShort {
        /// Keys made.
        made: u64,
        /// Keys wanted.
        pool: u32,
        /// The wait.
        within: std::time::Duration,
    },
    /// A bench worker task failed.
    #[error("a bench worker failed: {0}")]
    Task(tokio::task::JoinError),
    /// An operation measured for a floor failed (its inputs are fixed, so
    /// this is a bug or a broken build).
    #[error("measuring the {what} floor: {reason}")]
    Floor {
        /// Which floor.
        what: &'static str,
        /// The failing operation's error.
        reason: String,
    },
}
