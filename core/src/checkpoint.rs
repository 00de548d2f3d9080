//! Checkpoints: the full image of an index as a sequence of CRC-framed chunks.
//!
//! Layout: a header frame (format, version, params, slot count, free list, graph state), slot
//! frames of up to [`SLOTS_PER_FRAME`] slots each, and an end frame. The encoder is pull-based
//! ([`CheckpointEncoder::next_chunk`]) so a multi-GB index is never one buffer; the decoder
//! reads from any `Read` and refuses a file that lacks its end frame.

use crate::filter;
use crate::hnsw::{Graph, GraphMeta};
use crate::index::Index;
use crate::params::IndexParams;
use crate::record::{FrameReader, frame_into};
use crate::slots::SlotData;
use crate::store::VectorStore;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use thiserror::Error;

/// Format name written in every checkpoint header.
pub const FORMAT: &str = "cairn-checkpoint";
/// Current checkpoint format version.
pub const VERSION: u32 = 1;
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
}

#[derive(Serialize, Deserialize)]
struct SlotBlob {
    data: SlotData,
    #[serde(with = "serde_bytes")]
    code: Vec<u8>,
    links: Vec<u32>,
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
    End,
    Done,
}

/// Produces a checkpoint of `index` chunk by chunk.
pub struct CheckpointEncoder<'a> {
    index: &'a Index,
    stage: Stage,
}

fn mp<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec(v).unwrap_or_default()
}

impl<'a> CheckpointEncoder<'a> {
    /// An encoder over a consistent view of `index` (hold it unchanged until done).
    pub fn new(index: &'a Index) -> Self {
        Self {
            index,
            stage: Stage::Header,
        }
    }

    /// Appends the next chunk to `out`; returns false once everything was produced.
    pub fn next_chunk(&mut self, out: &mut Vec<u8>) -> bool {
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
                };
                frame_into(&mp(&h), out);
                self.stage = if ix.slots.is_empty() {
                    Stage::End
                } else {
                    Stage::Slots(0)
                };
                true
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
                        }
                    })
                    .collect();
                frame_into(&mp(&blobs), out);
                self.stage = if to == ix.slots.len() {
                    Stage::End
                } else {
                    Stage::Slots(to)
                };
                true
            }
            Stage::End => {
                frame_into(
                    &mp(&End {
                        slots: ix.slots.len() as u64,
                    }),
                    out,
                );
                self.stage = Stage::Done;
                true
            }
            Stage::Done => false,
        }
    }

    /// The whole checkpoint in one buffer (tests and small indexes only).
    pub fn to_vec(mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.next_chunk(&mut out) {}
        out
    }
}

fn corrupt(m: impl Into<String>) -> CheckpointError {
    CheckpointError::Corrupt(m.into())
}

/// Encodes `ix` as a checkpoint into `out`; returns `out` and the checkpoint's size and
/// SHA-256, computed on the bytes as they go out. Hosts keep that digest beside the checkpoint
/// (`paths::checkpoint_digest`) so a backup reads the checkpoint once. `out` is not synced.
pub fn write_checkpoint<W: Write>(ix: &Index, out: W) -> io::Result<(W, u64, String)> {
    let mut w = crate::archive::HashingWriter::new(out);
    let mut enc = CheckpointEncoder::new(ix);
    let mut buf = Vec::with_capacity(1 << 20);
    while enc.next_chunk(&mut buf) {
        if buf.len() >= 1 << 20 {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)?;
    Ok(w.finish())
}

/// Loads an index from a checkpoint.
pub fn read_checkpoint<R: Read>(r: R) -> Result<Index, CheckpointError> {
    let mut fr = FrameReader::new(r);
    let head = fr
        .next_payload()?
        .ok_or_else(|| corrupt("missing header"))?;
    let h: Header = rmp_serde::from_slice(&head).map_err(|e| corrupt(format!("header: {e}")))?;
    if h.format != FORMAT {
        return Err(corrupt(format!("not a checkpoint (format {:?})", h.format)));
    }
    if h.version != VERSION {
        return Err(CheckpointError::Version(h.version));
    }
    h.params
        .validate()
        .map_err(|e| corrupt(format!("params: {e}")))?;
    let p = h.params.clone();
    let total = usize::try_from(h.slots).map_err(|_| corrupt("slot count"))?;
    let mut ix = Index::from_parts(
        VectorStore::new(p.dim, p.space, p.precision),
        Graph::new(p.m, p.ef_construction, 0),
        p,
    );
    loop {
        let payload = fr
            .next_payload()?
            .ok_or_else(|| corrupt("truncated: no end frame"))?;
        if ix.slots.len() == total {
            let end: End =
                rmp_serde::from_slice(&payload).map_err(|e| corrupt(format!("end: {e}")))?;
            if end.slots != h.slots {
                return Err(corrupt("end frame slot count differs from header"));
            }
            break;
        }
        let blobs: Vec<SlotBlob> =
            rmp_serde::from_slice(&payload).map_err(|e| corrupt(format!("slots: {e}")))?;
        for b in blobs {
            let slot = ix.slots.len() as u32;
            if slot as usize >= total {
                return Err(corrupt("more slots than the header says"));
            }
            ix.store
                .push_encoded(&b.code)
                .ok_or_else(|| corrupt(format!("slot {slot} vector")))?;
            ix.graph
                .push_encoded(&b.links, total)
                .ok_or_else(|| corrupt(format!("slot {slot} links")))?;
            let d = b.data;
            match &d.id {
                Some(id) => {
                    if id.is_empty() || ix.slots.contains(id) {
                        return Err(corrupt(format!("duplicate or empty id {id:?}")));
                    }
                    ix.slots.put(
                        slot,
                        id,
                        &d.meta,
                        &d.filter,
                        d.norm,
                        &d.sparse_indices,
                        &d.sparse_values,
                    );
                    ix.set_live(slot, true);
                    ix.filters
                        .add(slot, &filter::parse_stored(&d.filter).unwrap_or_default());
                }
                None => ix.slots.push_empty(),
            }
        }
    }
    if h.free
        .iter()
        .any(|&s| s as usize >= total || ix.live.contains(s))
    {
        return Err(corrupt("free list names a live or unknown slot"));
    }
    ix.free = h.free;
    ix.graph.set_meta(h.graph);
    Ok(ix)
}
