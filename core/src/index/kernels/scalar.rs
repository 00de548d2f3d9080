//! Scalar reference kernels: the definition every SIMD kernel is tested against.

/// Dot product.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Squared Euclidean distance.
pub fn l2sq_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Dot product with half-precision codes.
pub fn dot_f32_f16(a: &[f32], b: &[u16]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, &y)| x * half::f16::from_bits(y).to_f32())
        .sum()
}

/// Dot product with i16 codes.
pub fn dot_f32_i16(a: &[f32], b: &[i16]) -> f32 {
    a.iter().zip(b).map(|(x, &y)| x * y as f32).sum()
}

/// Integer dot product of i8 codes.
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// Hamming distance of packed bits.
pub fn hamming(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// Four dot products of one query against four vectors.
pub fn dot_f32_x4(q: &[f32], v: [&[f32]; 4]) -> [f32; 4] {
    v.map(|x| dot_f32(q, x))
}

/// Four squared Euclidean distances of one query to four vectors.
pub fn l2sq_f32_x4(q: &[f32], v: [&[f32]; 4]) -> [f32; 4] {
    v.map(|x| l2sq_f32(q, x))
}

/// Four integer dot products of one i8 query against four i8 vectors.
pub fn dot_i8_x4(q: &[i8], v: [&[i8]; 4]) -> [i32; 4] {
    v.map(|x| dot_i8(q, x))
}
