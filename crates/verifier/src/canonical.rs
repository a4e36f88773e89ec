//! One spelling per token. A node keys a token's nullifier by a hash of
//! the token a client committed to, so a token that could be written two
//! ways would be two tokens: whoever saw one spelling (in a reveal) could
//! commit the other under its own temporary key. This module decides which
//! spelling of a JWT is the one accepted, and what a token's identity is
//! once verified, independent of its spelling.
//!
//! A JWT's header and payload are signed as written, so only its signature
//! segment has room for another spelling:
//! - base64url: only the canonical encoding (no padding, zero trailing
//!   bits);
//! - ES256 (ECDSA over P-256): `(r, s)` and `(r, n − s)` both verify; only
//!   the low one, `s ≤ (n − 1) / 2`, is accepted;
//! - RS256: the signature is exactly as long as the modulus and, read as a
//!   number, smaller than it (`s + n` would verify too);
//! - EdDSA: `S` below the group order `L` (`S + L` would verify in a lax
//!   verifier).
//!
//! [`canonical_spelling`] is what a client sends instead of a token that an
//! issuer spelled otherwise (many ES256 signers emit high `s` half the
//! time): the same token, accepted.

use std::borrow::Cow;

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use sha2::{Digest, Sha256};

use crate::error::TokenError;

/// The order n of the P-256 group, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// (n − 1) / 2 for P-256, big-endian: the largest low `s`.
const P256_HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xde, 0x73, 0x7d,
    0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// The order L of the Ed25519 group, little-endian (as `S` is written).
const ED25519_ORDER_LE: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// base64url that accepts padding and trailing bits: only for reading a
/// token a client is about to respell, never for accepting one.
pub(crate) const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes one segment of a token, refusing any encoding but the
/// canonical one (what encoding the bytes gives back).
pub(crate) fn decode_segment(part: &'static str, encoded: &str) -> Result<Vec<u8>, TokenError> {
    let not_canonical = TokenError::NonCanonical { part, reason: "not the canonical base64url encoding of its bytes" };
    let bytes = match URL_SAFE_NO_PAD.decode(encoded) {
        Ok(bytes) => bytes,
        // Padding or trailing bits: the bytes have another spelling.
        Err(_) if LENIENT_URL_SAFE.decode(encoded).is_ok() => return Err(not_canonical),
        Err(_) => return Err(TokenError::Base64 { part }),
    };
    // The strict engine refuses padding and trailing bits already; the
    // round trip makes the rule hold whatever the engine's settings.
    if URL_SAFE_NO_PAD.encode(&bytes) != encoded {
        return Err(not_canonical);
    }
    Ok(bytes)
}

/// Whether the big-endian number `a` is greater than `b` (equal lengths).
fn greater_be(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).find(|(x, y)| x != y).is_some_and(|(x, y)| x > y)
}

/// `n − s` for a P-256 `s` with `0 < s < n`, big-endian. Written here:
/// one 256-bit subtraction, where a curve crate would add a dependency for
/// nothing else.
fn p256_negate(s: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0u16;
    for i in (0..32).rev() {
        let difference = u16::from(P256_ORDER[i]).wrapping_sub(u16::from(s[i])).wrapping_sub(borrow);
        out[i] = (difference & 0xff) as u8;
        borrow = (difference >> 8) & 1;
    }
    out
}

/// Checks that a signature (already decoded from its canonical base64url)
/// is the one spelling its algorithm allows. `rsa_modulus` is the key's
/// modulus, big-endian without leading zeros (RS256 only).
pub(crate) fn check_signature_form(
    algorithm: Algorithm,
    signature: &[u8],
    rsa_modulus: Option<&[u8]>,
) -> Result<(), TokenError> {
    let non_canonical = |reason| Err(TokenError::NonCanonical { part: "signature", reason });
    match algorithm {
        Algorithm::ES256 => {
            let Ok(rs) = <&[u8; 64]>::try_from(signature) else {
                return non_canonical("an ES256 signature is 64 bytes (r ‖ s)");
            };
            if greater_be(&rs[32..], &P256_HALF_ORDER) {
                return non_canonical("ES256 with a high s (n − s is the accepted spelling)");
            }
            Ok(())
        }
        Algorithm::EdDSA => {
            let Ok(rs) = <&[u8; 64]>::try_from(signature) else {
                return non_canonical("an EdDSA signature is 64 bytes (R ‖ S)");
            };
            // S is little-endian: compare from the most significant byte.
            let mut s = [0u8; 32];
            s.copy_from_slice(&rs[32..]);
            s.reverse();
            let mut order = ED25519_ORDER_LE;
            order.reverse();
            if !greater_be(&order, &s) {
                return non_canonical("EdDSA with S not below the group order");
            }
            Ok(())
        }
        Algorithm::RS256 => {
            let Some(modulus) = rsa_modulus else { return non_canonical("an RSA key without its modulus") };
            if signature.len() != modulus.len() {
                return non_canonical("an RS256 signature is exactly as long as the key's modulus");
            }
            if !greater_be(modulus, signature) {
                return non_canonical("an RS256 signature not below the key's modulus");
            }
            Ok(())
        }
        _ => Err(TokenError::UnsupportedAlgorithm(format!("{algorithm:?}"))),
    }
}

