//! AVX2 + FMA + F16C kernels. Callers must have checked those features at run time.

use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2")]
fn hsum_i32(v: __m256i) -> i32 {
    let lo = _mm256_castsi256_si128(v);
    let hi = _mm256_extracti128_si256(v, 1);
    let s = _mm_add_epi32(lo, hi);
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// AVX2 dot product.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, a_j) in acc.iter_mut().enumerate() {
            // SAFETY: i + 32 <= n, so lanes i+8j..i+8j+8 are in bounds of both slices.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(pa.add(i + 8 * j)),
                    _mm256_loadu_ps(pb.add(i + 8 * j)),
                )
            };
            *a_j = _mm256_fmadd_ps(x, y, *a_j);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n.
        let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
        acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut r = hsum(s);
    while i < n {
        r += a[i] * b[i];
        i += 1;
    }
    r
}

/// AVX2 squared Euclidean distance.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn l2sq_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, a_j) in acc.iter_mut().enumerate() {
            // SAFETY: i + 32 <= n, so lanes are in bounds.
            let d = unsafe {
                _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 8 * j)),
                    _mm256_loadu_ps(pb.add(i + 8 * j)),
                )
            };
            *a_j = _mm256_fmadd_ps(d, d, *a_j);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n.
        let d = unsafe { _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
        acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut r = hsum(s);
    while i < n {
        let d = a[i] - b[i];
        r += d * d;
        i += 1;
    }
    r
}

/// AVX2 + F16C dot product with half codes.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f32_f16(a: &[f32], b: &[u16]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n: 16 f32 and 16 u16 lanes are in bounds.
        unsafe {
            let h0 = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i) as *const __m128i));
            let h1 = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i + 8) as *const __m128i));
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), h0, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), h1, acc1);
        }
        i += 16;
    }
    let mut r = hsum(_mm256_add_ps(acc0, acc1));
    while i < n {
        r += a[i] * half::f16::from_bits(b[i]).to_f32();
        i += 1;
    }
    r
}

/// AVX2 dot product with i16 codes.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_f32_i16(a: &[f32], b: &[i16]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n: 16 f32 and 16 i16 lanes are in bounds.
        unsafe {
            let w = _mm256_loadu_si256(pb.add(i) as *const __m256i);
            let lo = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(w)));
            let hi = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(w, 1)));
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), lo, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), hi, acc1);
        }
        i += 16;
    }
    let mut r = hsum(_mm256_add_ps(acc0, acc1));
    while i < n {
        r += a[i] * b[i] as f32;
        i += 1;
    }
    r
}

/// AVX2 i8 dot product (sign-extend to i16, multiply-add pairs to i32).
#[target_feature(enable = "avx2")]
pub unsafe fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_si256();
    let mut acc1 = _mm256_setzero_si256();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 <= n: 32 bytes of each slice are in bounds.
        unsafe {
            let x0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i) as *const __m128i));
            let y0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i) as *const __m128i));
            let x1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i + 16) as *const __m128i));
            let y1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i + 16) as *const __m128i));
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(x0, y0));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(x1, y1));
        }
        i += 32;
    }
    let mut r = hsum_i32(_mm256_add_epi32(acc0, acc1));
    while i < n {
        r += a[i] as i32 * b[i] as i32;
        i += 1;
    }
    r
}

/// AVX2 dot products of one query against four vectors at once: four independent streams keep
/// more cache misses in flight than one vector at a time (the vectors come from memory).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_f32_x4(q: &[f32], v: [&[f32]; 4]) -> [f32; 4] {
    let n = v.iter().fold(q.len(), |m, x| m.min(x.len()));
    let pq = q.as_ptr();
    let p = v.map(|x| x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= every slice's length.
        unsafe {
            let x = _mm256_loadu_ps(pq.add(i));
            for j in 0..4 {
                acc[j] = _mm256_fmadd_ps(x, _mm256_loadu_ps(p[j].add(i)), acc[j]);
            }
        }
        i += 8;
    }
    let mut out = [hsum(acc[0]), hsum(acc[1]), hsum(acc[2]), hsum(acc[3])];
    while i < n {
        for j in 0..4 {
            out[j] += q[i] * v[j][i];
        }
        i += 1;
    }
    out
}

/// AVX2 squared Euclidean distances of one query to four vectors at once.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn l2sq_f32_x4(q: &[f32], v: [&[f32]; 4]) -> [f32; 4] {
    let n = v.iter().fold(q.len(), |m, x| m.min(x.len()));
    let pq = q.as_ptr();
    let p = v.map(|x| x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= every slice's length.
        unsafe {
            let x = _mm256_loadu_ps(pq.add(i));
            for j in 0..4 {
                let d = _mm256_sub_ps(x, _mm256_loadu_ps(p[j].add(i)));
                acc[j] = _mm256_fmadd_ps(d, d, acc[j]);
            }
        }
        i += 8;
    }
    let mut out = [hsum(acc[0]), hsum(acc[1]), hsum(acc[2]), hsum(acc[3])];
    while i < n {
        for j in 0..4 {
            let d = q[i] - v[j][i];
            out[j] += d * d;
        }
        i += 1;
    }
    out
}

/// AVX2 i8 dot products of one query against four vectors at once.
#[target_feature(enable = "avx2")]
pub unsafe fn dot_i8_x4(q: &[i8], v: [&[i8]; 4]) -> [i32; 4] {
    let n = v.iter().fold(q.len(), |m, x| m.min(x.len()));
    let pq = q.as_ptr();
    let p = v.map(|x| x.as_ptr());
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n <= every slice's length.
        unsafe {
            let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(pq.add(i) as *const __m128i));
            for j in 0..4 {
                let y = _mm256_cvtepi8_epi16(_mm_loadu_si128(p[j].add(i) as *const __m128i));
                acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(x, y));
            }
        }
        i += 16;
    }
    let mut out = [
        hsum_i32(acc[0]),
        hsum_i32(acc[1]),
        hsum_i32(acc[2]),
        hsum_i32(acc[3]),
    ];
    while i < n {
        for j in 0..4 {
            out[j] += q[i] as i32 * v[j][i] as i32;
        }
        i += 1;
    }
    out
}
