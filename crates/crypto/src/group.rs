//! secp256k1 scalars and points: strict parsing, canonical encoding, and the
//! second generator `H`.
//!
//! Parsing is strict everywhere: hex without `0x`, exact lengths (or a
//! documented upper bound where the Torus wire format sends unpadded
//! numbers), scalars below the group order, points on the curve and not the
//! identity unless a function says it allows it.

use std::sync::LazyLock;

use k256::elliptic_curve::group::GroupEncoding;
use k256::elliptic_curve::sec1::{FromSec1Point, ToSec1Point};
use k256::elliptic_curve::{Group, PrimeField};
use k256::hash2curve::{ExpandMsgXmd, GroupDigest};
use k256::{FieldBytes, Secp256k1};

use crate::error::{CryptoError, Result};

pub use k256::{AffinePoint, NonZeroScalar, ProjectivePoint as Point, PublicKey, Scalar};

/// Bytes in a canonical scalar or field element.
pub const SCALAR_LEN: usize = 32;
/// Bytes in a compressed SEC1 point.
pub const COMPRESSED_POINT_LEN: usize = 33;
/// Bytes in an uncompressed SEC1 point (`04 ‖ X ‖ Y`).
pub const UNCOMPRESSED_POINT_LEN: usize = 65;

/// Domain separation tag for hashing to the curve to get `H` (RFC 9380 suite
/// `secp256k1_XMD:SHA-256_SSWU_RO_`, with our own DST).
pub const GENERATOR_H_DST: &[u8] = b"QUORUMKEY-V1-GENERATOR-H-secp256k1_XMD:SHA-256_SSWU_RO_";
/// The message hashed to the curve to get `H`.
pub const GENERATOR_H_MESSAGE: &[u8] = b"quorumkey pedersen generator H";

#[allow(clippy::expect_used, reason = "constant DST and message, well inside RFC 9380's limits; a unit test pins H")]
static GENERATOR_H: LazyLock<Point> = LazyLock::new(|| {
    Secp256k1::hash_from_bytes(&[GENERATOR_H_MESSAGE], &[GENERATOR_H_DST]).expect("hash_to_curve with a valid DST")
});

/// Prefix of every domain separation tag [`hash_to_scalar`] uses.
pub const HASH_TO_SCALAR_DST_PREFIX: &[u8] = b"QUORUMKEY-V1-";

/// The standard generator `G`.
pub fn generator() -> Point {
    Point::GENERATOR
}

/// The second generator `H` for Pedersen commitments.
///
/// `H` is `hash_to_curve(GENERATOR_H_MESSAGE)` under [`GENERATOR_H_DST`]
/// (RFC 9380, random-oracle variant), so nobody knows `log_G(H)`: finding it
/// would break the discrete logarithm on secp256k1 for a random-oracle point.
pub fn generator_h() -> Point {
    *GENERATOR_H
}

/// Windows of the fixed-base table for `H`: 64 signed radix-16 digits and
/// one for the final carry.
const H_TABLE_WINDOWS: usize = 65;

/// `d·16^i·H` for `d` in 1..=8, window `i` at row `i`.
static H_TABLE: LazyLock<Vec<[Point; 8]>> = LazyLock::new(|| {
    let mut rows = Vec::with_capacity(H_TABLE_WINDOWS);
    let mut base = *GENERATOR_H;
    for _ in 0..H_TABLE_WINDOWS {
        let mut row = [base; 8];
        for d in 1..8 {
            row[d] = row[d - 1] + base;
        }
        rows.push(row);
        for _ in 0..4 {
            base = base.double();
        }
    }
    rows
});

