//! Writing a generation of an index, one protocol for every host (a create writes generation
//! 1, a checkpoint the next one): the checkpoint, synced; its size and SHA-256 in the digest
//! file, so a backup reads the checkpoint once; an empty log, synced; then the manifest naming
//! the generation, replaced atomically — the commit point. Until the manifest lands the old
//! generation is the index; after it, the host swaps its in-memory state
//! ([`crate::Index::checkpointed`]) and tells the engine
//! ([`crate::Engine::checkpoint_done`]), which frees the old files once no backup pins them.

use crate::checkpoint;
use crate::control::engine::{Engine, EngineError, IndexManifest, paths};
use crate::digest::encode_digest;
use crate::index::Index;
use crate::originals::{CheckpointBytes, NoCheckpoint, OriginalsLayout};
use crate::storage::Storage;
use std::cell::RefCell;
use std::io::{self, Write};
use thiserror::Error;

/// Where the checkpoint being written finds the originals an int8 or binary index keeps on
/// disk (other precisions read none).
pub enum OriginalsFrom<'a> {
    /// Nowhere: a new, empty index.
    Nothing,
    /// A checkpoint file in the same storage (the index's current generation).
    Stored(String),
    /// An open source the host keeps (the native server's checkpoint file).
    Reader(&'a mut dyn CheckpointBytes),
}

/// Writes generation `g` of index `name` into folder `dir` (its own folder, or a staging
/// folder the host publishes whole) and commits it with the manifest. Returns where the new
/// checkpoint keeps originals: hand it to [`Index::checkpointed`] once the host serves `g`.
pub fn write_generation(
    st: &mut dyn Storage,
    dir: &str,
    name: &str,
    g: u64,
    created_at: u64,
    ix: &Index,
    originals: OriginalsFrom<'_>,
) -> io::Result<Option<OriginalsLayout>> {
    let at = |p: String| format!("{dir}/{}", p.rsplit('/').next().unwrap_or_default());
    let ck = at(paths::checkpoint(name, g));
    st.create(&ck)?;
    let st = RefCell::new(st);
    let (size, sha, layout) = {
        let out = StorageWriter {
            st: &st,
            path: ck.clone(),
            buf: Vec::new(),
        };
        let w = match originals {
            OriginalsFrom::Nothing => checkpoint::write_checkpoint(ix, &mut NoCheckpoint, out)?,
            OriginalsFrom::Stored(path) => {
                let mut src = StorageBytes { st: &st, path };
                checkpoint::write_checkpoint(ix, &mut src, out)?
            }
            OriginalsFrom::Reader(src) => checkpoint::write_checkpoint(ix, src, out)?,
        };
        let mut out = w.out;
        out.flush()?;
        (w.size, w.sha256, w.originals)
    };
    let st = st.into_inner();
    st.sync(&ck)?;
    let digest = at(paths::checkpoint_digest(name, g));
    st.create(&digest)?;
    st.append(&digest, encode_digest(&(size, sha)).as_bytes())?;
    st.sync(&digest)?;
    let log = at(paths::log(name, g));
    st.create(&log)?;
    st.sync(&log)?;
    st.replace(
        &at(paths::index_manifest(name)),
        &IndexManifest::new(name, ix.params().clone(), g, created_at).encode(),
    )?;
    Ok(layout)
}

/// Why a checkpoint was not written.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// The engine does not serve the index.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Storage failed; the old generation is still the index.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A single-threaded host's checkpoint of index `name` (the browser, Node, the simulation):
/// writes the next generation in the index's own folder, with originals from the current
/// checkpoint, then serves it and tells the engine. The engine's effects (old generations to
/// delete) are left for the caller to perform.
pub fn checkpoint_index(
    st: &mut dyn Storage,
    engine: &mut Engine,
    name: &str,
    ix: &mut Index,
) -> Result<(), CheckpointError> {
    let e = engine.index(name)?;
    let (g0, created) = (e.generation, e.created_at);
    let g = g0 + 1;
    let from = OriginalsFrom::Stored(paths::checkpoint(name, g0));
    let layout = write_generation(st, &paths::index_dir(name), name, g, created, ix, from)?;
    ix.checkpointed(layout);
    engine.checkpoint_done(name, g, ix.params().clone())?;
    Ok(())
}

/// Appends through a [`Storage`] in 1 MiB chunks.
struct StorageWriter<'a, 's> {
    st: &'a RefCell<&'s mut dyn Storage>,
    path: String,
    buf: Vec<u8>,
}

impl Write for StorageWriter<'_, '_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.st.borrow_mut().append(&self.path, &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Reads of a checkpoint file in the same storage, for originals, while it is written to.
struct StorageBytes<'a, 's> {
    st: &'a RefCell<&'s mut dyn Storage>,
    path: String,
}

impl CheckpointBytes for StorageBytes<'_, '_> {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_exact_at(*self.st.borrow_mut(), &self.path, offset, buf)
    }
}

/// A checkpoint file in storage as a source of originals (searches and reads of an int8 or
/// binary index re-rank with them).
pub struct StoredCheckpoint<'a> {
    /// The storage.
    pub st: &'a mut dyn Storage,
    /// The checkpoint file.
    pub path: String,
}

impl CheckpointBytes for StoredCheckpoint<'_> {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_exact_at(self.st, &self.path, offset, buf)
    }
}

fn read_exact_at(st: &mut dyn Storage, path: &str, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let got = st.read_at(path, offset, buf.len())?;
    if got.len() != buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{path}: short read at {offset}"),
        ));
    }
    buf.copy_from_slice(&got);
    Ok(())
}
