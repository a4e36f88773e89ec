//! The network description clients get from `GET /v1/network`: it carries
//! the genesis, which must hash to its network id and list its keys; a
//! node's attestation covers what it means (so another spelling of a hex
//! value still verifies) and nothing can be changed under it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quorumkey_login::network::{DescriptionError, NetworkJson};
use quorumkey_node::config::{InitOptions, NETWORK_FILE, NetworkFile, NetworkVerifier, RpcSettings, init_network};
use quorumkey_node::identity::NodeIdentity;

fn make_network(dir: &std::path::Path, verifier: &str) -> (NetworkFile, Vec<NodeIdentity>) {
    // The generator: a valid compressed point.
    let owner = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798".to_owned();
    let options = InitOptions {
        nodes: 3,
        p2p_base_port: 27100,
        rpc_base_port: 17100,
        verifiers: vec![NetworkVerifier {
            name: verifier.to_owned(),
            owner,
            config: r#"{"type":"jwt","issuer":"https://issuer.example.org","audiences":["app"],"keys":{"jwks_url":"https://issuer.example.org/jwks"},"verifier_id_claim":"sub","max_token_age_secs":3600}"#.to_owned(),
        }],
        dkg: Default::default(),
        policy: Default::default(),
        rpc: RpcSettings { allow_unsigned_key_assign: true, ..Default::default() },
        providers: Default::default(),
        http: Default::default(),
    };
    let network = init_network(dir, &options).unwrap();
    let identities = (1..=3).map(|i| NodeIdentity::load(&dir.join(format!("node-{i}"))).unwrap()).collect();
    assert!(dir.join(NETWORK_FILE).exists());
    (network, identities)
}

/// A change to a description.
type Change = Box<dyn Fn(&mut NetworkJson)>;

#[test]
fn an_attested_description_verifies_and_nothing_changes_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let (network, nodes) = make_network(dir.path(), "app-login");
    let mut description = network.client_description().unwrap();
    let genesis = description.checked_genesis().unwrap();
    assert_eq!(hex::encode(genesis.network_id()), description.network_id);
    assert_eq!(description.verifiers, ["app-login"]);
    assert_eq!(description.nodes[1].endpoint, "http://127.0.0.1:17102/jrpc");
    assert_eq!(description.attested_by(), Err(DescriptionError::NotAttested));
    description.attest(2, &nodes[1].secp256k1).unwrap();
    assert_eq!(description.attested_by(), Ok(2));

    // Another spelling of the same values: the same description.
    let mut respelled = description.clone();
    respelled.network_id = respelled.network_id.to_uppercase();
    respelled.nodes[0].pub_key_x = respelled.nodes[0].pub_key_x.to_uppercase();
    respelled.genesis = respelled.genesis.map(|g| g.to_uppercase());
    respelled.nodes[0].log = Some("/var/log/node-1.log".to_owned());
    assert_eq!(respelled.attested_by(), Ok(2));
    assert!(respelled.same_as(&description).unwrap());
    // Through JSON, as a client reads it.
    let read: NetworkJson = serde_json::from_str(&serde_json::to_string(&description).unwrap()).unwrap();
    assert_eq!(read.attested_by(), Ok(2));

    // Anything that means something else breaks the attestation.
    let changes: Vec<(&str, Change)> = vec![
        ("an endpoint", Box::new(|d| d.nodes[0].endpoint = "http://10.9.9.9:8000/jrpc".to_owned())),
        ("an API URL", Box::new(|d| d.nodes[2].api = "http://10.9.9.9:8000".to_owned())),
        ("a p2p address", Box::new(|d| d.nodes[1].p2p_address = "10.9.9.9:9000".to_owned())),
        ("the threshold", Box::new(|d| d.threshold = 3)),
        ("the verifiers", Box::new(|d| d.verifiers.push("other".to_owned()))),
        ("the genesis", Box::new(|d| d.genesis = None)),
    ];
    for (what, change) in changes {
        let mut changed = description.clone();
        change(&mut changed);
        assert!(changed.attested_by().is_err(), "{what} changed under the attestation");
        assert!(!changed.same_as(&description).unwrap_or(false), "{what}");
    }
    // Node 2's signature does not pass for node 1's, whether relabelled
    // or made for node 1's index.
    let mut relabelled = description.clone();
    relabelled.attestation.as_mut().unwrap().index = 1;
    assert_eq!(relabelled.attested_by(), Err(DescriptionError::BadAttestation(1)));
    let mut claimed = description.clone();
    claimed.attest(1, &nodes[1].secp256k1).unwrap();
    assert_eq!(claimed.attested_by(), Err(DescriptionError::BadAttestation(1)));
}

#[test]
fn a_description_must_agree_with_its_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let (network, _) = make_network(&dir.path().join("a"), "app-login");
    let (other, _) = make_network(&dir.path().join("b"), "app-login");
    let description = network.client_description().unwrap();
    let elsewhere = other.client_description().unwrap();

    // Another network's genesis under this one's id.
    let mut swapped = description.clone();
    swapped.genesis = elsewhere.genesis.clone();
    assert!(matches!(swapped.checked_genesis(), Err(DescriptionError::Genesis(e)) if e.contains("hashes to")));
    // Another network's id and genesis with this one's keys: the keys are
    // not the genesis keys.
    let mut keys = elsewhere.clone();
    keys.nodes = description.nodes.clone();
    assert!(matches!(keys.checked_genesis(), Err(DescriptionError::Genesis(e)) if e.contains("not the genesis key")));
    // Verifiers not those of the genesis.
    let mut verifiers = description.clone();
    verifiers.verifiers.clear();
    assert!(matches!(verifiers.checked_genesis(), Err(DescriptionError::Genesis(e)) if e.contains("verifiers")));
    // A genesis with a byte appended does not decode as one.
    let mut longer = description.clone();
    longer.genesis = longer.genesis.map(|g| g + "00");
    assert!(longer.checked_genesis().is_err());
    let mut none = description.clone();
    none.genesis = None;
    assert_eq!(none.checked_genesis().unwrap_err(), DescriptionError::NoGenesis);
    assert!(description.checked_genesis().is_ok());
}
