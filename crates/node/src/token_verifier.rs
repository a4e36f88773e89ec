//! Checks a login's token against its verifier's configuration: the pure
//! checks of `quorumkey-verifier` with the keys this node fetched and
//! cached ([`JwksCache`]), the answers of introspection endpoints, and the
//! node's clock.
//!
//! Introspection calls are bounded two ways, because a reveal replayed to
//! every node (or many times to one) would otherwise make each node call the
//! provider each time:
//! - answers are cached briefly ([`ProviderLimits::answer_ttl`], never past
//!   the token's own expiry), keyed by the verifier, its configuration and
//!   the token (a hash of it: tokens are not kept), in a bounded cache;
//!   a definite refusal (HTTP 4xx but 408 and 429) is cached too;
//! - the calls a node makes for one verifier go through a token bucket
//!   ([`ProviderLimits::calls_per_second_per_verifier`]); over it, a login
//!   fails with [`VerifyError::ProviderBusy`] (a JSON-RPC "rate limited"
//!   error) without calling the provider.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, RateLimiter};
use quorumkey_verifier::config::SubVerifierConfig;
use quorumkey_verifier::introspection::{IntrospectedToken, MAX_ANSWER_LEN};
use quorumkey_verifier::{
    AggregateConfig, AggregateError, IntrospectionConfig, JwtConfig, KeySet, KeySource, TokenError, TokenIdentity,
    VerifiedToken, check_aggregate_agreement, check_aggregate_request, check_introspection, check_opaque_token,
    token_header, verify_jwt,
};

use crate::jwks_cache::{JwksCache, JwksFetchError, KeyNeed};
use crate::observability::{METRIC_PROVIDER_ANSWER_CACHE_HITS, METRIC_PROVIDER_CALLS_LIMITED};
use crate::provider_http::{ProviderAccess, ProviderClient, ProviderClientError, ProviderError};

/// Timeout of one introspection call.
pub const INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The introspection endpoint could not be asked, or its answer was
    /// unusable.
    #[error("the verifier's introspection endpoint failed: {0}")]
    Introspection(ProviderError),
    /// The introspection endpoint refused the token.
    #[error("the verifier's introspection endpoint refused the token (HTTP {0})")]
    Refused(u16),
    /// This node calls the verifier's provider as often as it allows.
    #[error(
        "this node's budget of calls to the verifier's identity provider ({per_second} per second) is spent; retry in a second"
    )]
    ProviderBusy {
        /// [`ProviderLimits::calls_per_second_per_verifier`].
        per_second: u32,
    },
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

impl VerifyError {
    /// Whether the login failed on this node's limit of provider calls (for
    /// an aggregate, a sub-verifier's), not on the token.
    pub fn is_provider_busy(&self) -> bool {
        match self {
            Self::ProviderBusy { .. } => true,
            Self::SubVerifier { error, .. } => error.is_provider_busy(),
            _ => false,
        }
    }
}

/// Limits on the calls a node makes to identity providers for logins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderLimits {
    /// Sustained introspection calls per second for one verifier.
    pub calls_per_second_per_verifier: u32,
    /// Calls for one verifier that may be made at once above that rate.
    pub call_burst_per_verifier: u32,
    /// How long an introspection answer is reused (never past the token's
    /// own expiry).
    pub answer_ttl: Duration,
    /// Most introspection answers kept (the ones expiring first go first).
    pub answer_cache_entries: usize,
}

impl Default for ProviderLimits {
    fn default() -> Self {
        Self {
            calls_per_second_per_verifier: 20,
            call_burst_per_verifier: 40,
            answer_ttl: Duration::from_secs(60),
            answer_cache_entries: 10_000,
        }
    }
}

/// An introspection endpoint's answer about one token, as cached.
#[derive(Clone, Debug)]
enum Answer {
    /// The token passed: what the answer said.
    Accepted(IntrospectedToken),
    /// The endpoint refused the token with this status.
    Refused(u16),
}

struct CachedAnswer {
    answer: Answer,
    slot: (Instant, u64),
}

