//! The login attacks, on five real `quorumkey node` processes: what an
//! observer of a user's reveal (a rogue node, a TLS-terminating proxy, a
//! log of request bodies) and up to t − 1 = 2 Byzantine nodes can get. In
//! every case the attacker decrypts fewer than t shares, counting the
//! Byzantine nodes' own; each attack obtained the user's key before the
//! rule it meets (`docs/api.md`, "Who may misbehave, and why the rules
//! hold").
//!
//! - Another spelling of a JWT the user revealed (ECDSA `s` → `n − s`,
//!   signature padding, trailing bits), committed and revealed under the
//!   observer's own key.
//! - A node that signs the user's commitment and the attacker's, for an
//!   attacker who bound two honest nodes to its key first.
//! - An aggregate login rewritten: `idtoken` in upper case, a subset of its
//!   sub-tokens, a mix of two logins' sub-tokens, a sub-token used alone
//!   with a single verifier of the same issuer and audience (and the
//!   reverse).
//! - An opaque (introspection) token respelled: blanks and other bytes the
//!   token syntax excludes, and, for a provider that accepts another
//!   spelling, the same token as the provider sees it.
//! - A commitment starved by tripping a node's rate limit, with another
//!   node down: the client retries, the login completes.
//! - A verifier's window widened after the nodes swept a token's records
//!   (the nodes run three hours ahead under libfaketime): the old token is
//!   refused, a fresh one logs in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use quorumkey_client::{ClientOptions, QuorumkeyClient};
use quorumkey_crypto::group::public_key_to_xy_hex;
use quorumkey_crypto::signature::RecoverableSignature;
use quorumkey_devnet::dev_issuer::{MintRequest, dev_verifier_config};
use quorumkey_devnet::supervisor::{Devnet, NETWORK_JSON};
use quorumkey_login::reveal::aggregate_id_token;
use quorumkey_login::rpc::request_body;
use quorumkey_login::{Method, RpcError, ShareRequestResult};
use quorumkey_node::config::RpcSettings;
use quorumkey_node::identity::NodeIdentity;
use quorumkey_verifier::other_spellings;
use serde_json::{Value, json};
use support::raw::{Client, TempKey, data_of, open, rebuild};
use support::{VerifierOwner, devnet_options, mint_with, small_dkg, start_devnet};

const NODES: u16 = 5;
const ALL: [u16; 5] = [1, 2, 3, 4, 5];
/// Shares that rebuild a key.
const THRESHOLD: usize = 3;

/// What every scenario works with.
struct Network {
    raw: Client,
    client: QuorumkeyClient,
    /// The devnet's directory.
    dir: std::path::PathBuf,
    owner: VerifierOwner,
}

impl Network {
    fn dev_issuer(&self) -> (String, String) {
        let dev = self.raw.description.dev_issuer.as_ref().unwrap();
        (dev.issuer.clone(), dev.audience.clone())
    }

    /// The raw client of verifier `verifier`.
    fn raw_for(&self, verifier: &str) -> Client {
        Client { description: self.raw.description.clone(), http: self.raw.http.clone(), verifier: verifier.into() }
    }

    /// A token of the development issuer for `email` with audience `audience`.
    async fn token(&self, email: &str, audience: &str) -> String {
        let request = MintRequest { audience: Some(audience.to_owned()), ..MintRequest::for_email(email) };
        mint_with(&self.raw.description, &request).await
    }

    /// A JWT verifier of the development issuer for `audience`.
    fn jwt_config(&self, audience: &str) -> Value {
        let (issuer, _) = self.dev_issuer();
        serde_json::from_str(&dev_verifier_config(&issuer, audience)).unwrap()
    }
}

/// An error's data, or nothing for a result.
fn data_of_error<T>(answer: &Result<T, RpcError>) -> &str {
    answer.as_ref().err().map_or("", |error| error.data.as_str())
}

