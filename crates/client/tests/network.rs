//! A client refuses a network description it could not use, naming what
//! is wrong, before it sends anything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorumkey_client::{ClientError, ClientOptions, QuorumkeyClient};
use quorumkey_crypto::group::{PublicKey, public_key_to_xy_hex};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_login::network::{NetworkJson, NetworkJsonNode};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn network(endpoints: &[&str]) -> NetworkJson {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let nodes = endpoints
        .iter()
        .zip(1u16..)
        .map(|(endpoint, index)| {
            let key = SigningKey::generate_from_rng(&mut rng);
            let (x, y) = public_key_to_xy_hex(&PublicKey::from(key.verifying_key()));
            NetworkJsonNode {
                index,
                endpoint: (*endpoint).to_owned(),
                api: format!("http://127.0.0.1:{}", 9000 + index),
                pub_key_x: x,
                pub_key_y: y,
                p2p_address: format!("127.0.0.1:{}", 9100 + index),
                log: None,
            }
        })
        .collect();
    NetworkJson {
        network_id: "00".repeat(32),
        threshold: 2,
        nodes,
        verifiers: Vec::new(),
        genesis: None,
        attestation: None,
        dev_issuer: None,
        auxiliary: None,
        node_set: None,
    }
}

#[test]
fn a_usable_description_makes_a_client() {
    let client = QuorumkeyClient::new(
        network(&["http://127.0.0.1:9001/jrpc", "http://127.0.0.1:9002/jrpc", "http://127.0.0.1:9003/jrpc"]),
        ClientOptions::default(),
    )
    .unwrap();
    assert_eq!(client.threshold(), 2);
}

#[test]
fn an_endpoint_that_is_not_a_url_is_refused_with_its_node() {
    let made = QuorumkeyClient::new(
        network(&["http://127.0.0.1:9001/jrpc", "127.0.0.1:9002/jrpc", "http://127.0.0.1:9003/jrpc"]),
        ClientOptions::default(),
    );
    let Err(error) = made else { panic!("an endpoint without a scheme is refused") };
    let ClientError::Network { reason, .. } = &error else { panic!("not a description error: {error}") };
    assert!(reason.contains("node 2") && reason.contains("127.0.0.1:9002/jrpc"), "{reason}");
}

#[test]
fn an_endpoint_reqwest_cannot_call_is_refused_with_its_node() {
    for endpoint in ["mailto:node@example.com", "ftp://127.0.0.1:9003/jrpc"] {
        let made = QuorumkeyClient::new(
            network(&["http://127.0.0.1:9001/jrpc", "https://127.0.0.1:9002/jrpc", endpoint]),
            ClientOptions::default(),
        );
        let Err(error) = made else { panic!("{endpoint} is refused") };
        let ClientError::Network { reason, .. } = &error else { panic!("not a description error: {error}") };
        assert!(reason.contains("node 3") && reason.contains(endpoint), "{reason}");
    }
}
