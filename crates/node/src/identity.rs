//! A node's secret keys, one per role, in files only its owner can read:
//! - `consensus.key`: ed25519, for consensus, p2p and the node's ledger
//!   transactions;
//! - `secp256k1.key`: secp256k1, for what clients verify (commitment
//!   signatures) and for ECIES.
//!
//! Each file holds 64 hex digits and a newline, is created with mode 0600
//! (never overwritten), and is refused on load if group or others can read
//! it.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use commonware_codec::{DecodeExt, Encode};
use commonware_cryptography::{Signer as _, ed25519};
use commonware_math::algebra::Random as _;
use quorumkey_crypto::group::{NonZeroScalar, nonzero_scalar_from_hex, point_to_bytes, scalar_to_hex};
use quorumkey_crypto::k256::ecdsa::SigningKey;
use quorumkey_crypto::k256::elliptic_curve::Generate;
use quorumkey_crypto::random::OsRng;
use thiserror::Error;
use zeroize::Zeroizing;

/// File name of the ed25519 key.
pub const CONSENSUS_KEY_FILE: &str = "consensus.key";
/// File name of the secp256k1 key.
pub const SECP256K1_KEY_FILE: &str = "secp256k1.key";

/// Why a key file could not be written or read.
#[derive(Debug, Error)]
pub enum KeyFileError {
    /// The file exists already (keys are never overwritten).
    #[error("{0} exists already; refusing to overwrite a key")]
    Exists(PathBuf),
    /// I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Group or others may read the file.
    #[error("{path} is readable by group or others (mode {mode:o}); run chmod 600 on it")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The content is not a key.
    #[error("{path} does not hold a valid {kind} key: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which key.
        kind: &'static str,
        /// Why.
        reason: String,
    },
}

/// A node's secret keys.
#[derive(Clone)]
pub struct NodeIdentity {
    /// ed25519: consensus, p2p, ledger transactions.
    pub consensus: ed25519::PrivateKey,
    /// secp256k1: commitment signatures, ECIES.
    pub secp256k1: SigningKey,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("consensus_public", &self.consensus.public_key())
            .field("secp256k1_public", &hex::encode(self.secp256k1_public_bytes()))
            .finish()
    }
}

impl NodeIdentity {
    /// Fresh keys from the operating system's RNG.
    pub fn generate(rng: &mut OsRng) -> Self {
        Self {
            consensus: ed25519::PrivateKey::random(&mut *rng as &mut OsRng),
            secp256k1: SigningKey::generate_from_rng(rng),
        }
    }

    /// The secp256k1 public key, compressed.
    pub fn secp256k1_public_bytes(&self) -> [u8; 33] {
        point_to_bytes(&quorumkey_crypto::group::Point::from(*self.secp256k1.verifying_key().as_affine()))
    }

    /// Writes both keys into `dir` (which must exist), mode 0600, refusing
    /// to overwrite.
    pub fn save(&self, dir: &Path) -> Result<(), KeyFileError> {
        let consensus = Zeroizing::new(hex::encode(self.consensus.encode()));
        write_secret(&dir.join(CONSENSUS_KEY_FILE), &consensus)?;
        let scalar: NonZeroScalar = *self.secp256k1.as_nonzero_scalar();
        let secp = Zeroizing::new(scalar_to_hex(scalar.as_ref()));
        write_secret(&dir.join(SECP256K1_KEY_FILE), &secp)
    }

    /// Reads both keys from `dir`.
    pub fn load(dir: &Path) -> Result<Self, KeyFileError> {
        let consensus_path = dir.join(CONSENSUS_KEY_FILE);
        let consensus_hex = read_secret(&consensus_path)?;
        let invalid = |path: &Path, kind, reason: String| KeyFileError::Invalid { path: path.to_owned(), kind, reason };
        let bytes = Zeroizing::new(
            hex::decode(consensus_hex.trim()).map_err(|e| invalid(&consensus_path, "ed25519", e.to_string()))?,
        );
        let consensus = ed25519::PrivateKey::decode(commonware_codec::Copying(bytes.as_slice()))
            .map_err(|e| invalid(&consensus_path, "ed25519", e.to_string()))?;
        let secp_path = dir.join(SECP256K1_KEY_FILE);
        let secp_hex = read_secret(&secp_path)?;
        let scalar = nonzero_scalar_from_hex("secp256k1 key", secp_hex.trim())
            .map_err(|e| invalid(&secp_path, "secp256k1", e.to_string()))?;
        Ok(Self { consensus, secp256k1: SigningKey::from(scalar) })
    }
}

/// Writes a verifier owner's secp256k1 key (it signs `RegisterVerifier`
/// and `UpdateVerifier`) into a new file of mode 0600 (hex), refusing to
/// overwrite.
pub fn save_owner_key(path: &Path, key: &SigningKey) -> Result<(), KeyFileError> {
    let scalar: NonZeroScalar = *key.as_nonzero_scalar();
    write_secret(path, &Zeroizing::new(scalar_to_hex(scalar.as_ref())))
}

/// Reads a verifier owner's key written by [`save_owner_key`] (the file
/// must not be readable by others).
pub fn load_owner_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let hex = read_secret(path)?;
    let scalar = nonzero_scalar_from_hex("secp256k1 key", hex.trim()).map_err(|e| KeyFileError::Invalid {
        path: path.to_owned(),
        kind: "secp256k1",
        reason: e.to_string(),
    })?;
    Ok(SigningKey::from(scalar))
}

/// The compressed public key of an owner key.
pub fn owner_public_bytes(key: &SigningKey) -> [u8; 33] {
    point_to_bytes(&quorumkey_crypto::group::Point::from(*key.verifying_key().as_affine()))
}

pub(crate) fn write_secret(path: &Path, hex: &str) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io { path: path.to_owned(), source };
    let mut file = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(KeyFileError::Exists(path.to_owned())),
        Err(e) => return Err(io(e)),
    };
    file.write_all(hex.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)
}

pub(crate) fn read_secret(path: &Path) -> Result<Zeroizing<String>, KeyFileError> {
    let io = |source| KeyFileError::Io { path: path.to_owned(), source };
    let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions { path: path.to_owned(), mode });
    }
    std::fs::read_to_string(path).map(Zeroizing::new).map_err(io)
}