/// How many of `answers` open with `temp`.
fn opened(answers: &[Result<ShareRequestResult, RpcError>], temp: &TempKey) -> usize {
    answers.iter().filter(|answer| answer.as_ref().ok().and_then(|a| open(a, temp)).is_some()).count()
}

/// The attacker's whole attempt with `token` (for `verifier` of `raw`):
/// commits under its own key with `params` at every node, then reveals with
/// whatever signatures it got (plus `extra`) to every node. Returns the
/// shares it could decrypt and the answers.
async fn attempt(
    raw: &Client,
    params: &Value,
    reveal: impl Fn(&[Result<Value, RpcError>]) -> Value,
    attacker: &TempKey,
) -> (usize, Vec<Result<ShareRequestResult, RpcError>>) {
    let signatures = raw.commit_params(&ALL, params).await;
    let answers = raw.reveal(&ALL, &reveal(&signatures)).await;
    (opened(&answers, attacker), answers)
}

/// One devnet at a time: five node processes each already share the two
/// cores.
static ONE_DEVNET: Mutex<()> = Mutex::new(());

/// Runs `attack` against a fresh five-node devnet (its nodes run until
/// `attack` stops or drops the devnet).
fn on_a_devnet<F: std::future::Future<Output = ()>>(attack: impl FnOnce(Network, Devnet) -> F) {
    let _one = ONE_DEVNET.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let mut options = devnet_options(dir.path(), NODES, small_dkg());
    // A per-verifier login limit an attacker can trip from one address.
    options.rpc = RpcSettings { logins_per_second_per_verifier: 20, ..RpcSettings::default() };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (devnet, description) = start_devnet(&options, 16).await;
        let path = options.dir.join(NETWORK_JSON);
        let verifier = description.dev_issuer.as_ref().unwrap().verifier.clone();
        let network = Network {
            raw: Client { description: description.clone(), http: reqwest::Client::new(), verifier },
            client: QuorumkeyClient::from_file(&path, ClientOptions::default()).unwrap(),
            owner: VerifierOwner::new(&path),
            dir: options.dir.clone(),
        };
        attack(network, devnet).await;
    });
}

#[test]
fn a_respelled_jwt_decrypts_nothing() {
    on_a_devnet(|network, devnet| async move {
        malleated_jwt(&network).await;
        devnet.stop().await;
    });
}

#[test]
fn an_equivocating_node_and_a_front_runner_hold_fewer_than_t_shares() {
    on_a_devnet(|network, devnet| async move {
        equivocating_node(&network).await;
        devnet.stop().await;
    });
}

#[test]
fn rewritten_aggregate_logins_are_refused() {
    on_a_devnet(|network, devnet| async move {
        aggregate_rewrites(&network).await;
        devnet.stop().await;
    });
}

#[test]
fn respelled_opaque_tokens_decrypt_nothing() {
    on_a_devnet(|network, devnet| async move {
        introspection_rewrites(&network).await;
        devnet.stop().await;
    });
}

#[test]
fn a_rate_limited_commitment_is_retried() {
    on_a_devnet(|network, mut devnet| async move {
        starved_commitment(&network, &mut devnet).await;
        devnet.stop().await;
    });
}

#[test]
fn a_window_widened_after_the_sweep_revives_no_token() {
    on_a_devnet(|network, devnet| async move { widened_window_after_sweep(&network, devnet).await });
}

