//! Fixed keys, networks and helpers shared by the fuzz targets and the seed
//! generator (`examples/make_seeds.rs`). Everything is deterministic: a
//! crash found with one build reproduces with any other.
//!
//! A fuzzer cannot forge a signature, so the fixtures hold the private keys
//! of the network the targets check against: a target can re-sign what the
//! fuzzer wrote (see each target) and reach the code behind the signature
//! checks.

/// The login protocol's network: five nodes with secp256k1 keys `1·G` to
/// `5·G`, the temporary key a node recorded for the commitment under test,
/// and the KeyAssign signer.
pub mod login {
    use std::sync::LazyLock;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use quorumkey_crypto::group::{PublicKey, public_key_to_xy_hex, require_nonzero, scalar_from_u64};
    use quorumkey_crypto::k256::ecdsa::SigningKey;
    use quorumkey_crypto::k256::elliptic_curve::sec1::ToSec1Point;
    use quorumkey_crypto::signature::RecoverableSignature;
    use quorumkey_login::key_assign::KEY_ASSIGN_DOMAIN;
    use quorumkey_login::{DELIMITER, KeyAssignAuthorization, NodeKey, SignerRequest, required_signatures};
    use serde_json::{Map, Value};

    /// The node's clock in every check (Unix seconds).
    pub const NOW: u64 = 1_700_000_000;
    /// Nodes in the network.
    pub const NODES: usize = 5;
    /// Its threshold.
    pub const THRESHOLD: usize = 3;
    /// Scalar of the recorded temporary key.
    pub const TEMP_SCALAR: u64 = 0x7e57_c0de;
    /// Scalar of the KeyAssign signer's key.
    pub const SIGNER_SCALAR: u64 = 1001;
    /// The verifier whose commitments the seeds sign.
    pub const VERIFIER: &str = "test-verifier";

    /// The secp256k1 key with secret `k` (non-zero).
    #[allow(clippy::expect_used, reason = "fixed non-zero scalars")]
    pub fn key(k: u64) -> SigningKey {
        SigningKey::from(require_nonzero("fixture key", scalar_from_u64(k)).expect("non-zero"))
    }

    /// The public key of `key`.
    pub fn public(key: &SigningKey) -> PublicKey {
        PublicKey::from(key.verifying_key())
    }

    /// The network every login target checks against.
    pub struct LoginFixture {
        /// Node `i` (1..=5) at position `i - 1`.
        pub nodes: Vec<NodeKey>,
        /// Their signing keys, same order.
        pub node_keys: Vec<SigningKey>,
        /// The temporary key this node recorded.
        pub temp_public: PublicKey,
        /// Its X and Y, 64 lowercase hex digits each.
        pub temp_xy: (String, String),
        /// The KeyAssign signer.
        pub signer: SigningKey,
        /// Its public key.
        pub signer_public: PublicKey,
        /// Node signatures a reveal needs.
        pub required: usize,
    }

