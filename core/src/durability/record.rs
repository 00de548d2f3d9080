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

/// An object of a collection with further dense fields: its first vector and the rest as an
/// upsert, and for each further field (in the collection's order) its vectors — one for a
/// `vector` field, one or more for a `multi_vector` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldsItem {
    /// Id, first vector, meta, filter, sparse part.
    pub item: UpsertItem,
    /// Per further field, its vectors.
    pub extra: Vec<Vec<Vec<f32>>>,
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
    /// Insert or replace objects of a collection with further dense fields.
    UpsertFields(Vec<FieldsItem>),
}

/// Framing errors.
#[derive(Debug, Error)]
pub enum FrameError {
    /// A frame failed its CRC (or declared an impossible length) and non-zero bytes follow it:
    /// not a crash mid-append (which leaves only the one frame being written, or zeros) but
    /// damage in the middle of the log. Nothing after it can be trusted to be complete.
    #[error("corrupt log frame at byte {offset} with {trailing} bytes after it")]
    Corrupt {
        /// Where the bad frame starts.
        offset: u64,
        /// Bytes that follow the bad frame's header.
        trailing: u64,
    },
    /// Reading failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// A record decoded but is not one a valid write could have produced.
    #[error("invalid record at byte {offset}: {msg}")]
    Invalid {
        /// Where the frame starts.
        offset: u64,
        /// What is wrong.
        msg: String,
    },
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
    /// Vectors this record inserts or replaces (each costs a graph insert when replayed).
    pub fn upserted(&self) -> u64 {
        match self {
            Record::Upsert(items) => items.len() as u64,
            _ => 0,
        }
    }
    /// Decodes a payload (without its frame header).
    pub fn decode(payload: &[u8]) -> Result<Self, String> {
        rmp_serde::from_slice(payload).map_err(|e| e.to_string())
    }
}

/// Reads frames from a caller-supplied reader, tracking the end of the last whole frame.
///
/// A frame that is incomplete at the end of the stream, or whose CRC fails with nothing but
/// zeros after it, is a *torn tail* (a crash mid-append): the reader stops and
/// [`FrameReader::was_torn`] says so. A bad frame followed by other bytes is *corruption*:
/// [`FrameReader::corrupt_at`] names it, so a caller can refuse the file instead of silently
/// dropping everything after it. Payload buffers grow as bytes arrive, never to a length the
/// file merely declares.
pub struct FrameReader<R> {
    inner: R,
    offset: u64,
    torn: bool,
    corrupt: Option<(u64, u64)>,
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

/// First allocation for a payload; it grows as bytes arrive (a lying length costs nothing).
const FIRST_ALLOC: usize = 64 << 10;

impl<R: Read> FrameReader<R> {
    /// Wraps a reader positioned at the first frame.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            offset: 0,
            torn: false,
            corrupt: None,
        }
    }
    /// Byte length of the whole frames read so far: where a torn tail must be cut.
    pub fn valid_len(&self) -> u64 {
        self.offset
    }
    /// True once a torn tail ended the stream.
    pub fn was_torn(&self) -> bool {
        self.torn
    }
    /// `(offset, trailing bytes)` of a bad frame with data after it, once one ended the stream.
    pub fn corrupt_at(&self) -> Option<(u64, u64)> {
        self.corrupt
    }
    /// The next whole frame's payload; `Ok(None)` at a clean end, a torn tail or corruption.
    pub fn next_payload(&mut self) -> Result<Option<Vec<u8>>, std::io::Error> {
        let mut payload = Vec::new();
        Ok(self.next_payload_into(&mut payload)?.then_some(payload))
    }

    /// Reads the next whole frame's payload into `payload` (replacing its contents, reusing its
    /// allocation: a multi-GB checkpoint loads through one buffer); false at a clean end, a
    /// torn tail or corruption.
    pub fn next_payload_into(&mut self, payload: &mut Vec<u8>) -> Result<bool, std::io::Error> {
        if self.torn || self.corrupt.is_some() {
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
        // Writers never frame an empty payload: a zero length is zero-filled space after a crash.
        if len == 0 || len > MAX_FRAME {
            return self.bad_frame(0);
        }
        payload.clear();
        payload.reserve(len.min(FIRST_ALLOC));
        let got = (&mut self.inner).take(len as u64).read_to_end(payload)?;
        if got < len {
            self.torn = true;
            return Ok(false);
        }
        if crc32fast::hash(payload) != crc {
            return self.bad_frame(len as u64);
        }
        self.offset += (FRAME_HEADER + len) as u64;
        Ok(true)
    }

    /// A complete frame that is wrong: torn if only zeros follow it, corrupt otherwise.
    fn bad_frame(&mut self, consumed: u64) -> Result<bool, std::io::Error> {
        let mut buf = [0u8; 8192];
        let mut trailing = 0u64;
        let mut nonzero = false;
        loop {
            let n = read_full(&mut self.inner, &mut buf)?;
            if n == 0 {
                break;
            }
            trailing += n as u64;
            nonzero |= buf[..n].iter().any(|&b| b != 0);
        }
        if nonzero {
            self.corrupt = Some((self.offset, consumed + trailing));
        } else {
            self.torn = true;
        }
        Ok(false)
    }
}

