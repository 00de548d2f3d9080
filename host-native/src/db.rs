//! The native storage driver: drives `cairn-core` over real files.
//!
//! Per index: `indexes/<name>/{manifest.json, ckpt-<gen>.bin, ckpt-<gen>.sha256, log-<gen>.bin}`
//! (the `.sha256` file records the checkpoint's size and digest for backups; optional). A write
//! holds the index's writer lock while it prepares, appends + fsyncs its log record and applies
//! it; searches take only the index's read lock. The engine (control plane) sits behind its own short mutex.

use crate::fs_storage::FsStorage;
use crate::fsutil::{self, now_ms};
use cairn_core::archive::encode_digest;
use cairn_core::checkpoint::{self, read_checkpoint};
use cairn_core::control::task::{self, TaskHost};
use cairn_core::engine::{EngineError, IndexManifest, LogState, paths};
use cairn_core::originals::{CheckpointBytes, NoCheckpoint, OriginalsLayout};
use cairn_core::{
    Engine, Index, IndexError, IndexParams, JobRegistry, Record, SearchHit, SearchRequest,
    VectorRecord,
};
pub use cairn_native::pread::PreadFile;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use thiserror::Error;

/// Errors of the driver, each with the HTTP status it maps to.
#[derive(Debug, Error)]
pub enum DbError {
    /// A rule of the engine.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Bad input for an index.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Bad request not covered above.
    #[error("{0}")]
    BadRequest(String),
    /// Storage failure.
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
    /// Something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
    /// A request over a configured size limit.
    #[error("{0}")]
    TooLarge(String),
    /// Not enough free disk space.
    #[error("{0}")]
    NoSpace(String),
    /// The index exists but can't serve this now (storage failure).
    #[error("{0}")]
    Unavailable(String),
}

/// The writer side of one index: the open log. Where the log stands is the engine's
/// ([`LogState`]); this holds the file and the host's own failure state.
pub struct Writer {
    log: File,
    /// Generation of the open log.
    pub generation: u64,
    /// Set (under this lock) when the index is deleted: a write or checkpoint that still
    /// holds this handle must not touch the files of a new index of the same name.
    pub closed: bool,
    /// Set when a failed append could not be rolled back: the log's end is unknown, so the
    /// index refuses writes until a restart replays (and cuts) it.
    pub failed: Option<String>,
}

impl Writer {
    fn new(log: File, generation: u64) -> Self {
        Self {
            log,
            generation,
            closed: false,
            failed: None,
        }
    }

    /// Refuses a write or checkpoint through a handle of a deleted or failed index.
    fn check_open(&self, name: &str) -> Result<(), DbError> {
        if self.closed {
            return Err(EngineError::IndexNotFound(name.into()).into());
        }
        if let Some(why) = &self.failed {
            return Err(DbError::Unavailable(format!(
                "index {name:?} is read-only after a storage failure ({why}); restart the server once storage is healthy"
            )));
        }
        Ok(())
    }

    /// Appends one framed record at `at` (where the engine says the log ends) and syncs it.
    /// On failure the log is cut back to `at` (and that cut synced) before the error is
    /// returned, so a record the client was told failed never replays and the next record
    /// starts on a frame boundary. If even the cut fails, the writer is marked failed.
    fn append(&mut self, bytes: &[u8], at: u64) -> std::io::Result<()> {
        let res = self
            .log
            .write_all(bytes)
            .and_then(|()| self.log.sync_data());
        if let Err(e) = res {
            // Cut and move the write position back too: a log created by this process is not
            // in append mode, and a write at the old position would leave a hole of zeros.
            let undo = self
                .log
                .set_len(at)
                .and_then(|()| self.log.seek(std::io::SeekFrom::Start(at)))
                .and_then(|_| self.log.sync_data());
            if let Err(u) = undo {
                self.failed = Some(format!("append failed: {e}; rollback failed: {u}"));
            }
            return Err(e);
        }
        Ok(())
    }
}

/// One open index.
pub struct IndexHandle {
    /// Name.
    pub name: String,
    /// Data (searches take `read`).
    pub index: RwLock<Index>,
    /// Serialises writers, checkpoints and backup cuts.
    pub writer: Mutex<Writer>,
    checkpointing: AtomicBool,
    /// The checkpoint `index` was loaded from or last wrote: int8 and binary indexes read
    /// originals from it. Swapped under `index`'s write lock, so a reader sees a matching pair.
    checkpoint_file: RwLock<Arc<File>>,
}

