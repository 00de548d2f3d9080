//! Checkpoints: the full image of an index as a sequence of CRC-framed chunks.
//!
//! Layout: a header frame (format, version, params, slot count, free list, graph state), slot
//! frames of up to [`SLOTS_PER_FRAME`] slots each, for int8 and binary indexes (version 2) originals
//! frames of [`SLOTS_PER_FRAME`] slots of raw little-endian f32 each (fixed stride, so a search
//! can read one original at a computed offset: [`OriginalsLayout`]), and an end frame. The encoder is pull-based
//! ([`CheckpointEncoder::next_chunk`]) so a multi-GB index is never one buffer; the decoder
//! reads from any `Read` and refuses a file that lacks its end frame.

use crate::filter;
use crate::hnsw::{Graph, GraphMeta};
use crate::index::{Index, keeps_originals, packs_links};
use crate::originals::{CheckpointBytes, NoCheckpoint, Originals, OriginalsLayout};
use crate::params::IndexParams;
use crate::record::{FRAME_HEADER, FrameReader, frame_into};
use crate::slots::SlotData;
use crate::vectors::VectorStore;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use thiserror::Error;

/// Format name written in every checkpoint header.
pub const FORMAT: &str = "cairn-checkpoint";
/// Current checkpoint format version (2 added originals frames; 1 is still read).
pub const VERSION: u32 = 2;
/// Slots per frame.
pub const SLOTS_PER_FRAME: usize = 512;

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    params: IndexParams,
    slots: u64,
    free: Vec<u32>,
    graph: GraphMeta,
    /// Originals frames follow the slot frames (absent in version 1).
    #[serde(default)]
    originals: bool,
    /// Graph state of each further dense field of a collection (absent before them).
    #[serde(default)]
    extra_graphs: Vec<GraphMeta>,
}

#[derive(Serialize, Deserialize)]
struct SlotBlob {
    data: SlotData,
    #[serde(with = "serde_bytes")]
    code: Vec<u8>,
    links: Vec<u32>,
    /// The slot in each further dense field (absent before them).
    #[serde(default)]
    extra: Vec<ExtraBlob>,
}

/// [`SlotBlob`] as a load reads it: the id, meta, filter and vector code borrowed from the
/// frame, so loading a slot copies them once, into the index, and allocates nothing for them.
#[derive(Deserialize)]
struct SlotBlobRef<'a> {
    #[serde(borrow)]
    data: SlotDataRef<'a>,
    #[serde(borrow)]
    code: &'a [u8],
    links: Vec<u32>,
    #[serde(default)]
    extra: Vec<ExtraBlob>,
}

/// [`SlotData`] borrowed from a frame (same fields, same order).
#[derive(Deserialize)]
struct SlotDataRef<'a> {
    #[serde(borrow)]
    id: Option<&'a str>,
    #[serde(borrow)]
    meta: &'a [u8],
    #[serde(borrow)]
    filter: &'a str,
    norm: f32,
    sparse_indices: Vec<u32>,
    sparse_values: Vec<f32>,
}

/// One slot of a further dense field: its (pooled) vector's code, its links, and a
/// `multi_vector` field's vectors.
#[derive(Serialize, Deserialize)]
struct ExtraBlob {
    #[serde(with = "serde_bytes")]
    code: Vec<u8>,
    links: Vec<u32>,
    members: Vec<f32>,
}

#[derive(Serialize, Deserialize)]
struct End {
    slots: u64,
}

/// Why a checkpoint could not be loaded.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// Reading failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// Truncated, corrupt or inconsistent.
    #[error("corrupt checkpoint: {0}")]
    Corrupt(String),
    /// Written by a newer CairnDB.
    #[error("unsupported checkpoint version {0} (this build reads {VERSION})")]
    Version(u32),
}

enum Stage {
    Header,
    Slots(usize),
    Originals(usize),
    End,
    Done,
}

/// Produces a checkpoint of `index` chunk by chunk.
pub struct CheckpointEncoder<'a> {
    index: &'a Index,
    /// `None`: the index keeps no originals on disk (reads fail as [`NoCheckpoint`]'s).
    src: Option<&'a mut dyn CheckpointBytes>,
    stage: Stage,
    /// Bytes produced so far.
    written: u64,
    layout: Option<OriginalsLayout>,
}

fn mp<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec(v).unwrap_or_default()
}

