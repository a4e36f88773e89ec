//! `quorumkey verifier ...`: the verifier registry from the command line,
//! through one node's `/v1` API ([`quorumkey_client::registry`]), and the
//! owner keys that sign registrations and updates.

use std::path::{Path, PathBuf};

use quorumkey_client::node_api_client::NodeApiClient;
use quorumkey_client::registry::{self, VerifierChange};
use quorumkey_devnet::NETWORK_JSON;
use quorumkey_login::network::NetworkJson;
use quorumkey_login::node_api::VerifierInfo;
use quorumkey_node::identity::{load_owner_key, owner_public_bytes, save_owner_key};

use crate::error::CommandError;

/// Largest verifier configuration file read.
const MAX_CONFIG_FILE: u64 = 16 * 1024;

/// Which node a command talks to: `node` (its API URL), or the first node
/// of `network` (default: `devnet/network.json`).
#[derive(Clone, Debug, Default)]
pub struct NodeTarget {
    /// A node's API URL.
    pub node: Option<String>,
    /// A network.json.
    pub network: Option<PathBuf>,
}

/// Reads and checks a `network.json` (`hint`: what to do if it cannot be
/// read).
pub fn read_network_json(path: &Path, hint: &'static str) -> Result<NetworkJson, CommandError> {
    let text = std::fs::read_to_string(path).map_err(|source| CommandError::ReadNetworkJson {
        path: path.to_owned(),
        source,
        hint,
    })?;
    NetworkJson::parse(&text).map_err(|reason| CommandError::NotNetworkJson { path: path.to_owned(), reason })
}

/// The client of the node `target` names.
pub fn node_client(target: &NodeTarget) -> Result<NodeApiClient, CommandError> {
    if let Some(node) = &target.node {
        return Ok(NodeApiClient::new(node.trim_end_matches('/').to_owned()));
    }
    let path = target.network.clone().unwrap_or_else(|| PathBuf::from("devnet").join(NETWORK_JSON));
    let network = read_network_json(&path, "pass --node URL or --network FILE")?;
    // `parse` checked that the network lists nodes.
    let first = network.nodes.first().ok_or(CommandError::Usage("the network lists no nodes"))?;
    Ok(NodeApiClient::new(first.api.clone()))
}

/// A verifier configuration file, at most 16 KiB.
pub fn read_config_file(path: &Path) -> Result<Vec<u8>, CommandError> {
    use std::io::Read as _;
    let read = |source| CommandError::Read { path: path.to_owned(), source };
    let mut bytes = Vec::new();
    std::fs::File::open(path).map_err(read)?.take(MAX_CONFIG_FILE + 1).read_to_end(&mut bytes).map_err(read)?;
    if bytes.len() as u64 > MAX_CONFIG_FILE {
        return Err(CommandError::ConfigTooLarge { path: path.to_owned() });
    }
    Ok(bytes)
}

/// One verifier, as a line.
pub fn print_verifier(info: &VerifierInfo) {
    let state = if info.enabled { "enabled" } else { "disabled" };
    println!("{:<24} {:<14} {:<9} nonce {:<4} owner {}", info.name, info.kind, state, info.nonce, info.owner);
}

/// `verifier owner-key`: a new owner key in `out` (mode 0600).
pub fn new_owner_key(out: &Path) -> Result<(), CommandError> {
    use quorumkey_crypto::k256::elliptic_curve::Generate;
    let key = quorumkey_crypto::k256::ecdsa::SigningKey::generate_from_rng(&mut quorumkey_crypto::random::os_rng());
    save_owner_key(out, &key)?;
    println!("owner key written to {} (mode 0600)", out.display());
    println!("public key {}", hex::encode(owner_public_bytes(&key)));
    Ok(())
}

/// `config` with `script` (if given) published and named as its
/// `module`: the configuration must then be a script verifier's.
pub async fn config_with_script(
    target: &NodeTarget,
    config: Vec<u8>,
    script: Option<&Path>,
    owner_key: &Path,
) -> Result<Vec<u8>, CommandError> {
    let Some(script) = script else { return Ok(config) };
    let mut value: serde_json::Value = serde_json::from_slice(&config)?;
    if value.get("type").and_then(serde_json::Value::as_str) != Some("script") {
        return Err(CommandError::Script(
            "--script needs a script verifier's configuration (\"type\": \"script\")".to_owned(),
        ));
    }
    let id = publish_script(target, script, owner_key).await?;
    value["module"] = serde_json::Value::String(hex::encode(id));
    Ok(serde_json::to_vec(&value)?)
}

/// `verifier register`.
pub async fn register(
    target: &NodeTarget,
    name: &str,
    config: &Path,
    owner_key: &Path,
    script: Option<&Path>,
) -> Result<(), CommandError> {
    let config = config_with_script(target, read_config_file(config)?, script, owner_key).await?;
    let (client, owner) = (node_client(target)?, load_owner_key(owner_key)?);
    let info = registry::register(&client, name, &config, &owner).await?;
    print!("registered ");
    print_verifier(&info);
    Ok(())
}

/// `verifier publish-script`: checks the module as the ledger will, then
/// publishes it; prints its id.
pub async fn publish_script(target: &NodeTarget, module: &Path, owner_key: &Path) -> Result<[u8; 32], CommandError> {
    let bytes = std::fs::read(module).map_err(|source| CommandError::Read { path: module.to_owned(), source })?;
    quorumkey_script::ScriptModule::validate(&bytes)?;
    let (client, owner) = (node_client(target)?, load_owner_key(owner_key)?);
    let id = registry::publish_script(&client, &bytes, &owner).await?;
    println!("published   module {} ({} bytes)", hex::encode(id), bytes.len());
    Ok(id)
}

/// `verifier update`, `enable` and `disable`: `change`, then the record as
/// the network has it, after `done`.
pub async fn update(
    target: &NodeTarget,
    name: &str,
    change: &VerifierChange,
    owner_key: &Path,
    done: &str,
) -> Result<(), CommandError> {
    let (client, owner) = (node_client(target)?, load_owner_key(owner_key)?);
    let info = registry::update(&client, name, change, &owner).await?;
    print!("{done} ");
    print_verifier(&info);
    Ok(())
}

/// `verifier list`.
pub async fn list(target: &NodeTarget, json: bool) -> Result<(), CommandError> {
    let all = registry::list(&node_client(target)?).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else if all.is_empty() {
        println!("no verifiers registered");
    } else {
        for info in &all {
            print_verifier(info);
        }
    }
    Ok(())
}