/// The bounded answer cache: by key, and by expiry for eviction.
#[derive(Default)]
struct AnswerCache {
    entries: HashMap<[u8; 32], CachedAnswer>,
    by_expiry: BTreeMap<(Instant, u64), [u8; 32]>,
    serial: u64,
}

impl AnswerCache {
    fn get(&mut self, key: &[u8; 32], now: Instant) -> Option<Answer> {
        let slot = self.entries.get(key)?.slot;
        if slot.0 <= now {
            self.remove(key);
            return None;
        }
        self.entries.get(key).map(|cached| cached.answer.clone())
    }

    fn remove(&mut self, key: &[u8; 32]) {
        if let Some(old) = self.entries.remove(key) {
            self.by_expiry.remove(&old.slot);
        }
    }

    fn insert(&mut self, key: [u8; 32], answer: Answer, until: Instant, capacity: usize) {
        self.remove(&key);
        if capacity == 0 {
            return;
        }
        while self.entries.len() >= capacity {
            let Some((_, first)) = self.by_expiry.pop_first() else { break };
            self.entries.remove(&first);
        }
        self.serial += 1;
        let slot = (until, self.serial);
        self.by_expiry.insert(slot, key);
        self.entries.insert(key, CachedAnswer { answer, slot });
    }

    fn purge_expired(&mut self, now: Instant) {
        while let Some((&slot, _)) = self.by_expiry.first_key_value() {
            if slot.0 > now {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.entries.remove(&key);
            }
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The cache key of a token's answer: the verifier, its configuration and
/// the token, hashed (the token itself is not kept).
fn answer_key(verifier: &str, config: &IntrospectionConfig, token: &str) -> [u8; 32] {
    let config = serde_json::to_vec(config).unwrap_or_default();
    let mut input = Vec::with_capacity(verifier.len() + config.len() + token.len() + 64);
    for field in [b"quorumkey/introspection-answer/v1".as_slice(), verifier.as_bytes(), &config, token.as_bytes()] {
        input.extend_from_slice(&(field.len() as u64).to_be_bytes());
        input.extend_from_slice(field);
    }
    quorumkey_crypto::hash::keccak256(&input)
}

/// Refusals worth remembering: the provider said the token is not good
/// (not "later", not "too many").
fn definite_refusal(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
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
    /// A single token's verified claims (a JWT's payload, an introspection
    /// answer's fields); empty for an aggregate.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl From<VerifiedToken> for Identity {
    fn from(token: VerifiedToken) -> Self {
        Self {
            verifier_id: token.verifier_id,
            issued_at: token.issued_at,
            expires_at: token.expires_at,
            identities: vec![token.identity],
            claims: token.claims,
        }
    }
}

/// One sub-token of an aggregate or script login, verified by its
/// sub-verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSubToken {
    /// The sub-verifier's name.
    pub name: String,
    /// What the token established.
    pub identity: Identity,
}

/// Token checks with cached keys and answers.
#[derive(Clone)]
pub struct TokenVerifier {
    jwks: Arc<JwksCache>,
    http: ProviderClient,
    limits: ProviderLimits,
    calls: Arc<DefaultKeyedRateLimiter<String>>,
    answers: Arc<Mutex<AnswerCache>>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier that gets keys through `jwks` and calls introspection
    /// endpoints with `access`'s address rule, within `limits`.
    pub fn new(
        jwks: Arc<JwksCache>,
        access: &ProviderAccess,
        limits: ProviderLimits,
    ) -> Result<Self, ProviderClientError> {
        Ok(Self::with_client(jwks, &access.client(INTROSPECTION_TIMEOUT)?, limits))
    }

    /// A verifier that gets keys through `jwks` and calls introspection
    /// endpoints through `client` (its connections shared), within
    /// `limits`.
    pub fn with_client(jwks: Arc<JwksCache>, client: &ProviderClient, limits: ProviderLimits) -> Self {
        let quota = crate::http::client_address::per_second(
            limits.calls_per_second_per_verifier,
            limits.call_burst_per_verifier,
        );
        Self {
            jwks,
            http: client.with_timeout(INTROSPECTION_TIMEOUT),
            limits,
            calls: Arc::new(RateLimiter::keyed(quota)),
            answers: Arc::new(Mutex::new(AnswerCache::default())),
        }
    }

    /// Introspection answers cached now.
    pub fn cached_answers(&self) -> usize {
        self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Forgets expired answers and idle rate-limit entries.
    pub fn shrink(&self) {
        self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).purge_expired(Instant::now());
        self.calls.retain_recent();
        self.calls.shrink_to_fit();
    }

    /// A cached answer as the check would give it at Unix time `now`.
    fn cached(config: &IntrospectionConfig, answer: Answer, now: u64) -> Result<IntrospectedToken, VerifyError> {
        match answer {
            Answer::Refused(status) => Err(VerifyError::Refused(status)),
            Answer::Accepted(token) if now > token.expires_at => {
                Err(TokenError::TooOld { iat: token.issued_at, max_age: config.freshness_secs, now }.into())
            }
            Answer::Accepted(token) => Ok(token),
        }
    }

    /// Checks an opaque token of verifier `verifier` by calling the
    /// configured endpoint with it as a bearer credential (5 s timeout,
    /// answer at most 64 KiB, no redirects), at Unix time `now`; a recent
    /// answer about the same token is reused. The identity carries no
    /// claims (see [`Self::verify_introspection_claims`]).
    pub async fn verify_introspection(
        &self,
        verifier: &str,
        config: &IntrospectionConfig,
        token: &str,
        now: u64,
    ) -> Result<Identity, VerifyError> {
        self.introspect(verifier, config, token, now, true).await.map(|checked| Identity {
            verifier_id: checked.verifier_id,
            issued_at: checked.issued_at,
            expires_at: checked.expires_at,
            identities: vec![checked.identity],
            claims: serde_json::Map::new(),
        })
    }

    /// [`Self::verify_introspection`] with the answer's fields as claims
    /// (what a verifier script reads): always a fresh answer, within the
    /// per-verifier call budget. The answer cache keeps no claims, so it
    /// stays as small as it was (an answer may be 64 KiB; an entry without
    /// claims is a few hundred bytes).
    pub async fn verify_introspection_claims(
        &self,
        verifier: &str,
        config: &IntrospectionConfig,
        token: &str,
        now: u64,
    ) -> Result<Identity, VerifyError> {
        self.introspect(verifier, config, token, now, false).await.map(|checked| Identity {
            verifier_id: checked.verifier_id,
            issued_at: checked.issued_at,
            expires_at: checked.expires_at,
            identities: vec![checked.identity],
            claims: checked.claims,
        })
    }

    /// The introspection check: from the answer cache if `use_cache` and it
    /// holds one (without claims), else from the provider (with them); the
    /// cache remembers every answer, without claims.
    async fn introspect(
        &self,
        verifier: &str,
        config: &IntrospectionConfig,
        token: &str,
        now: u64,
        use_cache: bool,
    ) -> Result<IntrospectedToken, VerifyError> {
        // One spelling per token, and nothing that could break the header.
        check_opaque_token(token)?;
        let key = answer_key(verifier, config, token);
        if use_cache {
            let cached =
                self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key, Instant::now());
            if let Some(answer) = cached {
                metrics::counter!(METRIC_PROVIDER_ANSWER_CACHE_HITS).increment(1);
                return Self::cached(config, answer, now);
            }
        }
        if self.calls.check_key(&verifier.to_owned()).is_err() {
            metrics::counter!(METRIC_PROVIDER_CALLS_LIMITED).increment(1);
            return Err(VerifyError::ProviderBusy { per_second: self.limits.calls_per_second_per_verifier });
        }
        let remember = |answer: Answer, ttl: Duration| {
            self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(
                key,
                answer,
                Instant::now() + ttl,
                self.limits.answer_cache_entries,
            );
        };
        let body = match self.http.get(&config.url, Some(token), MAX_ANSWER_LEN).await {
            Ok(body) => body,
            Err(ProviderError::Status(status)) => {
                if definite_refusal(status) {
                    remember(Answer::Refused(status), self.limits.answer_ttl);
                }
                return Err(VerifyError::Refused(status));
            }
            Err(error) => return Err(VerifyError::Introspection(error)),
        };
        let checked = check_introspection(config, &body, now)?;
        let until_expiry = Duration::from_secs(checked.expires_at.saturating_sub(now));
        let without_claims = IntrospectedToken {
            verifier_id: checked.verifier_id.clone(),
            issued_at: checked.issued_at,
            expires_at: checked.expires_at,
            identity: checked.identity,
            claims: serde_json::Map::new(),
        };
        remember(Answer::Accepted(without_claims), self.limits.answer_ttl.min(until_expiry));
        Ok(checked)
    }

    /// Checks an aggregate login of verifier `verifier`: `tokens[i]` for
    /// sub-verifier `sub_verifier_ids[i]`; all must pass and name
    /// `claimed`.
    pub async fn verify_aggregate(
        &self,
        verifier: &str,
        config: &AggregateConfig,
        claimed: &str,
        sub_verifier_ids: &[String],
        tokens: &[String],
        now: u64,
    ) -> Result<Identity, VerifyError> {
        check_aggregate_request(config, sub_verifier_ids, tokens.len())?;
        let subs =
            self.verify_sub_tokens(verifier, &config.sub_verifiers, sub_verifier_ids, tokens, now, false).await?;
        let pairs: Vec<(&str, &str)> =
            subs.iter().map(|sub| (sub.name.as_str(), sub.identity.verifier_id.as_str())).collect();
        check_aggregate_agreement(claimed, &pairs)?;
        Ok(combined(claimed, &subs))
    }

    /// Checks each sub-token of a login (`tokens[i]` for sub-verifier
    /// `sub_verifier_ids[i]`, already checked against the verifier's
    /// sub-verifiers and presence rule), in order; all must pass. With
    /// `claims` (a script's login), each identity carries its token's
    /// claims, an introspection answer then fresh from its provider.
    pub async fn verify_sub_tokens(
        &self,
        verifier: &str,
        sub_verifiers: &BTreeMap<String, SubVerifierConfig>,
        sub_verifier_ids: &[String],
        tokens: &[String],
        now: u64,
        claims: bool,
    ) -> Result<Vec<VerifiedSubToken>, VerifyError> {
        let mut verified = Vec::with_capacity(tokens.len());
        for (name, token) in sub_verifier_ids.iter().zip(tokens) {
            let wrap =
                |error: VerifyError| VerifyError::SubVerifier { sub_verifier: name.clone(), error: Box::new(error) };
            let identity = match sub_verifiers.get(name) {
                Some(SubVerifierConfig::Jwt(jwt)) => {
                    let mut identity = self.verify_jwt(jwt, token, now).await.map(Identity::from).map_err(wrap)?;
                    if !claims {
                        identity.claims = serde_json::Map::new();
                    }
                    identity
                }
                Some(SubVerifierConfig::Introspection(introspection)) if claims => {
                    self.verify_introspection_claims(verifier, introspection, token, now).await.map_err(wrap)?
                }
                Some(SubVerifierConfig::Introspection(introspection)) => {
                    self.verify_introspection(verifier, introspection, token, now).await.map_err(wrap)?
                }
                None => return Err(AggregateError::UnknownSubVerifier(name.clone()).into()),
            };
            verified.push(VerifiedSubToken { name: name.clone(), identity });
        }
        Ok(verified)
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

/// The identity of a login of several sub-tokens that names `verifier_id`:
/// the earliest issue time, the earliest expiry, every token's nullifier.
pub fn combined(verifier_id: &str, subs: &[VerifiedSubToken]) -> Identity {
    Identity {
        verifier_id: verifier_id.to_owned(),
        issued_at: subs.iter().map(|sub| sub.identity.issued_at).min().unwrap_or(0),
        expires_at: subs.iter().map(|sub| sub.identity.expires_at).min().unwrap_or(0),
        identities: subs.iter().flat_map(|sub| sub.identity.identities.iter().cloned()).collect(),
        claims: serde_json::Map::new(),
    }
}
