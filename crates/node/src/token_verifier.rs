//! Checks a login's token against its verifier's configuration: the pure
//! checks of `quorumkey-verifier` with the keys this node fetched and
//! cached ([`JwksCache`]) and the node's clock.

use std::sync::Arc;

use quorumkey_verifier::config::SubVerifierConfig;
use quorumkey_verifier::introspection::MAX_ANSWER_LEN;
use quorumkey_verifier::{
    AggregateConfig, AggregateError, IntrospectionConfig, JwtConfig, KeySet, KeySource, TokenError, TokenIdentity,
    VerifiedToken, check_aggregate_agreement, check_aggregate_request, check_introspection, check_opaque_token,
    token_header, verify_jwt,
};

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
    /// The introspection endpoint could not be asked.
    #[error("the verifier's introspection endpoint failed: {0}")]
    Introspection(String),
    /// The introspection endpoint refused the token.
    #[error("the verifier's introspection endpoint refused the token (HTTP {0})")]
    Refused(u16),
    /// An aggregate login breaks the aggregate rule.
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
    /// A sub-verifier's token failed.
    #[error("sub-verifier {sub_verifier}: {error}")]
    SubVerifier {
        /// The sub-verifier.
        sub_verifier: String,
        /// Why its token failed.
        error: Box<VerifyError>,
    },
}

/// What a passing token yields: the user, and until when a record that the
/// token was used must be kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The verifier_id.
    pub verifier_id: String,
    /// When the token was issued (Unix seconds; for an aggregate, the
    /// earliest sub-token's).
    pub issued_at: u64,
    /// Unix seconds after which the token is refused anyway.
    pub expires_at: u64,
    /// What each token is, whatever its spelling (one per sub-token of an
    /// aggregate): the keys of its nullifiers.
    pub identities: Vec<TokenIdentity>,
}

impl From<VerifiedToken> for Identity {
    fn from(token: VerifiedToken) -> Self {
        Self {
            verifier_id: token.verifier_id,
            issued_at: token.issued_at,
            expires_at: token.expires_at,
            identities: vec![token.identity],
        }
    }
}

/// Token checks with cached keys.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    jwks: Arc<JwksCache>,
    http: reqwest::Client,
}

impl TokenVerifier {
    /// A verifier that gets keys through `jwks`.
    pub fn new(jwks: Arc<JwksCache>) -> Self {
        // Building a client without TLS or proxies from the environment
        // does not fail; if it ever did, the default client is as good.
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self { jwks, http }
    }

    /// Checks an opaque token by calling the configured endpoint with it as
    /// a bearer credential (5 s timeout, answer at most 64 KiB, no
    /// redirects), at Unix time `now`.
    pub async fn verify_introspection(
        &self,
        config: &IntrospectionConfig,
        token: &str,
        now: u64,
    ) -> Result<Identity, VerifyError> {
        // One spelling per token, and nothing that could break the header.
        check_opaque_token(token)?;
        let mut response = self
            .http
            .get(&config.url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| VerifyError::Introspection(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(VerifyError::Refused(status.as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|e| VerifyError::Introspection(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_LEN {
                return Err(TokenError::Oversized { len: body.len() + chunk.len(), max: MAX_ANSWER_LEN }.into());
            }
            body.extend_from_slice(&chunk);
        }
        let checked = check_introspection(config, &body, now)?;
        Ok(Identity {
            verifier_id: checked.verifier_id,
            issued_at: checked.issued_at,
            expires_at: checked.expires_at,
            identities: vec![checked.identity],
        })
    }

    /// Checks an aggregate login: `tokens[i]` for sub-verifier
    /// `sub_verifier_ids[i]`; all must pass and name `claimed`.
    pub async fn verify_aggregate(
        &self,
        config: &AggregateConfig,
        claimed: &str,
        sub_verifier_ids: &[String],
        tokens: &[String],
        now: u64,
    ) -> Result<Identity, VerifyError> {
        check_aggregate_request(config, sub_verifier_ids, tokens.len())?;
        let mut yielded = Vec::with_capacity(tokens.len());
        let mut expires_at = u64::MAX;
        let mut issued_at = u64::MAX;
        let mut identities = Vec::with_capacity(tokens.len());
        for (name, token) in sub_verifier_ids.iter().zip(tokens) {
            let wrap =
                |error: VerifyError| VerifyError::SubVerifier { sub_verifier: name.clone(), error: Box::new(error) };
            let identity = match config.sub_verifiers.get(name) {
                Some(SubVerifierConfig::Jwt(jwt)) => {
                    self.verify_jwt(jwt, token, now).await.map(Identity::from).map_err(wrap)?
                }
                Some(SubVerifierConfig::Introspection(introspection)) => {
                    self.verify_introspection(introspection, token, now).await.map_err(wrap)?
                }
                None => return Err(AggregateError::UnknownSubVerifier(name.clone()).into()),
            };
            expires_at = expires_at.min(identity.expires_at);
            issued_at = issued_at.min(identity.issued_at);
            identities.extend(identity.identities);
            yielded.push((name.as_str(), identity.verifier_id));
        }
        let pairs: Vec<(&str, &str)> = yielded.iter().map(|(name, id)| (*name, id.as_str())).collect();
        check_aggregate_agreement(claimed, &pairs)?;
        Ok(Identity { verifier_id: claimed.to_owned(), issued_at, expires_at, identities })
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
                let keys = KeySet::from_document(document).map_err(|e| VerifyError::InlineKeys(e.to_string()))?;
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
