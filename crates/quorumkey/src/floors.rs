//! Floors: what the required cryptography costs on this machine, measured
//! in this process, so that a benchmark can print each figure next to the
//! cost of the work it cannot avoid.
//!
//! - [`dkg_floor`]: a DKG batch's scalar multiplications per key (every
//!   node's part), and the whole protocol run in process.
//! - [`login_floor`]: a login's cryptography, per step, on the node and
//!   on the client.

use crate::error::CommandError;
use std::hint::black_box;
use std::time::{Duration, Instant};

use quorumkey_crypto::group::{NonZeroScalar, Point, Scalar, generator, pedersen_commit};
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_dkg::dealing::ParsedDealing;
use quorumkey_dkg::msm::msm;
use quorumkey_dkg::{
    AggregateCommitments, BatchContext, BatchParams, DealerSecrets, Dealing, KeyShares, finish_keys, open_dealings,
    verify_public_shares,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// Time per run of `f`: the median of 9 rounds of `runs` runs (this
/// machine's speed drifts by up to 2x over seconds; the median of short
/// rounds is what the code costs when it gets the core).
pub fn median_time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut rounds: Vec<Duration> = (0..9)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..runs {
                black_box(f());
            }
            start.elapsed() / runs as u32
        })
        .collect();
    rounds.sort();
    rounds.get(rounds.len() / 2).copied().unwrap_or_default()
}

/// Unit costs and the per-key count of each required operation, and the
/// whole protocol's CPU for one batch (every node's part), in process.
pub struct DkgFloor {
    /// See [`dkg_floor`].
    pub fixed_base: Duration,
    /// See [`dkg_floor`].
    pub pedersen: Duration,
    /// See [`dkg_floor`].
    pub check_point: Duration,
    /// See [`dkg_floor`].
    pub verify_point: Duration,
    /// See [`dkg_floor`].
    pub per_key_ops: Duration,
    /// See [`dkg_floor`].
    pub protocol_per_key: Duration,
}

impl DkgFloor {
    pub fn mean(&self, other: &DkgFloor) -> DkgFloor {
        let mean = |a: Duration, b: Duration| (a + b) / 2;
        DkgFloor {
            fixed_base: mean(self.fixed_base, other.fixed_base),
            pedersen: mean(self.pedersen, other.pedersen),
            check_point: mean(self.check_point, other.check_point),
            verify_point: mean(self.verify_point, other.verify_point),
            per_key_ops: mean(self.per_key_ops, other.per_key_ops),
            protocol_per_key: mean(self.protocol_per_key, other.protocol_per_key),
        }
    }
}

