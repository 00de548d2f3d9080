//! Backup archives: an uncompressed tar, manifest first, streamed through caller-supplied
//! `Write`/`Read`, never assembled in memory.
//!
//! ```text
//! cairn-backup.json      format, version, index name and params, vector count, created_at,
//!                        source, the cut, and for every other entry its path, size and SHA-256
//! index/checkpoint.bin   the pinned checkpoint
//! index/log.bin          the log prefix up to the cut
//! ```
//! The reader validates every entry (type, path, membership, size, digest) while streaming it to
//! a sink, and the whole archive before the caller publishes anything.

use crate::checkpoint::{CheckpointError, read_checkpoint};
use crate::index::Index;
use crate::params::IndexParams;
use crate::record::FrameError;
use crate::registry::CutPoint;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use thiserror::Error;

/// Archive format name.
pub const FORMAT: &str = "cairn-backup";
/// Current archive format version.
pub const VERSION: u32 = 1;
/// Path of the manifest entry (always first).
pub const MANIFEST_PATH: &str = "cairn-backup.json";
/// Path of the checkpoint entry.
pub const CHECKPOINT_PATH: &str = "index/checkpoint.bin";
/// Path of the log entry.
pub const LOG_PATH: &str = "index/log.bin";
/// Largest manifest accepted.
pub const MAX_MANIFEST: u64 = 1 << 20;

/// Who wrote an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// `native` or `wasm`.
    pub host: String,
    /// CairnDB version.
    pub version: String,
}

/// One data entry as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path inside the archive.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// The archive's first entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version.
    pub version: u32,
    /// Name of the index backed up.
    pub index_name: String,
    /// Its parameters.
    pub params: IndexParams,
    /// Live vectors at the cut.
    pub vector_count: u64,
    /// When the cut was taken (ms since epoch).
    pub created_at: u64,
    /// Writer.
    pub source: Source,
    /// The cut.
    pub cut: CutPoint,
    /// Data entries, in archive order.
    pub entries: Vec<ManifestEntry>,
    /// An incremental backup's base: the archive it continues. Absent in a full backup (and
    /// in every archive written before incremental backups: their bytes are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseRef>,
    /// Where in the cut's log the log entry starts: 0, or in an incremental backup that
    /// shares its base's generation (and then has an empty checkpoint entry), the base's
    /// cut.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub log_from: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The archive an incremental backup continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRef {
    /// Its name.
    pub name: String,
    /// Its cut: the incremental's log entry continues from there.
    pub cut: CutPoint,
}

/// Why an archive was refused.
#[derive(Debug, Error)]
pub enum ArchiveError {
    /// Reading or writing failed, or the tar structure is broken or truncated.
    #[error("archive io: {0}")]
    Io(#[from] io::Error),
    /// The first entry is not the manifest.
    #[error("missing manifest: first entry must be {MANIFEST_PATH}")]
    MissingManifest,
    /// Manifest unreadable or inconsistent.
    #[error("bad manifest: {0}")]
    BadManifest(String),
    /// Unknown format or version.
    #[error(
        "unsupported archive format {format:?} version {version} (this build reads {FORMAT} v{VERSION})"
    )]
    UnsupportedVersion {
        /// Format found.
        format: String,
        /// Version found.
        version: u32,
    },
    /// An unsafe path (absolute, `..`, empty component, backslash, NUL).
    #[error("unsafe entry path {0:?}")]
    UnsafePath(String),
    /// A link, device, directory or other non-regular entry.
    #[error("entry {0:?} is not a regular file")]
    NotRegular(String),
    /// An entry the manifest does not list.
    #[error("entry {0:?} is not listed in the manifest")]
    Unlisted(String),
    /// The same path twice.
    #[error("duplicate entry {0:?}")]
    Duplicate(String),
    /// Size differs from the manifest.
    #[error("entry {path:?} has size {got}, manifest says {want}")]
    Size {
        /// Entry.
        path: String,
        /// Actual.
        got: u64,
        /// Declared.
        want: u64,
    },
    /// Digest differs from the manifest.
    #[error("entry {0:?} fails its SHA-256 check")]
    Digest(String),
    /// Entries listed but absent (truncated archive).
    #[error("archive is truncated: missing {0:?}")]
    Missing(Vec<String>),
    /// The data do not rebuild the index the manifest describes.
    #[error("archive content invalid: {0}")]
    Content(String),
}