impl<'a> CheckpointEncoder<'a> {
    /// An encoder over a consistent view of `index` (hold it unchanged until done), for an
    /// index with no checkpointed originals (never checkpointed, or neither int8 nor binary).
    pub fn new(index: &'a Index) -> Self {
        Self {
            index,
            src: None,
            stage: Stage::Header,
            written: 0,
            layout: None,
        }
    }

    /// An encoder that reads originals the index keeps on disk through `src` (the checkpoint
    /// the index was loaded from or last wrote).
    pub fn with_source(index: &'a Index, src: &'a mut dyn CheckpointBytes) -> Self {
        Self {
            index,
            src: Some(src),
            stage: Stage::Header,
            written: 0,
            layout: None,
        }
    }

    /// Where this checkpoint's originals frames are (once they were produced).
    pub fn originals_layout(&self) -> Option<OriginalsLayout> {
        self.layout
    }

    /// Appends the next chunk to `out`; returns false once everything was produced. Fails only
    /// when reading originals from the old checkpoint fails.
    pub fn next_chunk(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        if self.index.pending_links() > 0 {
            // Its graph would not hold those vectors: a reload could never find them.
            return Err(io::Error::other(
                "vectors replayed with deferred links must be linked before a checkpoint",
            ));
        }
        let before = out.len();
        let more = self.produce(out)?;
        self.written += (out.len() - before) as u64;
        Ok(more)
    }

    fn after_slots(&self) -> Stage {
        match self.index.originals {
            Some(_) if !self.index.slots.is_empty() => Stage::Originals(0),
            _ => Stage::End,
        }
    }

    fn produce(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        let ix = self.index;
        match self.stage {
            Stage::Header => {
                let h = Header {
                    format: FORMAT.into(),
                    version: VERSION,
                    params: ix.params.clone(),
                    slots: ix.slots.len() as u64,
                    free: ix.free.clone(),
                    graph: ix.graph.meta(),
                    originals: ix.originals.is_some(),
                    extra_graphs: ix.extra.iter().map(|f| f.graph.meta()).collect(),
                };
                frame_into(&mp(&h), out);
                self.stage = if ix.slots.is_empty() {
                    self.after_slots()
                } else {
                    Stage::Slots(0)
                };
                Ok(true)
            }
            Stage::Slots(from) => {
                let to = (from + SLOTS_PER_FRAME).min(ix.slots.len());
                let blobs: Vec<SlotBlob> = (from..to)
                    .map(|s| {
                        let mut code = Vec::new();
                        ix.store.encode_slot(s, &mut code);
                        SlotBlob {
                            data: ix.slots.to_data(s as u32),
                            code,
                            links: ix.graph.encode_slot(s),
                            extra: ix
                                .extra
                                .iter()
                                .map(|f| {
                                    let mut code = Vec::new();
                                    f.store.encode_slot(s, &mut code);
                                    ExtraBlob {
                                        code,
                                        links: f.graph.encode_slot(s),
                                        members: f.members.get(s).cloned().unwrap_or_default(),
                                    }
                                })
                                .collect(),
                        }
                    })
                    .collect();
                frame_into(&mp(&blobs), out);
                self.stage = if to == ix.slots.len() {
                    self.after_slots()
                } else {
                    Stage::Slots(to)
                };
                Ok(true)
            }
            Stage::Originals(from) => {
                let Some(o) = &ix.originals else {
                    self.stage = Stage::End;
                    return Ok(true);
                };
                if from == 0 {
                    self.layout = Some(originals_layout(
                        self.written,
                        ix.slots.len() as u64,
                        ix.params.dim,
                    ));
                }
                let to = (from + SLOTS_PER_FRAME).min(ix.slots.len());
                // Framed in place: header first, then the payload straight into `out`.
                let at = out.len();
                out.resize(at + FRAME_HEADER, 0);
                match self.src.as_deref_mut() {
                    Some(src) => o.encode_frame(from as u32, to as u32, src, out)?,
                    None => o.encode_frame(from as u32, to as u32, &mut NoCheckpoint, out)?,
                }
                let payload = &out[at + FRAME_HEADER..];
                let (len, crc) = (payload.len() as u32, crc32fast::hash(payload));
                out[at..at + 4].copy_from_slice(&len.to_le_bytes());
                out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
                self.stage = if to == ix.slots.len() {
                    Stage::End
                } else {
                    Stage::Originals(to)
                };
                Ok(true)
            }
            Stage::End => {
                frame_into(
                    &mp(&End {
                        slots: ix.slots.len() as u64,
                    }),
                    out,
                );
                self.stage = Stage::Done;
                Ok(true)
            }
            Stage::Done => Ok(false),
        }
    }

