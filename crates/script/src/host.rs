//! The host functions a script may import (module `quorumkey`), their
//! signatures, and what each costs in fuel.
//!
//! Pointers and lengths are `i32` offsets into the script's exported
//! memory. A function that hands the script a value (`sub_name`,
//! `sub_verifier_id`, `claim`, `param`) writes it at `out` only if it fits
//! in `cap` bytes, and always returns its full length, or −1 if there is no
//! such value: a script whose buffer was too small calls again with a
//! larger one. A JSON string is handed over as its contents (UTF-8, no
//! quotes); any other JSON value as compact JSON text.
//!
//! | function | signature | what |
//! |---|---|---|
//! | `sub_count` | `() -> i32` | verified sub-tokens |
//! | `sub_name` | `(sub, out, cap) -> i32` | a sub-token's sub-verifier name |
//! | `sub_verifier_id` | `(sub, out, cap) -> i32` | the user its sub-verifier named |
//! | `claim` | `(sub, name, name_len, out, cap) -> i32` | one of its claims |
//! | `param` | `(name, name_len, out, cap) -> i32` | a field of the login's evidence |
//! | `issued_at` | `() -> i64` | earliest sub-token issue time (the same on every node) |
//! | `now` | `() -> i64` | this node's clock |
//! | `keccak256`, `sha256` | `(ptr, len, out)` | 32 bytes at `out` |
//! | `secp256k1_verify` | `(pk, pk_len, hash, sig) -> i32` | ECDSA over a 32-byte hash, `sig` 64 bytes r‖s; 1 valid, 0 not |
//! | `eth_personal_recover` | `(msg, msg_len, sig, sig_len, out) -> i32` | EIP-191 `personal_sign`: the signer's 20-byte address at `out`; 1 recovered, 0 not |
//! | `ed25519_verify` | `(pk, msg, msg_len, sig) -> i32` | 32-byte key, 64-byte signature; 1 valid, 0 not |
//! | `p256_verify` | `(pk, pk_len, msg, msg_len, sig, sig_len) -> i32` | ECDSA P-256 with SHA-256 over `msg` (WebAuthn: authenticatorData ‖ sha256(clientDataJSON)); SEC1 key, r‖s or DER signature; 1 valid, 0 not |
//! | `accept` | `(ptr, len)` | the verifier_id (UTF-8, 1 to 256 bytes) |
//! | `refuse` | `(ptr, len)` | a reason (at most 256 bytes) |

use quorumkey_crypto::group::public_key_from_sec1;
use quorumkey_crypto::hash::keccak256;
use quorumkey_crypto::signature::RecoverableSignature;
use sha2::{Digest as _, Sha256};
use wasmi::{Caller, Error, Extern, Linker, Memory, StoreLimits, ValType};

use crate::input::{ScriptInput, value_bytes};
use crate::{HOST_MODULE, MAX_REASON_LEN, MAX_VERIFIER_ID_LEN};

/// Fuel of any host call.
pub const CALL_FUEL: u64 = 50;
/// Fuel per byte a host call copies in or out of the script's memory.
pub const BYTE_FUEL: u64 = 1;
/// Fuel per byte a host call hashes (on top of copying it).
pub const HASH_BYTE_FUEL: u64 = 10;
/// Fuel of one signature check or recovery. The interpreter spends about
/// 2,200 fuel per microsecond on the reference machine and a check takes
/// 50 to 100 microseconds natively, so a check costs what the time it
/// takes would buy (`cargo bench -p quorumkey-script --bench scripts`).
pub const SIGNATURE_FUEL: u64 = 150_000;

/// A host function's name and signature.
#[derive(Debug)]
pub struct HostSignature {
    /// Its import name.
    pub name: &'static str,
    /// Its parameters.
    pub params: &'static [ValType],
    /// Its results.
    pub results: &'static [ValType],
}

const I32: ValType = ValType::I32;
const I64: ValType = ValType::I64;

