//! How a node reaches identity providers, over the real HTTP stack on
//! 127.0.0.1 (test providers that count the requests they get):
//!
//! - a production node (no private addresses) connects to no loopback,
//!   private, link-local or unique-local provider, whether the URL names it
//!   as an IP literal (in any spelling) or a DNS name resolves to it (DNS
//!   rebinding): the provider sees no request; a development node does;
//! - user info in a URL is refused at the fetch too;
//! - redirects are not followed, to any host;
//! - errors name the failure and never quote the provider's answer;
//! - introspection answers are cached briefly (one provider call for a
//!   replayed token), never past the token's expiry, and calls per
//!   verifier are limited;
//! - cached JWKS keys are served while the provider is down only up to the
//!   max-stale bound;
//! - `https://` providers are reached over TLS (a test certificate
//!   authority made with rcgen, trusted through the test-only hook), with
//!   the address rule still applied before any handshake; a certificate for
//!   another name, from an authority nodes do not trust, or expired is
//!   refused and the provider gets no request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use quorumkey_devnet::dev_issuer::{DEV_AUDIENCE, DevIssuer, MintRequest};
use quorumkey_node::jwks_cache::{FetchFailure, JwksCache, JwksCachePolicy, JwksFetchError};
use quorumkey_node::provider_http::{ProviderAccess, ProviderError};
use quorumkey_node::token_verifier::{ProviderLimits, TokenVerifier, VerifyError};
use quorumkey_verifier::config::SubVerifierConfig;
use quorumkey_verifier::{AggregateConfig, IntrospectionConfig, JwtConfig, KeySource, TokenError, VerifierConfig};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::net::TcpListener;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// What the test provider answers, by path.
#[derive(Clone)]
struct Provider {
    issuer: Arc<DevIssuer>,
    hits: Arc<AtomicU64>,
    /// Where `/redirect` sends the client.
    redirect_to: String,
}

/// Text that must never appear in an error.
const MARKER: &str = "PROVIDER-SECRET-7f3a";