/// `k·H` in constant time, with a precomputed table (the way k256 computes
/// `k·G`): the scalar is recoded into signed radix-16 digits in `[-8, 8]`,
/// and each window adds a table entry chosen by constant-time selection.
/// Written here because k256 keeps such a table for `G` only; a Pedersen
/// commitment `a·G + b·H` costs about half of a generic two-point
/// multiplication this way.
pub fn mul_by_h(scalar: &Scalar) -> Point {
    use subtle::{ConditionallyNegatable, ConditionallySelectable, ConstantTimeEq};
    let mut bytes: [u8; SCALAR_LEN] = scalar.to_bytes().into();
    bytes.reverse();
    // Radix-16 digits, little-endian, recoded so each is in [-8, 8).
    let mut digits = [0i8; H_TABLE_WINDOWS];
    for (i, byte) in bytes.iter().enumerate() {
        digits[2 * i] = (byte & 0x0f) as i8;
        digits[2 * i + 1] = (byte >> 4) as i8;
    }
    for i in 0..H_TABLE_WINDOWS - 1 {
        let carry = (digits[i] + 8) >> 4;
        digits[i] -= carry << 4;
        digits[i + 1] += carry;
    }
    let mut acc = Point::IDENTITY;
    for (row, digit) in H_TABLE.iter().zip(digits) {
        let negative = subtle::Choice::from(((digit >> 7) & 1) as u8);
        let magnitude = (digit as i16).unsigned_abs() as u8;
        let mut selected = Point::IDENTITY;
        for (d, entry) in (1u8..).zip(row.iter()) {
            selected.conditional_assign(entry, magnitude.ct_eq(&d));
        }
        selected.conditional_negate(negative);
        acc += selected;
    }
    zeroize::Zeroize::zeroize(&mut bytes);
    zeroize::Zeroize::zeroize(&mut digits);
    acc
}

/// The Pedersen commitment `a·G + b·H`, in constant time.
pub fn pedersen_commit(a: &Scalar, b: &Scalar) -> Point {
    Point::mul_by_generator(a) + mul_by_h(b)
}

/// Hashes `message` (the concatenation of its parts) to a uniformly
/// distributed scalar under the domain separation tag
/// `QUORUMKEY-V1-‖domain` (RFC 9380 `hash_to_field` with
/// expand_message_xmd over SHA-256, 64 bytes reduced modulo the order).
#[allow(
    clippy::expect_used,
    reason = "expand_message_xmd fails only for an empty DST or an output over 8160 bytes; ours has a non-empty prefix and 64 bytes"
)]
pub fn hash_to_scalar(message: &[&[u8]], domain: &[u8]) -> Scalar {
    k256::hash2curve::hash_to_scalar::<Secp256k1, ExpandMsgXmd<sha2::Sha256>, k256::elliptic_curve::consts::U64>(
        message,
        &[HASH_TO_SCALAR_DST_PREFIX, domain],
    )
    .expect("non-empty DST, 64-byte output")
}

fn decode_hex(what: &'static str, s: &str) -> Result<Vec<u8>> {
    hex::decode(s).map_err(|_| CryptoError::InvalidHex { what })
}

/// Parses a canonical 32-byte big-endian scalar (must be below the order).
pub fn scalar_from_bytes(bytes: &[u8]) -> Result<Scalar> {
    scalar_from_bytes_named("scalar", bytes)
}

fn scalar_from_bytes_named(what: &'static str, bytes: &[u8]) -> Result<Scalar> {
    let array: [u8; SCALAR_LEN] =
        bytes.try_into().map_err(|_| CryptoError::InvalidLength { what, expected: "32 bytes", actual: bytes.len() })?;
    Option::from(Scalar::from_repr(FieldBytes::from(array))).ok_or(CryptoError::ScalarOutOfRange { what })
}

/// Parses a big-endian scalar of 1 to 32 bytes, as Go's `big.Int.Bytes()`
/// writes it (leading zero bytes stripped). It must be below the order.
pub fn scalar_from_unpadded_bytes(bytes: &[u8]) -> Result<Scalar> {
    scalar_from_unpadded_named("scalar", bytes)
}