/// Every host function.
pub const HOST_FUNCTIONS: &[HostSignature] = &[
    HostSignature { name: "sub_count", params: &[], results: &[I32] },
    HostSignature { name: "sub_name", params: &[I32, I32, I32], results: &[I32] },
    HostSignature { name: "sub_verifier_id", params: &[I32, I32, I32], results: &[I32] },
    HostSignature { name: "claim", params: &[I32, I32, I32, I32, I32], results: &[I32] },
    HostSignature { name: "param", params: &[I32, I32, I32, I32], results: &[I32] },
    HostSignature { name: "issued_at", params: &[], results: &[I64] },
    HostSignature { name: "now", params: &[], results: &[I64] },
    HostSignature { name: "keccak256", params: &[I32, I32, I32], results: &[] },
    HostSignature { name: "sha256", params: &[I32, I32, I32], results: &[] },
    HostSignature { name: "secp256k1_verify", params: &[I32, I32, I32, I32], results: &[I32] },
    HostSignature { name: "eth_personal_recover", params: &[I32, I32, I32, I32, I32], results: &[I32] },
    HostSignature { name: "ed25519_verify", params: &[I32, I32, I32, I32], results: &[I32] },
    HostSignature { name: "p256_verify", params: &[I32, I32, I32, I32, I32, I32], results: &[I32] },
    HostSignature { name: "accept", params: &[I32, I32], results: &[] },
    HostSignature { name: "refuse", params: &[I32, I32], results: &[] },
];

/// Why a host call stopped the script: the same on every node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostTrap {
    /// The call's fuel exceeds what is left.
    #[error("out of fuel")]
    OutOfFuel,
    /// A pointer or length outside the script's memory.
    #[error("a host call named bytes outside the script's memory")]
    OutOfBounds,
    /// `accept` or `refuse` after the script had already decided.
    #[error("the script accepted or refused twice")]
    DecidedTwice,
    /// `accept` with an empty, overlong or non-UTF-8 verifier_id.
    #[error("the script accepted a verifier_id that is empty, longer than {MAX_VERIFIER_ID_LEN} bytes, or not UTF-8")]
    BadVerifierId,
}

impl wasmi::errors::HostError for HostTrap {}

/// What a script decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Accepted(String),
    Refused(String),
}

/// The store's data during one run.
#[derive(Debug)]
pub(crate) struct HostState {
    pub input: ScriptInput,
    pub decision: Option<Decision>,
    pub limits: StoreLimits,
}

fn charge(caller: &mut Caller<'_, HostState>, fuel: u64) -> Result<(), Error> {
    let left = caller.get_fuel()?;
    match left.checked_sub(fuel) {
        Some(rest) => caller.set_fuel(rest),
        None => {
            // Spend what is left, so that the run reports it all used.
            caller.set_fuel(0)?;
            Err(Error::host(HostTrap::OutOfFuel))
        }
    }
}

fn memory(caller: &Caller<'_, HostState>) -> Result<Memory, Error> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        // Validation requires the export; keep the host total anyway.
        _ => Err(Error::host(HostTrap::OutOfBounds)),
    }
}

fn range(ptr: i32, len: i32) -> Result<std::ops::Range<usize>, Error> {
    let start = usize::try_from(ptr).map_err(|_| Error::host(HostTrap::OutOfBounds))?;
    let len = usize::try_from(len).map_err(|_| Error::host(HostTrap::OutOfBounds))?;
    let end = start.checked_add(len).ok_or(Error::host(HostTrap::OutOfBounds))?;
    Ok(start..end)
}

