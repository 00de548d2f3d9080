//! The native storage driver: drives `cairn-core` over real files.
//!
//! Per index: `indexes/<name>/{manifest.json, ckpt-<gen>.bin, ckpt-<gen>.sha256, log-<gen>.bin}`
//! (the `.sha256` file records the checkpoint's size and digest for backups; optional). A write
//! holds the index's writer lock while it prepares, appends + fsyncs its log record and applies
//! it; searches take only the index's read lock. The engine (control plane) sits behind its own short mutex.

use crate::fs_storage::{FsStorage, Roots};
use crate::fsutil::{self, now_ms};
use crate::s3_target::{S3Config, S3Target};
use cairn_core::archive::{self, Manifest};
use cairn_core::control::generation::{self, OriginalsFrom};
use cairn_core::control::recovery;
use cairn_core::control::task::{self, CheckpointDecode, RangeReader, TaskHost};
use cairn_core::control::tenants::{TenantError, Tenants};
use cairn_core::engine::{EngineError, paths};
use cairn_core::originals::CheckpointBytes;
use cairn_core::registry::JobError;
use cairn_core::target::{self, ArchiveTarget, TargetRecord};
use cairn_core::{
    Engine, Index, IndexError, IndexParams, Job, Record, SearchHit, SearchRequest, VectorRecord,
};
pub use cairn_native::pread::PreadFile;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use thiserror::Error;

/// Replayed vectors linked per hold of an index's write lock (~0.2 ms each at 384-d).
const LINK_BATCH: usize = 64;

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
    /// A databases-and-tokens rule.
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// The caller's token may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The index exists but can't serve this now (storage failure).
    #[error("{0}")]
    Unavailable(String),
    /// A backup target (object store) refused or could not be reached.
    #[error("{0}")]
    Target(String),
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
            let hybrid = ix.params().is_hybrid();
            Ok(ix.get_with(id, src)?.map(|r| (r, hybrid)))
        })
    }

    /// The index's parameters now.
    pub fn params(&self) -> IndexParams {
        read_lock(&self.index).params().clone()
    }

    /// Live vectors.
    pub fn live_count(&self) -> usize {
        read_lock(&self.index).len()
    }

    /// The ids `id` links to on dense field `field`'s graph base layer (0: the index's own
    /// vectors, `i + 1`: further field `i`), or `None` if `id` is not stored.
    pub fn links_of(&self, field: usize, id: &str) -> Option<Vec<String>> {
        read_lock(&self.index).links_of(field, id)
    }

    /// A page of stored vectors in slot order: (live vectors in all, up to `limit` records
    /// after skipping `offset`), read under one lock so the count and the page agree.
    pub fn page(&self, offset: usize, limit: usize) -> Result<(usize, Vec<VectorRecord>), DbError> {
        self.with_checkpoint(|ix, src| {
            let ids = ix.ids_page(offset, limit);
            let mut out = Vec::with_capacity(ids.len());
            for id in &ids {
                if let Some(r) = ix.get_with(id, src)? {
                    out.push(r);
                }
            }
            Ok((ix.len(), out))
        })
    }

    /// The stored objects among `ids` (those not stored are skipped), in the order asked.
    pub fn get_many(&self, ids: &[String]) -> Result<Vec<VectorRecord>, DbError> {
        self.with_checkpoint(|ix, src| {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(r) = ix.get_with(id, src)? {
                    out.push(r);
                }
            }
            Ok(out)
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
    pub roots: Roots,
    /// Backup targets by name (object stores).
    pub targets: BTreeMap<String, Arc<S3Config>>,
    /// Backup schedules and how each stands (see [`crate::scheduler`]).
    pub schedules: Mutex<Vec<crate::scheduler::ScheduleStatus>>,
    /// Control plane.
    pub engine: Mutex<Engine>,
    indexes: RwLock<HashMap<String, Arc<IndexHandle>>>,
    jobs_file: Mutex<()>,
    /// Databases and token digests (`/api/v2`); written whole after every change.
    pub tenants: Mutex<Tenants>,
    /// Log bytes after which a write starts a background checkpoint.
    checkpoint_after: u64,
    /// Backup read pace in bytes a second (`None`: unpaced).
    pub backup_rate: Option<u64>,
    /// The data directory's lock, held while this value lives.
    _dir_lock: File,
}

/// How to open a data directory.
#[derive(Debug)]
pub struct DbOptions {
    /// Where its parts live.
    pub roots: Roots,
    /// Log bytes after which a write starts a background checkpoint.
    pub checkpoint_after: u64,
    /// Backup read pace in bytes a second (`None`: unpaced).
    pub backup_rate: Option<u64>,
    /// Backup targets (object stores) besides `backups/`.
    pub targets: Vec<Arc<S3Config>>,
}

impl DbOptions {
    /// Everything under `root`, default pacing and checkpoints, no targets.
    pub fn new(root: &Path) -> Self {
        Self {
            roots: Roots::new(root),
            checkpoint_after: 64 << 20,
            backup_rate: None,
            targets: Vec::new(),
        }
    }
}

/// What a core task borrows from the native host: the engine behind its mutex and the data
/// directory as [`FsStorage`].
pub struct NativeHost<'a> {
    db: &'a Db,
    /// The data directory (its [`FsStorage::time`] says where a task's time went).
    pub st: FsStorage,
    /// The backup targets this task has used, each with the upload it is writing (an
    /// upload left open when the host goes away is aborted).
    targets: BTreeMap<String, S3Target>,
    /// The decode a task detached, running on its own thread.
    detached: Option<std::thread::JoinHandle<Result<Index, String>>>,
}