/// After a real login, the observer commits another spelling of the same
/// JWT under its own key: a new commitment, which every node signs, but
/// no node accepts the spelling, so it decrypts nothing.
async fn malleated_jwt(network: &Network) {
    let (verifier, user_id) = (&network.raw.verifier, "malleable@example.com");
    let (key, _) = network.client.lookup_or_assign(verifier, user_id).await.unwrap();
    let token = network.raw.mint(user_id).await;
    let login = network.client.login(verifier, user_id, &token).await.unwrap();
    assert_eq!(login.key, key);
    let spellings = other_spellings(&token);
    assert!(spellings.len() >= 3, "padding, trailing bits and n − s: {}", spellings.len());
    let mut attempts = Vec::new();
    for respelled in spellings {
        let attacker = TempKey::new();
        let params = network.raw.commitment_params(&respelled, &attacker);
        let (decrypted, answers) =
            attempt(&network.raw, &params, |s| network.raw.share_params(&respelled, user_id, s), &attacker).await;
        attempts.push((respelled, decrypted, answers));
    }
    let stolen: Vec<_> = attempts.iter().filter(|(_, decrypted, _)| *decrypted > 0).collect();
    assert!(
        stolen.is_empty(),
        "the observer decrypted shares: {:?}",
        stolen.iter().map(|(r, d, _)| (r, d)).collect::<Vec<_>>()
    );
    for (respelled, _, answers) in &attempts {
        for answer in answers {
            assert!(data_of(answer).contains("canonical form"), "{respelled}: {answer:?}");
        }
    }
}

/// Node 3 is Byzantine: it signs the user's commitment for the user's key
/// and, with its secp256k1 key, the same commitment for the attacker's,
/// who bound nodes 4 and 5 to its key first. The user's quorum (1, 2, 3)
/// is too small to reveal, and so is the attacker's (3, 4, 5): no node
/// serves either, and the attacker holds one share, node 3's own.
async fn equivocating_node(network: &Network) {
    let (raw, user_id) = (&network.raw, "equivocation@example.com");
    network.client.lookup_or_assign(&raw.verifier, user_id).await.unwrap();
    let token = raw.mint(user_id).await;
    let (user, attacker) = (TempKey::new(), TempKey::new());
    let front_run = raw.commit(&[4, 5], &token, &attacker).await;
    assert!(front_run.iter().all(Result::is_ok));
    let signatures = raw.commit(&ALL, &token, &user).await;
    assert_eq!(signatures.iter().filter(|s| s.is_ok()).count(), 3, "nodes 4 and 5 are bound to the attacker");

    // Node 3 signs the attacker's binding too (its data string, with the
    // attacker's temporary key, signed with node 3's key).
    let node_3 = NodeIdentity::load(&network.dir.join("node-3")).unwrap().secp256k1;
    let honest = signatures[2].as_ref().unwrap();
    let (x, y) = public_key_to_xy_hex(&attacker.public);
    let (user_x, user_y) = public_key_to_xy_hex(&user.public);
    let data = honest["data"].as_str().unwrap().replace(&user_x, &x).replace(&user_y, &y);
    let mut equivocation = honest.clone();
    equivocation["data"] = json!(data);
    equivocation["signature"] = json!(RecoverableSignature::sign_keccak(&node_3, data.as_bytes()).to_torus_hex());

    // The user reveals with its three signatures (as a client that waits
    // for t would): the token is out.
    let user_answers = raw.reveal(&[1, 2, 3], &raw.share_params(&token, user_id, &signatures)).await;
    // The attacker reveals to the nodes bound to its key with node 3's
    // signature and theirs.
    let mut attacker_signatures: Vec<Result<Value, RpcError>> = vec![Ok(equivocation)];
    attacker_signatures.extend(front_run);
    let answers = raw.reveal(&[4, 5], &raw.share_params(&token, user_id, &attacker_signatures)).await;
    let decrypted = opened(&answers, &attacker) + 1;
    assert!(decrypted < THRESHOLD, "the attacker holds {decrypted} shares: {answers:?}");
    for answer in user_answers.iter().chain(&answers) {
        assert!(data_of(answer).contains("3 usable node signatures") && data_of(answer).contains("4 needed"));
    }
    // The quorumkey client does not reveal at all with three signatures,
    // and says why; with a fresh token the user logs in.
    let refused = network.client.login(&raw.verifier, user_id, &token).await.unwrap_err();
    assert!(refused.to_string().contains("commitment"), "{refused}");
    network.client.login(&raw.verifier, user_id, &raw.mint(user_id).await).await.unwrap();
}