    /// The fixture (built once).
    pub fn fixture() -> &'static LoginFixture {
        static FIXTURE: LazyLock<LoginFixture> = LazyLock::new(|| {
            let node_keys: Vec<SigningKey> = (1..=NODES as u64).map(key).collect();
            let nodes =
                node_keys.iter().zip(1u16..).map(|(key, index)| NodeKey { index, public: public(key) }).collect();
            let temp_public = public(&key(TEMP_SCALAR));
            let signer = key(SIGNER_SCALAR);
            LoginFixture {
                nodes,
                node_keys,
                temp_xy: public_key_to_xy_hex(&temp_public),
                temp_public,
                signer_public: public(&signer),
                signer,
                required: required_signatures(NODES, THRESHOLD),
            }
        });
        &FIXTURE
    }

    /// `authorization` with the signer's true signature of its timestamp
    /// and nonce for `request` (the `"$S"` placeholder of the `jsonrpc`
    /// target).
    pub fn sign_authorization(
        authorization: KeyAssignAuthorization,
        request: &SignerRequest,
    ) -> KeyAssignAuthorization {
        let node = hex::encode(request.node.to_sec1_point(true).as_bytes());
        let message = [
            KEY_ASSIGN_DOMAIN,
            request.verifier.as_str(),
            request.verifier_id.as_str(),
            &node,
            &authorization.timestamp,
            &authorization.nonce,
        ]
        .join(&DELIMITER.to_string());
        let signature = RecoverableSignature::sign_keccak(&fixture().signer, message.as_bytes());
        KeyAssignAuthorization { signature: BASE64.encode(signature.to_bytes()), ..authorization }
    }

    /// Fills in the placeholders of one `nodesignatures` entry of a reveal
    /// of `commitment` (hex) for `verifier`; true if there were any:
    /// - `nodepubx` `"$N<k>"`: X and Y of key `k·G` (the nodes are 1..=5);
    /// - in `data`: `$C` the commitment, `$X`/`$Y` the recorded temporary
    ///   key, `$V` the verifier, `$T` the node's clock ([`NOW`]);
    /// - `signature` `"$S"`: the signature of `data` by the key of
    ///   `nodepubx` (node 1 if it is not a placeholder).
    pub fn fill_in_placeholders(entry: &mut Map<String, Value>, commitment: &str, verifier: &str) -> bool {
        let fixture = fixture();
        let mut replaced = false;
        let mut signer = fixture.node_keys[0].clone();
        if let Some(Value::String(x)) = entry.get("nodepubx")
            && let Some(k) = x.strip_prefix("$N").and_then(|k| k.parse::<u8>().ok()).filter(|k| *k > 0)
        {
            signer = key(u64::from(k));
            let (x, y) = public_key_to_xy_hex(&public(&signer));
            entry.insert("nodepubx".to_owned(), Value::String(x));
            entry.insert("nodepuby".to_owned(), Value::String(y));
            replaced = true;
        }
        if let Some(Value::String(data)) = entry.get_mut("data")
            && data.contains('$')
        {
            let (x, y) = &fixture.temp_xy;
            *data = data
                .replace("$C", commitment)
                .replace("$X", x)
                .replace("$Y", y)
                .replace("$V", verifier)
                .replace("$T", &NOW.to_string());
            replaced = true;
        }
        if entry.get("signature").and_then(Value::as_str) == Some("$S")
            && let Some(Value::String(data)) = entry.get("data")
        {
            let signature = RecoverableSignature::sign_keccak(&signer, data.as_bytes()).to_torus_hex();
            entry.insert("signature".to_owned(), Value::String(signature));
            replaced = true;
        }
        replaced
    }
}