/// Measures the DKG floor for batches of `keys` keys on `nodes` nodes.
pub fn dkg_floor(nodes: u16, keys: u16) -> Result<DkgFloor, CommandError> {
    let fail = |e: &dyn std::fmt::Display| CommandError::Floor { what: "DKG", reason: e.to_string() };
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let params = BatchParams::new(nodes, keys).map_err(|e| fail(&e))?;
    let (n, t, k) = (usize::from(nodes), usize::from(params.threshold()), usize::from(keys));
    let dealers = usize::from(params.dealers());
    let scalars: Vec<Scalar> = (0..64).map(|_| Scalar::generate_from_rng(&mut rng)).collect();
    // Both generators' tables are built on first use: warm them up first.
    black_box(pedersen_commit(&scalars[0], &scalars[1]));
    let fixed_base = median_time(200, || Point::mul_by_generator(&scalars[7]));
    let pedersen = median_time(200, || pedersen_commit(&scalars[3], &scalars[9]));
    // A recipient's check of all D dealings at once: D·K·t points, 64-bit
    // weights times j^l.
    let check: Vec<(Point, Scalar)> = (0..dealers * k * t)
        .map(|i| (Point::mul_by_generator(&scalars[i % 64]), Scalar::from(rng.next_u64()) * Scalar::from(343u64)))
        .collect();
    let check_point = median_time(1, || msm(&check)) / (dealers * k * t) as u32;
    // Public share verification: 2t·K points (the aggregate commitments and
    // t publications), 128-bit weights times small powers.
    let verify: Vec<(Point, Scalar)> = (0..2 * t * k)
        .map(|i| {
            let weight = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
            (Point::mul_by_generator(&scalars[i % 64]), Scalar::from(weight) * Scalar::from(1 + (i % 25) as u64))
        })
        .collect();
    let verify_point = median_time(1, || msm(&verify)) / (2 * t * k) as u32;
    // Per key: the D dealers' commitments (D·t), public shares (n fixed
    // base), every recipient's check of every dealing (n·D·t points), and
    // every node's verification of t publications (2t points per key each).
    let per_key_ops = pedersen * (dealers * t) as u32
        + fixed_base * n as u32
        + check_point * (n * dealers * t) as u32
        + verify_point * (n * 2 * t) as u32;

    // The whole protocol, every node's part, for one batch.
    let context = BatchContext::new([9u8; 32], 0, params);
    let secrets: Vec<NonZeroScalar> = (0..n).map(|_| NonZeroScalar::generate_from_rng(&mut rng)).collect();
    let public: Vec<Point> = secrets.iter().map(|s| generator() * s.as_ref()).collect();
    let parse_all = |dealings: &[Dealing]| {
        dealings
            .iter()
            .zip(1u16..)
            .map(|(d, i)| d.parse(&context, i))
            .collect::<Result<Vec<ParsedDealing>, _>>()
            .map_err(|e| fail(&e))
    };
    let mut one_batch = || -> Result<(), CommandError> {
        let dealings = (1..=params.dealers())
            .map(|i| DealerSecrets::random(params, &mut rng).deal(&context, i, &public, &mut rng))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(&e))?;
        let parsed = parse_all(&dealings)?;
        let items: Vec<(u16, &Dealing, &ParsedDealing)> =
            dealings.iter().zip(&parsed).zip(1u16..).map(|((d, p), i)| (i, d, p)).collect();
        let mut publications = Vec::new();
        for j in 1..=nodes {
            // As a node does: all dealings opened and checked at once.
            let received = open_dealings(&context, &items, j, &secrets[usize::from(j) - 1], &mut rng)
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CommandError::Floor { what: "DKG", reason: format!("{e:?}") })?;
            let shares =
                KeyShares::aggregate(&params, j, &received.iter().collect::<Vec<_>>()).map_err(|e| fail(&e))?;
            publications.push(shares.prove_public_shares(&context, &mut rng));
        }
        for _ in 0..n {
            // Every node parses the dealings, sums them, verifies and finishes.
            let parsed = parse_all(&dealings)?;
            let aggregate =
                AggregateCommitments::sum(params, &parsed.iter().collect::<Vec<_>>()).map_err(|e| fail(&e))?;
            let items: Vec<(u16, &_)> = (1u16..).zip(publications.iter()).collect();
            let verified = verify_public_shares(&context, &aggregate, &items)
                .into_iter()
                .zip(1u16..)
                .map(|(v, j)| v.map(|v| (j, v)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail(&e))?;
            black_box(finish_keys(&params, &verified).map_err(|e| fail(&e))?);
        }
        Ok(())
    };
    // The median of three batches.
    let mut rounds = Vec::with_capacity(3);
    for _ in 0..3 {
        let start = Instant::now();
        one_batch()?;
        rounds.push(start.elapsed());
    }
    rounds.sort();
    let protocol_per_key = rounds[1] / k as u32;
    Ok(DkgFloor { fixed_base, pedersen, check_point, verify_point, per_key_ops, protocol_per_key })
}

/// A login's cryptography on this machine, step by step (network of
/// `nodes` nodes, threshold `threshold`).
#[derive(Clone, Copy, Debug, Default)]
pub struct LoginFloor {
    /// A node signs a commitment (one ECDSA signature).
    pub commitment: Duration,
    /// A node checks `quorum` commitment signatures.
    pub signatures: Duration,
    /// A node checks the ID token (an ES256 JWT from the development
    /// issuer: one P-256 verification, parsing).
    pub token: Duration,
    /// A node checks its share against its public share and encrypts it
    /// (ECIES: a key pair and a key exchange).
    pub share: Duration,
    /// The client: a temporary key, the `quorum` commitment signatures
    /// it reveals with (it reveals only once that many check out),
    /// `threshold` decryptions and share checks, the interpolation and its
    /// check (not the key's public shares' consistency: checked once per
    /// key, then cached).
    pub client: Duration,
    /// Nodes in the network.
    pub nodes: usize,
    /// Shares needed.
    pub threshold: usize,
    /// Commitment signatures a reveal needs (⌈(n + t) / 2⌉).
    pub quorum: usize,
}

impl LoginFloor {
    /// One node's work in a reveal.
    pub fn reveal(&self) -> Duration {
        self.signatures + self.token + self.share
    }

    /// The cryptography on a login's critical path: the client's, one
    /// commitment and one reveal, as if the client and every node had a
    /// core of their own and nothing ever waited for one.
    pub fn critical_path(&self) -> Duration {
        self.client + self.commitment + self.reveal()
    }

