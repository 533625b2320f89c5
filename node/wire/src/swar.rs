//! Word-at-a-time (SWAR) ASCII case folding for names: a lower-casing copy and a
//! case-insensitive comparison, without a byte-at-a-time loop.
//!
//! Portable stable Rust with no `unsafe` and no runtime feature detection. Inputs of 16 bytes
//! or more go through 16-byte blocks written as fixed-size array loops, which the compiler
//! turns into one SIMD register step each (SSE2 is part of the x86_64 baseline, NEON of
//! aarch64). Shorter inputs, the common case for names, use SWAR: 8 (or 4) bytes in a `u64`
//! with the classic bit tricks (they work per byte, so byte order does not matter). A length
//! that is not a multiple of the step is covered by one more step that overlaps the previous
//! one (lower-casing is idempotent, so rewriting the overlap is harmless). Only inputs under 4
//! bytes take the scalar loop.

/// Every byte 0x01.
const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
/// Every byte 0x7f: the low seven bits.
const LOW7: u64 = ONES * 0x7f;
/// Every byte 0x80: the high bit.
const HIGH: u64 = ONES * 0x80;
/// Added to a 7-bit byte, sets its high bit exactly when the byte is >= b'A'.
const ADD_GE_A: u64 = ONES * (0x80 - b'A' as u64);
/// Added to a 7-bit byte, sets its high bit exactly when the byte is > b'Z'.
const ADD_GT_Z: u64 = ONES * (0x7f - b'Z' as u64);
/// Bytes in one SIMD block.
const BLOCK: usize = 16;
/// Bytes in one word.
const WORD: usize = 8;
/// Bytes in one half word.
const HALF: usize = 4;

/// Lower-case the ASCII letters of the eight bytes of `word`; other bytes are unchanged.
#[inline]
pub(crate) fn lower_word(word: u64) -> u64 {
    // Each byte's low 7 bits plus at most 0x3f stays below 0x100: no carry crosses a byte.
    let low = word & LOW7;
    let ge_a = low.wrapping_add(ADD_GE_A);
    let gt_z = low.wrapping_add(ADD_GT_Z);
    // High bit set exactly on bytes in b'A'..=b'Z' (bytes >= 0x80 are excluded by `!word`).
    let upper = ge_a & !gt_z & !word & HIGH;
    // 0x80 >> 2 == 0x20, the ASCII case bit.
    word | (upper >> 2)
}

/// Lower-case the ASCII letters of one block (a loop the compiler vectorizes).
#[inline]
fn lower_block(block: &[u8; BLOCK]) -> [u8; BLOCK] {
    let mut out = *block;
    for byte in &mut out {
        *byte = byte.to_ascii_lowercase();
    }
    out
}

/// Lower-case eight bytes.
#[inline]
fn lower8(bytes: &[u8; WORD]) -> [u8; WORD] {
    lower_word(u64::from_ne_bytes(*bytes)).to_ne_bytes()
}

/// Lower-case four bytes (zero-extended to a word: the upper zero bytes stay zero).
#[inline]
fn lower4(bytes: &[u8; HALF]) -> [u8; HALF] {
    let word = lower_word(u64::from(u32::from_ne_bytes(*bytes)));
    // The upper four bytes are zero, so the truncation keeps every lane.
    (word as u32).to_ne_bytes()
}

/// Equal ignoring ASCII case, one block.
#[inline]
fn eq_block(a: &[u8; BLOCK], b: &[u8; BLOCK]) -> bool {
    // OR-reducing the differences (rather than stopping early) keeps the loop vectorizable.
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x.to_ascii_lowercase() ^ y.to_ascii_lowercase();
    }
    diff == 0
}

/// Equal ignoring ASCII case, eight bytes.
#[inline]
fn eq8(a: &[u8; WORD], b: &[u8; WORD]) -> bool {
    let (x, y) = (u64::from_ne_bytes(*a), u64::from_ne_bytes(*b));
    x == y || lower_word(x) == lower_word(y)
}

/// Equal ignoring ASCII case, four bytes.
#[inline]
fn eq4(a: &[u8; HALF], b: &[u8; HALF]) -> bool {
    lower4(a) == lower4(b)
}

/// Copy `src` into `dst`, ASCII lower-cased. Copies `min(dst.len(), src.len())` bytes.
#[inline]
pub(crate) fn copy_lower(dst: &mut [u8], src: &[u8]) {
    let len = dst.len().min(src.len());
    let (Some(dst), Some(src)) = (dst.get_mut(..len), src.get(..len)) else {
        return;
    };
    /// Lower-case `src` into `dst` in `N`-byte steps, the last one overlapping; `len >= N`.
    #[inline]
    fn steps<const N: usize>(dst: &mut [u8], src: &[u8], lower: fn(&[u8; N]) -> [u8; N]) {
        let (dst_chunks, _) = dst.as_chunks_mut::<N>();
        let (src_chunks, _) = src.as_chunks::<N>();
        for (d, s) in dst_chunks.iter_mut().zip(src_chunks) {
            *d = lower(s);
        }
        if !src.len().is_multiple_of(N)
            && let (Some(d), Some(s)) = (dst.last_chunk_mut::<N>(), src.last_chunk::<N>())
        {
            *d = lower(s);
        }
    }
    match len {
        BLOCK.. => steps(dst, src, lower_block),
        WORD.. => steps(dst, src, lower8),
        HALF.. => steps(dst, src, lower4),
        _ => copy_lower_scalar(dst, src),
    }
}