async fn answer(
    axum::extract::State(provider): axum::extract::State<Provider>,
    request: axum::extract::Request,
) -> Response {
    provider.hits.fetch_add(1, Ordering::SeqCst);
    let auth = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let user = auth.strip_prefix("Bearer ").unwrap_or_default().to_owned();
    match request.uri().path() {
        "/jwks" => axum::Json(provider.issuer.jwks()).into_response(),
        "/redirect" => (StatusCode::FOUND, [(header::LOCATION, provider.redirect_to.clone())]).into_response(),
        "/error" => (StatusCode::INTERNAL_SERVER_ERROR, format!("<html>{MARKER} stack trace</html>")).into_response(),
        "/html" => format!("<html>{MARKER}</html>").into_response(),
        "/no-keys" => axum::Json(serde_json::json!({ MARKER: [MARKER] })).into_response(),
        "/huge" => MARKER.repeat(10_000).into_response(),
        // Introspection: `Bearer user-N` is user N, issued now;
        // `Bearer soon-T` was issued at Unix time T; others 401.
        "/me" if user.starts_with("user-") => axum::Json(serde_json::json!({"id": user, "iat": now()})).into_response(),
        "/me" if user.starts_with("soon-") => {
            let issued_at: u64 = user["soon-".len()..].parse().unwrap_or_default();
            axum::Json(serde_json::json!({"id": user, "iat": issued_at})).into_response()
        }
        "/me" => (StatusCode::UNAUTHORIZED, MARKER).into_response(),
        "/me-odd" => axum::Json(serde_json::json!({"id": {MARKER: MARKER}, "iat": now()})).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

struct Served {
    issuer: Arc<DevIssuer>,
    hits: Arc<AtomicU64>,
    address: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Served {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn serve_provider(seed: u64, redirect_to: &str) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let issuer = Arc::new(DevIssuer::new(format!("http://{address}"), ChaCha20Rng::seed_from_u64(seed)).unwrap());
    let hits = Arc::new(AtomicU64::new(0));
    let provider = Provider { issuer: issuer.clone(), hits: hits.clone(), redirect_to: redirect_to.to_owned() };
    let app = axum::Router::new().fallback(answer).with_state(provider);
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Served { issuer, hits, address, server }
}

fn policy() -> JwksCachePolicy {
    JwksCachePolicy {
        max_age: Duration::from_secs(60),
        max_stale: Duration::from_secs(600),
        min_refetch_interval: Duration::ZERO,
        fetch_timeout: Duration::from_secs(2),
    }
}

fn verifier_with(access: &ProviderAccess, policy: JwksCachePolicy, limits: ProviderLimits) -> TokenVerifier {
    TokenVerifier::new(Arc::new(JwksCache::new(policy, access).unwrap()), access, limits).unwrap()
}

fn production() -> TokenVerifier {
    verifier_with(&ProviderAccess::public_only(), policy(), ProviderLimits::default())
}

fn development() -> TokenVerifier {
    verifier_with(&ProviderAccess::development(), policy(), ProviderLimits::default())
}

/// The provider's JWT verifier with its keys at `jwks_url` (set directly,
/// as a node would act on it: the ledger's check is another test's).
fn jwt_config(issuer: &DevIssuer, jwks_url: &str) -> JwtConfig {
    let VerifierConfig::Jwt(mut config) =
        VerifierConfig::parse(issuer.verifier_config(DEV_AUDIENCE).as_bytes()).unwrap()
    else {
        panic!("a JWT verifier")
    };
    config.keys = KeySource::JwksUrl(jwks_url.to_owned());
    config
}

fn introspection(url: &str) -> IntrospectionConfig {
    IntrospectionConfig {
        url: url.to_owned(),
        user_id_pointer: "/id".to_owned(),
        issued_at_pointer: "/iat".to_owned(),
        freshness_secs: 600,
        lowercase_verifier_id: false,
    }
}

fn mint(issuer: &DevIssuer) -> String {
    issuer.mint(&MintRequest::for_email("alice@example.com")).unwrap().id_token
}

fn not_public(error: &VerifyError) -> bool {
    matches!(
        error,
        VerifyError::Keys(JwksFetchError::Unavailable(FetchFailure::Provider(ProviderError::AddressNotPublic(_))))
            | VerifyError::Introspection(ProviderError::AddressNotPublic(_))
    )
}

#[tokio::test]
async fn a_production_node_connects_to_no_loopback_or_private_provider() {
    let served = serve_provider(1, "").await;
    let token = mint(&served.issuer);
    let port = served.address.port();
    let production = production();

    // The provider on 127.0.0.1, as a JWKS URL and as an introspection
    // endpoint: refused before any connection.
    let error =
        production.verify_jwt(&jwt_config(&served.issuer, &served.url("/jwks")), &token, now()).await.unwrap_err();
    assert!(not_public(&error), "{error:?}");
    assert!(error.to_string().contains("not public") && error.to_string().contains("loopback"), "{error}");
    let error =
        production.verify_introspection("chat", &introspection(&served.url("/me")), "user-1", now()).await.unwrap_err();
    assert!(not_public(&error), "{error:?}");
    // Every other spelling of this machine, and private, link-local,
    // unique-local and IPv4-mapped addresses: refused at once (no connect
    // attempt, which would wait for the timeout on an unrouted address).
    for url in [
        format!("http://[::ffff:127.0.0.1]:{port}/jwks"),
        format!("http://127.1:{port}/jwks"),
        format!("http://0x7f000001:{port}/jwks"),
        format!("http://0.0.0.0:{port}/jwks"),
        format!("http://[::1]:{port}/jwks"),
        "http://10.0.0.1/jwks".to_owned(),
        "http://192.168.1.1/jwks".to_owned(),
        "http://172.16.0.1/jwks".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fd00::1]/jwks".to_owned(),
        "http://[fe80::1]/jwks".to_owned(),
        "http://[::ffff:10.0.0.1]/jwks".to_owned(),
        "http://[::ffff:169.254.169.254]/jwks".to_owned(),
        "http://[64:ff9b::10.0.0.1]/jwks".to_owned(),
    ] {
        let started = Instant::now();
        let error = production.verify_jwt(&jwt_config(&served.issuer, &url), &token, now()).await.unwrap_err();
        assert!(not_public(&error), "{url}: {error:?}");
        let error = production.verify_introspection("chat", &introspection(&url), "user-1", now()).await.unwrap_err();
        assert!(not_public(&error), "{url}: {error:?}");
        assert!(started.elapsed() < Duration::from_secs(1), "{url}: refused without connecting");
    }
    // `localhost` resolves to loopback: refused after resolution.
    let error = production
        .verify_jwt(&jwt_config(&served.issuer, &format!("http://localhost:{port}/jwks")), &token, now())
        .await
        .unwrap_err();
    assert!(not_public(&error), "{error:?}");
    assert_eq!(served.hits(), 0, "the provider on this machine got no request from a production node");

    // A development node reaches the same provider: the refusals above are
    // the address rule, not a broken provider.
    let development = development();
    development.verify_jwt(&jwt_config(&served.issuer, &served.url("/jwks")), &token, now()).await.unwrap();
    development.verify_introspection("chat", &introspection(&served.url("/me")), "user-1", now()).await.unwrap();
    assert_eq!(served.hits(), 2);
    served.server.abort();
}

/// A resolver answering what an attacker's DNS server would: every name
/// resolves to `addresses`. Counts the lookups.
struct AttackerDns {
    addresses: Vec<SocketAddr>,
    lookups: Arc<AtomicU64>,
}

impl Resolve for AttackerDns {
    fn resolve(&self, _name: Name) -> Resolving {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let addresses = self.addresses.clone();
        Box::pin(async move { Ok(Box::new(addresses.into_iter()) as Addrs) })
    }
}

#[tokio::test]
async fn a_name_resolving_to_a_private_address_is_refused_after_resolution() {
    let served = serve_provider(2, "").await;
    let token = mint(&served.issuer);
    let lookups = Arc::new(AtomicU64::new(0));
    // `provider.example` passes the configuration check (a DNS name) and
    // resolves to the test provider on 127.0.0.1 and to private and
    // link-local addresses: DNS rebinding's second answer.
    let dns = |addresses: Vec<SocketAddr>| Arc::new(AttackerDns { addresses, lookups: lookups.clone() });
    let rebinding = vec![
        served.address,
        SocketAddr::new([10, 0, 0, 1].into(), 80),
        SocketAddr::new([169, 254, 169, 254].into(), 80),
        "[fd00::1]:80".parse().unwrap(),
        format!("[::ffff:127.0.0.1]:{}", served.address.port()).parse().unwrap(),
    ];
    // The ledger accepts the name (nodes fetch it over http here: the test
    // provider has no TLS).
    quorumkey_verifier::config::check_url("keys.jwks_url", "https://provider.example/jwks").unwrap();
    let jwks_url = format!("http://provider.example:{}/jwks", served.address.port());
    let config = jwt_config(&served.issuer, &jwks_url);

    let access = ProviderAccess::public_only().with_resolver(dns(rebinding.clone()));
    let production = verifier_with(&access, policy(), ProviderLimits::default());
    let error = production.verify_jwt(&config, &token, now()).await.unwrap_err();
    assert!(not_public(&error), "{error:?}");
    let me = jwks_url.replace("/jwks", "/me");
    let error = production.verify_introspection("chat", &introspection(&me), "user-1", now()).await.unwrap_err();
    assert!(not_public(&error), "{error:?}");
    assert!(lookups.load(Ordering::SeqCst) >= 2, "the name was resolved, then refused");
    assert_eq!(served.hits(), 0, "no request reached the address the name resolved to");

    // The same resolver on a development node does reach the provider
    // (the name really leads there).
    let access = ProviderAccess::development().with_resolver(dns(rebinding));
    let development = verifier_with(&access, policy(), ProviderLimits::default());
    development.verify_jwt(&config, &token, now()).await.unwrap();
    assert_eq!(served.hits(), 1);
    served.server.abort();
}

#[tokio::test]
async fn user_info_and_redirects_are_refused_even_on_a_development_node() {
    let target = serve_provider(3, "").await;
    let redirect_to = format!("{}/jwks", target.url(""));
    let redirector = serve_provider(4, &redirect_to).await;
    let token = mint(&target.issuer);
    let development = development();

    // `http://localhost:1@127.0.0.1:PORT/` goes to 127.0.0.1; refused
    // before anything is sent, whatever the address rule.
    let tricky = format!("http://localhost:1@{}/jwks", target.address);
    let error = development.verify_jwt(&jwt_config(&target.issuer, &tricky), &token, now()).await.unwrap_err();
    assert!(
        matches!(&error, VerifyError::Keys(JwksFetchError::Unavailable(FetchFailure::Provider(ProviderError::Url(_))))),
        "{error:?}"
    );
    assert!(error.to_string().contains("user name or password"), "{error}");
    let error = development.verify_introspection("chat", &introspection(&tricky), "user-1", now()).await.unwrap_err();
    assert!(matches!(error, VerifyError::Introspection(ProviderError::Url(_))), "{error:?}");

    // A redirect, to a valid JWKS or to the metadata service: not followed.
    for url in [redirector.url("/redirect")] {
        let error = development.verify_jwt(&jwt_config(&target.issuer, &url), &token, now()).await.unwrap_err();
        assert!(
            matches!(
                &error,
                VerifyError::Keys(JwksFetchError::Unavailable(FetchFailure::Provider(ProviderError::Redirect(302))))
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("redirect (HTTP 302)"), "{error}");
        let error = development.verify_introspection("chat", &introspection(&url), "user-1", now()).await.unwrap_err();
        assert_eq!(error, VerifyError::Introspection(ProviderError::Redirect(302)));
    }
    assert_eq!(redirector.hits(), 2);
    assert_eq!(target.hits(), 0, "the redirect's target got no request");
    let metadata = serve_provider(5, "http://169.254.169.254/latest/meta-data/iam/").await;
    let error = development
        .verify_jwt(&jwt_config(&target.issuer, &metadata.url("/redirect")), &token, now())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("nodes do not follow redirects"), "{error}");
    for served in [target, redirector, metadata] {
        served.server.abort();
    }
}

#[tokio::test]
async fn errors_name_the_failure_and_never_quote_the_provider() {
    // Its redirect's target carries the marker too (an HTTP client's error
    // text names the URL it failed on).
    let served = serve_provider(6, &format!("http://127.0.0.1:1/{MARKER}")).await;
    let token = mint(&served.issuer);
    let development = development();
    for (path, expected) in [
        ("/error", "HTTP 500"),
        ("/html", "not JSON"),
        ("/no-keys", "no \"keys\" array"),
        ("/huge", "larger than 65536 bytes"),
        ("/missing", "HTTP 404"),
        ("/redirect", "redirect (HTTP 302)"),
    ] {
        let error =
            development.verify_jwt(&jwt_config(&served.issuer, &served.url(path)), &token, now()).await.unwrap_err();
        let text = error.to_string();
        assert!(text.contains(expected), "{path}: {text}");
        assert!(!text.contains(MARKER), "{path}: the error quotes the provider: {text}");
    }
    for (path, token, expected) in [
        ("/error", "user-1", "HTTP 500"),
        ("/html", "user-1", "not a JSON object"),
        ("/huge", "user-1", "larger than 65536 bytes"),
        ("/me", "nobody", "HTTP 401"),
        ("/me-odd", "user-1", "/id is invalid"),
        ("/redirect", "user-1", "redirect (HTTP 302)"),
    ] {
        let error = development
            .verify_introspection("chat", &introspection(&served.url(path)), token, now())
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains(expected), "{path}: {text}");
        assert!(!text.contains(MARKER), "{path}: the error quotes the provider: {text}");
    }
    served.server.abort();
}

/// A script's sub-token needs its answer's fields: it gets them fresh from
/// the provider (within the call budget), while the answer cache, which
/// may hold a million entries, keeps none of them (an answer may be 64
/// KiB; an entry without its fields is a few hundred bytes).
#[tokio::test]
async fn claims_come_fresh_and_the_answer_cache_keeps_none() {
    let served = serve_provider(7, "").await;
    let verifier = verifier_with(&ProviderAccess::development(), policy(), ProviderLimits::default());
    let config = introspection(&served.url("/me"));
    let plain = verifier.verify_introspection("chat", &config, "user-1", now()).await.unwrap();
    assert!(plain.claims.is_empty(), "a plain check carries no claims");
    assert_eq!(served.hits(), 1);
    let cached = verifier.verify_introspection("chat", &config, "user-1", now()).await.unwrap();
    assert!(cached.claims.is_empty());
    assert_eq!(served.hits(), 1, "the plain check reuses the answer");
    let with_claims = verifier.verify_introspection_claims("chat", &config, "user-1", now()).await.unwrap();
    assert_eq!(served.hits(), 2, "claims come from a fresh answer");
    assert_eq!(with_claims.verifier_id, plain.verifier_id);
    assert!(!with_claims.claims.is_empty(), "the answer's fields");
    assert_eq!(verifier.cached_answers(), 1);
    served.server.abort();
}

#[tokio::test]
async fn replayed_tokens_reuse_the_providers_answer() {
    let served = serve_provider(7, "").await;
    let limits = ProviderLimits { answer_ttl: Duration::from_millis(700), ..ProviderLimits::default() };
    let verifier = verifier_with(&ProviderAccess::development(), policy(), limits);
    let config = introspection(&served.url("/me"));

    // One token checked ten times (a reveal replayed): one call.
    for _ in 0..10 {
        let identity = verifier.verify_introspection("chat", &config, "user-1", now()).await.unwrap();
        assert_eq!(identity.verifier_id, "user-1");
    }
    assert_eq!(served.hits(), 1, "the answer was reused");
    // A refused token too: one call, the same refusal every time.
    for _ in 0..5 {
        assert_eq!(
            verifier.verify_introspection("chat", &config, "nobody", now()).await,
            Err(VerifyError::Refused(401))
        );
    }
    assert_eq!(served.hits(), 2);
    // Another token, another verifier, another configuration: its own call.
    verifier.verify_introspection("chat", &config, "user-2", now()).await.unwrap();
    verifier.verify_introspection("other", &config, "user-1", now()).await.unwrap();
    let lowercased = IntrospectionConfig { lowercase_verifier_id: true, ..config.clone() };
    verifier.verify_introspection("chat", &lowercased, "user-1", now()).await.unwrap();
    assert_eq!(served.hits(), 5);
    // Past the cache's lifetime the provider is asked again.
    tokio::time::sleep(Duration::from_millis(800)).await;
    verifier.verify_introspection("chat", &config, "user-1", now()).await.unwrap();
    assert_eq!(served.hits(), 6);

    // Never past the token's own expiry: a token issued 598 s ago is
    // acceptable (freshness 600 s) for 2 more seconds, so its answer is
    // kept at most that long even with a long cache lifetime.
    let limits = ProviderLimits { answer_ttl: Duration::from_secs(60), ..ProviderLimits::default() };
    let verifier = verifier_with(&ProviderAccess::development(), policy(), limits);
    let soon = format!("soon-{}", now() - 598);
    verifier.verify_introspection("chat", &config, &soon, now()).await.unwrap();
    verifier.verify_introspection("chat", &config, &soon, now()).await.unwrap();
    assert_eq!(served.hits(), 7);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert!(matches!(
        verifier.verify_introspection("chat", &config, &soon, now()).await,
        Err(VerifyError::Token(TokenError::TooOld { .. }))
    ));
    assert_eq!(served.hits(), 8, "the expired answer was not reused");

    // The cache is bounded.
    let limits = ProviderLimits { answer_cache_entries: 3, ..ProviderLimits::default() };
    let verifier = verifier_with(&ProviderAccess::development(), policy(), limits);
    for user in 0..10 {
        verifier.verify_introspection("chat", &config, &format!("user-{user}"), now()).await.unwrap();
    }
    assert_eq!(verifier.cached_answers(), 3);
    served.server.abort();
}

#[tokio::test]
async fn provider_calls_are_limited_per_verifier() {
    let served = serve_provider(8, "").await;
    let limits =
        ProviderLimits { calls_per_second_per_verifier: 2, call_burst_per_verifier: 2, ..ProviderLimits::default() };
    let verifier = verifier_with(&ProviderAccess::development(), policy(), limits);
    let config = introspection(&served.url("/me"));
    verifier.verify_introspection("chat", &config, "user-1", now()).await.unwrap();
    verifier.verify_introspection("chat", &config, "user-2", now()).await.unwrap();
    // Fresh tokens past the budget: refused without a call.
    for user in 3..10 {
        let error = verifier.verify_introspection("chat", &config, &format!("user-{user}"), now()).await.unwrap_err();
        assert_eq!(error, VerifyError::ProviderBusy { per_second: 2 });
        assert!(error.is_provider_busy());
        assert!(error.to_string().contains("identity provider (2 per second) is spent"), "{error}");
    }
    assert_eq!(served.hits(), 2);
    // A cached answer costs nothing; another verifier has its own budget.
    verifier.verify_introspection("chat", &config, "user-1", now()).await.unwrap();
    verifier.verify_introspection("other", &config, "user-3", now()).await.unwrap();
    assert_eq!(served.hits(), 3);
    // Inside an aggregate, the limit is the aggregate verifier's and is
    // still recognised as such.
    let aggregate = AggregateConfig {
        sub_verifiers: [("chat".to_owned(), SubVerifierConfig::Introspection(config.clone()))].into(),
        require_all: true,
    };
    let ids = vec!["chat".to_owned()];
    let error = verifier.verify_aggregate("chat", &aggregate, "user-4", &ids, &["user-4".to_owned()], now()).await;
    assert!(error.unwrap_err().is_provider_busy());
    // The budget refills.
    tokio::time::sleep(Duration::from_millis(600)).await;
    verifier.verify_introspection("chat", &config, "user-5", now()).await.unwrap();
    assert_eq!(served.hits(), 4);
    served.server.abort();
}

#[tokio::test]
async fn cached_keys_are_served_while_the_provider_is_down_up_to_the_bound() {
    let served = serve_provider(9, "").await;
    let token = mint(&served.issuer);
    let config = jwt_config(&served.issuer, &served.url("/jwks"));
    let policy = JwksCachePolicy {
        max_age: Duration::from_millis(100),
        max_stale: Duration::from_millis(1000),
        min_refetch_interval: Duration::ZERO,
        fetch_timeout: Duration::from_millis(500),
    };
    let verifier = verifier_with(&ProviderAccess::development(), policy, ProviderLimits::default());
    let fetched = Instant::now();
    verifier.verify_jwt(&config, &token, now()).await.unwrap();
    served.server.abort();
    let _ = served.server.await;

    // Past the max age, the provider down: the cached keys still serve.
    tokio::time::sleep(Duration::from_millis(300)).await;
    verifier.verify_jwt(&config, &token, now()).await.unwrap();
    assert!(fetched.elapsed() < Duration::from_millis(900));
    // Past the max-stale bound: refused, saying why.
    tokio::time::sleep(Duration::from_millis(1000).saturating_sub(fetched.elapsed()) + Duration::from_millis(50)).await;
    let error = verifier.verify_jwt(&config, &token, now()).await.unwrap_err();
    assert!(matches!(error, VerifyError::Keys(JwksFetchError::Stale { .. })), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("has not answered for over") && text.contains("cannot connect"), "{text}");
    assert!(verifier.jwks().fetch_count() >= 3);
}

#[tokio::test]
async fn hostile_hosts_are_refused_without_a_lookup() {
    // IP literals are never handed to the resolver; names are, and the
    // resolver's refusal is what the error says.
    let lookups = Arc::new(AtomicU64::new(0));
    let access = ProviderAccess::public_only()
        .with_resolver(Arc::new(AttackerDns { addresses: Vec::new(), lookups: lookups.clone() }));
    let verifier = verifier_with(&access, policy(), ProviderLimits::default());
    let error =
        verifier.verify_introspection("chat", &introspection("http://10.1.2.3/me"), "user-1", now()).await.unwrap_err();
    assert!(not_public(&error), "{error:?}");
    assert_eq!(lookups.load(Ordering::SeqCst), 0);
    let error = verifier
        .verify_introspection("chat", &introspection("http://nowhere.example/me"), "user-1", now())
        .await
        .unwrap_err();
    assert_eq!(error, VerifyError::Introspection(ProviderError::Resolve));
    assert_eq!(lookups.load(Ordering::SeqCst), 1);
}

/// A certificate authority made for one test, and the certificates it
/// issues.
struct TestAuthority {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    certificate: Vec<u8>,
}

impl TestAuthority {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "quorumkey test authority");
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap().der().to_vec();
        Self { issuer: rcgen::Issuer::new(params, key), certificate }
    }

    /// A server certificate for `names`, valid until `not_after`, and its
    /// key (PKCS#8 DER).
    fn issue(&self, names: &[&str], not_after: (i32, u8, u8)) -> (Vec<u8>, Vec<u8>) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap().der().to_vec();
        (certificate, key.serialize_der())
    }
}