/// Tokens: the verifier tests' key pairs (`crates/verifier/tests/fixtures`)
/// as a key set, and a JWT verifier configuration.
pub mod jwt {
    use std::collections::BTreeMap;
    use std::sync::LazyLock;

    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey};
    use quorumkey_verifier::{JwtConfig, KeySet, KeySource};
    use serde_json::json;

    /// The node's clock in every check (Unix seconds).
    pub const NOW: u64 = 1_800_000_000;
    /// The configuration's issuer.
    pub const ISSUER: &str = "https://issuer.example";
    /// One of the configuration's audiences.
    pub const CLIENT: &str = "client-1";

    /// A private key of the key set.
    pub struct Signer {
        /// Its `kid`.
        pub kid: &'static str,
        /// Its algorithm.
        pub algorithm: Algorithm,
        /// The key.
        pub key: EncodingKey,
    }

    /// The key set, the configuration and the private keys.
    pub struct JwtFixture {
        /// RS256 `rsa-1`, ES256 `ec-1`, EdDSA `ed-1`.
        pub signers: Vec<Signer>,
        /// Their public keys, as the verifier loads them.
        pub keys: KeySet,
        /// The JWKS document of `keys`.
        pub jwks: Vec<u8>,
        /// The verifier.
        pub config: JwtConfig,
    }

    /// The fixture (built once).
    #[allow(clippy::expect_used, reason = "fixed test keys")]
    pub fn fixture() -> &'static JwtFixture {
        static FIXTURE: LazyLock<JwtFixture> = LazyLock::new(|| {
            let signers = vec![
                Signer {
                    kid: "rsa-1",
                    algorithm: Algorithm::RS256,
                    key: EncodingKey::from_rsa_pem(include_bytes!(
                        "../../crates/verifier/tests/fixtures/rsa-test-key.pem"
                    ))
                    .expect("RSA test key"),
                },
                Signer {
                    kid: "ec-1",
                    algorithm: Algorithm::ES256,
                    key: EncodingKey::from_ec_pem(include_bytes!(
                        "../../crates/verifier/tests/fixtures/es256-test-key.pem"
                    ))
                    .expect("P-256 test key"),
                },
                Signer {
                    kid: "ed-1",
                    algorithm: Algorithm::EdDSA,
                    key: EncodingKey::from_ed_pem(include_bytes!(
                        "../../crates/verifier/tests/fixtures/ed25519-test-key.pem"
                    ))
                    .expect("Ed25519 test key"),
                },
            ];
            let jwks = serde_json::to_vec(&JwkSet {
                keys: signers
                    .iter()
                    .map(|signer| {
                        let mut jwk = Jwk::from_encoding_key(&signer.key, signer.algorithm).expect("JWK of a test key");
                        jwk.common.key_id = Some(signer.kid.to_owned());
                        jwk
                    })
                    .collect(),
            })
            .expect("JWKS");
            let keys = KeySet::from_jwks(&jwks).expect("the test key set");
            assert_eq!(keys.len(), 3, "all three test keys load");
            let config = JwtConfig {
                issuer: ISSUER.to_owned(),
                audiences: vec!["other-client".to_owned(), CLIENT.to_owned()],
                keys: KeySource::JwksUrl("https://issuer.example/jwks".to_owned()),
                verifier_id_claim: "email".to_owned(),
                lowercase_verifier_id: true,
                required_claims: BTreeMap::from([("email_verified".to_owned(), json!(true))]),
                max_token_age_secs: 600,
                clock_skew_secs: 30,
            };
            JwtFixture { signers, keys, jwks, config }
        });
        &FIXTURE
    }

    /// `header.payload.signature` with `header` and `payload` taken as
    /// given (any bytes), signed by `signer`.
    #[allow(clippy::expect_used, reason = "signing with a valid test key does not fail")]
    pub fn sign_raw(signer: &Signer, header: &[u8], payload: &[u8]) -> String {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signed = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
        let signature = jsonwebtoken::crypto::sign(signed.as_bytes(), &signer.key, signer.algorithm).expect("sign");
        // The spelling nodes accept (an ES256 signature has a high s half
        // the time), so that the claims behind it are reached.
        quorumkey_verifier::canonical_spelling(&format!("{signed}.{signature}")).into_owned()
    }
}

/// The ledger: a four-node network with small DKG batches (2 keys, so
/// threshold 3 and 2 dealers a batch) and one verifier registered at
/// genesis, with its committed state at each phase of DKG batch 0, driven
/// by honest nodes:
///
/// | state | height | batch 0 |
/// |---|---|---|
/// | `states[0]` | 1 | dealing: open, no dealing yet |
/// | `states[1]` | 2 | responding: nodes 1 and 2 dealt |
/// | `states[2]` | 3 | publishing: every node responded, no complaint |
/// | `states[3]` | 4 | publishing: nodes 2, 3 and 4 published; node 1's publication completes it |
pub mod ledger {
    use std::sync::LazyLock;

    use bytes::Bytes;
    use commonware_codec::Encode;
    use commonware_cryptography::{Signer as _, ed25519};
    use quorumkey_crypto::group::{NonZeroScalar, Point, point_to_bytes, require_nonzero, scalar_from_u64};
    use quorumkey_crypto::k256::ecdsa::SigningKey;
    use quorumkey_dkg::dealing::ParsedDealing;
    use quorumkey_dkg::{
        BatchContext, BatchParams, Complaint, Dealing, KeyShares, PreparedDealing, PublicShares, open_dealings,
    };
    use quorumkey_ledger::types::PointBytes;
    use quorumkey_ledger::{
        DkgSettings, Genesis, GenesisNode, GenesisVerifier, Ledger, MemoryState, Phase, SignedTransaction,
        TransactionBody, VerifierName,
    };
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// Nodes in the network.
    pub const NODES: u16 = 4;
    /// Keys per DKG batch.
    pub const BATCH_KEYS: u16 = 2;
    /// The verifier registered at genesis.
    pub const VERIFIER: &str = "test-verifier";
    /// Its configuration.
    pub const VERIFIER_CONFIG: &[u8] = br#"{"type":"jwt","issuer":"https://issuer.test","audiences":["quorumkey-test"],"keys":{"jwks_url":"https://issuer.test/jwks"},"verifier_id_claim":"email","lowercase_verifier_id":true,"max_token_age_secs":3600}"#;
    /// Block time of height 1 (milliseconds); height `h` is `h - 1`
    /// seconds later.
    pub const TIME_MS: u64 = 1_700_000_000_000;

