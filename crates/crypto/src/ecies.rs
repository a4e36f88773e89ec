//! ECIES compatible with `@toruslabs/eccrypto` (and the Go node's
//! `go-eccrypto`), the scheme the public Torus client decrypts shares with.
//!
//! Written here because the `ecies` crate uses HKDF and AES-GCM, which the
//! Torus client cannot read. The scheme, exactly:
//! 1. `ephemPublicKey` is the 65-byte uncompressed `04 ‖ X ‖ Y` of a fresh key.
//! 2. The shared secret is the X coordinate of `ephemeral·recipient`.
//! 3. `SHA-512(X)` gives the AES-256 key (first half) and the HMAC key
//!    (second half).
//! 4. The ciphertext is AES-256-CBC with PKCS#7 padding under a random IV.
//! 5. `mac = HMAC-SHA256(macKey, iv ‖ ephemPublicKey ‖ ciphertext)`.
//!
//! eccrypto drops the leading zero bytes of X before hashing (1 message in
//! 256); we encrypt with the 32-byte X and decrypt either form.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use k256::elliptic_curve::Generate;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::error::{CryptoError, Result};
use crate::group::{NonZeroScalar, PublicKey, public_key_from_sec1_named, public_key_to_uncompressed};

type Aes256CbcEncryptor = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDecryptor = cbc::Decryptor<aes::Aes256>;
type HmacSha256 = Hmac<Sha256>;

/// The only `mode` eccrypto writes and we accept.
pub const ECIES_MODE: &str = "AES256";
/// Bytes in the IV.
pub const IV_LEN: usize = 16;
/// Bytes in the MAC.
pub const MAC_LEN: usize = 32;
/// The largest ciphertext we parse or decrypt, so that a peer cannot make
/// us allocate without bound. Shares are 48 bytes of ciphertext.
pub const MAX_CIPHERTEXT_LEN: usize = 4096;

/// An eccrypto ciphertext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EciesCiphertext {
    /// The AES-CBC initialisation vector.
    pub iv: [u8; IV_LEN],
    /// The sender's ephemeral public key.
    pub ephemeral_public_key: PublicKey,
    /// AES-256-CBC output, a non-zero multiple of 16 bytes.
    pub ciphertext: Vec<u8>,
    /// HMAC-SHA256 over `iv ‖ ephemPublicKey ‖ ciphertext`.
    pub mac: [u8; MAC_LEN],
}

/// The encryption and MAC keys from one form of the shared X.
struct DerivedKeys {
    encryption: Zeroizing<[u8; 32]>,
    mac: Zeroizing<[u8; 32]>,
}

fn derive_keys(shared_x: &[u8]) -> DerivedKeys {
    let hash = Zeroizing::new(Sha512::digest(shared_x));
    let mut encryption = Zeroizing::new([0u8; 32]);
    let mut mac = Zeroizing::new([0u8; 32]);
    encryption.copy_from_slice(&hash[..32]);
    mac.copy_from_slice(&hash[32..]);
    DerivedKeys { encryption, mac }
}

fn mac_over(mac_key: &[u8; 32], iv: &[u8; IV_LEN], ephemeral: &[u8], ciphertext: &[u8]) -> HmacSha256 {
    #[allow(clippy::expect_used, reason = "HMAC accepts keys of any length")]
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(mac_key).expect("HMAC accepts 32-byte keys");
    mac.update(iv);
    mac.update(ephemeral);
    mac.update(ciphertext);
    mac
}

fn shared_x(secret: &NonZeroScalar, public: &PublicKey) -> Zeroizing<[u8; 32]> {
    let shared = k256::elliptic_curve::ecdh::diffie_hellman(secret, public.as_affine());
    let mut x = Zeroizing::new([0u8; 32]);
    x.copy_from_slice(shared.raw_secret_bytes());
    x
}

/// Encrypts `plaintext` to `recipient` with a fresh ephemeral key and IV.
pub fn encrypt<R: CryptoRng + ?Sized>(recipient: &PublicKey, plaintext: &[u8], rng: &mut R) -> EciesCiphertext {
    let ephemeral = NonZeroScalar::generate_from_rng(rng);
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);
    encrypt_with_ephemeral(recipient, plaintext, &ephemeral, iv)
}

/// Encryption with a given ephemeral key and IV: only for test vectors.
/// Reusing an ephemeral key and IV for two messages breaks the scheme.
pub(crate) fn encrypt_with_ephemeral(
    recipient: &PublicKey,
    plaintext: &[u8],
    ephemeral: &NonZeroScalar,
    iv: [u8; IV_LEN],
) -> EciesCiphertext {
    let x = shared_x(ephemeral, recipient);
    let keys = derive_keys(x.as_ref());
    let ciphertext =
        Aes256CbcEncryptor::new((&*keys.encryption).into(), &iv.into()).encrypt_padded_vec::<Pkcs7>(plaintext);
    let ephemeral_public_key = PublicKey::from_secret_scalar(ephemeral);
    let mac = mac_over(&keys.mac, &iv, &public_key_to_uncompressed(&ephemeral_public_key), &ciphertext)
        .finalize()
        .into_bytes()
        .into();
    EciesCiphertext { iv, ephemeral_public_key, ciphertext, mac }
}