/// An aggregate login of `subs` (sub-verifier, token) for `user_id` at
/// `agg`: its `idtoken`, its commitment params (with every sub-token's
/// commitment) for `temp`, and its reveal params with `signatures`.
struct AggregateLogin<'a> {
    agg: &'a Client,
    user_id: &'a str,
    subs: Vec<(&'a str, &'a str)>,
}

impl AggregateLogin<'_> {
    fn id_token(&self) -> String {
        aggregate_id_token(&self.subs.iter().map(|(_, t)| (*t).to_owned()).collect::<Vec<_>>())
    }

    fn commit_params(&self, id_token: &str, temp: &TempKey) -> Value {
        self.agg.aggregate_commitment_params(id_token, &self.subs.iter().map(|(_, t)| *t).collect::<Vec<_>>(), temp)
    }

    fn reveal_params(&self, id_token: &str, signatures: &[Result<Value, RpcError>]) -> Value {
        let mut params = self.agg.share_params(id_token, self.user_id, signatures);
        params["item"][0]["verify_params"] = json!(
            self.subs.iter().map(|(_, t)| json!({"verifier_id": self.user_id, "idtoken": t})).collect::<Vec<_>>()
        );
        params["item"][0]["sub_verifier_ids"] = json!(self.subs.iter().map(|(s, _)| *s).collect::<Vec<_>>());
        params
    }

    /// The user's login: commitments to every node, the reveal to every
    /// node; the address of the rebuilt key.
    async fn log_in(&self) -> String {
        let (user, id_token) = (TempKey::new(), self.id_token());
        let signatures = self.agg.commit_params(&ALL, &self.commit_params(&id_token, &user)).await;
        assert!(signatures.iter().all(Result::is_ok), "{signatures:?}");
        let answers = self.agg.reveal(&ALL, &self.reveal_params(&id_token, &signatures)).await;
        rebuild(&opened_shares(&answers, &user))
    }

    /// The observer's attempt with `id_token` (another spelling, maybe),
    /// naming the sub-tokens in its commitment or not: what it decrypted.
    async fn attack(
        &self,
        id_token: &str,
        name_sub_tokens: bool,
    ) -> (usize, Vec<Result<ShareRequestResult, RpcError>>) {
        let attacker = TempKey::new();
        let params = if name_sub_tokens {
            self.commit_params(id_token, &attacker)
        } else {
            self.agg.commitment_params(id_token, &attacker)
        };
        attempt(self.agg, &params, |s| self.reveal_params(id_token, s), &attacker).await
    }
}

/// The shares of `answers` that open with `temp`, by node.
fn opened_shares(
    answers: &[Result<ShareRequestResult, RpcError>],
    temp: &TempKey,
) -> Vec<(u16, quorumkey_crypto::group::Scalar)> {
    answers.iter().zip(1..).filter_map(|(a, i)| a.as_ref().ok().and_then(|a| open(a, temp)).map(|s| (i, s))).collect()
}

