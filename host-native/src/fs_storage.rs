//! The data directory as the core's [`Storage`]: each call is one or two syscalls on a path
//! under the root, with the durability the core asks for (`sync` is fsync, `sync_dir`
//! fsyncs a directory so creates and renames in it survive a power loss).
//!
//! Long appends (an archive, a checkpoint) keep their file open and push it to the disk in
//! 16 MiB windows with `sync_file_range` — start writing this window, wait for the previous
//! one — so the final fsync is small and the concurrent writers' log fsyncs never queue
//! behind one huge flush. That is how the bytes are written, not what is written: the
//! protocol (what, in which order, when durable) stays the core's.

use crate::fsutil;
use cairn_core::Storage;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

/// Bytes between two write-back windows of a long append.
const WINDOW: u64 = 16 << 20;

/// Where the time of a run of storage calls went (for a job's completion log line).
#[derive(Debug, Default, Clone, Copy)]
pub struct IoTime {
    /// Reads, µs.
    pub read_us: u64,
    /// Appends (write-back windows included), µs.
    pub append_us: u64,
    /// File and directory syncs, µs.
    pub sync_us: u64,
}

/// A file being appended to, kept open between calls.
#[derive(Debug)]
struct OpenAppend {
    path: String,
    file: File,
    /// Bytes appended through this handle.
    written: u64,
    /// Where the window being written back starts (everything before it is on its way).
    window: u64,
}

/// Where the parts of a data directory live: everything under `root`, except `backups/`
/// and `tmp/` when the operator put them elsewhere (`--backup-dir`, `--temp-dir`: another
/// volume). `backups/` keeps its own `.tmp/` (an archive is renamed into place, which needs
/// one file system); nothing in `tmp/` is ever renamed.
#[derive(Debug, Clone)]
pub struct Roots {
    /// The data directory.
    pub root: PathBuf,
    /// Where `backups/` is, if not under `root`.
    pub backups: Option<PathBuf>,
    /// Where `tmp/` is, if not under `root`.
    pub tmp: Option<PathBuf>,
}

impl Roots {
    /// Everything under `root`.
    pub fn new(root: &std::path::Path) -> Self {
        Self {
            root: root.to_path_buf(),
            backups: None,
            tmp: None,
        }
    }

    /// The file a data-directory path (`/`-separated, relative) names.
    pub fn resolve(&self, rel: &str) -> PathBuf {
        let moved = |dir: &str, to: &Option<PathBuf>| {
            let to = to.as_ref()?;
            match rel.strip_prefix(dir) {
                Some("") => Some(to.clone()),
                Some(rest) => rest.strip_prefix('/').map(|r| to.join(r)),
                None => None,
            }
        };
        moved("backups", &self.backups)
            .or_else(|| moved(cairn_core::engine::paths::TMP_DIR, &self.tmp))
            .unwrap_or_else(|| self.root.join(rel))
    }
}

/// Files under a data directory.
#[derive(Debug)]
pub struct FsStorage {
    roots: Roots,
    append: Option<OpenAppend>,
    /// Time spent per kind of call.
    pub time: IoTime,
}

impl FsStorage {
    /// Storage rooted at `root`.
    pub fn new(roots: &Roots) -> Self {
        Self {
            roots: roots.clone(),
            append: None,
            time: IoTime::default(),
        }
    }

    /// Forgets the open append handle if it is `path`'s (the file is about to change name,
    /// size or existence under it).
    fn forget(&mut self, path: &str) {
        if self.append.as_ref().is_some_and(|a| a.path == path) {
            self.append = None;
        }
    }

    fn append_open(&mut self, path: &str) -> io::Result<&mut OpenAppend> {
        if self.append.as_ref().is_none_or(|a| a.path != path) {
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .open(self.path(path))?;
            let at = file.metadata()?.len();
            self.append = Some(OpenAppend {
                path: path.into(),
                file,
                written: at,
                window: at,
            });
        }
        self.append
            .as_mut()
            .ok_or_else(|| io::Error::other("append handle"))
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.roots.resolve(rel)
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
        let t = Instant::now();
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
        self.time.read_us += t.elapsed().as_micros() as u64;
        Ok(buf)
    }
    fn append(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        let t = Instant::now();
        let a = self.append_open(path)?;
        a.file.write_all(bytes)?;
        a.written += bytes.len() as u64;
        if a.written - a.window >= WINDOW {
            write_back(&a.file, a.window, a.written - a.window)?;
            a.window = a.written;
        }
        self.time.append_us += t.elapsed().as_micros() as u64;
        Ok(())
    }
    fn create(&mut self, path: &str) -> io::Result<()> {
        self.forget(path);
        self.parent_dir(path)?;
        File::create(self.path(path)).map(|_| ())
    }
    fn sync(&mut self, path: &str) -> io::Result<()> {
        let t = Instant::now();
        let r = match &self.append {
            Some(a) if a.path == path => a.file.sync_all(),
            _ => File::open(self.path(path))?.sync_all(),
        };
        self.time.sync_us += t.elapsed().as_micros() as u64;
        r
    }
    fn truncate(&mut self, path: &str, len: u64) -> io::Result<()> {
        self.forget(path);
        OpenOptions::new()
            .write(true)
            .open(self.path(path))?
            .set_len(len)
    }
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.forget(from);
        self.forget(to);
        self.parent_dir(to)?;
        fs::rename(self.path(from), self.path(to))
    }
    fn remove(&mut self, path: &str) -> io::Result<()> {
        self.forget(path);
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
        let t = Instant::now();
        let r = fsutil::sync_dir(&self.path(dir));
        self.time.sync_us += t.elapsed().as_micros() as u64;
        r
    }
    fn remove_tree(&mut self, dir: &str) -> io::Result<()> {
        if self
            .append
            .as_ref()
            .is_some_and(|a| a.path.starts_with(&format!("{dir}/")))
        {
            self.append = None;
        }
        fsutil::remove_any(&self.path(dir))
    }
    fn replace(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.forget(path);
        fsutil::replace_atomic(&self.path(path), bytes)
    }
}

/// Starts writing back `[at, at + len)` of `file` and waits for what was started before it:
/// the page cache never holds more than two windows of this file's dirty bytes.
fn write_back(file: &File, at: u64, len: u64) -> io::Result<()> {
    let fd = file.as_raw_fd();
    let (at, len) = (at as libc::off64_t, len as libc::off64_t);
    // SAFETY: `fd` is an open descriptor owned by `file` for the whole call; sync_file_range
    // only reads its arguments and touches no memory of ours.
    let r = unsafe {
        if at > 0 {
            libc::sync_file_range(
                fd,
                0,
                at,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
        }
        libc::sync_file_range(fd, at, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    // Only a hint: durability comes from the fsync the core asks for.
    if r != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "sync_file_range");
    }
    Ok(())
}
