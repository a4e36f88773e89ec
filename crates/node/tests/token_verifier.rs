//! Token checks against the development issuer served on 127.0.0.1 (real
//! HTTP): keys fetched once and cached, a rotated key picked up by one
//! refetch, made-up kids throttled, cached keys kept while the provider is
//! down, a clear error when it is down and nothing is cached, and a hanging
//! provider cut off by the fetch timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use quorumkey_devnet::dev_issuer::{DEV_AUDIENCE, DevIssuer, MintRequest, router};
use quorumkey_node::jwks_cache::{JwksCache, JwksCachePolicy, JwksFetchError};
use quorumkey_node::provider_http::ProviderAccess;
use quorumkey_node::token_verifier::{ProviderLimits, TokenVerifier, VerifyError};
use quorumkey_verifier::{JwtConfig, TokenError, VerifierConfig};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

struct Served {
    issuer: Arc<DevIssuer>,
    server: JoinHandle<()>,
    address: std::net::SocketAddr,
}

async fn serve(seed: u64) -> Served {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let issuer = Arc::new(DevIssuer::new(format!("http://{address}"), ChaCha20Rng::seed_from_u64(seed)).unwrap());
    let app = router(issuer.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Served { issuer, server, address }
}

fn jwt_config(issuer: &DevIssuer) -> JwtConfig {
    match VerifierConfig::parse(issuer.verifier_config(DEV_AUDIENCE).as_bytes()).unwrap() {
        VerifierConfig::Jwt(config) => config,
        other => panic!("{other:?}"),
    }
}

fn mint(issuer: &DevIssuer, email: &str) -> String {
    issuer.mint(&MintRequest::for_email(email)).unwrap().id_token
}

fn policy(refetch_ms: u64, max_age_ms: u64) -> JwksCachePolicy {
    JwksCachePolicy {
        max_age: Duration::from_millis(max_age_ms),
        max_stale: Duration::from_secs(3600),
        min_refetch_interval: Duration::from_millis(refetch_ms),
        fetch_timeout: Duration::from_millis(500),
    }
}

/// A token verifier of a development node (providers on 127.0.0.1 are
/// allowed), with `policy` for keys and the default provider limits.
fn dev_verifier(policy: JwksCachePolicy) -> TokenVerifier {
    let access = ProviderAccess::development();
    TokenVerifier::new(Arc::new(JwksCache::new(policy, &access).unwrap()), &access, ProviderLimits::default()).unwrap()
}

/// The token with its header's kid replaced (signature left as it was).
fn with_kid(token: &str, kid: &str) -> String {
    let (header, rest) = token.split_once('.').unwrap();
    let mut header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"] = serde_json::json!(kid);
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()))
}

#[tokio::test]
async fn keys_are_fetched_once_and_a_rotation_is_picked_up_by_one_refetch() {
    let served = serve(1).await;
    let config = jwt_config(&served.issuer);
    let verifier = dev_verifier(policy(200, 60_000));

    let token = mint(&served.issuer, "Alice@Example.com");
    let verified = verifier.verify_jwt(&config, &token, now()).await.unwrap();
    assert_eq!(verified.verifier_id, "alice@example.com");
    for _ in 0..5 {
        verifier.verify_jwt(&config, &mint(&served.issuer, "bob@example.com"), now()).await.unwrap();
    }
    assert_eq!(verifier.jwks().fetch_count(), 1, "cached");

    // The issuer rotates: the new kid is unknown to the cache, so one
    // refetch (after the throttle interval) picks it up.
    served.issuer.rotate().unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let rotated = mint(&served.issuer, "carol@example.com");
    verifier.verify_jwt(&config, &rotated, now()).await.unwrap();
    assert_eq!(verifier.jwks().fetch_count(), 2);
    // The previous key is still published: its tokens still verify.
    verifier.verify_jwt(&config, &token, now()).await.unwrap();
    assert_eq!(verifier.jwks().fetch_count(), 2);

    // Made-up kids: at most one refetch per interval, then "unknown kid".
    tokio::time::sleep(Duration::from_millis(250)).await;
    for _ in 0..20 {
        let forged = with_kid(&rotated, "made-up");
        let result = verifier.verify_jwt(&config, &forged, now()).await;
        assert_eq!(result, Err(VerifyError::Token(TokenError::UnknownKey { kid: "made-up".to_owned() })));
    }
    assert_eq!(verifier.jwks().fetch_count(), 3, "one refetch for twenty unknown kids");

    // Refused tokens cost no fetch at all: alg none, HMAC, garbage.
    let fetches = verifier.jwks().fetch_count();
    let (_, rest) = rotated.split_once('.').unwrap();
    let none = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"x"}"#));
    assert_eq!(verifier.verify_jwt(&config, &none, now()).await, Err(VerifyError::Token(TokenError::AlgNone)));
    let hmac = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":"x"}"#));
    assert!(matches!(
        verifier.verify_jwt(&config, &hmac, now()).await,
        Err(VerifyError::Token(TokenError::HmacRefused(_)))
    ));
    assert!(verifier.verify_jwt(&config, "garbage", now()).await.is_err());
    assert_eq!(verifier.jwks().fetch_count(), fetches);
    served.server.abort();
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_provider_is_down() {
    let served = serve(2).await;
    let config = jwt_config(&served.issuer);
    let verifier = dev_verifier(policy(1000, 200));
    let token = mint(&served.issuer, "dave@example.com");
    verifier.verify_jwt(&config, &token, now()).await.unwrap();

    served.server.abort();
    let _ = served.server.await;
    // Past the keys' max age and the refetch interval: the refetch fails,
    // the cached keys answer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    verifier.verify_jwt(&config, &token, now()).await.unwrap();
    assert_eq!(verifier.jwks().fetch_count(), 2, "one failed refetch");
    // Within the throttle interval, no new attempt.
    verifier.verify_jwt(&config, &token, now()).await.unwrap();
    assert_eq!(verifier.jwks().fetch_count(), 2);
}