fn scalar_from_unpadded_named(what: &'static str, bytes: &[u8]) -> Result<Scalar> {
    if bytes.is_empty() || bytes.len() > SCALAR_LEN {
        return Err(CryptoError::InvalidLength { what, expected: "1 to 32 bytes", actual: bytes.len() });
    }
    let mut padded = [0u8; SCALAR_LEN];
    padded[SCALAR_LEN - bytes.len()..].copy_from_slice(bytes);
    scalar_from_bytes_named(what, &padded)
}

/// Parses a scalar from 1 to 64 hex digits (the Torus wire format sends
/// both zero-padded and unpadded numbers). It must be below the order.
pub fn scalar_from_hex(s: &str) -> Result<Scalar> {
    scalar_from_hex_named("scalar", s)
}

/// Like [`scalar_from_hex`], naming the field in the error.
pub fn scalar_from_hex_named(what: &'static str, s: &str) -> Result<Scalar> {
    if s.is_empty() || s.len() > 2 * SCALAR_LEN {
        return Err(CryptoError::InvalidLength { what, expected: "1 to 64 hex digits", actual: s.len() });
    }
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CryptoError::InvalidHex { what });
    }
    let mut padded = String::with_capacity(2 * SCALAR_LEN);
    padded.extend(std::iter::repeat_n('0', 2 * SCALAR_LEN - s.len()));
    padded.push_str(s);
    scalar_from_bytes_named(what, &decode_hex(what, &padded)?)
}

/// Returns the scalar, or [`CryptoError::ZeroScalar`] if it is zero.
pub fn require_nonzero(what: &'static str, scalar: Scalar) -> Result<NonZeroScalar> {
    Option::from(NonZeroScalar::new(scalar)).ok_or(CryptoError::ZeroScalar { what })
}

/// Parses a non-zero scalar from 1 to 64 hex digits (e.g. a private key).
pub fn nonzero_scalar_from_hex(what: &'static str, s: &str) -> Result<NonZeroScalar> {
    require_nonzero(what, scalar_from_hex_named(what, s)?)
}

/// The scalar as 32 big-endian bytes.
pub fn scalar_to_bytes(scalar: &Scalar) -> [u8; SCALAR_LEN] {
    scalar.to_bytes().into()
}

/// The scalar as 64 lowercase hex digits.
pub fn scalar_to_hex(scalar: &Scalar) -> String {
    hex::encode(scalar_to_bytes(scalar))
}

/// The scalar as lowercase hex without leading zeros (`"0"` for zero), the
/// way Go's `big.Int.Text(16)` writes it.
pub fn scalar_to_unpadded_hex(scalar: &Scalar) -> String {
    let full = scalar_to_hex(scalar);
    let trimmed = full.trim_start_matches('0');
    if trimmed.is_empty() { "0".to_owned() } else { trimmed.to_owned() }
}

/// A small integer as a scalar (share indexes, counters).
pub fn scalar_from_u64(value: u64) -> Scalar {
    Scalar::from(value)
}

/// Parses a SEC1 point (33 bytes compressed or 65 bytes uncompressed); it
/// must be on the curve and not the identity.
pub fn public_key_from_sec1(bytes: &[u8]) -> Result<PublicKey> {
    public_key_from_sec1_named("public key", bytes)
}

/// Like [`public_key_from_sec1`], naming the field in the error.
pub fn public_key_from_sec1_named(what: &'static str, bytes: &[u8]) -> Result<PublicKey> {
    // Only the standard SEC1 forms: `02`/`03` compressed, `04` uncompressed.
    // (The `sec1` crate also takes a `05` "compact" and other tags.)
    match (bytes.len(), bytes.first()) {
        (COMPRESSED_POINT_LEN, Some(0x02 | 0x03)) | (UNCOMPRESSED_POINT_LEN, Some(0x04)) => {}
        (1, Some(0x00)) => return Err(CryptoError::IdentityPoint { what }),
        (COMPRESSED_POINT_LEN | UNCOMPRESSED_POINT_LEN, _) => return Err(CryptoError::PointNotOnCurve { what }),
        (actual, _) => {
            return Err(CryptoError::InvalidLength { what, expected: "33 or 65 bytes", actual });
        }
    }
    let encoded = k256::Sec1Point::from_bytes(bytes).map_err(|_| CryptoError::PointNotOnCurve { what })?;
    let affine: AffinePoint =
        Option::from(AffinePoint::from_sec1_point(&encoded)).ok_or(CryptoError::PointNotOnCurve { what })?;
    PublicKey::from_affine(affine).map_err(|_| CryptoError::IdentityPoint { what })
}