/// Reads `len` bytes at `ptr`, charging for them.
fn read(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Result<Vec<u8>, Error> {
    let range = range(ptr, len)?;
    charge(caller, BYTE_FUEL.saturating_mul(range.len() as u64))?;
    let memory = memory(caller)?;
    memory.data(&*caller).get(range).map(<[u8]>::to_vec).ok_or(Error::host(HostTrap::OutOfBounds))
}

/// Writes `bytes` at `ptr`, charging for them.
fn write(caller: &mut Caller<'_, HostState>, ptr: i32, bytes: &[u8]) -> Result<(), Error> {
    let range = range(ptr, i32::try_from(bytes.len()).map_err(|_| Error::host(HostTrap::OutOfBounds))?)?;
    charge(caller, BYTE_FUEL.saturating_mul(bytes.len() as u64))?;
    let memory = memory(caller)?;
    let target = memory.data_mut(&mut *caller).get_mut(range).ok_or(Error::host(HostTrap::OutOfBounds))?;
    target.copy_from_slice(bytes);
    Ok(())
}

/// Hands `value` to the script (see the module documentation).
fn hand_over(caller: &mut Caller<'_, HostState>, value: Option<Vec<u8>>, out: i32, cap: i32) -> Result<i32, Error> {
    let Some(value) = value else { return Ok(-1) };
    let len = i32::try_from(value.len()).map_err(|_| Error::host(HostTrap::OutOfBounds))?;
    if len <= cap {
        write(caller, out, &value)?;
    }
    Ok(len)
}

fn sub_field(
    caller: &Caller<'_, HostState>,
    sub: i32,
    field: impl Fn(&crate::input::SubTokenInput) -> Vec<u8>,
) -> Option<Vec<u8>> {
    let sub = usize::try_from(sub).ok()?;
    caller.data().input.sub_tokens.get(sub).map(field)
}

fn decide(caller: &mut Caller<'_, HostState>, decision: Decision) -> Result<(), Error> {
    if caller.data().decision.is_some() {
        return Err(Error::host(HostTrap::DecidedTwice));
    }
    caller.data_mut().decision = Some(decision);
    Ok(())
}

/// 1 or 0, as the script reads a check.
fn flag(ok: bool) -> i32 {
    i32::from(ok)
}

fn secp256k1_verify(public_key: &[u8], hash: &[u8], signature: &[u8]) -> bool {
    use quorumkey_crypto::k256::ecdsa::signature::hazmat::PrehashVerifier as _;
    use quorumkey_crypto::k256::ecdsa::{Signature, VerifyingKey};
    let Ok(key) = public_key_from_sec1(public_key) else { return false };
    let Ok(signature) = Signature::from_slice(signature) else { return false };
    // A high-s twin is the same signature: accepted as its low-s form.
    let signature = signature.normalize_s();
    VerifyingKey::from(key).verify_prehash(hash, &signature).is_ok()
}

/// The Ethereum address of the signer of an EIP-191 personal message.
fn eth_personal_recover(message: &[u8], signature: &[u8]) -> Option<[u8; 20]> {
    let mut prefixed = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
    prefixed.extend_from_slice(message);
    let signature = RecoverableSignature::from_bytes(signature).ok()?;
    let key = signature.recover_keccak(&prefixed).ok()?;
    let uncompressed = quorumkey_crypto::group::public_key_to_uncompressed(&key);
    let hash = keccak256(&uncompressed[1..]);
    hash[12..].try_into().ok()
}

fn ed25519_verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = <[u8; 32]>::try_from(public_key) else { return false };
    let Ok(signature) = <[u8; 64]>::try_from(signature) else { return false };
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&key) else { return false };
    // Strict: no small-order keys, canonical signatures only.
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&signature)).is_ok()
}

fn p256_verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    use p256::ecdsa::signature::Verifier as _;
    use p256::ecdsa::{Signature, VerifyingKey};
    let Ok(key) = VerifyingKey::from_sec1_bytes(public_key) else { return false };
    let signature = match signature.len() {
        64 => Signature::from_slice(signature),
        _ => Signature::from_der(signature),
    };
    let Ok(signature) = signature else { return false };
    let signature = signature.normalize_s();
    key.verify(message, &signature).is_ok()
}

