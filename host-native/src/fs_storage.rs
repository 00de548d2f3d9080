//! The data directory as the core's [`Storage`]: each call is one or two syscalls on a path
//! under the root, with the durability the core asks for (`sync` is fsync, `sync_dir`
//! fsyncs a directory so creates and renames in it survive a power loss).

use crate::fsutil;
use cairn_core::Storage;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Files under a data directory.
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: PathBuf,
}

impl FsStorage {
    /// Storage rooted at `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn parent_dir(&self, rel: &str) -> io::Result<()> {
        match self.path(rel).parent() {
            Some(d) => fs::create_dir_all(d),
            None => Ok(()),
        }
    }
}

impl Storage for FsStorage {
    fn size(&mut self, path: &str) -> io::Result<Option<u64>> {
        match fs::metadata(self.path(path)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn read_at(&mut self, path: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let f = File::open(self.path(path))?;
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match f.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }
    fn append(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.path(path))?
            .write_all(bytes)
    }
    fn create(&mut self, path: &str) -> io::Result<()> {
        self.parent_dir(path)?;
        File::create(self.path(path)).map(|_| ())
    }
    fn sync(&mut self, path: &str) -> io::Result<()> {
        File::open(self.path(path))?.sync_all()
    }
    fn truncate(&mut self, path: &str, len: u64) -> io::Result<()> {
        OpenOptions::new()
            .write(true)
            .open(self.path(path))?
            .set_len(len)
    }
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.parent_dir(to)?;
        fs::rename(self.path(from), self.path(to))
    }
    fn remove(&mut self, path: &str) -> io::Result<()> {
        fsutil::remove_any(&self.path(path))
    }
    fn list(&mut self, prefix: &str) -> io::Result<Vec<String>> {
        // Files under the directory part of `prefix` whose relative path starts with it.
        let dir = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let mut out = Vec::new();
        let mut stack = vec![dir.to_string()];
        while let Some(d) = stack.pop() {
            let rd = match fs::read_dir(self.path(&d)) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for e in rd {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                let rel = if d.is_empty() {
                    name
                } else {
                    format!("{d}/{name}")
                };
                if e.file_type()?.is_dir() {
                    stack.push(rel);
                } else if rel.starts_with(prefix) {
                    out.push(rel);
                }
            }
        }
        out.sort();
        Ok(out)
    }
    fn sync_dir(&mut self, dir: &str) -> io::Result<()> {
        fsutil::sync_dir(&self.path(dir))
    }
    fn remove_tree(&mut self, dir: &str) -> io::Result<()> {
        fsutil::remove_any(&self.path(dir))
    }
    fn replace(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        fsutil::replace_atomic(&self.path(path), bytes)
    }
}
