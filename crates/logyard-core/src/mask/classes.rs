//! The classes of 64 bytes at once (digits, capitals, dots, ...), one bit per byte: what
//! [`super::starts`] combines into the positions where a detector may match.
//!
//! The same definitions run on the widest vectors the CPU has, chosen at run time: AVX-512
//! (one compare per class for all 64 bytes), AVX2 (two), or 16-byte vectors (four; SSE2 on
//! any x86-64, NEON on ARM) through the `wide` crate. [`Classes::scalar`] is the reference
//! the tests hold them to.

/// One bit per byte of a chunk, per class.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Classes {
    /// `[0-9A-Za-z_]`: a byte that is part of a word.
    pub word: u64,
    pub digit: u64,
    pub zero: u64,
    pub one: u64,
    pub upper: u64,
    /// `[0-9A-Fa-f]`.
    pub hex: u64,
    pub dot: u64,
    pub dash: u64,
    pub space: u64,
    pub plus: u64,
    pub slash: u64,
    pub colon: u64,
    pub paren: u64,
    /// `e` or `E`.
    pub e: u64,
    pub y: u64,
    /// `b` or `B`.
    pub b: u64,
    /// `A`.
    pub a: u64,
}

impl Classes {
    /// Every class from two tests: `eq(v, b)` (the bytes equal to `b`) and `between(v, lo,
    /// hi)` (the bytes in `lo..=hi`), on the bytes `v` and on `folded`, the bytes with 0x20
    /// set (capitals as small letters).
    #[inline(always)]
    fn with<V: Copy>(v: V, folded: V, eq: impl Fn(V, u8) -> u64, between: impl Fn(V, u8, u8) -> u64) -> Self {
        let digit = between(v, b'0', b'9');
        Classes {
            word: digit | between(folded, b'a', b'z') | eq(v, b'_'),
            digit,
            zero: eq(v, b'0'),
            one: eq(v, b'1'),
            upper: between(v, b'A', b'Z'),
            hex: digit | between(folded, b'a', b'f'),
            dot: eq(v, b'.'),
            dash: eq(v, b'-'),
            space: eq(v, b' '),
            plus: eq(v, b'+'),
            slash: eq(v, b'/'),
            colon: eq(v, b':'),
            paren: eq(v, b'('),
            e: eq(folded, b'e'),
            y: eq(v, b'y'),
            b: eq(folded, b'b'),
            a: eq(v, b'A'),
        }
    }

    /// The classes of up to 64 bytes, one at a time: the reference of the tests.
    #[cfg(test)]
    pub fn scalar(bytes: &[u8]) -> Self {
        fn bits(bytes: &[u8], f: impl Fn(u8) -> bool) -> u64 {
            bytes.iter().take(64).enumerate().fold(0u64, |m, (k, &b)| m | u64::from(f(b)) << k)
        }
        // `true`: the folded bytes.
        let byte = |folded: bool, b: u8| if folded { b | 0x20 } else { b };
        Classes::with(
            false,
            true,
            |f, x| bits(bytes, |b| byte(f, b) == x),
            |f, lo, hi| bits(bytes, |b| (lo..=hi).contains(&byte(f, b))),
        )
    }