    /// The block time of `height`.
    pub fn time_ms(height: u64) -> u64 {
        TIME_MS + 1_000 * (height - 1)
    }

    /// A secp256k1 key in the ledger's compressed form.
    pub fn compressed(key: &SigningKey) -> PointBytes {
        point_to_bytes(&Point::from(*key.verifying_key().as_affine()))
    }

    /// The network and its states.
    pub struct LedgerFixture {
        /// The ledger.
        pub ledger: Ledger,
        /// Node `i`'s ed25519 key at position `i - 1`.
        pub node_keys: Vec<ed25519::PrivateKey>,
        /// Node `i`'s secp256k1 key at position `i - 1`.
        pub secp256k1_keys: Vec<SigningKey>,
        /// The owner of [`VERIFIER`].
        pub owner: SigningKey,
        /// The committed states at heights 1 to 4 (see the module).
        pub states: Vec<MemoryState>,
        /// Batch 0's dealings by nodes 1 and 2.
        pub dealings: Vec<Dealing>,
        /// Batch 0's public shares of nodes 1 to 4 (node 1's is not applied
        /// in any state).
        pub publications: Vec<PublicShares>,
        /// A true complaint-shaped message by node 3 against dealer 1 (the
        /// dealer is honest: it is not upheld).
        pub complaint: Complaint,
    }

    impl LedgerFixture {
        /// `body` signed by node `index` (1..=4).
        pub fn node_tx(&self, index: u16, body: TransactionBody) -> SignedTransaction {
            let key = &self.node_keys[usize::from(index) - 1];
            SignedTransaction::sign_as_node(self.ledger.network_id(), body, index, key)
        }

        /// `body` signed by the owner of [`VERIFIER`].
        pub fn owner_tx(&self, body: TransactionBody) -> SignedTransaction {
            SignedTransaction::sign_as_owner(self.ledger.network_id(), body, &self.owner)
        }

        /// The state a transaction with this body is applied to, and the
        /// height of the block it goes in: DKG responses in the responding
        /// phase, public shares at the end of the publishing phase,
        /// anything else in the dealing phase.
        pub fn state_for(&self, body: &TransactionBody) -> (&MemoryState, u64) {
            let position = match body {
                TransactionBody::DkgResponse { .. } => 1,
                TransactionBody::DkgPublicShares { .. } => 3,
                _ => 0,
            };
            (&self.states[position], position as u64 + 2)
        }
    }

    #[allow(clippy::expect_used, reason = "fixed non-zero scalars")]
    fn secret(node: u16) -> NonZeroScalar {
        require_nonzero("fixture key", scalar_from_u64(100 + u64::from(node))).expect("non-zero")
    }

