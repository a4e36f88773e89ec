//! Fetches and caches the JWKS documents of JWT verifiers.
//!
//! - Keys are cached per URL for [`JwksCachePolicy::max_age`]; after that
//!   the next use refetches, and if the provider is down the cached keys
//!   keep working (a warning is logged) until they are
//!   [`JwksCachePolicy::max_stale`] old (counted from the last fetch that
//!   succeeded); after that, logins of the verifier fail with
//!   [`JwksFetchError::Stale`] until the provider answers again.
//! - A token whose `kid` is not in the cache causes one refetch, at most
//!   once per [`JwksCachePolicy::min_refetch_interval`] per URL, so tokens
//!   with made-up kids cannot make the node hammer a provider.
//! - One fetch per URL at a time (single flight): concurrent logins wait for
//!   the fetch in progress instead of starting their own.
//! - Every fetch goes through a [`ProviderClient`]: public addresses only
//!   (unless the node allows others), no redirects, a timeout, at most
//!   `MAX_JWKS_LEN` bytes; errors never quote the provider's answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use quorumkey_verifier::jwks::MAX_JWKS_LEN;
use quorumkey_verifier::{JwksError, KeySet};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::provider_http::{ProviderAccess, ProviderClient, ProviderClientError, ProviderError};

/// How long keys are kept and how often they may be refetched.
#[derive(Clone, Copy, Debug)]
pub struct JwksCachePolicy {
    /// Keys younger than this are used without asking the provider.
    pub max_age: Duration,
    /// Keys older than this (since the last successful fetch) are no longer
    /// used, even when the provider is down. At least `max_age`.
    pub max_stale: Duration,
    /// At most one refetch per URL in this interval for unknown kids.
    pub min_refetch_interval: Duration,
    /// Timeout of one fetch (connect and body).
    pub fetch_timeout: Duration,
}

impl Default for JwksCachePolicy {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(600),
            max_stale: Duration::from_secs(3600),
            min_refetch_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a fetched JWKS document was not usable.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchFailure {
    /// The request failed or the answer was refused.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The answer is not JSON.
    #[error("the provider's JWKS document is not JSON")]
    NotJson,
    /// The answer is JSON but not a usable JWKS document (the reason names
    /// the rule, not the content).
    #[error("{0}")]
    Document(String),
}

impl From<JwksError> for FetchFailure {
    fn from(error: JwksError) -> Self {
        match error {
            JwksError::Json(_) => Self::NotJson,
            JwksError::TooLarge { max, .. } => Self::Provider(ProviderError::TooLarge(max)),
            other @ (JwksError::NoKeysArray | JwksError::TooManyKeys { .. }) => Self::Document(other.to_string()),
        }
    }
}

/// Why no keys could be had.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksFetchError {
    /// The provider did not answer usefully and nothing is cached.
    #[error("the verifier's key provider is unreachable and no keys are cached: {0}")]
    Unavailable(FetchFailure),
    /// The provider has not answered usefully for longer than the node
    /// serves cached keys.
    #[error(
        "the verifier's key provider has not answered for over {max_stale_secs} s ({reason}); its cached keys are no longer used"
    )]
    Stale {
        /// [`JwksCachePolicy::max_stale`] in seconds.
        max_stale_secs: u64,
        /// The last failure.
        reason: FetchFailure,
    },
}

#[derive(Default)]
struct Entry {
    keys: Option<Arc<KeySet>>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    last_error: Option<FetchFailure>,
}

/// The cache, shared by a node's request handlers.
pub struct JwksCache {
    client: ProviderClient,
    policy: JwksCachePolicy,
    entries: Mutex<HashMap<String, Arc<Mutex<Entry>>>>,
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache").field("policy", &self.policy).finish_non_exhaustive()
    }
}

/// What a caller needs: keys for a token with this `kid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyNeed<'a> {
    /// Any current keys.
    Current,
    /// Keys that include this `kid` (refetch once if the cache lacks it).
    Kid(&'a str),
}

