//! What `quorumkey network policy ...` does: the operators change the
//! network's abuse policy (`quorumkey_ledger::NetworkPolicy`) by a
//! `SetPolicy` transaction that at least 2f + 1 of them sign with their
//! nodes' consensus keys. Each operator signs on its own host
//! (`sign`: offline, from its `node.toml`); anyone then gathers the
//! signatures and submits them to a node (`submit`), which answers once
//! the block is finalized, with the ledger's rejection if any.

use std::path::Path;

use commonware_codec::Encode;
use commonware_cryptography::ed25519;
use quorumkey_ledger::{NetworkPolicy, SignedTransaction, TransactionBody};

use quorumkey_client::node_api_client::NodeApiClient;
use quorumkey_login::node_api::PolicyResponse;
use quorumkey_node::config::{NetworkFile, NodeConfig, load_policy_file};
use quorumkey_node::identity::NodeIdentity;

/// Reads and checks a policy file.
pub fn load_policy(path: &Path) -> Result<NetworkPolicy, String> {
    load_policy_file(path).map_err(|e| e.to_string())?.policy().map_err(|e| format!("{}: {e}", path.display()))
}

/// This operator's signature on the change to `policy` with `nonce`,
/// written `index:hex`, from the node whose configuration is `node_config`.
pub fn sign(node_config: &Path, policy: NetworkPolicy, nonce: u64) -> Result<String, String> {
    let config = NodeConfig::load(node_config).map_err(|e| e.to_string())?;
    let network = NetworkFile::load(&config.network_file).map_err(|e| e.to_string())?;
    let genesis = network.genesis()?;
    let identity = NodeIdentity::load(&config.key_dir).map_err(|e| e.to_string())?;
    let body = TransactionBody::SetPolicy { policy, nonce };
    let signature = SignedTransaction::operator_signature(&genesis.network_id(), &body, &identity.consensus);
    Ok(format!("{}:{}", config.index, hex::encode(signature.encode())))
}

/// Parses `index:hex` signatures.
fn parse_signatures(signatures: &[String]) -> Result<Vec<(u16, ed25519::Signature)>, String> {
    use commonware_codec::DecodeExt as _;
    signatures
        .iter()
        .map(|text| {
            let (index, signature) =
                text.split_once(':').ok_or_else(|| format!("signature {text:?} is not INDEX:HEX"))?;
            let index: u16 = index.parse().map_err(|_| format!("signature {text:?}: {index:?} is not a node index"))?;
            let bytes = hex::decode(signature).map_err(|_| format!("signature {text:?} is not hex"))?;
            let signature = ed25519::Signature::decode(bytes::Bytes::from(bytes))
                .map_err(|e| format!("signature {text:?} is not an ed25519 signature: {e}"))?;
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
) -> Result<PolicyResponse, String> {
    let signatures = parse_signatures(signatures)?;
    let current = client.policy().await.map_err(|e| e.to_string())?;
    if nonce != current.nonce + 1 {
        return Err(format!(
            "the policy in force has nonce {}, so a change must carry nonce {} (this one has {nonce}); sign again",
            current.nonce,
            current.nonce + 1
        ));
    }
    let transaction = SignedTransaction::from_operators(TransactionBody::SetPolicy { policy, nonce }, signatures);
    let answer = client.submit(&transaction.encode(), true).await.map_err(|e| e.to_string())?;
    match answer.status.as_str() {
        "finalized" | "already_finalized" => client.policy().await.map_err(|e| e.to_string()),
        "rejected" => Err(format!(
            "the network rejected the policy: {}",
            answer.rejection.as_deref().unwrap_or("no reason given")
        )),
        other => Err(format!(
            "the policy change was not finalized in time (status {other}); check with `quorumkey network policy show`"
        )),
    }
}
