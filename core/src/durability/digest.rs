//! SHA-256 digests of byte streams: what archives list per entry, what hosts record beside
//! each checkpoint, and what a backup checks every byte against. Its own module so that
//! checkpoints (which digest what they write) and archives (which read checkpoints) don't
//! import each other.

use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

/// A writer that hashes and counts what passes through.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// Bytes and hex digest so far, and the inner writer.
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.count, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that counts and SHA-256-digests what passes through it (a digest pass over
/// pinned files, or a check that a file streamed into an archive still has its recorded digest).
pub struct DigestReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R> DigestReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Size and hex SHA-256 of everything read so far.
    pub fn finish(self) -> (u64, String) {
        (self.count, hex::encode(self.hasher.finalize()))
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Size and SHA-256 of everything `r` yields (the first pass over pinned, immutable files).
pub fn digest_reader<R: Read>(r: R) -> io::Result<(u64, String)> {
    let mut h = DigestReader::new(r);
    io::copy(&mut h, &mut io::sink())?;
    Ok(h.finish())
}

/// The text of a digest file kept next to a checkpoint (`<size> <sha256>`): hosts write it
/// when they write the checkpoint, so a backup need not read the checkpoint twice.
pub fn encode_digest((size, sha256): &(u64, String)) -> String {
    format!("{size} {sha256}\n")
}

/// Parses [`encode_digest`]'s text; `None` for anything else (the caller then digests).
pub fn parse_digest(text: &str) -> Option<(u64, String)> {
    let (size, sha) = text.trim_end().split_once(' ')?;
    let ok = sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit());
    Some((size.parse().ok()?, sha.to_string())).filter(|_| ok)
}