impl From<CheckpointError> for ArchiveError {
    fn from(e: CheckpointError) -> Self {
        Self::Content(e.to_string())
    }
}

pub use crate::digest::{DigestReader, HashingWriter, digest_reader, encode_digest, parse_digest};

/// Where a backup gets its checkpoint's size and digest: a record written with the
/// checkpoint, or a pass over the checkpoint itself.
pub enum CheckpointDigest<C> {
    /// Size and hex SHA-256 from the checkpoint's digest record.
    Recorded(u64, String),
    /// No usable record: digest this reader of the checkpoint.
    Read(C),
}

impl<C> CheckpointDigest<C> {
    /// The record's digest if `record` (the digest file's bytes, if any) parses and names a
    /// checkpoint of `size` bytes; otherwise a pass over `checkpoint`.
    pub fn from_record(record: Option<&[u8]>, size: u64, checkpoint: C) -> Self {
        match record
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(parse_digest)
            .filter(|(n, _)| *n == size)
        {
            Some((n, sha)) => Self::Recorded(n, sha),
            None => Self::Read(checkpoint),
        }
    }

    /// True when the checkpoint must be read to digest it.
    pub fn needs_read(&self) -> bool {
        matches!(self, Self::Read(_))
    }
}

fn regular_header(path: &str, size: u64) -> Result<tar::Header, ArchiveError> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    h.set_path(path)?;
    h.set_cksum();
    Ok(h)
}

/// Tar block size.
const BLOCK: u64 = 512;

/// Zero bytes that pad an entry of `size` bytes to a whole block.
fn padding(size: u64) -> usize {
    ((BLOCK - size % BLOCK) % BLOCK) as usize
}

/// One data entry being written: bytes still due and the digest so far.
struct EncodingEntry {
    path: String,
    size: u64,
    count: u64,
    hasher: Sha256,
}

/// Writes an archive chunk by chunk: the caller feeds each listed entry's bytes as it reads
/// them ([`ArchiveEncoder::feed`]) and takes the archive bytes from the `out` buffer it
/// passes — nothing is pulled, so a host can run one read and one write per step, between
/// other work. Every entry is checked against the manifest's size and SHA-256 as it streams
/// (a pinned file that changed underneath is an error, not a silently wrong archive), and the
/// archive's own size and SHA-256 are computed on the bytes as they go out.
pub struct ArchiveEncoder {
    manifest: Manifest,
    next: usize,
    entry: Option<EncodingEntry>,
    sha: Sha256,
    size: u64,
}

