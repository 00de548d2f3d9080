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
use crate::jobs::CutPoint;
use crate::params::IndexParams;
use crate::record::FrameError;
use serde::{Deserialize, Serialize};
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

fn regular_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    h
}

/// Where an archive's bytes go, and what digests them: [`HashingWriter`] hashes on the
/// caller's thread; a host may hash elsewhere (the native host hashes and writes on a helper
/// thread while the caller reads and verifies the entries).
pub trait ArchiveSink: Write {
    /// What the sink wrote into (returned when the archive ends).
    type Inner;
    /// Ends the stream: the inner writer, the bytes written and their hex SHA-256.
    fn finish_archive(self) -> io::Result<(Self::Inner, u64, String)>;
}

impl<W: Write> ArchiveSink for HashingWriter<W> {
    type Inner = W;
    fn finish_archive(self) -> io::Result<(W, u64, String)> {
        Ok(self.finish())
    }
}

/// Streams an archive: manifest first, then each listed entry in order.
pub struct ArchiveWriter<S: ArchiveSink> {
    builder: tar::Builder<S>,
    manifest: Manifest,
    next: usize,
}

impl<W: Write> ArchiveWriter<HashingWriter<W>> {
    /// Starts an archive into `sink` (digested on this thread) by writing the manifest entry.
    pub fn new(sink: W, manifest: Manifest) -> Result<Self, ArchiveError> {
        Self::with_sink(HashingWriter::new(sink), manifest)
    }
}

impl<S: ArchiveSink> ArchiveWriter<S> {
    /// Starts an archive into a sink that digests what it is given, by writing the manifest.
    pub fn with_sink(sink: S, manifest: Manifest) -> Result<Self, ArchiveError> {
        let mut builder = tar::Builder::new(sink);
        let bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ArchiveError::BadManifest(e.to_string()))?;
        let mut h = regular_header(bytes.len() as u64);
        builder.append_data(&mut h, MANIFEST_PATH, &bytes[..])?;
        Ok(Self {
            builder,
            manifest,
            next: 0,
        })
    }

    /// Streams the next listed entry from `data`; its size and digest must match the manifest
    /// (a pinned file that changed underneath is an error, not a silently wrong archive).
    pub fn append<R: Read>(&mut self, data: R) -> Result<(), ArchiveError> {
        let e = self
            .manifest
            .entries
            .get(self.next)
            .cloned()
            .ok_or_else(|| ArchiveError::BadManifest("more entries than listed".into()))?;
        let mut hr = DigestReader::new(data.take(e.size));
        let mut h = regular_header(e.size);
        self.builder.append_data(&mut h, &e.path, &mut hr)?;
        let (count, sha256) = hr.finish();
        if count != e.size {
            return Err(ArchiveError::Size {
                path: e.path,
                got: count,
                want: e.size,
            });
        }
        if sha256 != e.sha256 {
            return Err(ArchiveError::Digest(e.path));
        }
        self.next += 1;
        Ok(())
    }

    /// Ends the archive; returns the sink's inner writer, the archive size and its SHA-256.
    pub fn finish(self) -> Result<(S::Inner, u64, String), ArchiveError> {
        if self.next != self.manifest.entries.len() {
            return Err(ArchiveError::BadManifest(
                "not every listed entry was written".into(),
            ));
        }
        Ok(self.builder.into_inner()?.finish_archive()?)
    }
}

/// Receives validated-so-far entries while an archive is read. The reader checks size and
/// digest after the sink has consumed `data`; on any error the caller discards what the sink
/// wrote. Implementations must not publish anything before [`read_archive`] returns `Ok`.
pub trait EntrySink {
    /// Consumes one entry.
    fn entry(&mut self, path: &str, size: u64, data: &mut dyn Read) -> io::Result<()>;
}

/// An [`EntrySink`] that keeps entries in memory (tests, the browser's small archives).
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Path → bytes.
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
}

impl EntrySink for MemorySink {
    fn entry(&mut self, path: &str, _size: u64, data: &mut dyn Read) -> io::Result<()> {
        let mut v = Vec::new();
        data.read_to_end(&mut v)?;
        self.files.insert(path.into(), v);
        Ok(())
    }
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
        })
    }

    /// Bytes of data entries (what progress counts towards).
    pub fn data_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

