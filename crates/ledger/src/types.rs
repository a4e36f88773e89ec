//! The ledger's value types and their canonical encodings.

use bytes::{BufMut, Bytes};
use commonware_codec::{Buf, Copying, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, ReadRangeExt, Write};

/// Longest verifier name, in bytes.
pub const MAX_VERIFIER_NAME_LEN: usize = 64;
/// Longest verifier_id (an email, a subject…), in bytes.
pub const MAX_VERIFIER_ID_LEN: usize = 256;
/// Bytes in a compressed secp256k1 point.
pub const POINT_LEN: usize = 33;

/// A compressed secp256k1 point as stored on the ledger.
pub type PointBytes = [u8; POINT_LEN];

/// The name of a verifier: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VerifierName(String);

impl VerifierName {
    /// Checks the name.
    pub fn new(name: &str) -> Result<Self, &'static str> {
        if name.is_empty() || name.len() > MAX_VERIFIER_NAME_LEN {
            return Err("a verifier name has 1 to 64 characters");
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            return Err("a verifier name uses only A-Z, a-z, 0-9, '.', '_' and '-'");
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user's identifier within a verifier: 1 to 256 bytes of UTF-8 with no
/// control characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VerifierId(String);

impl VerifierId {
    /// Checks the identifier.
    pub fn new(id: &str) -> Result<Self, &'static str> {
        if id.is_empty() || id.len() > MAX_VERIFIER_ID_LEN {
            return Err("a verifier_id has 1 to 256 bytes");
        }
        if id.chars().any(char::is_control) {
            return Err("a verifier_id has no control characters");
        }
        Ok(Self(id.to_owned()))
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn read_string(buf: &mut impl Buf, max: usize, context: &'static str) -> Result<String, CodecError> {
    let bytes = Vec::<u8>::read_range(buf, 1..=max)?;
    String::from_utf8(bytes).map_err(|_| CodecError::Invalid(context, "not UTF-8"))
}

/// The codec of a validated string type: the bytes, length-prefixed as a
/// `Vec<u8>`, checked again by the type's constructor when read.
macro_rules! validated_string_codec {
    ($type:ident, $max:expr, $what:literal) => {
        impl Write for $type {
            fn write(&self, buf: &mut impl BufMut) {
                self.0.as_bytes().write(buf);
            }
        }
        impl EncodeSize for $type {
            fn encode_size(&self) -> usize {
                self.0.as_bytes().encode_size()
            }
        }
        impl Read for $type {
            type Cfg = ();
            fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
                let value = read_string(buf, $max, $what)?;
                Self::new(&value).map_err(|reason| CodecError::Invalid($what, reason))
            }
        }
    };
}

validated_string_codec!(VerifierName, MAX_VERIFIER_NAME_LEN, "verifier name");
validated_string_codec!(VerifierId, MAX_VERIFIER_ID_LEN, "verifier_id");

/// A ready key: its public key and every node's public share `s_j·G`
/// (node j at position j-1), so a client can check each share it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key's public key.
    pub public_key: PointBytes,
    /// `s_j·G` for nodes 1..=n.
    pub public_shares: Vec<PointBytes>,
}

impl Write for KeyRecord {
    fn write(&self, buf: &mut impl BufMut) {
        self.public_key.write(buf);
        self.public_shares.write(buf);
    }
}
impl EncodeSize for KeyRecord {
    fn encode_size(&self) -> usize {
        self.public_key.encode_size() + self.public_shares.encode_size()
    }
}
impl Read for KeyRecord {
    /// The most nodes a key may have shares for (the number of nodes of the
    /// epoch in force: the ledger checks the exact count where it matters).
    type Cfg = usize;
    fn read_cfg(buf: &mut impl Buf, nodes: &usize) -> Result<Self, CodecError> {
        let public_key = PointBytes::read(buf)?;
        let public_shares = Vec::<PointBytes>::read_cfg(buf, &(RangeCfg::new(1..=*nodes), ()))?;
        Ok(Self { public_key, public_shares })
    }
}

/// Where a (verifier, verifier_id) pair stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assignment {
    /// It has this key, for good.
    Assigned {
        /// The key's index.
        key_index: u64,
    },
    /// It asked while the pool was empty and gets the next ready key, in
    /// the order of this sequence number.
    Pending {
        /// Position in the pending queue.
        sequence: u64,
    },
}

impl Write for Assignment {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Self::Assigned { key_index } => {
                0u8.write(buf);
                key_index.write(buf);
            }
            Self::Pending { sequence } => {
                1u8.write(buf);
                sequence.write(buf);
            }
        }
    }
}
impl EncodeSize for Assignment {
    fn encode_size(&self) -> usize {
        9
    }
}
impl Read for Assignment {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(Self::Assigned { key_index: u64::read(buf)? }),
            1 => Ok(Self::Pending { sequence: u64::read(buf)? }),
            tag => Err(CodecError::InvalidEnum(tag)),
        }
    }
}

/// A registered verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierRecord {
    /// Compressed secp256k1 key of the owner, who alone may change it.
    pub owner: PointBytes,
    /// The verifier's configuration in its canonical encoding (its type and
    /// parameters), interpreted by the verifier crate.
    pub config: Bytes,
    /// Number of accepted updates; the next update must carry `nonce + 1`.
    pub nonce: u64,
    /// A disabled verifier gets no new assignments and no logins.
    pub enabled: bool,
}

impl Write for VerifierRecord {
    fn write(&self, buf: &mut impl BufMut) {
        self.owner.write(buf);
        self.config.write(buf);
        self.nonce.write(buf);
        self.enabled.write(buf);
    }
}
impl EncodeSize for VerifierRecord {
    fn encode_size(&self) -> usize {
        self.owner.encode_size() + self.config.encode_size() + 8 + 1
    }
}
impl Read for VerifierRecord {
    /// The largest configuration accepted.
    type Cfg = usize;
    fn read_cfg(buf: &mut impl Buf, max_config: &usize) -> Result<Self, CodecError> {
        Ok(Self {
            owner: PointBytes::read(buf)?,
            config: Bytes::read_cfg(buf, &RangeCfg::new(0..=*max_config))?,
            nonce: u64::read(buf)?,
            enabled: bool::read(buf)?,
        })
    }
}

/// A (verifier, verifier_id) pair as one key: each part length-prefixed.
pub(crate) fn pair_key(verifier: &VerifierName, verifier_id: &VerifierId) -> Vec<u8> {
    let mut out = Vec::with_capacity(verifier.encode_size() + verifier_id.encode_size());
    verifier.write(&mut out);
    verifier_id.write(&mut out);
    out
}

/// Parses [`pair_key`].
pub(crate) fn parse_pair_key(bytes: &[u8]) -> Result<(VerifierName, VerifierId), CodecError> {
    let mut buf = Copying(bytes);
    let verifier = VerifierName::read(&mut buf)?;
    let verifier_id = VerifierId::read(&mut buf)?;
    let left = bytes::Buf::remaining(&buf);
    if left != 0 {
        return Err(CodecError::ExtraData(left));
    }
    Ok((verifier, verifier_id))
}
