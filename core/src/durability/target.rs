//! Backup targets beyond the data directory: object stores (S3-compatible buckets) that any
//! server sharing them can list and restore from.
//!
//! A target holds, per archive `<name>`, two objects: `<name>.tar` (the archive, written as
//! one multipart upload: invisible until committed, abandoned uploads aborted) and
//! `<name>.json` (its [`TargetRecord`]: size, digest, index, cut), put only after the archive
//! is committed. An archive counts as a backup only once its record exists, so a listing
//! never shows one half-written, and every member is verified against the record's digest
//! on restore.
//!
//! The host implements [`ArchiveTarget`] over its object store; [`MemTarget`] is the
//! in-memory one tests and the simulation use.

use crate::registry::CutPoint;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;

/// The key of archive `name` in a target.
pub fn archive_key(name: &str) -> String {
    format!("{name}.tar")
}

/// The key of archive `name`'s record in a target.
pub fn record_key(name: &str) -> String {
    format!("{name}.json")
}

/// What a target says of one archive (its `<name>.json`, written after the archive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// Archive name.
    pub name: String,
    /// The index it was cut from.
    pub index_name: String,
    /// Archive bytes.
    pub size: u64,
    /// Archive SHA-256, hex.
    pub sha256: String,
    /// When the backup was taken (ms since epoch).
    pub created_at: u64,
    /// Live vectors at the cut.
    pub vector_count: u64,
    /// The cut.
    pub cut: CutPoint,
    /// An incremental backup's base (an archive on the same target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

impl TargetRecord {
    /// Decodes a record; `None` for anything that is not one (a listing skips it).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

/// An object store as the core's backup and restore tasks use it. Keys are relative to the
/// target's prefix. At most one object is being written per key at a time (the engine
/// reserves archive names).
pub trait ArchiveTarget: Send {
    /// Where the target is, for messages and listings (e.g. `s3://bucket/prefix`).
    fn location(&self) -> String;
    /// The size of object `key` (`None`: no such object).
    fn size(&mut self, key: &str) -> io::Result<Option<u64>>;
    /// Up to `len` bytes of `key` from `at` (short only at its end).
    fn read_at(&mut self, key: &str, at: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Starts writing object `key`: nothing is visible until [`ArchiveTarget::commit`].
    /// Returns the upload's id where the store keeps uploads apart from their writer (S3's
    /// multipart uploads): the caller records it, so an upload a crash abandons is aborted
    /// after the restart ([`ArchiveTarget::abort_upload`]).
    fn begin(&mut self, key: &str) -> io::Result<Option<String>>;
    /// Appends to the object being written at `key` (the host buffers into parts).
    fn append(&mut self, key: &str, bytes: &[u8]) -> io::Result<()>;
    /// Makes the object written at `key` visible, whole.
    fn commit(&mut self, key: &str) -> io::Result<()>;
    /// Abandons the object being written at `key` (its parts are deleted); fine if none.
    fn abort(&mut self, key: &str) -> io::Result<()>;
    /// Abandons upload `upload` of `key` that [`ArchiveTarget::begin`] named, whoever began
    /// it (a process that crashed since); fine if it is over already.
    fn abort_upload(&mut self, key: &str, upload: &str) -> io::Result<()>;
    /// Writes a small object whole, visible at once.
    fn put(&mut self, key: &str, bytes: &[u8]) -> io::Result<()>;
    /// Deletes object `key`; fine if missing.
    fn delete(&mut self, key: &str) -> io::Result<()>;
    /// Every object key with its size, sorted.
    fn list(&mut self) -> io::Result<Vec<(String, u64)>>;
}

/// An in-memory [`ArchiveTarget`]; `down` makes every call fail (a store gone away).
#[derive(Debug, Default, Clone)]
pub struct MemTarget {
    /// Visible objects.
    pub objects: BTreeMap<String, Vec<u8>>,
    /// Objects being written, by `<key>#<upload id>` (a crashed writer's stay until aborted).
    pub uploads: BTreeMap<String, Vec<u8>>,
    /// The upload each key is being written by now.
    current: BTreeMap<String, String>,
    /// Upload ids given so far.
    began: u64,
    /// When set, every call fails.
    pub down: bool,
}

impl MemTarget {
    /// Where the upload now writing `key` keeps its bytes.
    fn upload_key(&self, key: &str) -> io::Result<String> {
        self.current
            .get(key)
            .map(|id| format!("{key}#{id}"))
            .ok_or_else(|| io::Error::other(format!("no upload open at {key}")))
    }

    fn up(&self) -> io::Result<()> {
        if self.down {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "object store unreachable",
            ));
        }
        Ok(())
    }
}

