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
//! - **TLS** for `https://` (the only scheme the ledger accepts for a DNS
//!   name): rustls with the aws-lc-rs provider, passed explicitly, TLS 1.2
//!   and 1.3, and Mozilla's root certificates compiled in (`webpki-roots`),
//!   not the OS's store: a login needs a threshold of nodes to agree on a
//!   provider's answer, so every node must trust the same authorities
//!   whatever its OS image holds (a minimal container has no store at all),
//!   and a root that Mozilla drops leaves every node at the same release.
//!   Providers are at public addresses, where certificates come from
//!   public authorities: there is no setting for private ones (tests add
//!   their own authority through a hook that only test builds have). The
//!   TLS connection goes through the same resolver and checks as plain
//!   HTTP: the address rule applies before the handshake, and the
//!   certificate must be valid for the URL's host name (or IP literal);
//! - **errors name the failure** (the HTTP status, a redirect, too large,
//!   not public, timeout, a refused certificate) and never carry what the
//!   provider sent: they reach clients, and a provider's answer may be a
//!   private service's page.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quorumkey_verifier::address::{AddressScope, address_scope};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, RootCertStore};

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
    /// The provider's TLS certificate is refused; says why (its host name,
    /// its issuer, its validity period), never what it names.
    #[error("the provider's TLS certificate {0}")]
    Certificate(&'static str),
    /// The TLS handshake failed otherwise (not TLS, no common protocol
    /// version or cipher suite, an alert).
    #[error("the TLS handshake with the provider failed")]
    Tls,
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
pub(crate) struct SystemResolver;

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
pub(crate) struct GuardedResolver {
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
    /// Trusted besides Mozilla's roots: only ever set by tests (the
    /// `test-hooks` feature).
    extra_roots: Vec<CertificateDer<'static>>,
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
        Self { allow_non_public, resolver: Arc::new(SystemResolver), extra_roots: Vec::new() }
    }

    /// The same rule with names resolved by `resolver` (tests: a resolver
    /// that answers what an attacker's DNS server would).
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolve>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Also trusts the certificate authority `certificate` (DER) for
    /// `https://` providers: a test's own authority. Test builds only: no
    /// node setting reaches it, and without the `test-hooks` feature (which
    /// only this crate's tests enable) it does not exist.
    #[cfg(feature = "test-hooks")]
    pub fn with_extra_root_certificate(mut self, certificate: Vec<u8>) -> Self {
        self.extra_roots.push(CertificateDer::from(certificate));
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
        // The timeout is per request (see `fetch`), so clients with other
        // timeouts can share this one's connections (`with_timeout`).
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(resolver)
            .tls_backend_preconfigured(self.tls_config()?)
            .build()
            .map_err(|e| ProviderClientError(e.to_string()))?;
        Ok(ProviderClient { client, allow_non_public: self.allow_non_public, timeout })
    }

    /// The TLS configuration of provider connections: [`mozilla_roots_tls`]
    /// plus the test's roots, if any.
    fn tls_config(&self) -> Result<rustls::ClientConfig, ProviderClientError> {
        mozilla_roots_tls(&self.extra_roots).map_err(|e| ProviderClientError(e.to_string()))
    }
}

/// A TLS configuration that trusts Mozilla's roots as compiled in (and
/// `extra_roots`), whatever the operating system has (see the module
/// documentation): the aws-lc-rs provider named here rather than a
/// process-wide default, rustls's safe protocol versions (1.2, 1.3), and
/// HTTP/1.1 (the only HTTP version the workspace's client is built with).
pub fn mozilla_roots_tls(extra_roots: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for certificate in extra_roots {
        roots.add(certificate.clone())?;
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
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
        if quorumkey_verifier::config::has_user_info(url) {
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
    /// The same client (the same connections, address rule and TLS) with
    /// `timeout` per request.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self { timeout, ..self.clone() }
    }

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
        let mut request = self.client.get(parsed).timeout(self.timeout);
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
    /// URL, what the provider sent, or the names its certificate holds).
    fn classify(&self, error: &reqwest::Error) -> ProviderError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(current) = source {
            if let Some(refusal) = current.downcast_ref::<ResolveFailure>() {
                return match refusal {
                    ResolveFailure::NotPublic(range) => ProviderError::AddressNotPublic(range.clone()),
                    ResolveFailure::NoAddress => ProviderError::Resolve,
                };
            }
            if let Some(failure) = tls_failure(current) {
                return match failure {
                    rustls::Error::InvalidCertificate(why) => ProviderError::Certificate(certificate_refusal(why)),
                    _ => ProviderError::Tls,
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

/// The TLS error in `error`, if it is one. rustls's errors reach the HTTP
/// client inside an `io::Error`, itself inside another (the connector's),
/// and `io::Error::source()` skips the error it wraps: unwrapped by hand.
fn tls_failure<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = error;
    for _ in 0..8 {
        if let Some(failure) = current.downcast_ref::<rustls::Error>() {
            return Some(failure);
        }
        let inner: &(dyn std::error::Error + 'static) = current.downcast_ref::<std::io::Error>()?.get_ref()?;
        current = inner;
    }
    None
}

/// Why a certificate is refused, in words that carry nothing from it.
fn certificate_refusal(why: &CertificateError) -> &'static str {
    match why {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "is not valid for the provider's host name"
        }
        CertificateError::UnknownIssuer => "is not issued by a certificate authority that nodes trust",
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "has expired",
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => "is not valid yet",
        CertificateError::Revoked => "is revoked",
        _ => "is invalid",
    }
}
