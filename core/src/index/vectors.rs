//! Vector storage per precision: encodes vectors into codes by dense slot, decodes them back,
//! and computes the internal distance (lower is closer) from a prepared query to a slot.

use crate::kernels;
use crate::params::{Precision, SpaceType};
use crate::rows::{Column, Rows};

/// Codes for every slot, contiguous, in one precision.
#[derive(Debug, Clone)]
enum Codes {
    F32(Rows<f32>),
    F16(Rows<u16>),
    I16 {
        codes: Rows<i16>,
        scale: Column<f32>,
    },
    I8 {
        codes: Rows<i8>,
        scale: Column<f32>,
    },
    Bin(Rows<u64>),
}

/// A query prepared once per search for the store's precision.
#[derive(Debug, Clone)]
pub struct Query {
    f: Vec<f32>,
    i8: Vec<i8>,
    i8_scale: f32,
    bits: Vec<u64>,
    sq: f32,
}

/// Dense vector storage indexed by slot.
#[derive(Debug, Clone)]
pub struct VectorStore {
    dim: usize,
    space: SpaceType,
    codes: Codes,
    /// Number of slots.
    len: usize,
    /// Squared norm of each stored (decoded) vector, kept only where a distance needs it
    /// (L2 on quantized codes); empty otherwise, saving 4 bytes a vector.
    sqnorm: Column<f32>,
}

fn words(dim: usize) -> usize {
    dim.div_ceil(64)
}

