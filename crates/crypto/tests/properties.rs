//! Property tests of the cryptographic core: seeded RNGs drive every case,
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! so a failure prints a seed that reproduces it.

use k256::elliptic_curve::Generate;
use proptest::prelude::*;
use quorumkey_crypto::CryptoError;
use quorumkey_crypto::dleq::{DleqProof, DleqStatement};
use quorumkey_crypto::ecies::{self, EciesCiphertext, TorusEncryptedShare, TorusShareMetadata};
use quorumkey_crypto::group::*;
use quorumkey_crypto::shamir::{Polynomial, Share, interpolate, reconstruct_secret, split};
use quorumkey_crypto::signature::RecoverableSignature;
use quorumkey_crypto::transcript::Transcript;
use quorumkey_crypto::vss::{FeldmanCommitment, PedersenCommitment, batch_verify_pedersen};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A seeded random subset of `1..=n` of size `k`, in random order.
fn subset(seed: u64, n: u32, k: u32) -> Vec<usize> {
    let mut r = rng(seed ^ 0x5eed);
    let mut indexes: Vec<usize> = (0..n as usize).collect();
    for i in (1..indexes.len()).rev() {
        let j = (r.next_u64() % (i as u64 + 1)) as usize;
        indexes.swap(i, j);
    }
    indexes.truncate(k as usize);
    indexes
}

fn sharing_params() -> impl Strategy<Value = (u32, u32)> {
    (1u32..=12).prop_flat_map(|n| (1..=n).prop_map(move |t| (t, n)))
}

