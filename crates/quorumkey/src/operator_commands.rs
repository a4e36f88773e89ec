//! What operators run: `quorumkey network init` (a new network's
//! configuration and keys) and `quorumkey network policy ...`: the
//! operators change the network's abuse policy (`quorumkey_ledger::NetworkPolicy`) by a
//! `SetPolicy` transaction that at least 2f + 1 of them sign with their
//! nodes' consensus keys. Each operator signs on its own host
//! (`sign`: offline, from its `node.toml`); anyone then gathers the
//! signatures and submits them to a node (`submit`), which answers once
//! the block is finalized, with the ledger's rejection if any.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use commonware_codec::Encode;
use commonware_cryptography::{Signer as _, ed25519};
use quorumkey_ledger::{NetworkPolicy, SignedTransaction, TransactionBody};

use quorumkey_client::node_api_client::NodeApiClient;
use quorumkey_login::node_api::PolicyResponse;
use quorumkey_node::addresses::{ListenOverrides, RpcUrl};
use quorumkey_node::config::{
    InitOptions, NETWORK_FILE, NODE_CONFIG_FILE, NetworkFile, NodeConfig, RpcSettings, init_network,
    load_genesis_verifiers, load_policy_file,
};
use quorumkey_node::enrollment::{
    ENROLLMENT_FILE, Enrollment, GenesisParts, KeygenOptions, NodeOrder, keygen, network_from_enrollments,
};
use quorumkey_node::identity::NodeIdentity;

use crate::error::CommandError;

/// `network init`'s options beyond the node count and directory.
#[derive(Debug, Default)]
pub struct InitFlags {
    /// Node i listens for peers on this + i.
    pub p2p_base_port: u16,
    /// Node i serves clients on this + i.
    pub rpc_base_port: u16,
    /// The KeyAssign signer's public key, hex.
    pub key_assign_signer: Option<String>,
    /// Take unsigned KeyAssign requests.
    pub allow_unsigned_key_assign: bool,
    /// The abuse policy file.
    pub policy: Option<PathBuf>,
}

/// `network init`: writes the configuration of a network of `nodes` to
/// `out` and prints where everything is.
pub fn network_init(nodes: u16, out: &Path, flags: InitFlags) -> Result<(), CommandError> {
    let policy = match &flags.policy {
        Some(path) => load_policy_file(path)?,
        None => Default::default(),
    };
    let options = InitOptions {
        nodes,
        p2p_base_port: flags.p2p_base_port,
        rpc_base_port: flags.rpc_base_port,
        verifiers: Vec::new(),
        dkg: Default::default(),
        policy,
        rpc: RpcSettings {
            key_assign_signer: flags.key_assign_signer,
            allow_unsigned_key_assign: flags.allow_unsigned_key_assign,
            ..Default::default()
        },
        providers: Default::default(),
        http: Default::default(),
    };
    let network = init_network(out, &options)?;
    let genesis = network.genesis().map_err(CommandError::Genesis)?;
    println!("network id  {}", hex::encode(genesis.network_id()));
    println!("nodes       {} (threshold {})", genesis.node_count(), genesis.threshold());
    println!("network     {}", out.join(NETWORK_FILE).display());
    for node in &network.nodes {
        println!(
            "node {:<3}    {}  p2p {}  rpc {}",
            node.index,
            out.join(format!("node-{}", node.index)).join(NODE_CONFIG_FILE).display(),
            node.p2p_address,
            node.rpc_url
        );
    }
    Ok(())
}

/// What a node advertises and where it binds, as `node keygen` is told.
#[derive(Clone, Debug)]
pub struct KeygenAddresses {
    /// What peers dial.
    pub p2p_address: SocketAddr,
    /// What clients call.
    pub rpc_url: RpcUrl,
    /// Where it binds, if elsewhere.
    pub listen: ListenOverrides,
}

/// Whose KeyAssign authorization a new node requires.
#[derive(Clone, Debug)]
pub struct KeyAssignSigner {
    /// The signer's key (hex).
    pub key_assign_signer: Option<String>,
    /// None required (development).
    pub allow_unsigned_key_assign: bool,
}

/// `node keygen`: a new node's keys and node.toml in `out`; prints (and
/// writes) its enrollment.
pub fn node_keygen(out: &Path, addresses: &KeygenAddresses, signer: KeyAssignSigner) -> Result<(), CommandError> {
    let options = KeygenOptions {
        listen: addresses.listen,
        rpc: RpcSettings {
            key_assign_signer: signer.key_assign_signer,
            allow_unsigned_key_assign: signer.allow_unsigned_key_assign,
            ..Default::default()
        },
        ..Default::default()
    };
    let enrollment = keygen(out, addresses.p2p_address, &addresses.rpc_url, &options)?;
    println!("# {} (send this file, and nothing else from {})", out.join(ENROLLMENT_FILE).display(), out.display());
    print!("{}", toml::to_string_pretty(&enrollment)?);
    println!(
        "# then put the network's network.toml in {} and run: quorumkey node run --config {}",
        out.display(),
        out.join(NODE_CONFIG_FILE).display()
    );
    Ok(())
}

