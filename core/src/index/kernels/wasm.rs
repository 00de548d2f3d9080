//! wasm32 `simd128` kernels, selected at compile time.

use std::arch::wasm32::*;

#[inline]
fn hsum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v)
        + f32x4_extract_lane::<1>(v)
        + f32x4_extract_lane::<2>(v)
        + f32x4_extract_lane::<3>(v)
}

/// simd128 dot product.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc0 = f32x4_splat(0.0);
    let mut acc1 = f32x4_splat(0.0);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n; v128_load is an unaligned load.
        unsafe {
            let x0 = v128_load(a.as_ptr().add(i) as *const v128);
            let y0 = v128_load(b.as_ptr().add(i) as *const v128);
            let x1 = v128_load(a.as_ptr().add(i + 4) as *const v128);
            let y1 = v128_load(b.as_ptr().add(i + 4) as *const v128);
            acc0 = f32x4_add(acc0, f32x4_mul(x0, y0));
            acc1 = f32x4_add(acc1, f32x4_mul(x1, y1));
        }
        i += 8;
    }
    let mut r = hsum(f32x4_add(acc0, acc1));
    while i < n {
        r += a[i] * b[i];
        i += 1;
    }
    r
}

/// simd128 squared Euclidean distance.
pub fn l2sq_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = f32x4_splat(0.0);
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: i + 4 <= n.
        unsafe {
            let d = f32x4_sub(
                v128_load(a.as_ptr().add(i) as *const v128),
                v128_load(b.as_ptr().add(i) as *const v128),
            );
            acc = f32x4_add(acc, f32x4_mul(d, d));
        }
        i += 4;
    }
    let mut r = hsum(acc);
    while i < n {
        let d = a[i] - b[i];
        r += d * d;
        i += 1;
    }
    r
}

/// Half codes have no simd128 conversion; the scalar path is used.
pub fn dot_f32_f16(a: &[f32], b: &[u16]) -> f32 {
    super::scalar::dot_f32_f16(a, b)
}

/// simd128 dot product with i16 codes.
pub fn dot_f32_i16(a: &[f32], b: &[i16]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = f32x4_splat(0.0);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n: 8 i16 and 8 f32 lanes are in bounds.
        unsafe {
            let w = v128_load(b.as_ptr().add(i) as *const v128);
            let lo = f32x4_convert_i32x4(i32x4_extend_low_i16x8(w));
            let hi = f32x4_convert_i32x4(i32x4_extend_high_i16x8(w));
            acc = f32x4_add(
                acc,
                f32x4_mul(v128_load(a.as_ptr().add(i) as *const v128), lo),
            );
            acc = f32x4_add(
                acc,
                f32x4_mul(v128_load(a.as_ptr().add(i + 4) as *const v128), hi),
            );
        }
        i += 8;
    }
    let mut r = hsum(acc);
    while i < n {
        r += a[i] * b[i] as f32;
        i += 1;
    }
    r
}

/// simd128 i8 dot product.
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let mut acc = i32x4_splat(0);
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n: 16 bytes of each slice are in bounds.
        unsafe {
            let x = v128_load(a.as_ptr().add(i) as *const v128);
            let y = v128_load(b.as_ptr().add(i) as *const v128);
            acc = i32x4_add(
                acc,
                i32x4_dot_i16x8(i16x8_extend_low_i8x16(x), i16x8_extend_low_i8x16(y)),
            );
            acc = i32x4_add(
                acc,
                i32x4_dot_i16x8(i16x8_extend_high_i8x16(x), i16x8_extend_high_i8x16(y)),
            );
        }
        i += 16;
    }
    let mut r = i32x4_extract_lane::<0>(acc)
        + i32x4_extract_lane::<1>(acc)
        + i32x4_extract_lane::<2>(acc)
        + i32x4_extract_lane::<3>(acc);
    while i < n {
        r += a[i] as i32 * b[i] as i32;
        i += 1;
    }
    r
}

/// Four dot products (simd128, one vector at a time).
pub fn dot_f32_x4(q: &[f32], v: [&[f32]; 4]) -> [f32; 4] {
    v.map(|x| dot_f32(q, x))
}

/// Four squared Euclidean distances (simd128, one vector at a time).
pub fn l2sq_f32_x4(q: &[f32], v: [&[f32]; 4]) -> [f32; 4] {
    v.map(|x| l2sq_f32(q, x))
}

/// Four i8 dot products (simd128, one vector at a time).
pub fn dot_i8_x4(q: &[i8], v: [&[i8]; 4]) -> [i32; 4] {
    v.map(|x| dot_i8(q, x))
}