proptest! {
    #[test]
    fn any_t_shares_rebuild_the_secret((t, n) in sharing_params(), seed: u64) {
        let mut r = rng(seed);
        let secret = Scalar::generate_from_rng(&mut r);
        let shares = split(secret, t, n, &mut r).unwrap();
        prop_assert_eq!(shares.len(), n as usize);
        let chosen: Vec<Share> = subset(seed, n, t).into_iter().map(|i| shares[i].clone()).collect();
        prop_assert_eq!(reconstruct_secret(&chosen).unwrap(), secret);
        // More than t shares rebuild it too.
        prop_assert_eq!(reconstruct_secret(&shares).unwrap(), secret);
    }

    #[test]
    fn t_minus_one_shares_do_not_determine_the_secret((t, n) in sharing_params(), seed: u64) {
        prop_assume!(t >= 2);
        let mut r = rng(seed);
        let secret = Scalar::generate_from_rng(&mut r);
        let shares = split(secret, t, n, &mut r).unwrap();
        let chosen: Vec<Share> = subset(seed, n, t - 1).into_iter().map(|i| shares[i].clone()).collect();
        // Interpolating t-1 shares gives a different value: a degree bug
        // (polynomials of degree t-2) would make it the secret.
        prop_assert_ne!(reconstruct_secret(&chosen).unwrap(), secret);
        // And every candidate secret is consistent with those t-1 shares: the
        // degree-(t-1) polynomial through (0, candidate) and them exists and
        // passes through each of them.
        let candidate = Scalar::generate_from_rng(&mut r);
        let mut points = chosen.clone();
        points.push(Share { index: n + 1, value: Scalar::ZERO });
        let last = points.len() - 1;
        // Solve for the value at n+1 that puts `candidate` at 0.
        let at_zero_without = interpolate(&points, &Scalar::ZERO).unwrap();
        points[last].value = Scalar::ONE;
        let basis = interpolate(&points, &Scalar::ZERO).unwrap() - at_zero_without;
        points[last].value = (candidate - at_zero_without) * Option::<Scalar>::from(basis.invert()).unwrap();
        prop_assert_eq!(reconstruct_secret(&points).unwrap(), candidate);
        for share in &chosen {
            prop_assert_eq!(interpolate(&points, &scalar_from_u64(u64::from(share.index))).unwrap(), share.value);
        }
    }

    #[test]
    fn lagrange_agrees_with_evaluation(degree in 0usize..8, at: u64, seed: u64) {
        let mut r = rng(seed);
        let poly = Polynomial::random(degree, &mut r);
        let shares = poly.shares(degree as u32 + 1);
        let x = scalar_from_u64(at);
        prop_assert_eq!(interpolate(&shares, &x).unwrap(), poly.evaluate(&x));
    }

    #[test]
    fn commitments_accept_exactly_the_dealt_shares((t, n) in sharing_params(), seed: u64, bad in 0u32..12) {
        let mut r = rng(seed);
        let a = Polynomial::random(t as usize - 1, &mut r);
        let b = Polynomial::random(t as usize - 1, &mut r);
        let feldman = FeldmanCommitment::commit(&a);
        let pedersen = PedersenCommitment::commit(&a, &b).unwrap();
        let mut shares: Vec<_> = (1..=n).map(|i| PedersenCommitment::share_of(&a, &b, i).unwrap()).collect();
        for share in &shares {
            prop_assert!(pedersen.verify_share(share).is_ok());
            let plain = Share { index: share.index, value: share.value };
            prop_assert!(feldman.verify_share(&plain).is_ok());
        }
        let bad = (bad % n) as usize;
        shares[bad].value += Scalar::ONE;
        prop_assert!(pedersen.verify_share(&shares[bad]).is_err());
        let commitments = vec![pedersen; shares.len()];
        let pairs: Vec<_> = commitments.iter().zip(shares.iter()).collect();
        prop_assert_eq!(batch_verify_pedersen(&pairs, &mut r), Err(CryptoError::BatchVerificationFailed));
    }

    #[test]
    fn ecies_round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..200), seed: u64) {
        let mut r = rng(seed);
        let secret = NonZeroScalar::generate_from_rng(&mut r);
        let public = PublicKey::from_secret_scalar(&secret);
        let message = ecies::encrypt(&public, &plaintext, &mut r);
        prop_assert_eq!(decrypt_ok(&secret, &message), plaintext.clone());
        // Through the Torus JSON shape too.
        let torus = TorusEncryptedShare::from(&message);
        let json = serde_json::to_string(&torus).unwrap();
        let back: TorusEncryptedShare = serde_json::from_str(&json).unwrap();
        let parsed = EciesCiphertext::try_from(&back).unwrap();
        prop_assert_eq!(decrypt_ok(&secret, &parsed), plaintext);
    }

    #[test]
    fn ecies_rejects_any_tampered_byte(seed: u64, position: usize, flip in 1u8..=255) {
        let mut r = rng(seed);
        let secret = NonZeroScalar::generate_from_rng(&mut r);
        let message = ecies::encrypt(&PublicKey::from_secret_scalar(&secret), &[42u8; 32], &mut r);
        let mut tampered = message.clone();
        let total = 16 + tampered.ciphertext.len() + 32;
        match position % total {
            p if p < 16 => tampered.iv[p] ^= flip,
            p if p < 16 + tampered.ciphertext.len() => tampered.ciphertext[p - 16] ^= flip,
            p => tampered.mac[p - 16 - message.ciphertext.len()] ^= flip,
        }
        prop_assert_eq!(ecies::decrypt(&secret, &tampered), Err(CryptoError::MacMismatch));
    }

    #[test]
    fn signatures_recover_the_signer(message in proptest::collection::vec(any::<u8>(), 0..100), seed: u64) {
        let key = k256::ecdsa::SigningKey::generate_from_rng(&mut rng(seed));
        let public = PublicKey::from(key.verifying_key());
        let signature = RecoverableSignature::sign_keccak(&key, &message);
        let parsed = RecoverableSignature::from_torus_hex(&signature.to_torus_hex()).unwrap();
        prop_assert!(parsed.verify_keccak(&public, &message).is_ok());
        prop_assert_eq!(parsed.recover_keccak(&message).unwrap(), public);
    }

    #[test]
    fn dleq_accepts_true_statements_only(seed: u64, context: Vec<u8>) {
        let mut r = rng(seed);
        let x = NonZeroScalar::generate_from_rng(&mut r);
        let base2 = Point::generate_from_rng(&mut r);
        let statement = DleqStatement::from_secret(generator(), base2, &x);
        let start = || { let mut t = Transcript::new(b"property-test"); t.append_bytes(b"context", &context); t };

        let proof = DleqProof::prove(&mut start(), &statement, &x, &mut r).unwrap();
        prop_assert!(proof.verify(&mut start(), &statement).is_ok());
        let decoded = DleqProof::from_bytes(&proof.to_bytes()).unwrap();
        prop_assert!(decoded.verify(&mut start(), &statement).is_ok());

        // A wrong witness cannot prove the statement.
        let wrong = NonZeroScalar::generate_from_rng(&mut r);
        let forged = DleqProof::prove(&mut start(), &statement, &wrong, &mut r).unwrap();
        prop_assert!(forged.verify(&mut start(), &statement).is_err());
        // Unequal logarithms cannot be proven with either witness.
        let unequal = DleqStatement { public2: base2 * wrong.as_ref(), ..statement };
        let attempt = DleqProof::prove(&mut start(), &unequal, &x, &mut r).unwrap();
        prop_assert!(attempt.verify(&mut start(), &unequal).is_err());
        // Tampered proofs and other contexts fail.
        let tampered = DleqProof { response: proof.response + Scalar::ONE, ..proof };
        prop_assert!(tampered.verify(&mut start(), &statement).is_err());
        let tampered = DleqProof { challenge: proof.challenge + Scalar::ONE, ..proof };
        prop_assert!(tampered.verify(&mut start(), &statement).is_err());
        let mut other = Transcript::new(b"property-test");
        other.append_bytes(b"context", &[context.as_slice(), b"!"].concat());
        prop_assert!(proof.verify(&mut other, &statement).is_err());
    }

    /// Hostile input: every parser returns a value or an error, never panics.
    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..140), text in ".{0,140}") {
        let _ = scalar_from_bytes(&bytes);
        let _ = scalar_from_unpadded_bytes(&bytes);
        let _ = scalar_from_hex(&text);
        let _ = nonzero_scalar_from_hex("k", &text);
        let _ = public_key_from_sec1(&bytes);
        let _ = public_key_from_hex("k", &text);
        let _ = public_key_from_xy_hex(&text, &text);
        let _ = point_from_bytes("p", &bytes);
        let _ = RecoverableSignature::from_bytes(&bytes);
        let _ = RecoverableSignature::from_torus_hex(&text);
        let _ = DleqProof::from_bytes(&bytes);
        let hexed = hex::encode(&bytes);
        let share = TorusEncryptedShare {
            share: text.clone(),
            metadata: TorusShareMetadata { iv: hexed.clone(), ephem_public_key: hexed.clone(), mac: text.clone(), mode: "AES256".into() },
        };
        let _ = EciesCiphertext::try_from(&share);
    }

    /// Hostile input at exactly the right lengths: the checks past the length
    /// check (range, curve, flags) must hold too.
    #[test]
    fn right_length_garbage_is_refused_or_valid(bytes in proptest::array::uniform32(any::<u8>()), tag in 0u8..=255, v in 0u8..=255) {
        let mut point = [0u8; 33];
        point[0] = tag;
        point[1..].copy_from_slice(&bytes);
        if let Ok(key) = public_key_from_sec1(&point) {
            prop_assert!(tag == 2 || tag == 3);
            prop_assert_eq!(point_to_bytes(&Point::from(key.as_affine())), point);
        }
        if let Ok(decoded) = point_from_bytes_allow_identity("p", &point) {
            prop_assert!(tag == 2 || tag == 3 || point == [0u8; 33]);
            prop_assert_eq!(point_to_bytes(&decoded), point);
        }
        let mut signature = [0u8; 65];
        signature[..32].copy_from_slice(&bytes);
        signature[32..64].copy_from_slice(&bytes);
        signature[64] = v;
        if RecoverableSignature::from_bytes(&signature).is_ok() {
            prop_assert!((27..=30).contains(&v));
        }
    }
}

fn decrypt_ok(secret: &NonZeroScalar, message: &EciesCiphertext) -> Vec<u8> {
    ecies::decrypt(secret, message).unwrap().to_vec()
}