    /// The least time in which `cores` cores can do the cryptography a
    /// login waits for: its critical path, or that work (the client's,
    /// `quorum` commitments, t reveals; the other commitments may finish
    /// later) spread perfectly over the cores, whichever is longer. A lower
    /// bound on a login's latency on such a machine, stricter than the
    /// floor ([`Self::cpu`]).
    pub fn least_time(&self, cores: usize) -> Duration {
        let waited_for = self.client + self.commitment * self.quorum as u32 + self.reveal() * self.threshold as u32;
        self.critical_path().max(waited_for / cores.max(1) as u32)
    }

    /// Every cryptographic operation a login requires, each once, times
    /// its cost here: the login floor (the definition), and the
    /// CPU that bounds logins per second. Every node signs a commitment
    /// (the client asks all, so that a front-runner can bind at most
    /// t - 1), t nodes answer the reveal (what the quorumkey client asks
    /// first).
    pub fn cpu(&self) -> Duration {
        self.client + self.commitment * self.nodes as u32 + self.reveal() * self.threshold as u32
    }

    /// The mean of two measurements (this machine's speed drifts).
    pub fn mean(&self, other: &Self) -> Self {
        let mean = |a: Duration, b: Duration| (a + b) / 2;
        Self {
            commitment: mean(self.commitment, other.commitment),
            signatures: mean(self.signatures, other.signatures),
            token: mean(self.token, other.token),
            share: mean(self.share, other.share),
            client: mean(self.client, other.client),
            nodes: self.nodes,
            threshold: self.threshold,
            quorum: self.quorum,
        }
    }
}

/// Measures [`LoginFloor`] with the real functions of each step.
pub fn login_floor(nodes: u16) -> Result<LoginFloor, CommandError> {
    use quorumkey_client::key_check::check_public_shares;
    use quorumkey_crypto::group::{PublicKey, point_to_bytes, public_key_to_xy_hex};
    use quorumkey_crypto::k256::ecdsa::SigningKey;
    use quorumkey_crypto::shamir::{Share, majority_threshold, split};
    use quorumkey_devnet::dev_issuer::{DevIssuer, MintRequest};
    use quorumkey_ledger::{VerifierId, VerifierName};
    use quorumkey_login::share::{KeyContext, encrypt_share};
    use quorumkey_login::{
        CommitmentRequest, NodeKey, ShareRequest, SignaturePolicy, check_commitment_signature, required_signatures,
    };
    use quorumkey_verifier::{KeySet, VerifierConfig, verify_jwt};
    use serde_json::json;

    let fail = |e: &dyn std::fmt::Display| CommandError::Floor { what: "login", reason: e.to_string() };
    let n = usize::from(nodes);
    let t = majority_threshold(u32::from(nodes)) as usize;
    let quorum = required_signatures(n, t);
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());

    // A token and the verifier that accepts it.
    let issuer =
        DevIssuer::new("http://127.0.0.1:9".to_owned(), ChaCha20Rng::seed_from_u64(3)).map_err(|e| fail(&e))?;
    let minted = issuer.mint(&MintRequest::for_email("floor@example.com")).map_err(|e| fail(&e))?;
    let VerifierConfig::Jwt(jwt) =
        VerifierConfig::parse(issuer.verifier_config(quorumkey_devnet::dev_issuer::DEV_AUDIENCE).as_bytes())
            .map_err(|e| fail(&e))?
    else {
        return Err(fail(&"the development verifier is not a JWT verifier"));
    };
    let keys = KeySet::from_jwks(&serde_json::to_vec(&issuer.jwks()).map_err(|e| fail(&e))?).map_err(|e| fail(&e))?;

    // The network, a key, the client's temporary key.
    let node_keys: Vec<SigningKey> = (0..n).map(|_| SigningKey::generate_from_rng(&mut rng)).collect();
    let network: Vec<NodeKey> = node_keys
        .iter()
        .zip(1u16..)
        .map(|(key, index)| NodeKey { index, public: PublicKey::from(key.verifying_key()) })
        .collect();
    let secret = NonZeroScalar::generate_from_rng(&mut rng);
    let public_key = PublicKey::from_secret_scalar(&secret);
    let shares = split(*secret, t as u32, n as u32, &mut rng).map_err(|e| fail(&e))?;
    let public_shares: Vec<String> =
        shares.iter().map(|s| hex::encode(point_to_bytes(&(generator() * s.value)))).collect();
    let temp_secret = NonZeroScalar::generate_from_rng(&mut rng);
    let temp_public = PublicKey::from_secret_scalar(&temp_secret);
    let (x, y) = public_key_to_xy_hex(&temp_public);
    let verifier = "quorumkey-dev";
    let params = json!({"messageprefix": "mug00", "tokencommitment": quorumkey_crypto::hash::token_commitment_hex(&minted.id_token),
        "temppubx": x, "temppuby": y, "verifieridentifier": verifier});
    let commitment = CommitmentRequest::parse(&params).map_err(|e| fail(&e))?;

    let sign = median_time(50, || commitment.sign(&node_keys[0], now));
    let results: Vec<serde_json::Value> = node_keys
        .iter()
        .take(quorum)
        .map(|key| {
            let record = commitment.sign(key, now);
            serde_json::to_value(record.result(&PublicKey::from(key.verifying_key()))).unwrap_or_default()
        })
        .collect();
    let reveal = ShareRequest::parse(
        &json!({"encrypted": "yes", "item": [{"verifier_id": "floor@example.com", "idtoken": minted.id_token,
            "nodesignatures": results, "verifieridentifier": verifier}]}),
        n,
    )
    .map_err(|e| fail(&e))?;
    reveal
        .check_node_signatures(&network, &temp_public, quorum, now, SignaturePolicy::default())
        .map_err(|e| fail(&e))?;
    let signatures = median_time(20, || {
        reveal.check_node_signatures(&network, &temp_public, quorum, now, SignaturePolicy::default())
    });
    verify_jwt(&jwt, &keys, &reveal.id_token, now).map_err(|e| fail(&e))?;
    let token = median_time(20, || verify_jwt(&jwt, &keys, &reveal.id_token, now));
    let (name, id) = (
        VerifierName::new(verifier).map_err(|e| fail(&e))?,
        VerifierId::new("floor@example.com").map_err(|e| fail(&e))?,
    );
    let context = KeyContext { key_index: 0, public_key: &public_key, verifier: &name, verifier_id: &id };
    let own_public = Point::mul_by_generator(&shares[0].value);
    let share = median_time(20, || {
        black_box(Point::mul_by_generator(&shares[0].value) == own_public);
        encrypt_share(&shares[0].value, &temp_public, &context, &mut rng)
    });

    // The client's part.
    let answers: Vec<_> =
        shares.iter().take(t).map(|s| encrypt_share(&s.value, &temp_public, &context, &mut rng)).collect();
    // The key's public shares are checked once per key and kept (the
    // client caches them), so they are not a login's work.
    let checked = check_public_shares(0, &public_key, &public_shares, n, t).map_err(|e| fail(&e))?;
    let commitment_hex = quorumkey_crypto::hash::token_commitment_hex(&minted.id_token);
    let client_work = || -> Result<Scalar, CommandError> {
        black_box(PublicKey::from_secret_scalar(&NonZeroScalar::generate_from_rng(&mut ChaCha20Rng::seed_from_u64(4))));
        for (entry, node) in results.iter().zip(&network) {
            check_commitment_signature(entry, node, &commitment_hex, verifier, &temp_public).map_err(|e| fail(&e))?;
        }
        let mut opened = Vec::with_capacity(t);
        for (answer, index) in answers.iter().zip(1u16..) {
            let value = checked.open_share(answer, &temp_secret, index).map_err(|e| fail(&e))?;
            opened.push(Share { index: u32::from(index), value });
        }
        checked.rebuild(&opened).map_err(|e| fail(&e))
    };
    client_work()?;
    let client = median_time(10, client_work);
    Ok(LoginFloor { commitment: sign, signatures, token, share, client, nodes: n, threshold: t, quorum })
}