/// `network genesis`: network.toml from the nodes' enrollments, numbered by
/// consensus key; prints the network id.
pub fn network_genesis(
    enrollment_files: &[PathBuf],
    out: &Path,
    policy: Option<&Path>,
    verifiers: Option<&Path>,
) -> Result<(), CommandError> {
    let enrollments = enrollment_files.iter().map(|path| Enrollment::load(path)).collect::<Result<Vec<_>, _>>()?;
    let policy = match policy {
        Some(path) => load_policy_file(path)?,
        None => Default::default(),
    };
    let verifiers = match verifiers {
        Some(path) => load_genesis_verifiers(path)?,
        None => Vec::new(),
    };
    let parts = GenesisParts { policy, verifiers, ..Default::default() };
    let network = network_from_enrollments(&enrollments, NodeOrder::ByConsensusKey, parts)?;
    let genesis = network.genesis().map_err(CommandError::Genesis)?;
    write_new_file(out, &toml::to_string_pretty(&network)?)?;
    println!("network id  {}  (every operator must see the same)", hex::encode(genesis.network_id()));
    println!("nodes       {} (threshold {})", genesis.node_count(), genesis.threshold());
    for node in &network.nodes {
        println!(
            "node {:<3}    consensus key {}  p2p {}  rpc {}",
            node.index, node.consensus_key, node.p2p_address, node.rpc_url
        );
    }
    println!("written     {}", out.display());
    Ok(())
}

/// Prints the policy in force as `quorumkey network policy` takes it.
pub fn print_policy(answer: &PolicyResponse) -> Result<(), CommandError> {
    println!("# policy nonce {}", answer.nonce);
    print!("{}", toml::to_string_pretty(&answer.policy)?);
    Ok(())
}

/// Reads and checks a policy file.
pub fn load_policy(path: &Path) -> Result<NetworkPolicy, CommandError> {
    load_policy_file(path)?.policy().map_err(|reason| CommandError::Policy { path: path.to_owned(), reason })
}

/// This operator's signature on the change to `policy` with `nonce`,
/// written `index:hex`, from the node whose configuration is `node_config`.
pub fn sign(node_config: &Path, policy: NetworkPolicy, nonce: u64) -> Result<String, CommandError> {
    let config = NodeConfig::load(node_config)?;
    let network = NetworkFile::load(&config.network_file)?;
    let genesis = network.genesis().map_err(CommandError::Genesis)?;
    let identity = NodeIdentity::load(&config.key_dir)?;
    // node.toml names its index, or (made by `node keygen`) the node is the
    // one with its keys.
    let consensus_key = hex::encode(identity.consensus.public_key().as_ref());
    let index = match config.index {
        Some(index) => index,
        None => network
            .nodes
            .iter()
            .find(|node| node.consensus_key == consensus_key)
            .map(|node| node.index)
            .ok_or_else(|| CommandError::NotEnrolled(config.network_file.clone()))?,
    };
    let body = TransactionBody::SetPolicy { policy, nonce };
    let signature = SignedTransaction::operator_signature(&genesis.network_id(), &body, &identity.consensus);
    Ok(format!("{index}:{}", hex::encode(signature.encode())))
}

/// Parses `index:hex` signatures.
pub(crate) fn parse_signatures(signatures: &[String]) -> Result<Vec<(u16, ed25519::Signature)>, CommandError> {
    use commonware_codec::DecodeExt as _;
    signatures
        .iter()
        .map(|text| {
            let bad = |reason: String| CommandError::Signature { text: text.clone(), reason };
            let (index, signature) = text.split_once(':').ok_or_else(|| bad(" is not INDEX:HEX".to_owned()))?;
            let index: u16 = index.parse().map_err(|_| bad(format!(": {index:?} is not a node index")))?;
            let bytes = hex::decode(signature).map_err(|_| bad(" is not hex".to_owned()))?;
            let signature = ed25519::Signature::decode(bytes::Bytes::from(bytes))
                .map_err(|e| bad(format!(" is not an ed25519 signature: {e}")))?;
            Ok((index, signature))
        })
        .collect()
}

/// Submits the change to `policy` with `nonce` and the operators'
/// `signatures` to the node behind `client`; returns the policy in force
/// once the block is finalized.
pub async fn submit(
    client: &NodeApiClient,
    policy: NetworkPolicy,
    nonce: u64,
    signatures: &[String],
) -> Result<PolicyResponse, CommandError> {
    let signatures = parse_signatures(signatures)?;
    let current = client.policy().await?;
    if nonce != current.nonce + 1 {
        return Err(CommandError::PolicyNonce { current: current.nonce, got: nonce });
    }
    let transaction = SignedTransaction::from_operators(TransactionBody::SetPolicy { policy, nonce }, signatures);
    let answer = client.submit(&transaction.encode(), true).await?;
    match answer.status.as_str() {
        "finalized" | "already_finalized" => Ok(client.policy().await?),
        "rejected" => {
            Err(CommandError::PolicyRejected(answer.rejection.unwrap_or_else(|| "no reason given".to_owned())))
        }
        other => Err(CommandError::PolicyNotFinalized(other.to_owned())),
    }
}

/// Writes `text` to a new file `path`: created, never overwritten (a file
/// that appeared meanwhile included).
pub(crate) fn write_new_file(path: &Path, text: &str) -> Result<(), CommandError> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            CommandError::Exists(path.to_owned())
        } else {
            CommandError::Write { path: path.to_owned(), source }
        }
    })?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .map_err(|source| CommandError::Write { path: path.to_owned(), source })
}