/// Accepts TLS connections for the test provider: counts the handshakes
/// that succeed and those that fail (the HTTP requests are counted by the
/// provider, after the handshake).
struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    handshakes: Arc<AtomicU64>,
    failed_handshakes: Arc<AtomicU64>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, address)) = self.tcp.accept().await else { continue };
            match self.acceptor.accept(stream).await {
                Ok(tls) => {
                    self.handshakes.fetch_add(1, Ordering::SeqCst);
                    return (tls, address);
                }
                Err(_) => {
                    self.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

struct TlsServed {
    issuer: Arc<DevIssuer>,
    hits: Arc<AtomicU64>,
    handshakes: Arc<AtomicU64>,
    failed_handshakes: Arc<AtomicU64>,
    address: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl TlsServed {
    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.address.port())
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    fn handshakes(&self) -> (u64, u64) {
        (self.handshakes.load(Ordering::SeqCst), self.failed_handshakes.load(Ordering::SeqCst))
    }
}

/// The test provider over TLS only, on 127.0.0.1, with `certificate`.
async fn serve_tls_provider(seed: u64, (certificate, key): (Vec<u8>, Vec<u8>)) -> TlsServed {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(key)),
        )
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = tcp.local_addr().unwrap();
    let (handshakes, failed_handshakes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        handshakes: handshakes.clone(),
        failed_handshakes: failed_handshakes.clone(),
    };
    let issuer =
        Arc::new(DevIssuer::new("https://provider.example".to_owned(), ChaCha20Rng::seed_from_u64(seed)).unwrap());
    let hits = Arc::new(AtomicU64::new(0));
    let state = Provider { issuer: issuer.clone(), hits: hits.clone(), redirect_to: String::new() };
    let app = axum::Router::new().fallback(answer).with_state(state);
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    TlsServed { issuer, hits, handshakes, failed_handshakes, address, server }
}