/// The time of one durable write to a node's store on this machine's disk
/// (a login record stored alone, as a node does for each commitment it
/// signs: appended to its write-ahead log and `fdatasync`'d, inserted
/// into redb without an fsync): the median of 15.
pub fn durable_write(dir: &std::path::Path, ledger: &quorumkey_ledger::Ledger) -> Result<Duration, CommandError> {
    use quorumkey_store::NodeStore;

    let fail = |e: &dyn std::fmt::Display| CommandError::Floor { what: "durable write", reason: e.to_string() };
    let path = dir.join("durable-write.redb");
    // A throwaway store that holds no share: any key-encryption key does.
    let kek = quorumkey_store::Kek::from_bytes(&[0; quorumkey_store::KEK_LEN]);
    let store = NodeStore::open(&path, ledger, &kek).map_err(|e| fail(&e))?;
    let mut times = Vec::with_capacity(15);
    for i in 0u32..15 {
        let key = i.to_be_bytes();
        let start = Instant::now();
        store.insert_login_record(&key, &[0u8; 300], 0).map_err(|e| fail(&e))?;
        times.push(start.elapsed());
    }
    drop(store);
    let _ = std::fs::remove_file(NodeStore::login_log_path(&path));
    let _ = std::fs::remove_file(NodeStore::next_login_log_path(&path));
    let _ = std::fs::remove_file(&path);
    times.sort();
    Ok(times[times.len() / 2])
}
