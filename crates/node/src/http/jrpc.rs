//! The client JSON-RPC API, `POST /jrpc`: what `@toruslabs/torus.js`
//! (8.x) and the quorumkey client call. The protocol rules are the pure
//! functions of `quorumkey-login`; this module feeds them the ledger, this
//! node's records and keys, the token verifiers and the clock.
//!
//! - `VerifierLookupRequest`: the key of a (verifier, verifier_id).
//! - `KeyAssign`: assigns a key through consensus and answers only once the
//!   assignment is finalized and served (the client re-checks 1 s later).
//! - `CommitmentRequest`: signs a token commitment once, bound to the
//!   request's temporary key, recorded durably before answering.
//! - `ShareRequest`: the reveal; see `quorumkey_login::reveal` for the
//!   rule on node signatures.
//!
//! The nodes, the threshold, the reveal quorum and this node's own index
//! are those of the node set in force on the committed ledger at each
//! request ([`NodeSetKeys`], parsed once per epoch): indexes are positions
//! in the set in force, so they change with it. A node that is not in the
//! set in force answers no lookup, signs no commitment, submits no
//! assignment and serves no share (`-32003`, [`LoginError::NotInNodeSet`]).
//!
//! Every answer is JSON-RPC with HTTP 200, except three transport-level
//! refusals that still carry a JSON-RPC error body: 413 for a body over
//! [`MAX_BODY_BYTES`], 408 for a body slower than the body timeout, and
//! 429 (with `Retry-After`) over a rate limit. The per-address rate limit
//! is one budget with `/v1` ([`AddressLimiter`]). Commitments are refused
//! over the caps on unexpired login records
//! ([`crate::pending_records`]). CORS allows any origin (the API uses no
//! cookies). Tokens never reach the logs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method as HttpMethod, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use commonware_codec::Encode as _;
use commonware_cryptography::ed25519;
use governor::{DefaultKeyedRateLimiter, RateLimiter};
use quorumkey_crypto::group::PublicKey;
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_ledger::{
    Assignment, LedgerView, Rejection, SignedTransaction, TransactionBody, VerifierId, VerifierName, VerifierRecord,
    transaction_hash,
};
use quorumkey_login::records::{record_expiry, record_key};
use quorumkey_login::reveal::AggregateLogin;
use quorumkey_login::share::{KeyContext, encrypt_share};
use quorumkey_login::{
    CheckedToken, CommitmentRequest, KeyAssignAuthorization, KeyFacts, KeyLookupResult, LoginError, LookupKey,
    LookupParams, Method, NodeSetKeys, RecordWrite, RevealFacts, RevealStep, RpcError, RpcRequest, RpcResponse,
    ShareRequest, SignaturePolicy, SignerRequest, decide,
};
use quorumkey_script::{ScriptInput, SubTokenInput};
use quorumkey_store::NewLoginRecord;
use quorumkey_verifier::{ScriptConfig, VerifierConfig, check_sub_token_request};
use serde_json::Value;
use tower_http::cors::{Any, CorsLayer};

use crate::config::RpcSettings;
use crate::consensus::finality_waiters::Finality;
use crate::consensus::{Admission, SubmitError};
use crate::http::client_address::{AddressLimiter, ClientAddress, client_address_of, per_second};
use crate::http::server::body_timeout;
use crate::http::v1::{MAX_FINALITY_WAIT, NodeApi};
use crate::login_store::LoginStore;
use crate::observability::{METRIC_RPC_LATENCY, METRIC_RPC_REQUESTS};
use crate::pending_records::PendingRecordCaps;
use crate::script_runner::ScriptRunError;
use crate::state::ShareStore;
use crate::token_verifier::{TokenVerifier, VerifyError, combined};

/// Longest a reveal waits for this node's shares to catch up with a new
/// epoch in force (see `settled_key_facts`).
const EPOCH_SWITCH_WAIT: Duration = Duration::from_secs(2);

/// Largest request body: an aggregate login with eight 16 KiB tokens and
/// the signatures, with room to spare.
pub(crate) const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longest a `KeyAssign` waits for its key (finality, then the pool).
pub(crate) const KEY_ASSIGN_WAIT: Duration = Duration::from_secs(30);
/// Verifier configurations kept parsed.
const VERIFIER_CACHE_SIZE: usize = 1024;