/// Decrypts with the recipient's secret key. The MAC is checked in constant
/// time against the 32-byte shared X and against its leading-zero-stripped
/// form (both are always computed), before any decryption.
pub fn decrypt(recipient: &NonZeroScalar, message: &EciesCiphertext) -> Result<Zeroizing<Vec<u8>>> {
    if message.ciphertext.is_empty() || !message.ciphertext.len().is_multiple_of(16) {
        return Err(CryptoError::InvalidLength {
            what: "ECIES ciphertext",
            expected: "a non-zero multiple of 16 bytes",
            actual: message.ciphertext.len(),
        });
    }
    if message.ciphertext.len() > MAX_CIPHERTEXT_LEN {
        return Err(CryptoError::InvalidLength {
            what: "ECIES ciphertext",
            expected: "at most 4096 bytes",
            actual: message.ciphertext.len(),
        });
    }
    let x = shared_x(recipient, &message.ephemeral_public_key);
    let ephemeral = public_key_to_uncompressed(&message.ephemeral_public_key);
    let stripped_start = x.iter().position(|&b| b != 0).unwrap_or(x.len());
    let padded_keys = derive_keys(x.as_ref());
    let stripped_keys = derive_keys(&x[stripped_start..]);
    let padded_ok =
        mac_over(&padded_keys.mac, &message.iv, &ephemeral, &message.ciphertext).verify_slice(&message.mac).is_ok();
    let stripped_ok =
        mac_over(&stripped_keys.mac, &message.iv, &ephemeral, &message.ciphertext).verify_slice(&message.mac).is_ok();
    let keys = match (padded_ok, stripped_ok) {
        (true, _) => padded_keys,
        (false, true) => stripped_keys,
        (false, false) => return Err(CryptoError::MacMismatch),
    };
    let plaintext = Aes256CbcDecryptor::new((&*keys.encryption).into(), &message.iv.into())
        .decrypt_padded_vec::<Pkcs7>(&message.ciphertext)
        .map_err(|_| CryptoError::BadPadding)?;
    Ok(Zeroizing::new(plaintext))
}

/// The `Metadata` object of a Torus `ShareRequest` key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TorusShareMetadata {
    /// 32 hex digits.
    pub iv: String,
    /// 130 hex digits, `04 ‖ X ‖ Y`.
    #[serde(rename = "ephemPublicKey")]
    pub ephem_public_key: String,
    /// 64 hex digits.
    pub mac: String,
    /// Always `"AES256"`.
    pub mode: String,
}

/// The `Share` and `Metadata` fields of a Torus `ShareRequest` key: `Share`
/// is base64 of the ASCII hex of the ciphertext (Go's `[]byte` JSON
/// encoding of a hex string).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TorusEncryptedShare {
    /// `base64(hex(ciphertext))`.
    #[serde(rename = "Share")]
    pub share: String,
    /// IV, ephemeral key, MAC and mode.
    #[serde(rename = "Metadata")]
    pub metadata: TorusShareMetadata,
}

/// The longest `Share` field accepted: base64 of the hex of
/// [`MAX_CIPHERTEXT_LEN`] bytes.
const MAX_SHARE_FIELD_LEN: usize = (2 * MAX_CIPHERTEXT_LEN).div_ceil(3) * 4;

fn decode_fixed_hex<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N]> {
    if s.len() != 2 * N {
        return Err(CryptoError::InvalidLength { what, expected: "a fixed number of hex digits", actual: s.len() });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| CryptoError::InvalidHex { what })?;
    Ok(out)
}

impl From<&EciesCiphertext> for TorusEncryptedShare {
    fn from(message: &EciesCiphertext) -> Self {
        Self {
            share: BASE64.encode(hex::encode(&message.ciphertext)),
            metadata: TorusShareMetadata {
                iv: hex::encode(message.iv),
                ephem_public_key: hex::encode(public_key_to_uncompressed(&message.ephemeral_public_key)),
                mac: hex::encode(message.mac),
                mode: ECIES_MODE.to_owned(),
            },
        }
    }
}

impl TryFrom<&TorusEncryptedShare> for EciesCiphertext {
    type Error = CryptoError;