    /// The whole checkpoint in one buffer (tests and small indexes only).
    pub fn to_vec(mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while self.next_chunk(&mut out)? {}
        Ok(out)
    }
}

/// What [`write_checkpoint`] produced.
pub struct WrittenCheckpoint<W> {
    /// The writer, flushed by nothing: the caller syncs it.
    pub out: W,
    /// Bytes written.
    pub size: u64,
    /// SHA-256 of those bytes, hex.
    pub sha256: String,
    /// Where its originals are: pass it to [`Index::checkpointed`] once this checkpoint is the
    /// file searches read.
    pub originals: Option<OriginalsLayout>,
}

/// Where originals frames of `slots` slots start at byte `base` of a checkpoint.
fn originals_layout(base: u64, slots: u64, dim: usize) -> OriginalsLayout {
    OriginalsLayout {
        base,
        slots,
        per_frame: SLOTS_PER_FRAME as u64,
        dim: dim as u64,
    }
}

fn corrupt(m: impl Into<String>) -> CheckpointError {
    CheckpointError::Corrupt(m.into())
}

/// Encodes `ix` as a checkpoint into `out`, reading originals it keeps on disk through `src`
/// (the checkpoint it was loaded from or last wrote); returns `out`, the checkpoint's size and
/// SHA-256, computed on the bytes as they go out, and its originals layout. Hosts keep that
/// digest beside the checkpoint (`paths::checkpoint_digest`) so a backup reads the checkpoint
/// once. `out` is not synced.
pub fn write_checkpoint<W: Write>(
    ix: &Index,
    src: &mut dyn CheckpointBytes,
    out: W,
) -> io::Result<WrittenCheckpoint<W>> {
    let mut w = crate::digest::HashingWriter::new(out);
    let mut enc = CheckpointEncoder::with_source(ix, src);
    let mut buf = Vec::with_capacity(2 << 20);
    while enc.next_chunk(&mut buf)? {
        if buf.len() >= 1 << 20 {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)?;
    let originals = enc.originals_layout();
    let (out, size, sha256) = w.finish();
    Ok(WrittenCheckpoint {
        out,
        size,
        sha256,
        originals,
    })
}

/// Appends one decoded slot to an index being loaded.
fn read_slot(ix: &mut Index, b: SlotBlobRef<'_>, total: usize) -> Result<(), CheckpointError> {
    let slot = ix.slots.len() as u32;
    if slot as usize >= total {
        return Err(corrupt("more slots than the header says"));
    }
    ix.store
        .push_encoded(b.code)
        .ok_or_else(|| corrupt(format!("slot {slot} vector: wrong size or not finite")))?;
    ix.graph
        .push_encoded(&b.links, total)
        .ok_or_else(|| corrupt(format!("slot {slot} links")))?;
    if b.extra.len() != ix.extra.len() {
        return Err(corrupt(format!(
            "slot {slot}: wrong number of further fields"
        )));
    }
    for (f, e) in ix.extra.iter_mut().zip(b.extra) {
        f.store
            .push_encoded(&e.code)
            .ok_or_else(|| corrupt(format!("slot {slot} field {:?} vector", f.spec.name)))?;
        f.graph
            .push_encoded(&e.links, total)
            .ok_or_else(|| corrupt(format!("slot {slot} field {:?} links", f.spec.name)))?;
        let multi = f.spec.pooling.is_some();
        let d = f.spec.dim;
        let ok = e.members.iter().all(|x| x.is_finite())
            && e.members.len() % d == 0
            && e.members.len() / d <= crate::params::MAX_MULTI_VECTORS
            && (multi || e.members.is_empty());
        if !ok {
            return Err(corrupt(format!(
                "slot {slot} field {:?} vectors",
                f.spec.name
            )));
        }
        if multi {
            f.members.push(e.members);
        }
    }
    let d = b.data;
    match d.id {
        Some(id) => {
            if id.is_empty() || ix.slots.contains(id) {
                return Err(corrupt(format!("duplicate or empty id {id:?}")));
            }
            ix.check_payload(
                id,
                d.meta,
                d.filter,
                d.norm,
                (&d.sparse_indices, &d.sparse_values),
                crate::index::Checks::Stored,
            )
            .map_err(|e| corrupt(format!("slot {slot}: {e}")))?;
            ix.slots.put(
                slot,
                id,
                d.meta,
                d.filter,
                d.norm,
                &d.sparse_indices,
                &d.sparse_values,
            );
            ix.set_live(slot, true);
            ix.sparse.add(slot, &d.sparse_indices, &d.sparse_values);
            let stored = filter::parse_object(d.filter).map_err(|e| corrupt(e.to_string()))?;
            ix.filters.add(slot, &stored);
        }
        None => ix.slots.push_empty(),
    }
    Ok(())
}

/// Most ids a load reserves table room for before reading them.
const MAX_RESERVED_IDS: usize = 1 << 20;

/// Loads an index from a checkpoint. An int8 or binary index's originals stay in the file (the frames
/// are checked, not kept): search it with that file as the [`CheckpointBytes`].
pub fn read_checkpoint<R: Read>(r: R) -> Result<Index, CheckpointError> {
    let mut fr = FrameReader::new(r);
    let head = fr
        .next_payload()?
        .ok_or_else(|| corrupt("missing header"))?;
    let h: Header = rmp_serde::from_slice(&head).map_err(|e| corrupt(format!("header: {e}")))?;
    if h.format != FORMAT {
        return Err(corrupt(format!("not a checkpoint (format {:?})", h.format)));
    }
    if h.version == 0 || h.version > VERSION {
        return Err(CheckpointError::Version(h.version));
    }
    h.params
        .validate()
        .map_err(|e| corrupt(format!("params: {e}")))?;
    let p = h.params.clone();
    if h.originals && !keeps_originals(p.precision) {
        return Err(corrupt(
            "originals in a checkpoint of a precision without them",
        ));
    }
    let total = usize::try_from(h.slots).map_err(|_| corrupt("slot count"))?;
    if h.extra_graphs.len() != p.extra_fields().len() {
        return Err(corrupt(
            "graph state for a different number of further fields",
        ));
    }
    let extra = p
        .extra_fields()
        .iter()
        .map(crate::index::fields::ExtraField::new)
        .collect();
    let mut ix = Index::from_parts(
        VectorStore::new(p.dim, p.space, p.precision),
        Graph::new(p.m, p.ef_construction, 0, packs_links(p.precision)),
        p,
    );
    ix.extra = extra;
    // One buffer for every frame: per-frame buffers of up to a few MiB would each be freed
    // back to an allocator that keeps some of them resident after the load.
    let mut buf = Vec::new();
    fn next<'b, R: Read>(
        fr: &mut FrameReader<R>,
        buf: &'b mut Vec<u8>,
        what: &str,
    ) -> Result<&'b [u8], CheckpointError> {
        if fr.next_payload_into(buf)? {
            Ok(buf)
        } else {
            Err(corrupt(format!("truncated: no {what} frame")))
        }
    }
    // The id table sized once (bounded: the count comes from the file, which may lie).
    ix.slots.reserve_ids(total.min(MAX_RESERVED_IDS));
    ix.store.expect_rows(total);
    while ix.slots.len() < total {
        let payload = next(&mut fr, &mut buf, "slot")?;
        let blobs: Vec<SlotBlobRef<'_>> =
            rmp_serde::from_slice(payload).map_err(|e| corrupt(format!("slots: {e}")))?;
        for b in blobs {
            read_slot(&mut ix, b, total)?;
        }
    }
    if h.originals {
        let dim = ix.params.dim;
        // The first originals frame starts where the slot frames ended.
        let layout = originals_layout(fr.valid_len(), h.slots, dim);
        for from in (0..total).step_by(SLOTS_PER_FRAME) {
            let n = (total - from).min(SLOTS_PER_FRAME);
            let frame = next(&mut fr, &mut buf, "originals")?;
            if frame.len() != n * dim * 4 {
                return Err(corrupt(format!(
                    "originals frame at slot {from}: wrong size"
                )));
            }
            if !frame
                .chunks_exact(4)
                .all(|x| f32::from_le_bytes([x[0], x[1], x[2], x[3]]).is_finite())
            {
                return Err(corrupt(format!(
                    "originals frame at slot {from}: NaN or infinity"
                )));
            }
        }
        ix.originals = Some(Originals::on_disk(dim, layout));
    }
    let end: End = rmp_serde::from_slice(next(&mut fr, &mut buf, "end")?)
        .map_err(|e| corrupt(format!("end: {e}")))?;
    if end.slots != h.slots {
        return Err(corrupt("end frame slot count differs from header"));
    }
    if h.free
        .iter()
        .any(|&s| s as usize >= total || ix.live.contains(s))
    {
        return Err(corrupt("free list names a live or unknown slot"));
    }
    let mut seen = roaring::RoaringBitmap::new();
    if !h.free.iter().all(|&s| seen.insert(s)) {
        return Err(corrupt("free list names a slot twice"));
    }
    ix.free = h.free;
    ix.graph.set_meta(h.graph);
    ix.graph
        .validate()
        .map_err(|e| corrupt(format!("graph: {e}")))?;
    for (f, meta) in ix.extra.iter_mut().zip(h.extra_graphs) {
        f.graph.set_meta(meta);
        f.graph
            .validate()
            .map_err(|e| corrupt(format!("field {:?} graph: {e}", f.spec.name)))?;
    }
    ix.slots.shrink_to_fit();
    Ok(ix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::SearchRequest;
    use crate::params::{Precision, SpaceType};
    use crate::record::{Record, UpsertItem};

    fn int8_index() -> Index {
        let p = IndexParams::new(8, SpaceType::L2).with_precision(Precision::Int8);
        let mut ix = Index::new(p).unwrap_or_else(|e| panic!("{e}"));
        let items = (0..50)
            .map(|i| UpsertItem {
                id: format!("v{i}"),
                vector: (0..8).map(|d| ((i * 7 + d * 3) % 11) as f32).collect(),
                meta: vec![],
                filter: String::new(),
                norm: 1.0,
                sparse_indices: vec![],
                sparse_values: vec![],
            })
            .collect();
        ix.apply(&Record::Upsert(items));
        ix
    }

    /// The header as version 1 wrote it (no `originals` field).
    #[derive(Serialize)]
    struct HeaderV1 {
        format: String,
        version: u32,
        params: IndexParams,
        slots: u64,
        free: Vec<u32>,
        graph: GraphMeta,
    }

    #[test]
    fn version_1_int8_checkpoint_loads_and_stays_without_originals() {
        let mut ix = int8_index();
        ix.originals = None;
        let v2 = CheckpointEncoder::new(&ix).to_vec().unwrap_or_default();
        let mut fr = FrameReader::new(&v2[..]);
        let head = fr.next_payload().ok().flatten().unwrap_or_default();
        let h: Header = rmp_serde::from_slice(&head).unwrap_or_else(|e| panic!("{e}"));
        let mut v1 = Vec::new();
        frame_into(
            &mp(&HeaderV1 {
                format: h.format,
                version: 1,
                params: h.params,
                slots: h.slots,
                free: h.free,
                graph: h.graph,
            }),
            &mut v1,
        );
        v1.extend_from_slice(&v2[FRAME_HEADER + head.len()..]);
        let mut old = read_checkpoint(&v1[..]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!old.has_originals());
        let req = SearchRequest::new(vec![1.0; 8], 5);
        assert_eq!(old.search(&req).ok().map(|h| h.len()), Some(5));
        // Writes keep no originals for it, and its next checkpoint carries none.
        old.apply(&Record::Delete(vec!["v1".into()]));
        let again = CheckpointEncoder::new(&old).to_vec().unwrap_or_default();
        let reread = read_checkpoint(&again[..]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!reread.has_originals());
        assert_eq!(reread.len(), 49);
    }

    #[test]
    fn originals_frames_are_checked_when_loading() {
        let ix = int8_index();
        let bytes = CheckpointEncoder::new(&ix).to_vec().unwrap_or_default();
        let loaded = read_checkpoint(&bytes[..]).unwrap_or_else(|e| panic!("{e}"));
        assert!(loaded.has_originals());
        // Flip one byte inside the originals frame (after the slot frames, before the end frame).
        let mut enc = CheckpointEncoder::new(&ix);
        let mut out = Vec::new();
        while enc.next_chunk(&mut out).unwrap_or(false) {}
        let l = enc
            .originals_layout()
            .unwrap_or_else(|| panic!("no layout"));
        let mut bad = bytes.clone();
        bad[l.offset(3).unwrap_or(0) as usize] ^= 0x10;
        assert!(matches!(
            read_checkpoint(&bad[..]),
            Err(CheckpointError::Corrupt(_))
        ));
    }
}