/// Parses a public key from its affine coordinates, each 1 to 64 hex
/// digits (the Torus `pub_key_X`/`pub_key_Y` and `nodepubx`/`nodepuby`
/// fields; the Go node sends them unpadded).
pub fn public_key_from_xy_hex(x: &str, y: &str) -> Result<PublicKey> {
    let mut bytes = [0u8; UNCOMPRESSED_POINT_LEN];
    bytes[0] = 0x04;
    for (what, coordinate, range) in [("point X", x, 1..33), ("point Y", y, 33..65)] {
        if coordinate.is_empty() || coordinate.len() > 64 {
            return Err(CryptoError::InvalidLength { what, expected: "1 to 64 hex digits", actual: coordinate.len() });
        }
        if !coordinate.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CryptoError::InvalidHex { what });
        }
        let padded = format!("{coordinate:0>64}");
        let decoded = decode_hex(what, &padded)?;
        bytes[range].copy_from_slice(&decoded);
    }
    public_key_from_sec1_named("point", &bytes)
}

/// Parses a public key from hex SEC1 (66 or 130 hex digits).
pub fn public_key_from_hex(what: &'static str, s: &str) -> Result<PublicKey> {
    if s.len() != 2 * COMPRESSED_POINT_LEN && s.len() != 2 * UNCOMPRESSED_POINT_LEN {
        return Err(CryptoError::InvalidLength { what, expected: "66 or 130 hex digits", actual: s.len() });
    }
    public_key_from_sec1_named(what, &decode_hex(what, s)?)
}

/// The public key as 65 bytes `04 ‖ X ‖ Y`.
pub fn public_key_to_uncompressed(key: &PublicKey) -> [u8; UNCOMPRESSED_POINT_LEN] {
    let encoded = key.to_sec1_point(false);
    let mut out = [0u8; UNCOMPRESSED_POINT_LEN];
    // A `PublicKey` is never the identity, so its uncompressed form is 65 bytes.
    out.copy_from_slice(encoded.as_bytes());
    out
}

/// The affine coordinates as two 64-digit lowercase hex strings.
pub fn public_key_to_xy_hex(key: &PublicKey) -> (String, String) {
    let bytes = public_key_to_uncompressed(key);
    (hex::encode(&bytes[1..33]), hex::encode(&bytes[33..65]))
}

/// The point as a public key, refusing the identity.
pub fn point_to_public_key(what: &'static str, point: &Point) -> Result<PublicKey> {
    PublicKey::from_affine(point.to_affine()).map_err(|_| CryptoError::IdentityPoint { what })
}

/// The point in 33-byte compressed form; the identity encodes as 33 zero
/// bytes. This is the canonical encoding for hashing and for commitments.
pub fn point_to_bytes(point: &Point) -> [u8; COMPRESSED_POINT_LEN] {
    point.to_bytes().into()
}

/// Parses a 33-byte compressed point, refusing the identity.
pub fn point_from_bytes(what: &'static str, bytes: &[u8]) -> Result<Point> {
    let point = point_from_bytes_allow_identity(what, bytes)?;
    if bool::from(point.is_identity()) {
        return Err(CryptoError::IdentityPoint { what });
    }
    Ok(point)
}