/// The Unix time in seconds.
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The request rate limits.
struct RateLimits {
    per_address: AddressLimiter,
    logins: DefaultKeyedRateLimiter<VerifierName>,
    assignments: DefaultKeyedRateLimiter<VerifierName>,
}

impl RateLimits {
    fn new(settings: &RpcSettings) -> Self {
        Self {
            per_address: AddressLimiter::new(settings.requests_per_second_per_ip, settings.burst_per_ip),
            logins: RateLimiter::keyed(per_second(
                settings.logins_per_second_per_verifier,
                settings.logins_per_second_per_verifier.saturating_mul(2),
            )),
            assignments: RateLimiter::keyed(per_second(
                settings.assignments_per_second_per_verifier,
                settings.assignments_per_second_per_verifier.saturating_mul(2),
            )),
        }
    }

    fn verifier(limiter: &DefaultKeyedRateLimiter<VerifierName>, verifier: &VerifierName) -> Result<(), LoginError> {
        limiter.check_key(verifier).map_err(|_| {
            LoginError::RateLimited(format!(
                "too many requests for verifier {} on this node; retry in a second",
                verifier.as_str()
            ))
        })
    }

    /// Forgets idle keys (bounded memory).
    fn shrink(&self) {
        self.per_address.shrink();
        self.logins.retain_recent();
        self.assignments.retain_recent();
    }
}

/// A verifier configuration parsed once per update.
struct CachedConfig {
    nonce: u64,
    config: Arc<VerifierConfig>,
}

/// This node's keys, for the login protocol (the other nodes' come from
/// the node set in force on the ledger).
pub struct LoginKeys {
    /// secp256k1: commitment signatures.
    pub node_key: SigningKey,
    /// ed25519: the `AssignKey` transactions this node submits.
    pub consensus_key: ed25519::PrivateKey,
}

/// Why the JSON-RPC service could not start.
#[derive(Debug, thiserror::Error)]
pub enum RpcStartError {
    /// `rpc.key_assign_signer` is not a public key.
    #[error("{0}")]
    Signer(quorumkey_crypto::CryptoError),
    /// The stored login records could not be counted.
    #[error("cannot count the stored login records: {0}")]
    CountRecords(quorumkey_store::StoreError),
}

/// The JSON-RPC service of one node.
pub struct RpcService {
    api: NodeApi,
    keys: LoginKeys,
    node_public: PublicKey,
    /// The node set in force, parsed once per epoch.
    node_set: Mutex<Option<Arc<NodeSetKeys>>>,
    tokens: TokenVerifier,
    signer: Option<PublicKey>,
    limits: RateLimits,
    policy: SignaturePolicy,
    configs: Mutex<HashMap<VerifierName, CachedConfig>>,
    records: LoginStore,
    shares: ShareStore,
    pending: PendingRecordCaps,
    scripts: crate::script_runner::ScriptRunner,
}

impl std::fmt::Debug for RpcService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcService").field("node_key", &self.api.node_key).finish_non_exhaustive()
    }
}

/// What a handler returns.
type Outcome = Result<Value, LoginError>;

/// The error for an assignment the ledger refused (at admission, or in
/// its block): a spent budget is a rate limit the client may wait out.
fn assignment_refused(rejection: Rejection) -> LoginError {
    match rejection {
        Rejection::BudgetSpent { .. } => {
            LoginError::RateLimited(format!("the network's assignment policy refuses new keys for now: {rejection}"))
        }
        Rejection::UnknownVerifier(name) => LoginError::UnknownVerifier(name),
        Rejection::VerifierDisabled(name) => LoginError::DisabledVerifier(name),
        other => LoginError::Unavailable(format!("the ledger refused the assignment: {other}")),
    }
}

fn internal(error: impl std::fmt::Display) -> LoginError {
    LoginError::Internal(error.to_string())
}

fn to_value<T: serde::Serialize>(value: &T) -> Outcome {
    serde_json::to_value(value).map_err(internal)
}