impl IndexHandle {
    /// Searches the index (an int8 or binary index re-ranks with originals from its
    /// checkpoint file).
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<SearchHit>, DbError> {
        self.with_checkpoint(|ix, src| ix.search_with(req, src))
    }

    /// One stored vector, or `None` (an int8 or binary index returns its float32 original,
    /// read from its checkpoint file) with whether the index is hybrid (has a sparse part).
    pub fn get(&self, id: &str) -> Result<Option<(VectorRecord, bool)>, DbError> {
        self.with_checkpoint(|ix, src| {
            let hybrid = ix.params().sparse_dim > 0;
            Ok(ix.get_with(id, src)?.map(|r| (r, hybrid)))
        })
    }

    /// Runs `f` on the index with its current checkpoint file as the source of originals
    /// (both read under their locks, so they match).
    fn with_checkpoint<T>(
        &self,
        f: impl FnOnce(&Index, &mut dyn CheckpointBytes) -> Result<T, IndexError>,
    ) -> Result<T, DbError> {
        let ix = read_lock(&self.index);
        let file = read_lock(&self.checkpoint_file).clone();
        Ok(f(&ix, &mut PreadFile(&file))?)
    }
}

/// The database.
pub struct Db {
    /// Data directory.
    pub root: PathBuf,
    /// Control plane.
    pub engine: Mutex<Engine>,
    indexes: RwLock<HashMap<String, Arc<IndexHandle>>>,
    jobs_file: Mutex<()>,
    /// Log bytes after which a write starts a background checkpoint.
    checkpoint_after: u64,
    /// Backup read pace in bytes a second (`None`: unpaced).
    pub backup_rate: Option<u64>,
}

/// What a core task borrows from the native host: the engine behind its mutex and the data
/// directory as [`FsStorage`].
pub struct NativeHost<'a> {
    db: &'a Db,
    st: FsStorage,
}

impl<'a> NativeHost<'a> {
    /// A host over `db`.
    pub fn new(db: &'a Db) -> Self {
        Self {
            db,
            st: FsStorage::new(&db.root),
        }
    }
}

impl TaskHost for NativeHost<'_> {
    fn with_engine<R>(&mut self, f: impl FnOnce(&mut Engine) -> R) -> R {
        f(&mut lock(&self.db.engine))
    }
    fn storage(&mut self) -> &mut dyn cairn_core::Storage {
        &mut self.st
    }
    fn persist_jobs(&mut self) -> std::io::Result<()> {
        // Encode and write under one lock: an older registry never lands after a newer one.
        let _g = lock(&self.db.jobs_file);
        let bytes = lock(&self.db.engine).registry.encode();
        fsutil::replace_atomic(&self.db.path(paths::JOBS), &bytes)
    }
}

/// Locks a mutex, recovering from poisoning (a panicked holder must not wedge the server).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_lock<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

