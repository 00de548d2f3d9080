//! Where a backup job's archive goes: a file written back in 16 MiB steps, behind a thread that
//! digests and writes the stream while the job's own thread reads and verifies the entries.
//!
//! Why threads: streaming an archive hashes every byte twice — once to check each entry
//! against the manifest's digest, once for the whole archive's SHA-256 in the job record — and
//! SHA-256 (≈1.2 GB/s here) was the job's bottleneck, not the disk. Split over two cores the
//! job runs at about the speed of `tar` + `sync` of the same files.

use cairn_core::archive::ArchiveSink;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Bytes written between write-back steps of an archive being written.
const SYNC_EVERY: u64 = 16 << 20;

/// A file written in [`SYNC_EVERY`] windows, each pushed to the disk as the next one is
/// written, so the final fsync of a large archive is small and the log fsyncs of concurrent
/// writes never queue behind one huge flush.
///
/// On Linux each window is handed to `sync_file_range` (start write-back of this window, wait
/// for the previous one, the pattern RocksDB's `bytes_per_sync` uses): it writes the pages
/// without a journal commit or a device cache flush per window, and the disk works on one
/// window while the next is written; one fdatasync at the end makes the archive durable. (An
/// fdatasync per window, as before, also flushed the device cache 13 times per 208 MB.)
/// Elsewhere each window is fdatasynced.
pub struct PacedFile {
    file: File,
    written: u64,
    /// Where the window not yet handed to write-back starts.
    window: u64,
}

impl PacedFile {
    /// Wraps a freshly created archive file.
    pub fn new(file: File) -> Self {
        Self {
            file,
            written: 0,
            window: 0,
        }
    }

    /// Makes everything durable (data and metadata).
    pub fn finish(self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// Starts write-back of the window that just filled and waits for the one before it.
    #[cfg(target_os = "linux")]
    fn push_window(&mut self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = self.file.as_raw_fd();
        let range = |start: u64, flags| {
            // SAFETY: `fd` is the open descriptor of `self.file`, borrowed for this call; the
            // call reads no memory of ours.
            let r = unsafe { libc::sync_file_range(fd, start as i64, SYNC_EVERY as i64, flags) };
            if r == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        range(self.window, libc::SYNC_FILE_RANGE_WRITE)?;
        if let Some(prev) = self.window.checked_sub(SYNC_EVERY) {
            range(
                prev,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            )?;
        }
        self.window += SYNC_EVERY;
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn push_window(&mut self) -> io::Result<()> {
        self.window += SYNC_EVERY;
        self.file.sync_data()
    }
}

impl Write for PacedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written >= self.window + SYNC_EVERY {
            self.push_window()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Bytes handed to the digest-and-write thread at a time.
const CHUNK: usize = 1 << 20;
/// Bytes per write(2) into the archive file: tar-sized writes (GNU tar writes 10 KiB) rather
/// than 1 MiB ones, so the page cache fills with small folios; on this VM the large writes
/// ran slower once the backup outgrew recently used memory (not conclusive: run-to-run I/O
/// noise here is ±2×, for tar as well).
const WRITE_SIZE: usize = 64 << 10;
/// Chunks that may wait for that thread (bounded memory: a few MiB).
const QUEUE: usize = 4;

/// An [`ArchiveSink`] that hashes and writes on a helper thread (see the module doc): writes
/// are gathered into 1 MiB chunks and queued; the thread digests each and writes it to a
/// [`PacedFile`]. An error on the thread surfaces at the next write or at the end.
pub struct HashBehind {
    buf: Vec<u8>,
    tx: Option<mpsc::SyncSender<Vec<u8>>>,
    worker: Option<JoinHandle<io::Result<(PacedFile, u64, String)>>>,
}

impl HashBehind {
    /// Starts the helper thread writing into `file`.
    pub fn new(file: PacedFile) -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let worker = std::thread::Builder::new()
            .name("cairn-backup-write".into())
            .spawn(move || {
                let mut out = file;
                let mut hasher = Sha256::new();
                let mut count = 0u64;
                for chunk in rx {
                    hasher.update(&chunk);
                    for piece in chunk.chunks(WRITE_SIZE) {
                        out.write_all(piece)?;
                    }
                    count += chunk.len() as u64;
                }
                Ok((out, count, hex::encode(hasher.finalize())))
            })?;
        Ok(Self {
            buf: Vec::with_capacity(CHUNK),
            tx: Some(tx),
            worker: Some(worker),
        })
    }

    /// Sends the gathered bytes; if the thread has stopped, returns its error.
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let sent = self.tx.as_ref().map(|tx| tx.send(chunk).is_ok());
        if sent == Some(true) {
            return Ok(());
        }
        // The thread ended early: only an error makes it do that.
        Err(match self.join() {
            Err(e) => e,
            Ok(_) => io::Error::other("backup writer thread stopped"),
        })
    }

    /// Closes the queue and waits for the thread's result.
    fn join(&mut self) -> io::Result<(PacedFile, u64, String)> {
        self.tx = None;
        let worker = self
            .worker
            .take()
            .ok_or_else(|| io::Error::other("backup writer thread already joined"))?;
        worker
            .join()
            .map_err(|_| io::Error::other("backup writer thread panicked"))?
    }
}

impl Write for HashBehind {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ArchiveSink for HashBehind {
    type Inner = PacedFile;
    fn finish_archive(mut self) -> io::Result<(PacedFile, u64, String)> {
        self.send()?;
        self.join()
    }
}

impl Drop for HashBehind {
    fn drop(&mut self) {
        // An abandoned archive (error, cancel): stop the thread; its file is deleted by the job.
        if self.worker.is_some() {
            let _ = self.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion
    use super::*;
    use cairn_core::archive::HashingWriter;

    fn temp(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("cairn-archive-out-{tag}-{}", std::process::id()))
    }

    #[test]
    fn hash_behind_writes_and_digests_like_the_inline_writer() {
        // 40 MiB in ragged writes: several chunks and several write-back windows.
        let data: Vec<u8> = (0..40u32 << 20).map(|i| (i * 7 + i / 4099) as u8).collect();
        let path = temp("same");
        let mut out = HashBehind::new(PacedFile::new(File::create(&path).unwrap())).unwrap();
        for piece in data.chunks(777_777) {
            out.write_all(piece).unwrap();
        }
        let (file, size, sha) = out.finish_archive().unwrap();
        file.finish().unwrap();
        let mut inline = HashingWriter::new(Vec::new());
        inline.write_all(&data).unwrap();
        let (bytes, isize, isha) = inline.finish();
        assert_eq!((size, sha), (isize, isha));
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_failing_file_fails_the_stream() {
        let path = temp("ro");
        std::fs::write(&path, b"x").unwrap();
        // A read-only handle: every write on the helper thread fails.
        let ro = File::open(&path).unwrap();
        let mut out = HashBehind::new(PacedFile::new(ro)).unwrap();
        let big = vec![1u8; 3 * CHUNK];
        let r = out
            .write_all(&big)
            .and_then(|_| out.finish_archive().map(|_| ()));
        assert!(r.is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
