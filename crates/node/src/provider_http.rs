//! How a node reaches identity providers (JWKS documents, introspection
//! endpoints). Anyone can register a verifier, so its URLs are hostile:
//! fetched naively they would make every node send requests into its
//! operator's network or to its cloud's metadata service (SSRF). So:
//!
//! - **public addresses only**: every address the node connects to is
//!   checked after DNS resolution, by the resolver the HTTP client connects
//!   with ([`GuardedResolver`]): addresses that are not public
//!   ([`quorumkey_verifier::address`]) are dropped, and a name with no
//!   public address is refused. Each connection resolves through it, so a
//!   name that answers a public address first and a private one later (DNS
//!   rebinding) gets no connection to the private one. IP-literal hosts
//!   (which the client does not resolve) are checked before the request.
//!   Loopback and private addresses are allowed only when the operator says
//!   so (`[providers] allow_private_addresses`, for development; the devnet
//!   turns it on);
//! - **no user info** (`http://localhost:1@10.0.0.1/`): refused;
//! - **no redirects**: a 3xx answer is an error, whatever its target (a
//!   redirect would be a second request to a host nobody checked);
//! - **no proxies** from the environment (a proxy would resolve the name
//!   itself, past the check);
//! - **bounded**: a timeout per request, and answers read up to a limit;
//! - **errors name the failure** (the HTTP status, a redirect, too large,
//!   not public, timeout) and never carry what the provider sent: they reach
//!   clients, and a provider's answer may be a private service's page.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quorumkey_verifier::address::{AddressScope, address_scope};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::observability::METRIC_PROVIDER_ADDRESS_REFUSALS;

/// Most addresses of one name that are considered.
const MAX_RESOLVED_ADDRESSES: usize = 32;

/// Why a provider could not be asked, or answered unusably. The messages
/// name the failure and never quote the provider's answer.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    /// The URL itself is refused (a configuration the ledger accepted
    /// never is; checked again because the fetch is where it matters).
    #[error("the provider URL {0}")]
    Url(&'static str),
    /// The host is, or resolves only to, an address this node does not
    /// connect to.
    #[error(
        "the provider's address is not public ({0}); this node connects to identity providers at public addresses only"
    )]
    AddressNotPublic(String),
    /// The host name does not resolve.
    #[error("the provider's host name does not resolve")]
    Resolve,
    /// No answer in time.
    #[error("the provider did not answer within {0} ms")]
    Timeout(u64),
    /// No connection (refused, reset, unreachable).
    #[error("cannot connect to the provider")]
    Connect,
    /// A 3xx answer.
    #[error("the provider answered with a redirect (HTTP {0}); nodes do not follow redirects")]
    Redirect(u16),
    /// Another non-2xx answer.
    #[error("the provider answered HTTP {0}")]
    Status(u16),
    /// The answer is larger than the limit.
    #[error("the provider's answer is larger than {0} bytes")]
    TooLarge(usize),
    /// The answer broke off.
    #[error("the provider's answer was cut off")]
    Read,
}

/// Why the guarded resolver gave no address (found again in the HTTP
/// client's error chain).
#[derive(Debug, thiserror::Error)]
enum ResolveFailure {
    #[error("resolves only to addresses that are not public ({0})")]
    NotPublic(String),
    #[error("does not resolve")]
    NoAddress,
}

fn describe(scope: AddressScope) -> String {
    match scope {
        AddressScope::NonPublic(range) => range.to_string(),
        AddressScope::Loopback => "a loopback address".to_owned(),
        AddressScope::Public => "a public address".to_owned(),
    }
}

/// The system's resolver (`getaddrinfo` on a blocking thread).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // The system's message may name the host: not passed on.
            let addresses =
                tokio::net::lookup_host((host.as_str(), 0)).await.map_err(|_| Box::new(ResolveFailure::NoAddress))?;
            Ok(Box::new(addresses.take(MAX_RESOLVED_ADDRESSES).collect::<Vec<_>>().into_iter()) as Addrs)
        })
    }
}

/// A resolver that passes on only the addresses a node may connect to: the
/// HTTP client connects to what this returns and nothing else.
#[derive(Clone)]
pub struct GuardedResolver {
    inner: Arc<dyn Resolve>,
    allow_non_public: bool,
}

impl std::fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedResolver").field("allow_non_public", &self.allow_non_public).finish_non_exhaustive()
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (inner, allow_non_public) = (self.inner.clone(), self.allow_non_public);
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = inner.resolve(name).await?.take(MAX_RESOLVED_ADDRESSES).collect();
            let mut refused = None;
            let permitted: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|address| {
                    let scope = address_scope(address.ip());
                    let ok = scope.permitted(allow_non_public);
                    if !ok {
                        refused.get_or_insert(scope);
                    }
                    ok
                })
                .collect();
            if permitted.is_empty() {
                return Err(Box::new(match refused {
                    Some(scope) => ResolveFailure::NotPublic(describe(scope)),
                    None => ResolveFailure::NoAddress,
                }) as _);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// Which addresses this node's provider connections may reach, and how
/// names are resolved.
#[derive(Clone)]
pub struct ProviderAccess {
    allow_non_public: bool,
    resolver: Arc<dyn Resolve>,
}

impl std::fmt::Debug for ProviderAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderAccess").field("allow_non_public", &self.allow_non_public).finish_non_exhaustive()
    }
}