impl JwksCache {
    /// A cache with `policy`, fetching with `access`'s address rule.
    pub fn new(policy: JwksCachePolicy, access: &ProviderAccess) -> Result<Self, ProviderClientError> {
        Ok(Self::with_client(policy, &access.client(policy.fetch_timeout)?))
    }

    /// A cache with `policy`, fetching through `client` (its connections
    /// shared; the policy's fetch timeout per request).
    pub(crate) fn with_client(policy: JwksCachePolicy, client: &ProviderClient) -> Self {
        Self {
            client: client.with_timeout(policy.fetch_timeout),
            policy,
            entries: Mutex::new(HashMap::new()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many fetches this cache has started (for tests and metrics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn fetch(&self, url: &str) -> Result<KeySet, FetchFailure> {
        self.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("quorumkey_jwks_fetches_total").increment(1);
        let body = self.client.get(url, None, MAX_JWKS_LEN).await?;
        Ok(KeySet::from_jwks(&body)?)
    }

    /// Keys from `url` for `need`. Unknown kids get one throttled refetch;
    /// when the provider fails, cached keys are returned if there are any.
    pub async fn keys(&self, url: &str, need: KeyNeed<'_>) -> Result<Arc<KeySet>, JwksFetchError> {
        let entry = {
            let mut entries = self.entries.lock().await;
            entries.entry(url.to_owned()).or_default().clone()
        };
        // Single flight: whoever holds the entry fetches; the others wait
        // and then see its result.
        let mut entry = entry.lock().await;
        let now = Instant::now();
        let age = entry.fetched_at.map(|at| now.duration_since(at));
        let fresh = age.is_some_and(|age| age < self.policy.max_age);
        let usable = age.is_some_and(|age| age < self.policy.max_stale);
        let has_kid = |keys: &KeySet| match need {
            KeyNeed::Current => true,
            KeyNeed::Kid(kid) => keys.find(Some(kid)).is_some(),
        };
        let cached_ok = entry.keys.as_deref().is_some_and(has_kid);
        if let Some(keys) = &entry.keys
            && fresh
            && cached_ok
        {
            return Ok(keys.clone());
        }
        // Stale keys or an unknown kid: refetch, but at most once per
        // interval per URL (made-up kids and a provider that is down do not
        // turn every login into a fetch). Until then, what is cached, while
        // it is not too old.
        let throttled = entry.last_attempt.is_some_and(|at| now.duration_since(at) < self.policy.min_refetch_interval);
        if throttled {
            match (&entry.keys, &entry.last_error) {
                (Some(keys), _) if usable => return Ok(keys.clone()),
                (Some(_), Some(error)) => return Err(self.stale(error.clone())),
                (None, Some(error)) => return Err(JwksFetchError::Unavailable(error.clone())),
                (_, None) => {}
            }
        }
        entry.last_attempt = Some(now);
        match self.fetch(url).await {
            Ok(keys) => {
                entry.last_error = None;
                let keys = Arc::new(keys);
                entry.keys = Some(keys.clone());
                entry.fetched_at = Some(Instant::now());
                Ok(keys)
            }
            Err(reason) => {
                entry.last_error = Some(reason.clone());
                let error = reason.to_string();
                match &entry.keys {
                    Some(keys) if usable => {
                        tracing::warn!(url, %error, "JWKS fetch failed; using the cached keys");
                        Ok(keys.clone())
                    }
                    Some(_) => {
                        tracing::warn!(url, %error, "JWKS fetch failed and the cached keys are too old to use");
                        Err(self.stale(reason))
                    }
                    None => {
                        tracing::warn!(url, %error, "JWKS fetch failed and no keys are cached");
                        Err(JwksFetchError::Unavailable(reason))
                    }
                }
            }
        }
    }

    fn stale(&self, reason: FetchFailure) -> JwksFetchError {
        JwksFetchError::Stale { max_stale_secs: self.policy.max_stale.as_secs(), reason }
    }
}