/// An aggregate verifier with two sub-verifiers (the development issuer
/// for two audiences; any non-empty subset may log in) and a single
/// verifier with the first one's issuer and audience. After the user's
/// logins, every rewrite the observer can make of what it saw is refused
/// at the commitment or at the reveal.
async fn aggregate_rewrites(network: &Network) {
    let (a, b) = (network.jwt_config("aud-a"), network.jwt_config("aud-b"));
    let owner = &network.owner;
    owner.submit("register", "agg", &json!({"type": "aggregate", "sub_verifiers": {"a": a, "b": b}}));
    owner.submit("register", "single-a", &a);
    let (agg, single) = (network.raw_for("agg"), network.raw_for("single-a"));
    let user_id = "aggregate@example.com";
    let (key, _) = network.client.lookup_or_assign("agg", user_id).await.unwrap();
    network.client.lookup_or_assign("single-a", user_id).await.unwrap();
    fn login<'a>(agg: &'a Client, user_id: &'a str, subs: Vec<(&'a str, &'a str)>) -> AggregateLogin<'a> {
        AggregateLogin { agg, user_id, subs }
    }

    let (ta, tb) = (network.token(user_id, "aud-a").await, network.token(user_id, "aud-b").await);
    assert_eq!(login(&agg, user_id, vec![("a", &ta), ("b", &tb)]).log_in().await, key.address);
    let (ta2, tb2) = (network.token(user_id, "aud-a").await, network.token(user_id, "aud-b").await);
    assert_eq!(login(&agg, user_id, vec![("a", &ta2), ("b", &tb2)]).log_in().await, key.address);

    // The observer's rewrites, each under its own key, naming the
    // sub-tokens in its commitment or not.
    let both = login(&agg, user_id, vec![("a", &ta), ("b", &tb)]);
    let subset = login(&agg, user_id, vec![("a", &ta)]);
    let mix = login(&agg, user_id, vec![("a", &ta), ("b", &tb2)]);
    let rewrites = [
        ("upper case", &both, both.id_token().to_uppercase()),
        ("a subset", &subset, subset.id_token()),
        ("a mix of two logins", &mix, mix.id_token()),
    ];
    for (what, rewrite, id_token) in rewrites {
        for name_sub_tokens in [true, false] {
            let (decrypted, answers) = rewrite.attack(&id_token, name_sub_tokens).await;
            assert_eq!(decrypted, 0, "{what}: the observer decrypted {decrypted} shares");
            assert!(answers.iter().all(Result::is_err), "{what}: {answers:?}");
        }
    }
    // A sub-token alone, with a single verifier of the same issuer and
    // audience: its commitment is a sub-token's record already.
    let attacker = TempKey::new();
    let (decrypted, answers) = attempt(
        &single,
        &single.commitment_params(&ta, &attacker),
        |s| single.share_params(&ta, user_id, s),
        &attacker,
    )
    .await;
    assert_eq!(decrypted, 0, "a sub-token alone: {answers:?}");
    for answer in &answers {
        assert!(data_of(answer).contains("sub-token of an aggregate"), "{answer:?}");
    }
    // The reverse: a token the user used alone, as a sub-token.
    let alone = network.token(user_id, "aud-a").await;
    network.client.login("single-a", user_id, &alone).await.unwrap();
    let reused = login(&agg, user_id, vec![("a", &alone)]);
    let refused = agg.commit_params(&[1], &reused.commit_params(&reused.id_token(), &TempKey::new())).await.remove(0);
    assert!(data_of(&refused).contains("sub-token of this aggregate login is already committed"), "{refused:?}");
    let (decrypted, answers) = reused.attack(&reused.id_token(), true).await;
    assert_eq!(decrypted, 0, "a used token as a sub-token: {answers:?}");
}

/// A provider answering for opaque tokens: `/exact` compares them byte for
/// byte (as providers do), `/lenient` ignores case (a provider that takes
/// another spelling for the same token).
#[derive(Clone, Default)]
struct Provider {
    /// Token → (user id, issue time).
    tokens: Arc<Mutex<HashMap<String, (String, u64)>>>,
}

impl Provider {
    async fn start(&self) -> SocketAddr {
        async fn answer(provider: &Provider, headers: &HeaderMap, lenient: bool) -> (StatusCode, String) {
            let token = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            let tokens = provider.tokens.lock().unwrap();
            let found = tokens
                .iter()
                .find(|(known, _)| if lenient { known.eq_ignore_ascii_case(token) } else { known.as_str() == token });
            match found {
                Some((_, (user, issued_at))) => {
                    (StatusCode::OK, json!({"id": user, "issued_at": issued_at}).to_string())
                }
                None => (StatusCode::UNAUTHORIZED, "{}".to_owned()),
            }
        }
        let router = axum::Router::new()
            .route(
                "/exact",
                axum::routing::get(
                    |State(p): State<Provider>, h: HeaderMap| async move { answer(&p, &h, false).await },
                ),
            )
            .route(
                "/lenient",
                axum::routing::get(|State(p): State<Provider>, h: HeaderMap| async move { answer(&p, &h, true).await }),
            )
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        address
    }