/// Reads and validates a whole archive, streaming each data entry to `sink`.
pub fn read_archive<R: Read>(r: R, sink: &mut dyn EntrySink) -> Result<Manifest, ArchiveError> {
    let mut ar = tar::Archive::new(r);
    // Raw: PAX and GNU long-name/long-link entries come through as entries of their own
    // (refused below as not regular) instead of being read into memory whole by the tar
    // crate — a 192 MiB "long name" must cost nothing. Our writer never emits them.
    let mut entries = ar.entries()?.raw(true);
    let mut first = entries.next().ok_or(ArchiveError::MissingManifest)??;
    let path = String::from_utf8_lossy(&first.path_bytes()).into_owned();
    if path != MANIFEST_PATH || first.header().entry_type() != tar::EntryType::Regular {
        return Err(ArchiveError::MissingManifest);
    }
    if first.size() > MAX_MANIFEST {
        return Err(ArchiveError::BadManifest(format!(
            "manifest larger than {MAX_MANIFEST} bytes"
        )));
    }
    let mut mbytes = Vec::new();
    first.read_to_end(&mut mbytes)?;
    let manifest: Manifest = serde_json::from_slice(&mbytes).map_err(|e| {
        // Distinguish "another version" from garbage when the envelope parses.
        match serde_json::from_slice::<serde_json::Value>(&mbytes) {
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
    let mut seen = BTreeSet::new();
    for entry in entries {
        let entry = entry?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        check_path(&path)?;
        let t = entry.header().entry_type();
        if !(t == tar::EntryType::Regular || t == tar::EntryType::Continuous) {
            return Err(ArchiveError::NotRegular(path));
        }
        let Some(want) = manifest.entries.iter().find(|e| e.path == path) else {
            return Err(ArchiveError::Unlisted(path));
        };
        if !seen.insert(path.clone()) {
            return Err(ArchiveError::Duplicate(path));
        }
        if entry.size() != want.size {
            return Err(ArchiveError::Size {
                path,
                got: entry.size(),
                want: want.size,
            });
        }
        let mut hr = DigestReader::new(entry);
        sink.entry(&path, want.size, &mut hr)?;
        io::copy(&mut hr, &mut io::sink())?;
        let (count, sha256) = hr.finish();
        if count != want.size {
            return Err(ArchiveError::Size {
                path,
                got: count,
                want: want.size,
            });
        }
        if sha256 != want.sha256 {
            return Err(ArchiveError::Digest(path));
        }
    }
    let missing: Vec<String> = manifest
        .entries
        .iter()
        .filter(|e| !seen.contains(&e.path))
        .map(|e| e.path.clone())
        .collect();
    if !missing.is_empty() {
        return Err(ArchiveError::Missing(missing));
    }
    Ok(manifest)
}

/// Builds the index an archive describes from its (validated) checkpoint and log prefix.
/// The log prefix must be whole records and the result must hold `vector_count` vectors.
pub fn restore_index<C: Read, L: Read>(
    manifest: &Manifest,
    checkpoint: C,
    log: L,
) -> Result<Index, ArchiveError> {
    let mut ix = read_checkpoint(checkpoint)?;
    check_params(manifest, &ix)?;
    replay_prefix(&mut ix, log)?;
    check_count(manifest, &ix)?;
    Ok(ix)
}

fn check_params(manifest: &Manifest, ix: &Index) -> Result<(), ArchiveError> {
    if ix.params() != &manifest.params {
        return Err(ArchiveError::Content(
            "checkpoint params (dimension, precision, ...) differ from the manifest".into(),
        ));
    }
    Ok(())
}

fn replay_prefix<L: Read>(ix: &mut Index, log: L) -> Result<(), ArchiveError> {
    let scan = ix
        .replay(log)
        .map_err(|e: FrameError| ArchiveError::Content(format!("log: {e}")))?;
    if scan.torn {
        return Err(ArchiveError::Content(
            "log prefix ends inside a record".into(),
        ));
    }
    Ok(())
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

/// Rebuilds the index from entries as they stream (checkpoint, then log), keeping the first
/// content error so [`verify_archive`] can report it rather than the io error that stopped
/// the read.
#[derive(Default)]
struct IndexSink {
    index: Option<Index>,
    err: Option<ArchiveError>,
}

impl IndexSink {
    fn take(&mut self, path: &str, data: &mut dyn Read) -> Result<(), ArchiveError> {
        match (path, &mut self.index) {
            (CHECKPOINT_PATH, None) => {
                self.index = Some(read_checkpoint(data)?);
                Ok(())
            }
            (LOG_PATH, Some(ix)) => replay_prefix(ix, data),
            _ => Err(ArchiveError::Content(format!("unexpected entry {path:?}"))),
        }
    }
}

impl EntrySink for IndexSink {
    fn entry(&mut self, path: &str, _size: u64, data: &mut dyn Read) -> io::Result<()> {
        self.take(path, data).map_err(|e| {
            let msg = e.to_string();
            self.err = Some(e);
            io::Error::other(msg)
        })
    }
}

/// Validates a whole archive without writing anything: the tar structure, every digest, and
/// the contents as an index (the checkpoint loads with every structural check, the log
/// replays with every record checked, params and vector count match the manifest). Costs
/// the memory of the index it describes; returns the manifest.
pub fn verify_archive<R: Read>(r: R) -> Result<Manifest, ArchiveError> {
    let mut sink = IndexSink::default();
    let manifest = match read_archive(r, &mut sink) {
        Ok(m) => m,
        Err(e) => return Err(sink.err.take().unwrap_or(e)),
    };
    let ix = sink
        .index
        .as_ref()
        .ok_or_else(|| ArchiveError::Missing(vec![CHECKPOINT_PATH.into()]))?;
    check_params(&manifest, ix)?;
    check_count(&manifest, ix)?;
    Ok(manifest)
}