impl ArchiveEncoder {
    /// Starts an archive: appends the manifest entry to `out`.
    pub fn new(manifest: Manifest, out: &mut Vec<u8>) -> Result<Self, ArchiveError> {
        let bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ArchiveError::BadManifest(e.to_string()))?;
        let mut enc = Self {
            manifest,
            next: 0,
            entry: None,
            sha: Sha256::new(),
            size: 0,
        };
        let h = regular_header(MANIFEST_PATH, bytes.len() as u64)?;
        enc.emit(h.as_bytes(), out);
        enc.emit(&bytes, out);
        enc.emit(&[0u8; BLOCK as usize][..padding(bytes.len() as u64)], out);
        Ok(enc)
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.sha.update(bytes);
        self.size += bytes.len() as u64;
        out.extend_from_slice(bytes);
    }

    /// The manifest being written.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Starts the next listed entry (appends its header); returns its size.
    pub fn begin_entry(&mut self, out: &mut Vec<u8>) -> Result<u64, ArchiveError> {
        if self.entry.is_some() {
            return Err(ArchiveError::BadManifest("entry already open".into()));
        }
        let e = self
            .manifest
            .entries
            .get(self.next)
            .cloned()
            .ok_or_else(|| ArchiveError::BadManifest("more entries than listed".into()))?;
        let h = regular_header(&e.path, e.size)?;
        self.emit(h.as_bytes(), out);
        self.entry = Some(EncodingEntry {
            path: e.path,
            size: e.size,
            count: 0,
            hasher: Sha256::new(),
        });
        Ok(e.size)
    }

    /// Appends the next bytes of the open entry; more than its listed size is an error.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), ArchiveError> {
        let e = self
            .entry
            .as_mut()
            .ok_or_else(|| ArchiveError::BadManifest("no entry open".into()))?;
        let got = e.count + data.len() as u64;
        if got > e.size {
            return Err(ArchiveError::Size {
                path: e.path.clone(),
                got,
                want: e.size,
            });
        }
        e.count = got;
        e.hasher.update(data);
        self.emit(data, out);
        Ok(())
    }

    /// Ends the open entry: its size and digest must match the manifest; appends padding.
    pub fn end_entry(&mut self, out: &mut Vec<u8>) -> Result<(), ArchiveError> {
        let e = self
            .entry
            .take()
            .ok_or_else(|| ArchiveError::BadManifest("no entry open".into()))?;
        if e.count != e.size {
            return Err(ArchiveError::Size {
                path: e.path,
                got: e.count,
                want: e.size,
            });
        }
        let want = &self.manifest.entries[self.next].sha256;
        if &hex::encode(e.hasher.finalize()) != want {
            return Err(ArchiveError::Digest(e.path));
        }
        self.emit(&[0u8; BLOCK as usize][..padding(e.size)], out);
        self.next += 1;
        Ok(())
    }

    /// Ends the archive (two zero blocks); returns its size and hex SHA-256.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(u64, String), ArchiveError> {
        if self.entry.is_some() || self.next != self.manifest.entries.len() {
            return Err(ArchiveError::BadManifest(
                "not every listed entry was written".into(),
            ));
        }
        self.emit(&[0u8; 2 * BLOCK as usize], out);
        Ok((self.size, hex::encode(self.sha.finalize())))
    }
}

/// [`ArchiveEncoder`] over a `Write` and `Read`s (tests and tools that hold whole files).
pub struct ArchiveWriter<W: Write> {
    out: W,
    enc: ArchiveEncoder,
    buf: Vec<u8>,
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive into `out` by writing the manifest entry.
    pub fn new(mut out: W, manifest: Manifest) -> Result<Self, ArchiveError> {
        let mut buf = Vec::new();
        let enc = ArchiveEncoder::new(manifest, &mut buf)?;
        out.write_all(&buf)?;
        buf.clear();
        Ok(Self { out, enc, buf })
    }

    /// Streams the next listed entry from `data` (see [`ArchiveEncoder::feed`]).
    pub fn append<R: Read>(&mut self, data: R) -> Result<(), ArchiveError> {
        let size = self.enc.begin_entry(&mut self.buf)?;
        let mut data = data.take(size);
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let n = data.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            self.enc.feed(&chunk[..n], &mut self.buf)?;
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.enc.end_entry(&mut self.buf)?;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Ends the archive; returns the writer, the archive size and its SHA-256.
    pub fn finish(mut self) -> Result<(W, u64, String), ArchiveError> {
        let (size, sha) = self.enc.finish(&mut self.buf)?;
        self.out.write_all(&self.buf)?;
        Ok((self.out, size, sha))
    }
}

/// Receives the data of entries while an archive is decoded, chunk by chunk, before the
/// entry's digest is checked: on any error the caller discards what the sink kept, and must
/// publish nothing before the archive is fully decoded.
pub trait EntrySink {
    /// The next bytes of entry `path`.
    fn data(&mut self, path: &str, chunk: &[u8]) -> io::Result<()>;
}

/// An [`EntrySink`] that drops everything (validation only).
pub struct NullSink;

impl EntrySink for NullSink {
    fn data(&mut self, _path: &str, _chunk: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

/// An [`EntrySink`] that keeps entries in memory (tests, small archives).
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Path → bytes.
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
}

impl EntrySink for MemorySink {
    fn data(&mut self, path: &str, chunk: &[u8]) -> io::Result<()> {
        self.files
            .entry(path.into())
            .or_default()
            .extend_from_slice(chunk);
        Ok(())
    }
}

/// Where a validated data entry lies in its archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRange {
    /// Path inside the archive.
    pub path: String,
    /// Byte offset of its data.
    pub offset: u64,
    /// Its size.
    pub size: u64,
}

/// A fully validated archive: its manifest and where each entry's data is.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveLayout {
    /// The manifest.
    pub manifest: Manifest,
    /// Data entries in archive order.
    pub entries: Vec<EntryRange>,
}