/// True when `a` and `b` are equal ignoring ASCII case.
#[inline]
pub(crate) fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    /// Compare in `N`-byte steps, the last one overlapping; both slices are `len >= N` long.
    #[inline]
    fn steps<const N: usize>(a: &[u8], b: &[u8], eq: fn(&[u8; N], &[u8; N]) -> bool) -> bool {
        let (a_chunks, _) = a.as_chunks::<N>();
        let (b_chunks, _) = b.as_chunks::<N>();
        a_chunks.iter().zip(b_chunks).all(|(x, y)| eq(x, y))
            && (a.len().is_multiple_of(N)
                || matches!((a.last_chunk::<N>(), b.last_chunk::<N>()), (Some(x), Some(y)) if eq(x, y)))
    }
    match a.len() {
        BLOCK.. => steps(a, b, eq_block),
        WORD.. => steps(a, b, eq8),
        HALF.. => steps(a, b, eq4),
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// Scalar lower-casing copy: the reference for short inputs and for tests.
#[inline]
pub(crate) fn copy_lower_scalar(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s.to_ascii_lowercase();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// lower_word agrees with `u8::to_ascii_lowercase` on every byte value in every lane,
    /// whatever the neighbouring bytes are.
    #[test]
    fn lower_word_exhaustive_per_byte() {
        for fill in [0x00, b'A', b'Z', b'@', b'[', 0x7f, 0x80, 0xc1, 0xda, 0xff] {
            for lane in 0..WORD {
                for byte in 0..=255u8 {
                    let mut bytes = [fill; WORD];
                    bytes[lane] = byte;
                    let expected = bytes.map(|b| b.to_ascii_lowercase());
                    assert_eq!(
                        lower_word(u64::from_ne_bytes(bytes)).to_ne_bytes(),
                        expected,
                        "byte {byte:#04x} in lane {lane} among {fill:#04x}"
                    );
                }
            }
        }
    }

    /// Every pair of single bytes compares as `eq_ignore_ascii_case` does, alone and at
    /// every position of a longer string.
    #[test]
    fn eq_ignore_case_exhaustive_byte_pairs() {
        for x in 0..=255u8 {
            for y in 0..=255u8 {
                let expected = x.eq_ignore_ascii_case(&y);
                assert_eq!(eq_ignore_case(&[x], &[y]), expected, "{x:#04x} {y:#04x}");
                for at in [0, 5, 8, 12] {
                    let mut a = *b"abcdeFGHIJklm";
                    let mut b = *b"ABCDEfghijKLM";
                    a[at] = x;
                    b[at] = y;
                    assert_eq!(
                        eq_ignore_case(&a, &b),
                        expected,
                        "{x:#04x} {y:#04x} at {at}"
                    );
                }
            }
        }
    }

    /// Random strings of every length 0..=255 (biased towards letters): the SWAR functions
    /// equal the scalar ones, and differences anywhere are caught.
    #[test]
    fn random_strings_match_scalar() {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        for round in 0..20 {
            for len in 0..=255usize {
                let src: Vec<u8> = (0..len)
                    .map(|_| match rng.random_range(0..4) {
                        0 => rng.random(),
                        1 => rng.random_range(b'A'..=b'Z'),
                        2 => rng.random_range(b'a'..=b'z'),
                        _ => rng.random_range(b'>'..=b'`'),
                    })
                    .collect();
                let expected: Vec<u8> = src.iter().map(u8::to_ascii_lowercase).collect();

                let mut copied = vec![0xaa; len];
                copy_lower(&mut copied, &src);
                assert_eq!(copied, expected, "copy_lower, len {len}, round {round}");

                let mut scalar = vec![0; len];
                copy_lower_scalar(&mut scalar, &src);
                assert_eq!(scalar, expected, "copy_lower_scalar, len {len}");

                let mut flipped = src.clone();
                for b in &mut flipped {
                    if b.is_ascii_alphabetic() && rng.random_bool(0.5) {
                        *b ^= 0x20;
                    }
                }
                assert!(eq_ignore_case(&src, &flipped), "case flips, len {len}");
                if len > 0 {
                    let at = rng.random_range(0..len);
                    let mut changed = flipped.clone();
                    changed[at] = changed[at].wrapping_add(rng.random_range(1..=255));
                    assert_eq!(
                        eq_ignore_case(&src, &changed),
                        src.eq_ignore_ascii_case(&changed),
                        "one byte changed at {at}, len {len}"
                    );
                    assert!(!eq_ignore_case(&src, &src[..len - 1]), "length differs");
                }
            }
        }
    }

    /// copy_lower copies only as many bytes as both slices hold.
    #[test]
    fn copy_lower_mismatched_lengths() {
        let mut dst = [0u8; 4];
        copy_lower(&mut dst, b"ABCDEFGHIJ");
        assert_eq!(&dst, b"abcd");
        let mut dst = [0u8; 12];
        copy_lower(&mut dst, b"ABCDEFGHIJ");
        assert_eq!(&dst, b"abcdefghij\0\0");
    }
}
