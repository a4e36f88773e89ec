//! Every vector of `torus-compat.json` (made with the JavaScript libraries
//! the public Torus client uses). A copy lives in `tests/data`; when the
//! project's `shared/vectors` is beside the checkout, the copy must match it.

#![allow(clippy::panic, reason = "test helpers name the missing vector field")]

use serde_json::Value;

use crate::address::eth_address;
use crate::ecies::{EciesCiphertext, TorusEncryptedShare, TorusShareMetadata, decrypt, encrypt_with_ephemeral};
use crate::group::*;
use crate::hash::{keccak256, token_commitment_hex};
use crate::shamir::{Share, interpolate, reconstruct_secret};
use crate::signature::RecoverableSignature;

const VECTORS: &str = include_str!("../tests/data/torus-compat.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("vector file is JSON")
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("vector field {key} is a string"))
}

fn bytes(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(text(v, key)).expect("vector hex")
}

fn secret(v: &Value, key: &str) -> NonZeroScalar {
    nonzero_scalar_from_hex("vector key", text(v, key)).expect("vector key")
}

fn each<'a>(all: &'a Value, section: &str) -> &'a Vec<Value> {
    let list = all[section].as_array().unwrap_or_else(|| panic!("section {section}"));
    assert!(!list.is_empty(), "section {section} is empty");
    list
}

#[test]
fn copy_matches_shared_vectors() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/torus-compat.json");
    match std::fs::read_to_string(&shared) {
        Ok(text) => assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            vectors(),
            "tests/data/torus-compat.json differs from shared/vectors"
        ),
        Err(_) => eprintln!("shared/vectors not beside this checkout; using the committed copy"),
    }
}

#[test]
fn keccak_token_commitments() {
    for v in each(&vectors(), "keccak256_token_commitment") {
        assert_eq!(token_commitment_hex(text(v, "id_token")), text(v, "token_commitment"));
    }
}

#[test]
fn ecies_matches_eccrypto() {
    for v in each(&vectors(), "ecies") {
        let note = text(v, "note");
        let recipient = secret(v, "recipient_private_key");
        let recipient_public = PublicKey::from_secret_scalar(&recipient);
        assert_eq!(public_key_to_uncompressed(&recipient_public).to_vec(), bytes(v, "recipient_public_key"), "{note}");

        let ephemeral = secret(v, "ephem_private_key");
        let shared = k256::elliptic_curve::ecdh::diffie_hellman(ephemeral, recipient_public.as_affine());
        assert_eq!(shared.raw_secret_bytes().to_vec(), bytes(v, "shared_x_32"), "{note}");

        // Decrypt what eccrypto wrote, through the Torus JSON shape.
        let metadata: TorusShareMetadata = serde_json::from_value(v["torus_metadata"].clone()).unwrap();
        let torus = TorusEncryptedShare { share: text(v, "torus_share_field").to_owned(), metadata };
        let parsed = EciesCiphertext::try_from(&torus).unwrap();
        assert_eq!(parsed.ciphertext, bytes(v, "ciphertext"), "{note}");
        assert_eq!(parsed.mac.to_vec(), bytes(v, "mac"), "{note}");
        assert_eq!(decrypt(&recipient, &parsed).unwrap().to_vec(), bytes(v, "plaintext"), "{note}");

        // Encrypt the same way: byte for byte where X has no leading zero
        // (eccrypto hashes the stripped X; we hash the 32-byte X, which the
        // client also accepts).
        let iv: [u8; 16] = bytes(v, "iv").try_into().unwrap();
        let ours = encrypt_with_ephemeral(&recipient_public, &bytes(v, "plaintext"), &ephemeral, iv);
        assert_eq!(decrypt(&recipient, &ours).unwrap().to_vec(), bytes(v, "plaintext"), "{note}");
        if shared.raw_secret_bytes()[0] != 0 {
            assert_eq!(TorusEncryptedShare::from(&ours), torus, "{note}");
        } else {
            assert_ne!(ours.mac, parsed.mac, "{note}: the two forms of X must give different MACs");
        }
    }
}

#[test]
fn commitment_signatures() {
    for v in each(&vectors(), "commitment_signature") {
        let key = k256::ecdsa::SigningKey::from(secret(v, "node_private_key"));
        let public = PublicKey::from(key.verifying_key());
        let (x, y) = public_key_to_xy_hex(&public);
        assert_eq!(scalar_to_unpadded_hex(&scalar_from_hex(&x).unwrap()), text(v, "nodepubx"));
        assert_eq!(scalar_to_unpadded_hex(&scalar_from_hex(&y).unwrap()), text(v, "nodepuby"));
        assert_eq!(public_key_from_xy_hex(text(v, "nodepubx"), text(v, "nodepuby")).unwrap(), public);

        let fields: Vec<&str> = v["data_fields"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
        assert_eq!(fields.len(), 6);
        let data = fields.join("\x1c");
        assert_eq!(keccak256(data.as_bytes()).to_vec(), bytes(v, "keccak256_data"));

        let expected = RecoverableSignature::from_torus_hex(text(v, "signature_rsv")).unwrap();
        expected.verify_keccak(&public, data.as_bytes()).unwrap();
        assert_eq!(expected.recover_keccak(data.as_bytes()).unwrap(), public);
        let ours = RecoverableSignature::sign_keccak(&key, data.as_bytes());
        assert_eq!(ours.to_torus_hex(), text(v, "signature_rsv"), "RFC 6979 signatures are deterministic");
    }
}

#[test]
fn shamir_shares() {
    for v in each(&vectors(), "shamir") {
        let note = text(v, "note");
        let expected = scalar_from_hex(text(v, "secret")).unwrap();
        let threshold = v["threshold"].as_u64().unwrap() as usize;
        let shares: Vec<Share> = v["shares"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| Share {
                index: u32::try_from(s["x"].as_u64().unwrap()).unwrap(),
                value: scalar_from_hex(s["y"].as_str().unwrap()).unwrap(),
            })
            .collect();
        let n = shares.len();
        // Every threshold-subset rebuilds the secret.
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize != threshold {
                continue;
            }
            let subset: Vec<Share> = (0..n).filter(|i| mask & (1 << i) != 0).map(|i| shares[i].clone()).collect();
            assert_eq!(reconstruct_secret(&subset).unwrap(), expected, "{note}: subset {mask:b}");
        }
        // The shares lie on one polynomial of degree threshold-1.
        for share in &shares[threshold..] {
            let at = scalar_from_u64(u64::from(share.index));
            assert_eq!(interpolate(&shares[..threshold], &at).unwrap(), share.value, "{note}");
        }
        if v.get("public_key_x").is_some() {
            let public = point_to_public_key("p", &Point::mul_by_generator(&expected)).unwrap();
            let (x, y) = public_key_to_xy_hex(&public);
            assert_eq!((x.as_str(), y.as_str()), (text(v, "public_key_x"), text(v, "public_key_y")), "{note}");
        }
    }
}

#[test]
fn eth_addresses() {
    for v in each(&vectors(), "eth_address") {
        let public = PublicKey::from_secret_scalar(&secret(v, "private_key"));
        let (x, y) = public_key_to_xy_hex(&public);
        assert_eq!(x, text(v, "pub_key_X"));
        assert_eq!(y, text(v, "pub_key_Y"));
        assert_eq!(eth_address(&public), text(v, "address_eip55"));
    }
}
