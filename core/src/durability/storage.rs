//! The storage a single-threaded host lends to [`crate::database::Database`]: a few synchronous
//! file operations on `/`-separated relative paths. The core never opens a file itself; hosts
//! implement this over OPFS sync access handles, `node:fs`, or memory.

use std::collections::BTreeMap;
use std::io;

/// Synchronous file operations supplied by the host.
pub trait Storage {
    /// Size of a file, `None` if it does not exist.
    fn size(&mut self, path: &str) -> io::Result<Option<u64>>;
    /// Reads `len` bytes at `offset` (short only at end of file).
    fn read_at(&mut self, path: &str, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Appends to a file, creating it if missing.
    fn append(&mut self, path: &str, bytes: &[u8]) -> io::Result<()>;
    /// Creates or truncates a file to empty.
    fn create(&mut self, path: &str) -> io::Result<()>;
    /// Makes everything written to `path` durable.
    fn sync(&mut self, path: &str) -> io::Result<()>;
    /// Cuts a file to `len` bytes.
    fn truncate(&mut self, path: &str, len: u64) -> io::Result<()>;
    /// Renames atomically, replacing `to`.
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file if present.
    fn remove(&mut self, path: &str) -> io::Result<()>;
    /// Paths of all files whose path starts with `prefix`.
    fn list(&mut self, prefix: &str) -> io::Result<Vec<String>>;
    /// Makes creates, renames and removes inside directory `dir` durable. Storage whose
    /// renames are durable when they return (the OPFS pool, memory) needs nothing.
    fn sync_dir(&mut self, _dir: &str) -> io::Result<()> {
        Ok(())
    }
    /// Removes every file under directory `dir` (and the directory, where there are any).
    fn remove_tree(&mut self, dir: &str) -> io::Result<()> {
        for f in self.list(&format!("{}/", dir.trim_end_matches('/')))? {
            self.remove(&f)?;
        }
        Ok(())
    }

    /// Whole file, `None` if missing.
    fn read_all(&mut self, path: &str) -> io::Result<Option<Vec<u8>>> {
        match self.size(path)? {
            None => Ok(None),
            Some(n) => {
                let len = usize::try_from(n).map_err(|_| io::Error::other("file too large"))?;
                self.read_at(path, 0, len).map(Some)
            }
        }
    }

    /// Replaces a file atomically and durably: write a temp file, sync, rename over, sync
    /// the directory.
    fn replace(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        let tmp = format!("{path}.tmp");
        self.create(&tmp)?;
        self.append(&tmp, bytes)?;
        self.sync(&tmp)?;
        self.rename(&tmp, path)?;
        self.sync_dir(path.rsplit_once('/').map_or("", |(d, _)| d))
    }
}

#[derive(Debug, Clone, Default)]
struct MemFile {
    data: Vec<u8>,
    synced: usize,
    durable: bool,
}

/// In-memory storage. It tracks what was synced, so [`MemStorage::crash`] can drop exactly what a
/// power loss would (tests; Node's and the browser's memory mode never call it).
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    files: BTreeMap<String, MemFile>,
}

impl MemStorage {
    /// Empty storage.
    pub fn new() -> Self {
        Self::default()
    }
    /// Forgets unsynced bytes and files never synced.
    pub fn crash(&mut self) {
        self.files.retain(|_, f| f.durable);
        for f in self.files.values_mut() {
            f.data.truncate(f.synced);
        }
    }
    /// Total bytes held.
    pub fn bytes(&self) -> usize {
        self.files.values().map(|f| f.data.len()).sum()
    }
}

fn missing(path: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no such file: {path}"))
}

impl Storage for MemStorage {
    fn size(&mut self, path: &str) -> io::Result<Option<u64>> {
        Ok(self.files.get(path).map(|f| f.data.len() as u64))
    }
    fn read_at(&mut self, path: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let f = self.files.get(path).ok_or_else(|| missing(path))?;
        let start = (offset as usize).min(f.data.len());
        let end = start.saturating_add(len).min(f.data.len());
        Ok(f.data[start..end].to_vec())
    }
    fn append(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.files
            .entry(path.into())
            .or_default()
            .data
            .extend_from_slice(bytes);
        Ok(())
    }
    fn create(&mut self, path: &str) -> io::Result<()> {
        let f = self.files.entry(path.into()).or_default();
        f.data.clear();
        f.synced = 0;
        Ok(())
    }
    fn sync(&mut self, path: &str) -> io::Result<()> {
        let f = self.files.get_mut(path).ok_or_else(|| missing(path))?;
        f.synced = f.data.len();
        f.durable = true;
        Ok(())
    }
    fn truncate(&mut self, path: &str, len: u64) -> io::Result<()> {
        let f = self.files.get_mut(path).ok_or_else(|| missing(path))?;
        f.data.truncate(len as usize);
        f.synced = f.synced.min(f.data.len());
        Ok(())
    }
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        let f = self.files.remove(from).ok_or_else(|| missing(from))?;
        self.files.insert(to.into(), f);
        Ok(())
    }
    fn remove(&mut self, path: &str) -> io::Result<()> {
        self.files.remove(path);
        Ok(())
    }
    fn list(&mut self, prefix: &str) -> io::Result<Vec<String>> {
        Ok(self
            .files
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}

/// Reads a file range by range through a [`Storage`] (for streaming into archives).
pub struct StorageReader<'a, S: Storage + ?Sized> {
    storage: &'a std::cell::RefCell<&'a mut S>,
    path: String,
    offset: u64,
    end: u64,
}

impl<'a, S: Storage + ?Sized> StorageReader<'a, S> {
    /// Reads `path` from `offset` up to `end`.
    pub fn new(
        storage: &'a std::cell::RefCell<&'a mut S>,
        path: &str,
        offset: u64,
        end: u64,
    ) -> Self {
        Self {
            storage,
            path: path.into(),
            offset,
            end,
        }
    }
}

impl<S: Storage + ?Sized> io::Read for StorageReader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end.saturating_sub(self.offset) as usize)
            .min(buf.len())
            .min(1 << 20);
        if want == 0 {
            return Ok(0);
        }
        let got = self
            .storage
            .borrow_mut()
            .read_at(&self.path, self.offset, want)?;
        buf[..got.len()].copy_from_slice(&got);
        self.offset += got.len() as u64;
        Ok(got.len())
    }
}