    /// A new token for `user`, issued now.
    fn issue(&self, user: &str) -> String {
        let token = format!("Tok{}", hex::encode(rand_bytes()));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        self.tokens.lock().unwrap().insert(token.clone(), (user.to_owned(), now));
        token
    }
}

fn rand_bytes() -> [u8; 16] {
    use rand_core::Rng as _;
    let mut bytes = [0u8; 16];
    quorumkey_crypto::random::os_rng().fill_bytes(&mut bytes);
    bytes
}

/// Introspection verifiers on both endpoints. An opaque token spelled with
/// anything its syntax excludes is refused before any provider is asked;
/// one the exact provider does not know is refused by it; the lenient
/// provider's other spelling of a token the user revealed everywhere (as
/// torus.js does) meets the token's nullifier: the provider's user and
/// issue time, which every node that served the user recorded.
async fn introspection_rewrites(network: &Network) {
    let provider = Provider::default();
    let address = provider.start().await;
    let config = |path: &str| {
        json!({"type": "introspection", "url": format!("http://{address}/{path}"), "user_id_pointer": "/id",
               "issued_at_pointer": "/issued_at", "freshness_secs": 600})
    };
    network.owner.submit("register", "opaque-exact", &config("exact"));
    network.owner.submit("register", "opaque-lenient", &config("lenient"));
    let user_id = "4242";
    for verifier in ["opaque-exact", "opaque-lenient"] {
        let raw = network.raw_for(verifier);
        let (key, _) = network.client.lookup_or_assign(verifier, user_id).await.unwrap();
        raw.wait_assigned(&ALL, user_id).await;
        let token = provider.issue(user_id);
        // The user's login, revealed to every node.
        let user = TempKey::new();
        let signatures = raw.commit(&ALL, &token, &user).await;
        let answers = raw.reveal(&ALL, &raw.share_params(&token, user_id, &signatures)).await;
        let shares = opened_shares(&answers, &user);
        assert_eq!(shares.len(), 5, "{answers:?}");
        assert_eq!(rebuild(&shares), key.address);

        let mut rewrites = vec![
            format!(" {token}"),
            format!("{token} "),
            format!("{token}\n"),
            format!("Bearer {token}"),
            format!("{token}="),
        ];
        rewrites.push(token.to_uppercase());
        let mut attempts = Vec::new();
        for respelled in rewrites {
            let attacker = TempKey::new();
            let (decrypted, answers) = attempt(
                &raw,
                &raw.commitment_params(&respelled, &attacker),
                |s| raw.share_params(&respelled, user_id, s),
                &attacker,
            )
            .await;
            attempts.push((respelled, decrypted, answers));
        }
        let stolen: Vec<_> =
            attempts.iter().filter(|(_, decrypted, _)| *decrypted > 0).map(|(r, d, _)| (r, d)).collect();
        assert!(stolen.is_empty(), "{verifier}: the observer decrypted shares: {stolen:?}");
        for (respelled, _, answers) in &attempts {
            let expected = match respelled.trim_end_matches('=') {
                r if r.contains(' ') || r.contains('\n') => "canonical form",
                r if r == token.to_uppercase() && verifier == "opaque-lenient" => "another spelling",
                _ => "refused the token",
            };
            for answer in answers {
                assert!(data_of(answer).contains(expected), "{verifier}, {respelled:?}: {answer:?}");
            }
        }
    }
}