fn quantize_i8(v: &[f32], out: &mut [i8]) -> f32 {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    for (o, x) in out.iter_mut().zip(v) {
        *o = (x / scale).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

fn to_bits(v: &[f32], out: &mut [u64]) {
    out.iter_mut().for_each(|w| *w = 0);
    for (i, x) in v.iter().enumerate() {
        if *x > 0.0 {
            out[i / 64] |= 1 << (i % 64);
        }
    }
}

impl VectorStore {
    /// An empty store.
    /// Says `n` vectors will be pushed (a checkpoint load; see [`Rows::expect_rows`]).
    pub(crate) fn expect_rows(&mut self, n: usize) {
        match &mut self.codes {
            Codes::F32(c) => c.expect_rows(n),
            Codes::F16(c) => c.expect_rows(n),
            Codes::I16 { codes, .. } => codes.expect_rows(n),
            Codes::I8 { codes, .. } => codes.expect_rows(n),
            Codes::Bin(c) => c.expect_rows(n),
        }
    }

    pub fn new(dim: usize, space: SpaceType, precision: Precision) -> Self {
        let codes = match precision {
            Precision::Float32 => Codes::F32(Rows::new(dim)),
            Precision::Float16 => Codes::F16(Rows::new(dim)),
            Precision::Int16 => Codes::I16 {
                codes: Rows::new(dim),
                scale: Column::default(),
            },
            Precision::Int8 => Codes::I8 {
                codes: Rows::new(dim),
                scale: Column::default(),
            },
            Precision::Binary => Codes::Bin(Rows::new(words(dim))),
        };
        Self {
            dim,
            space,
            codes,
            len: 0,
            sqnorm: Column::default(),
        }
    }

    /// Number of slots allocated.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes used by codes and side arrays (for memory reports).
    pub fn heap_bytes(&self) -> usize {
        let c = match &self.codes {
            Codes::F32(v) => v.heap_bytes(),
            Codes::F16(v) => v.heap_bytes(),
            Codes::I16 { codes, scale } => codes.heap_bytes() + scale.heap_bytes(),
            Codes::I8 { codes, scale } => codes.heap_bytes() + scale.heap_bytes(),
            Codes::Bin(v) => v.heap_bytes(),
        };
        c + self.sqnorm.heap_bytes()
    }

    /// Stores `v` at `slot`. `slot` must be `<= len()`; equal appends.
    pub fn set(&mut self, slot: usize, v: &[f32]) {
        debug_assert_eq!(v.len(), self.dim);
        let append = slot == self.len();
        match &mut self.codes {
            Codes::F32(c) => {
                if append {
                    c.push_row(v)
                } else {
                    c.row_mut(slot).copy_from_slice(v)
                }
            }
            Codes::F16(c) => {
                if append {
                    c.push_default();
                }
                for (o, x) in c.row_mut(slot).iter_mut().zip(v) {
                    *o = half::f16::from_f32(*x).to_bits();
                }
            }
            Codes::I16 { codes, scale } => {
                if append {
                    codes.push_default();
                    scale.push(1.0);
                }
                let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
                let s = if max > 0.0 { max / 32767.0 } else { 1.0 };
                for (o, x) in codes.row_mut(slot).iter_mut().zip(v) {
                    *o = (x / s).round().clamp(-32767.0, 32767.0) as i16;
                }
                scale[slot] = s;
            }
            Codes::I8 { codes, scale } => {
                if append {
                    codes.push_default();
                    scale.push(1.0);
                }
                scale[slot] = quantize_i8(v, codes.row_mut(slot));
            }
            Codes::Bin(c) => {
                if append {
                    c.push_default();
                }
                to_bits(v, c.row_mut(slot));
            }
        }
        if append {
            self.len += 1;
        }
        if self.keeps_sqnorm() {
            let decoded = self.get(slot);
            let sq = kernels::dot_f32(&decoded, &decoded);
            if append {
                self.sqnorm.push(sq);
            } else {
                self.sqnorm[slot] = sq;
            }
        }
    }

    /// The decoded vector at `slot` (binary decodes to ±1).
    pub fn get(&self, slot: usize) -> Vec<f32> {
        let d = self.dim;
        match &self.codes {
            Codes::F32(c) => c.row(slot).to_vec(),
            Codes::F16(c) => c
                .row(slot)
                .iter()
                .map(|&h| half::f16::from_bits(h).to_f32())
                .collect(),
            Codes::I16 { codes, scale } => codes
                .row(slot)
                .iter()
                .map(|&x| x as f32 * scale[slot])
                .collect(),
            Codes::I8 { codes, scale } => codes
                .row(slot)
                .iter()
                .map(|&x| x as f32 * scale[slot])
                .collect(),
            Codes::Bin(c) => {
                let bits = c.row(slot);
                (0..d)
                    .map(|i| {
                        if bits[i / 64] >> (i % 64) & 1 == 1 {
                            1.0
                        } else {
                            -1.0
                        }
                    })
                    .collect()
            }
        }
    }

    /// Prepares `q` (already normalised for cosine) for repeated distance calls.
    pub fn prepare(&self, q: &[f32]) -> Query {
        let mut query = Query {
            f: q.to_vec(),
            i8: Vec::new(),
            i8_scale: 1.0,
            bits: Vec::new(),
            sq: kernels::dot_f32(q, q),
        };
        match &self.codes {
            Codes::I8 { .. } => {
                query.i8 = vec![0; q.len()];
                query.i8_scale = quantize_i8(q, &mut query.i8);
                let dq: Vec<f32> = query
                    .i8
                    .iter()
                    .map(|&x| x as f32 * query.i8_scale)
                    .collect();
                query.sq = kernels::dot_f32(&dq, &dq);
            }
            Codes::Bin(_) => {
                query.bits = vec![0; words(q.len())];
                to_bits(q, &mut query.bits);
            }
            _ => {}
        }
        query
    }

    /// True when distances need stored squared norms (L2 on quantized codes).
    fn keeps_sqnorm(&self) -> bool {
        self.space == SpaceType::L2
            && matches!(
                self.codes,
                Codes::F16(_) | Codes::I16 { .. } | Codes::I8 { .. }
            )
    }

    /// Squared norm of `slot`'s stored vector where kept, else 0 (never read then).
    #[inline(always)]
    fn sq(&self, slot: usize) -> f32 {
        self.sqnorm.get(slot).unwrap_or(0.0)
    }

    #[inline]
    fn dist_from_dot(&self, dot: f32, sq_a: f32, sq_b: f32) -> f32 {
        match self.space {
            SpaceType::L2 => (sq_a + sq_b - 2.0 * dot).max(0.0),
            SpaceType::Cosine | SpaceType::Ip => -dot,
        }
    }

    /// Internal distance (lower is closer) from a prepared query to `slot`.
    #[inline]
    pub fn dist(&self, q: &Query, slot: u32) -> f32 {
        let s = slot as usize;
        match &self.codes {
            Codes::F32(c) => {
                let v = c.row(s);
                match self.space {
                    SpaceType::L2 => kernels::l2sq_f32(&q.f, v),
                    _ => -kernels::dot_f32(&q.f, v),
                }
            }
            Codes::F16(c) => {
                let dot = kernels::dot_f32_f16(&q.f, c.row(s));
                self.dist_from_dot(dot, q.sq, self.sq(s))
            }
            Codes::I16 { codes, scale } => {
                let dot = kernels::dot_f32_i16(&q.f, codes.row(s)) * scale[s];
                self.dist_from_dot(dot, q.sq, self.sq(s))
            }
            Codes::I8 { codes, scale } => {
                let idot = kernels::dot_i8(&q.i8, codes.row(s));
                self.dist_from_dot(idot as f32 * q.i8_scale * scale[s], q.sq, self.sq(s))
            }
            Codes::Bin(c) => kernels::hamming(&q.bits, c.row(s)) as f32,
        }
    }

    /// Starts loading slot `slot`'s codes into cache (search calls it before `dist`).
    #[inline(always)]
    pub fn prefetch(&self, slot: u32) {
        let s = slot as usize;
        match &self.codes {
            Codes::F32(c) => kernels::prefetch(c.row(s)),
            Codes::F16(c) => kernels::prefetch(c.row(s)),
            Codes::I16 { codes, .. } => kernels::prefetch(codes.row(s)),
            Codes::I8 { codes, .. } => kernels::prefetch(codes.row(s)),
            Codes::Bin(c) => kernels::prefetch(c.row(s)),
        }
    }

    /// Distances from a prepared query to four slots at once (faster for float32, where the
    /// four vectors stream from memory together); the same values as four `dist` calls.
    #[inline]
    pub fn dist4(&self, q: &Query, slots: [u32; 4]) -> [f32; 4] {
        match &self.codes {
            Codes::F32(c) => {
                let v = slots.map(|s| c.row(s as usize));
                match self.space {
                    SpaceType::L2 => kernels::l2sq_f32_x4(&q.f, v),
                    _ => kernels::dot_f32_x4(&q.f, v).map(|x| -x),
                }
            }
            Codes::I8 { codes, scale } => {
                let v = slots.map(|s| codes.row(s as usize));
                let idot = kernels::dot_i8_x4(&q.i8, v);
                let mut out = [0f32; 4];
                for j in 0..4 {
                    let s = slots[j] as usize;
                    out[j] = self.dist_from_dot(
                        idot[j] as f32 * q.i8_scale * scale[s],
                        q.sq,
                        self.sq(s),
                    );
                }
                out
            }
            _ => slots.map(|s| self.dist(q, s)),
        }
    }

    /// Internal distance between two stored slots (used while linking the graph).
    pub fn dist_slots(&self, a: u32, b: u32) -> f32 {
        let (x, y) = (a as usize, b as usize);
        match &self.codes {
            Codes::F32(c) => {
                let (va, vb) = (c.row(x), c.row(y));
                match self.space {
                    SpaceType::L2 => kernels::l2sq_f32(va, vb),
                    _ => -kernels::dot_f32(va, vb),
                }
            }
            Codes::I8 { codes, scale } => {
                let idot = kernels::dot_i8(codes.row(x), codes.row(y));
                self.dist_from_dot(idot as f32 * scale[x] * scale[y], self.sq(x), self.sq(y))
            }
            Codes::Bin(c) => kernels::hamming(c.row(x), c.row(y)) as f32,
            Codes::F16(_) | Codes::I16 { .. } => {
                let q = self.prepare(&self.get(x));
                self.dist(&q, b)
            }
        }
    }

    /// Turns an internal distance into Endee's similarity (higher is better).
    pub fn similarity(&self, dist: f32) -> f32 {
        match (&self.codes, self.space) {
            (Codes::Bin(_), SpaceType::L2) => 1.0 - dist,
            (Codes::Bin(_), _) => 1.0 - 2.0 * dist / self.dim as f32,
            (_, SpaceType::L2) => 1.0 - dist,
            _ => -dist,
        }
    }
}

/// Raw per-slot bytes, for checkpoints: codes, scale and squared norm, exactly as held, so
/// that a loaded index ranks identically to the one saved.
impl VectorStore {
    /// Appends slot `slot`'s raw state to `out`.
    pub(crate) fn encode_slot(&self, slot: usize, out: &mut Vec<u8>) {
        match &self.codes {
            Codes::F32(c) => c
                .row(slot)
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Codes::F16(c) => c
                .row(slot)
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Codes::I16 { codes, scale } => {
                codes
                    .row(slot)
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
                out.extend_from_slice(&scale[slot].to_le_bytes());
            }
            Codes::I8 { codes, scale } => {
                out.extend(codes.row(slot).iter().map(|&x| x as u8));
                out.extend_from_slice(&scale[slot].to_le_bytes());
            }
            Codes::Bin(c) => {
                c.row(slot)
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            }
        }
        out.extend_from_slice(&self.sq(slot).to_le_bytes());
    }

    /// Appends a slot from bytes made by `encode_slot`; `None` if the length is wrong.
    pub(crate) fn push_encoded(&mut self, b: &[u8]) -> Option<()> {
        let d = self.dim;
        let want = match &self.codes {
            Codes::F32(_) => d * 4,
            Codes::F16(_) => d * 2,
            Codes::I16 { .. } => d * 2 + 4,
            Codes::I8 { .. } => d + 4,
            Codes::Bin(_) => words(d) * 8,
        } + 4;
        if b.len() != want {
            return None;
        }
        let f4 = |x: &[u8]| f32::from_le_bytes([x[0], x[1], x[2], x[3]]);
        // Every value a distance reads must be finite: a NaN makes the graph's orderings lie.
        let finite = f4(&b[want - 4..]).is_finite()
            && match &self.codes {
                Codes::F32(_) => b[..d * 4].chunks_exact(4).all(|x| f4(x).is_finite()),
                Codes::F16(_) => b[..d * 2]
                    .chunks_exact(2)
                    .all(|x| half::f16::from_le_bytes([x[0], x[1]]).is_finite()),
                Codes::I16 { .. } => f4(&b[d * 2..d * 2 + 4]).is_finite(),
                Codes::I8 { .. } => f4(&b[d..d + 4]).is_finite(),
                Codes::Bin(_) => true,
            };
        if !finite {
            return None;
        }
        match &mut self.codes {
            Codes::F32(c) => c.push_iter(b[..d * 4].chunks_exact(4).map(f4)),
            Codes::F16(c) => c.push_iter(
                b[..d * 2]
                    .chunks_exact(2)
                    .map(|x| u16::from_le_bytes([x[0], x[1]])),
            ),
            Codes::I16 { codes, scale } => {
                codes.push_iter(
                    b[..d * 2]
                        .chunks_exact(2)
                        .map(|x| i16::from_le_bytes([x[0], x[1]])),
                );
                scale.push(f4(&b[d * 2..d * 2 + 4]));
            }
            Codes::I8 { codes, scale } => {
                codes.push_iter(b[..d].iter().map(|&x| x as i8));
                scale.push(f4(&b[d..d + 4]));
            }
            Codes::Bin(c) => c.push_iter(
                b[..words(d) * 8]
                    .chunks_exact(8)
                    .map(|x| u64::from_le_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]])),
            ),
        }
        if self.keeps_sqnorm() {
            self.sqnorm.push(f4(&b[want - 4..]));
        }
        self.len += 1;
        Some(())
    }
}
