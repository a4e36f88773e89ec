//! Fetches and caches the JWKS documents of JWT verifiers.
//!
//! - Keys are cached per URL for [`JwksCachePolicy::max_age`]; after that
//!   the next use refetches, and if the provider is down the cached keys
//!   keep working (a warning is logged).
//! - A token whose `kid` is not in the cache causes one refetch, at most
//!   once per [`JwksCachePolicy::min_refetch_interval`] per URL, so tokens
//!   with made-up kids cannot make the node hammer a provider.
//! - One fetch per URL at a time (single flight): concurrent logins wait for
//!   the fetch in progress instead of starting their own.
//! - Every fetch has a timeout and reads at most `MAX_JWKS_LEN` bytes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use quorumkey_verifier::jwks::MAX_JWKS_LEN;
use quorumkey_verifier::{JwksError, KeySet};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long keys are kept and how often they may be refetched.
#[derive(Clone, Copy, Debug)]
pub struct JwksCachePolicy {
    /// Keys younger than this are used without asking the provider.
    pub max_age: Duration,
    /// At most one refetch per URL in this interval for unknown kids.
    pub min_refetch_interval: Duration,
    /// Timeout of one fetch (connect and body).
    pub fetch_timeout: Duration,
}

impl Default for JwksCachePolicy {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(600),
            min_refetch_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Why no keys could be had.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksFetchError {
    /// The provider did not answer usefully and nothing is cached.
    #[error("the verifier's key provider is unreachable and no keys are cached: {0}")]
    Unavailable(String),
}

#[derive(Default)]
struct Entry {
    keys: Option<Arc<KeySet>>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

/// The cache, shared by a node's request handlers.
pub struct JwksCache {
    client: reqwest::Client,
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
    /// A cache with `policy`.
    pub fn new(policy: JwksCachePolicy) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(policy.fetch_timeout)
            .connect_timeout(policy.fetch_timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        Ok(Self { client, policy, entries: Mutex::new(HashMap::new()), fetches: std::sync::atomic::AtomicU64::new(0) })
    }

    /// How many fetches this cache has started (for tests and metrics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn fetch(&self, url: &str) -> Result<KeySet, String> {
        self.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("quorumkey_jwks_fetches_total").increment(1);
        let mut response = self.client.get(url).send().await.map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("HTTP status {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("reading the answer failed: {e}"))? {
            if body.len() + chunk.len() > MAX_JWKS_LEN {
                return Err(JwksError::TooLarge { len: body.len() + chunk.len(), max: MAX_JWKS_LEN }.to_string());
            }
            body.extend_from_slice(&chunk);
        }
        KeySet::from_jwks(&body).map_err(|e| e.to_string())
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
        let fresh = entry.fetched_at.is_some_and(|at| now.duration_since(at) < self.policy.max_age);
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
        // turn every login into a fetch). Until then, what is cached.
        let throttled = entry.last_attempt.is_some_and(|at| now.duration_since(at) < self.policy.min_refetch_interval);
        if throttled {
            match (&entry.keys, &entry.last_error) {
                (Some(keys), _) => return Ok(keys.clone()),
                (None, Some(error)) => return Err(JwksFetchError::Unavailable(error.clone())),
                (None, None) => {}
            }
        }
        entry.last_attempt = Some(now);
        let fetched = self.fetch(url).await;
        if let Err(reason) = &fetched {
            entry.last_error = Some(reason.clone());
        }
        match fetched {
            Ok(keys) => {
                entry.last_error = None;
                let keys = Arc::new(keys);
                entry.keys = Some(keys.clone());
                entry.fetched_at = Some(Instant::now());
                Ok(keys)
            }
            Err(reason) => match &entry.keys {
                Some(keys) => {
                    tracing::warn!(url, reason, "JWKS fetch failed; using the cached keys");
                    Ok(keys.clone())
                }
                None => {
                    tracing::warn!(url, reason, "JWKS fetch failed and no keys are cached");
                    Err(JwksFetchError::Unavailable(reason))
                }
            },
        }
    }
}