/// Node 5 is down and an attacker trips node 4's per-verifier limit just
/// before the user's login: a reveal needs node 4's signature, and the
/// client gets it by retrying once the limit lets it in.
async fn starved_commitment(network: &Network, devnet: &mut Devnet) {
    let (raw, user_id) = (&network.raw, "starved@example.com");
    network.client.lookup_or_assign(&raw.verifier, user_id).await.unwrap();
    let token = raw.mint(user_id).await;
    devnet.kill_node(5).await;
    let flood = TempKey::new();
    let bodies = (0..60).map(|i| {
        let body = request_body(Method::Commitment, raw.commitment_params(&format!("flood-{i}"), &flood));
        raw.post(4, body.to_string().into_bytes())
    });
    let limited = futures::future::join_all(bodies).await.iter().filter(|(status, _)| *status == 429).count();
    assert!(limited > 0, "60 commitments at once exceed node 4's 20/s (burst 40)");
    let login = network.client.login(&raw.verifier, user_id, &token).await;
    let login = login.expect("the client retries a rate-limited commitment");
    assert!(login.nodes[3].commitment.as_ref().is_some_and(Result::is_ok), "{:?}", login.nodes[3]);
    devnet.start_node(5).unwrap();
    wait_healthy(network, &[5]).await;
}

async fn wait_healthy(network: &Network, nodes: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for &node in nodes {
        let url = format!("{}/health", network.raw.description.nodes[usize::from(node) - 1].api);
        while !network.raw.http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "node {node} is not healthy after 120 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A counter from node `node`'s metrics (0 when absent).
async fn counter(network: &Network, node: u16, name: &str) -> f64 {
    let url = format!("{}/metrics", network.raw.description.nodes[usize::from(node) - 1].api);
    let Ok(response) = network.raw.http.get(&url).send().await else { return 0.0 };
    let text = response.text().await.unwrap_or_default();
    text.lines().find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

/// A JWT verifier accepting tokens at most ten minutes old; the user logs
/// in; three hours later (the nodes restarted with their clocks three
/// hours ahead, each sweeping its expired records at start), the owner
/// widens the window to a day. The old token still cannot be committed
/// for anyone else: nodes keep a token's records for as long as any
/// configuration could accept it. A fresh token logs in.
async fn widened_window_after_sweep(network: &Network, mut devnet: Devnet) {
    let mut short = network.jwt_config("aud-short");
    short["max_token_age_secs"] = json!(600);
    network.owner.submit("register", "short", &short);
    let (raw, user_id) = (network.raw_for("short"), "window@example.com");
    let (key, _) = network.client.lookup_or_assign("short", user_id).await.unwrap();
    let request =
        MintRequest { audience: Some("aud-short".into()), ttl_secs: Some(86_400), ..MintRequest::for_email(user_id) };
    let token = mint_with(&raw.description, &request).await;
    network.client.login("short", user_id, &token).await.unwrap();

    const AHEAD: u64 = 3 * 3600;
    for node in ALL {
        devnet.kill_node(node).await;
    }
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_quorumkey"));
    let _ahead: Vec<_> =
        ALL.iter().map(|&node| support::faketime::start_node_ahead(&binary, &network.dir, node, AHEAD)).collect();
    wait_healthy(network, &ALL).await;
    for node in ALL {
        let deadline = Instant::now() + Duration::from_secs(60);
        while counter(network, node, "quorumkey_login_record_sweeps_total").await < 1.0 {
            assert!(Instant::now() < deadline, "node {node} did not sweep");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    short["max_token_age_secs"] = json!(86_400);
    network.owner.submit("update", "short", &short);

    let attacker = TempKey::new();
    let signatures = raw.commit(&ALL, &token, &attacker).await;
    let answers = raw.reveal(&ALL, &raw.share_params(&token, user_id, &signatures)).await;
    assert_eq!(opened(&answers, &attacker), 0, "the widened window revived the token: {answers:?}");
    // The nodes that recorded the user's commitment (at least the four the
    // login waited for; the fifth may have been stopped before its record)
    // still hold it.
    let refused = signatures.iter().filter(|s| data_of_error(s).contains("Duplicate token found")).count();
    assert!(refused >= 4, "{signatures:?}");
    // The network works three hours ahead: a fresh token logs in.
    let fresh = mint_with(&raw.description, &request).await;
    let login = network.client.login("short", user_id, &fresh).await.unwrap();
    assert_eq!(login.key, key);
    drop(devnet);
}