impl ArchiveLayout {
    /// Where entry `path` is.
    pub fn range(&self, path: &str) -> Option<&EntryRange> {
        self.entries.iter().find(|e| e.path == path)
    }
}

enum DecodeState {
    /// Collecting a 512-byte header.
    Header,
    /// Collecting the manifest's bytes.
    Manifest { remaining: u64 },
    /// Streaming a data entry.
    Data {
        path: String,
        remaining: u64,
        hasher: Sha256,
    },
    /// Skipping block padding.
    Pad { remaining: u64 },
    /// Past the end-of-archive block: the rest is ignored.
    End,
}

/// Decodes and validates an archive pushed to it chunk by chunk ([`ArchiveDecoder::feed`]),
/// in memory bounded by one header and the manifest: entry types and paths (no links,
/// devices, absolute paths or `..`), membership in the manifest, sizes, digests, the
/// manifest's format and version. [`ArchiveDecoder::finish`] checks nothing is missing and
/// returns where each entry's data is, so a host can read (or copy) it straight from the
/// archive.
pub struct ArchiveDecoder {
    state: DecodeState,
    pos: u64,
    block: Vec<u8>,
    mbytes: Vec<u8>,
    manifest: Option<Manifest>,
    entries: Vec<EntryRange>,
    seen: BTreeSet<String>,
    failed: bool,
}

impl Default for ArchiveDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ArchiveDecoder {
    /// A decoder at the start of an archive.
    pub fn new() -> Self {
        Self {
            state: DecodeState::Header,
            pos: 0,
            block: Vec::with_capacity(BLOCK as usize),
            mbytes: Vec::new(),
            manifest: None,
            entries: Vec::new(),
            seen: BTreeSet::new(),
            failed: false,
        }
    }