#[tokio::test]
async fn no_cached_keys_and_the_provider_down_is_a_clear_error() {
    let served = serve(3).await;
    let config = jwt_config(&served.issuer);
    let token = mint(&served.issuer, "erin@example.com");
    served.server.abort();
    let _ = served.server.await;
    let verifier = dev_verifier(policy(60_000, 60_000));
    let error = verifier.verify_jwt(&config, &token, now()).await.unwrap_err();
    assert!(matches!(error, VerifyError::Keys(JwksFetchError::Unavailable(_))), "{error:?}");
    assert!(error.to_string().contains("unreachable and no keys are cached"), "{error}");
    // Throttled: the next login fails at once, without another attempt.
    let started = Instant::now();
    assert!(verifier.verify_jwt(&config, &token, now()).await.is_err());
    assert_eq!(verifier.jwks().fetch_count(), 1);
    assert!(started.elapsed() < Duration::from_secs(1));
    let _ = served.address;
}

#[tokio::test]
async fn a_hanging_provider_is_cut_off_by_the_timeout() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let hang = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            open.push(socket);
        }
    });
    let issuer = DevIssuer::new(format!("http://{address}"), ChaCha20Rng::seed_from_u64(4)).unwrap();
    let config = jwt_config(&issuer);
    let verifier = dev_verifier(policy(60_000, 60_000));
    let started = Instant::now();
    let error = verifier.verify_jwt(&config, &mint(&issuer, "frank@example.com"), now()).await.unwrap_err();
    assert!(matches!(error, VerifyError::Keys(_)), "{error:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(400) && waited < Duration::from_secs(3), "{waited:?}");
    hang.abort();
}

