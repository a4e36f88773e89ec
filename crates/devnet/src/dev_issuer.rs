//! A development OpenID Connect provider, so that a devnet (and its tests)
//! can sign users in with no outside service. It serves a discovery
//! document, its JWKS, and a token-minting endpoint for tests and the CLI,
//! signs ID tokens with ES256, and rotates its key on request (the previous
//! key stays in the JWKS, so tokens signed just before still verify).
//!
//! **For development only**: `POST /dev/token` mints a token for any email
//! it is given. Never point a production verifier at it.

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use rand_core::{CryptoRng, Rng};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The client id the development issuer puts in `aud` unless told
/// otherwise.
pub const DEV_AUDIENCE: &str = "quorumkey-dev";
/// Lifetime of a minted token unless told otherwise.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 3600;
/// Longest lifetime a minted token may ask for.
pub const MAX_TOKEN_TTL_SECS: u64 = 24 * 3600;
/// Most keys the JWKS keeps (the current one and the ones before it).
pub const KEPT_KEYS: usize = 2;

/// Why the development issuer could not start or sign.
#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    /// Key generation or encoding failed.
    #[error("development issuer key: {0}")]
    Key(String),
    /// Signing failed.
    #[error("development issuer could not sign: {0}")]
    Sign(String),
}

struct SigningKey {
    kid: String,
    key: EncodingKey,
    jwk: Jwk,
}

fn generate_key<R: CryptoRng + ?Sized>(rng: &mut R, serial: u64) -> Result<SigningKey, DevIssuerError> {
    // A uniformly random 32-byte string is a valid P-256 scalar except with
    // probability about 2^-32; draw again in that case.
    let secret = loop {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        if let Ok(secret) = p256::SecretKey::from_slice(bytes.as_ref()) {
            break secret;
        }
    };
    let der = secret.to_pkcs8_der().map_err(|e| DevIssuerError::Key(e.to_string()))?;
    let key = EncodingKey::from_ec_der(der.as_bytes());
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).map_err(|e| DevIssuerError::Key(e.to_string()))?;
    let mut kid_bytes = [0u8; 8];
    rng.fill_bytes(&mut kid_bytes);
    let kid = format!("dev-{serial}-{}", hex::encode(kid_bytes));
    jwk.common.key_id = Some(kid.clone());
    Ok(SigningKey { kid, key, jwk })
}

/// What a minted token says.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct MintRequest {
    /// The user's email (also the `sub`, lowercased).
    pub email: String,
    /// `aud` (default [`DEV_AUDIENCE`]).
    #[serde(default)]
    pub audience: Option<String>,
    /// Lifetime in seconds (default one hour, at most a day).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// `email_verified` (default true).
    #[serde(default)]
    pub email_verified: Option<bool>,
    /// `iat` to claim instead of now (tests of stale tokens).
    #[serde(default)]
    pub issued_at: Option<u64>,
    /// `nonce` to include (the authorization-code flow passes the
    /// client's).
    #[serde(default)]
    pub nonce: Option<String>,
}

impl MintRequest {
    /// A token for `email` with every other claim at its default.
    pub fn for_email(email: impl Into<String>) -> Self {
        Self { email: email.into(), audience: None, ttl_secs: None, email_verified: None, issued_at: None, nonce: None }
    }
}

/// A minted token.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct MintResponse {
    /// The signed ID token.
    pub id_token: String,
    /// Its `kid`.
    pub kid: String,
    /// Its `exp`.
    pub expires_at: u64,
}

struct Keys {
    /// Newest last.
    keys: Vec<SigningKey>,
    serial: u64,
}

/// The development issuer's state: its URL and keys.
pub struct DevIssuer {
    issuer: String,
    keys: RwLock<Keys>,
    rng: std::sync::Mutex<rand_chacha::ChaCha20Rng>,
    codes: std::sync::Mutex<std::collections::HashMap<String, PendingLogin>>,
}

