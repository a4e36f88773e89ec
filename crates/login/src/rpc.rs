//! The JSON-RPC 2.0 envelope. Every answer, errors included, is a
//! JSON-RPC object (the node sends it with HTTP 200: the Torus client reads
//! only 2xx JSON answers and counts anything else as no answer).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{kind_of, quote};

/// `-32700`: the body is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// `-32600`: JSON, but not a JSON-RPC 2.0 request.
pub const INVALID_REQUEST: i64 = -32600;
/// `-32601`: no such method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// `-32602`: the parameters are wrong (and the Torus "not yet assigned"
/// answer, which the client recognizes by its text).
pub const INVALID_PARAMS: i64 = -32602;
/// `-32603`: the node failed.
pub const INTERNAL_ERROR: i64 = -32603;
/// The token, a signature or a record does not allow the request.
pub const UNAUTHORIZED: i64 = -32001;
/// The node cannot serve the request now (no key yet, halted, timeout).
pub const UNAVAILABLE: i64 = -32002;
/// The node is not in the node set in force: the client's list of nodes
/// is out of date (`GET /v1/network` has the current one).
pub const NOT_IN_NODE_SET: i64 = -32003;
/// Too many requests from this client or for this verifier.
pub const RATE_LIMITED: i64 = -32005;

/// A JSON-RPC error object. `data` is a precise, human-readable reason;
/// the Torus client collects these strings into its error message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcError {
    /// One of the codes in this module.
    pub code: i64,
    /// A short class of the error.
    pub message: String,
    /// What exactly went wrong.
    pub data: String,
}

impl RpcError {
    /// An error with a code, a class and a reason.
    pub fn new(code: i64, message: &str, data: impl Into<String>) -> Self {
        Self { code, message: message.to_owned(), data: data.into() }
    }
}

/// The methods a node serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// The key of a (verifier, verifier_id), if assigned.
    VerifierLookup,
    /// Assign a key to a (verifier, verifier_id).
    KeyAssign,
    /// Commit to a token and a temporary key.
    Commitment,
    /// Reveal the token and get this node's share.
    Share,
}

impl Method {
    /// Every method.
    pub const ALL: [Self; 4] = [Self::VerifierLookup, Self::KeyAssign, Self::Commitment, Self::Share];

    /// The method's wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::VerifierLookup => "VerifierLookupRequest",
            Self::KeyAssign => "KeyAssign",
            Self::Commitment => "CommitmentRequest",
            Self::Share => "ShareRequest",
        }
    }

    /// The method of a wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|method| method.name() == name)
    }
}

/// Longest `id` string echoed back.
const MAX_ID_LEN: usize = 128;

/// A parsed request.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcRequest {
    /// The method.
    pub method: Method,
    /// Its parameters (an object).
    pub params: Value,
    /// The request id, echoed in the answer.
    pub id: Value,
    /// The whole request object (KeyAssign carries the signer's
    /// authorization as top-level fields).
    pub body: Map<String, Value>,
}

impl RpcRequest {
    /// Parses a request body. The error carries the id when one could be
    /// read, so the answer can echo it.
    pub fn parse(body: &[u8]) -> Result<Self, (Value, RpcError)> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            (Value::Null, RpcError::new(PARSE_ERROR, "Parse error", format!("the body is not JSON: {e}")))
        })?;
        let invalid =
            |id: &Value, reason: String| (id.clone(), RpcError::new(INVALID_REQUEST, "Invalid Request", reason));
        let Value::Object(object) = value else {
            let reason = match value {
                Value::Array(_) => "batch requests are not supported; send one JSON-RPC object".to_owned(),
                other => format!("a request is a JSON object, not {}", kind_of(&other)),
            };
            return Err(invalid(&Value::Null, reason));
        };
        let id = match object.get("id") {
            None => Value::Null,
            Some(id @ (Value::Null | Value::Number(_))) => id.clone(),
            Some(Value::String(text)) if text.len() <= MAX_ID_LEN => Value::String(text.clone()),
            Some(other) => {
                return Err(invalid(
                    &Value::Null,
                    format!(
                        "`id` must be a number, null or a string of at most {MAX_ID_LEN} bytes, not {}",
                        kind_of(other)
                    ),
                ));
            }
        };
        match object.get("jsonrpc") {
            Some(Value::String(version)) if version == "2.0" => {}
            _ => return Err(invalid(&id, "`jsonrpc` must be \"2.0\"".to_owned())),
        }
        let method = match object.get("method") {
            Some(Value::String(name)) => Method::from_name(name).ok_or_else(|| {
                (
                    id.clone(),
                    RpcError::new(
                        METHOD_NOT_FOUND,
                        "Method not found",
                        format!(
                            "no method {:?}; this node serves VerifierLookupRequest, KeyAssign, CommitmentRequest and ShareRequest",
                            quote(name)
                        ),
                    ),
                )
            })?,
            Some(other) => return Err(invalid(&id, format!("`method` must be a string, not {}", kind_of(other)))),
            None => return Err(invalid(&id, "`method` is missing".to_owned())),
        };
        let params = match object.get("params") {
            Some(params @ Value::Object(_)) => params.clone(),
            Some(other) => {
                return Err((
                    id,
                    RpcError::new(
                        INVALID_PARAMS,
                        "Input Error",
                        format!("`params` must be an object, not {}", kind_of(other)),
                    ),
                ));
            }
            None => return Err((id, RpcError::new(INVALID_PARAMS, "Input Error", "`params` is missing"))),
        };
        Ok(Self { method, params, id, body: object })
    }
}

/// An answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RpcResponse {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The request's id.
    pub id: Value,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl RpcResponse {
    /// A success.
    pub fn result(id: Value, result: Value) -> Self {
        Self { jsonrpc: "2.0".to_owned(), id, result: Some(result), error: None }
    }

    /// A failure.
    pub fn error(id: Value, error: RpcError) -> Self {
        Self { jsonrpc: "2.0".to_owned(), id, result: None, error: Some(error) }
    }
}

/// A request object for `method` with `params` (id 10, as torus.js sends
/// it).
pub fn request_body(method: Method, params: Value) -> Value {
    serde_json::json!({ "jsonrpc": "2.0", "method": method.name(), "id": 10, "params": params })
}