#[tokio::test]
async fn the_issuer_serves_discovery_jwks_and_minting_over_http() {
    let served = serve(5).await;
    let base = format!("http://{}", served.address);
    let client = reqwest::Client::new();
    let discovery: serde_json::Value =
        client.get(format!("{base}/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["issuer"], base);
    assert_eq!(discovery["jwks_uri"], format!("{base}/jwks"));
    let minted: serde_json::Value = client
        .post(format!("{base}/dev/token"))
        .json(&serde_json::json!({"email": "gina@example.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = minted["id_token"].as_str().unwrap();
    let verifier = dev_verifier(JwksCachePolicy::default());
    let config = jwt_config(&served.issuer);
    assert_eq!(verifier.verify_jwt(&config, token, now()).await.unwrap().verifier_id, "gina@example.com");
    // Bad requests get a clear 400.
    let bad =
        client.post(format!("{base}/dev/token")).json(&serde_json::json!({"email": "nope"})).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("name@domain"));
    let bad = client
        .post(format!("{base}/dev/token"))
        .json(&serde_json::json!({"email": "a@b.c", "ttl_secs": 10_000_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // A stale token minted on purpose is refused as too old.
    let stale = served
        .issuer
        .mint(&MintRequest {
            ttl_secs: Some(86_400),
            issued_at: Some(now() - 7200),
            ..MintRequest::for_email("hank@example.com")
        })
        .unwrap();
    assert!(matches!(
        verifier.verify_jwt(&config, &stale.id_token, now()).await,
        Err(VerifyError::Token(TokenError::TooOld { .. }))
    ));
    served.server.abort();
}

/// An introspection endpoint: `Bearer alice-token` is user "Alice@Example.com"
/// (as the JWT issuer's email), `Bearer stale-token` was issued an hour ago,
/// anything else is refused with 401.
async fn serve_introspection() -> (String, JoinHandle<()>) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    async fn me(headers: HeaderMap) -> axum::response::Response {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        match auth.as_str() {
            "Bearer alice-token" => {
                axum::Json(serde_json::json!({"user": {"id": "Alice@Example.com"}, "issued_at": now()})).into_response()
            }
            "Bearer stale-token" => {
                axum::Json(serde_json::json!({"user": {"id": "x"}, "issued_at": now() - 3600})).into_response()
            }
            _ => StatusCode::UNAUTHORIZED.into_response(),
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/me", axum::routing::get(me));
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{address}/me"), server)
}

fn introspection_config(url: &str) -> quorumkey_verifier::IntrospectionConfig {
    quorumkey_verifier::IntrospectionConfig {
        url: url.to_owned(),
        user_id_pointer: "/user/id".to_owned(),
        issued_at_pointer: "/issued_at".to_owned(),
        freshness_secs: 600,
        lowercase_verifier_id: true,
    }
}

#[tokio::test]
async fn introspection_and_aggregate_logins() {
    use quorumkey_verifier::config::SubVerifierConfig;
    use quorumkey_verifier::{AggregateConfig, AggregateError};
    let (url, introspection_server) = serve_introspection().await;
    let served = serve(6).await;
    let verifier = dev_verifier(JwksCachePolicy::default());
    let config = introspection_config(&url);

    let identity = verifier.verify_introspection("chat-app", &config, "alice-token", now()).await.unwrap();
    assert_eq!(identity.verifier_id, "alice@example.com");
    assert_eq!(
        verifier.verify_introspection("chat-app", &config, "wrong", now()).await,
        Err(VerifyError::Refused(401))
    );
    assert!(matches!(
        verifier.verify_introspection("chat-app", &config, "stale-token", now()).await,
        Err(VerifyError::Token(TokenError::TooOld { .. }))
    ));
    assert!(verifier.verify_introspection("chat-app", &config, "a\r\nHost: evil", now()).await.is_err());
    let down = introspection_config("http://127.0.0.1:1/me");
    assert!(matches!(
        verifier.verify_introspection("chat-app", &down, "alice-token", now()).await,
        Err(VerifyError::Introspection(_))
    ));

    // Aggregate: a JWT from the issuer and an opaque token, same user.
    let aggregate = AggregateConfig {
        sub_verifiers: [
            ("dev".to_owned(), SubVerifierConfig::Jwt(jwt_config(&served.issuer))),
            ("chat".to_owned(), SubVerifierConfig::Introspection(config.clone())),
        ]
        .into(),
        require_all: true,
    };
    let ids = vec!["dev".to_owned(), "chat".to_owned()];
    let alice = mint(&served.issuer, "alice@example.com");
    let bob = mint(&served.issuer, "bob@example.com");
    let tokens = vec![alice.clone(), "alice-token".to_owned()];
    let identity =
        verifier.verify_aggregate("chat-app", &aggregate, "alice@example.com", &ids, &tokens, now()).await.unwrap();
    assert_eq!(identity.verifier_id, "alice@example.com");
    // Another user's JWT: the sub-verifiers disagree.
    let tokens = vec![bob, "alice-token".to_owned()];
    assert!(matches!(
        verifier.verify_aggregate("chat-app", &aggregate, "alice@example.com", &ids, &tokens, now()).await,
        Err(VerifyError::Aggregate(AggregateError::Disagree { .. }))
    ));
    // A failing sub-token is named; a missing one is refused before any call.
    let tokens = vec![alice.clone(), "wrong".to_owned()];
    let error =
        verifier.verify_aggregate("chat-app", &aggregate, "alice@example.com", &ids, &tokens, now()).await.unwrap_err();
    assert!(error.to_string().starts_with("sub-verifier chat:"), "{error}");
    assert!(matches!(
        verifier.verify_aggregate("chat-app", &aggregate, "alice@example.com", &ids[..1], &[alice], now()).await,
        Err(VerifyError::Aggregate(AggregateError::Missing(_)))
    ));
    introspection_server.abort();
    served.server.abort();
}

/// A log sink for one test thread.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let logs = CapturedLogs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let served = serve(7).await;
    let config = jwt_config(&served.issuer);
    let good = mint(&served.issuer, "secret-user@example.com");
    let verifier = dev_verifier(policy(0, 0));
    verifier.verify_jwt(&config, &good, now()).await.unwrap();
    // Failures of every kind, with the provider up and then down.
    let forged = with_kid(&good, "unknown");
    let _ = verifier.verify_jwt(&config, &forged, now()).await;
    served.server.abort();
    let _ = served.server.await;
    let _ = verifier.verify_jwt(&config, &good, now()).await;
    let _ =
        verifier.verify_introspection("chat-app", &introspection_config("http://127.0.0.1:1/me"), &good, now()).await;
    let fresh = dev_verifier(policy(0, 0));
    let _ = fresh.verify_jwt(&config, &good, now()).await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("JWKS fetch failed"), "the failures were logged: {text}");
    let signature = good.rsplit('.').next().unwrap();
    let payload = good.split('.').nth(1).unwrap();
    assert!(!text.contains(signature) && !text.contains(payload), "a token reached the logs: {text}");
    assert!(!text.contains("secret-user"), "a user id reached the logs: {text}");
}

#[tokio::test]
async fn the_authorization_code_flow_signs_a_user_in() {
    let served = serve(8).await;
    let base = format!("http://{}", served.address);
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let back = "http://127.0.0.1:9/callback";
    let authorize = [
        ("response_type", "code"),
        ("client_id", "my-app"),
        ("redirect_uri", back),
        ("state", "s-1\"><script>"),
        ("nonce", "n-42"),
    ];
    // The login form, with the request's values escaped into it.
    let page = client.get(format!("{base}/authorize")).query(&authorize).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"name="email""#) && html.contains("s-1&quot;&gt;&lt;script&gt;"), "{html}");
    assert!(!html.contains("<script>"));
    // Submitting it redirects back with a code and the state.
    let mut form: Vec<(&str, &str)> = authorize[1..].to_vec();
    form.push(("email", "Walt@Example.com"));
    let answer = client.post(format!("{base}/authorize")).form(&form).send().await.unwrap();
    assert_eq!(answer.status(), 303);
    let location = reqwest::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(back));
    let pairs: std::collections::HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(pairs["state"], "s-1\"><script>");
    let code = pairs["code"].clone();
    // The code buys one ID token for this client, with the nonce.
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", back),
        ("client_id", "my-app"),
    ];
    let token: serde_json::Value =
        client.post(format!("{base}/token")).form(&exchange).send().await.unwrap().json().await.unwrap();
    let id_token = token["id_token"].as_str().unwrap();
    let config = match VerifierConfig::parse(served.issuer.verifier_config("my-app").as_bytes()).unwrap() {
        VerifierConfig::Jwt(config) => config,
        other => panic!("{other:?}"),
    };
    let verifier = dev_verifier(JwksCachePolicy::default());
    assert_eq!(verifier.verify_jwt(&config, id_token, now()).await.unwrap().verifier_id, "walt@example.com");
    let payload = id_token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["nonce"], "n-42");
    // Used once only; a wrong redirect_uri or grant is refused.
    let again = client.post(format!("{base}/token")).form(&exchange).send().await.unwrap();
    assert_eq!(again.status(), 400);
    assert!(again.text().await.unwrap().contains("invalid_grant"));
    let wrong_grant = [("grant_type", "password"), ("code", "x"), ("redirect_uri", back), ("client_id", "my-app")];
    let refused = client.post(format!("{base}/token")).form(&wrong_grant).send().await.unwrap();
    assert!(refused.text().await.unwrap().contains("unsupported_grant_type"));
    // Bad authorization requests: another response type, a non-loopback http redirect.
    let implicit = client
        .get(format!("{base}/authorize"))
        .query(&[("response_type", "token"), ("client_id", "my-app"), ("redirect_uri", back)])
        .send()
        .await
        .unwrap();
    assert_eq!(implicit.status(), 400);
    let open = client
        .get(format!("{base}/authorize"))
        .query(&[("client_id", "my-app"), ("redirect_uri", "http://evil.example/cb")])
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 400);
    // An application in development at localhost is fine; user info (the
    // browser would go to the host after `@`) is not.
    for (redirect, status) in [
        ("http://localhost:3000/cb", 200),
        ("http://localhost:1@evil.example/cb", 400),
        ("https://app.example/cb", 200),
    ] {
        let answer = client
            .get(format!("{base}/authorize"))
            .query(&[("client_id", "my-app"), ("redirect_uri", redirect)])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{redirect}");
    }
    served.server.abort();
}