    /// The manifest, once its entry has been decoded.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// Where data entry `path` is, once its header has been decoded (its bytes are not yet
    /// verified: only [`ArchiveDecoder::finish`] says the archive is whole).
    pub fn entry(&self, path: &str) -> Option<&EntryRange> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Feeds the next bytes, handing entry data to `sink`. After an error every later call
    /// fails too.
    pub fn feed(&mut self, input: &[u8], sink: &mut dyn EntrySink) -> Result<(), ArchiveError> {
        if self.failed {
            return Err(ArchiveError::Io(io::Error::other("archive already failed")));
        }
        let r = self.feed_inner(input, sink);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn feed_inner(
        &mut self,
        mut input: &[u8],
        sink: &mut dyn EntrySink,
    ) -> Result<(), ArchiveError> {
        while !input.is_empty() {
            match &mut self.state {
                DecodeState::End => {
                    self.pos += input.len() as u64;
                    return Ok(());
                }
                DecodeState::Header => {
                    let n = (BLOCK as usize - self.block.len()).min(input.len());
                    self.block.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    self.pos += n as u64;
                    if self.block.len() == BLOCK as usize {
                        let block = std::mem::take(&mut self.block);
                        self.header(&block)?;
                        self.block = block;
                        self.block.clear();
                    }
                }
                DecodeState::Manifest { remaining } => {
                    let n = (*remaining).min(input.len() as u64) as usize;
                    self.mbytes.extend_from_slice(&input[..n]);
                    *remaining -= n as u64;
                    input = &input[n..];
                    self.pos += n as u64;
                    if *remaining == 0 {
                        let bytes = std::mem::take(&mut self.mbytes);
                        let m = parse_manifest(&bytes)?;
                        self.manifest = Some(m);
                        self.state = DecodeState::Pad {
                            remaining: padding(bytes.len() as u64) as u64,
                        };
                    }
                }
                DecodeState::Data {
                    path,
                    remaining,
                    hasher,
                } => {
                    let n = (*remaining).min(input.len() as u64) as usize;
                    hasher.update(&input[..n]);
                    sink.data(path, &input[..n])?;
                    *remaining -= n as u64;
                    input = &input[n..];
                    self.pos += n as u64;
                    if *remaining == 0 {
                        let path = std::mem::take(path);
                        let sha = hex::encode(std::mem::take(hasher).finalize());
                        let want = self.listed(&path)?;
                        if sha != want.sha256 {
                            return Err(ArchiveError::Digest(path));
                        }
                        self.state = DecodeState::Pad {
                            remaining: padding(want.size) as u64,
                        };
                    }
                }
                DecodeState::Pad { remaining } => {
                    let n = (*remaining).min(input.len() as u64) as usize;
                    *remaining -= n as u64;
                    input = &input[n..];
                    self.pos += n as u64;
                    if *remaining == 0 {
                        self.state = DecodeState::Header;
                    }
                }
            }
        }
        // Zero-length entries end at their header.
        self.settle()
    }

    /// Moves past states that need no more bytes (a zero-length entry or padding).
    fn settle(&mut self) -> Result<(), ArchiveError> {
        loop {
            match &mut self.state {
                DecodeState::Data {
                    path,
                    remaining: 0,
                    hasher,
                } => {
                    let path = std::mem::take(path);
                    let sha = hex::encode(std::mem::take(hasher).finalize());
                    let want = self.listed(&path)?;
                    if sha != want.sha256 {
                        return Err(ArchiveError::Digest(path));
                    }
                    self.state = DecodeState::Header;
                }
                DecodeState::Manifest { remaining: 0 } => {
                    let m = parse_manifest(&std::mem::take(&mut self.mbytes))?;
                    self.manifest = Some(m);
                    self.state = DecodeState::Header;
                }
                DecodeState::Pad { remaining: 0 } => self.state = DecodeState::Header,
                _ => return Ok(()),
            }
        }
    }

    fn listed(&self, path: &str) -> Result<ManifestEntry, ArchiveError> {
        self.manifest
            .as_ref()
            .and_then(|m| m.entries.iter().find(|e| e.path == path))
            .cloned()
            .ok_or_else(|| ArchiveError::Unlisted(path.into()))
    }

    fn header(&mut self, block: &[u8]) -> Result<(), ArchiveError> {
        if block.iter().all(|&b| b == 0) {
            if self.manifest.is_none() {
                return Err(ArchiveError::MissingManifest);
            }
            self.state = DecodeState::End;
            return Ok(());
        }
        let h = tar::Header::from_byte_slice(block);
        let sum: u32 = block
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    b as u32
                }
            })
            .sum();
        if h.cksum().ok() != Some(sum) {
            return Err(ArchiveError::Io(io::Error::other(format!(
                "tar header checksum mismatch at byte {}",
                self.pos - BLOCK
            ))));
        }
        let path = String::from_utf8_lossy(&h.path_bytes()).into_owned();
        let size = h.entry_size()?;
        let t = h.entry_type();
        if self.manifest.is_none() {
            if path != MANIFEST_PATH || t != tar::EntryType::Regular {
                return Err(ArchiveError::MissingManifest);
            }
            if size > MAX_MANIFEST {
                return Err(ArchiveError::BadManifest(format!(
                    "manifest larger than {MAX_MANIFEST} bytes"
                )));
            }
            self.state = DecodeState::Manifest { remaining: size };
            return self.settle();
        }
        check_path(&path)?;
        if !(t == tar::EntryType::Regular || t == tar::EntryType::Continuous) {
            return Err(ArchiveError::NotRegular(path));
        }
        let want = self.listed(&path)?;
        if !self.seen.insert(path.clone()) {
            return Err(ArchiveError::Duplicate(path));
        }
        if size != want.size {
            return Err(ArchiveError::Size {
                path,
                got: size,
                want: want.size,
            });
        }
        self.entries.push(EntryRange {
            path: path.clone(),
            offset: self.pos,
            size,
        });
        self.state = DecodeState::Data {
            path,
            remaining: size,
            hasher: Sha256::new(),
        };
        self.settle()
    }

    /// Ends the archive: it must not stop inside an entry, and every listed entry must have
    /// been seen.
    pub fn finish(self) -> Result<ArchiveLayout, ArchiveError> {
        if self.failed {
            return Err(ArchiveError::Io(io::Error::other("archive already failed")));
        }
        let manifest = self.manifest.ok_or(ArchiveError::MissingManifest)?;
        match self.state {
            DecodeState::End => {}
            DecodeState::Header if self.block.is_empty() => {}
            DecodeState::Data { path, .. } => {
                return Err(ArchiveError::Missing(vec![path]));
            }
            _ => {
                return Err(ArchiveError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "archive ends inside a block",
                )));
            }
        }
        let missing: Vec<String> = manifest
            .entries
            .iter()
            .filter(|e| !self.seen.contains(&e.path))
            .map(|e| e.path.clone())
            .collect();
        if !missing.is_empty() {
            return Err(ArchiveError::Missing(missing));
        }
        Ok(ArchiveLayout {
            manifest,
            entries: self.entries,
        })
    }
}

