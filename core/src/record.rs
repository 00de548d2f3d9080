//! Log records and their framing.
//!
//! A frame is `[len: u32 LE][crc32(payload): u32 LE][payload]`; the payload is a msgpack
//! [`Record`]. A reader stops at the first frame that is incomplete or fails its CRC: that is a
//! torn tail from a crash mid-append, and everything from there on is cut off.

use serde::{Deserialize, Serialize};
use std::io::Read;
use thiserror::Error;

/// Bytes of frame header.
pub const FRAME_HEADER: usize = 8;
/// Largest payload a frame may declare (guards against a corrupt length).
pub const MAX_FRAME: usize = 1 << 30;

/// One vector in an upsert, validated by `prepare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpsertItem {
    /// The user's id.
    pub id: String,
    /// Dense vector, as given (cosine normalisation happens in `apply`).
    pub vector: Vec<f32>,
    /// Opaque meta bytes.
    #[serde(with = "serde_bytes")]
    pub meta: Vec<u8>,
    /// Filter values as JSON object text.
    pub filter: String,
    /// The norm the client reports.
    pub norm: f32,
    /// Sparse indices (hybrid indexes).
    pub sparse_indices: Vec<u32>,
    /// Sparse values (hybrid indexes).
    pub sparse_values: Vec<f32>,
}

/// A durable write: what `prepare` produces, the host logs, and `apply` executes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// Insert or replace vectors.
    Upsert(Vec<UpsertItem>),
    /// Delete these ids (delete-by-filter is resolved to ids at prepare time).
    Delete(Vec<String>),
    /// Replace the filter of these ids.
    UpdateFilters(Vec<(String, String)>),
}

/// Framing errors.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The stream ended inside a frame or a CRC failed.
    #[error("torn or corrupt frame at byte {0}")]
    Torn(u64),
    /// Reading failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// A frame's payload did not decode.
    #[error("undecodable record at byte {offset}: {msg}")]
    Decode {
        /// Where the frame starts.
        offset: u64,
        /// Decoder message.
        msg: String,
    },
}

/// Appends one frame holding `payload` to `out`.
pub fn frame_into(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

impl Record {
    /// The framed bytes the host appends to the log.
    pub fn encode(&self) -> Vec<u8> {
        let payload = rmp_serde::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(payload.len() + FRAME_HEADER);
        frame_into(&payload, &mut out);
        out
    }
    /// Decodes a payload (without its frame header).
    pub fn decode(payload: &[u8]) -> Result<Self, String> {
        rmp_serde::from_slice(payload).map_err(|e| e.to_string())
    }
}

/// Reads frames from a caller-supplied reader, tracking the end of the last whole frame.
pub struct FrameReader<R> {
    inner: R,
    offset: u64,
    torn: bool,
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<R: Read> FrameReader<R> {
    /// Wraps a reader positioned at the first frame.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            offset: 0,
            torn: false,
        }
    }
    /// Byte length of the whole frames read so far: where a torn tail must be cut.
    pub fn valid_len(&self) -> u64 {
        self.offset
    }
    /// True once a torn or corrupt frame ended the stream.
    pub fn was_torn(&self) -> bool {
        self.torn
    }
    /// The next whole frame's payload; `Ok(None)` at a clean end or a torn tail.
    pub fn next_payload(&mut self) -> Result<Option<Vec<u8>>, std::io::Error> {
        let mut payload = Vec::new();
        Ok(self.next_payload_into(&mut payload)?.then_some(payload))
    }

    /// Reads the next whole frame's payload into `payload` (replacing its contents, reusing its
    /// allocation: a multi-GB checkpoint loads through one buffer); false at a clean end or a
    /// torn tail.
    pub fn next_payload_into(&mut self, payload: &mut Vec<u8>) -> Result<bool, std::io::Error> {
        if self.torn {
            return Ok(false);
        }
        let mut head = [0u8; FRAME_HEADER];
        let n = read_full(&mut self.inner, &mut head)?;
        if n == 0 {
            return Ok(false);
        }
        if n < FRAME_HEADER {
            self.torn = true;
            return Ok(false);
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_FRAME {
            self.torn = true;
            return Ok(false);
        }
        payload.clear();
        payload.resize(len, 0);
        if read_full(&mut self.inner, payload)? < len || crc32fast::hash(payload) != crc {
            self.torn = true;
            return Ok(false);
        }
        self.offset += (FRAME_HEADER + len) as u64;
        Ok(true)
    }
}

/// Decodes every whole record of a log; returns them with the valid byte length.
/// A frame that passes its CRC but does not decode is an error, not a torn tail.
pub fn read_log<R: Read>(r: R) -> Result<(Vec<Record>, u64, bool), FrameError> {
    let mut fr = FrameReader::new(r);
    let mut out = Vec::new();
    loop {
        let at = fr.valid_len();
        match fr.next_payload()? {
            Some(p) => {
                out.push(Record::decode(&p).map_err(|msg| FrameError::Decode { offset: at, msg })?)
            }
            None => return Ok((out, fr.valid_len(), fr.was_torn())),
        }
    }
}
