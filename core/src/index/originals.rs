//! Float32 originals of an int8 or binary index, for re-ranking.
//!
//! An int8 (binary) index searches its graph on 8-bit codes (sign bits), then re-ranks the best candidates by their
//! exact float32 distance. The originals are not kept in memory: a checkpoint stores them in
//! fixed-stride frames after the slot frames, and a search reads the few it needs from the
//! checkpoint file through a host-supplied [`CheckpointBytes`] (a `pread` on the native host,
//! an OPFS read in the browser). Vectors written since that checkpoint are held here in memory
//! until the next checkpoint takes them (bounded by the host's checkpoint trigger).

use crate::record::FRAME_HEADER;
use std::collections::HashMap;
use std::io;

/// Random reads of the checkpoint file an index was loaded from or last wrote. Hosts implement
/// it over whatever holds that file; it must keep returning that file's bytes (not a newer
/// generation's) until the host tells the index about the new checkpoint.
pub trait CheckpointBytes {
    /// Fills `buf` with the bytes at `offset`; an error if the file is shorter.
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// False for a source that has no file at all (searches then skip re-ranking).
    fn available(&self) -> bool {
        true
    }
}

impl CheckpointBytes for &[u8] {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "checkpoint too short"))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A source for callers with no checkpoint file (an index never checkpointed): every read fails.
pub struct NoCheckpoint;

impl CheckpointBytes for NoCheckpoint {
    fn read_exact_at(&mut self, _offset: u64, _buf: &mut [u8]) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no checkpoint file to read originals from",
        ))
    }
    fn available(&self) -> bool {
        false
    }
}

/// Where a checkpoint's originals frames sit: `slots` slots of `dim` little-endian f32 each, in
/// frames of `per_frame` slots starting at byte `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginalsLayout {
    /// Offset of the first originals frame's header.
    pub base: u64,
    /// Slots the checkpoint holds originals for.
    pub slots: u64,
    /// Slots per frame.
    pub per_frame: u64,
    /// Floats per slot.
    pub dim: u64,
}

impl OriginalsLayout {
    fn stride(&self) -> u64 {
        self.dim * 4
    }

    /// Byte offset of `slot`'s original in the checkpoint; `None` past the end.
    pub fn offset(&self, slot: u64) -> Option<u64> {
        if slot >= self.slots {
            return None;
        }
        let frame = slot / self.per_frame;
        let frame_bytes = FRAME_HEADER as u64 + self.per_frame * self.stride();
        Some(
            self.base
                + frame * frame_bytes
                + FRAME_HEADER as u64
                + (slot % self.per_frame) * self.stride(),
        )
    }
}

/// The originals an int8 or binary index knows: those written since its checkpoint (in memory) and
/// where the rest are in that checkpoint.
#[derive(Debug, Clone)]
pub struct Originals {
    dim: usize,
    /// Slot → row in `rows`.
    pending: HashMap<u32, usize>,
    rows: Vec<f32>,
    /// The checkpoint's originals; `None` before the first checkpoint with originals.
    on_disk: Option<OriginalsLayout>,
}

