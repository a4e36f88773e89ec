//! A proxy in front of a node that misbehaves on command, at the wire
//! (for the client and fault tests).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use quorumkey_crypto::ecies::{TorusEncryptedShare, encrypt};
use quorumkey_crypto::group::{Scalar, public_key_from_xy_hex, scalar_to_bytes};
use quorumkey_crypto::hash::token_commitment_hex;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use serde_json::Value;

/// How a proxied node behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Forwards as is.
    Honest,
    /// Waits this long before forwarding.
    Slow(Duration),
    /// Replaces its shares with random shares, correctly encrypted to the
    /// client's temporary key.
    WrongShares,
    /// Replaces commitment signatures and shares with garbage.
    Garbage,
}

/// A proxy in front of one node.
pub struct Proxy {
    upstream: String,
    mode: Mutex<Mode>,
    /// Temporary keys seen in commitments, by token commitment.
    temp_keys: Mutex<HashMap<String, (String, String)>>,
    http: reqwest::Client,
}

impl Proxy {
    /// Changes how it behaves.
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// A random share, correctly encrypted to the client's temporary key.
    fn forge(&self, request: &Value, answer: &mut Value) {
        let item = &request["params"]["item"][0];
        let commitment = token_commitment_hex(item["idtoken"].as_str().unwrap_or_default());
        let Some((x, y)) = self.temp_keys.lock().unwrap().get(&commitment).cloned() else { return };
        let temp = public_key_from_xy_hex(&x, &y).unwrap();
        let mut rng = quorumkey_crypto::random::os_rng();
        let share = Scalar::generate_from_rng(&mut rng);
        let sealed = TorusEncryptedShare::from(&encrypt(&temp, &scalar_to_bytes(&share), &mut rng));
        if let Some(key) = answer.pointer_mut("/result/keys/0") {
            key["Share"] = Value::String(sealed.share);
            key["Metadata"] = serde_json::to_value(sealed.metadata).unwrap();
        }
    }
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let mode = *proxy.mode.lock().unwrap();
    if let Mode::Slow(delay) = mode {
        tokio::time::sleep(delay).await;
    }
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let url = format!("{}{}", proxy.upstream, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    if let Some(json) = &json
        && json["method"] == "CommitmentRequest"
    {
        let params = &json["params"];
        let key = (params["temppubx"].as_str().unwrap_or_default(), params["temppuby"].as_str().unwrap_or_default());
        proxy.temp_keys.lock().unwrap().insert(
            params["tokencommitment"].as_str().unwrap_or_default().to_owned(),
            (key.0.to_owned(), key.1.to_owned()),
        );
    }
    let upstream = proxy
        .http
        .request(parts.method, &url)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await;
    let Ok(upstream) = upstream else {
        return (axum::http::StatusCode::BAD_GATEWAY, "upstream down").into_response();
    };
    let status = upstream.status();
    let bytes = upstream.bytes().await.unwrap_or_default();
    if mode == Mode::WrongShares
        && let Some(request) = json.as_ref().filter(|j| j["method"] == "ShareRequest")
        && let Ok(mut answer) = serde_json::from_slice::<Value>(&bytes)
    {
        proxy.forge(request, &mut answer);
        return (status, axum::Json(answer)).into_response();
    }
    if mode == Mode::Garbage
        && let Some(request) = json.as_ref()
        && let Ok(mut answer) = serde_json::from_slice::<Value>(&bytes)
    {
        if request["method"] == "CommitmentRequest"
            && let Some(result) = answer.get_mut("result")
        {
            result["signature"] = Value::String("ab".repeat(65));
            result["data"] = Value::String("garbage".into());
        }
        if let Some(key) = answer.pointer_mut("/result/keys/0") {
            key["Share"] = Value::String("Z2FyYmFnZQ==".into());
        }
        return (status, axum::Json(answer)).into_response();
    }
    (status, [("content-type", "application/json")], bytes).into_response()
}

/// Starts a proxy for `upstream`; returns it and its base URL.
pub async fn start_proxy(upstream: String) -> (Arc<Proxy>, String) {
    let proxy = Arc::new(Proxy {
        upstream,
        mode: Mutex::new(Mode::Honest),
        temp_keys: Mutex::new(HashMap::new()),
        http: reqwest::Client::new(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(forward).with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (proxy, format!("http://{address}"))
}

/// `network` as a client sees it with every node behind its own proxy
/// (honest until told otherwise), and the proxies, node i at i - 1.
pub async fn proxy_network(
    network: &quorumkey_devnet::supervisor::NetworkJson,
) -> (quorumkey_devnet::supervisor::NetworkJson, Vec<Arc<Proxy>>) {
    let mut proxied = network.clone();
    let mut proxies = Vec::with_capacity(proxied.nodes.len());
    for node in &mut proxied.nodes {
        let (proxy, url) = start_proxy(node.api.clone()).await;
        node.endpoint = format!("{url}/jrpc");
        node.api = url;
        proxies.push(proxy);
    }
    (proxied, proxies)
}