/// Parses and checks the manifest entry's bytes.
fn parse_manifest(mbytes: &[u8]) -> Result<Manifest, ArchiveError> {
    let manifest: Manifest = serde_json::from_slice(mbytes).map_err(|e| {
        // Distinguish "another version" from garbage when the envelope parses.
        match serde_json::from_slice::<serde_json::Value>(mbytes) {
            Ok(v) if v.get("version").and_then(|x| x.as_u64()) != Some(VERSION as u64) => {
                ArchiveError::UnsupportedVersion {
                    format: v
                        .get("format")
                        .and_then(|x| x.as_str())
                        .unwrap_or("?")
                        .into(),
                    version: v.get("version").and_then(|x| x.as_u64()).unwrap_or(0) as u32,
                }
            }
            _ => ArchiveError::BadManifest(e.to_string()),
        }
    })?;
    manifest.validate()?;
    Ok(manifest)
}

fn check_path(p: &str) -> Result<(), ArchiveError> {
    let bad = p.is_empty()
        || p.starts_with('/')
        || p.contains('\\')
        || p.contains('\0')
        || p.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        Err(ArchiveError::UnsafePath(p.into()))
    } else {
        Ok(())
    }
}

impl Manifest {
    /// Checks format, version, params and the entry list.
    pub fn validate(&self) -> Result<(), ArchiveError> {
        if self.format != FORMAT || self.version != VERSION {
            return Err(ArchiveError::UnsupportedVersion {
                format: self.format.clone(),
                version: self.version,
            });
        }
        self.params
            .validate()
            .map_err(|e| ArchiveError::BadManifest(format!("params: {e}")))?;
        let paths: Vec<&str> = self.entries.iter().map(|e| e.path.as_str()).collect();
        if paths != [CHECKPOINT_PATH, LOG_PATH] {
            return Err(ArchiveError::BadManifest(format!(
                "entries must be {CHECKPOINT_PATH}, {LOG_PATH}; got {paths:?}"
            )));
        }
        let (ck, log) = (&self.entries[0], &self.entries[1]);
        if log.size != self.cut.log_len.saturating_sub(self.log_from)
            || self.log_from > self.cut.log_len
        {
            return Err(ArchiveError::BadManifest(format!(
                "log entry of {} bytes does not span {}..{} of the cut's log",
                log.size, self.log_from, self.cut.log_len
            )));
        }
        match &self.base {
            None if self.log_from != 0 => {
                return Err(ArchiveError::BadManifest(
                    "a full backup's log starts at 0".into(),
                ));
            }
            Some(b)
                if ck.size == 0
                    && (b.cut.generation != self.cut.generation
                        || b.cut.log_len != self.log_from) =>
            {
                return Err(ArchiveError::BadManifest(
                    "an incremental backup without a checkpoint continues its base's log".into(),
                ));
            }
            Some(_) if ck.size > 0 && self.log_from != 0 => {
                return Err(ArchiveError::BadManifest(
                    "a log after a new checkpoint starts at 0".into(),
                ));
            }
            _ => {}
        }
        for e in &self.entries {
            if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ArchiveError::BadManifest(format!(
                    "bad digest for {}",
                    e.path
                )));
            }
        }
        Ok(())
    }
}

