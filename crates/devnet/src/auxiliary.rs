//! The auxiliary hosts the public Torus client calls besides the nodes,
//! for a development network (the devnet serves them next to its
//! development issuer):
//!
//! - allow: `GET /api/allow` answers `{"success": true}` (torus.js awaits
//!   it before every login and needs a 2xx JSON answer);
//! - signer: `POST /api/sign` with the `KeyAssign` JSON-RPC body and the
//!   chosen node's key in the `pubKeyX`/`pubKeyY` headers answers the
//!   `torus-timestamp`, `torus-nonce` and `torus-signature` fields the
//!   client copies into its `KeyAssign` (see `quorumkey_login::key_assign`).
//!   A real deployment puts its anti-abuse checks (a captcha, an app's
//!   client id) here; this one signs every well-formed request;
//! - metadata: `POST /get` answers `{"message": ""}`: quorumkey keeps no
//!   per-user nonce, so the key a client rebuilds is the DKG key itself.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use quorumkey_crypto::group::public_key_from_xy_hex;
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_login::{KeyAssignAuthorization, LookupParams, Method, RpcRequest, SignerRequest};
use rand_core::Rng as _;
use serde_json::json;
use tower_http::cors::{Any, CorsLayer};

/// The signer's key.
pub struct AuxiliaryServices {
    signer: SigningKey,
}

impl std::fmt::Debug for AuxiliaryServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuxiliaryServices").finish_non_exhaustive()
    }
}

impl AuxiliaryServices {
    /// Services whose signer signs with `signer`.
    pub fn new(signer: SigningKey) -> Self {
        Self { signer }
    }
}

fn refuse(reason: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": reason }))).into_response()
}

async fn allow() -> Json<serde_json::Value> {
    Json(json!({ "success": true }))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, String> {
    headers
        .get(name)
        .ok_or_else(|| format!("the `{name}` header (the chosen node's key) is missing"))?
        .to_str()
        .map_err(|_| format!("the `{name}` header is not text"))
}

async fn sign(State(services): State<Arc<AuxiliaryServices>>, headers: HeaderMap, body: Bytes) -> Response {
    let node = match header(&headers, "pubkeyx").and_then(|x| {
        let y = header(&headers, "pubkeyy")?;
        public_key_from_xy_hex(x, y).map_err(|e| format!("`pubKeyX`/`pubKeyY`: {e}"))
    }) {
        Ok(node) => node,
        Err(reason) => return refuse(reason),
    };
    let request = match RpcRequest::parse(&body) {
        Ok(request) if request.method == Method::KeyAssign => request,
        Ok(_) => return refuse("the signer only signs KeyAssign requests".to_owned()),
        Err((_, error)) => return refuse(error.data),
    };
    let params = match LookupParams::parse(&request.params) {
        Ok(params) => params,
        Err(error) => return refuse(error.to_string()),
    };
    let mut nonce = [0u8; 16];
    quorumkey_crypto::random::os_rng().fill_bytes(&mut nonce);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let signer_request = SignerRequest { verifier: params.verifier, verifier_id: params.verifier_id, node };
    Json(KeyAssignAuthorization::sign(&services.signer, &signer_request, now, nonce)).into_response()
}

async fn metadata(body: Bytes) -> Response {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(_)) => Json(json!({ "message": "" })).into_response(),
        _ => refuse("the body must be a JSON object with `pub_key_X` and `pub_key_Y`".to_owned()),
    }
}

/// `GET /api/allow`, `POST /api/sign`, `POST /get`, with CORS for any
/// origin and 64 KiB bodies.
pub fn router(services: Arc<AuxiliaryServices>) -> Router {
    let cors = CorsLayer::new().allow_origin(Any).allow_methods(Any).allow_headers(Any);
    Router::new()
        .route("/api/allow", get(allow))
        .route("/api/sign", post(sign))
        .route("/get", post(metadata))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .layer(cors)
        .with_state(services)
}