    /// The fixture (built once).
    #[allow(clippy::expect_used, clippy::unwrap_used, reason = "the fixed network and its honest DKG round are valid")]
    pub fn fixture() -> &'static LedgerFixture {
        static FIXTURE: LazyLock<LedgerFixture> = LazyLock::new(|| {
            let node_keys: Vec<ed25519::PrivateKey> =
                (0..u64::from(NODES)).map(|i| ed25519::PrivateKey::from_seed(7000 + i)).collect();
            let secp256k1_keys: Vec<SigningKey> = (1..=NODES).map(|k| SigningKey::from(secret(k))).collect();
            let owner = crate::login::key(200);
            let nodes = node_keys
                .iter()
                .zip(&secp256k1_keys)
                .zip(1u16..)
                .map(|((key, secp), index)| GenesisNode {
                    index,
                    consensus_key: key.public_key(),
                    secp256k1_key: compressed(secp),
                })
                .collect();
            let dkg = DkgSettings {
                batch_keys: BATCH_KEYS,
                pool_target: 4,
                low_water: 2,
                max_batches_in_flight: 2,
                ..DkgSettings::default_for(usize::from(NODES))
            };
            let verifiers = vec![GenesisVerifier {
                name: VerifierName::new(VERIFIER).expect("valid name"),
                owner: compressed(&owner),
                config: Bytes::from_static(VERIFIER_CONFIG),
            }];
            let ledger = Ledger::new(Genesis { nodes, verifiers, dkg }).expect("valid genesis");

            // An honest round of batch 0.
            let params = BatchParams::new(NODES, BATCH_KEYS).expect("batch shape");
            let context = BatchContext::new(*ledger.network_id(), 0, params);
            let recipients: Vec<Point> =
                secp256k1_keys.iter().map(|key| Point::from(*key.verifying_key().as_affine())).collect();
            let mut rng = ChaCha20Rng::seed_from_u64(1);
            let dealings: Vec<Dealing> = (1..=2)
                .map(|dealer| {
                    PreparedDealing::new(params, &mut rng).seal(&context, dealer, &recipients, &mut rng).expect("deal")
                })
                .collect();
            let parsed: Vec<ParsedDealing> = dealings
                .iter()
                .zip(1..)
                .map(|(dealing, dealer)| dealing.parse(&context, dealer).expect("parse"))
                .collect();
            let items: Vec<(u16, &Dealing, &ParsedDealing)> = (1..)
                .zip(&dealings)
                .zip(&parsed)
                .map(|((dealer, dealing), parsed)| (dealer, dealing, parsed))
                .collect();
            let publications: Vec<PublicShares> = (1..=NODES)
                .map(|node| {
                    let received: Vec<_> = open_dealings(&context, &items, node, &secret(node), &mut rng)
                        .into_iter()
                        .map(|shares| shares.expect("honest shares"))
                        .collect();
                    let shares =
                        KeyShares::aggregate(&params, node, &received.iter().collect::<Vec<_>>()).expect("aggregate");
                    shares.prove_public_shares(&context, &mut rng)
                })
                .collect();
            let complaint = quorumkey_dkg::recipient::complain(&context, 1, &parsed[0], 3, &secret(3), &mut rng)
                .expect("complaint");

            let mut fixture = LedgerFixture {
                ledger,
                node_keys,
                secp256k1_keys,
                owner,
                states: Vec::new(),
                dealings,
                publications,
                complaint,
            };
            let mut state = MemoryState::default();
            state.commit(&fixture.ledger.genesis_outcome(&state).expect("genesis").writes);
            let blocks: Vec<Vec<SignedTransaction>> = vec![
                vec![],
                (1..=2)
                    .map(|dealer| {
                        let dealing = fixture.dealings[usize::from(dealer) - 1].clone();
                        fixture.node_tx(dealer, TransactionBody::DkgDeal { batch: 0, dealing })
                    })
                    .collect(),
                (1..=NODES)
                    .map(|node| fixture.node_tx(node, TransactionBody::DkgResponse { batch: 0, complaints: vec![] }))
                    .collect(),
                (2..=NODES)
                    .map(|node| {
                        let shares = fixture.publications[usize::from(node) - 1].clone();
                        fixture.node_tx(node, TransactionBody::DkgPublicShares { batch: 0, shares })
                    })
                    .collect(),
            ];
            for (height, block) in (1u64..).zip(blocks) {
                let encoded: Vec<Vec<u8>> = block.iter().map(|tx| tx.encode().to_vec()).collect();
                let outcome = fixture.ledger.apply_block(&state, height, time_ms(height), &encoded).expect("block");
                for receipt in &outcome.receipts {
                    assert!(receipt.result.is_ok(), "height {height}: {:?}", receipt.result);
                }
                state.commit(&outcome.writes);
                fixture.states.push(state.clone());
            }
            let phases: Vec<Phase> = fixture
                .states
                .iter()
                .map(|state| fixture.ledger.dkg_view(state).batch(0).expect("readable").expect("batch 0").phase)
                .collect();
            assert_eq!(phases, [Phase::Dealing, Phase::Responding, Phase::Publishing, Phase::Publishing]);
            fixture
        });
        &FIXTURE
    }
}
