//! The network's abuse policy, enforced by the ledger itself so that no
//! node, client or owner can spend more than the operators allow:
//!
//! - who may register verifiers (anyone, or only allow-listed owners), how
//!   many an owner may hold, how large a configuration may be, and how many
//!   registrations the whole network takes per window of block time;
//! - how many new assignments (keys leaving the pool) the network takes
//!   per window, per verifier and in total.
//!
//! It starts in the genesis and changes only by a [`SetPolicy`] transaction
//! signed by at least 2f + 1 nodes (f = ⌊(n − 1) / 3⌋), with a nonce one
//! above the last policy's. Windows are block time (milliseconds, as
//! consensus finalized it) divided by the window's length: every node
//! counts the same.
//!
//! [`SetPolicy`]: crate::TransactionBody::SetPolicy

use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write};
use quorumkey_crypto::group::public_key_from_sec1_named;

use crate::genesis::{GenesisError, MAX_VERIFIER_CONFIG_LEN};
use crate::types::PointBytes;

/// Most owners an allow list may name.
pub const MAX_ALLOWED_OWNERS: usize = 1024;
/// Shortest budget window (one second of block time).
pub const MIN_WINDOW_MS: u64 = 1_000;

/// Who may register verifiers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrationRule {
    /// Any owner key (within the quotas).
    Open,
    /// Only these owners (compressed secp256k1 keys).
    AllowList(Vec<PointBytes>),
}

/// The abuse policy; see the module's documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Who may register.
    pub registration: RegistrationRule,
    /// Most verifiers one owner key may hold.
    pub verifiers_per_owner: u32,
    /// Largest configuration a registration or update may carry, in bytes
    /// (at most 16 KiB).
    pub max_config_len: u32,
    /// Registrations the network takes per window, from everyone.
    pub registrations_per_window: u32,
    /// New assignments one verifier gets per window.
    pub assignments_per_verifier: u32,
    /// New assignments one node may make per window (a node signs the
    /// `AssignKey`s it was asked for): a Byzantine node spends at most this
    /// much of the network's budget, and, while below
    /// `assignments_per_verifier`, cannot spend a verifier's alone.
    pub assignments_per_node: u32,
    /// New assignments the network makes per window, over all verifiers.
    pub assignments_per_window: u32,
    /// The window, in milliseconds of block time.
    pub window_ms: u64,
}

impl Default for NetworkPolicy {
    /// Open registration, 16 verifiers per owner, configurations up to
    /// 16 KiB, 10 registrations a minute network-wide; 600 new assignments
    /// a minute per verifier (10/s), 300 signed by one node, and 3,000 in
    /// all (50/s): far below what
    /// the DKG refills (about 2,000 keys/s on a 5-node devnet sharing two
    /// cores; `docs/operations.md`).
    fn default() -> Self {
        Self {
            registration: RegistrationRule::Open,
            verifiers_per_owner: 16,
            max_config_len: MAX_VERIFIER_CONFIG_LEN as u32,
            registrations_per_window: 10,
            assignments_per_verifier: 600,
            assignments_per_node: 300,
            assignments_per_window: 3_000,
            window_ms: 60_000,
        }
    }
}

impl NetworkPolicy {
    /// Checks the policy's values.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let invalid = |reason: String| Err(GenesisError::Policy(reason));
        if let RegistrationRule::AllowList(owners) = &self.registration {
            if owners.len() > MAX_ALLOWED_OWNERS {
                return invalid(format!("an allow list names at most {MAX_ALLOWED_OWNERS} owners"));
            }
            // One spelling per policy: operators who mean the same list sign
            // the same bytes.
            if owners.windows(2).any(|pair| pair[0] >= pair[1]) {
                return invalid("an allow list names each owner once, in ascending order of its key".to_owned());
            }
            for owner in owners {
                if let Err(e) = public_key_from_sec1_named("allowed owner", owner) {
                    return invalid(e.to_string());
                }
            }
        }
        if self.verifiers_per_owner == 0 {
            return invalid("verifiers_per_owner must be at least 1".to_owned());
        }
        if self.max_config_len == 0 || self.max_config_len as usize > MAX_VERIFIER_CONFIG_LEN {
            return invalid(format!("max_config_len must be 1 to {MAX_VERIFIER_CONFIG_LEN} bytes"));
        }
        if self.assignments_per_verifier == 0 || self.assignments_per_node == 0 || self.assignments_per_window == 0 {
            return invalid("assignment budgets must be at least 1 per window".to_owned());
        }
        if self.window_ms < MIN_WINDOW_MS {
            return invalid(format!("window_ms must be at least {MIN_WINDOW_MS}"));
        }
        Ok(())
    }

    /// Whether `owner` may register at all.
    pub fn allows_owner(&self, owner: &PointBytes) -> bool {
        match &self.registration {
            RegistrationRule::Open => true,
            RegistrationRule::AllowList(owners) => owners.contains(owner),
        }
    }

    /// The window that block time `time_ms` falls in.
    pub fn window(&self, time_ms: u64) -> u64 {
        time_ms / self.window_ms.max(MIN_WINDOW_MS)
    }
}

impl Write for RegistrationRule {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Self::Open => 0u8.write(buf),
            Self::AllowList(owners) => {
                1u8.write(buf);
                owners.write(buf);
            }
        }
    }
}
impl EncodeSize for RegistrationRule {
    fn encode_size(&self) -> usize {
        1 + match self {
            Self::Open => 0,
            Self::AllowList(owners) => owners.encode_size(),
        }
    }
}
impl Read for RegistrationRule {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(Self::Open),
            1 => Ok(Self::AllowList(Vec::<PointBytes>::read_cfg(buf, &(RangeCfg::new(0..=MAX_ALLOWED_OWNERS), ()))?)),
            tag => Err(CodecError::InvalidEnum(tag)),
        }
    }
}

impl Write for NetworkPolicy {
    fn write(&self, buf: &mut impl BufMut) {
        self.registration.write(buf);
        self.verifiers_per_owner.write(buf);
        self.max_config_len.write(buf);
        self.registrations_per_window.write(buf);
        self.assignments_per_verifier.write(buf);
        self.assignments_per_node.write(buf);
        self.assignments_per_window.write(buf);
        self.window_ms.write(buf);
    }
}
impl EncodeSize for NetworkPolicy {
    fn encode_size(&self) -> usize {
        self.registration.encode_size() + 4 * 6 + 8
    }
}
impl Read for NetworkPolicy {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            registration: RegistrationRule::read(buf)?,
            verifiers_per_owner: u32::read(buf)?,
            max_config_len: u32::read(buf)?,
            registrations_per_window: u32::read(buf)?,
            assignments_per_verifier: u32::read(buf)?,
            assignments_per_node: u32::read(buf)?,
            assignments_per_window: u32::read(buf)?,
            window_ms: u64::read(buf)?,
        })
    }
}