/// Every name resolves to the test provider (as the provider's DNS would
/// resolve its own name).
fn dns_to(address: SocketAddr) -> Arc<dyn Resolve> {
    Arc::new(AttackerDns { addresses: vec![address], lookups: Arc::new(AtomicU64::new(0)) })
}

/// The provider error inside a failed JWT or introspection check.
fn provider_error(error: &VerifyError) -> Option<&ProviderError> {
    match error {
        VerifyError::Keys(JwksFetchError::Unavailable(FetchFailure::Provider(error)))
        | VerifyError::Introspection(error) => Some(error),
        _ => None,
    }
}

const FAR_FUTURE: (i32, u8, u8) = (4000, 1, 1);

#[tokio::test]
async fn https_providers_are_reached_over_tls_and_the_address_rule_still_applies() {
    let authority = TestAuthority::new();
    let served = serve_tls_provider(20, authority.issue(&["provider.example"], FAR_FUTURE)).await;
    let token = mint(&served.issuer);
    let (jwks_url, me_url) = (served.url("provider.example", "/jwks"), served.url("provider.example", "/me"));
    // The ledger accepts these URLs as they are (https to a DNS name).
    quorumkey_verifier::config::check_url("keys.jwks_url", &jwks_url).unwrap();
    quorumkey_verifier::config::check_url("url", &me_url).unwrap();

    // A development node (the provider is on 127.0.0.1) that trusts the
    // test's authority: the keys and an introspection answer, over TLS.
    let access = ProviderAccess::development()
        .with_resolver(dns_to(served.address))
        .with_extra_root_certificate(authority.certificate.clone());
    let verifier = verifier_with(&access, policy(), ProviderLimits::default());
    let identity = verifier.verify_jwt(&jwt_config(&served.issuer, &jwks_url), &token, now()).await.unwrap();
    assert_eq!(identity.verifier_id, "alice@example.com");
    let identity = verifier.verify_introspection("chat", &introspection(&me_url), "user-1", now()).await.unwrap();
    assert_eq!(identity.verifier_id, "user-1");
    assert_eq!(served.hits(), 2);
    let (handshakes, failed) = served.handshakes();
    assert!(handshakes >= 1 && failed == 0, "{handshakes} handshakes, {failed} failed");

    // A production node with the same name, resolver and trusted
    // authority: the address rule comes first, so there is no connection
    // and no handshake.
    let production = verifier_with(
        &ProviderAccess::public_only()
            .with_resolver(dns_to(served.address))
            .with_extra_root_certificate(authority.certificate.clone()),
        policy(),
        ProviderLimits::default(),
    );
    for url in [jwks_url.clone(), served.url("127.0.0.1", "/jwks")] {
        let error = production.verify_jwt(&jwt_config(&served.issuer, &url), &token, now()).await.unwrap_err();
        assert!(not_public(&error), "{url}: {error:?}");
        let error = production.verify_introspection("chat", &introspection(&url), "user-2", now()).await.unwrap_err();
        assert!(not_public(&error), "{url}: {error:?}");
    }
    assert_eq!(served.hits(), 2);
    assert_eq!(served.handshakes(), (handshakes, 0), "no handshake from the production node");

    // Redirects over https are not followed either.
    let redirect = jwt_config(&served.issuer, &served.url("provider.example", "/redirect"));
    let error = verifier.verify_jwt(&redirect, &token, now()).await.unwrap_err();
    assert_eq!(provider_error(&error), Some(&ProviderError::Redirect(302)), "{error:?}");
    served.server.abort();
}