impl Db {
    /// Path of a relative data path.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Opens (creating if needed) the data directory and recovers: replays logs, cuts torn
    /// tails, fails interrupted jobs, deletes partial files, keeps an unreadable jobs file aside.
    /// A write that leaves a log of `checkpoint_after` bytes or more, or whose replay would
    /// cost a quarter of the index ([`checkpoint_due`]), starts a checkpoint.
    pub fn open(
        root: &Path,
        checkpoint_after: u64,
        backup_rate: Option<u64>,
    ) -> Result<Arc<Db>, DbError> {
        for d in ["indexes", "indexes/.tmp", "backups", "backups/.tmp"] {
            fs::create_dir_all(root.join(d))?;
        }
        let jobs_path = root.join(paths::JOBS);
        let registry = match fs::read(&jobs_path) {
            Ok(b) => match JobRegistry::decode(&b, cairn_core::registry::DEFAULT_RETENTION) {
                Ok(r) => r,
                Err(e) => {
                    let aside = root.join(format!("jobs.json.unreadable-{}", now_ms()));
                    fs::rename(&jobs_path, &aside)?;
                    tracing::error!(error = %e, kept_at = %aside.display(), "jobs file unreadable; kept aside, starting with no job history");
                    JobRegistry::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => JobRegistry::default(),
            Err(e) => return Err(e.into()),
        };
        let db = Arc::new(Db {
            root: root.to_path_buf(),
            engine: Mutex::new(Engine::new(registry)),
            indexes: RwLock::new(HashMap::new()),
            jobs_file: Mutex::new(()),
            checkpoint_after,
            backup_rate,
        });
        // Interrupted jobs first: their partial files (an unpublished restore included) go
        // before indexes are looked for.
        db.control(|e| e.recover(now_ms()))?;
        fsutil::remove_any(&root.join("indexes/.tmp"))?;
        fsutil::remove_any(&root.join("backups/.tmp"))?;
        fs::create_dir_all(root.join("indexes/.tmp"))?;
        fs::create_dir_all(root.join("backups/.tmp"))?;
        let mut names = Vec::new();
        for entry in fs::read_dir(root.join("indexes"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if cairn_core::params::validate_index_name(&name).is_err() {
                tracing::warn!(entry = %name, "ignoring an entry under indexes/ that is not an index name");
                continue;
            }
            lock(&db.engine).mark_loading(&name);
            names.push(name);
        }
        {
            let mut eng = lock(&db.engine);
            for entry in fs::read_dir(root.join("backups"))? {
                let n = entry?.file_name().to_string_lossy().into_owned();
                if let Some(stem) = n.strip_suffix(".tar")
                    && cairn_core::engine::validate_backup_name(stem).is_ok()
                {
                    eng.load_backup(stem);
                }
            }
        }
        // Indexes load in the background: the server answers (health, other indexes) at once,
        // an index still loading answers 503 with Retry-After.
        let loader = db.clone();
        std::thread::Builder::new()
            .name("index-loader".into())
            .spawn(move || loader.load_all(names))?;
        Ok(db)
    }

    /// Loads indexes found at start, smallest directory first (the most indexes ready soonest).
    fn load_all(&self, mut names: Vec<String>) {
        let t0 = std::time::Instant::now();
        let size = |n: &String| {
            fs::read_dir(self.path(&paths::index_dir(n)))
                .map(|rd| {
                    rd.flatten()
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0u64)
        };
        names.sort_by_cached_key(size);
        for name in names {
            // One bad index must not keep the others from serving: it is reported (503 with
            // the reason) and its files are left untouched for a human to look at.
            if let Err(e) = self.load_index(&name) {
                tracing::error!(index = %name, error = %e, "index failed to load; its files are kept untouched, the other indexes serve");
                lock(&self.engine).mark_broken(&name, &e.to_string());
            }
        }
        tracing::info!(ms = t0.elapsed().as_millis() as u64, "every index loaded");
    }

    /// True once every index found at start has loaded (or failed to).
    pub fn ready(&self) -> bool {
        lock(&self.engine).loading().next().is_none()
    }

    fn load_index(&self, name: &str) -> Result<(), DbError> {
        let broken = |what: String| DbError::Internal(what);
        let dir = self.path(&paths::index_dir(name));
        if !fs::metadata(&dir)?.is_dir() {
            return Err(broken("not a directory".into()));
        }
        let man = IndexManifest::decode(&fs::read(self.path(&paths::index_manifest(name)))?)
            .map_err(|e| broken(format!("manifest.json: {e}")))?;
        let g = man.generation;
        let ck = File::open(self.path(&paths::checkpoint(name, g)))?;
        let mut ix = read_checkpoint(std::io::BufReader::new(&ck))
            .map_err(|e| broken(format!("checkpoint {g}: {e}")))?;
        if ix.params() != &man.params {
            return Err(broken(format!(
                "checkpoint {g} params differ from manifest.json"
            )));
        }
        let log_path = self.path(&paths::log(name, g));
        let log_file = OpenOptions::new().read(true).append(true).open(&log_path)?;
        // Every record is checked before it is applied; corruption in the middle of the log
        // (a bad frame with data after it) fails the index instead of dropping what follows.
        let scan = ix
            .replay(std::io::BufReader::new(&log_file))
            .map_err(|e| broken(format!("log {g}: {e}")))?;
        let valid = scan.valid_len;
        if scan.torn {
            tracing::warn!(index = name, valid_bytes = valid, "cut torn log tail");
            log_file.set_len(valid)?;
            log_file.sync_all()?;
        }
        // Files of other generations are garbage after a restart (no pins survive one).
        let current = [
            paths::checkpoint(name, g),
            paths::checkpoint_digest(name, g),
            paths::log(name, g),
        ]
        .map(|p| p.rsplit('/').next().unwrap_or_default().to_string());
        for e in fs::read_dir(self.path(&paths::index_dir(name)))? {
            let f = e?.file_name().to_string_lossy().into_owned();
            if (f.starts_with("ckpt-") || f.starts_with("log-")) && !current.contains(&f) {
                fsutil::remove_any(&self.path(&format!("{}/{f}", paths::index_dir(name))))?;
            }
        }
        tracing::info!(
            index = name,
            generation = g,
            vectors = ix.len(),
            replayed = scan.records,
            "index loaded"
        );
        let log = LogState {
            log_len: valid,
            log_vectors: scan.upserted,
            live: ix.len() as u64,
        };
        lock(&self.engine).load_index(name, man.params.clone(), g, man.created_at, log);
        self.serve(name, ix, log_file, g, ck);
        Ok(())
    }

    /// Runs `f` on the engine, then performs the effects it queued (the jobs file, freed
    /// generations, an index's files) outside the engine's lock. An effect that fails is
    /// logged, not returned: the engine's state already changed (a job runs, an index is
    /// gone); a leftover file goes at the next start, the jobs file is rewritten with the
    /// next change.
    pub fn control<T>(&self, f: impl FnOnce(&mut Engine) -> T) -> Result<T, DbError> {
        let out = f(&mut lock(&self.engine));
        if let Err(e) = task::apply_effects(&mut NativeHost::new(self)) {
            tracing::error!(error = %e, "could not carry out an engine effect");
        }
        Ok(out)
    }

    /// An open index.
    pub fn handle(&self, name: &str) -> Result<Arc<IndexHandle>, DbError> {
        if let Some(h) = read_lock(&self.indexes).get(name) {
            return Ok(h.clone());
        }
        // Not open: broken (503 with the reason) or unknown (404).
        lock(&self.engine).index(name)?;
        Err(EngineError::IndexNotFound(name.into()).into())
    }

    /// Every open index.
    pub fn handles(&self) -> Vec<Arc<IndexHandle>> {
        let mut v: Vec<_> = read_lock(&self.indexes).values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Creates an index: generation-1 checkpoint, empty log, then the manifest (the commit point).
    pub fn create_index(&self, name: &str, params: IndexParams) -> Result<(), DbError> {
        let now = now_ms();
        let ix = Index::new(params.clone())?;
        lock(&self.engine).create_index(name, params.clone(), now)?;
        // Laid out in a staging directory and published with one rename, so a directory under
        // indexes/ always has its manifest (one without is damage, reported, never deleted).
        let stage = self.path(&format!("indexes/.tmp/create-{name}-{now}"));
        let res = (|| -> Result<(File, File), DbError> {
            fs::create_dir_all(&stage)?;
            let staged = |p: String| stage.join(file_name(&p));
            let (ck, _) = write_checkpoint(
                &staged(paths::checkpoint(name, 1)),
                &staged(paths::checkpoint_digest(name, 1)),
                &ix,
                &mut NoCheckpoint,
            )?;
            let log = fsutil::create_synced(&staged(paths::log(name, 1)))?;
            fsutil::replace_atomic(
                &staged(paths::index_manifest(name)),
                &IndexManifest::new(name, params, 1, now).encode(),
            )?;
            fs::rename(&stage, self.path(&paths::index_dir(name)))?;
            fsutil::sync_dir(&self.path("indexes"))?;
            Ok((log, ck))
        })();
        match res {
            Ok((log, ck)) => {
                self.serve(name, ix, log, 1, ck);
                Ok(())
            }
            Err(e) => {
                lock(&self.engine).abandon_create(name);
                let _ = fsutil::remove_any(&stage);
                Err(e)
            }
        }
    }

    /// Deletes an index unless a job uses it. A broken index (one that failed to load) is
    /// deleted too: that is the operator's way to clear it.
    pub fn delete_index(&self, name: &str) -> Result<(), DbError> {
        let h = match self.handle(name) {
            Ok(h) => Some(h),
            Err(DbError::Engine(EngineError::IndexBroken { .. })) => None,
            Err(e) => return Err(e),
        };
        let mut w = h.as_ref().map(|h| lock(&h.writer));
        lock(&self.engine).delete_index(name)?;
        if let Some(w) = w.as_mut() {
            // Writers and checkpoints still holding this handle see it closed.
            w.closed = true;
        }
        write_lock(&self.indexes).remove(name);
        drop(w);
        // The engine queued the removal (manifest first, then the directory).
        task::apply_effects(&mut NativeHost::new(self))?;
        Ok(())
    }

    /// The single write path: prepare, log + fsync, apply. Returns vectors affected.
    pub fn write(
        self: &Arc<Self>,
        name: &str,
        prepare: impl FnOnce(&Index) -> Result<Record, IndexError>,
    ) -> Result<usize, DbError> {
        let h = self.handle(name)?;
        self.write_to(h, prepare)
    }

    /// [`Db::write`] through a handle taken earlier. The handle may be of an index deleted
    /// (and even re-created under its name) since: its writer is then closed and the write
    /// fails as not found, touching nothing.
    fn write_to(
        self: &Arc<Self>,
        h: Arc<IndexHandle>,
        prepare: impl FnOnce(&Index) -> Result<Record, IndexError>,
    ) -> Result<usize, DbError> {
        let name = h.name.as_str();
        let mut w = lock(&h.writer);
        w.check_open(name)?;
        // The gate admits the write and says where its record goes; a backup's cut holds
        // it for microseconds (retry), never refuses it.
        let slot = loop {
            match lock(&self.engine).begin_write(name) {
                Err(EngineError::WriteHeld(_)) => std::thread::yield_now(),
                r => break r?,
            }
        };
        if slot.generation != w.generation {
            return Err(DbError::Internal(format!(
                "log generation {} open, engine at {}",
                w.generation, slot.generation
            )));
        }
        let rec = prepare(&read_lock(&h.index))?;
        let bytes = rec.encode();
        w.append(&bytes, slot.at)?;
        let (n, live) = {
            let mut ix = write_lock(&h.index);
            (ix.apply(&rec), ix.len() as u64)
        };
        let big = lock(&self.engine).commit_write(
            name,
            &slot,
            bytes.len() as u64,
            rec.upserted(),
            live,
            self.checkpoint_after,
        )?;
        drop(w);
        if big && !h.checkpointing.swap(true, Ordering::SeqCst) {
            let db = self.clone();
            std::thread::spawn(move || {
                if let Err(e) = db.checkpoint(&h) {
                    tracing::error!(index = %h.name, error = %e, "background checkpoint failed");
                }
                h.checkpointing.store(false, Ordering::SeqCst);
            });
        }
        Ok(n)
    }

    /// Writes a new checkpoint generation and starts a new log. Holds the index's writer lock
    /// (writes wait; searches continue) while it encodes.
    pub fn checkpoint(&self, h: &IndexHandle) -> Result<(), DbError> {
        let mut w = lock(&h.writer);
        w.check_open(&h.name)?;
        let g = w.generation + 1;
        let name = &h.name;
        let old = read_lock(&h.checkpoint_file).clone();
        let (ck, layout) = write_checkpoint(
            &self.path(&paths::checkpoint(name, g)),
            &self.path(&paths::checkpoint_digest(name, g)),
            &read_lock(&h.index),
            &mut PreadFile(&old),
        )?;
        let log = fsutil::create_synced(&self.path(&paths::log(name, g)))?;
        let params = read_lock(&h.index).params().clone();
        let created = lock(&self.engine)
            .index(name)
            .map(|e| e.created_at)
            .unwrap_or(0);
        fsutil::replace_atomic(
            &self.path(&paths::index_manifest(name)),
            &IndexManifest::new(name, params, g, created).encode(),
        )?;
        {
            let mut ix = write_lock(&h.index);
            ix.checkpointed(layout);
            *write_lock(&h.checkpoint_file) = Arc::new(ck);
        }
        w.log = log;
        w.generation = g;
        lock(&self.engine).checkpoint_done(name, g)?;
        drop(w);
        if let Err(e) = task::apply_effects(&mut NativeHost::new(self)) {
            tracing::warn!(index = %name, error = %e, "could not delete an old generation; it goes at the next start");
        }
        tracing::info!(index = %name, generation = g, "checkpoint written");
        Ok(())
    }

    /// Checkpoints every index whose log holds records (at a clean shutdown): the next start
    /// then loads checkpoints as written and replays nothing. Failures are logged, not fatal —
    /// the log still holds every acknowledged write.
    pub fn checkpoint_all(&self) {
        for h in self.handles() {
            let dirty = {
                let w = lock(&h.writer);
                lock(&self.engine).log_dirty(&h.name) && !w.closed && w.failed.is_none()
            };
            if !dirty || h.checkpointing.swap(true, Ordering::SeqCst) {
                continue;
            }
            if let Err(e) = self.checkpoint(&h) {
                tracing::warn!(index = %h.name, error = %e, "checkpoint at shutdown failed; the log replays at the next start");
            }
            h.checkpointing.store(false, Ordering::SeqCst);
        }
    }

    /// Starts serving `ix` at generation `g`: writes append to `log`, int8 and binary
    /// searches read originals from `ck`.
    fn serve(&self, name: &str, ix: Index, log: File, g: u64, ck: File) {
        let h = IndexHandle {
            name: name.into(),
            index: RwLock::new(ix),
            writer: Mutex::new(Writer::new(log, g)),
            checkpointing: AtomicBool::new(false),
            checkpoint_file: RwLock::new(Arc::new(ck)),
        };
        write_lock(&self.indexes).insert(name.into(), Arc::new(h));
    }

    /// Serves a restored index the restore task built (its files are published).
    pub fn adopt_index(&self, name: &str, ix: Index) -> Result<(), DbError> {
        let g = lock(&self.engine).index(name)?.generation;
        let ck = File::open(self.path(&paths::checkpoint(name, g)))?;
        let log_file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.path(&paths::log(name, g)))?;
        self.serve(name, ix, log_file, g, ck);
        Ok(())
    }
}

/// The last component of a data-directory path (`indexes/a/ckpt-….bin` → `ckpt-….bin`).
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Writes `ix` as a checkpoint file at `path` (synced), reading the originals it keeps on disk
/// through `src`, and its size and SHA-256 at `digest_path`, computed as it is written: a
/// backup of that generation then reads the checkpoint once (the archive writer still checks
/// every byte against the digest). The index manifest, written after both, is what commits a
/// generation. Returns the file, open for reading originals, and where they are in it.
pub fn write_checkpoint(
    path: &Path,
    digest_path: &Path,
    ix: &Index,
    src: &mut dyn CheckpointBytes,
) -> Result<(File, Option<OriginalsLayout>), DbError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    let w = checkpoint::write_checkpoint(ix, src, BufWriter::with_capacity(1 << 20, file))?;
    let file = w.out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    fsutil::replace_atomic(digest_path, encode_digest(&(w.size, w.sha256)).as_bytes())?;
    Ok((file, w.originals))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::{SpaceType, UpsertItem};

    fn item(id: &str) -> UpsertItem {
        UpsertItem {
            id: id.into(),
            vector: vec![1.0, 2.0],
            meta: vec![],
            filter: "{}".into(),
            norm: 1.0,
            sparse_indices: vec![],
            sparse_values: vec![],
        }
    }

    #[test]
    fn a_handle_of_a_deleted_index_touches_nothing_of_its_successor() {
        let dir = std::env::temp_dir().join(format!("cairn-db-gen-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let db = Db::open(&dir, 1 << 30, None).unwrap_or_else(|e| panic!("{e}"));
        let p = IndexParams::new(2, SpaceType::L2);
        db.create_index("x", p.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        db.write("x", |ix| ix.prepare_upsert(vec![item("old")]))
            .unwrap_or_else(|e| panic!("{e}"));
        // A request took the handle, then the index was deleted and created again.
        let old = db.handle("x").unwrap_or_else(|e| panic!("{e}"));
        db.delete_index("x").unwrap_or_else(|e| panic!("{e}"));
        db.create_index("x", p).unwrap_or_else(|e| panic!("{e}"));
        // Its write is refused (it would have landed in the deleted log and answered 200) ...
        let w = db.write_to(old.clone(), |ix| ix.prepare_upsert(vec![item("late")]));
        assert!(
            matches!(w, Err(DbError::Engine(EngineError::IndexNotFound(_)))),
            "{w:?}"
        );
        // ... and a checkpoint pending on it writes nothing into the new index's directory.
        assert!(db.checkpoint(&old).is_err());
        let new = db.handle("x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_lock(&new.index).len(), 0);
        let files: Vec<String> = fs::read_dir(dir.join("indexes/x"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(files.iter().all(|f| !f.contains("0002")), "{files:?}");
        assert!(!lock(&db.engine).log_dirty("x"));
        let _ = fs::remove_dir_all(&dir);
    }
}