impl Originals {
    /// None known yet (a new index).
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            pending: HashMap::new(),
            rows: Vec::new(),
            on_disk: None,
        }
    }

    /// Known from a checkpoint laid out as `layout`.
    pub fn on_disk(dim: usize, layout: OriginalsLayout) -> Self {
        Self {
            on_disk: Some(layout),
            ..Self::new(dim)
        }
    }

    /// Records the original written to `slot`.
    pub fn set(&mut self, slot: u32, v: &[f32]) {
        debug_assert_eq!(v.len(), self.dim);
        match self.pending.get(&slot) {
            Some(&row) => self.rows[row * self.dim..(row + 1) * self.dim].copy_from_slice(v),
            None => {
                self.pending.insert(slot, self.rows.len() / self.dim);
                self.rows.extend_from_slice(v);
            }
        }
    }

    /// True when some original lives only in the checkpoint file.
    pub fn has_checkpointed(&self) -> bool {
        self.on_disk.is_some_and(|l| l.slots > 0)
    }

    /// Copies `slot`'s original into `out` (`dim` floats), from memory or through `src`.
    pub fn read(
        &self,
        slot: u32,
        src: &mut dyn CheckpointBytes,
        out: &mut [f32],
        buf: &mut Vec<u8>,
    ) -> io::Result<()> {
        if let Some(&row) = self.pending.get(&slot) {
            out.copy_from_slice(&self.rows[row * self.dim..(row + 1) * self.dim]);
            return Ok(());
        }
        let at = self
            .on_disk
            .and_then(|l| l.offset(slot as u64))
            .ok_or_else(|| io::Error::other(format!("no original for slot {slot}")))?;
        buf.resize(self.dim * 4, 0);
        src.read_exact_at(at, buf)?;
        decode_f32(buf, out);
        Ok(())
    }

    /// Appends the originals of slots `from..to` as one frame payload: little-endian f32 per
    /// slot, zeros where none is known (free slots).
    pub fn encode_frame(
        &self,
        from: u32,
        to: u32,
        src: &mut dyn CheckpointBytes,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let stride = self.dim * 4;
        let start = out.len();
        out.resize(start + (to - from) as usize * stride, 0);
        // The slots the old checkpoint covers are contiguous there: one read.
        if let Some(l) = self.on_disk {
            let end = (to as u64).min(l.slots);
            if (from as u64) < end
                && let Some(at) = l.offset(from as u64)
            {
                let n = (end - from as u64) as usize * stride;
                src.read_exact_at(at, &mut out[start..start + n])?;
            }
        }
        for s in from..to {
            if let Some(&row) = self.pending.get(&s) {
                let at = start + (s - from) as usize * stride;
                for (o, x) in out[at..at + stride]
                    .chunks_exact_mut(4)
                    .zip(&self.rows[row * self.dim..(row + 1) * self.dim])
                {
                    o.copy_from_slice(&x.to_le_bytes());
                }
            }
        }
        Ok(())
    }

    /// The index now reads its originals from a new checkpoint laid out as `layout`: the
    /// in-memory ones are dropped (that checkpoint holds them).
    pub fn checkpointed(&mut self, layout: OriginalsLayout) {
        *self = Self::on_disk(self.dim, layout);
    }

    /// Bytes held in memory.
    pub fn heap_bytes(&self) -> usize {
        self.rows.capacity() * 4 + self.pending.capacity() * 16
    }
}

/// Little-endian f32s from bytes (`out.len() * 4` of them).
pub fn decode_f32(bytes: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_offsets_skip_frame_headers() {
        let l = OriginalsLayout {
            base: 100,
            slots: 5,
            per_frame: 2,
            dim: 3,
        };
        assert_eq!(l.offset(0), Some(100 + 8));
        assert_eq!(l.offset(1), Some(100 + 8 + 12));
        assert_eq!(l.offset(2), Some(100 + (8 + 24) + 8));
        assert_eq!(l.offset(4), Some(100 + 2 * (8 + 24) + 8));
        assert_eq!(l.offset(5), None);
    }

    #[test]
    fn pending_overrides_checkpoint_and_frames_merge_both() {
        // A fake checkpoint: 8 bytes of junk, then one frame of 2 slots × 2 floats.
        let mut file = vec![0u8; 8 + 8];
        for x in [1f32, 2., 3., 4.] {
            file.extend_from_slice(&x.to_le_bytes());
        }
        let layout = OriginalsLayout {
            base: 8,
            slots: 2,
            per_frame: 2,
            dim: 2,
        };
        let mut o = Originals::on_disk(2, layout);
        o.set(1, &[9., 9.]);
        o.set(2, &[5., 6.]);
        o.set(2, &[7., 8.]);
        let mut src: &[u8] = &file;
        let (mut out, mut buf) = ([0f32; 2], Vec::new());
        o.read(0, &mut src, &mut out, &mut buf).unwrap();
        assert_eq!(out, [1., 2.]);
        o.read(1, &mut src, &mut out, &mut buf).unwrap();
        assert_eq!(out, [9., 9.]);
        o.read(2, &mut src, &mut out, &mut buf).unwrap();
        assert_eq!(out, [7., 8.]);
        assert!(o.read(3, &mut src, &mut out, &mut buf).is_err());
        let mut frame = Vec::new();
        o.encode_frame(0, 4, &mut src, &mut frame).unwrap();
        let mut all = [0f32; 8];
        decode_f32(&frame, &mut all);
        assert_eq!(all, [1., 2., 9., 9., 7., 8., 0., 0.]);
        let short: &[u8] = &file[..20];
        assert!(o.read(0, &mut { short }, &mut out, &mut buf).is_err());
    }
}