impl ProviderAccess {
    /// A production node: public addresses only.
    pub fn public_only() -> Self {
        Self::new(false)
    }

    /// A development node: any address (providers on this machine or its
    /// network).
    pub fn development() -> Self {
        Self::new(true)
    }

    /// Public addresses only, or any address if `allow_non_public`; names
    /// resolved by the system.
    pub fn new(allow_non_public: bool) -> Self {
        Self { allow_non_public, resolver: Arc::new(SystemResolver) }
    }

    /// The same rule with names resolved by `resolver` (tests: a resolver
    /// that answers what an attacker's DNS server would).
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolve>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Whether non-public addresses are allowed.
    pub fn allows_non_public(&self) -> bool {
        self.allow_non_public
    }

    /// An HTTP client for providers with this rule and `timeout` per
    /// request (connect and answer).
    pub fn client(&self, timeout: Duration) -> Result<ProviderClient, ProviderClientError> {
        let resolver = GuardedResolver { inner: self.resolver.clone(), allow_non_public: self.allow_non_public };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(resolver)
            .build()
            .map_err(|e| ProviderClientError(e.to_string()))?;
        Ok(ProviderClient { client, allow_non_public: self.allow_non_public, timeout })
    }
}

/// The HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for identity providers: {0}")]
pub struct ProviderClientError(String);

/// An HTTP client for identity providers (see the module documentation).
#[derive(Clone, Debug)]
pub struct ProviderClient {
    client: reqwest::Client,
    allow_non_public: bool,
    timeout: Duration,
}

impl ProviderClient {
    /// The URL as it will be fetched, if it may be: http or https, no user
    /// info, and an IP-literal host only if this node may connect to it.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, ProviderError> {
        let authority =
            url.split_once("://").map_or("", |(_, rest)| rest.split(['/', '?', '#', '\\']).next().unwrap_or(""));
        if authority.contains('@') {
            return Err(ProviderError::Url("carries a user name or password (user@host)"));
        }
        let parsed = reqwest::Url::parse(url).map_err(|_| ProviderError::Url("is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ProviderError::Url("is not http or https"));
        }
        let literal = match parsed.host() {
            None => return Err(ProviderError::Url("has no host")),
            Some(url::Host::Domain(_)) => None,
            Some(url::Host::Ipv4(address)) => Some(IpAddr::V4(address)),
            Some(url::Host::Ipv6(address)) => Some(IpAddr::V6(address)),
        };
        if let Some(address) = literal {
            let scope = address_scope(address);
            if !scope.permitted(self.allow_non_public) {
                return Err(ProviderError::AddressNotPublic(describe(scope)));
            }
        }
        Ok(parsed)
    }

    /// `GET url` (with `bearer` as `Authorization: Bearer` if given): the
    /// body of a 2xx answer of at most `max_len` bytes.
    pub async fn get(&self, url: &str, bearer: Option<&str>, max_len: usize) -> Result<Vec<u8>, ProviderError> {
        let result = self.fetch(url, bearer, max_len).await;
        if let Err(ProviderError::AddressNotPublic(_)) = &result {
            metrics::counter!(METRIC_PROVIDER_ADDRESS_REFUSALS).increment(1);
        }
        result
    }

    async fn fetch(&self, url: &str, bearer: Option<&str>, max_len: usize) -> Result<Vec<u8>, ProviderError> {
        let parsed = self.check_url(url)?;
        let mut request = self.client.get(parsed);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let mut response = request.send().await.map_err(|error| self.classify(&error))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(ProviderError::Redirect(status.as_u16()));
        }
        if !status.is_success() {
            return Err(ProviderError::Status(status.as_u16()));
        }
        if response.content_length().is_some_and(|len| len > max_len as u64) {
            return Err(ProviderError::TooLarge(max_len));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| match self.classify(&error) {
            ProviderError::Timeout(ms) => ProviderError::Timeout(ms),
            _ => ProviderError::Read,
        })? {
            if body.len().saturating_add(chunk.len()) > max_len {
                return Err(ProviderError::TooLarge(max_len));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// What a failed request means, without its text (which may carry the
    /// URL or what the provider sent).
    fn classify(&self, error: &reqwest::Error) -> ProviderError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(current) = source {
            if let Some(refusal) = current.downcast_ref::<ResolveFailure>() {
                return match refusal {
                    ResolveFailure::NotPublic(range) => ProviderError::AddressNotPublic(range.clone()),
                    ResolveFailure::NoAddress => ProviderError::Resolve,
                };
            }
            source = current.source();
        }
        if error.is_timeout() {
            ProviderError::Timeout(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX))
        } else {
            ProviderError::Connect
        }
    }
}
