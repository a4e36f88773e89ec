//! What `quorumkey verifier ...` does against a running network: register,
//! update, enable or disable a verifier with its owner's key, and list the
//! registry. Each change is checked locally first (a configuration that
//! would be refused is refused here, with the same message), submitted to
//! one node, and confirmed by reading the registry back once finalized.

use commonware_codec::Encode;
use quorumkey_crypto::group::{Point, point_to_bytes};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_ledger::{SignedTransaction, TransactionBody, VerifierName};
use quorumkey_login::node_api::{MAX_VERIFIERS_PER_PAGE, VerifierInfo};
use quorumkey_verifier::VerifierConfig;
use thiserror::Error;

use crate::node_api_client::{ApiClientError, NodeApiClient};

/// Why a registry command failed.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// The node could not be asked, or answered with an error.
    #[error(transparent)]
    Api(#[from] ApiClientError),
    /// The verifier's name is not one the ledger takes.
    #[error("verifier name: {0}")]
    Name(&'static str),
    /// The configuration would be refused by the ledger (the same check,
    /// so the same message).
    #[error(transparent)]
    Config(#[from] quorumkey_verifier::ConfigError),
    /// The node's status carries no usable network id.
    #[error("the node's network id is {0}")]
    NetworkId(&'static str),
    /// The name is taken.
    #[error("verifier {name} is already registered (owner {owner})")]
    AlreadyRegistered {
        /// The verifier.
        name: String,
        /// Its owner's key, hex.
        owner: String,
    },
    /// Another owner registered the name first.
    #[error("verifier {name} was registered first by another owner ({owner})")]
    TakenMeanwhile {
        /// The verifier.
        name: String,
        /// Its owner's key, hex.
        owner: String,
    },
    /// No verifier has the name.
    #[error("verifier {0} is not registered")]
    NotRegistered(String),
    /// The key is not the verifier's owner.
    #[error("this key does not own verifier {name} (its owner is {owner})")]
    NotOwner {
        /// The verifier.
        name: String,
        /// Its owner's key, hex.
        owner: String,
    },
    /// The node's answer lacked the current configuration.
    #[error("the node did not show the current configuration")]
    NoConfig,
    /// The ledger rejected the transaction in its block.
    #[error("the network rejected the transaction: {0}")]
    Rejected(String),
    /// Not finalized within the node's wait.
    #[error("the transaction was not finalized in time (status {0}); check again with `verifier list`")]
    NotFinalized(String),
    /// Finalized, but the registry does not show the change.
    #[error("the network refused to register {0} (see the node's log)")]
    RegistrationRefused(String),
    /// Finalized, but the registry does not show the update.
    #[error("the network refused the update of {0} (another update may have come first; retry)")]
    UpdateRefused(String),
}

/// The owner key as the ledger names it (compressed SEC1).
fn owner_bytes(owner: &SigningKey) -> [u8; 33] {
    point_to_bytes(&Point::from(*owner.verifying_key().as_affine()))
}

/// The change an update makes.
#[derive(Clone, Debug, Default)]
pub struct VerifierChange {
    /// A new configuration (JSON), or keep the current one.
    pub config: Option<Vec<u8>>,
    /// Enable or disable, or keep as is.
    pub enabled: Option<bool>,
}

async fn network_id(client: &NodeApiClient) -> Result<[u8; 32], RegistryError> {
    let status = client.status().await?;
    let bytes = hex::decode(&status.network_id).map_err(|_| RegistryError::NetworkId("not hex"))?;
    bytes.try_into().map_err(|_| RegistryError::NetworkId("not 32 bytes"))
}

async fn submit(client: &NodeApiClient, transaction: SignedTransaction) -> Result<(), RegistryError> {
    let answer = client.submit(&transaction.encode(), true).await?;
    match answer.status.as_str() {
        "finalized" | "already_finalized" => Ok(()),
        "rejected" => Err(RegistryError::Rejected(answer.rejection.unwrap_or_else(|| "no reason given".to_owned()))),
        other => Err(RegistryError::NotFinalized(other.to_owned())),
    }
}

/// The configuration as given, if the ledger would accept it (the same
/// check, so the same message).
fn check_config(bytes: &[u8]) -> Result<Vec<u8>, RegistryError> {
    VerifierConfig::parse(bytes)?;
    Ok(bytes.to_vec())
}

/// Registers `name` with `config` (JSON), owned by `owner`.
pub async fn register(
    client: &NodeApiClient,
    name: &str,
    config: &[u8],
    owner: &SigningKey,
) -> Result<VerifierInfo, RegistryError> {
    let verifier = VerifierName::new(name).map_err(RegistryError::Name)?;
    let config = check_config(config)?;
    if let Some(existing) = client.verifier(name).await? {
        return Err(RegistryError::AlreadyRegistered { name: name.to_owned(), owner: existing.owner });
    }
    let body = TransactionBody::RegisterVerifier { name: verifier, owner: owner_bytes(owner), config: config.into() };
    submit(client, SignedTransaction::sign_as_owner(&network_id(client).await?, body, owner)).await?;
    match client.verifier(name).await? {
        Some(info) if info.owner == hex::encode(owner_bytes(owner)) => Ok(info),
        Some(info) => Err(RegistryError::TakenMeanwhile { name: name.to_owned(), owner: info.owner }),
        None => Err(RegistryError::RegistrationRefused(name.to_owned())),
    }
}

/// Publishes a verifier script's module, signed by `owner` (the ledger
/// validates it, and refuses it with the reason if it is not a script);
/// returns its id (sha-256), which a script verifier's configuration names.
/// Publishing a module already published changes nothing.
pub async fn publish_script(
    client: &NodeApiClient,
    module: &[u8],
    owner: &SigningKey,
) -> Result<[u8; 32], RegistryError> {
    let body = TransactionBody::PublishScript { owner: owner_bytes(owner), module: module.to_vec().into() };
    submit(client, SignedTransaction::sign_as_owner(&network_id(client).await?, body, owner)).await?;
    let mut hasher = sha2::Sha256::default();
    sha2::Digest::update(&mut hasher, module);
    Ok(sha2::Digest::finalize(hasher).into())
}

/// Updates `name` as `change` says, signed by `owner`.
pub async fn update(
    client: &NodeApiClient,
    name: &str,
    change: &VerifierChange,
    owner: &SigningKey,
) -> Result<VerifierInfo, RegistryError> {
    let verifier = VerifierName::new(name).map_err(RegistryError::Name)?;
    let Some(current) = client.verifier(name).await? else {
        return Err(RegistryError::NotRegistered(name.to_owned()));
    };
    if current.owner != hex::encode(owner_bytes(owner)) {
        return Err(RegistryError::NotOwner { name: name.to_owned(), owner: current.owner });
    }
    let config = match &change.config {
        Some(bytes) => check_config(bytes)?,
        None => {
            let value = current.config.clone().ok_or(RegistryError::NoConfig)?;
            serde_json::to_vec(&value).map_err(|_| RegistryError::NoConfig)?
        }
    };
    let nonce = current.nonce + 1;
    let enabled = change.enabled.unwrap_or(current.enabled);
    let body = TransactionBody::UpdateVerifier { name: verifier, nonce, config: config.into(), enabled };
    submit(client, SignedTransaction::sign_as_owner(&network_id(client).await?, body, owner)).await?;
    match client.verifier(name).await? {
        Some(info) if info.nonce >= nonce => Ok(info),
        _ => Err(RegistryError::UpdateRefused(name.to_owned())),
    }
}

/// Every registered verifier, in registration order.
pub async fn list(client: &NodeApiClient) -> Result<Vec<VerifierInfo>, RegistryError> {
    let mut all = Vec::new();
    loop {
        let page = client.verifiers(all.len() as u64, MAX_VERIFIERS_PER_PAGE).await?;
        let done = page.verifiers.is_empty() || all.len() as u64 + page.verifiers.len() as u64 >= page.total;
        all.extend(page.verifiers);
        if done {
            return Ok(all);
        }
    }
}
