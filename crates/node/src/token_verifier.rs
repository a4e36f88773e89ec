//! Checks a login's token against its verifier's configuration: the pure
//! checks of `quorumkey-verifier` with the keys this node fetched and
//! cached ([`JwksCache`]) and the node's clock.

use std::sync::Arc;

use quorumkey_verifier::{JwtConfig, KeySet, KeySource, TokenError, VerifiedToken, token_header, verify_jwt};

use crate::jwks_cache::{JwksCache, JwksFetchError, KeyNeed};

/// Why a token was not accepted.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The token itself fails a check.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The verifier's keys could not be had.
    #[error(transparent)]
    Keys(#[from] JwksFetchError),
    /// Inline keys in a registered configuration that no longer parse
    /// (cannot happen for configurations the ledger accepted).
    #[error("the verifier's inline keys are unusable: {0}")]
    InlineKeys(String),
}

/// Token checks with cached keys.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    jwks: Arc<JwksCache>,
}

impl TokenVerifier {
    /// A verifier that gets keys through `jwks`.
    pub fn new(jwks: Arc<JwksCache>) -> Self {
        Self { jwks }
    }

    /// The key cache.
    pub fn jwks(&self) -> &JwksCache {
        &self.jwks
    }

    /// Checks a JWT at Unix time `now`: its keys come from the
    /// configuration or the cache (an unknown `kid` refetches once,
    /// throttled).
    pub async fn verify_jwt(&self, config: &JwtConfig, token: &str, now: u64) -> Result<VerifiedToken, VerifyError> {
        // Shape, size and algorithm first: nothing is fetched for a token
        // that cannot pass anyway.
        let header = token_header(token)?;
        header.algorithm()?;
        match &config.keys {
            KeySource::Jwks(document) => {
                let bytes = serde_json::to_vec(document).map_err(|e| VerifyError::InlineKeys(e.to_string()))?;
                let keys = KeySet::from_jwks(&bytes).map_err(|e| VerifyError::InlineKeys(e.to_string()))?;
                Ok(verify_jwt(config, &keys, token, now)?)
            }
            KeySource::JwksUrl(url) => {
                let need = header.kid.as_deref().map_or(KeyNeed::Current, KeyNeed::Kid);
                let keys = self.jwks.keys(url, need).await?;
                Ok(verify_jwt(config, &keys, token, now)?)
            }
        }
    }
}
