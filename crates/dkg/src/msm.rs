//! Multi-scalar multiplication `Σ s_i·P_i`, the one operation every batch
//! check reduces to. Variable time: only for public points and scalars (or
//! a recipient's private weights, whose timing reveals nothing about its
//! keys).
//!
//! Small sums use k256's Straus (`lincomb_vartime`, with GLV and wNAF).
//! Large ones use Pippenger's bucket method, written here because k256 has
//! none: with `N` points and `b`-bit scalars it costs about
//! `(b / c)·(N + 2^c)` additions for windows of `c` bits, against k256's
//! fixed per-point table and decomposition cost (about 20 µs per point on
//! the reference machine whatever the scalar size). It also profits from
//! short scalars: the batch checks use 64- to 137-bit weights.

use quorumkey_crypto::group::{Point, Scalar};
use quorumkey_crypto::k256::elliptic_curve::Group;
use quorumkey_crypto::k256::elliptic_curve::ops::LinearCombination;

/// Below this many terms, Straus is faster.
const PIPPENGER_MIN_TERMS: usize = 64;

/// `Σ s_i·P_i`.
///
/// Pippenger's cost follows the longest scalar it handles, and a batch
/// check typically has thousands of short weights and a handful of
/// full-size ones (the sums for `G` and `H`, a proof's challenge): the
/// longest 1/32 of the terms go to a separate sum, so the handful does not
/// make every window pass run 256 bits long.
pub fn msm(terms: &[(Point, Scalar)]) -> Point {
    if terms.len() < PIPPENGER_MIN_TERMS {
        return Point::lincomb_vartime(terms);
    }
    let scalars: Vec<[u8; 32]> = terms.iter().map(|(_, s)| little_endian(s)).collect();
    let lengths: Vec<usize> = scalars.iter().map(bit_length).collect();
    let mut sorted = lengths.clone();
    sorted.sort_unstable();
    let cut = sorted[terms.len() - 1 - terms.len() / 32];
    if sorted[terms.len() - 1] == cut {
        return pippenger(terms, &scalars, cut);
    }
    let mut short = Vec::with_capacity(terms.len());
    let mut short_scalars = Vec::with_capacity(terms.len());
    let mut long = Vec::new();
    for ((term, scalar), length) in terms.iter().zip(scalars).zip(lengths) {
        if length <= cut {
            short.push(*term);
            short_scalars.push(scalar);
        } else {
            long.push(*term);
        }
    }
    pippenger(&short, &short_scalars, cut) + msm(&long)
}

/// The scalar as 32 little-endian bytes.
fn little_endian(scalar: &Scalar) -> [u8; 32] {
    let mut bytes: [u8; 32] = scalar.to_bytes().into();
    bytes.reverse();
    bytes
}

fn bit_length(bytes: &[u8; 32]) -> usize {
    bytes.iter().rposition(|b| *b != 0).map_or(0, |top| top * 8 + 8 - bytes[top].leading_zeros() as usize)
}

/// Bits `start..start + width` of a little-endian number (`width` ≤ 16).
fn window(bytes: &[u8; 32], start: usize, width: usize) -> usize {
    let first = start / 8;
    let mut chunk = [0u8; 4];
    for (offset, byte) in chunk.iter_mut().enumerate() {
        *byte = bytes.get(first + offset).copied().unwrap_or(0);
    }
    ((u32::from_le_bytes(chunk) >> (start % 8)) as usize) & ((1 << width) - 1)
}

/// Pippenger over `terms` whose little-endian `scalars` are at most `bits`
/// long.
fn pippenger(terms: &[(Point, Scalar)], scalars: &[[u8; 32]], bits: usize) -> Point {
    if bits == 0 {
        return Point::IDENTITY;
    }
    // About log2(N) - 2 bits per window balances the two terms above.
    let log = (usize::BITS - terms.len().leading_zeros()) as usize;
    let width = log.saturating_sub(2).clamp(4, 14);
    let windows = bits.div_ceil(width);
    let mut buckets = vec![Point::IDENTITY; (1 << width) - 1];
    let mut result = Point::IDENTITY;
    for w in (0..windows).rev() {
        for _ in 0..width {
            result = result.double();
        }
        buckets.iter_mut().for_each(|bucket| *bucket = Point::IDENTITY);
        for ((point, _), scalar) in terms.iter().zip(scalars) {
            let digit = window(scalar, w * width, width);
            if digit != 0 {
                buckets[digit - 1] += point;
            }
        }
        // Σ d·bucket_d as a running sum from the top bucket down.
        let mut running = Point::IDENTITY;
        let mut sum = Point::IDENTITY;
        for bucket in buckets.iter().rev() {
            running += bucket;
            sum += running;
        }
        result += sum;
    }
    if bool::from(result.is_identity()) { Point::IDENTITY } else { result }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use quorumkey_crypto::k256::elliptic_curve::Generate;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    fn terms(count: usize, bits: u32, seed: u64) -> Vec<(Point, Scalar)> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        (0..count)
            .map(|_| {
                let point = Point::mul_by_generator(&Scalar::generate_from_rng(&mut rng));
                let scalar = match bits {
                    256 => Scalar::generate_from_rng(&mut rng),
                    _ => {
                        Scalar::from(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()))
                            * Scalar::from(1u64 << (bits.saturating_sub(128).min(63)))
                    }
                };
                (point, scalar)
            })
            .collect()
    }

    #[test]
    fn pippenger_equals_straus() {
        for (count, bits) in [(64, 256), (100, 128), (300, 137), (777, 73), (1500, 256)] {
            let terms = terms(count, bits, count as u64);
            assert_eq!(msm(&terms), Point::lincomb_vartime(terms.as_slice()), "{count} terms of {bits} bits");
        }
        assert_eq!(msm(&[(Point::GENERATOR, Scalar::ZERO); 70]), Point::IDENTITY);
        let mut cancel = terms(70, 256, 3);
        let (p, s) = cancel[0];
        cancel.push((p, -s));
        cancel.truncate(71);
        let expected = Point::lincomb_vartime(cancel.as_slice());
        assert_eq!(msm(&cancel), expected);
    }

    #[test]
    fn a_few_long_scalars_among_short_ones() {
        for (count, long) in [(64, 1), (500, 3), (1000, 40), (2000, 2)] {
            let mut mixed = terms(count, 73, count as u64);
            mixed.extend(terms(long, 256, 7));
            mixed.rotate_left(count / 3);
            assert_eq!(msm(&mixed), Point::lincomb_vartime(mixed.as_slice()), "{count} short, {long} long");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
        #[test]
        fn msm_is_the_sum_of_products(count in 1usize..200, seed in any::<u64>()) {
            let terms = terms(count, 256, seed);
            let expected = terms.iter().fold(Point::IDENTITY, |acc, (p, s)| acc + *p * s);
            prop_assert_eq!(msm(&terms), expected);
        }
    }
}