/// What replaying a log found: whole records, where they end, and whether a torn tail followed.
#[derive(Debug, Default)]
pub struct LogScan {
    /// Byte length of the whole frames (where a torn tail must be cut).
    pub valid_len: u64,
    /// True when an incomplete or zero-filled last frame followed them.
    pub torn: bool,
    /// Records read.
    pub records: u64,
    /// Vectors those records upsert: what replaying them costs (each is a graph insert).
    pub upserted: u64,
}

/// Reads a log frame by frame, handing each decoded record to `each` with its offset; `each`
/// may refuse a record (it fails as [`FrameError::Invalid`]). Corruption in the middle of the
/// log is an error, never a silent cut.
pub fn scan_log<R: Read>(
    r: R,
    mut each: impl FnMut(u64, Record) -> Result<(), String>,
) -> Result<LogScan, FrameError> {
    let mut fr = FrameReader::new(r);
    let mut payload = Vec::new();
    let (mut records, mut upserted) = (0, 0);
    loop {
        let at = fr.valid_len();
        if !fr.next_payload_into(&mut payload)? {
            if let Some((offset, trailing)) = fr.corrupt_at() {
                return Err(FrameError::Corrupt { offset, trailing });
            }
            return Ok(LogScan {
                valid_len: fr.valid_len(),
                torn: fr.was_torn(),
                records,
                upserted,
            });
        }
        let rec = Record::decode(&payload).map_err(|msg| FrameError::Decode { offset: at, msg })?;
        records += 1;
        upserted += rec.upserted();
        each(at, rec).map_err(|msg| FrameError::Invalid { offset: at, msg })?;
    }
}

/// Decodes every whole record of a log; returns them with the valid byte length and whether a
/// torn tail was cut. A frame that passes its CRC but does not decode, or a bad frame with data
/// after it, is an error, not a torn tail.
pub fn read_log<R: Read>(r: R) -> Result<(Vec<Record>, u64, bool), FrameError> {
    let mut out = Vec::new();
    let scan = scan_log(r, |_, rec| {
        out.push(rec);
        Ok(())
    })?;
    Ok((out, scan.valid_len, scan.torn))
}

/// Fewest vectors in a log before their replay cost alone calls for a checkpoint.
pub const MIN_REPLAY_VECTORS: u64 = 4096;

/// Whether an index should write a checkpoint now: its log has reached `max_log_bytes`, or
/// replaying it would insert at least a quarter as many vectors as the index holds (and at
/// least [`MIN_REPLAY_VECTORS`]). The second rule bounds a restart after a crash by the
/// index's size — replay rebuilds graph links, loading a checkpoint does not — while every
/// checkpoint rewrites the whole index at most once per 25 % growth or turnover.
pub fn checkpoint_due(log_bytes: u64, replay_vectors: u64, live: u64, max_log_bytes: u64) -> bool {
    log_bytes >= max_log_bytes || replay_vectors >= (live / 4).max(MIN_REPLAY_VECTORS)
}
