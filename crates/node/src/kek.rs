//! The node's key-encryption key (KEK): what encrypts its key shares and
//! DKG batch shares at rest (see `quorumkey_store::Kek`).
//!
//! The node takes it from exactly one of:
//! - the file `kek_file` names in `node.toml` (64 hex digits and a
//!   newline, mode 0600, refused if group or others may read it; `network
//!   init` and the devnet write one per node, `kek.key` beside the node's
//!   other keys, and `quorumkey node new-kek` makes one anywhere, such as
//!   another volume than the data directory's);
//! - the environment variable `QUORUMKEY_KEK` (64 hex digits, or the 32
//!   bytes in base64, standard or URL-safe, padded or not), for a secret
//!   manager or an orchestrator that injects it.
//!
//! Both set is an error (which one is meant?), and so is neither.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use quorumkey_store::{KEK_LEN, Kek, RekeyReport, StoreError};
use rand_core::Rng as _;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::config::{ConfigError, NodeConfig};
use crate::identity::{KeyFileError, read_secret, write_secret};

/// The environment variable that may hold the KEK.
pub const KEK_ENV: &str = "QUORUMKEY_KEK";
/// The KEK file `network init` writes in each node's directory.
pub const KEK_FILE: &str = "kek.key";

/// Why the node has no usable KEK.
#[derive(Debug, Error)]
pub enum KekError {
    /// None configured.
    #[error(
        "no key-encryption key for the node of {config}: set kek_file in it (a file made by `quorumkey node new-kek --out FILE`, mode 0600) or the {KEK_ENV} environment variable (64 hex digits, or 32 bytes in base64)"
    )]
    Missing {
        /// The node's configuration.
        config: PathBuf,
    },
    /// Both configured.
    #[error("both kek_file in {config} and the {KEK_ENV} environment variable are set; keep one")]
    Both {
        /// The node's configuration.
        config: PathBuf,
    },
    /// The environment variable is not a KEK.
    #[error("the {KEK_ENV} environment variable is not a key-encryption key: {0}")]
    BadEnvironment(String),
    /// The file is missing, open to others or not a KEK.
    #[error(transparent)]
    File(#[from] KeyFileError),
}

/// The KEK spelled in `text`: 64 hex digits, or 32 bytes in base64
/// (standard or URL-safe alphabet, padded or not); white space around it
/// is ignored.
pub(crate) fn parse_kek(text: &str) -> Result<Kek, String> {
    let text = text.trim();
    let mut secret = Zeroizing::new([0u8; KEK_LEN]);
    if text.len() == 2 * KEK_LEN && hex::decode_to_slice(text, secret.as_mut_slice()).is_ok() {
        return Ok(Kek::from_bytes(&secret));
    }
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    for engine in engines {
        if let Ok(bytes) = engine.decode(text).map(Zeroizing::new) {
            if bytes.len() == KEK_LEN {
                secret.copy_from_slice(&bytes);
                return Ok(Kek::from_bytes(&secret));
            }
            return Err(format!("it holds {} bytes, not {KEK_LEN}", bytes.len()));
        }
    }
    Err(format!("expected 64 hex digits or {KEK_LEN} bytes in base64"))
}

/// Reads a KEK file (refused if group or others may read it).
pub fn read_kek_file(path: &Path) -> Result<Kek, KeyFileError> {
    let text = read_secret(path)?;
    parse_kek(&text).map_err(|reason| KeyFileError::Invalid { path: path.to_owned(), kind: "key-encryption", reason })
}

/// Writes a new random KEK into a new file of mode 0600 (hex), refusing to
/// overwrite, and returns it.
pub fn write_new_kek(path: &Path) -> Result<Kek, KeyFileError> {
    let mut secret = Zeroizing::new([0u8; KEK_LEN]);
    quorumkey_crypto::random::os_rng().fill_bytes(secret.as_mut_slice());
    write_secret(path, &Zeroizing::new(hex::encode(secret.as_slice())))?;
    Ok(Kek::from_bytes(&secret))
}