impl Manifest {
    /// The manifest of a backup at `cut`: a first pass over the pinned (immutable) checkpoint and
    /// log prefix computes each entry's size and SHA-256. A log shorter than the cut is an error.
    pub fn for_backup<C: Read, L: Read>(
        index_name: &str,
        params: IndexParams,
        cut: CutPoint,
        created_at: u64,
        source: Source,
        checkpoint: C,
        log_prefix: L,
    ) -> io::Result<Self> {
        let ck = CheckpointDigest::Read(checkpoint);
        Self::for_backup_digested(index_name, params, cut, created_at, source, ck, log_prefix)
    }

    /// [`Manifest::for_backup`] with the checkpoint's digest taken from its record when there
    /// is a usable one (see [`CheckpointDigest::from_record`]); only the log prefix is then
    /// read. Safe against a stale or corrupt record: [`ArchiveWriter::append`] checks every
    /// entry against its digest as it streams.
    pub fn for_backup_digested<C: Read, L: Read>(
        index_name: &str,
        params: IndexParams,
        cut: CutPoint,
        created_at: u64,
        source: Source,
        checkpoint: CheckpointDigest<C>,
        log_prefix: L,
    ) -> io::Result<Self> {
        let checkpoint = match checkpoint {
            CheckpointDigest::Recorded(size, sha) => (size, sha),
            CheckpointDigest::Read(r) => digest_reader(r)?,
        };
        let entry = |path: &str, (size, sha256): (u64, String)| ManifestEntry {
            path: path.into(),
            size,
            sha256,
        };
        let ck = entry(CHECKPOINT_PATH, checkpoint);
        let log = entry(LOG_PATH, digest_reader(log_prefix.take(cut.log_len))?);
        if log.size != cut.log_len {
            return Err(io::Error::other(format!(
                "log shorter than its cut ({} < {})",
                log.size, cut.log_len
            )));
        }
        Ok(Self {
            format: FORMAT.into(),
            version: VERSION,
            index_name: index_name.into(),
            params,
            vector_count: cut.vector_count,
            created_at,
            source,
            cut,
            entries: vec![ck, log],
            base: None,
            log_from: 0,
        })
    }

    /// Bytes of data entries (what progress counts towards).
    pub fn data_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

/// Bytes read from an archive's head to find its manifest.
pub const HEAD_BYTES: usize = 256 << 10;

/// The manifest at the head of an archive (its first entry; a few KiB are enough), without
/// reading or checking the rest. `None` when the head is not an archive's.
pub fn manifest_of(head: &[u8]) -> Option<Manifest> {
    let mut dec = ArchiveDecoder::new();
    let _ = dec.feed(head, &mut NullSink);
    dec.manifest().cloned()
}

/// Reads and validates a whole archive, streaming each data entry to `sink`.
pub fn read_archive<R: Read>(mut r: R, sink: &mut dyn EntrySink) -> Result<Manifest, ArchiveError> {
    let mut dec = ArchiveDecoder::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match r.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        dec.feed(&buf[..n], sink)?;
    }
    Ok(dec.finish()?.manifest)
}

/// Builds the index an archive describes from its (validated) checkpoint and log prefix.
/// The log prefix must be whole records and the result must hold `vector_count` vectors.
pub fn restore_index<C: Read, L: Read>(
    manifest: &Manifest,
    checkpoint: C,
    log: L,
) -> Result<Index, ArchiveError> {
    let mut ix = archived_checkpoint(manifest, checkpoint)?;
    archived_log(manifest, &mut ix, log)?;
    Ok(ix)
}

