//! Secret entries at rest: this node's key shares and DKG batch shares are
//! encrypted with a key-encryption key (KEK) the node is given at start
//! (from a file or an environment variable, never from the data
//! directory), so a stolen disk or backup of the data directory reveals no
//! share.
//!
//! The AEAD is XChaCha20-Poly1305 (`chacha20poly1305`): a 24-byte nonce
//! drawn at random for every entry written (random nonces that long never
//! repeat in practice), and associated data that binds the ciphertext to
//! its table and its key, so an entry moved to another key or table (or a
//! batch's shares swapped with another batch's) does not decrypt. The
//! encryption key and the KEK's id are both derived from the KEK with
//! BLAKE3's key derivation under separate contexts: the id names the KEK
//! in every entry (re-keying, and a clear error when the node is given
//! another KEK) without revealing anything about the encryption key.
//!
//! Entry: `format (1) ‖ KEK id (8) ‖ nonce (24) ‖ ciphertext ‖ tag (16)`,
//! format 1. Associated data: `quorumkey/store/v1 ‖ table tag (1) ‖ entry
//! key (u64, big-endian) ‖ format ‖ KEK id`.
//!
//! The store keeps a check value (an empty message sealed the same way,
//! under its own table tag) so that a node given the wrong KEK refuses to
//! start instead of failing at its first login.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// Bytes of a key-encryption key.
pub const KEK_LEN: usize = 32;
/// The entry format this code writes.
const FORMAT_V1: u8 = 1;
const ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + ID_LEN + NONCE_LEN;
/// Bytes a sealed entry adds to its plaintext.
pub const SEALED_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
const AAD_PREFIX: &[u8] = b"quorumkey/store/v1";
const AAD_LEN: usize = AAD_PREFIX.len() + 1 + 8 + 1 + ID_LEN;

/// The id of a key-encryption key: 8 bytes derived from it (BLAKE3 key
/// derivation), shown in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KekId([u8; ID_LEN]);

impl KekId {
    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }
}

impl std::fmt::Display for KekId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for KekId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KekId({self})")
    }
}

/// A key-encryption key: what encrypts this node's shares at rest. Holds
/// the derived encryption key (zeroized on drop) and the KEK's id; never
/// printed.
#[derive(Clone)]
pub struct Kek {
    key: Zeroizing<[u8; 32]>,
    id: KekId,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Kek {
    /// The KEK whose secret is `secret` (32 random bytes).
    pub fn from_bytes(secret: &[u8; KEK_LEN]) -> Self {
        let key = Zeroizing::new(blake3::derive_key("quorumkey 2026 store v1 share encryption key", secret));
        let full_id = blake3::derive_key("quorumkey 2026 store v1 key-encryption key id", secret);
        let mut id = [0; ID_LEN];
        id.copy_from_slice(&full_id[..ID_LEN]);
        Self { key, id: KekId(id) }
    }

    /// Its id.
    pub fn id(&self) -> KekId {
        self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(*self.key))
    }
}

/// Which kind of secret entry (part of the associated data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SecretTable {
    /// The store's KEK check value (key 0).
    KekCheck,
    /// `dkg_batch_shares`, by batch.
    BatchShares,
    /// `key_shares`, by key index.
    KeyShares,
    /// `next_epoch_shares`, by `epoch << 40 | batch`.
    NextShares,
}

impl SecretTable {
    fn tag(self) -> u8 {
        match self {
            Self::KekCheck => 0,
            Self::BatchShares => 1,
            Self::KeyShares => 2,
            Self::NextShares => 3,
        }
    }

    /// The table's name, for errors.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::KekCheck => "store_meta",
            Self::BatchShares => "dkg_batch_shares",
            Self::KeyShares => "key_shares",
            Self::NextShares => "next_epoch_shares",
        }
    }
}

/// Why an entry could not be sealed or opened.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SealError {
    /// The entry names another KEK.
    OtherKek(KekId),
    /// The entry is not in a format this code reads.
    Malformed,
    /// The tag does not verify: the entry is corrupt, was moved from
    /// another key or table, or was made under another KEK with the same
    /// id.
    Unauthentic,
    /// The operating system gave no randomness for the nonce.
    Random(String),
    /// The plaintext is beyond what one entry can hold (256 GiB).
    TooLarge,
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OtherKek(id) => write!(f, "it is encrypted under the key-encryption key {id}"),
            Self::Malformed => write!(f, "it is not an encrypted entry of a known format"),
            Self::Unauthentic => {
                write!(f, "it does not authenticate (corrupt, or moved from another entry)")
            }
            Self::Random(reason) => write!(f, "no randomness for a nonce: {reason}"),
            Self::TooLarge => write!(f, "it is too large to encrypt"),
        }
    }
}

fn associated_data(table: SecretTable, key: u64, id: &KekId) -> [u8; AAD_LEN] {
    let mut aad = [0; AAD_LEN];
    let (prefix, rest) = aad.split_at_mut(AAD_PREFIX.len());
    prefix.copy_from_slice(AAD_PREFIX);
    rest[0] = table.tag();
    rest[1..9].copy_from_slice(&key.to_be_bytes());
    rest[9] = FORMAT_V1;
    rest[10..].copy_from_slice(&id.0);
    aad
}