impl RpcService {
    /// The service of the node whose keys are `keys` (its index is the one
    /// its secp256k1 key has in the node set in force), checking tokens with
    /// `tokens`, keeping its login records in `records` and reading this
    /// node's key shares from `shares`. `settings` gives the limits and the
    /// optional KeyAssign signer (already validated with the node's
    /// configuration).
    pub fn new(
        api: NodeApi,
        keys: LoginKeys,
        tokens: TokenVerifier,
        records: LoginStore,
        shares: ShareStore,
        settings: &RpcSettings,
    ) -> Result<Self, RpcStartError> {
        let signer = settings
            .key_assign_signer
            .as_deref()
            .map(|hex| quorumkey_crypto::group::public_key_from_hex("rpc.key_assign_signer", hex))
            .transpose()
            .map_err(RpcStartError::Signer)?;
        // The counts of unexpired records, before any is added.
        let pending = PendingRecordCaps::new(settings);
        let started = Instant::now();
        let counted = pending.rebuild(records.tables(), unix_now()).map_err(RpcStartError::CountRecords)?;
        tracing::info!(records = counted, elapsed = ?started.elapsed(), "counted unexpired login records");
        Ok(Self {
            node_public: PublicKey::from(keys.node_key.verifying_key()),
            node_set: Mutex::new(None),
            api,
            keys,
            tokens,
            signer,
            limits: RateLimits::new(settings),
            policy: SignaturePolicy::default(),
            configs: Mutex::new(HashMap::new()),
            records,
            shares,
            pending,
            scripts: crate::script_runner::ScriptRunner::default(),
        })
    }

    /// The per-address rate limit, which `/v1` shares.
    pub(crate) fn address_limiter(&self) -> AddressLimiter {
        self.limits.per_address.clone()
    }

    /// Takes one request of `client` from its token bucket, or refuses it
    /// (before its body is read).
    pub fn admit(&self, client: ClientAddress) -> Result<(), LoginError> {
        self.limits.per_address.check(client).map_err(LoginError::RateLimited)
    }

    /// Answers one request body (from an admitted client at `client`).
    pub async fn handle(&self, client: ClientAddress, body: &[u8]) -> (StatusCode, RpcResponse) {
        let request = match RpcRequest::parse(body) {
            Ok(request) => request,
            Err((id, error)) => {
                record(None, &error, Duration::ZERO);
                return (StatusCode::OK, RpcResponse::error(id, error));
            }
        };
        let started = Instant::now();
        let outcome = match request.method {
            Method::VerifierLookup => self.verifier_lookup(&request.params),
            Method::KeyAssign => self.key_assign(&request).await,
            Method::Commitment => self.commitment(client, &request.params).await,
            Method::Share => self.share(&request.params).await,
        };
        let (status, response) = match outcome {
            Ok(result) => (StatusCode::OK, RpcResponse::result(request.id, result)),
            Err(error) => {
                let status = if matches!(error, LoginError::RateLimited(_)) {
                    StatusCode::TOO_MANY_REQUESTS
                } else {
                    StatusCode::OK
                };
                if let LoginError::Internal(reason) = &error {
                    tracing::warn!(method = request.method.name(), %reason, "request failed inside the node");
                }
                (status, RpcResponse::error(request.id, error.to_rpc()))
            }
        };
        match &response.error {
            Some(error) => record(Some(request.method), error, started.elapsed()),
            None => {
                metrics::counter!(METRIC_RPC_REQUESTS, "method" => request.method.name(), "outcome" => "ok")
                    .increment(1);
                metrics::histogram!(METRIC_RPC_LATENCY, "method" => request.method.name())
                    .record(started.elapsed().as_secs_f64());
            }
        }
        (status, response)
    }

    /// The verifier's ledger record, refusing unknown and disabled ones.
    fn verifier_record<S: quorumkey_ledger::StateRead + ?Sized>(
        &self,
        view: &LedgerView<'_, S>,
        name: &VerifierName,
    ) -> Result<VerifierRecord, LoginError> {
        match view.verifier(name).map_err(internal)? {
            None => Err(LoginError::UnknownVerifier(name.as_str().to_owned())),
            Some(record) if !record.enabled => Err(LoginError::DisabledVerifier(name.as_str().to_owned())),
            Some(record) => Ok(record),
        }
    }