#[tokio::test]
async fn a_provider_certificate_for_another_name_or_from_an_untrusted_authority_is_refused() {
    let authority = TestAuthority::new();
    let served = serve_tls_provider(21, authority.issue(&["provider.example"], FAR_FUTURE)).await;
    let token = mint(&served.issuer);
    let trusting = ProviderAccess::development()
        .with_resolver(dns_to(served.address))
        .with_extra_root_certificate(authority.certificate.clone());
    let verifier = verifier_with(&trusting, policy(), ProviderLimits::default());
    // Mozilla's roots only: what a real node trusts.
    let mozilla_only = verifier_with(
        &ProviderAccess::development().with_resolver(dns_to(served.address)),
        policy(),
        ProviderLimits::default(),
    );
    let expired_server = serve_tls_provider(22, authority.issue(&["provider.example"], (2001, 1, 1))).await;
    let trusting_expired = verifier_with(
        &ProviderAccess::development()
            .with_resolver(dns_to(expired_server.address))
            .with_extra_root_certificate(authority.certificate.clone()),
        policy(),
        ProviderLimits::default(),
    );

    let another_name = "is not valid for the provider's host name";
    let untrusted = "is not issued by a certificate authority that nodes trust";
    let cases = [
        // The name resolves to the provider, whose certificate names
        // provider.example only.
        (&verifier, served.url("other.example", "/jwks"), another_name),
        // An IP literal the certificate does not name.
        (&verifier, served.url("127.0.0.1", "/jwks"), another_name),
        (&mozilla_only, served.url("provider.example", "/jwks"), untrusted),
        (&trusting_expired, expired_server.url("provider.example", "/jwks"), "has expired"),
    ];
    for (verifier, url, why) in cases {
        let error = verifier.verify_jwt(&jwt_config(&served.issuer, &url), &token, now()).await.unwrap_err();
        assert_eq!(provider_error(&error), Some(&ProviderError::Certificate(why)), "{url}: {error:?}");
        let text = error.to_string();
        assert!(text.contains("TLS certificate") && text.contains(why), "{text}");
        assert!(!text.contains("example"), "the certificate's and the URL's names are not quoted: {text}");
        let me = url.replace("/jwks", "/me");
        let error = verifier.verify_introspection("chat", &introspection(&me), "user-1", now()).await.unwrap_err();
        assert_eq!(error, VerifyError::Introspection(ProviderError::Certificate(why)), "{me}");
    }
    assert_eq!(served.hits() + expired_server.hits(), 0, "no request went past a refused certificate");
    let (ok, failed) = served.handshakes();
    assert_eq!(ok, 0);
    assert!(failed >= 6, "the client aborted the handshakes: {failed}");

    // Not TLS at all (an http server at an https URL): the handshake fails.
    let plain = serve_provider(23, "").await;
    let error = verifier
        .verify_introspection(
            "chat",
            &introspection(&format!("https://127.0.0.1:{}/me", plain.address.port())),
            "user-1",
            now(),
        )
        .await
        .unwrap_err();
    assert_eq!(error, VerifyError::Introspection(ProviderError::Tls), "{error:?}");

    // The same certificate, named right: accepted (the refusals above are
    // the name, the authority and the date).
    verifier
        .verify_jwt(&jwt_config(&served.issuer, &served.url("provider.example", "/jwks")), &token, now())
        .await
        .unwrap();
    assert_eq!(served.hits(), 1);
    for server in [served.server, expired_server.server, plain.server] {
        server.abort();
    }
}