/// A linker with every host function.
pub(crate) fn linker(engine: &wasmi::Engine) -> Result<Linker<HostState>, Error> {
    let mut linker = Linker::new(engine);
    let m = HOST_MODULE;
    linker.func_wrap(m, "sub_count", |mut caller: Caller<'_, HostState>| -> Result<i32, Error> {
        charge(&mut caller, CALL_FUEL)?;
        Ok(i32::try_from(caller.data().input.sub_tokens.len()).unwrap_or(i32::MAX))
    })?;
    linker.func_wrap(m, "sub_name", |mut caller: Caller<'_, HostState>, sub: i32, out: i32, cap: i32| {
        charge(&mut caller, CALL_FUEL)?;
        let value = sub_field(&caller, sub, |token| token.name.as_bytes().to_vec());
        hand_over(&mut caller, value, out, cap)
    })?;
    linker.func_wrap(m, "sub_verifier_id", |mut caller: Caller<'_, HostState>, sub: i32, out: i32, cap: i32| {
        charge(&mut caller, CALL_FUEL)?;
        let value = sub_field(&caller, sub, |token| token.verifier_id.as_bytes().to_vec());
        hand_over(&mut caller, value, out, cap)
    })?;
    linker.func_wrap(
        m,
        "claim",
        |mut caller: Caller<'_, HostState>, sub: i32, name: i32, name_len: i32, out: i32, cap: i32| {
            charge(&mut caller, CALL_FUEL)?;
            let name = read(&mut caller, name, name_len)?;
            let name = String::from_utf8_lossy(&name);
            let value = usize::try_from(sub)
                .ok()
                .and_then(|sub| caller.data().input.sub_tokens.get(sub))
                .and_then(|token| token.claims.get(name.as_ref()))
                .map(value_bytes);
            hand_over(&mut caller, value, out, cap)
        },
    )?;
    linker.func_wrap(
        m,
        "param",
        |mut caller: Caller<'_, HostState>, name: i32, name_len: i32, out: i32, cap: i32| {
            charge(&mut caller, CALL_FUEL)?;
            let name = read(&mut caller, name, name_len)?;
            let name = String::from_utf8_lossy(&name);
            let value = caller.data().input.params.get(name.as_ref()).map(value_bytes);
            hand_over(&mut caller, value, out, cap)
        },
    )?;
    linker.func_wrap(m, "issued_at", |mut caller: Caller<'_, HostState>| -> Result<i64, Error> {
        charge(&mut caller, CALL_FUEL)?;
        Ok(i64::try_from(caller.data().input.issued_at).unwrap_or(i64::MAX))
    })?;
    linker.func_wrap(m, "now", |mut caller: Caller<'_, HostState>| -> Result<i64, Error> {
        charge(&mut caller, CALL_FUEL)?;
        Ok(i64::try_from(caller.data().input.now).unwrap_or(i64::MAX))
    })?;
    linker.func_wrap(m, "keccak256", |mut caller: Caller<'_, HostState>, ptr: i32, len: i32, out: i32| {
        charge(&mut caller, CALL_FUEL)?;
        let data = read(&mut caller, ptr, len)?;
        charge(&mut caller, HASH_BYTE_FUEL.saturating_mul(data.len() as u64))?;
        write(&mut caller, out, &keccak256(&data))
    })?;
    linker.func_wrap(m, "sha256", |mut caller: Caller<'_, HostState>, ptr: i32, len: i32, out: i32| {
        charge(&mut caller, CALL_FUEL)?;
        let data = read(&mut caller, ptr, len)?;
        charge(&mut caller, HASH_BYTE_FUEL.saturating_mul(data.len() as u64))?;
        let digest: [u8; 32] = Sha256::digest(&data).into();
        write(&mut caller, out, &digest)
    })?;
    linker.func_wrap(
        m,
        "secp256k1_verify",
        |mut caller: Caller<'_, HostState>, pk: i32, pk_len: i32, hash: i32, sig: i32| {
            charge(&mut caller, CALL_FUEL + SIGNATURE_FUEL)?;
            let key = read(&mut caller, pk, pk_len)?;
            let hash = read(&mut caller, hash, 32)?;
            let signature = read(&mut caller, sig, 64)?;
            Ok(flag(secp256k1_verify(&key, &hash, &signature)))
        },
    )?;
    linker.func_wrap(
        m,
        "eth_personal_recover",
        |mut caller: Caller<'_, HostState>, msg: i32, msg_len: i32, sig: i32, sig_len: i32, out: i32| {
            charge(&mut caller, CALL_FUEL + SIGNATURE_FUEL)?;
            let message = read(&mut caller, msg, msg_len)?;
            charge(&mut caller, HASH_BYTE_FUEL.saturating_mul(message.len() as u64))?;
            let signature = read(&mut caller, sig, sig_len)?;
            match eth_personal_recover(&message, &signature) {
                Some(address) => write(&mut caller, out, &address).map(|()| 1),
                None => Ok(0),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "ed25519_verify",
        |mut caller: Caller<'_, HostState>, pk: i32, msg: i32, msg_len: i32, sig: i32| {
            charge(&mut caller, CALL_FUEL + SIGNATURE_FUEL)?;
            let key = read(&mut caller, pk, 32)?;
            let message = read(&mut caller, msg, msg_len)?;
            charge(&mut caller, HASH_BYTE_FUEL.saturating_mul(message.len() as u64))?;
            let signature = read(&mut caller, sig, 64)?;
            Ok(flag(ed25519_verify(&key, &message, &signature)))
        },
    )?;
    linker.func_wrap(
        m,
        "p256_verify",
        |mut caller: Caller<'_, HostState>, pk: i32, pk_len: i32, msg: i32, msg_len: i32, sig: i32, sig_len: i32| {
            charge(&mut caller, CALL_FUEL + SIGNATURE_FUEL)?;
            let key = read(&mut caller, pk, pk_len)?;
            let message = read(&mut caller, msg, msg_len)?;
            charge(&mut caller, HASH_BYTE_FUEL.saturating_mul(message.len() as u64))?;
            let signature = read(&mut caller, sig, sig_len)?;
            Ok(flag(p256_verify(&key, &message, &signature)))
        },
    )?;
    linker.func_wrap(m, "accept", |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| {
        charge(&mut caller, CALL_FUEL)?;
        if !(1..=MAX_VERIFIER_ID_LEN as i32).contains(&len) {
            return Err(Error::host(HostTrap::BadVerifierId));
        }
        let id = read(&mut caller, ptr, len)?;
        let id = String::from_utf8(id).map_err(|_| Error::host(HostTrap::BadVerifierId))?;
        decide(&mut caller, Decision::Accepted(id))
    })?;
    linker.func_wrap(m, "refuse", |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| {
        charge(&mut caller, CALL_FUEL)?;
        let len = len.clamp(0, MAX_REASON_LEN as i32);
        let reason = read(&mut caller, ptr, len)?;
        decide(&mut caller, Decision::Refused(String::from_utf8_lossy(&reason).into_owned()))
    })?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eip191_signature_recovers_its_signer() {
        // A key, its address, and its personal_sign of a message.
        let key = quorumkey_crypto::k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let public = quorumkey_crypto::group::PublicKey::from(key.verifying_key());
        let address = quorumkey_crypto::address::eth_address(&public);
        let message = b"Sign in to quorumkey with nonce abc123";
        let mut prefixed = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
        prefixed.extend_from_slice(message);
        let signature = RecoverableSignature::sign_keccak(&key, &prefixed).to_bytes();
        let recovered = eth_personal_recover(message, &signature).unwrap();
        assert_eq!(format!("0x{}", hex::encode(recovered)), address.to_lowercase());
        assert!(eth_personal_recover(b"another message", &signature).is_none_or(|other| other != recovered));
    }
}