/// The node's KEK: from `kek_file` (already resolved against the
/// configuration's directory) or from the environment, exactly one.
/// `config` names the configuration in errors.
pub(crate) fn load_kek(kek_file: Option<&Path>, config: &Path) -> Result<Kek, KekError> {
    load_kek_from(std::env::var_os(KEK_ENV), kek_file, config)
}

/// [`load_kek`] with the environment variable's value given.
pub(crate) fn load_kek_from(
    environment: Option<OsString>,
    kek_file: Option<&Path>,
    config: &Path,
) -> Result<Kek, KekError> {
    match (environment, kek_file) {
        (Some(_), Some(_)) => Err(KekError::Both { config: config.to_owned() }),
        (Some(value), None) => {
            let value = Zeroizing::new(
                value.into_string().map_err(|_| KekError::BadEnvironment("it is not UTF-8".to_owned()))?,
            );
            parse_kek(&value).map_err(KekError::BadEnvironment)
        }
        (None, Some(path)) => Ok(read_kek_file(path)?),
        (None, None) => Err(KekError::Missing { config: config.to_owned() }),
    }
}

/// Why a rekey failed.
#[derive(Debug, Error)]
pub enum RekeyError {
    /// `node.toml` is missing or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The current or the new KEK cannot be had.
    #[error(transparent)]
    Kek(#[from] KekError),
    /// The new KEK's file.
    #[error(transparent)]
    NewKek(#[from] KeyFileError),
    /// The store refused (another KEK, the node running, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `quorumkey node rekey`: re-encrypts every share of the node configured
/// by `config_path` under the KEK in `new_kek_file`, in one transaction
/// (see `quorumkey_store::rekey`). The current KEK comes from where the
/// node takes it (`kek_file` or `QUORUMKEY_KEK`); a store whose shares are
/// still plain needs none. The node must be stopped. Afterwards the node
/// starts only with the new KEK: point `kek_file` at it (or set
/// `QUORUMKEY_KEK`).
pub fn rekey_node(config_path: &Path, new_kek_file: &Path) -> Result<RekeyReport, RekeyError> {
    let config = NodeConfig::load(config_path)?;
    let new = read_kek_file(new_kek_file)?;
    let current = match load_kek(config.kek_file.as_deref(), config_path) {
        Ok(kek) => Some(kek),
        Err(KekError::Missing { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(quorumkey_store::rekey(&config.data_dir.join(crate::run::LEDGER_FILE), current.as_ref(), &new)?)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn every_spelling_of_one_kek_is_the_same_kek() {
        let secret = [0xa7u8; 32];
        let want = Kek::from_bytes(&secret).id();
        let hex_text = hex::encode(secret);
        for text in [
            hex_text.clone(),
            format!("  {}\n", hex_text.to_uppercase()),
            base64::engine::general_purpose::STANDARD.encode(secret),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        ] {
            assert_eq!(parse_kek(&text).unwrap().id(), want, "{text:?}");
        }
        for bad in [
            "",
            "00",
            &hex_text[..62],
            "not a key at all!",
            &base64::engine::general_purpose::STANDARD.encode([1u8; 31]),
        ] {
            assert!(parse_kek(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_kek_comes_from_exactly_one_place() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("node.toml");
        let file = dir.path().join("kek.key");
        let written = write_new_kek(&file).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(write_new_kek(&file), Err(KeyFileError::Exists(_))), "never overwritten");
        let env = Some(OsString::from(hex::encode([3u8; 32])));

        assert_eq!(load_kek_from(None, Some(&file), &config).unwrap().id(), written.id());
        assert_eq!(load_kek_from(env.clone(), None, &config).unwrap().id(), Kek::from_bytes(&[3; 32]).id());
        assert!(matches!(load_kek_from(env, Some(&file), &config), Err(KekError::Both { .. })));
        let missing = load_kek_from(None, None, &config).unwrap_err();
        assert!(missing.to_string().contains("QUORUMKEY_KEK") && missing.to_string().contains("new-kek"), "{missing}");
        assert!(matches!(load_kek_from(Some(OsString::from("xyz")), None, &config), Err(KekError::BadEnvironment(_))));

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let open = load_kek_from(None, Some(&file), &config).unwrap_err();
        assert!(open.to_string().contains("chmod 600"), "{open}");
    }
}
