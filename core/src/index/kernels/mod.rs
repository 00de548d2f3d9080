//! Distance kernels: a scalar reference for each, and SIMD versions chosen at run time on
//! x86_64 (AVX2 + FMA + F16C) or at compile time on wasm32 (`simd128`).
//!
//! Every SIMD kernel is tested against its scalar twin (see the tests below).

pub mod scalar;
#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(target_arch = "x86_64")]
fn x86_fast() -> bool {
    use std::sync::OnceLock;
    static FAST: OnceLock<bool> = OnceLock::new();
    *FAST.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// Which implementation the dispatching kernels use here (for benchmark reports).
pub fn backend() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if x86_fast() {
            return "avx2+fma+f16c";
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        return "wasm simd128";
    }
    #[allow(unreachable_code)]
    "scalar"
}

macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        $(#[$doc])*
        #[inline]
        pub fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                if x86_fast() {
                    // SAFETY: x86_fast() confirmed avx2, fma and f16c at run time.
                    return unsafe { x86::$name($($arg),*) };
                }
            }
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            {
                return wasm::$name($($arg),*);
            }
            #[allow(unreachable_code)]
            scalar::$name($($arg),*)
        }
    };
}

dispatch!(
    /// Dot product of two f32 slices of equal length.
    dot_f32(a: &[f32], b: &[f32]) -> f32
);
dispatch!(
    /// Squared Euclidean distance of two f32 slices of equal length.
    l2sq_f32(a: &[f32], b: &[f32]) -> f32
);
dispatch!(
    /// Dot products of one query against four vectors (all of the query's length).
    dot_f32_x4(q: &[f32], v: [&[f32]; 4]) -> [f32; 4]
);
dispatch!(
    /// Squared Euclidean distances of one query to four vectors (all of the query's length).
    l2sq_f32_x4(q: &[f32], v: [&[f32]; 4]) -> [f32; 4]
);
dispatch!(
    /// Integer dot products of one i8 query against four i8 vectors (all of the query's length).
    dot_i8_x4(q: &[i8], v: [&[i8]; 4]) -> [i32; 4]
);
dispatch!(
    /// Dot product of an f32 query with IEEE-half codes (bit patterns) of equal length.
    dot_f32_f16(a: &[f32], b: &[u16]) -> f32
);
dispatch!(
    /// Dot product of an f32 query with i16 codes of equal length (scale applied by the caller).
    dot_f32_i16(a: &[f32], b: &[i16]) -> f32
);
dispatch!(
    /// Integer dot product of two i8 code slices of equal length. Exact (no overflow below
    /// 65,000 dimensions).
    dot_i8(a: &[i8], b: &[i8]) -> i32
);

/// Hints the CPU to start loading the cache line at `data` (no effect where unsupported).
#[inline(always)]
pub fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = data.as_ptr() as *const i8;
        // SAFETY: prefetch is a hint; it never faults, even on an invalid address, and `p`
        // points into a live slice anyway.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            if std::mem::size_of_val(data) > 64 {
                _mm_prefetch::<_MM_HINT_T0>(p.add(64));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Number of differing bits between two packed bit vectors of equal length.
#[inline]
pub fn hamming(a: &[u64], b: &[u64]) -> u32 {
    scalar::hamming(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn close(a: f32, b: f32, scale: f32) -> bool {
        (a - b).abs() <= 1e-4 * scale.max(1.0)
    }

    #[test]
    fn simd_kernels_match_scalar_on_every_length() {
        let mut r = SplitMix64::new(7);
        for len in (1..70).chain([127, 128, 129, 383, 384, 385, 1000]) {
            let a: Vec<f32> = (0..len).map(|_| r.next_f32() * 2.0 - 1.0).collect();
            let b: Vec<f32> = (0..len).map(|_| r.next_f32() * 2.0 - 1.0).collect();
            let h: Vec<u16> = b
                .iter()
                .map(|&x| half::f16::from_f32(x).to_bits())
                .collect();
            let i16s: Vec<i16> = (0..len).map(|_| r.next_u64() as i16).collect();
            let i8a: Vec<i8> = (0..len).map(|_| (r.next_u64() as i8).max(-127)).collect();
            let i8b: Vec<i8> = (0..len).map(|_| (r.next_u64() as i8).max(-127)).collect();
            let s = len as f32;
            assert!(
                close(dot_f32(&a, &b), scalar::dot_f32(&a, &b), s),
                "dot len {len}"
            );
            assert!(
                close(l2sq_f32(&a, &b), scalar::l2sq_f32(&a, &b), s),
                "l2 len {len}"
            );
            assert!(
                close(dot_f32_f16(&a, &h), scalar::dot_f32_f16(&a, &h), s),
                "f16 len {len}"
            );
            let big = s * 32768.0;
            assert!(
                close(dot_f32_i16(&a, &i16s), scalar::dot_f32_i16(&a, &i16s), big),
                "i16 len {len}"
            );
            assert_eq!(
                dot_i8(&i8a, &i8b),
                scalar::dot_i8(&i8a, &i8b),
                "i8 len {len}"
            );
        }
        // extremes: every i8 product at its maximum must not overflow
        let a = vec![-127i8; 4096];
        assert_eq!(dot_i8(&a, &a), 127 * 127 * 4096);
        let words: Vec<u64> = (0..9).map(|_| r.next_u64()).collect();
        let other: Vec<u64> = (0..9).map(|_| r.next_u64()).collect();
        let naive: u32 = words
            .iter()
            .zip(&other)
            .map(|(x, y)| (x ^ y).count_ones())
            .sum();
        assert_eq!(hamming(&words, &other), naive);
    }

    #[test]
    fn backend_is_named() {
        assert!(!backend().is_empty());
    }
}
