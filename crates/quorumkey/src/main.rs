//! The `quorumkey` command. Thin: parsing and printing only; the work lives
//! in the library crates.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use quorumkey_crypto::address::eth_address;
use quorumkey_crypto::group::{public_key_from_hex, public_key_from_xy_hex, public_key_to_xy_hex};
use quorumkey_crypto::hash::token_commitment_hex;
use quorumkey_devnet::dev_issuer::{MintRequest, request_token, run_standalone};
use quorumkey_devnet::supervisor::{DevnetOptions, NETWORK_JSON};
use quorumkey_node::addresses::{ListenOverrides, RpcUrl};
use quorumkey_node::config::ProviderSettings;
use quorumkey_node::identity::load_owner_key;
use quorumkey_node::kek::{rekey_node, write_new_kek};
use quorumkey_node::observability::Telemetry;
use quorumkey_node::run::{RunOptions, run_node_with};

use quorumkey::client_commands::{self, LoginRequest, TokenSource};
use quorumkey::error::CommandError;
use quorumkey::operator_commands::{self, InitFlags};
use quorumkey::registry_commands::{self, node_client};
use quorumkey::{bench, demo, devnet_commands};

/// mimalloc instead of glibc's malloc: under a login load glibc's
/// allocator took about 9% of the CPU (nodes and clients allocate small,
/// short-lived buffers on many threads); see docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Distributed key generation as a service: n nodes keep secp256k1 keys
/// Shamir-shared among them and hand each signed-in user the shares of its
/// key, compatible with the public Torus client.
#[derive(Debug, Parser)]
#[command(name = "quorumkey", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a network's configuration.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Run a node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Run a whole network on this machine (127.0.0.1), one node process
    /// each, until interrupted. Creates the network in --dir on first use
    /// and reuses it (keys and data) afterwards. Writes DIR/network.json
    /// once every node has finalized a block.
    ///
    /// Supervised: a node process that exits is reported on stderr (exit
    /// status, log file, the log's last lines) and restarted after 1 s,
    /// doubling to at most 30 s while it keeps exiting (back to 1 s once it
    /// has run 60 s). `quorumkey devnet-node status|stop|start` inspects,
    /// stops and starts single nodes while it runs, and `quorumkey
    /// devnet-node add|remove` changes the node set by an epoch change,
    /// through DIR/control.sock. Nodes added are remembered in
    /// DIR/node-set.toml: a devnet run again on DIR starts them, and leaves
    /// the removed ones down.
    /// Fatal: the development issuer exiting, or a node exiting before the
    /// first block. One devnet per directory: a second is refused.
    /// Ctrl-C or SIGTERM stops every node.
    Devnet {
        /// Number of nodes.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=256))]
        nodes: u16,
        /// The devnet directory.
        #[arg(long, default_value = "devnet")]
        dir: PathBuf,
        /// Node i listens for peers on this port + i (new network only).
        #[arg(long, default_value_t = 27000)]
        p2p_base_port: u16,
        /// Node i serves its API on this port + i (new network only).
        #[arg(long, default_value_t = 17000)]
        rpc_base_port: u16,
    },
    /// Stop, start or show single nodes of a running `quorumkey devnet`
    /// (through its control socket, DIR/control.sock), e.g. to try the
    /// network's fault tolerance by hand; add and remove nodes by epoch
    /// changes.
    #[command(subcommand)]
    DevnetNode(DevnetNodeCommand),
    /// Run the development OpenID Connect issuer alone (a devnet runs its
    /// own). FOR DEVELOPMENT ONLY: it signs a token for any email asked.
    /// Serves discovery, JWKS (ES256), POST /dev/token and POST /dev/rotate.
    DevIssuer {
        /// Address to listen on: a loopback address unless
        /// --allow-public-bind.
        #[arg(long, default_value = "127.0.0.1:8550")]
        listen: std::net::SocketAddr,
        /// The `iss` of its tokens (default: http://LISTEN).
        #[arg(long)]
        issuer_url: Option<String>,
        /// Also serve the Torus client's auxiliary hosts (GET /api/allow,
        /// POST /api/sign, POST /get), signing KeyAssign authorizations
        /// with the secp256k1 key in this file (`verifier owner-key`
        /// makes one).
        #[arg(long)]
        signer_key: Option<PathBuf>,
        /// Listen on a non-loopback address (e.g. 0.0.0.0) anyway. Without
        /// it, such an address is refused: anyone who reaches the issuer
        /// can sign in as anyone at verifiers that trust it.
        #[arg(long)]
        allow_public_bind: bool,
    },
    /// Get an ID token for an email from a development issuer (the
    /// devnet's, found in its network.json, or --issuer). Prints the token
    /// on standard output.
    DevToken {
        /// The user's email.
        #[arg(long)]
        email: String,
        /// The devnet's network.json (default: devnet/network.json).
        #[arg(long, conflicts_with = "issuer")]
        network: Option<PathBuf>,
        /// The issuer's base URL instead (e.g. http://127.0.0.1:8550).
        #[arg(long)]
        issuer: Option<String>,
        /// The client id to put in `aud` (default: the devnet verifier's).
        #[arg(long)]
        audience: Option<String>,
        /// Lifetime in seconds (default 3600, at most 86400).
        #[arg(long)]
        ttl_secs: Option<u64>,
    },
    /// Register, change and list the verifiers of a running network (how
    /// each application's tokens are checked).
    #[command(subcommand)]
    Verifier(VerifierCommand),
    /// Run the whole system once on this machine: a local network of real
    /// node processes (temporary directory, free ports on 127.0.0.1), the
    /// key pool filled by the DKG, a demo user signed in at the
    /// development issuer, the key retrieved through the full
    /// commit-then-reveal login, proven by a signature; then a report and
    /// a clean shutdown.
    Demo {
        /// Number of nodes.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=64))]
        nodes: u16,
        /// Keep the network in this directory (default: a temporary one,
        /// removed afterwards).
        #[arg(long)]
        keep: Option<PathBuf>,
        /// The demo user.
        #[arg(long, default_value = "demo-user@example.com")]
        email: String,
    },
    /// Measure a fresh local network against the cost of its required
    /// cryptography: DKG keys per second, new-user latency, existing-user
    /// login latency (p50, p99), a verifier script's login against a jwt
    /// login, sustained logins per second with concurrent clients. Build
    /// with --release.
    Bench {
        /// Number of nodes.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=64))]
        nodes: u16,
        /// Concurrent clients in the sustained phase.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Seconds of the sustained phase.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Existing-user logins measured one at a time (and as many more with the key already known, alternating with them).
        #[arg(long, default_value_t = 200)]
        logins: usize,
        /// New users measured one at a time.
        #[arg(long, default_value_t = 30)]
        new_users: usize,
        /// DKG batches that fill the pool (measured while they run).
        #[arg(long, default_value_t = 10)]
        batches: u32,
        /// Keys per DKG batch (default: the network's default for its size).
        #[arg(long)]
        batch_keys: Option<u16>,
    },
    /// Show a user's key as the nodes agree on it (t identical answers).
    Lookup {
        /// The verifier.
        #[arg(long)]
        verifier: String,
        /// The user at that verifier.
        #[arg(long)]
        verifier_id: String,
        /// The network's network.json.
        #[arg(long, default_value = "devnet/network.json")]
        network: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Log a user in: assign a key if it has none, then the full
    /// commit-then-reveal login; every share is checked against the
    /// ledger. Prints the public key, the Ethereum address, what each node
    /// did and how long each step took (the private key only with
    /// --show-private-key).
    Login {
        /// The verifier (default: the devnet's development verifier).
        #[arg(long)]
        verifier: Option<String>,
        /// The user (default: the --dev-email).
        #[arg(long)]
        verifier_id: Option<String>,
        #[command(flatten)]
        token: TokenArgs,
        /// The network's network.json.
        #[arg(long, default_value = "devnet/network.json")]
        network: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also print the private key (hex). It is the user's secret.
        #[arg(long)]
        show_private_key: bool,
        /// A script login's evidence, NAME=VALUE (e.g. a wallet's
        /// signature); repeat. Needs --sub-token.
        #[arg(long, requires = "sub_token")]
        evidence: Vec<String>,
        /// A script login's evidence read from a file, NAME=FILE (e.g. a
        /// signed message); repeat. Needs --sub-token.
        #[arg(long, requires = "sub_token")]
        evidence_file: Vec<PathBuf>,
    },
    /// Compute the values a Torus client and a node exchange, to debug an
    /// integration by hand.
    #[command(subcommand)]
    Inspect(Inspect),
}