/// A login the form accepted, waiting for its code to be exchanged.
struct PendingLogin {
    email: String,
    client_id: String,
    redirect_uri: String,
    nonce: Option<String>,
    expires: std::time::Instant,
}

/// How long an authorization code may wait to be exchanged.
pub const CODE_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// Most codes waiting at once (older ones are dropped first when full).
pub const MAX_PENDING_CODES: usize = 1024;

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl DevIssuer {
    /// An issuer that will be reachable at `issuer` (its `iss`, e.g.
    /// `http://127.0.0.1:8550`), with a fresh key.
    pub fn new(issuer: String, mut rng: rand_chacha::ChaCha20Rng) -> Result<Self, DevIssuerError> {
        let first = generate_key(&mut rng, 1)?;
        Ok(Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            keys: RwLock::new(Keys { keys: vec![first], serial: 1 }),
            rng: std::sync::Mutex::new(rng),
            codes: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Its `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Its JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// The JWKS document (current and previous keys).
    pub fn jwks(&self) -> JwkSet {
        let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        JwkSet { keys: keys.keys.iter().map(|k| k.jwk.clone()).collect() }
    }

    /// Makes a new signing key; the JWKS keeps the previous one.
    pub fn rotate(&self) -> Result<String, DevIssuerError> {
        let mut rng = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut keys = self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.serial += 1;
        let key = generate_key(&mut *rng, keys.serial)?;
        let kid = key.kid.clone();
        keys.keys.push(key);
        while keys.keys.len() > KEPT_KEYS {
            keys.keys.remove(0);
        }
        Ok(kid)
    }

    /// Signs an ID token for `request` with the current key.
    pub fn mint(&self, request: &MintRequest) -> Result<MintResponse, DevIssuerError> {
        let email = check_email(&request.email).map_err(DevIssuerError::Sign)?;
        let ttl = request.ttl_secs.unwrap_or(DEFAULT_TOKEN_TTL_SECS);
        if ttl == 0 || ttl > MAX_TOKEN_TTL_SECS {
            return Err(DevIssuerError::Sign(format!("ttl_secs must be between 1 and {MAX_TOKEN_TTL_SECS}")));
        }
        let now = now_secs();
        let issued_at = request.issued_at.unwrap_or(now);
        let expires_at = issued_at.saturating_add(ttl);
        let mut jti = [0u8; 16];
        self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner).fill_bytes(&mut jti);
        let mut claims = json!({
            "iss": self.issuer,
            "aud": request.audience.clone().unwrap_or_else(|| DEV_AUDIENCE.to_owned()),
            "sub": email.to_lowercase(),
            "email": email,
            "email_verified": request.email_verified.unwrap_or(true),
            "iat": issued_at,
            "exp": expires_at,
            "jti": hex::encode(jti),
        });
        if let Some(nonce) = &request.nonce {
            claims["nonce"] = json!(nonce);
        }
        let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(current) = keys.keys.last() else {
            return Err(DevIssuerError::Sign("no signing key".to_owned()));
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(current.kid.clone());
        let id_token =
            jsonwebtoken::encode(&header, &claims, &current.key).map_err(|e| DevIssuerError::Sign(e.to_string()))?;
        // ECDSA signers emit a high s half the time; nodes accept the low
        // one only (one spelling per token), so issue that one, as a
        // careful issuer would.
        let id_token = quorumkey_verifier::canonical_spelling(&id_token).into_owned();
        Ok(MintResponse { id_token, kid: current.kid.clone(), expires_at })
    }

    /// The verifier configuration (JSON) that accepts this issuer's tokens
    /// for `audience`, with the email as the verifier_id.
    pub fn verifier_config(&self, audience: &str) -> String {
        dev_verifier_config(&self.issuer, audience)
    }
}

/// The name under which a devnet registers its development issuer's
/// verifier at genesis.
pub const DEV_VERIFIER: &str = "quorumkey-dev";

/// The verifier configuration (JSON) that accepts the tokens of the
/// development issuer at `issuer` for `audience`: the email (lowercased) is
/// the verifier_id, `email_verified` must be true, tokens at most an hour
/// old.
pub fn dev_verifier_config(issuer: &str, audience: &str) -> String {
    let issuer = issuer.trim_end_matches('/');
    json!({
        "type": "jwt",
        "issuer": issuer,
        "audiences": [audience],
        "keys": {"jwks_url": format!("{issuer}/jwks")},
        "verifier_id_claim": "email",
        "lowercase_verifier_id": true,
        "required_claims": {"email_verified": true},
        "max_token_age_secs": 3600,
    })
    .to_string()
}

/// Serves the development issuer on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    issuer: Arc<DevIssuer>,
    auxiliary: Option<Arc<crate::auxiliary::AuxiliaryServices>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut app = router(issuer);
    if let Some(auxiliary) = auxiliary {
        app = app.merge(crate::auxiliary::router(auxiliary));
    }
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// The email a token is minted for, trimmed: `name@domain`, at most 254
/// bytes.
fn check_email(email: &str) -> Result<&str, String> {
    let email = email.trim();
    if email.is_empty() || email.len() > 254 || !email.contains('@') {
        return Err("the email must look like name@domain (at most 254 bytes)".to_owned());
    }
    Ok(email)
}

fn error_response(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

async fn discovery(State(issuer): State<Arc<DevIssuer>>) -> Json<serde_json::Value> {
    Json(json!({
        "issuer": issuer.issuer,
        "jwks_uri": issuer.jwks_url(),
        "id_token_signing_alg_values_supported": ["ES256"],
        "subject_types_supported": ["public"],
        "authorization_endpoint": format!("{}/authorize", issuer.issuer),
        "token_endpoint": format!("{}/token", issuer.issuer),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "scopes_supported": ["openid", "email"],
        "claims_supported": ["iss", "aud", "sub", "email", "email_verified", "iat", "exp"],
        "quorumkey_dev_token_endpoint": format!("{}/dev/token", issuer.issuer),
    }))
}

async fn jwks(State(issuer): State<Arc<DevIssuer>>) -> Json<JwkSet> {
    Json(issuer.jwks())
}

async fn mint(State(issuer): State<Arc<DevIssuer>>, Json(request): Json<MintRequest>) -> Response {
    match issuer.mint(&request) {
        Ok(response) => Json(response).into_response(),
        Err(e) => error_response(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn rotate(State(issuer): State<Arc<DevIssuer>>) -> Response {
    match issuer.rotate() {
        Ok(kid) => Json(json!({"kid": kid})).into_response(),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The parameters of `GET /authorize` (and the form's hidden fields).
#[derive(Clone, Debug, Deserialize)]
pub struct AuthorizeParams {
    /// Must be `code`.
    #[serde(default)]
    pub response_type: Option<String>,
    /// The application's client id (becomes `aud`).
    pub client_id: String,
    /// Where the browser goes back with the code.
    pub redirect_uri: String,
    /// Echoed back to the application.
    #[serde(default)]
    pub state: Option<String>,
    /// Put into the ID token.
    #[serde(default)]
    pub nonce: Option<String>,
    /// Ignored (the issuer always grants `openid email`).
    #[serde(default)]
    pub scope: Option<String>,
    /// The email the form submits.
    #[serde(default)]
    pub email: Option<String>,
}

/// `POST /token` form fields.
#[derive(Clone, Debug, Deserialize)]
pub struct TokenForm {
    /// Must be `authorization_code`.
    pub grant_type: String,
    /// The code from the redirect.
    pub code: String,
    /// The same redirect URI as in the authorization request.
    pub redirect_uri: String,
    /// The same client id.
    pub client_id: String,
}

fn escape_html(text: &str) -> String {
    // Five replacements; no crate needed for the values of a dev form.
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Where the browser goes back to: an `https` URL, or `http` to this
/// machine (127.0.0.0/8, [::1], `localhost`) for an application in
/// development; no user info (a browser would go to the host after `@`).
/// (Not a provider URL: the browser follows it, no node fetches it.)
fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let invalid = |reason: &str| format!("redirect_uri {reason}");
    if uri.is_empty() || uri.len() > 512 || !uri.bytes().all(|byte| byte.is_ascii_graphic() && byte != b'\\') {
        return Err(invalid("must be 1 to 512 bytes of printable ASCII without backslashes"));
    }
    let authority = uri.split_once("://").map_or("", |(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""));
    if authority.contains('@') {
        return Err(invalid("must not carry a user name or password (user@host)"));
    }
    let parsed = url::Url::parse(uri).map_err(|_| invalid("is not a URL"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(name)) => name == "localhost" || name.ends_with(".localhost"),
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        None => return Err(invalid("has no host")),
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(invalid("must be https (http only to 127.0.0.1, [::1] or localhost)")),
    }
}

fn check_authorize(params: &AuthorizeParams) -> Result<(), String> {
    if params.response_type.as_deref().is_some_and(|t| t != "code") {
        return Err("unsupported response_type: only \"code\"".to_owned());
    }
    if params.client_id.is_empty() || params.client_id.len() > 256 {
        return Err("client_id must be 1 to 256 bytes".to_owned());
    }
    check_redirect_uri(&params.redirect_uri)?;
    for (name, value) in [("state", &params.state), ("nonce", &params.nonce)] {
        if value.as_ref().is_some_and(|v| v.len() > 512) {
            return Err(format!("{name} is longer than 512 bytes"));
        }
    }
    Ok(())
}

async fn authorize_form(axum::extract::Query(params): axum::extract::Query<AuthorizeParams>) -> Response {
    if let Err(message) = check_authorize(&params) {
        return error_response(StatusCode::BAD_REQUEST, message);
    }
    let hidden =
        |name: &str, value: &str| format!(r#"<input type="hidden" name="{name}" value="{}">"#, escape_html(value));
    let page = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>quorumkey development sign-in</title></head>
<body><h1>Development sign-in</h1><p>This issuer is for development only: it signs in any email.</p>
<form method="post" action="/authorize"><label>Email <input type="email" name="email" required autofocus></label>
{}{}{}{}<button type="submit">Sign in</button></form></body></html>"#,
        hidden("client_id", &params.client_id),
        hidden("redirect_uri", &params.redirect_uri),
        hidden("state", params.state.as_deref().unwrap_or_default()),
        hidden("nonce", params.nonce.as_deref().unwrap_or_default()),
    );
    axum::response::Html(page).into_response()
}

async fn authorize_submit(
    State(issuer): State<Arc<DevIssuer>>,
    axum::extract::Form(params): axum::extract::Form<AuthorizeParams>,
) -> Response {
    if let Err(message) = check_authorize(&params) {
        return error_response(StatusCode::BAD_REQUEST, message);
    }
    let email = match check_email(params.email.as_deref().unwrap_or_default()) {
        Ok(email) => email.to_owned(),
        Err(message) => return error_response(StatusCode::BAD_REQUEST, message),
    };
    let mut code_bytes = [0u8; 24];
    issuer.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner).fill_bytes(&mut code_bytes);
    let code = hex::encode(code_bytes);
    {
        let mut codes = issuer.codes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        codes.retain(|_, login| login.expires > now);
        while codes.len() >= MAX_PENDING_CODES {
            let Some(oldest) = codes.iter().min_by_key(|(_, login)| login.expires).map(|(code, _)| code.clone()) else {
                break;
            };
            codes.remove(&oldest);
        }
        codes.insert(
            code.clone(),
            PendingLogin {
                email,
                client_id: params.client_id.clone(),
                redirect_uri: params.redirect_uri.clone(),
                nonce: params.nonce.clone().filter(|n| !n.is_empty()),
                expires: now + CODE_TTL,
            },
        );
    }
    let mut location = reqwest::Url::parse(&params.redirect_uri).map_err(|e| e.to_string());
    match &mut location {
        Ok(url) => {
            url.query_pairs_mut().append_pair("code", &code);
            if let Some(state) = params.state.as_deref().filter(|s| !s.is_empty()) {
                url.query_pairs_mut().append_pair("state", state);
            }
            axum::response::Redirect::to(url.as_str()).into_response()
        }
        Err(message) => error_response(StatusCode::BAD_REQUEST, format!("redirect_uri: {message}")),
    }
}

async fn exchange_code(
    State(issuer): State<Arc<DevIssuer>>,
    axum::extract::Form(form): axum::extract::Form<TokenForm>,
) -> Response {
    let oauth_error = |error: &str, description: &str| {
        (StatusCode::BAD_REQUEST, Json(json!({"error": error, "error_description": description}))).into_response()
    };
    if form.grant_type != "authorization_code" {
        return oauth_error("unsupported_grant_type", "only authorization_code");
    }
    // One use: the code is removed whatever happens next.
    let login = issuer.codes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&form.code);
    let Some(login) = login.filter(|login| login.expires > std::time::Instant::now()) else {
        return oauth_error("invalid_grant", "unknown, used or expired code");
    };
    if login.redirect_uri != form.redirect_uri || login.client_id != form.client_id {
        return oauth_error("invalid_grant", "redirect_uri or client_id differ from the authorization request");
    }
    let request =
        MintRequest { audience: Some(login.client_id), nonce: login.nonce, ..MintRequest::for_email(login.email) };
    match issuer.mint(&request) {
        Ok(minted) => Json(json!({
            "id_token": minted.id_token,
            "token_type": "Bearer",
            "expires_in": DEFAULT_TOKEN_TTL_SECS,
        }))
        .into_response(),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The issuer's HTTP routes.
pub fn router(issuer: Arc<DevIssuer>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/dev/token", post(mint))
        .route("/dev/rotate", post(rotate))
        .route("/authorize", get(authorize_form).post(authorize_submit))
        .route("/token", post(exchange_code))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(16 * 1024))
        .with_state(issuer)
}

/// Refuses to serve the development issuer (and its signer) on an address
/// other machines can reach unless `allow_public_bind`: it signs a token
/// for any email and authorizes any `KeyAssign`, so on a reachable address
/// anyone could sign in as anyone at every verifier that trusts it.
pub fn check_bind(listen: std::net::SocketAddr, allow_public_bind: bool) -> Result<(), String> {
    if listen.ip().is_loopback() || allow_public_bind {
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {listen}: the development issuer signs a token for any email (and its signer \
         authorizes any KeyAssign), so it listens only on loopback addresses (127.0.0.1, [::1]); pass \
         --allow-public-bind to serve it on {listen} anyway, where anyone who reaches it can sign in as anyone"
    ))
}

/// Runs the development issuer on `listen` until SIGINT or SIGTERM: its
/// `iss` is `issuer_url`, or `http://LISTEN`. With `signer`, it also serves
/// the auxiliary hosts of the Torus client (allow, signer, metadata; see
/// [`crate::auxiliary`]). Prints where it is. A non-loopback `listen` is
/// refused unless `allow_public_bind` ([`check_bind`]).
pub async fn run_standalone(
    listen: std::net::SocketAddr,
    issuer_url: Option<String>,
    signer: Option<quorumkey_crypto::k256::ecdsa::SigningKey>,
    allow_public_bind: bool,
) -> Result<(), String> {
    check_bind(listen, allow_public_bind)?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let issuer_url = issuer_url.unwrap_or_else(|| format!("http://{address}"));
    let mut seed = [0u8; 32];
    quorumkey_crypto::random::os_rng().fill_bytes(&mut seed);
    let issuer = Arc::new(
        DevIssuer::new(issuer_url, <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed(seed))
            .map_err(|e| e.to_string())?,
    );
    println!("development issuer {} (FOR DEVELOPMENT ONLY: it signs a token for any email)", issuer.issuer());
    println!("  discovery  {}/.well-known/openid-configuration", issuer.issuer());
    println!("  jwks       {}", issuer.jwks_url());
    println!(
        "  mint       POST {}/dev/token {{\"email\": \"...\"}}  (or: quorumkey dev-token --email ...)",
        issuer.issuer()
    );
    if signer.is_some() {
        println!("  allow      GET {}/api/allow", issuer.issuer());
        println!("  signer     POST {}/api/sign  (KeyAssign authorizations)", issuer.issuer());
        println!("  metadata   POST {}/get", issuer.issuer());
    }
    let auxiliary = signer.map(|key| Arc::new(crate::auxiliary::AuxiliaryServices::new(key)));
    let shutdown = async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = async {
                match terminate.as_mut() {
                    Some(signal) => { signal.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    };
    serve(listener, issuer, auxiliary, shutdown).await.map_err(|e| e.to_string())
}

/// Asks the development issuer at `token_endpoint` for a token.
pub async fn request_token(token_endpoint: &str, request: &MintRequest) -> Result<MintResponse, String> {
    let client =
        reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
    let response = client
        .post(token_endpoint)
        .json(request)
        .send()
        .await
        .map_err(|e| format!("cannot reach the development issuer at {token_endpoint}: {e}"))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| format!("reading the issuer's answer: {e}"))?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or(body);
        return Err(format!("the development issuer refused ({status}): {message}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("the development issuer's answer is not a token: {e}"))
}

/// Signs `email` in at the development issuer `issuer` the way a web app
/// does, with the authorization-code flow: the login form's submission
/// (`POST /authorize`), the redirect back with a code and the state, and
/// the code exchanged at `POST /token` for an ID token whose `aud` is
/// `client_id` and which carries a fresh nonce. Returns the ID token.
pub async fn authorization_code_login(issuer: &str, client_id: &str, email: &str) -> Result<String, String> {
    let issuer = issuer.trim_end_matches('/');
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let redirect_uri = "http://127.0.0.1/quorumkey/callback";
    let mut random = [0u8; 32];
    quorumkey_crypto::random::os_rng().fill_bytes(&mut random);
    let (state, nonce) = (hex::encode(&random[..16]), hex::encode(&random[16..]));
    let form = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("state", &state),
        ("nonce", &nonce),
        ("scope", "openid email"),
        ("email", email),
    ];
    let unreachable =
        |e: reqwest::Error| format!("cannot reach the development issuer at {issuer}: {}", e.without_url());
    let answer = http.post(format!("{issuer}/authorize")).form(&form).send().await.map_err(unreachable)?;
    let location = answer
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| format!("the issuer did not redirect back (HTTP {})", answer.status()))?;
    let location = reqwest::Url::parse(location).map_err(|e| format!("the redirect is not a URL: {e}"))?;
    let query: std::collections::HashMap<String, String> = location.query_pairs().into_owned().collect();
    if query.get("state") != Some(&state) {
        return Err("the redirect carries another state (a forged login)".to_owned());
    }
    let code = query.get("code").ok_or("the redirect carries no code")?;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri),
        ("client_id", client_id),
    ];
    let answer = http.post(format!("{issuer}/token")).form(&exchange).send().await.map_err(unreachable)?;
    let status = answer.status();
    let body: serde_json::Value = answer.json().await.map_err(|e| format!("the token answer is not JSON: {e}"))?;
    if !status.is_success() {
        return Err(format!("the issuer refused the code (HTTP {status}): {body}"));
    }
    body.get("id_token")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "the token answer has no id_token".to_owned())
}
