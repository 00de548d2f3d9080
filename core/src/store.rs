//! Vector storage per precision: encodes vectors into codes by dense slot, decodes them back,
//! and computes the internal distance (lower is closer) from a prepared query to a slot.

use crate::kernels;
use crate::params::{Precision, SpaceType};
use serde::{Deserialize, Serialize};

/// Codes for every slot, contiguous, in one precision.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Codes {
    F32(Vec<f32>),
    F16(Vec<u16>),
    I16 { codes: Vec<i16>, scale: Vec<f32> },
    I8 { codes: Vec<i8>, scale: Vec<f32> },
    Bin(Vec<u64>),
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VectorStore {
    dim: usize,
    space: SpaceType,
    codes: Codes,
    /// Squared norm of each stored (decoded) vector: L2 on quantized codes needs it.
    sqnorm: Vec<f32>,
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
    pub fn new(dim: usize, space: SpaceType, precision: Precision) -> Self {
        let codes = match precision {
            Precision::Float32 => Codes::F32(Vec::new()),
            Precision::Float16 => Codes::F16(Vec::new()),
            Precision::Int16 => Codes::I16 {
                codes: Vec::new(),
                scale: Vec::new(),
            },
            Precision::Int8 => Codes::I8 {
                codes: Vec::new(),
                scale: Vec::new(),
            },
            Precision::Binary => Codes::Bin(Vec::new()),
        };
        Self {
            dim,
            space,
            codes,
            sqnorm: Vec::new(),
        }
    }

    /// Number of slots allocated.
    pub fn len(&self) -> usize {
        self.sqnorm.len()
    }

    /// True when no slot is allocated.
    pub fn is_empty(&self) -> bool {
        self.sqnorm.is_empty()
    }

    /// Bytes used by codes and side arrays (for memory reports).
    pub fn heap_bytes(&self) -> usize {
        let c = match &self.codes {
            Codes::F32(v) => v.capacity() * 4,
            Codes::F16(v) => v.capacity() * 2,
            Codes::I16 { codes, scale } => codes.capacity() * 2 + scale.capacity() * 4,
            Codes::I8 { codes, scale } => codes.capacity() + scale.capacity() * 4,
            Codes::Bin(v) => v.capacity() * 8,
        };
        c + self.sqnorm.capacity() * 4
    }

    /// Stores `v` at `slot`. `slot` must be `<= len()`; equal appends.
    pub fn set(&mut self, slot: usize, v: &[f32]) {
        debug_assert_eq!(v.len(), self.dim);
        let d = self.dim;
        let append = slot == self.len();
        match &mut self.codes {
            Codes::F32(c) => {
                if append {
                    c.extend_from_slice(v)
                } else {
                    c[slot * d..(slot + 1) * d].copy_from_slice(v)
                }
            }
            Codes::F16(c) => {
                if append {
                    c.resize(c.len() + d, 0)
                }
                for (o, x) in c[slot * d..(slot + 1) * d].iter_mut().zip(v) {
                    *o = half::f16::from_f32(*x).to_bits();
                }
            }
            Codes::I16 { codes, scale } => {
                if append {
                    codes.resize(codes.len() + d, 0);
                    scale.push(1.0);
                }
                let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
                let s = if max > 0.0 { max / 32767.0 } else { 1.0 };
                for (o, x) in codes[slot * d..(slot + 1) * d].iter_mut().zip(v) {
                    *o = (x / s).round().clamp(-32767.0, 32767.0) as i16;
                }
                scale[slot] = s;
            }
            Codes::I8 { codes, scale } => {
                if append {
                    codes.resize(codes.len() + d, 0);
                    scale.push(1.0);
                }
                scale[slot] = quantize_i8(v, &mut codes[slot * d..(slot + 1) * d]);
            }
            Codes::Bin(c) => {
                let w = words(d);
                if append {
                    c.resize(c.len() + w, 0)
                }
                to_bits(v, &mut c[slot * w..(slot + 1) * w]);
            }
        }
        if append {
            self.sqnorm.push(0.0);
        }
        let decoded = self.get(slot);
        self.sqnorm[slot] = kernels::dot_f32(&decoded, &decoded);
    }

    /// The decoded vector at `slot` (binary decodes to ±1).
    pub fn get(&self, slot: usize) -> Vec<f32> {
        let d = self.dim;
        match &self.codes {
            Codes::F32(c) => c[slot * d..(slot + 1) * d].to_vec(),
            Codes::F16(c) => c[slot * d..(slot + 1) * d]
                .iter()
                .map(|&h| half::f16::from_bits(h).to_f32())
                .collect(),
            Codes::I16 { codes, scale } => codes[slot * d..(slot + 1) * d]
                .iter()
                .map(|&x| x as f32 * scale[slot])
                .collect(),
            Codes::I8 { codes, scale } => codes[slot * d..(slot + 1) * d]
                .iter()
                .map(|&x| x as f32 * scale[slot])
                .collect(),
            Codes::Bin(c) => {
                let w = words(d);
                let bits = &c[slot * w..(slot + 1) * w];
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
        let d = self.dim;
        let s = slot as usize;
        match &self.codes {
            Codes::F32(c) => {
                let v = &c[s * d..(s + 1) * d];
                match self.space {
                    SpaceType::L2 => kernels::l2sq_f32(&q.f, v),
                    _ => -kernels::dot_f32(&q.f, v),
                }
            }
            Codes::F16(c) => {
                let dot = kernels::dot_f32_f16(&q.f, &c[s * d..(s + 1) * d]);
                self.dist_from_dot(dot, q.sq, self.sqnorm[s])
            }
            Codes::I16 { codes, scale } => {
                let dot = kernels::dot_f32_i16(&q.f, &codes[s * d..(s + 1) * d]) * scale[s];
                self.dist_from_dot(dot, q.sq, self.sqnorm[s])
            }
            Codes::I8 { codes, scale } => {
                let idot = kernels::dot_i8(&q.i8, &codes[s * d..(s + 1) * d]);
                self.dist_from_dot(idot as f32 * q.i8_scale * scale[s], q.sq, self.sqnorm[s])
            }
            Codes::Bin(c) => {
                let w = words(d);
                kernels::hamming(&q.bits, &c[s * w..(s + 1) * w]) as f32
            }
        }
    }

    /// Starts loading slot `slot`'s codes into cache (search calls it before `dist`).
    #[inline(always)]
    pub fn prefetch(&self, slot: u32) {
        let d = self.dim;
        let s = slot as usize;
        match &self.codes {
            Codes::F32(c) => kernels::prefetch(&c[s * d..(s + 1) * d]),
            Codes::F16(c) => kernels::prefetch(&c[s * d..(s + 1) * d]),
            Codes::I16 { codes, .. } => kernels::prefetch(&codes[s * d..(s + 1) * d]),
            Codes::I8 { codes, .. } => kernels::prefetch(&codes[s * d..(s + 1) * d]),
            Codes::Bin(c) => {
                let w = words(d);
                kernels::prefetch(&c[s * w..(s + 1) * w])
            }
        }
    }

    /// Distances from a prepared query to four slots at once (faster for float32, where the
    /// four vectors stream from memory together); the same values as four `dist` calls.
    #[inline]
    pub fn dist4(&self, q: &Query, slots: [u32; 4]) -> [f32; 4] {
        let d = self.dim;
        match &self.codes {
            Codes::F32(c) => {
                let v = slots.map(|s| &c[s as usize * d..(s as usize + 1) * d]);
                match self.space {
                    SpaceType::L2 => kernels::l2sq_f32_x4(&q.f, v),
                    _ => kernels::dot_f32_x4(&q.f, v).map(|x| -x),
                }
            }
            Codes::I8 { codes, scale } => {
                let v = slots.map(|s| &codes[s as usize * d..(s as usize + 1) * d]);
                let idot = kernels::dot_i8_x4(&q.i8, v);
                let mut out = [0f32; 4];
                for j in 0..4 {
                    let s = slots[j] as usize;
                    out[j] = self.dist_from_dot(
                        idot[j] as f32 * q.i8_scale * scale[s],
                        q.sq,
                        self.sqnorm[s],
                    );
                }
                out
            }
            _ => slots.map(|s| self.dist(q, s)),
        }
    }

    /// Internal distance between two stored slots (used while linking the graph).
    pub fn dist_slots(&self, a: u32, b: u32) -> f32 {
        let d = self.dim;
        let (x, y) = (a as usize, b as usize);
        match &self.codes {
            Codes::F32(c) => {
                let (va, vb) = (&c[x * d..(x + 1) * d], &c[y * d..(y + 1) * d]);
                match self.space {
                    SpaceType::L2 => kernels::l2sq_f32(va, vb),
                    _ => -kernels::dot_f32(va, vb),
                }
            }
            Codes::I8 { codes, scale } => {
                let idot = kernels::dot_i8(&codes[x * d..(x + 1) * d], &codes[y * d..(y + 1) * d]);
                self.dist_from_dot(
                    idot as f32 * scale[x] * scale[y],
                    self.sqnorm[x],
                    self.sqnorm[y],
                )
            }
            Codes::Bin(c) => {
                let w = words(d);
                kernels::hamming(&c[x * w..(x + 1) * w], &c[y * w..(y + 1) * w]) as f32
            }
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
        let d = self.dim;
        match &self.codes {
            Codes::F32(c) => c[slot * d..(slot + 1) * d]
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Codes::F16(c) => c[slot * d..(slot + 1) * d]
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Codes::I16 { codes, scale } => {
                codes[slot * d..(slot + 1) * d]
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
                out.extend_from_slice(&scale[slot].to_le_bytes());
            }
            Codes::I8 { codes, scale } => {
                out.extend(codes[slot * d..(slot + 1) * d].iter().map(|&x| x as u8));
                out.extend_from_slice(&scale[slot].to_le_bytes());
            }
            Codes::Bin(c) => {
                let w = words(d);
                c[slot * w..(slot + 1) * w]
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            }
        }
        out.extend_from_slice(&self.sqnorm[slot].to_le_bytes());
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
        match &mut self.codes {
            Codes::F32(c) => c.extend(b[..d * 4].chunks_exact(4).map(f4)),
            Codes::F16(c) => c.extend(
                b[..d * 2]
                    .chunks_exact(2)
                    .map(|x| u16::from_le_bytes([x[0], x[1]])),
            ),
            Codes::I16 { codes, scale } => {
                codes.extend(
                    b[..d * 2]
                        .chunks_exact(2)
                        .map(|x| i16::from_le_bytes([x[0], x[1]])),
                );
                scale.push(f4(&b[d * 2..d * 2 + 4]));
            }
            Codes::I8 { codes, scale } => {
                codes.extend(b[..d].iter().map(|&x| x as i8));
                scale.push(f4(&b[d..d + 4]));
            }
            Codes::Bin(c) => c.extend(
                b[..words(d) * 8]
                    .chunks_exact(8)
                    .map(|x| u64::from_le_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]])),
            ),
        }
        self.sqnorm.push(f4(&b[want - 4..]));
        Some(())
    }
}
