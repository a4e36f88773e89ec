//! What `quorumkey verifier ...` does against a running network: register,
//! update, enable or disable a verifier with its owner's key, and list the
//! registry. Each change is checked locally first (a configuration that
//! would be refused is refused here, with the same message), submitted to
//! one node, and confirmed by reading the registry back once finalized.

use commonware_codec::Encode;
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_ledger::{SignedTransaction, TransactionBody, VerifierName};
use quorumkey_verifier::VerifierConfig;

use crate::api::VerifierInfo;
use crate::api_client::NodeApiClient;
use crate::identity::owner_public_bytes;

/// The change an update makes.
#[derive(Clone, Debug, Default)]
pub struct VerifierChange {
    /// A new configuration (JSON), or keep the current one.
    pub config: Option<Vec<u8>>,
    /// Enable or disable, or keep as is.
    pub enabled: Option<bool>,
}

async fn network_id(client: &NodeApiClient) -> Result<[u8; 32], String> {
    let status = client.status().await.map_err(|e| e.to_string())?;
    let bytes = hex::decode(&status.network_id).map_err(|e| format!("the node's network id is not hex: {e}"))?;
    bytes.try_into().map_err(|_| "the node's network id is not 32 bytes".to_owned())
}

async fn submit(client: &NodeApiClient, transaction: SignedTransaction) -> Result<(), String> {
    let answer = client.submit(&transaction.encode(), true).await.map_err(|e| e.to_string())?;
    match answer.status.as_str() {
        "finalized" | "already_finalized" => Ok(()),
        "rejected" => Err(format!(
            "the network rejected the transaction: {}",
            answer.rejection.as_deref().unwrap_or("no reason given")
        )),
        other => {
            Err(format!("the transaction was not finalized in time (status {other}); check again with `verifier list`"))
        }
    }
}

/// The configuration as given, if the ledger would accept it (the same
/// check, so the same message).
fn check_config(bytes: &[u8]) -> Result<Vec<u8>, String> {
    VerifierConfig::parse(bytes).map_err(|e| e.to_string())?;
    Ok(bytes.to_vec())
}

/// Registers `name` with `config` (JSON), owned by `owner`.
pub async fn register(
    client: &NodeApiClient,
    name: &str,
    config: &[u8],
    owner: &SigningKey,
) -> Result<VerifierInfo, String> {
    let verifier = VerifierName::new(name).map_err(|e| format!("verifier name: {e}"))?;
    let config = check_config(config)?;
    if let Some(existing) = client.verifier(name).await.map_err(|e| e.to_string())? {
        return Err(format!("verifier {name} is already registered (owner {})", existing.owner));
    }
    let body =
        TransactionBody::RegisterVerifier { name: verifier, owner: owner_public_bytes(owner), config: config.into() };
    submit(client, SignedTransaction::sign_as_owner(&network_id(client).await?, body, owner)).await?;
    match client.verifier(name).await.map_err(|e| e.to_string())? {
        Some(info) if info.owner == hex::encode(owner_public_bytes(owner)) => Ok(info),
        Some(info) => Err(format!("verifier {name} was registered first by another owner ({})", info.owner)),
        None => Err(format!("the network refused to register {name} (see the node's log)")),
    }
}

/// Updates `name` as `change` says, signed by `owner`.
pub async fn update(
    client: &NodeApiClient,
    name: &str,
    change: &VerifierChange,
    owner: &SigningKey,
) -> Result<VerifierInfo, String> {
    let verifier = VerifierName::new(name).map_err(|e| format!("verifier name: {e}"))?;
    let Some(current) = client.verifier(name).await.map_err(|e| e.to_string())? else {
        return Err(format!("verifier {name} is not registered"));
    };
    if current.owner != hex::encode(owner_public_bytes(owner)) {
        return Err(format!("this key does not own verifier {name} (its owner is {})", current.owner));
    }
    let config = match &change.config {
        Some(bytes) => check_config(bytes)?,
        None => {
            let value = current.config.clone().ok_or("the node did not show the current configuration")?;
            serde_json::to_vec(&value).map_err(|e| e.to_string())?
        }
    };
    let nonce = current.nonce + 1;
    let enabled = change.enabled.unwrap_or(current.enabled);
    let body = TransactionBody::UpdateVerifier { name: verifier, nonce, config: config.into(), enabled };
    submit(client, SignedTransaction::sign_as_owner(&network_id(client).await?, body, owner)).await?;
    match client.verifier(name).await.map_err(|e| e.to_string())? {
        Some(info) if info.nonce >= nonce => Ok(info),
        _ => Err(format!("the network refused the update of {name} (another update may have come first; retry)")),
    }
}

/// Every registered verifier, in registration order.
pub async fn list(client: &NodeApiClient) -> Result<Vec<VerifierInfo>, String> {
    let mut all = Vec::new();
    loop {
        let page =
            client.verifiers(all.len() as u64, crate::api::MAX_VERIFIERS_PER_PAGE).await.map_err(|e| e.to_string())?;
        let done = page.verifiers.is_empty() || all.len() as u64 + page.verifiers.len() as u64 >= page.total;
        all.extend(page.verifiers);
        if done {
            return Ok(all);
        }
    }
}
