//! A typed client of a node's `/v1` HTTP API
//! ([`quorumkey_login::node_api`]), for the CLI, the devnet supervisor,
//! tests and benchmarks.

use std::time::Duration;

use serde::de::DeserializeOwned;
use thiserror::Error;

use quorumkey_login::node_api::{
    AssignmentResponse, StateRootResponse, StatusResponse, SubmitResponse, VerifierInfo, VerifiersResponse,
};

/// Why a call failed.
#[derive(Debug, Error)]
pub enum ApiClientError {
    /// The node could not be reached or did not answer in time.
    #[error("{url}: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The node answered with an error.
    #[error("{url}: HTTP {status}: {message}")]
    Node {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The node's message.
        message: String,
    },
}

impl ApiClientError {
    /// The HTTP status, when the node answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Node { status, .. } => Some(*status),
            Self::Transport { .. } => None,
        }
    }
}

/// TLS that trusts Mozilla's roots as compiled in, whatever the operating
/// system has: the aws-lc-rs provider named here rather than a process-wide
/// default, rustls's safe protocol versions, HTTP/1.1. (The node's provider
/// client builds the same for identity providers, with its test hook for
/// extra roots: `quorumkey_node::provider_http::mozilla_roots_tls`.)
fn mozilla_roots_tls() -> Result<rustls::ClientConfig, rustls::Error> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let mut config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client of one node.
#[derive(Clone, Debug)]
pub struct NodeApiClient {
    base: String,
    http: reqwest::Client,
}

impl NodeApiClient {
    /// A client of the node at `base` (e.g. `http://127.0.0.1:17001`).
    pub fn new(base: impl Into<String>) -> Self {
        let builder =
            || reqwest::Client::builder().timeout(Duration::from_secs(45)).connect_timeout(Duration::from_secs(2));
        // The operating system's roots; on a machine that has none (the
        // verifier refuses to build then, and `unwrap_or_default` would
        // panic), Mozilla's roots compiled in.
        let http = builder()
            .build()
            .or_else(|_| match mozilla_roots_tls() {
                Ok(tls) => builder().tls_backend_preconfigured(tls).build(),
                Err(_) => builder().build(),
            })
            .unwrap_or_default();
        Self { base: base.into().trim_end_matches('/').to_owned(), http }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn answer<T: DeserializeOwned>(
        url: String,
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, ApiClientError> {
        let response = sent.map_err(|source| ApiClientError::Transport { url: url.clone(), source })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|value| value.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or(body);
            return Err(ApiClientError::Node { url, status: status.as_u16(), message });
        }
        response.json().await.map_err(|source| ApiClientError::Transport { url, source })
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<StatusResponse, ApiClientError> {
        let url = format!("{}/v1/status", self.base);
        Self::answer(url.clone(), self.http.get(&url).send().await).await
    }

    /// `GET /v1/state-roots/{height}`.
    pub async fn state_root(&self, height: u64) -> Result<StateRootResponse, ApiClientError> {
        let url = format!("{}/v1/state-roots/{height}", self.base);
        Self::answer(url.clone(), self.http.get(&url).send().await).await
    }

    /// `GET /v1/assignment`; `None` when nothing is assigned.
    pub async fn assignment(
        &self,
        verifier: &str,
        verifier_id: &str,
    ) -> Result<Option<AssignmentResponse>, ApiClientError> {
        let url = format!("{}/v1/assignment", self.base);
        let sent = self.http.get(&url).query(&[("verifier", verifier), ("verifier_id", verifier_id)]).send().await;
        match Self::answer(url, sent).await {
            Ok(answer) => Ok(Some(answer)),
            Err(error) if error.status() == Some(404) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `GET /v1/verifiers` (one page).
    pub async fn verifiers(&self, offset: u64, limit: u64) -> Result<VerifiersResponse, ApiClientError> {
        let url = format!("{}/v1/verifiers", self.base);
        let sent = self.http.get(&url).query(&[("offset", offset), ("limit", limit)]).send().await;
        Self::answer(url, sent).await
    }

    /// `GET /v1/verifiers/{name}`; `None` when it is not registered.
    pub async fn verifier(&self, name: &str) -> Result<Option<VerifierInfo>, ApiClientError> {
        let url = format!("{}/v1/verifiers/{name}", self.base);
        match Self::answer(url.clone(), self.http.get(&url).send().await).await {
            Ok(answer) => Ok(Some(answer)),
            Err(error) if error.status() == Some(404) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `GET /v1/epoch`: the node set in force and the handover under way.
    pub async fn epoch(&self) -> Result<quorumkey_login::node_api::EpochResponse, ApiClientError> {
        let url = format!("{}/v1/epoch", self.base);
        Self::answer(url.clone(), self.http.get(&url).send().await).await
    }

    /// `GET /v1/policy`.
    pub async fn policy(&self) -> Result<quorumkey_login::node_api::PolicyResponse, ApiClientError> {
        let url = format!("{}/v1/policy", self.base);
        Self::answer(url.clone(), self.http.get(&url).send().await).await
    }

    /// `POST /v1/transactions`; with `wait`, answers once it is finalized.
    pub async fn submit(&self, transaction: &[u8], wait: bool) -> Result<SubmitResponse, ApiClientError> {
        let url = format!("{}/v1/transactions", self.base);
        let body = serde_json::json!({ "transaction": hex::encode(transaction), "wait": wait });
        Self::answer(url.clone(), self.http.post(&url).json(&body).send().await).await
    }
}