impl ArchiveTarget for MemTarget {
    fn location(&self) -> String {
        "mem://".into()
    }
    fn size(&mut self, key: &str) -> io::Result<Option<u64>> {
        self.up()?;
        Ok(self.objects.get(key).map(|o| o.len() as u64))
    }
    fn read_at(&mut self, key: &str, at: u64, len: usize) -> io::Result<Vec<u8>> {
        self.up()?;
        let o = self
            .objects
            .get(key)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no object {key}")))?;
        let start = (at as usize).min(o.len());
        Ok(o[start..(start + len).min(o.len())].to_vec())
    }
    fn begin(&mut self, key: &str) -> io::Result<Option<String>> {
        self.up()?;
        self.began += 1;
        let id = self.began.to_string();
        self.uploads.insert(format!("{key}#{id}"), Vec::new());
        self.current.insert(key.into(), id.clone());
        Ok(Some(id))
    }
    fn append(&mut self, key: &str, bytes: &[u8]) -> io::Result<()> {
        self.up()?;
        let slot = self.upload_key(key)?;
        self.uploads
            .get_mut(&slot)
            .ok_or_else(|| io::Error::other(format!("no upload open at {key}")))?
            .extend_from_slice(bytes);
        Ok(())
    }
    fn commit(&mut self, key: &str) -> io::Result<()> {
        self.up()?;
        let slot = self.upload_key(key)?;
        let o = self
            .uploads
            .remove(&slot)
            .ok_or_else(|| io::Error::other(format!("no upload open at {key}")))?;
        self.current.remove(key);
        self.objects.insert(key.into(), o);
        Ok(())
    }
    fn abort(&mut self, key: &str) -> io::Result<()> {
        self.up()?;
        if let Some(id) = self.current.remove(key) {
            self.uploads.remove(&format!("{key}#{id}"));
        }
        Ok(())
    }
    fn abort_upload(&mut self, key: &str, upload: &str) -> io::Result<()> {
        self.up()?;
        self.uploads.remove(&format!("{key}#{upload}"));
        if self.current.get(key).is_some_and(|c| c == upload) {
            self.current.remove(key);
        }
        Ok(())
    }
    fn put(&mut self, key: &str, bytes: &[u8]) -> io::Result<()> {
        self.up()?;
        self.objects.insert(key.into(), bytes.to_vec());
        Ok(())
    }
    fn delete(&mut self, key: &str) -> io::Result<()> {
        self.up()?;
        self.objects.remove(key);
        Ok(())
    }
    fn list(&mut self) -> io::Result<Vec<(String, u64)>> {
        self.up()?;
        Ok(self
            .objects
            .iter()
            .map(|(k, v)| (k.clone(), v.len() as u64))
            .collect())
    }
}

/// The archives a target lists as backups: every record that decodes and whose archive
/// exists with the recorded size, sorted by name.
pub fn list_backups(t: &mut dyn ArchiveTarget) -> io::Result<Vec<TargetRecord>> {
    let objects: BTreeMap<String, u64> = t.list()?.into_iter().collect();
    let mut out = Vec::new();
    for key in objects.keys() {
        let Some(name) = key.strip_suffix(".json") else {
            continue;
        };
        if !objects.contains_key(&archive_key(name)) {
            continue;
        }
        let bytes = t.read_at(key, 0, 64 << 10)?;
        if let Some(r) = TargetRecord::decode(&bytes)
            && r.name == name
            && objects.get(&archive_key(name)) == Some(&r.size)
        {
            out.push(r);
        }
    }
    Ok(out)
}

/// A [`MemTarget`] shared with whoever else holds it (a second database, a test that takes
/// the store down mid-upload).
pub type SharedMemTarget = std::sync::Arc<std::sync::Mutex<MemTarget>>;

impl ArchiveTarget for SharedMemTarget {
    fn location(&self) -> String {
        "mem://shared".into()
    }
    fn size(&mut self, key: &str) -> io::Result<Option<u64>> {
        shared(self).size(key)
    }
    fn read_at(&mut self, key: &str, at: u64, len: usize) -> io::Result<Vec<u8>> {
        shared(self).read_at(key, at, len)
    }
    fn begin(&mut self, key: &str) -> io::Result<Option<String>> {
        shared(self).begin(key)
    }
    fn abort_upload(&mut self, key: &str, upload: &str) -> io::Result<()> {
        shared(self).abort_upload(key, upload)
    }
    fn append(&mut self, key: &str, bytes: &[u8]) -> io::Result<()> {
        shared(self).append(key, bytes)
    }
    fn commit(&mut self, key: &str) -> io::Result<()> {
        shared(self).commit(key)
    }
    fn abort(&mut self, key: &str) -> io::Result<()> {
        shared(self).abort(key)
    }
    fn put(&mut self, key: &str, bytes: &[u8]) -> io::Result<()> {
        shared(self).put(key, bytes)
    }
    fn delete(&mut self, key: &str) -> io::Result<()> {
        shared(self).delete(key)
    }
    fn list(&mut self) -> io::Result<Vec<(String, u64)>> {
        shared(self).list()
    }
}

fn shared(t: &SharedMemTarget) -> std::sync::MutexGuard<'_, MemTarget> {
    t.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