/// Where a login's ID token comes from (one of them).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct TokenArgs {
    /// The ID token (visible to other users of this machine in the
    /// process list; prefer --id-token-file).
    #[arg(long)]
    id_token: Option<String>,
    /// A file holding the ID token (`-`: standard input).
    #[arg(long)]
    id_token_file: Option<PathBuf>,
    /// Sign this email in at the devnet's development issuer for a token.
    #[arg(long)]
    dev_email: Option<String>,
    /// For an aggregate or script verifier: one sub-token, SUB_VERIFIER=FILE
    /// (the file holds the token; `-` is standard input); repeat, one per
    /// sub-verifier. Needs --verifier and --verifier-id.
    #[arg(long)]
    sub_token: Vec<String>,
}

/// The directory of a running `quorumkey devnet`.
#[derive(Debug, Args)]
struct DevnetDir {
    /// The devnet directory (as given to `quorumkey devnet --dir`).
    #[arg(long, default_value = "devnet")]
    dir: PathBuf,
}

/// One node of a running devnet.
#[derive(Debug, Subcommand)]
enum DevnetNodeCommand {
    /// Every node: number, process id, automatic restarts, API URL and
    /// state: running, stopped on request, restarting after exit (with how
    /// it exited and when the next attempt is), or removed from the
    /// network; and whether it joins or leaves in a change under way.
    Status {
        #[command(flatten)]
        dir: DevnetDir,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a node (SIGTERM; killed if still running after 10 s) and keep
    /// it down: it is not restarted until `devnet-node start`. Answers once
    /// it has exited.
    Stop {
        /// The node: its number in the devnet (its directory node-N, as
        /// `status` lists it).
        #[arg(long, visible_alias = "node")]
        index: u16,
        #[command(flatten)]
        dir: DevnetDir,
    },
    /// Start a node now (stopped on request, or waiting to restart after
    /// it exited); it catches up from its storage.
    Start {
        /// The node: its number in the devnet (its directory node-N, as
        /// `status` lists it).
        #[arg(long, visible_alias = "node")]
        index: u16,
        #[command(flatten)]
        dir: DevnetDir,
    },
    /// Add a new node to the network by an epoch change (with --replace,
    /// in place of another).
    ///
    /// As operators would: the devnet makes DIR/node-K (K the next number; `node
    /// keygen` on free ports of 127.0.0.1, network.toml copied beside it),
    /// proposes the set in force plus the new node, signs the proposal
    /// with the keys of 2f + 1 nodes of the set in force, submits it, and
    /// starts the new node once the proposal is decided. The new node
    /// syncs the ledger as an observer and signs once the new epoch is in
    /// force (after the handover of every key, at the next multiple of
    /// the genesis's epoch_boundary_blocks); the devnet then rewrites
    /// DIR/network.json for the new set. One change at a time: refused
    /// while a handover runs.
    Add {
        /// Remove this node (its number in the devnet) in the same change:
        /// the new node replaces it.
        #[arg(long, value_name = "N")]
        replace: Option<u16>,
        /// Wait until the new epoch is in force (a progress bar of the
        /// handover), then print the nodes.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        dir: DevnetDir,
    },
    /// Remove a node from the network by an epoch change; it stops once
    /// the new epoch is in force.
    ///
    /// The set in force without it, signed by 2f + 1 of its nodes and
    /// submitted. The node
    /// keeps running until the new epoch is in force (its shares are
    /// handed over to the others), deletes its shares then, and the devnet
    /// stops it and never starts it again. One change at a time.
    Remove {
        /// The node: its number in the devnet (its directory node-N, as
        /// `status` lists it; not necessarily its index in the epoch in
        /// force).
        #[arg(long)]
        node: u16,
        /// Wait until the new epoch is in force and the node is stopped.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        dir: DevnetDir,
    },
}

/// Which node to talk to.
#[derive(Debug, Args)]
struct NodeTarget {
    /// A node's API URL (e.g. http://127.0.0.1:17001).
    #[arg(long, conflicts_with = "network")]
    node: Option<String>,
    /// A network.json whose first node to use (default: devnet/network.json).
    #[arg(long)]
    network: Option<PathBuf>,
}

/// Verifier registry commands.
#[derive(Debug, Subcommand)]
enum VerifierCommand {
    /// Create an owner key (secp256k1, hex, file mode 0600) and print its
    /// public key. The owner key signs registrations and updates.
    OwnerKey {
        /// The file to create (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Register a verifier: its name (first come, first served) and its
    /// configuration (a JSON file; see docs/verifiers.md).
    Register {
        /// Its name.
        #[arg(long)]
        name: String,
        /// The configuration file (JSON).
        #[arg(long)]
        config: PathBuf,
        /// The owner key file.
        #[arg(long)]
        owner_key: PathBuf,
        /// A script verifier's module (.wasm): published first (as
        /// `publish-script` does), and named as the configuration's
        /// `module`.
        #[arg(long)]
        script: Option<PathBuf>,
        #[command(flatten)]
        target: NodeTarget,
    },
    /// Replace a verifier's configuration.
    Update {
        /// Its name.
        #[arg(long)]
        name: String,
        /// The new configuration file (JSON).
        #[arg(long)]
        config: PathBuf,
        /// The owner key file.
        #[arg(long)]
        owner_key: PathBuf,
        /// A script verifier's module (.wasm): published first (as
        /// `publish-script` does), and named as the configuration's
        /// `module`.
        #[arg(long)]
        script: Option<PathBuf>,
        #[command(flatten)]
        target: NodeTarget,
    },
    /// Stop a verifier taking assignments and logins.
    Disable {
        /// Its name.
        #[arg(long)]
        name: String,
        /// The owner key file.
        #[arg(long)]
        owner_key: PathBuf,
        #[command(flatten)]
        target: NodeTarget,
    },
    /// Let a disabled verifier take assignments and logins again.
    Enable {
        /// Its name.
        #[arg(long)]
        name: String,
        /// The owner key file.
        #[arg(long)]
        owner_key: PathBuf,
        #[command(flatten)]
        target: NodeTarget,
    },
    /// Publish a verifier script's module (.wasm) on the ledger, signed by
    /// an owner key: checked here as the ledger checks it (size, no floats,
    /// only quorumkey host functions, the exports), then submitted; prints
    /// its id, which a script verifier's configuration names as `module`.
    /// Spends the network's registration budget, as a registration does.
    PublishScript {
        /// The module.
        #[arg(long)]
        module: PathBuf,
        /// The owner key file (on the policy's allow list, if it has one).
        #[arg(long)]
        owner_key: PathBuf,
        #[command(flatten)]
        target: NodeTarget,
    },
    /// Run a verifier script on this machine on a sample login, as every
    /// node would: validates the module as the ledger does (size, no
    /// floats, only quorumkey host functions, the exports), runs it in the
    /// same sandbox within the budget, and prints the verifier_id it
    /// accepts and the fuel it used, or why it gives none. The input is a
    /// JSON file: {"sub_tokens": [{"name", "verifier_id", "claims"}],
    /// "params": {...}, "issued_at", "now"} (examples beside the scripts in
    /// guest/assemblyscript/examples; docs/verifiers.md).
    TestScript {
        /// The module (.wasm).
        #[arg(long)]
        module: PathBuf,
        /// The sample login (JSON).
        #[arg(long)]
        input: PathBuf,
        /// Fuel for the run (at most 100000000).
        #[arg(long, default_value_t = 10_000_000)]
        fuel: u64,
        /// Memory for the run, in 64 KiB pages (at most 64).
        #[arg(long, default_value_t = 16)]
        memory_pages: u32,
    },
    /// List the registered verifiers.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: NodeTarget,
    },
}

/// Create a network's configuration.
#[derive(Debug, Subcommand)]
enum NetworkCommand {
    /// Write a new network into --out: for each node a directory with its
    /// keys (files of mode 0600, one key per role) and node.toml, and the
    /// public network.toml that every node shares. Nodes listen on
    /// 127.0.0.1; edit network.toml for other hosts before first start.
    Init {
        /// Number of nodes.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=256))]
        nodes: u16,
        /// The directory to create (must not exist, or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Node i listens for peers on this port + i.
        #[arg(long, default_value_t = 27000)]
        p2p_base_port: u16,
        /// Node i serves JSON-RPC on this port + i.
        #[arg(long, default_value_t = 17000)]
        rpc_base_port: u16,
        /// The signer whose authorization every node requires on KeyAssign
        /// (compressed secp256k1 public key, 66 hex digits). One of this and
        /// --allow-unsigned-key-assign is required.
        #[arg(long, required_unless_present = "allow_unsigned_key_assign")]
        key_assign_signer: Option<String>,
        /// Serve KeyAssign without a signer's authorization: anyone may then
        /// take keys from the pool for any user, within the ledger's budgets
        /// (development networks).
        #[arg(long, conflicts_with = "key_assign_signer")]
        allow_unsigned_key_assign: bool,
        /// The network's abuse policy (a TOML file with the fields of
        /// network.toml's [policy] section: allowed_owners,
        /// verifiers_per_owner, max_config_len, registrations_per_window,
        /// assignments_per_verifier, assignments_per_node,
        /// assignments_per_window, window_secs; see docs/operations.md).
        /// Defaults for every field absent.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Assemble a network's genesis from its nodes' public enrollments
    /// (each made by `quorumkey node keygen` on the node's own machine):
    /// every enrollment's signatures are checked, no key or address may
    /// appear twice, and the nodes are numbered by their consensus keys, so
    /// the same enrollments in any order give the same network.toml. Prints
    /// the network id: every operator should get the same one (compare it
    /// out of band) before putting network.toml beside its node.toml.
    Genesis {
        /// An enrollment file (enrollment.toml); once per node.
        #[arg(long = "enrollment", required = true)]
        enrollments: Vec<PathBuf>,
        /// The network.toml to write (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// The network's abuse policy, as for `network init`.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Verifiers to register at genesis: a TOML file of [[verifiers]]
        /// entries (name, owner: the owner's compressed secp256k1 key in
        /// hex, config: the verifier's configuration document), as in
        /// network.toml.
        #[arg(long)]
        verifiers: Option<PathBuf>,
    },
    /// Write the network.json a client (the quorumkey client, or an app
    /// using torus.js) needs, from one node's URL: fetches the node's
    /// description (GET /v1/network), checks it against the genesis it
    /// carries (whose hash is the network id), and accepts it only when t
    /// of the nodes it lists, at the addresses it lists, serve the same
    /// description signed by their keys. Compare the network id it prints
    /// with the one the operators publish, or pass --network-id.
    ClientConfig {
        /// A node's API URL (e.g. http://10.0.0.1:8000; HOST:PORT means
        /// http://HOST:PORT).
        #[arg(long)]
        node: String,
        /// The network id to expect (64 hex digits), as the operators
        /// published it.
        #[arg(long)]
        network_id: Option<String>,
        /// Where to write network.json (must not exist); absent: standard
        /// output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seconds to wait for each node.
        #[arg(long, default_value_t = 10)]
        timeout_secs: u64,
    },
    /// The network's abuse policy: show it, and change it with the
    /// signatures of at least 2f + 1 operators.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The node set: show the epoch in force and a handover's progress;
    /// add, remove or replace nodes, or refresh every share (a handover to
    /// the same set), with the signatures of at least 2f + 1 current
    /// operators.
    #[command(subcommand)]
    Epoch(EpochCommand),
}

/// Epochs: the node set in force and changes to it.
#[derive(Debug, Subcommand)]
enum EpochCommand {
    /// Print the epoch in force, its nodes, and the handover to the next
    /// one if it runs.
    Show {
        /// Follow the handover with a progress bar until the new epoch is
        /// in force.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        target: NodeTarget,
    },
    /// Write a proposal for the next epoch: the set in force (asked of a
    /// node) minus the nodes --remove'd, plus the nodes --add'ed from their
    /// enrollments (a replacement is both). Every key is handed over to
    /// it: each keeps its public key, each node of the new set gets a new
    /// share, and shares of the epoch before are worthless once it is in
    /// force. With neither option, a refresh of every share.
    Propose {
        /// A joining node's enrollment.toml (written by `quorumkey node
        /// keygen` on its operator's machine); repeat to add several.
        #[arg(long = "add", value_name = "ENROLLMENT")]
        add: Vec<PathBuf>,
        /// The index (in the epoch in force) of a node to remove; repeat.
        #[arg(long = "remove", value_name = "INDEX")]
        remove: Vec<u16>,
        /// network.toml: the addresses of genesis nodes, which the ledger
        /// does not hold (needed while epoch 0 is in force).
        #[arg(long)]
        network_file: Option<PathBuf>,
        /// Where to write the proposal (must not exist).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        target: NodeTarget,
    },
    /// Sign a proposal with this operator's node key and print the
    /// signature as INDEX:HEX, for `submit`. The index is the node's in
    /// the epoch in force: asked of --node if given, else read from
    /// network.toml (right while epoch 0 is in force).
    Sign {
        /// This operator's node.toml (its key directory and network file).
        #[arg(long)]
        node_config: PathBuf,
        /// The proposal (the same file every operator signs).
        #[arg(long)]
        proposal: PathBuf,
        /// A node's API URL, to find this node's index in the epoch in
        /// force.
        #[arg(long)]
        node: Option<String>,
    },
    /// Submit a proposal signed by at least 2f + 1 current operators and
    /// wait until it is decided; the handover then runs on its own
    /// (follow it with `show --watch`).
    Submit {
        /// The proposal every operator signed.
        #[arg(long)]
        proposal: PathBuf,
        /// An operator's signature, INDEX:HEX as `sign` printed it; repeat.
        #[arg(long = "signature", required = true)]
        signatures: Vec<String>,
        #[command(flatten)]
        target: NodeTarget,
    },
}

fn epoch_command(command: EpochCommand) -> Result<(), CommandError> {
    use quorumkey::epoch_commands::{ProposalFile, describe, propose, sign, submit, watch};
    match command {
        EpochCommand::Show { watch: follow, target } => {
            let client = node_client(&target.into())?;
            if follow {
                runtime()?.block_on(watch(&client, Duration::from_millis(500)))?;
            } else {
                print!("{}", describe(&runtime()?.block_on(client.epoch())?));
            }
        }
        EpochCommand::Propose { add, remove, network_file, out, target } => {
            let client = node_client(&target.into())?;
            let proposal = runtime()?.block_on(propose(&client, network_file.as_deref(), &add, &remove, &out))?;
            let t = proposal.nodes.len() / 2 + 1;
            println!("epoch {} proposed: {} nodes (threshold {t})", proposal.epoch, proposal.nodes.len());
            for (position, node) in proposal.nodes.iter().enumerate() {
                println!("  node {:<3} {}  {}", position + 1, node.consensus_key, node.rpc_url);
            }
            println!("written {}; each operator signs it with `quorumkey network epoch sign`", out.display());
        }
        EpochCommand::Sign { node_config, proposal, node } => {
            let proposal = ProposalFile::load(&proposal)?;
            let client = node.map(quorumkey_client::node_api_client::NodeApiClient::new);
            println!("{}", runtime()?.block_on(sign(&node_config, &proposal, client.as_ref()))?);
        }
        EpochCommand::Submit { proposal, signatures, target } => {
            let client = node_client(&target.into())?;
            let proposal = ProposalFile::load(&proposal)?;
            let height = runtime()?.block_on(submit(&client, &proposal, &signatures))?;
            println!(
                "epoch {} decided at height {height}; follow the handover with `quorumkey network epoch show --watch`",
                proposal.epoch
            );
        }
    }
    Ok(())
}

/// The network's abuse policy.
#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Print the policy in force and its nonce.
    Show {
        #[command(flatten)]
        target: NodeTarget,
    },
    /// Sign a change to the policy in FILE with this operator's node key
    /// (offline) and print the signature as INDEX:HEX, for `submit`.
    Sign {
        /// This operator's node.toml (its key directory and network file).
        #[arg(long)]
        node_config: PathBuf,
        /// The new policy (TOML, the fields of network.toml's [policy]).
        #[arg(long)]
        policy: PathBuf,
        /// The change's nonce: the current one (`show`) plus one.
        #[arg(long)]
        nonce: u64,
    },
    /// Submit a change signed by at least 2f + 1 operators and wait until
    /// it is in force.
    Submit {
        /// The new policy (the same file every operator signed).
        #[arg(long)]
        policy: PathBuf,
        /// The nonce every operator signed.
        #[arg(long)]
        nonce: u64,
        /// An operator's signature, INDEX:HEX as `sign` printed it; repeat.
        #[arg(long = "signature", required = true)]
        signatures: Vec<String>,
        #[command(flatten)]
        target: NodeTarget,
    },
}

fn policy_command(command: PolicyCommand) -> Result<(), CommandError> {
    use quorumkey::operator_commands::{load_policy, print_policy, sign, submit};
    match command {
        PolicyCommand::Show { target } => {
            let client = node_client(&target.into())?;
            print_policy(&runtime()?.block_on(client.policy())?)?;
        }
        PolicyCommand::Sign { node_config, policy, nonce } => {
            println!("{}", sign(&node_config, load_policy(&policy)?, nonce)?);
        }
        PolicyCommand::Submit { policy, nonce, signatures, target } => {
            let client = node_client(&target.into())?;
            let answer = runtime()?.block_on(submit(&client, load_policy(&policy)?, nonce, &signatures))?;
            println!("policy changed");
            print_policy(&answer)?;
        }
    }
    Ok(())
}

/// Run a node.
#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Run one node until SIGINT or SIGTERM. Logs go to standard error
    /// (filter with RUST_LOG, default `info`); the API (health, metrics,
    /// transactions, status) listens on rpc_listen in node.toml, or else
    /// the address of the node's rpc_url in network.toml. Needs the
    /// node's key-encryption key: the file kek_file in node.toml names, or
    /// the QUORUMKEY_KEK environment variable (64 hex digits or 32 bytes in
    /// base64), not both. Refuses a data directory that group or others
    /// may use (chmod 700 it).
    ///
    /// node.toml's optional sections (docs/api.md, "Limits"): [rpc] the
    /// client API's rate limits and caps on unexpired login records
    /// (max_pending_records_per_verifier 1000000,
    /// max_pending_records_per_address 10000, max_pending_records
    /// 2000000); [http] connections: max_connections 4096 (lowered to
    /// fit the open-file limit), max_connections_per_address 128 (an IPv4
    /// address or an IPv6 /64), header_timeout_secs 10, body_timeout_secs
    /// 20, idle_timeout_secs 30, trusted_proxies [] (addresses or CIDR
    /// blocks whose X-Forwarded-For gives the client's address).
    Run {
        /// The node's node.toml (as written by `network init`).
        #[arg(long)]
        config: PathBuf,
        /// Start even though a corrupt entry of the login-record log lost a
        /// record this node answered for, while a token it held may still
        /// be accepted (without it the node refuses to start until then).
        /// For this start only: see docs/operations.md before using it.
        #[arg(long)]
        accept_lost_login_records: bool,
    },
    /// Make a new node's keys on this machine, for a network of
    /// independent operators: writes into --out the secret keys (mode
    /// 0600), a key-encryption key (0600), a node.toml that finds the
    /// node's index in the network.toml to be put beside it, and
    /// enrollment.toml, the node's public enrollment (its public keys and
    /// addresses, signed by both keys), which it also prints. Send only
    /// enrollment.toml to whoever assembles the genesis (`quorumkey network
    /// genesis`); no secret leaves --out.
    Keygen {
        /// The node's directory to create (must not exist, or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Where the other nodes reach this one (IP:PORT; an IPv6 address
        /// in brackets, e.g. [2001:db8::1]:9000). Peers also accept its
        /// connections only from this IP.
        #[arg(long)]
        p2p_address: std::net::SocketAddr,
        /// Where clients reach this node's API: http(s)://HOST[:PORT][/PREFIX]
        /// (IP:PORT means http://IP:PORT). Clients call /jrpc, /v1/... and
        /// /health under it.
        #[arg(long, alias = "rpc-address")]
        rpc_url: RpcUrl,
        /// The address the p2p listener binds, if not --p2p-address: e.g.
        /// 0.0.0.0:9000 (every IPv4 interface) for an IPv4 --p2p-address,
        /// [::]:9000 for an IPv6 one (the same family: peers accept a
        /// node's connections only from its advertised IP).
        #[arg(long)]
        p2p_listen: Option<std::net::SocketAddr>,
        /// The address the API binds, if not the address of --rpc-url.
        /// Required when --rpc-url names a host or is https (the node serves
        /// plain HTTP: an https URL is a TLS proxy's, forwarding here).
        #[arg(long)]
        rpc_listen: Option<std::net::SocketAddr>,
        /// The signer whose authorization this node requires on KeyAssign
        /// (compressed secp256k1 public key, 66 hex digits). One of this and
        /// --allow-unsigned-key-assign is required.
        #[arg(long, required_unless_present = "allow_unsigned_key_assign")]
        key_assign_signer: Option<String>,
        /// Serve KeyAssign without a signer's authorization (development
        /// networks).
        #[arg(long, conflicts_with = "key_assign_signer")]
        allow_unsigned_key_assign: bool,
    },
    /// Create a key-encryption key (32 random bytes as 64 hex digits, file
    /// mode 0600) for a node's shares at rest, and print its id. Keep it
    /// off the data directory's volume and out of its backups.
    NewKek {
        /// The file to create (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Re-encrypt a stopped node's shares under a new key-encryption key,
    /// all in one transaction (also encrypts a store written before shares
    /// were encrypted). The current key comes from node.toml's kek_file or
    /// QUORUMKEY_KEK. Afterwards the node starts only with the new key:
    /// point kek_file at it (or set QUORUMKEY_KEK). See docs/operations.md.
    Rekey {
        /// The node's node.toml.
        #[arg(long)]
        config: PathBuf,
        /// The new key's file (made by `quorumkey node new-kek`).
        #[arg(long)]
        new_kek: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum Inspect {
    /// The token commitment a client sends in CommitmentRequest:
    /// keccak256 of the ID token in the one spelling nodes accept (as the
    /// quorumkey client sends it), as 64 hex digits. Reads the token from
    /// standard input unless --id-token is given (keeps it out of shell
    /// history).
    TokenCommitment {
        /// The ID token; omit to read it from standard input.
        #[arg(long)]
        id_token: Option<String>,
    },
    /// The EIP-55 Ethereum address of a secp256k1 public key.
    Address(AddressArgs),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
struct AddressArgs {
    /// The public key as SEC1 hex (66 or 130 hex digits).
    #[arg(long, conflicts_with_all = ["pub_key_x", "pub_key_y"])]
    public_key: Option<String>,
    /// The X coordinate in hex, as in a lookup's `pub_key_X`.
    #[arg(long, requires = "pub_key_y")]
    pub_key_x: Option<String>,
    /// The Y coordinate in hex, as in a lookup's `pub_key_Y`.
    #[arg(long, requires = "pub_key_x")]
    pub_key_y: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), CommandError> {
    match cli.command {
        Command::Network(NetworkCommand::Init {
            nodes,
            out,
            p2p_base_port,
            rpc_base_port,
            key_assign_signer,
            allow_unsigned_key_assign,
            policy,
        }) => {
            let flags =
                InitFlags { p2p_base_port, rpc_base_port, key_assign_signer, allow_unsigned_key_assign, policy };
            operator_commands::network_init(nodes, &out, flags)?;
        }
        Command::Network(NetworkCommand::Policy(command)) => policy_command(command)?,
        Command::Network(NetworkCommand::Epoch(command)) => epoch_command(command)?,
        Command::Network(NetworkCommand::Genesis { enrollments, out, policy, verifiers }) => {
            operator_commands::network_genesis(&enrollments, &out, policy.as_deref(), verifiers.as_deref())?;
        }
        Command::Network(NetworkCommand::ClientConfig { node, network_id, out, timeout_secs }) => {
            let timeout = Duration::from_secs(timeout_secs.max(1));
            runtime()?.block_on(client_commands::client_config(
                &node,
                network_id.as_deref(),
                out.as_deref(),
                timeout,
            ))?;
        }
        Command::Node(NodeCommand::Keygen {
            out,
            p2p_address,
            rpc_url,
            p2p_listen,
            rpc_listen,
            key_assign_signer,
            allow_unsigned_key_assign,
        }) => {
            let addresses = operator_commands::KeygenAddresses {
                p2p_address,
                rpc_url,
                listen: ListenOverrides { p2p: p2p_listen, rpc: rpc_listen },
            };
            let signer = operator_commands::KeyAssignSigner { key_assign_signer, allow_unsigned_key_assign };
            operator_commands::node_keygen(&out, &addresses, signer)?;
        }
        Command::Node(NodeCommand::Run { config, accept_lost_login_records }) => {
            init_logging();
            let telemetry = Telemetry::install()?;
            let options = RunOptions { accept_lost_login_records };
            run_node_with(&config, Some(telemetry), &options)?;
        }
        Command::Node(NodeCommand::NewKek { out }) => {
            let kek = write_new_kek(&out)?;
            println!("key-encryption key written to {} (mode 0600), id {}", out.display(), kek.id());
        }
        Command::Node(NodeCommand::Rekey { config, new_kek }) => {
            let report = rekey_node(&config, &new_kek)?;
            let from = report.from.map_or_else(|| "plain".to_owned(), |id| format!("key {id}"));
            println!(
                "re-encrypted {} key shares and {} batch shares: {from} -> key {} ({})",
                report.key_shares,
                report.batch_shares,
                report.to,
                if report.compacted { "file compacted" } else { "the file could not be compacted" }
            );
            println!(
                "the node now starts only with {}: point kek_file in {} at it (or set QUORUMKEY_KEK to its content); keep the old key as long as backups made before this rekey",
                new_kek.display(),
                config.display()
            );
        }
        Command::Devnet { nodes, dir, p2p_base_port, rpc_base_port } => {
            let binary = std::env::current_exe().map_err(CommandError::CurrentExe)?;
            let options = DevnetOptions {
                nodes,
                dir,
                p2p_base_port,
                rpc_base_port,
                binary,
                dkg: Default::default(),
                rpc: Default::default(),
                policy: Default::default(),
                providers: ProviderSettings::development(),
                http: Default::default(),
            };
            runtime()?.block_on(quorumkey_devnet::run_until_stopped(&options))?;
        }
        Command::DevnetNode(command) => {
            let runtime = runtime()?;
            match command {
                DevnetNodeCommand::Status { dir, json } => {
                    runtime.block_on(devnet_commands::status(&dir.dir, json))?;
                }
                DevnetNodeCommand::Stop { index, dir } => runtime.block_on(devnet_commands::stop(&dir.dir, index))?,
                DevnetNodeCommand::Start { index, dir } => runtime.block_on(devnet_commands::start(&dir.dir, index))?,
                DevnetNodeCommand::Add { replace, wait, dir } => {
                    runtime.block_on(devnet_commands::add(&dir.dir, replace, wait))?;
                }
                DevnetNodeCommand::Remove { node, wait, dir } => {
                    runtime.block_on(devnet_commands::remove(&dir.dir, node, wait))?;
                }
            }
        }
        Command::DevIssuer { listen, issuer_url, signer_key, allow_public_bind } => {
            quorumkey_devnet::dev_issuer::check_bind(listen, allow_public_bind).map_err(CommandError::DevIssuer)?;
            let signer = signer_key.map(|path| load_owner_key(&path)).transpose()?;
            runtime()?
                .block_on(run_standalone(listen, issuer_url, signer, allow_public_bind))
                .map_err(CommandError::DevIssuer)?;
        }
        Command::Demo { nodes, keep, email } => {
            runtime()?.block_on(demo::run(demo::DemoOptions { nodes, keep, email }))?;
        }
        Command::Bench { nodes, concurrency, seconds, logins, new_users, batches, batch_keys } => {
            let options = bench::BenchOptions {
                nodes,
                concurrency: concurrency.max(1),
                duration: Duration::from_secs(seconds),
                logins,
                new_users,
                batches,
                batch_keys,
            };
            runtime()?.block_on(bench::run(options))?;
        }
        Command::Lookup { verifier, verifier_id, network, json } => {
            runtime()?.block_on(client_commands::lookup(&network, &verifier, &verifier_id, json))?;
        }
        Command::Login { verifier, verifier_id, token, network, json, show_private_key, evidence, evidence_file } => {
            let token = match (token.id_token, token.id_token_file, token.dev_email, token.sub_token) {
                (Some(token), _, _, _) => TokenSource::Token(token),
                (_, Some(path), _, _) => TokenSource::File(path),
                (_, _, Some(email), _) => TokenSource::DevEmail(email),
                (None, None, None, subs) if !subs.is_empty() => TokenSource::SubTokens(
                    subs.iter()
                        .map(|pair| split_pair(pair, "--sub-token").map(|(name, path)| (name, PathBuf::from(path))))
                        .collect::<Result<_, _>>()?,
                ),
                _ => {
                    return Err(CommandError::Usage("give --id-token, --id-token-file, --dev-email or --sub-token"));
                }
            };
            let mut pairs: Vec<(String, String)> =
                evidence.iter().map(|pair| split_pair(pair, "--evidence")).collect::<Result<_, _>>()?;
            for pair in &evidence_file {
                let (name, path) = split_pair(&pair.to_string_lossy(), "--evidence-file")?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| CommandError::Read { path: PathBuf::from(&path), source })?;
                pairs.push((name, text));
            }
            let request =
                LoginRequest { network, verifier, verifier_id, token, json, show_private_key, evidence: pairs };
            runtime()?.block_on(client_commands::login(request))?;
        }
        Command::DevToken { email, network, issuer, audience, ttl_secs } => {
            let endpoint = match issuer {
                Some(issuer) => format!("{}/dev/token", issuer.trim_end_matches('/')),
                None => client_commands::dev_token_endpoint(
                    &network.unwrap_or_else(|| PathBuf::from("devnet").join(NETWORK_JSON)),
                )?,
            };
            let request = MintRequest { audience, ttl_secs, ..MintRequest::for_email(email) };
            let minted = runtime()?.block_on(request_token(&endpoint, &request)).map_err(CommandError::DevIssuer)?;
            println!("{}", minted.id_token);
        }
        Command::Verifier(command) => verifier_command(command)?,
        Command::Inspect(Inspect::TokenCommitment { id_token }) => {
            let token = match id_token {
                Some(token) => token,
                None => client_commands::read_token(std::io::stdin())?,
            };
            let canonical = quorumkey_verifier::canonical_spelling(&token);
            if canonical != token {
                eprintln!(
                    "note: nodes accept this token only in another spelling (canonical base64url, an ES256 signature with a low s); this is the commitment of that spelling, which the quorumkey client sends"
                );
            }
            println!("{}", token_commitment_hex(&canonical));
        }
        Command::Inspect(Inspect::Address(args)) => {
            let key = match (&args.public_key, &args.pub_key_x, &args.pub_key_y) {
                (Some(sec1), _, _) => public_key_from_hex("--public-key", sec1),
                (None, Some(x), Some(y)) => public_key_from_xy_hex(x, y),
                _ => return Err(CommandError::Usage("give --public-key, or both --pub-key-x and --pub-key-y")),
            }?;
            let (x, y) = public_key_to_xy_hex(&key);
            println!("address    {}", eth_address(&key));
            println!("pub_key_X  {x}");
            println!("pub_key_Y  {y}");
        }
    }
    Ok(())
}

fn init_logging() {
    use std::io::IsTerminal;
    // The consensus stack logs every storage restore at info; keep a node's
    // log about the node unless RUST_LOG asks for more.
    const DEFAULT_FILTER: &str = "info,commonware_consensus=warn,commonware_storage=warn,commonware_p2p=warn,\
                                  commonware_broadcast=warn,commonware_resolver=warn,commonware_runtime=warn";
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// A new multi-threaded async runtime for one command.
/// `NAME=VALUE` as given to `flag`.
fn split_pair(pair: &str, flag: &'static str) -> Result<(String, String), CommandError> {
    match pair.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(CommandError::Script(format!("{flag} takes NAME=VALUE, not {pair:?}"))),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CommandError> {
    tokio::runtime::Runtime::new().map_err(CommandError::Runtime)
}

impl From<NodeTarget> for registry_commands::NodeTarget {
    fn from(NodeTarget { node, network }: NodeTarget) -> Self {
        Self { node, network }
    }
}

fn verifier_command(command: VerifierCommand) -> Result<(), CommandError> {
    use quorumkey_client::registry::VerifierChange;
    use registry_commands::{list, new_owner_key, register, update};
    let enabled = |enabled| VerifierChange { config: None, enabled: Some(enabled) };
    match command {
        VerifierCommand::OwnerKey { out } => new_owner_key(&out),
        VerifierCommand::Register { name, config, owner_key, script, target } => {
            runtime()?.block_on(register(&target.into(), &name, &config, &owner_key, script.as_deref()))
        }
        VerifierCommand::Update { name, config, owner_key, script, target } => {
            let target = target.into();
            let runtime = runtime()?;
            let config = runtime.block_on(registry_commands::config_with_script(
                &target,
                registry_commands::read_config_file(&config)?,
                script.as_deref(),
                &owner_key,
            ))?;
            let change = VerifierChange { config: Some(config), enabled: None };
            runtime.block_on(update(&target, &name, &change, &owner_key, "updated"))
        }
        VerifierCommand::Disable { name, owner_key, target } => {
            runtime()?.block_on(update(&target.into(), &name, &enabled(false), &owner_key, "disabled"))
        }
        VerifierCommand::Enable { name, owner_key, target } => {
            runtime()?.block_on(update(&target.into(), &name, &enabled(true), &owner_key, "enabled"))
        }
        VerifierCommand::List { json, target } => runtime()?.block_on(list(&target.into(), json)),
        VerifierCommand::PublishScript { module, owner_key, target } => {
            let id = runtime()?.block_on(registry_commands::publish_script(&target.into(), &module, &owner_key))?;
            println!(
                "name it as \"module\": \"{}\" in a script verifier's configuration (or register with --script): docs/verifiers.md",
                hex::encode(id)
            );
            Ok(())
        }
        VerifierCommand::TestScript { module, input, fuel, memory_pages } => quorumkey::script_commands::test_script(
            &module,
            &input,
            quorumkey_script::ScriptBudget { fuel, memory_pages },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