    /// The node set in force in `view`, as the login rules read it: parsed
    /// once per epoch (the epoch alone is 8 bytes to read), not per
    /// request.
    fn node_set<S: quorumkey_ledger::StateRead + ?Sized>(
        &self,
        view: &LedgerView<'_, S>,
    ) -> Result<Arc<NodeSetKeys>, LoginError> {
        let epoch = view.epoch().map_err(internal)?;
        let mut cached = self.node_set.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(keys) = cached.as_ref().filter(|keys| keys.epoch == epoch) {
            return Ok(keys.clone());
        }
        let keys = Arc::new(NodeSetKeys::new(&view.node_set().map_err(internal)?, &self.node_public)?);
        *cached = Some(keys.clone());
        Ok(keys)
    }

    /// The node set in force and this node's index in it, refusing a node
    /// that is not in it.
    fn membership<S: quorumkey_ledger::StateRead + ?Sized>(
        &self,
        view: &LedgerView<'_, S>,
    ) -> Result<(Arc<NodeSetKeys>, u16), LoginError> {
        let keys = self.node_set(view)?;
        let index = keys.member()?;
        Ok((keys, index))
    }

    /// The verifier's parsed configuration (parsed once per update), and
    /// the node set in force with this node's index in it (refusing a node
    /// that is not in it), from one view of the ledger.
    fn login_context(&self, name: &VerifierName) -> Result<(Arc<VerifierConfig>, Arc<NodeSetKeys>, u16), LoginError> {
        let ((keys, index), record) =
            self.with_view(|view| Ok((self.membership(view)?, self.verifier_record(view, name)?)))?;
        Ok((self.parsed_config(name, &record)?, keys, index))
    }

    /// `record`'s configuration, parsed once per update.
    fn parsed_config(&self, name: &VerifierName, record: &VerifierRecord) -> Result<Arc<VerifierConfig>, LoginError> {
        let mut configs = self.configs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(cached) = configs.get(name)
            && cached.nonce == record.nonce
        {
            return Ok(cached.config.clone());
        }
        // The ledger checked the configuration when it was registered.
        let config =
            Arc::new(VerifierConfig::parse(&record.config).map_err(|e| {
                internal(format!("the registered configuration of {} does not parse: {e}", name.as_str()))
            })?);
        if configs.len() >= VERIFIER_CACHE_SIZE {
            configs.clear();
        }
        configs.insert(name.clone(), CachedConfig { nonce: record.nonce, config: config.clone() });
        Ok(config)
    }