/// Parses a 33-byte compressed point; 33 zero bytes are the identity.
pub fn point_from_bytes_allow_identity(what: &'static str, bytes: &[u8]) -> Result<Point> {
    let array: [u8; COMPRESSED_POINT_LEN] =
        bytes.try_into().map_err(|_| CryptoError::InvalidLength { what, expected: "33 bytes", actual: bytes.len() })?;
    if array == [0u8; COMPRESSED_POINT_LEN] {
        return Ok(Point::IDENTITY);
    }
    // Only `02`/`03` (k256's decoder also takes a `05` "compact" tag).
    if !matches!(array[0], 0x02 | 0x03) {
        return Err(CryptoError::PointNotOnCurve { what });
    }
    Option::from(Point::from_bytes(&array.into())).ok_or(CryptoError::PointNotOnCurve { what })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER_HEX: &str = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";

    #[test]
    fn h_is_pinned_and_independent_of_g() {
        let h = generator_h();
        assert_ne!(h, generator());
        assert!(!bool::from(h.is_identity()));
        // Pinned so that an accidental change of the DST or message fails.
        assert_eq!(
            hex::encode(point_to_bytes(&h)),
            "030e3dacf58a29815af6cd2b5914945d7826316f06f374397520d5169a59d7d23d"
        );
    }

    #[test]
    fn the_h_table_multiplies_like_the_generic_routine() {
        use rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let order_minus_one = -Scalar::ONE;
        let edge = [Scalar::ZERO, Scalar::ONE, Scalar::from(8u64), Scalar::from(0x88u64), order_minus_one];
        let random = (0..64).map(|_| <Scalar as k256::elliptic_curve::Generate>::generate_from_rng(&mut rng));
        for k in edge.into_iter().chain(random) {
            assert_eq!(mul_by_h(&k), generator_h() * k);
            assert_eq!(pedersen_commit(&k, &(k + Scalar::ONE)), generator() * k + generator_h() * (k + Scalar::ONE));
        }
        let all_f = scalar_from_hex("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140").unwrap();
        assert_eq!(mul_by_h(&all_f), -generator_h());
    }

    #[test]
    fn scalar_hex_is_strict() {
        assert_eq!(scalar_from_hex("1").unwrap(), Scalar::ONE);
        assert_eq!(scalar_from_hex(&"0".repeat(64)).unwrap(), Scalar::ZERO);
        assert!(matches!(scalar_from_hex(""), Err(CryptoError::InvalidLength { .. })));
        assert!(matches!(scalar_from_hex(&"1".repeat(65)), Err(CryptoError::InvalidLength { .. })));
        assert!(matches!(scalar_from_hex("0x12"), Err(CryptoError::InvalidHex { .. })));
        assert!(matches!(scalar_from_hex("zz"), Err(CryptoError::InvalidHex { .. })));
        assert!(matches!(scalar_from_hex(ORDER_HEX), Err(CryptoError::ScalarOutOfRange { .. })));
        assert!(matches!(scalar_from_hex(&"f".repeat(64)), Err(CryptoError::ScalarOutOfRange { .. })));
        let below = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140";
        assert_eq!(scalar_from_hex(below).unwrap(), -Scalar::ONE);
        assert!(matches!(nonzero_scalar_from_hex("key", "00"), Err(CryptoError::ZeroScalar { what: "key" })));
        assert!(matches!(scalar_from_bytes(&[1u8; 31]), Err(CryptoError::InvalidLength { .. })));
        assert!(matches!(scalar_from_unpadded_bytes(&[]), Err(CryptoError::InvalidLength { .. })));
        assert_eq!(scalar_from_unpadded_bytes(&[1, 0]).unwrap(), Scalar::from(256u64));
    }

    #[test]
    fn scalar_formats_round_trip() {
        let s = Scalar::from(0xabcdu64);
        assert_eq!(scalar_to_unpadded_hex(&s), "abcd");
        assert_eq!(scalar_to_unpadded_hex(&Scalar::ZERO), "0");
        assert_eq!(scalar_to_hex(&s).len(), 64);
        assert_eq!(scalar_from_hex(&scalar_to_hex(&s)).unwrap(), s);
    }

    #[test]
    fn points_are_strict() {
        let g = point_to_public_key("g", &generator()).unwrap();
        let unc = public_key_to_uncompressed(&g);
        assert_eq!(public_key_from_sec1(&unc).unwrap(), g);
        let comp = point_to_bytes(&generator());
        assert_eq!(public_key_from_sec1(&comp).unwrap(), g);

        // Off the curve: flip the last byte of Y.
        let mut off = unc;
        off[64] ^= 1;
        assert!(matches!(public_key_from_sec1(&off), Err(CryptoError::PointNotOnCurve { .. })));
        // An X with no point on the curve (x = 5 has no square root of x^3+7).
        let mut bad_x = [0u8; 33];
        bad_x[0] = 2;
        bad_x[32] = 5;
        assert!(matches!(public_key_from_sec1(&bad_x), Err(CryptoError::PointNotOnCurve { .. })));
        assert!(matches!(public_key_from_sec1(&[0u8]), Err(CryptoError::IdentityPoint { .. })));
        assert!(matches!(public_key_from_sec1(&unc[..64]), Err(CryptoError::InvalidLength { .. })));
        for tag in [0x00, 0x01, 0x05, 0x06, 0x07] {
            let mut bad_tag = unc;
            bad_tag[0] = tag;
            assert!(public_key_from_sec1(&bad_tag).is_err(), "65 bytes, tag {tag}");
            let mut bad_tag = comp;
            bad_tag[0] = tag;
            assert!(public_key_from_sec1(&bad_tag).is_err(), "33 bytes, tag {tag}");
        }
        let mut wrong_form = comp;
        wrong_form[0] = 0x04;
        assert!(public_key_from_sec1(&wrong_form).is_err());

        assert!(matches!(point_from_bytes("c", &[0u8; 33]), Err(CryptoError::IdentityPoint { .. })));
        let mut compact = comp;
        compact[0] = 0x05;
        assert!(matches!(point_from_bytes("c", &compact), Err(CryptoError::PointNotOnCurve { .. })));
        let mut zero_tag_nonzero_body = [0u8; 33];
        zero_tag_nonzero_body[32] = 1;
        assert!(point_from_bytes_allow_identity("c", &zero_tag_nonzero_body).is_err());
        assert_eq!(point_from_bytes_allow_identity("c", &[0u8; 33]).unwrap(), Point::IDENTITY);
        assert!(matches!(point_to_public_key("p", &Point::IDENTITY), Err(CryptoError::IdentityPoint { .. })));

        let (x, y) = public_key_to_xy_hex(&g);
        assert_eq!(public_key_from_xy_hex(&x, &y).unwrap(), g);
        assert_eq!(public_key_from_xy_hex(x.trim_start_matches('0'), &y).unwrap(), g);
        assert!(matches!(public_key_from_xy_hex("", &y), Err(CryptoError::InvalidLength { .. })));
        assert!(matches!(public_key_from_xy_hex(&x, "xyz"), Err(CryptoError::InvalidHex { .. })));
        assert!(matches!(public_key_from_xy_hex(&x, &x), Err(CryptoError::PointNotOnCurve { .. })));
        assert!(public_key_from_hex("k", &hex::encode(unc)).is_ok());
        assert!(matches!(public_key_from_hex("k", "04"), Err(CryptoError::InvalidLength { .. })));
    }

    #[test]
    fn hash_to_scalar_is_domain_separated() {
        let a = hash_to_scalar(&[b"m"], b"DST-A");
        let b = hash_to_scalar(&[b"m"], b"DST-B");
        assert_ne!(a, b);
        assert_eq!(a, hash_to_scalar(&[b"m"], b"DST-A"));
    }
}