    /// Parses strictly: the ciphertext hex is taken as sent. (The torus.js
    /// client left-pads it to 64 hex digits, which only changes ciphertexts
    /// shorter than 32 bytes, i.e. plaintexts under 16 bytes; nodes must
    /// therefore always encrypt shares as 32 bytes.)
    fn try_from(share: &TorusEncryptedShare) -> Result<Self> {
        let metadata = &share.metadata;
        if metadata.mode != ECIES_MODE {
            let shown: String = metadata.mode.chars().take(32).collect();
            return Err(CryptoError::UnsupportedMode(shown));
        }
        if share.share.len() > MAX_SHARE_FIELD_LEN {
            return Err(CryptoError::InvalidLength {
                what: "Share",
                expected: "at most the base64 of 4096 bytes of ciphertext hex",
                actual: share.share.len(),
            });
        }
        let ascii_hex = BASE64.decode(&share.share).map_err(|_| CryptoError::InvalidBase64 { what: "Share" })?;
        let ciphertext = hex::decode(&ascii_hex).map_err(|_| CryptoError::InvalidHex { what: "Share" })?;
        let iv = decode_fixed_hex::<IV_LEN>("iv", &metadata.iv)?;
        let mac = decode_fixed_hex::<MAC_LEN>("mac", &metadata.mac)?;
        let ephemeral = decode_fixed_hex::<65>("ephemPublicKey", &metadata.ephem_public_key)?;
        if ephemeral[0] != 0x04 {
            return Err(CryptoError::PointNotOnCurve { what: "ephemPublicKey" });
        }
        let ephemeral_public_key = public_key_from_sec1_named("ephemPublicKey", &ephemeral)?;
        Ok(Self { iv, ephemeral_public_key, ciphertext, mac })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::point_to_public_key;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn keypair(seed: u64) -> (NonZeroScalar, PublicKey) {
        let secret = NonZeroScalar::generate_from_rng(&mut ChaCha20Rng::seed_from_u64(seed));
        (secret, PublicKey::from_secret_scalar(&secret))
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let (secret, public) = keypair(1);
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let message = encrypt(&public, b"thirty-two bytes of share data!!", &mut rng);
        assert_eq!(message.ciphertext.len(), 48);
        assert_eq!(decrypt(&secret, &message).unwrap().as_slice(), b"thirty-two bytes of share data!!");

        let (other, _) = keypair(3);
        assert_eq!(decrypt(&other, &message), Err(CryptoError::MacMismatch));
        for field in 0..4 {
            let mut tampered = message.clone();
            match field {
                0 => tampered.iv[0] ^= 1,
                1 => tampered.ciphertext[5] ^= 1,
                2 => tampered.mac[31] ^= 1,
                _ => {
                    tampered.ephemeral_public_key = point_to_public_key("e", &k256::ProjectivePoint::GENERATOR).unwrap()
                }
            }
            assert_eq!(decrypt(&secret, &tampered), Err(CryptoError::MacMismatch), "field {field}");
        }
        let mut truncated = message.clone();
        truncated.ciphertext.truncate(40);
        assert!(matches!(decrypt(&secret, &truncated), Err(CryptoError::InvalidLength { .. })));
        truncated.ciphertext.clear();
        assert!(matches!(decrypt(&secret, &truncated), Err(CryptoError::InvalidLength { .. })));
    }

    #[test]
    fn torus_json_is_strict() {
        let (_, public) = keypair(4);
        let message = encrypt(&public, &[7u8; 32], &mut ChaCha20Rng::seed_from_u64(5));
        let torus = TorusEncryptedShare::from(&message);
        let json = serde_json::to_value(&torus).unwrap();
        assert!(json.get("Share").is_some() && json["Metadata"].get("ephemPublicKey").is_some());
        assert_eq!(EciesCiphertext::try_from(&torus).unwrap(), message);

        let mut bad = torus.clone();
        bad.metadata.mode = "AES128".into();
        assert!(matches!(EciesCiphertext::try_from(&bad), Err(CryptoError::UnsupportedMode(_))));
        let mut bad = torus.clone();
        bad.metadata.iv.pop();
        assert!(matches!(EciesCiphertext::try_from(&bad), Err(CryptoError::InvalidLength { .. })));
        let mut bad = torus.clone();
        bad.metadata.mac = "zz".repeat(32);
        assert!(matches!(EciesCiphertext::try_from(&bad), Err(CryptoError::InvalidHex { .. })));
        let mut bad = torus.clone();
        bad.share = "***".into();
        assert!(matches!(EciesCiphertext::try_from(&bad), Err(CryptoError::InvalidBase64 { .. })));
        let mut bad = torus.clone();
        bad.share = BASE64.encode("not hex!");
        assert!(matches!(EciesCiphertext::try_from(&bad), Err(CryptoError::InvalidHex { .. })));
        let mut bad = torus.clone();
        bad.share = "A".repeat(MAX_SHARE_FIELD_LEN + 4);
        assert!(matches!(EciesCiphertext::try_from(&bad), Err(CryptoError::InvalidLength { .. })));
        let mut bad = torus.clone();
        bad.metadata.ephem_public_key.replace_range(0..2, "02");
        assert!(EciesCiphertext::try_from(&bad).is_err());
        let mut bad = torus;
        let last = bad.metadata.ephem_public_key.pop().unwrap();
        bad.metadata.ephem_public_key.push(if last == '0' { '1' } else { '0' });
        assert!(matches!(EciesCiphertext::try_from(&bad), Err(CryptoError::PointNotOnCurve { .. })));
    }
}