    /// Runs `read` on a view of the committed ledger.
    fn with_view<T>(
        &self,
        read: impl FnOnce(&LedgerView<'_, quorumkey_store::LedgerSnapshot>) -> Result<T, LoginError>,
    ) -> Result<T, LoginError> {
        self.api.state.read(read).map_err(internal)?
    }

    /// The key assigned to the pair, if one is (not if it waits for the
    /// pool): its index, public key and the public share of node `own`
    /// (this node's index in the set in force; `None`: no share wanted).
    /// The caller has checked the verifier.
    fn assigned_key<S: quorumkey_ledger::StateRead + ?Sized>(
        &self,
        view: &LedgerView<'_, S>,
        verifier: &VerifierName,
        verifier_id: &VerifierId,
        own: Option<u16>,
    ) -> Result<Option<(u64, PublicKey, Vec<u8>)>, LoginError> {
        let Some(Assignment::Assigned { key_index }) = view.assignment(verifier, verifier_id).map_err(internal)? else {
            return Ok(None);
        };
        let key = view
            .key(key_index)
            .map_err(internal)?
            .ok_or_else(|| internal(format!("assigned key {key_index} is not in the pool")))?;
        let public_key =
            quorumkey_crypto::group::public_key_from_sec1_named("key", &key.public_key).map_err(internal)?;
        let Some(own) = own else { return Ok(Some((key_index, public_key, Vec::new()))) };
        let own_share = key
            .public_shares
            .get(usize::from(own).saturating_sub(1))
            .map(|share| share.to_vec())
            .ok_or_else(|| internal(format!("key {key_index} has no public share for node {own}")))?;
        Ok(Some((key_index, public_key, own_share)))
    }

    /// The lookup answer of the pair (refusing unknown and disabled
    /// verifiers), if it has a key. A node out of the set in force answers
    /// no lookup either: it may no longer follow the ledger, and the
    /// client must learn the new set.
    fn lookup_result(&self, params: &LookupParams) -> Result<Option<Value>, LoginError> {
        let found = self.with_view(|view| {
            self.membership(view)?;
            self.verifier_record(view, &params.verifier)?;
            self.assigned_key(view, &params.verifier, &params.verifier_id, None)
        })?;
        match found {
            Some((key_index, public_key, _)) => {
                Ok(Some(to_value(&KeyLookupResult { keys: vec![LookupKey::new(key_index, &public_key)] })?))
            }
            None => Ok(None),
        }
    }

    fn verifier_lookup(&self, params: &Value) -> Outcome {
        let params = LookupParams::parse(params)?;
        self.lookup_result(&params)?.ok_or(LoginError::NotAssigned)
    }

    async fn key_assign(&self, request: &RpcRequest) -> Outcome {
        let params = LookupParams::parse(&request.params)?;
        if let Some(signer) = &self.signer {
            let signer_request = SignerRequest {
                verifier: params.verifier.clone(),
                verifier_id: params.verifier_id.clone(),
                node: self.node_public,
            };
            KeyAssignAuthorization::from_body(&request.body)?.check(signer, &signer_request, unix_now())?;
        }
        if let Some(found) = self.lookup_result(&params)? {
            return Ok(found);
        }
        // The ledger checks the transaction's signer against the set in
        // force, by its index there.
        let (_, index) = self.with_view(|view| self.membership(view))?;
        RateLimits::verifier(&self.limits.assignments, &params.verifier)?;
        let deadline = Instant::now() + KEY_ASSIGN_WAIT;
        let body =
            TransactionBody::AssignKey { verifier: params.verifier.clone(), verifier_id: params.verifier_id.clone() };
        let transaction = SignedTransaction::sign_as_node(
            self.api.state.ledger().network_id(),
            body,
            index,
            &self.keys.consensus_key,
        )
        .encode();
        let waiter =
            self.api.waiters.register(transaction_hash(&transaction)).map_err(|e| {
                LoginError::Unavailable(format!("this node is too busy to wait for an assignment: {e}"))
            })?;
        match self.api.submitter.submit(Bytes::from(transaction.to_vec())) {
            Ok((_, Admission::AlreadyFinalized)) => {}
            Ok(_) => {
                if let Ok(Ok(Finality { rejection: Some(rejection), .. })) =
                    tokio::time::timeout(MAX_FINALITY_WAIT.min(KEY_ASSIGN_WAIT), waiter).await
                {
                    return Err(assignment_refused(rejection));
                }
            }
            Err(SubmitError::Refused(rejection)) => return Err(assignment_refused(rejection)),
            Err(SubmitError::Invalid(rejection)) => {
                return Err(internal(format!("the ledger refused the assignment: {rejection}")));
            }
            Err(error) => return Err(LoginError::Unavailable(format!("cannot submit the assignment: {error}"))),
        }
        // Finalized here; if the pool was empty it waits for the DKG's next
        // batch.
        loop {
            if let Some(found) = self.lookup_result(&params)? {
                return Ok(found);
            }
            if Instant::now() >= deadline {
                return Err(LoginError::Unavailable(format!(
                    "the assignment is queued but no key was ready within {} s (the key pool is empty until the DKG's next batch); try again",
                    KEY_ASSIGN_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn commitment(&self, client: ClientAddress, params: &Value) -> Outcome {
        let request = CommitmentRequest::parse(params)?;
        // A node out of the set in force signs nothing: its signature
        // would not count, and the client must learn the new set.
        let (config, _, _) = self.login_context(&request.verifier)?;
        request.check_kind(config.takes_sub_tokens())?;
        RateLimits::verifier(&self.limits.logins, &request.verifier)?;
        let now = unix_now();
        // Counted before any signing: a request over its caps costs no
        // signature. One record for the commitment, one per sub-token.
        let count = 1 + request.sub_tokens.len() as u64;
        let expires_at = record_expiry(now);
        let reserved = match self.pending.reserve(&request.verifier, client, count, expires_at, now) {
            Ok(()) => true,
            // A retry of a commitment this node signed gets its answer
            // whatever the counts.
            Err(_) if self.records.record(&request.record_key()).map_err(internal)?.is_some() => false,
            Err(cap) => return Err(LoginError::Unavailable(cap.to_string())),
        };
        let record = request.sign(&self.keys.node_key, now);
        debug_assert_eq!(record.expires_at, expires_at);
        let writes = request.record_writes(&record);
        let inserted = self.insert_records(writes).await;
        if reserved {
            // Only the records this request stored count.
            let not_stored = match &inserted {
                Ok(existing) => existing.iter().filter(|found| found.is_some()).count() as u64,
                Err(_) => count,
            };
            self.pending.release(&request.verifier, client, not_stored, expires_at);
        }
        let existing = inserted?;
        // A retry of the same binding gets the stored answer again.
        let record = request.outcome(record, &existing)?;
        to_value(&record.result(&self.node_public))
    }

    /// Inserts one request's records where none is, durably, together;
    /// returns what was stored under each key before.
    async fn insert_records(&self, writes: Vec<RecordWrite>) -> Result<Vec<Option<Vec<u8>>>, LoginError> {
        let records = writes
            .into_iter()
            .map(|write| NewLoginRecord { key: write.key, value: write.value, expires_at: write.expires_at })
            .collect();
        self.records.insert_all(records).await.map_err(internal)
    }

    /// The reveal: gathers what `quorumkey_login::decide` asks for, in its
    /// order, and serves the share it grants.
    async fn share(&self, params: &Value) -> Outcome {
        let keys = self.with_view(|view| self.node_set(view))?;
        let request = ShareRequest::parse(params, keys.nodes.len())?;
        let (config, keys, _) = self.login_context(&request.verifier)?;
        let record = self.records.record(&record_key(&request.commitment)).map_err(internal)?;
        let sub_records = request
            .sub_token_commitments()
            .iter()
            .map(|commitment| self.records.record(&record_key(commitment)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(internal)?;
        let mut facts = RevealFacts::new(
            &request,
            &config,
            &keys.nodes,
            keys.required,
            unix_now(),
            self.policy,
            record,
            sub_records,
        );
        // Each step fills one fact: the decision comes within four.
        for _ in 0..4 {
            match decide(&facts)? {
                RevealStep::CheckToken => facts.token = Some(self.verify_token(&config, &request, facts.now).await),
                RevealStep::LookUpKey => facts.key = Some(self.settled_key_facts(&request).await?),
                RevealStep::RecordNullifiers(writes) => facts.nullifiers = Some(self.insert_records(writes).await?),
                RevealStep::Grant(grant) => {
                    let context = KeyContext {
                        key_index: grant.key_index,
                        public_key: &grant.public_key,
                        verifier: &request.verifier,
                        verifier_id: &request.verifier_id,
                    };
                    let result = encrypt_share(
                        &grant.share,
                        &grant.recipient,
                        &context,
                        &mut quorumkey_crypto::random::os_rng(),
                    );
                    return to_value(&result);
                }
            }
        }
        Err(internal("the reveal decision asked for more than the four facts it needs"))
    }

    /// [`Self::key_facts`] once this node's shares are for the epoch in
    /// force. Between the block that puts a new epoch in force and this
    /// node's participant starting to put its new shares in force (one
    /// small transaction, a few milliseconds, after which the store answers
    /// with the new shares while it moves them in bounded steps), the
    /// ledger's public shares are the new epoch's and the stored share the
    /// old one's: the answer waits for that start, up to
    /// [`EPOCH_SWITCH_WAIT`], rather than refuse a share that is about to
    /// be right.
    async fn settled_key_facts(&self, request: &ShareRequest) -> Result<KeyFacts, LoginError> {
        let deadline = Instant::now() + EPOCH_SWITCH_WAIT;
        loop {
            let epoch = self.with_view(|view| view.epoch().map_err(internal))?;
            let share_epoch = self.shares.share_epoch().map_err(internal)?;
            if share_epoch >= epoch {
                return self.key_facts(request);
            }
            if Instant::now() >= deadline {
                return Err(LoginError::Unavailable(format!(
                    "this node is moving to the shares of epoch {epoch}; try again in a moment"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The pair's key and this node's share of it, with this node's public
    /// share under its index in the set in force.
    fn key_facts(&self, request: &ShareRequest) -> Result<KeyFacts, LoginError> {
        let Some((key_index, public_key, own_public_share)) = self.with_view(|view| {
            let (_, index) = self.membership(view)?;
            self.assigned_key(view, &request.verifier, &request.verifier_id, Some(index))
        })?
        else {
            return Ok(KeyFacts::NotAssigned);
        };
        let share = self.shares.key_share(key_index).map_err(internal)?;
        Ok(KeyFacts::Assigned { key_index, public_key, own_public_share, share })
    }

    /// The token's check, as the reveal decision takes it.
    async fn verify_token(
        &self,
        config: &VerifierConfig,
        request: &ShareRequest,
        now: u64,
    ) -> Result<CheckedToken, LoginError> {
        let rejected = |error: VerifyError| {
            if error.is_provider_busy() {
                LoginError::RateLimited(format!("verifier {}: {error}", request.verifier.as_str()))
            } else {
                LoginError::TokenRejected { verifier: request.verifier.as_str().to_owned(), reason: error.to_string() }
            }
        };
        let identity = match (config, &request.aggregate) {
            (VerifierConfig::Jwt(jwt), _) => self.tokens.verify_jwt(jwt, &request.id_token, now).await.map(Into::into),
            (VerifierConfig::Introspection(introspection), _) => {
                self.tokens.verify_introspection(request.verifier.as_str(), introspection, &request.id_token, now).await
            }
            (VerifierConfig::Aggregate(aggregate), Some(login)) => {
                self.tokens
                    .verify_aggregate(
                        request.verifier.as_str(),
                        aggregate,
                        request.verifier_id.as_str(),
                        &login.sub_verifier_ids,
                        &login.tokens,
                        now,
                    )
                    .await
            }
            (VerifierConfig::Script(script), Some(login)) => {
                return self.verify_script(script, request, login, now).await;
            }
            (VerifierConfig::Aggregate(_) | VerifierConfig::Script(_), None) => {
                return Err(internal(
                    "the reveal decision let a request without sub-tokens through for a verifier that takes them",
                ));
            }
        }
        .map_err(rejected)?;
        Ok(CheckedToken {
            verifier_id: identity.verifier_id,
            issued_at: identity.issued_at,
            identities: identity.identities,
        })
    }

    /// A script login's check: each sub-token by its sub-verifier, then the
    /// script on their verified claims and the login's evidence, which
    /// must name the login's `verifier_id`.
    async fn verify_script(
        &self,
        config: &ScriptConfig,
        request: &ShareRequest,
        login: &AggregateLogin,
        now: u64,
    ) -> Result<CheckedToken, LoginError> {
        let verifier = request.verifier.as_str();
        let rejected = |reason: String| LoginError::TokenRejected { verifier: verifier.to_owned(), reason };
        let token_rejected = |error: VerifyError| {
            if error.is_provider_busy() {
                LoginError::RateLimited(format!("verifier {verifier}: {error}"))
            } else {
                rejected(error.to_string())
            }
        };
        check_sub_token_request(&config.sub_verifiers, config.require_all, &login.sub_verifier_ids, login.tokens.len())
            .map_err(|error| token_rejected(error.into()))?;
        let subs = self
            .tokens
            .verify_sub_tokens(verifier, &config.sub_verifiers, &login.sub_verifier_ids, &login.tokens, now, true)
            .await
            .map_err(token_rejected)?;
        // `decide` let through only the evidence the verifier takes.
        let evidence = login.evidence.clone().unwrap_or_default();
        let input = ScriptInput {
            sub_tokens: subs
                .iter()
                .map(|sub| SubTokenInput {
                    name: sub.name.clone(),
                    verifier_id: sub.identity.verifier_id.clone(),
                    claims: sub.identity.claims.clone(),
                })
                .collect(),
            params: evidence.into_iter().map(|(name, text)| (name, Value::String(text))).collect(),
            issued_at: subs.iter().map(|sub| sub.identity.issued_at).min().unwrap_or(0),
            now,
        };
        let load = || {
            let id = config.module_id()?;
            self.with_view(|view| view.script_module(&id).map_err(internal)).ok().flatten()
        };
        let outcome = match self.scripts.run(config, input, load).await {
            Ok(outcome) => outcome,
            Err(ScriptRunError::Run(error)) => return Err(rejected(error.to_string())),
            Err(other) => return Err(internal(other)),
        };
        if outcome.verifier_id != request.verifier_id.as_str() {
            return Err(rejected(format!(
                "the verifier script names {:?}, not this login's verifier_id {:?}",
                outcome.verifier_id,
                request.verifier_id.as_str()
            )));
        }
        let identity = combined(&outcome.verifier_id, &subs);
        Ok(CheckedToken {
            verifier_id: identity.verifier_id,
            issued_at: identity.issued_at,
            identities: identity.identities,
        })
    }

    /// Forgets idle rate-limit entries, cached token answers and the
    /// counts of records expired at `now` (Unix seconds). The records
    /// themselves go with the login store's sweep.
    pub(crate) fn forget_idle(&self, now: u64) {
        self.limits.shrink();
        self.tokens.shrink();
        self.pending.forget_expired(now);
        metrics::gauge!(crate::pending_records::METRIC_PENDING_RECORDS).set(self.pending.total_count(now) as f64);
    }
}

fn record(method: Option<Method>, error: &RpcError, elapsed: Duration) {
    let name = method.map_or("invalid", Method::name);
    metrics::counter!(METRIC_RPC_REQUESTS, "method" => name, "outcome" => error.code.to_string()).increment(1);
    if method.is_some() {
        metrics::histogram!(METRIC_RPC_LATENCY, "method" => name).record(elapsed.as_secs_f64());
    }
}

async fn jrpc(State(service): State<Arc<RpcService>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let client = client_address_of(&parts.extensions);
    if let Err(refused) = service.admit(client) {
        return rate_limited(&RpcResponse::error(Value::Null, refused.to_rpc()));
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(error) => {
            if let Some(timeout) = body_timeout(&error) {
                let error =
                    RpcError::new(quorumkey_login::rpc::INVALID_REQUEST, "Invalid Request", timeout.to_string());
                return json_response(StatusCode::REQUEST_TIMEOUT, &RpcResponse::error(Value::Null, error));
            }
            let error = RpcError::new(
                quorumkey_login::rpc::INVALID_REQUEST,
                "Invalid Request",
                format!("the body is over {MAX_BODY_BYTES} bytes (or was cut off)"),
            );
            return json_response(StatusCode::PAYLOAD_TOO_LARGE, &RpcResponse::error(Value::Null, error));
        }
    };
    match service.handle(client, &body).await {
        (StatusCode::TOO_MANY_REQUESTS, response) => rate_limited(&response),
        (status, response) => json_response(status, &response),
    }
}

/// HTTP 429 with `Retry-After: 1` and the JSON-RPC error.
fn rate_limited(response: &RpcResponse) -> Response {
    let mut answer = json_response(StatusCode::TOO_MANY_REQUESTS, response);
    answer.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    answer
}

fn json_response(status: StatusCode, response: &RpcResponse) -> Response {
    // Serializing plain JSON values cannot fail.
    let body = serde_json::to_vec(response).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response()
}

/// Longest a request may take (a `KeyAssign` waits up to 30 s).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);

/// `POST /jrpc` with CORS for any origin and a 40 s limit per request.
pub fn router(service: Arc<RpcService>) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([HttpMethod::POST, HttpMethod::OPTIONS])
        .allow_headers(Any)
        .max_age(Duration::from_secs(3600));
    Router::new()
        .route("/jrpc", post(jrpc))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(cors)
        .with_state(service)
}