/// What TLS costs a provider call on 127.0.0.1: a new connection (and
/// handshake) per call against plain HTTP, and a pooled connection.
/// `cargo test -p quorumkey-node --release --test providers -- --ignored --nocapture tls_cost`
#[tokio::test]
#[ignore = "a measurement; run it by name"]
async fn tls_cost() {
    const CALLS: u32 = 200;
    let authority = TestAuthority::new();
    let tls = serve_tls_provider(30, authority.issue(&["provider.example"], FAR_FUTURE)).await;
    let plain = serve_provider(31, "").await;
    let access = ProviderAccess::development()
        .with_resolver(dns_to(tls.address))
        .with_extra_root_certificate(authority.certificate.clone());
    let url = tls.url("provider.example", "/jwks");
    let plain_url = plain.url("/jwks");
    let timed = |fresh: bool, url: String| {
        let access = access.clone();
        async move {
            let pooled = access.client(Duration::from_secs(5)).unwrap();
            let started = Instant::now();
            for _ in 0..CALLS {
                let client = if fresh { access.client(Duration::from_secs(5)).unwrap() } else { pooled.clone() };
                client.get(&url, None, 1 << 20).await.unwrap();
            }
            started.elapsed() / CALLS
        }
    };
    let https_fresh = timed(true, url.clone()).await;
    assert_eq!(tls.handshakes(), (u64::from(CALLS), 0), "one handshake per fresh client");
    let http_fresh = timed(true, plain_url.clone()).await;
    let https_pooled = timed(false, url).await;
    let http_pooled = timed(false, plain_url).await;
    assert_eq!(tls.handshakes().0, u64::from(CALLS) + 1, "a pooled client makes one handshake");
    println!(
        "per call: https new connection {https_fresh:?}, http new connection {http_fresh:?}, \
         https pooled {https_pooled:?}, http pooled {http_pooled:?}"
    );
    tls.server.abort();
    plain.server.abort();
}