/// Loads an archive's checkpoint entry (every structural check) and checks its params
/// against the manifest: the first half of [`restore_index`].
pub fn archived_checkpoint<C: Read>(
    manifest: &Manifest,
    checkpoint: C,
) -> Result<Index, ArchiveError> {
    let ix = read_checkpoint(checkpoint)?;
    check_params(manifest, &ix)?;
    Ok(ix)
}

/// Builds an archived index in two reads, as a step machine gets them: the first call loads
/// the checkpoint entry into `index` (returns `None`), the second replays the log entry into
/// it (returns what the replay found). Restore and upload share it.
pub fn decode_archived(
    manifest: &Manifest,
    index: &mut Option<Index>,
    reader: &mut dyn Read,
) -> Result<Option<crate::record::LogScan>, ArchiveError> {
    match index {
        None => {
            *index = Some(archived_checkpoint(manifest, reader)?);
            Ok(None)
        }
        Some(ix) => archived_log(manifest, ix, reader).map(Some),
    }
}

/// Replays an archive's log entry into the index its checkpoint loaded (every record
/// checked; it must end on a record boundary) and checks the vector count: the second half
/// of [`restore_index`]. Returns what the replay found.
pub fn archived_log<L: Read>(
    manifest: &Manifest,
    ix: &mut Index,
    log: L,
) -> Result<crate::record::LogScan, ArchiveError> {
    let scan = replay_prefix(ix, log)?;
    check_count(manifest, ix)?;
    Ok(scan)
}

fn check_params(manifest: &Manifest, ix: &Index) -> Result<(), ArchiveError> {
    if ix.params() != &manifest.params {
        return Err(ArchiveError::Content(
            "checkpoint params (dimension, precision, ...) differ from the manifest".into(),
        ));
    }
    Ok(())
}

/// [`archived_log`] with the replayed vectors left unlinked ([`Index::replay_deferred`]):
/// every record is still checked, but the graph inserts — what a replay spends its time on —
/// are left to [`Index::link_pending`]. A restore uses it, so its time tracks the disk.
pub fn archived_log_deferred<L: Read>(
    manifest: &Manifest,
    ix: &mut Index,
    log: L,
) -> Result<crate::record::LogScan, ArchiveError> {
    let scan = whole_records(ix.replay_deferred(log))?;
    check_count(manifest, ix)?;
    Ok(scan)
}

fn replay_prefix<L: Read>(ix: &mut Index, log: L) -> Result<crate::record::LogScan, ArchiveError> {
    whole_records(ix.replay(log))
}

/// A replay's result as an archive check: every record valid, and none cut short.
fn whole_records(
    r: Result<crate::record::LogScan, FrameError>,
) -> Result<crate::record::LogScan, ArchiveError> {
    let scan = r.map_err(|e| ArchiveError::Content(format!("log: {e}")))?;
    if scan.torn {
        return Err(ArchiveError::Content(
            "log prefix ends inside a record".into(),
        ));
    }
    Ok(scan)
}

fn check_count(manifest: &Manifest, ix: &Index) -> Result<(), ArchiveError> {
    if ix.len() as u64 != manifest.vector_count {
        return Err(ArchiveError::Content(format!(
            "rebuilt {} vectors, manifest says {}",
            ix.len(),
            manifest.vector_count
        )));
    }
    Ok(())
}

/// Validates a whole archive held in memory without writing anything: the tar structure,
/// every digest, and the contents as an index (see [`restore_index`]). Returns the
/// manifest.
pub fn verify_archive(bytes: &[u8]) -> Result<Manifest, ArchiveError> {
    let mut dec = ArchiveDecoder::new();
    dec.feed(bytes, &mut NullSink)?;
    let layout = dec.finish()?;
    let range = |p: &str| -> Result<&[u8], ArchiveError> {
        let e = layout
            .range(p)
            .ok_or_else(|| ArchiveError::Missing(vec![p.into()]))?;
        Ok(&bytes[e.offset as usize..(e.offset + e.size) as usize])
    };
    restore_index(&layout.manifest, range(CHECKPOINT_PATH)?, range(LOG_PATH)?)?;
    Ok(layout.manifest)
}