impl<'a> NativeHost<'a> {
    /// A host over `db`.
    pub fn new(db: &'a Db) -> Self {
        Self {
            db,
            st: FsStorage::new(&db.roots),
            targets: BTreeMap::new(),
            detached: None,
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
    fn read_index(&mut self, name: &str, f: &mut dyn FnMut(&Index)) -> bool {
        // Searches share the read lock; a write waits for this one call.
        match self.db.handle(name) {
            Ok(h) => {
                f(&read_lock(&h.index));
                true
            }
            Err(_) => false,
        }
    }
    fn write_index(&mut self, name: &str, f: &mut dyn FnMut(&mut Index)) -> bool {
        match self.db.handle(name) {
            Ok(h) => {
                f(&mut write_lock(&h.index));
                true
            }
            Err(_) => false,
        }
    }
    fn target(&mut self, name: &str) -> Option<&mut dyn cairn_core::target::ArchiveTarget> {
        if !self.targets.contains_key(name) {
            let cfg = self.db.targets.get(name)?.clone();
            self.targets.insert(name.into(), S3Target::new(cfg));
        }
        self.targets
            .get_mut(name)
            .map(|t| t as &mut dyn cairn_core::target::ArchiveTarget)
    }
    fn detach(&mut self, job: CheckpointDecode) -> Option<Result<Index, String>> {
        // The decode is CPU work; on its own thread it overlaps the task's reads and copies
        // (a restore's checkpoint decodes while its archive is verified and staged).
        let roots = self.db.roots.clone();
        let mine = job.clone();
        let spawned = std::thread::Builder::new()
            .name("restore-decode".into())
            .spawn(move || {
                let mut st = FsStorage::new(&roots);
                job.run(&mut RangeReader::new(&mut st, &job.path, job.at, job.len))
            });
        match spawned {
            Ok(h) => {
                self.detached = Some(h);
                None
            }
            // No thread to be had: decode here, as a single-threaded host does.
            Err(_) => Some(mine.run(&mut RangeReader::new(
                &mut self.st,
                &mine.path,
                mine.at,
                mine.len,
            ))),
        }
    }
    fn collect(&mut self) -> Option<Result<Index, String>> {
        let h = self.detached.take()?;
        Some(
            h.join()
                .unwrap_or_else(|_| Err("the checkpoint decode panicked".into())),
        )
    }
    fn serve(&mut self, name: &str, generation: u64, ix: Index) -> std::io::Result<()> {
        let (log, ck) = self
            .db
            .open_generation(name, generation)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.db.serve(name, ix, log, generation, ck);
        // It answers already (its log's vectors scanned exactly); they join the graph in the
        // background (or at the next start, should no thread be had).
        if let Ok(h) = self.db.handle(name)
            && let Err(e) = std::thread::Builder::new()
                .name(format!("link-{name}"))
                .spawn(move || Db::link_gently(&h))
        {
            tracing::warn!(index = name, error = %e, "no thread to link the restored vectors");
        }
        Ok(())
    }
    fn checkpoint(&mut self, name: &str) -> std::io::Result<()> {
        let h = self.db.handle(name).map_err(std::io::Error::other)?;
        self.db
            .checkpoint(&h)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// Reads the tenants file. An unreadable one is kept aside and the server starts with no
/// database: every database token then fails closed (401), nothing is exposed.
fn load_tenants(root: &Path) -> Tenants {
    let path = root.join(paths::TENANTS);
    match fs::read(&path) {
        Err(_) => Tenants::default(),
        Ok(b) => Tenants::decode(&b).unwrap_or_else(|e| {
            let aside = root.join(format!("{}.unreadable-{}", paths::TENANTS, now_ms()));
            let _ = fs::rename(&path, &aside);
            tracing::error!(error = %e, aside = %aside.display(), "tenants file unreadable; kept aside, starting with no database");
            Tenants::default()
        }),
    }
}

impl Db {
    /// Changes the tenants registry with `f` and writes it (atomically) before answering: a
    /// token handed out is durable.
    pub fn tenants_change<T>(
        &self,
        f: impl FnOnce(&mut Tenants) -> Result<T, TenantError>,
    ) -> Result<T, DbError> {
        let mut t = lock(&self.tenants);
        let mut next = t.clone();
        let out = f(&mut next)?;
        fsutil::replace_atomic(&self.path(paths::TENANTS), &next.encode())?;
        *t = next;
        Ok(out)
    }
}

/// Locks a mutex, recovering from poisoning (a panicked holder must not wedge the server).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn read_lock<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

impl Db {
    /// Path of a relative data path.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.roots.resolve(rel)
    }

    /// Opens (creating if needed) the data directory and recovers: replays logs, cuts torn
    /// tails, fails interrupted jobs, deletes partial files, keeps an unreadable jobs file aside.
    /// A write that leaves a log of `checkpoint_after` bytes or more, or whose replay would
    /// cost a quarter of the index ([`checkpoint_due`]), starts a checkpoint.
    pub fn open(opts: DbOptions) -> Result<Arc<Db>, DbError> {
        let roots = opts.roots;
        let root = roots.root.clone();
        // One process a data directory: a second server, or an offline restore while one
        // serves, would each believe its own view of the files.
        fs::create_dir_all(&root)?;
        let dir_lock = File::create(root.join(paths::LOCK))?;
        fs2::FileExt::try_lock_exclusive(&dir_lock).map_err(|_| {
            DbError::Unavailable(format!(
                "data directory {} is in use by another cairn process",
                root.display()
            ))
        })?;
        let opened = recovery::open_engine(&mut FsStorage::new(&roots), now_ms())?;
        for note in &opened.notes {
            tracing::warn!("{note}");
        }
        for d in ["indexes/.tmp", "backups/.tmp", paths::TMP_DIR] {
            fs::create_dir_all(roots.resolve(d))?;
        }
        let names = opened.indexes;
        let tenants = load_tenants(&root);
        let mut engine = opened.engine;
        engine.set_targets(opts.targets.iter().map(|t| t.name.clone()));
        let checkpoint_after = opts.checkpoint_after;
        let backup_rate = opts.backup_rate;
        let db = Arc::new(Db {
            roots,
            targets: opts
                .targets
                .into_iter()
                .map(|t| (t.name.clone(), t))
                .collect(),
            schedules: Mutex::new(Vec::new()),
            engine: Mutex::new(engine),
            indexes: RwLock::new(HashMap::new()),
            jobs_file: Mutex::new(()),
            tenants: Mutex::new(tenants),
            checkpoint_after,
            backup_rate,
            _dir_lock: dir_lock,
        });
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
            }
        }
        tracing::info!(ms = t0.elapsed().as_millis() as u64, "every index loaded");
        // Vectors replayed from logs serve already (scanned exactly); link them into their
        // graphs now, a few at a time so searches and writes interleave.
        for h in self.handles() {
            Self::link_gently(&h);
        }
    }

    /// Links index `h`'s vectors replayed without links (after a start or a restore) into
    /// its graph, a batch at a time so searches and writes interleave; they are found
    /// meanwhile (scanned exactly).
    pub fn link_gently(h: &IndexHandle) {
        let t = std::time::Instant::now();
        let mut linked = false;
        while write_lock(&h.index).link_pending(LINK_BATCH) > 0 {
            linked = true;
            // Let waiting searches in: the lock prefers writers, and this one would
            // otherwise take it straight back.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if linked {
            tracing::info!(index = %h.name, ms = t.elapsed().as_millis() as u64, "replayed vectors linked");
        }
    }

    /// Bytes of index `name`'s current log and checkpoint (`None`: no such index).
    pub fn file_sizes(&self, name: &str) -> Option<(u64, u64)> {
        let g = lock(&self.engine).index(name).ok()?.generation;
        let size = |p: String| fs::metadata(self.path(&p)).map_or(0, |m| m.len());
        Some((size(paths::log(name, g)), size(paths::checkpoint(name, g))))
    }

    /// True once every index found at start has loaded (or failed to).
    pub fn ready(&self) -> bool {
        lock(&self.engine).loading().next().is_none()
    }

    /// Brings one index back (the core's recovery protocol) and serves it; on failure the
    /// engine marks it broken with the reason.
    fn load_index(&self, name: &str) -> Result<(), DbError> {
        let r = recovery::recover_index(&mut FsStorage::new(&self.roots), name, true);
        let r = recovery::load_into(&mut lock(&self.engine), name, r)
            .map_err(|e| DbError::Internal(e.to_string()))?;
        let g = r.manifest.generation;
        if let Some(from) = r.cut_from {
            tracing::warn!(index = name, from, to = r.log.log_len, "cut torn log tail");
        }
        tracing::info!(
            index = name,
            generation = g,
            vectors = r.index.len(),
            replayed = r.replayed,
            to_link = r.index.pending_links(),
            "index loaded"
        );
        let (log, ck) = self.open_generation(name, g)?;
        self.serve(name, r.index, log, g, ck);
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

    /// When index `name` was created (ms), 0 if unknown.
    pub fn created_at(&self, name: &str) -> u64 {
        lock(&self.engine)
            .index(name)
            .map(|e| e.created_at)
            .unwrap_or(0)
    }

    /// Indexes that are not serving: `(name, Some(reason))` for one that failed to load,
    /// `(name, None)` for one still loading.
    pub fn unavailable_indexes(&self) -> Vec<(String, Option<String>)> {
        let eng = lock(&self.engine);
        eng.broken()
            .map(|(n, why)| (n.to_string(), Some(why.to_string())))
            .chain(eng.loading().map(|n| (n.to_string(), None)))
            .collect()
    }

    /// Archive names.
    pub fn backup_names(&self) -> Vec<String> {
        lock(&self.engine)
            .backup_names()
            .map(String::from)
            .collect()
    }

    /// A handle on backup target `name` (404-style error if none is configured).
    pub fn target(&self, name: &str) -> Result<S3Target, DbError> {
        self.targets
            .get(name)
            .map(|c| S3Target::new(c.clone()))
            .ok_or_else(|| EngineError::UnknownTarget(name.into()).into())
    }

    /// The backups target `name` lists (complete archives with their records).
    pub fn target_backups(&self, name: &str) -> Result<Vec<TargetRecord>, DbError> {
        cairn_core::target::list_backups(&mut self.target(name)?)
            .map_err(|e| DbError::Target(e.to_string()))
    }

    /// Aborts, on every target, the uploads earlier jobs left open (a crash mid-upload, or a
    /// store that was down for the abort): their parts would otherwise be billed forever.
    /// One a store refuses again stays recorded for the next start.
    pub fn sweep_uploads(&self) {
        let mut names: Vec<&String> = self.targets.keys().collect();
        names.sort();
        for name in names {
            match task::sweep_uploads(&mut NativeHost::new(self), name) {
                Ok(0) => {}
                Ok(n) => tracing::info!(target = %name, uploads = n, "abandoned uploads aborted"),
                Err(e) => {
                    tracing::warn!(target = %name, error = %e, "abandoned uploads not aborted; retried at the next start")
                }
            }
        }
    }

    /// True when target `t` lists archive `name`.
    pub fn target_lists(&self, t: &str, name: &str) -> Result<bool, DbError> {
        Ok(self.target_backups(t)?.iter().any(|r| r.name == name))
    }

    /// Deletes archive `name` from target `t`: its record first (it stops being listed),
    /// then the archive. A job using the name is 409, as for a local archive.
    pub fn delete_target_backup(
        &self,
        t: &str,
        name: &str,
        chain: bool,
    ) -> Result<Vec<String>, DbError> {
        cairn_core::engine::validate_backup_name(name)?;
        if let Some(job) = self.jobs().into_iter().find(|j| {
            j.status.is_active() && j.backup_name == name && j.target.as_deref() == Some(t)
        }) {
            return Err(EngineError::NameBusy {
                name: name.into(),
                job: job.job_id,
            }
            .into());
        }
        let records = self.target_backups(t)?;
        if !records.iter().any(|r| r.name == name) {
            return Err(EngineError::BackupNotFound(name.into()).into());
        }
        let bases: Vec<(String, Option<String>)> =
            records.into_iter().map(|r| (r.name, r.base)).collect();
        let doomed = Engine::deletion(name, &bases, chain)?;
        let mut target = self.target(t)?;
        // The newest first, each record before its archive (it stops being listed first).
        for n in doomed.iter().rev() {
            target
                .delete(&cairn_core::target::record_key(n))
                .and_then(|()| target.delete(&cairn_core::target::archive_key(n)))
                .map_err(|e| DbError::Target(e.to_string()))?;
        }
        Ok(doomed)
    }

    /// Every job record, oldest first.
    pub fn jobs(&self) -> Vec<Job> {
        lock(&self.engine).registry.list().cloned().collect()
    }

    /// The newest rebuild job of index `name` (`None`: never rebuilt).
    pub fn rebuild_status(&self, name: &str) -> Result<Option<Job>, DbError> {
        let e = lock(&self.engine);
        e.index(name)?;
        Ok(e.last_rebuild(name).cloned())
    }

    /// One job record.
    pub fn job(&self, id: &str) -> Result<Job, DbError> {
        lock(&self.engine)
            .registry
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::Job(JobError::NotFound(id.into())).into())
    }

    /// The file of a published archive (a valid name the engine lists).
    pub fn backup_file(&self, name: &str) -> Result<PathBuf, DbError> {
        cairn_core::engine::validate_backup_name(name)?;
        if !lock(&self.engine).has_backup(name) {
            return Err(EngineError::BackupNotFound(name.into()).into());
        }
        Ok(self.path(&paths::backup(name)))
    }

    /// Deletes a published archive unless a job uses its name.
    pub fn delete_backup(&self, name: &str, chain: bool) -> Result<Vec<String>, DbError> {
        cairn_core::engine::validate_backup_name(name)?;
        let doomed = Engine::deletion(name, &self.local_bases(), chain)?;
        for n in doomed.iter().rev() {
            lock(&self.engine).delete_backup(n)?;
        }
        task::apply_effects(&mut NativeHost::new(self))?;
        Ok(doomed)
    }

    /// Each archive in `backups/` with the base it continues (incremental ones).
    pub fn local_bases(&self) -> Vec<(String, Option<String>)> {
        self.backup_names()
            .into_iter()
            .map(|n| {
                let base = self
                    .manifest_in(None, &n)
                    .ok()
                    .flatten()
                    .and_then(|m| m.base);
                (n, base.map(|b| b.name))
            })
            .collect()
    }

    /// The manifest of archive `name` in `backups/` (`place` `None`) or on a target, read
    /// from the archive's head; `Ok(None)` if there is no such archive.
    pub fn manifest_in(
        &self,
        place: Option<&str>,
        name: &str,
    ) -> Result<Option<Manifest>, DbError> {
        let head = match place {
            None => {
                if !lock(&self.engine).has_backup(name) {
                    return Ok(None);
                }
                let f = File::open(self.path(&paths::backup(name)))?;
                let mut head = Vec::new();
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(f, archive::HEAD_BYTES as u64),
                    &mut head,
                )?;
                head
            }
            Some(t) => {
                if !self.target_lists(t, name)? {
                    return Ok(None);
                }
                self.target(t)?
                    .read_at(&target::archive_key(name), 0, archive::HEAD_BYTES)
                    .map_err(|e| DbError::Target(e.to_string()))?
            }
        };
        Ok(archive::manifest_of(&head))
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
        let stage_rel = format!("indexes/.tmp/create-{name}-{now}");
        let stage = self.path(&stage_rel);
        let res = (|| -> Result<(File, File), DbError> {
            generation::write_generation(
                &mut FsStorage::new(&self.roots),
                &stage_rel,
                name,
                1,
                now,
                &ix,
                OriginalsFrom::Nothing,
            )?;
            fs::rename(&stage, self.path(&paths::index_dir(name)))?;
            fsutil::sync_dir(&self.path("indexes"))?;
            self.open_generation(name, 1)
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
        let t0 = std::time::Instant::now();
        let mut w = lock(&h.writer);
        w.check_open(&h.name)?;
        // A graph still missing replayed vectors can't be written (they would be lost).
        write_lock(&h.index).link_pending(usize::MAX);
        let g = w.generation + 1;
        let name = &h.name;
        let old = read_lock(&h.checkpoint_file).clone();
        let created = lock(&self.engine)
            .index(name)
            .map(|e| e.created_at)
            .unwrap_or(0);
        // One read guard for the whole write: a rebuild swapping the graph waits, so the
        // params the engine records are the ones this generation was written with.
        let (layout, params) = {
            let ix = read_lock(&h.index);
            let layout = generation::write_generation(
                &mut FsStorage::new(&self.roots),
                &paths::index_dir(name),
                name,
                g,
                created,
                &ix,
                OriginalsFrom::Reader(&mut PreadFile(&old)),
            )?;
            (layout, ix.params().clone())
        };
        let (log, ck) = self.open_generation(name, g)?;
        {
            let mut ix = write_lock(&h.index);
            ix.checkpointed(layout);
            *write_lock(&h.checkpoint_file) = Arc::new(ck);
        }
        w.log = log;
        w.generation = g;
        lock(&self.engine).checkpoint_done(name, g, params)?;
        drop(w);
        if let Err(e) = task::apply_effects(&mut NativeHost::new(self)) {
            tracing::warn!(index = %name, error = %e, "could not delete an old generation; it goes at the next start");
        }
        let bytes = fs::metadata(self.path(&paths::checkpoint(name, g))).map_or(0, |m| m.len());
        crate::observe::checkpoint_written(bytes, t0.elapsed());
        tracing::info!(index = %name, generation = g, bytes, "checkpoint written");
        Ok(())
    }

    /// Folds index `name`'s log into a new checkpoint and drops the old generation (unless a
    /// backup pins it): Endee v2's `shrink`. Returns the bytes the index's folder lost.
    pub fn shrink(&self, name: &str) -> Result<u64, DbError> {
        let h = self.handle(name)?;
        let dir = self.path(&paths::index_dir(name));
        let before = fsutil::dir_bytes(&dir);
        self.checkpoint(&h)?;
        Ok(before.saturating_sub(fsutil::dir_bytes(&dir)))
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

    /// Opens generation `g` of index `name` for serving: its log for appends, its checkpoint
    /// for reading originals.
    fn open_generation(&self, name: &str, g: u64) -> Result<(File, File), DbError> {
        let log = OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.path(&paths::log(name, g)))?;
        let ck = File::open(self.path(&paths::checkpoint(name, g)))?;
        Ok((log, ck))
    }
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
        let mut opts = DbOptions::new(&dir);
        opts.checkpoint_after = 1 << 30;
        let db = Db::open(opts).unwrap_or_else(|e| panic!("{e}"));
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