/// Encrypts `plaintext` as the entry `key` of `table` under `kek`, with a
/// fresh random nonce. The plaintext is copied only into the buffer that
/// is encrypted in place (its capacity reserved first, so no reallocation
/// leaves a plain copy behind).
pub(crate) fn seal(kek: &Kek, table: SecretTable, key: u64, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
    let mut out = Zeroizing::new(Vec::with_capacity(SEALED_OVERHEAD + plaintext.len()));
    out.push(FORMAT_V1);
    out.extend_from_slice(&kek.id.0);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let aad = associated_data(table, key, &kek.id);
    let tag = kek
        .cipher()
        .encrypt_inout_detached(&XNonce::from(nonce), &aad, (&mut out[HEADER_LEN..]).into())
        // Only a message beyond 256 GiB fails.
        .map_err(|_| SealError::TooLarge)?;
    out.extend_from_slice(&tag);
    // Ciphertext only from here: no need to zeroize it.
    Ok(std::mem::take(&mut *out))
}

/// Decrypts the entry `key` of `table` with `kek`, into a buffer zeroized
/// on drop.
pub(crate) fn open(kek: &Kek, table: SecretTable, key: u64, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let id = entry_kek_id(sealed).ok_or(SealError::Malformed)?;
    if id != kek.id {
        return Err(SealError::OtherKek(id));
    }
    let mut nonce = [0; NONCE_LEN];
    nonce.copy_from_slice(&sealed[1 + ID_LEN..HEADER_LEN]);
    let (body, tag) = sealed[HEADER_LEN..].split_at(sealed.len() - HEADER_LEN - TAG_LEN);
    let mut tag_bytes = [0; TAG_LEN];
    tag_bytes.copy_from_slice(tag);
    let mut plain = Zeroizing::new(body.to_vec());
    let aad = associated_data(table, key, &kek.id);
    kek.cipher()
        .decrypt_inout_detached(&XNonce::from(nonce), &aad, plain.as_mut_slice().into(), &Tag::from(tag_bytes))
        .map_err(|_| SealError::Unauthentic)?;
    Ok(plain)
}

/// The KEK id an entry names, if it is in a known format.
pub(crate) fn entry_kek_id(sealed: &[u8]) -> Option<KekId> {
    if sealed.len() < SEALED_OVERHEAD || sealed[0] != FORMAT_V1 {
        return None;
    }
    let mut id = [0; ID_LEN];
    id.copy_from_slice(&sealed[1..1 + ID_LEN]);
    Some(KekId(id))
}

/// The check value the store keeps for `kek`.
pub(crate) fn check_value(kek: &Kek) -> Result<Vec<u8>, SealError> {
    seal(kek, SecretTable::KekCheck, 0, &[])
}

/// Whether `check` is the check value of `kek`.
pub(crate) fn verify_check_value(kek: &Kek, check: &[u8]) -> Result<(), SealError> {
    let plain = open(kek, SecretTable::KekCheck, 0, check)?;
    if plain.is_empty() { Ok(()) } else { Err(SealError::Unauthentic) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(byte: u8) -> Kek {
        Kek::from_bytes(&[byte; KEK_LEN])
    }

    #[test]
    fn an_entry_opens_only_as_itself_under_its_kek() {
        let secret = [9u8; 32];
        let sealed = seal(&kek(1), SecretTable::KeyShares, 7, &secret).unwrap();
        assert_eq!(sealed.len(), secret.len() + SEALED_OVERHEAD);
        assert!(!sealed.windows(secret.len()).any(|w| w == secret), "no plain copy");
        assert_eq!(&open(&kek(1), SecretTable::KeyShares, 7, &sealed).unwrap()[..], &secret);
        // Another key, another table, another KEK.
        assert_eq!(open(&kek(1), SecretTable::KeyShares, 8, &sealed), Err(SealError::Unauthentic));
        assert_eq!(open(&kek(1), SecretTable::BatchShares, 7, &sealed), Err(SealError::Unauthentic));
        assert_eq!(open(&kek(2), SecretTable::KeyShares, 7, &sealed), Err(SealError::OtherKek(kek(1).id())));
        // Any flipped bit.
        for at in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 0x20;
            assert!(open(&kek(1), SecretTable::KeyShares, 7, &bad).is_err(), "bit at {at}");
        }
        assert_eq!(open(&kek(1), SecretTable::KeyShares, 7, &sealed[..SEALED_OVERHEAD - 1]), Err(SealError::Malformed));
    }

    #[test]
    fn every_entry_has_its_own_nonce() {
        let a = seal(&kek(1), SecretTable::BatchShares, 1, b"same").unwrap();
        let b = seal(&kek(1), SecretTable::BatchShares, 1, b"same").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn the_check_value_tells_the_keks_apart() {
        let check = check_value(&kek(1)).unwrap();
        assert_eq!(verify_check_value(&kek(1), &check), Ok(()));
        assert_eq!(verify_check_value(&kek(2), &check), Err(SealError::OtherKek(kek(1).id())));
        assert_ne!(kek(1).id(), kek(2).id());
        assert_eq!(format!("{:?}", kek(1)), format!("Kek {{ id: KekId({}), .. }}", kek(1).id()));
    }
}