    /// The classes of 64 bytes, on the widest vectors this CPU has.
    pub fn of(bytes: &[u8; 64]) -> Self {
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        {
            if std::arch::is_x86_feature_detected!("avx512bw") {
                // SAFETY: the CPU has AVX-512BW.
                return unsafe { x86::avx512(bytes) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2.
                return unsafe { x86::avx2(bytes) };
            }
        }
        Self::portable(bytes)
    }

    /// The positions of '"' and '\\' in all of `text` (what ends a JSON string or escapes
    /// in it), one bit per byte, 64 to a word.
    pub fn quotes_and_backslashes(text: &[u8]) -> Vec<u64> {
        text.chunks(64)
            .map(|chunk| match chunk.try_into() {
                Ok(full) => either(full, b'"', b'\\'),
                Err(_) => {
                    let mut padded = [0u8; 64];
                    padded[..chunk.len()].copy_from_slice(chunk);
                    either(&padded, b'"', b'\\')
                }
            })
            .collect()
    }

    /// On 16-byte vectors.
    pub fn portable(bytes: &[u8; 64]) -> Self {
        use wide::i8x16;
        let load = |k: usize| -> i8x16 {
            let block: [u8; 16] = bytes[16 * k..16 * (k + 1)].try_into().expect("16 bytes");
            wide::bytemuck::cast(block)
        };
        let v = [load(0), load(1), load(2), load(3)];
        let folded = v.map(|x| x | i8x16::splat(0x20));
        let bits = |m: [i8x16; 4]| {
            m.iter().enumerate().fold(0u64, |all, (k, m)| all | u64::from(m.to_bitmask() as u16) << (16 * k))
        };
        let at = |b: u8| i8x16::splat(b as i8);
        Classes::with(
            v,
            folded,
            |v, b| bits(v.map(|x| x.simd_eq(at(b)))),
            // Bytes from 0x80 are negative: outside every (ASCII) range.
            |v, lo, hi| bits(v.map(|x| x.simd_gt(at(lo - 1)) & x.simd_lt(at(hi + 1)))),
        )
    }
}

/// The bytes of `bytes` equal to `a` or `b`, on the widest vectors this CPU has.
fn either(bytes: &[u8; 64], a: u8, b: u8) -> u64 {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has AVX-512BW.
            return unsafe { x86::either_avx512(bytes, a, b) };
        }
    }
    bytes.chunks_exact(16).enumerate().fold(0u64, |all, (k, block)| {
        let v: wide::i8x16 = wide::bytemuck::cast(<[u8; 16]>::try_from(block).expect("16 bytes"));
        let m = v.simd_eq(wide::i8x16::splat(a as i8)) | v.simd_eq(wide::i8x16::splat(b as i8));
        all | u64::from(m.to_bitmask() as u16) << (16 * k)
    })
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use super::Classes;

    #[target_feature(enable = "avx512bw")]
    pub(super) fn avx512(bytes: &[u8; 64]) -> Classes {
        // SAFETY: 64 bytes are read from a 64-byte array.
        let v = unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) };
        let folded = _mm512_or_si512(v, _mm512_set1_epi8(0x20));
        Classes::with(
            v,
            folded,
            |v, b| _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b as i8)),
            |v, lo, hi| {
                _mm512_cmple_epu8_mask(
                    _mm512_sub_epi8(v, _mm512_set1_epi8(lo as i8)),
                    _mm512_set1_epi8((hi - lo) as i8),
                )
            },
        )
    }

    #[target_feature(enable = "avx512bw")]
    pub(super) fn either_avx512(bytes: &[u8; 64], a: u8, b: u8) -> u64 {
        // SAFETY: 64 bytes are read from a 64-byte array.
        let v = unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) };
        _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(a as i8)) | _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b as i8))
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn avx2(bytes: &[u8; 64]) -> Classes {
        // SAFETY: two 32-byte reads inside a 64-byte array.
        let v =
            unsafe { [_mm256_loadu_si256(bytes.as_ptr().cast()), _mm256_loadu_si256(bytes.as_ptr().add(32).cast())] };
        let folded = v.map(|x| _mm256_or_si256(x, _mm256_set1_epi8(0x20)));
        let bits = |m: [__m256i; 2]| {
            u64::from(_mm256_movemask_epi8(m[0]) as u32) | u64::from(_mm256_movemask_epi8(m[1]) as u32) << 32
        };
        Classes::with(
            v,
            folded,
            |v, b| bits(v.map(|x| _mm256_cmpeq_epi8(x, _mm256_set1_epi8(b as i8)))),
            // `lo..=hi` moved to the bottom of the signed range: one compare. (Bytes from
            // 0x80 land above it, as every range is ASCII.)
            |v, lo, hi| {
                let shift = _mm256_set1_epi8(0x80u8.wrapping_sub(lo) as i8);
                let limit = _mm256_set1_epi8((0x80 + u16::from(hi - lo) + 1) as u8 as i8);
                bits(v.map(|x| _mm256_cmpgt_epi8(limit, _mm256_add_epi8(x, shift))))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value in every lane, next to every other in the lane after: each way of
    /// classing agrees with the scalar reference.
    #[test]
    fn every_way_agrees_with_the_reference() {
        type Way = fn(&[u8; 64]) -> Classes;
        let mut ways: Vec<(&str, Way)> = vec![("portable", Classes::portable), ("of", Classes::of)];
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        {
            if std::arch::is_x86_feature_detected!("avx512bw") {
                ways.push(("avx512", |b| unsafe { x86::avx512(b) }));
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                ways.push(("avx2", |b| unsafe { x86::avx2(b) }));
            }
        }
        for lane in 0..64 {
            for b in 0..=255u8 {
                let mut bytes = [0u8; 64];
                bytes[lane] = b;
                bytes[(lane + 1) % 64] = b.wrapping_add(1);
                bytes[(lane + 7) % 64] = b.wrapping_mul(7);
                let reference = Classes::scalar(&bytes);
                for (name, way) in &ways {
                    assert_eq!(way(&bytes), reference, "{name}: byte {b:#x} in lane {lane}");
                }
            }
        }
        let mut text = Vec::new();
        for n in 0..300usize {
            let quotes = Classes::quotes_and_backslashes(&text);
            assert_eq!(quotes.len(), text.len().div_ceil(64));
            for (k, &b) in text.iter().enumerate() {
                assert_eq!(quotes[k / 64] >> (k % 64) & 1 == 1, b == b'"' || b == b'\\', "byte {k} of {n}");
            }
            text.push([b'"', b'a', b'\\', 0, 0xe2, b' '][n * 7 % 6]);
        }
        let digits = Classes::scalar(b"a0_Z.");
        assert_eq!(
            (digits.word, digits.digit, digits.upper, digits.hex, digits.dot),
            (0b1111, 0b10, 0b1000, 0b11, 0b10000)
        );
    }
}
