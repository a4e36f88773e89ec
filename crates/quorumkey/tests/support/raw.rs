//! Raw JSON-RPC requests to a devnet's nodes, as an attacker (or a test of
//! the protocol) sends them: commitments and reveals to chosen nodes with
//! chosen keys and signatures, and what the answers open to.
#![allow(dead_code, reason = "each test uses a different part")]

use quorumkey_crypto::address::eth_address;
use quorumkey_crypto::ecies::{EciesCiphertext, TorusEncryptedShare, decrypt};
use quorumkey_crypto::group::{NonZeroScalar, PublicKey, Scalar, public_key_to_xy_hex, scalar_from_bytes};
use quorumkey_crypto::hash::token_commitment_hex;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::shamir::{Share, reconstruct_secret};
use quorumkey_devnet::supervisor::NetworkJson;
use quorumkey_login::rpc::request_body;
use quorumkey_login::{Method, RpcError, RpcResponse, ShareRequestResult};
use serde_json::{Value, json};

/// The network as a client sees it, and a JSON-RPC caller.
pub struct Client {
    pub description: NetworkJson,
    pub http: reqwest::Client,
    pub verifier: String,
}

/// A user's (or a front-runner's) temporary key.
pub struct TempKey {
    pub secret: NonZeroScalar,
    pub public: PublicKey,
}

impl TempKey {
    pub fn new() -> Self {
        let secret = NonZeroScalar::generate_from_rng(&mut quorumkey_crypto::random::os_rng());
        Self { public: PublicKey::from_secret_scalar(&secret), secret }
    }
}

impl Client {
    pub fn endpoint(&self, node: u16) -> &str {
        &self.description.nodes[usize::from(node) - 1].endpoint
    }

    /// Posts raw bytes to node `node`'s JSON-RPC endpoint.
    pub async fn post(&self, node: u16, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .http
            .post(self.endpoint(node))
            .header("content-type", "application/json; charset=utf-8")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Waits until every node in `nodes` has applied the block that
    /// assigned `user_id` a key (a client returns once t nodes agree; the
    /// others may be a block behind).
    pub async fn wait_assigned(&self, nodes: &[u16], user_id: &str) {
        let params = serde_json::json!({ "verifier": self.verifier, "verifier_id": user_id });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        for &node in nodes {
            while self.call(node, Method::VerifierLookup, params.clone()).await.is_err() {
                assert!(std::time::Instant::now() < deadline, "node {node} never saw {user_id}'s assignment");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }

    /// Calls `method` on node `node`; a JSON-RPC error must come with HTTP 200.
    pub async fn call(&self, node: u16, method: Method, params: Value) -> Result<Value, RpcError> {
        let (status, body) = self.post(node, request_body(method, params).to_string().into_bytes()).await;
        assert_eq!(status, 200, "{} on node {node}: HTTP {status}: {body}", method.name());
        let response: RpcResponse = serde_json::from_value(body).unwrap();
        match (response.result, response.error) {
            (Some(result), None) => Ok(result),
            (None, Some(error)) => Err(error),
            other => panic!("neither result nor error: {other:?}"),
        }
    }

    pub fn commitment_params(&self, token: &str, temp: &TempKey) -> Value {
        let (x, y) = public_key_to_xy_hex(&temp.public);
        json!({
            "messageprefix": "mug00",
            "tokencommitment": token_commitment_hex(token),
            "temppubx": x,
            "temppuby": y,
            "verifieridentifier": self.verifier,
        })
    }

    /// An aggregate login's commitment params: the commitment of its
    /// `idtoken` and of each sub-token.
    pub fn aggregate_commitment_params(&self, id_token: &str, sub_tokens: &[&str], temp: &TempKey) -> Value {
        let mut params = self.commitment_params(id_token, temp);
        params["sub_token_commitments"] = json!(sub_tokens.iter().map(|t| token_commitment_hex(t)).collect::<Vec<_>>());
        params
    }

    /// Commits `token` with `temp` at `nodes`; one answer per node, in order.
    pub async fn commit(&self, nodes: &[u16], token: &str, temp: &TempKey) -> Vec<Result<Value, RpcError>> {
        self.commit_params(nodes, &self.commitment_params(token, temp)).await
    }

    /// Sends `CommitmentRequest` with `params` to `nodes`; one answer per
    /// node, in order.
    pub async fn commit_params(&self, nodes: &[u16], params: &Value) -> Vec<Result<Value, RpcError>> {
        futures::future::join_all(nodes.iter().map(|&node| self.call(node, Method::Commitment, params.clone()))).await
    }

    pub fn share_params(&self, token: &str, verifier_id: &str, signatures: &[Result<Value, RpcError>]) -> Value {
        // Like torus.js: an error reply becomes a null entry.
        let entries: Vec<Value> = signatures.iter().map(|s| s.as_ref().map_or(Value::Null, Clone::clone)).collect();
        json!({
            "encrypted": "yes",
            "item": [{
                "verifier_id": verifier_id,
                "idtoken": token,
                "nodesignatures": entries,
                "verifieridentifier": self.verifier,
            }],
        })
    }

    pub async fn reveal(&self, nodes: &[u16], params: &Value) -> Vec<Result<ShareRequestResult, RpcError>> {
        futures::future::join_all(nodes.iter().map(|&node| async move {
            self.call(node, Method::Share, params.clone()).await.map(|v| serde_json::from_value(v).unwrap())
        }))
        .await
    }

    pub async fn mint(&self, email: &str) -> String {
        super::mint(&self.description, email).await
    }
}

/// Decrypts node answers with `temp`; `None` where it cannot.
pub fn open(answer: &ShareRequestResult, temp: &TempKey) -> Option<Scalar> {
    let [key] = answer.keys.as_slice() else { panic!("exactly one key expected: {answer:?}") };
    let wire = TorusEncryptedShare { share: key.share.clone(), metadata: key.metadata.clone() };
    let plaintext = decrypt(&temp.secret, &EciesCiphertext::try_from(&wire).ok()?).ok()?;
    scalar_from_bytes(&plaintext).ok()
}

/// The address of the key rebuilt from exactly three shares.
pub fn rebuild(shares: &[(u16, Scalar)]) -> String {
    let shares: Vec<Share> =
        shares.iter().take(3).map(|&(index, value)| Share { index: u32::from(index), value }).collect();
    assert_eq!(shares.len(), 3, "three shares needed");
    let secret = reconstruct_secret(&shares).unwrap();
    let secret = NonZeroScalar::new(secret).into_option().unwrap();
    eth_address(&PublicKey::from_secret_scalar(&secret))
}

/// The error data of an answer that must be an error.
pub fn data_of(error: &Result<impl std::fmt::Debug, RpcError>) -> String {
    match error {
        Err(error) => error.data.clone(),
        Ok(value) => panic!("expected an error, got {value:?}"),
    }
}