/// The accepted spelling of `token`: itself, unless it is a JWT whose
/// signature segment is padded, has trailing bits, or (ES256) carries a
/// high `s`; then the same token spelled as nodes accept it. Anything that
/// is not such a JWT (an opaque token, garbage) comes back unchanged for
/// the nodes to judge.
pub fn canonical_spelling(token: &str) -> Cow<'_, str> {
    respell(token).map_or(Cow::Borrowed(token), Cow::Owned)
}

fn respell(token: &str) -> Option<String> {
    let (signed, signature) = token.rsplit_once('.')?;
    let (header, _payload) = signed.split_once('.')?;
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    let mut bytes = LENIENT_URL_SAFE.decode(signature).ok()?;
    if header.get("alg").and_then(serde_json::Value::as_str) == Some("ES256")
        && let Ok(rs) = <&mut [u8; 64]>::try_from(bytes.as_mut_slice())
        && greater_be(&rs[32..], &P256_HALF_ORDER)
    {
        let mut s = [0u8; 32];
        s.copy_from_slice(&rs[32..]);
        // A high s is below n only if the signature can verify at all;
        // otherwise leave it for the nodes to refuse.
        if !greater_be(&P256_ORDER, &s) {
            return None;
        }
        rs[32..].copy_from_slice(&p256_negate(&s));
    }
    let canonical = URL_SAFE_NO_PAD.encode(&bytes);
    (canonical != signature).then(|| format!("{signed}.{canonical}"))
}

/// The other spellings of a JWT that a lax verifier would take for the
/// same token, as an observer of a reveal could write them: the signature
/// padded, with each other value of its unused trailing bits, and, for
/// ES256, with `n − s`. Nodes refuse every one; the tests of the login
/// attacks play the observer with them. Empty for anything but a JWT with
/// a decodable signature.
pub fn other_spellings(token: &str) -> Vec<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let Some((signed, signature)) = token.rsplit_once('.') else { return Vec::new() };
    let Ok(bytes) = LENIENT_URL_SAFE.decode(signature) else { return Vec::new() };
    let encoded = URL_SAFE_NO_PAD.encode(&bytes);
    let mut spellings = vec![format!("{signed}.{encoded}=")];
    let free_bits = (encoded.len() * 6).saturating_sub(bytes.len() * 8);
    if let (Some(last), Some(stem)) = (encoded.bytes().last(), encoded.get(..encoded.len() - 1))
        && let Some(position) = ALPHABET.iter().position(|c| *c == last)
    {
        for extra in 1..(1usize << free_bits) {
            if let Some(c) = ALPHABET.get(position + extra) {
                spellings.push(format!("{signed}.{stem}{}", char::from(*c)));
            }
        }
    }
    let header = signed.split('.').next().and_then(|h| URL_SAFE_NO_PAD.decode(h).ok());
    let es256 = header
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .is_some_and(|h| h.get("alg").and_then(serde_json::Value::as_str) == Some("ES256"));
    if es256 && let Ok(rs) = <[u8; 64]>::try_from(bytes.as_slice()) {
        let mut flipped = rs;
        let mut s = [0u8; 32];
        s.copy_from_slice(&rs[32..]);
        flipped[32..].copy_from_slice(&p256_negate(&s));
        spellings.push(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(flipped)));
    }
    spellings.retain(|spelling| spelling != token);
    spellings
}

/// What a verified token is, whatever its spelling: the key of its
/// nullifier, so that a token serves one login however it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenIdentity(pub [u8; 32]);

fn tagged(tag: &str, fields: &[&[u8]]) -> TokenIdentity {
    let mut hash = Sha256::new();
    for field in std::iter::once(tag.as_bytes()).chain(fields.iter().copied()) {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field);
    }
    TokenIdentity(hash.finalize().into())
}

impl TokenIdentity {
    /// A JWT's: its signing input (`header.payload` as written, which the
    /// signature covers), so every signature over the same content is the
    /// same token.
    pub fn jwt(signing_input: &str) -> Self {
        tagged("quorumkey/token-identity/v1/jwt", &[signing_input.as_bytes()])
    }

    /// An opaque token's: the endpoint that vouched for it, the user id and
    /// the issue time it answered (the token's own bytes are its
    /// commitment's record).
    pub fn introspection(url: &str, user_id: &str, issued_at: u64) -> Self {
        tagged(
            "quorumkey/token-identity/v1/introspection",
            &[url.as_bytes(), user_id.as_bytes(), &issued_at.to_be_bytes()],
        )
    }

    /// As 64 hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_half_order_is_half_the_order() {
        // n is odd: (n − 1) / 2 doubled and plus one is n.
        let mut doubled = [0u8; 32];
        let mut carry = 1u16;
        for i in (0..32).rev() {
            let sum = u16::from(P256_HALF_ORDER[i]) * 2 + carry;
            doubled[i] = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        assert_eq!(doubled, P256_ORDER);
    }

    #[test]
    fn negation_adds_up_to_the_order() {
        let s = [0x11u8; 32];
        let negated = p256_negate(&s);
        let mut sum = [0u8; 32];
        let mut carry = 0u16;
        for i in (0..32).rev() {
            let total = u16::from(s[i]) + u16::from(negated[i]) + carry;
            sum[i] = (total & 0xff) as u8;
            carry = total >> 8;
        }
        assert_eq!(sum, P256_ORDER);
        assert_eq!(p256_negate(&negated), s);
    }
}
