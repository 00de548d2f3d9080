//! A whole database for single-threaded hosts (the browser Worker, Node): indexes, durable
//! writes, checkpoints, backups, restores and recovery, doing IO only through a caller-supplied
//! [`Storage`]. Time and entropy are arguments. The file layout is the native host's
//! ([`crate::engine::paths`]), so data and archives move between hosts unchanged.

use crate::archive::{self, Manifest, NullSink, Source};
use crate::control::backup::BackupTask;
use crate::control::engine::{EngineError, paths, validate_backup_name};
use crate::control::generation::{self, CheckpointError, OriginalsFrom, StoredCheckpoint};
use crate::control::rebuild::{FieldRebuild, RebuildTask};
use crate::control::recovery;
use crate::control::restore::RestoreTask;
use crate::control::task::{self, Lend, RangeReader, Stepped, Task};
use crate::index::{Index, IndexError, SearchHit, SearchRequest, VectorRecord};
use crate::originals::CheckpointBytes;
use crate::params::IndexParams;
use crate::record::{FieldsItem, Record};
use crate::registry::{Job, JobStatus};
use crate::storage::Storage;
use crate::target::{self, ArchiveTarget, TargetRecord};
use crate::{Engine, Filter, UpsertItem};
use std::collections::BTreeMap;
use std::io;
use thiserror::Error;

/// Log bytes after which a write triggers a checkpoint.
pub const CHECKPOINT_AFTER_BYTES: u64 = 16 << 20;

/// Errors of the database. `status()` gives the HTTP-style class.
#[derive(Debug, Error)]
pub enum DatabaseError {
    /// A rule of the engine.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Bad input for an index.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A bad or hostile archive.
    #[error("invalid backup archive: {0}")]
    Archive(#[from] archive::ArchiveError),
    /// Storage failed.
    #[error("storage error: {0}")]
    Io(#[from] io::Error),
    /// Stored data could not be read.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A job ran and ended failed (or cancelled); the job record says the same.
    #[error("job {job} {status}: {error}")]
    JobFailed {
        /// The job.
        job: String,
        /// `failed` or `cancelled`.
        status: String,
        /// Why.
        error: String,
    },
}

type Result<T> = std::result::Result<T, DatabaseError>;

impl From<CheckpointError> for DatabaseError {
    fn from(e: CheckpointError) -> Self {
        match e {
            CheckpointError::Engine(e) => Self::Engine(e),
            CheckpointError::Io(e) => Self::Io(e),
        }
    }
}

/// A job a step machine is carrying out in the background.
enum Running {
    Backup(Box<BackupTask>),
    Restore(Box<RestoreTask>),
    Rebuild(Box<RebuildTask>),
}

impl Running {
    fn task(&mut self) -> &mut dyn Task {
        match self {
            Running::Backup(t) => t.as_mut(),
            Running::Restore(t) => t.as_mut(),
            Running::Rebuild(t) => t.as_mut(),
        }
    }
    fn job(&self) -> &str {
        match self {
            Running::Backup(t) => t.job(),
            Running::Restore(t) => t.job(),
            Running::Rebuild(t) => t.job(),
        }
    }
}

/// The database over storage `S`.
pub struct Database<S: Storage> {
    st: S,
    engine: Engine,
    open: BTreeMap<String, Index>,
    source: Source,
    running: Vec<Running>,
    /// Backup targets besides `backups/`, by name (see [`crate::target`]).
    targets: BTreeMap<String, Box<dyn ArchiveTarget>>,
    /// Backup read pace in bytes a second (`None`: as fast as storage goes).
    backup_rate: Option<u64>,
    /// See [`Database::recovery_notes`].
    notes: Vec<String>,
}

impl<S: Storage> Database<S> {
    /// Opens the database on `st`, recovering after a crash: replays logs, cuts torn tails,
    /// fails interrupted jobs and deletes partial files. `host` names the source in archives.
    pub fn open(mut st: S, now: u64, host: &str) -> Result<Self> {
        let opened = recovery::open_engine(&mut st, now)?;
        let mut db = Self {
            st,
            engine: opened.engine,
            open: BTreeMap::new(),
            source: Source {
                host: host.into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            running: Vec::new(),
            targets: BTreeMap::new(),
            backup_rate: None,
            notes: opened.notes,
        };
        for name in opened.indexes {
            // Single-threaded: nothing would link later, so the replay links as it goes.
            let r = recovery::recover_index(&mut db.st, &name, false);
            match recovery::load_into(&mut db.engine, &name, r) {
                Ok(r) => {
                    db.open.insert(name, r.index);
                }
                Err(e) => db.notes.push(format!("index {name} did not load: {e}")),
            }
        }
        Ok(db)
    }

    /// What opening did that someone should hear about (a jobs file kept aside, an index
    /// that did not load and why).
    pub fn recovery_notes(&self) -> &[String] {
        &self.notes
    }

    /// Paces backups to `bytes_per_sec` of reads (`None`: unpaced).
    pub fn set_backup_rate(&mut self, bytes_per_sec: Option<u64>) {
        self.backup_rate = bytes_per_sec;
    }

    /// Performs what the engine asks after a change (the jobs file, freed generations).
    fn effects(&mut self) -> Result<()> {
        let mut host = Lend {
            engine: &mut self.engine,
            st: &mut self.st,
            indexes: None,
            targets: None,
        };
        task::apply_effects(&mut host)?;
        Ok(())
    }

    /// The storage (for hosts that need to flush or inspect it).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.st
    }

    /// Gives the storage back (e.g. to simulate a crash and reopen). Running jobs stop.
    pub fn into_storage(self) -> S {
        self.st
    }

    /// The engine (read-only: catalog, gates, jobs).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn get_open(&self, name: &str) -> Result<&Index> {
        self.engine.index(name)?;
        self.open
            .get(name)
            .ok_or_else(|| EngineError::IndexNotFound(name.into()).into())
    }

    /// Creates an index.
    pub fn create_index(&mut self, name: &str, params: IndexParams, now: u64) -> Result<()> {
        let ix = Index::new(params.clone())?;
        self.engine.create_index(name, params.clone(), now)?;
        let r = generation::write_generation(
            &mut self.st,
            &paths::index_dir(name),
            name,
            1,
            now,
            &ix,
            OriginalsFrom::Nothing,
        );
        if let Err(e) = r {
            self.engine.abandon_create(name);
            for f in self.st.list(&format!("{}/", paths::index_dir(name)))? {
                let _ = self.st.remove(&f);
            }
            return Err(e.into());
        }
        self.open.insert(name.into(), ix);
        Ok(())
    }

    /// Deletes an index unless a job uses it.
    pub fn delete_index(&mut self, name: &str) -> Result<()> {
        self.engine.delete_index(name)?;
        self.open.remove(name);
        self.effects()
    }

    /// Index names with their parameters, created time and vector count.
    pub fn list_indexes(&self) -> Vec<(String, IndexParams, u64, usize)> {
        self.open
            .iter()
            .map(|(n, ix)| {
                (
                    n.clone(),
                    ix.params().clone(),
                    self.engine.index(n).map(|e| e.created_at).unwrap_or(0),
                    ix.len(),
                )
            })
            .collect()
    }

    /// One index (read-only).
    pub fn index(&self, name: &str) -> Result<&Index> {
        self.get_open(name)
    }

    /// The write protocol: the engine admits the write and says where its record goes; the
    /// record is appended and synced; on failure the log is cut back to where the record
    /// started (and the cut synced) so a write reported failed never replays; then the
    /// record is applied and committed, which may make a checkpoint due.
    fn write(
        &mut self,
        name: &str,
        prepare: impl FnOnce(&Index) -> std::result::Result<Record, IndexError>,
    ) -> Result<usize> {
        let slot = self.engine.begin_write(name)?;
        let rec = prepare(self.get_open(name)?)?;
        let bytes = rec.encode();
        let appended = self
            .st
            .append(&slot.log_path, &bytes)
            .and_then(|()| self.st.sync(&slot.log_path));
        if let Err(e) = appended {
            let _ = self
                .st
                .truncate(&slot.log_path, slot.at)
                .and_then(|()| self.st.sync(&slot.log_path));
            return Err(e.into());
        }
        let ix = self
            .open
            .get_mut(name)
            .ok_or_else(|| EngineError::IndexNotFound(name.into()))?;
        let n = ix.apply(&rec);
        let live = ix.len() as u64;
        let due = self.engine.commit_write(
            name,
            &slot,
            bytes.len() as u64,
            rec.upserted(),
            live,
            CHECKPOINT_AFTER_BYTES,
        )?;
        if due {
            self.checkpoint(name)?;
        }
        Ok(n)
    }

    /// Inserts or replaces vectors; durable when this returns.
    pub fn upsert(&mut self, name: &str, items: Vec<UpsertItem>) -> Result<usize> {
        self.write(name, |ix| ix.prepare_upsert(items))
    }

    /// Inserts or replaces a collection's objects, whatever fields it has (see
    /// [`Index::prepare_upsert_objects`]).
    pub fn write_fields(&mut self, name: &str, items: Vec<FieldsItem>) -> Result<usize> {
        self.write(name, |ix| ix.prepare_upsert_objects(items))
    }

    /// Deletes vectors by id.
    pub fn delete(&mut self, name: &str, ids: Vec<String>) -> Result<usize> {
        self.write(name, |ix| ix.prepare_delete(ids))
    }

    /// Deletes the vectors a filter matches.
    pub fn delete_by_filter(&mut self, name: &str, f: &Filter) -> Result<usize> {
        self.write(name, |ix| ix.prepare_delete_by_filter(f))
    }

    /// Replaces filters of existing ids.
    pub fn update_filters(&mut self, name: &str, updates: Vec<(String, String)>) -> Result<usize> {
        self.write(name, |ix| ix.prepare_update_filters(updates))
    }

    /// Searches an index (an int8 or binary index reads the originals it re-ranks with from
    /// storage).
    pub fn search(&mut self, name: &str, req: &SearchRequest) -> Result<Vec<SearchHit>> {
        self.with_checkpoint(name, |ix, src| ix.search_with(req, src))
    }

    /// One stored vector (an int8 or binary index reads its float32 original from storage).
    pub fn get(&mut self, name: &str, id: &str) -> Result<VectorRecord> {
        self.with_checkpoint(name, |ix, src| ix.get_with(id, src))?
            .ok_or_else(|| IndexError::NotFound(id.into()).into())
    }

    /// Runs `f` on index `name` with its current checkpoint in storage as the source of
    /// originals.
    fn with_checkpoint<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&Index, &mut dyn CheckpointBytes) -> std::result::Result<T, IndexError>,
    ) -> Result<T> {
        let g = self.engine.index(name)?.generation;
        let ix = self
            .open
            .get(name)
            .ok_or_else(|| EngineError::IndexNotFound(name.into()))?;
        let mut src = StoredCheckpoint {
            st: &mut self.st,
            path: paths::checkpoint(name, g),
        };
        Ok(f(ix, &mut src)?)
    }

    /// Writes a new checkpoint generation and starts a new log.
    pub fn checkpoint(&mut self, name: &str) -> Result<()> {
        self.engine.index(name)?;
        let ix = self
            .open
            .get_mut(name)
            .ok_or_else(|| EngineError::IndexNotFound(name.into()))?;
        generation::checkpoint_index(&mut self.st, &mut self.engine, name, ix)?;
        self.effects()
    }

    /// Accepts a backup (every rule, now), records its cut and starts it in the background:
    /// [`Database::step`] carries it out a chunk at a time. Returns the running job.
    pub fn start_backup(
        &mut self,
        index: &str,
        name: &str,
        now: u64,
        now_us: u64,
        entropy: [u8; 6],
    ) -> Result<Job> {
        self.start_backup_to(index, name, None, None, now, now_us, entropy)
    }

    /// [`Database::start_backup`] into backup target `target` (`None`: `backups/`), and
    /// incremental on archive `incremental_from` of the same place when given. A name the
    /// target already lists is refused (409); a base that can't be one, 400.
    #[allow(clippy::too_many_arguments)]
    pub fn start_backup_to(
        &mut self,
        index: &str,
        name: &str,
        target: Option<&str>,
        incremental_from: Option<&str>,
        now: u64,
        now_us: u64,
        entropy: [u8; 6],
    ) -> Result<Job> {
        if let Some(t) = target {
            self.engine.check_target(Some(t))?;
            if self.target_has(t, name)? {
                return Err(EngineError::BackupExists(name.into()).into());
            }
        }
        let base = match incremental_from {
            None => None,
            Some(b) => {
                validate_backup_name(b)?;
                let m = self
                    .manifest_in(target, b)
                    .ok_or_else(|| EngineError::BackupNotFound(b.into()))?;
                Some((b, m))
            }
        };
        let source = self.source.clone();
        let task = self.engine.begin_backup(
            now,
            now_us,
            entropy,
            index,
            name,
            target,
            base.as_ref().map(|(b, m)| (*b, m)),
            source,
            self.backup_rate,
        )?;
        self.engine.release_cut(index, now_us);
        self.launch(Running::Backup(Box::new(task)))
    }

    /// Puts an accepted job's task among the running ones; returns its record.
    fn launch(&mut self, task: Running) -> Result<Job> {
        let id = task.job().to_string();
        self.running.push(task);
        // The job runs: a jobs-file write that failed is retried with the next change.
        let _ = self.effects();
        self.job(&id)
    }

    /// Accepts a restore (every rule, now) and starts it in the background.
    pub fn start_restore(
        &mut self,
        backup: &str,
        target: &str,
        now: u64,
        entropy: [u8; 6],
    ) -> Result<Job> {
        self.start_restore_from(backup, None, target, now, entropy)
    }

    /// [`Database::start_restore`] of an archive on backup target `from` (`None`:
    /// `backups/`); one the target does not list is 404.
    pub fn start_restore_from(
        &mut self,
        backup: &str,
        from: Option<&str>,
        target: &str,
        now: u64,
        entropy: [u8; 6],
    ) -> Result<Job> {
        if let Some(t) = from {
            self.engine.check_target(Some(t))?;
            if !self.target_has(t, backup)? {
                return Err(EngineError::BackupNotFound(backup.into()).into());
            }
        }
        validate_backup_name(backup)?;
        let chain = Engine::chain_of(backup, |n| self.manifest_in(from, n))?;
        let task = self
            .engine
            .begin_restore(now, entropy, chain, target, from)?;
        self.launch(Running::Restore(Box::new(task)))
    }

    /// The manifest of archive `name` in `backups/` (`place` `None`) or on a target, read
    /// from the archive's head; `None` if there is no such archive.
    fn manifest_in(&mut self, place: Option<&str>, name: &str) -> Option<Manifest> {
        let head = match place {
            None => {
                if !self.engine.has_backup(name) {
                    return None;
                }
                self.st
                    .read_at(&paths::backup(name), 0, archive::HEAD_BYTES)
            }
            Some(t) => {
                self.targets
                    .get_mut(t)?
                    .read_at(&target::archive_key(name), 0, archive::HEAD_BYTES)
            }
        };
        archive::manifest_of(&head.ok()?)
    }

    /// Adds backup target `name` (an object store); jobs may name it from now on.
    /// Uploads that jobs left open on it before (a crash mid-upload) are aborted now
    /// ([`Database::sweep_uploads`]); one the store refuses stays for the next time.
    pub fn add_target(&mut self, name: &str, target: Box<dyn ArchiveTarget>) {
        self.targets.insert(name.into(), target);
        self.engine.set_targets(self.targets.keys().cloned());
        let _ = self.sweep_uploads(name);
    }

    /// Aborts the uploads ended jobs left open on target `name`; returns how many went.
    pub fn sweep_uploads(&mut self, name: &str) -> Result<usize> {
        let mut host = Lend {
            engine: &mut self.engine,
            st: &mut self.st,
            indexes: None,
            targets: Some(&mut self.targets),
        };
        Ok(task::sweep_uploads(&mut host, name)?)
    }

    /// Backup target `name`, to inspect it (tests, listings).
    pub fn target_mut(&mut self, name: &str) -> Result<&mut (dyn ArchiveTarget + 'static)> {
        self.targets
            .get_mut(name)
            .map(|t| t.as_mut())
            .ok_or_else(|| EngineError::UnknownTarget(name.into()).into())
    }

    /// The backups target `name` lists (complete archives with their records).
    pub fn target_backups(&mut self, name: &str) -> Result<Vec<TargetRecord>> {
        Ok(target::list_backups(self.target_mut(name)?)?)
    }

    /// True when target `t` lists archive `name` as a backup.
    fn target_has(&mut self, t: &str, name: &str) -> Result<bool> {
        Ok(self.target_backups(t)?.iter().any(|r| r.name == name))
    }

    /// Accepts a rebuild of `index`'s graph with `m` / `ef_con` (`None` keeps the current
    /// value; every rule checked now) and starts it in the background: [`Database::step`]
    /// builds the new graph a batch at a time while searches and writes go on with the old one.
    pub fn start_rebuild(
        &mut self,
        index: &str,
        m: Option<usize>,
        ef_con: Option<usize>,
        now: u64,
        entropy: [u8; 6],
    ) -> Result<Job> {
        self.start_rebuild_field(index, 0, m, ef_con, now, entropy)
    }

    /// [`Database::start_rebuild`] for dense field `field` of a collection (0: its first;
    /// `i + 1`: its further field `i`).
    pub fn start_rebuild_field(
        &mut self,
        index: &str,
        field: usize,
        m: Option<usize>,
        ef_con: Option<usize>,
        now: u64,
        entropy: [u8; 6],
    ) -> Result<Job> {
        let one = FieldRebuild { field, m, ef_con };
        self.start_rebuild_fields(index, &[one], now, entropy)
    }

    /// One rebuild job for several dense fields of a collection, rebuilt one after the other
    /// (each committed by its own checkpoint); refused whole if any field is not one of its
    /// dense fields or is named twice.
    pub fn start_rebuild_fields(
        &mut self,
        index: &str,
        fields: &[FieldRebuild],
        now: u64,
        entropy: [u8; 6],
    ) -> Result<Job> {
        let task = self
            .engine
            .begin_rebuild_fields(now, entropy, index, fields)?;
        self.launch(Running::Rebuild(Box::new(task)))
    }

    /// Runs a rebuild to its end (other jobs step along); returns the finished job.
    pub fn rebuild(
        &mut self,
        index: &str,
        m: Option<usize>,
        ef_con: Option<usize>,
        now: u64,
        entropy: [u8; 6],
    ) -> Result<Job> {
        let job = self.start_rebuild(index, m, ef_con, now, entropy)?;
        self.run_job(&job.job_id, now, &mut |_, _| {})
    }

    /// The newest rebuild job of `index` (`None`: never rebuilt, or its record was pruned).
    pub fn rebuild_status(&self, index: &str) -> Result<Option<Job>> {
        self.engine.index(index)?;
        Ok(self.engine.last_rebuild(index).cloned())
    }

    /// Carries background jobs forward by up to `steps` steps (a step is one storage call
    /// or one engine turn). Returns how many jobs are still running and, if all of them are
    /// paced, when the next step is due.
    pub fn step(&mut self, now: u64, steps: usize) -> (usize, Option<u64>) {
        let mut wait: Option<u64> = None;
        for _ in 0..steps {
            if self.running.is_empty() {
                break;
            }
            let mut progressed = false;
            wait = None;
            let mut i = 0;
            while i < self.running.len() {
                let mut host = Lend {
                    engine: &mut self.engine,
                    st: &mut self.st,
                    indexes: Some(&mut self.open),
                    targets: Some(&mut self.targets),
                };
                match task::step(self.running[i].task(), &mut host, now) {
                    Stepped::Busy => {
                        progressed = true;
                        i += 1;
                    }
                    Stepped::Wait(t) => {
                        wait = Some(wait.map_or(t, |w: u64| w.min(t)));
                        i += 1;
                    }
                    Stepped::Input => i += 1,
                    Stepped::Done => {
                        self.running.remove(i);
                        progressed = true;
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        (self.running.len(), wait)
    }

    /// Ids of the jobs whose tasks are still stepping.
    pub fn running_jobs(&self) -> Vec<String> {
        self.running.iter().map(|r| r.job().to_string()).collect()
    }

    /// Runs job `id` to its end (other jobs step along), ignoring pacing. `progress` sees
    /// its bytes.
    fn run_job(&mut self, id: &str, now: u64, progress: &mut dyn FnMut(u64, u64)) -> Result<Job> {
        while self.running.iter().any(|r| r.job() == id) {
            let (_, wait) = self.step(now, 1);
            if let Some(t) = wait {
                // Single-threaded and asked to finish now: treat the pace as reached.
                let _ = self.step(t, 1);
            }
            let j = self.job(id)?;
            progress(j.bytes_done, j.bytes_total);
        }
        let j = self.job(id)?;
        match j.status {
            JobStatus::Completed => Ok(j),
            s => Err(DatabaseError::JobFailed {
                job: j.job_id.clone(),
                status: format!("{s:?}").to_lowercase(),
                error: j.error.clone().unwrap_or_default(),
            }),
        }
    }

    /// Runs a backup job to the end: submit (every rule), cut, stream into
    /// `backups/.tmp/<job>.tar`, sync, publish. `progress(done, total)` is called as bytes
    /// stream. Returns the finished job; a failure is recorded in the job and returned.
    pub fn backup(
        &mut self,
        index: &str,
        name: &str,
        now: u64,
        entropy: [u8; 6],
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Job> {
        let job = self.start_backup(index, name, now, now * 1000, entropy)?;
        self.run_job(&job.job_id, now, progress)
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Vec<Job> {
        self.engine.registry.list().cloned().collect()
    }

    /// One job.
    pub fn job(&self, id: &str) -> Result<Job> {
        self.engine
            .registry
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::Job(crate::registry::JobError::NotFound(id.into())).into())
    }

    /// Cancels a job. A running one stops at its next step and keeps its pins until then;
    /// the returned record is *cancelling* until [`Database::step`] runs it to *cancelled*.
    pub fn cancel(&mut self, id: &str, now: u64) -> Result<Job> {
        self.engine.cancel(id, now)?;
        self.effects()?;
        // Let the job see it now rather than at its next engine turn.
        if let Some(r) = self.running.iter_mut().find(|r| r.job() == id) {
            r.task().engine(&mut self.engine, now);
        }
        self.job(id)
    }

    /// Archive names.
    pub fn backups(&self) -> Vec<String> {
        self.engine.backup_names().map(String::from).collect()
    }

    /// A published archive's bytes (the browser offers them as a download).
    pub fn export_backup(&mut self, name: &str) -> Result<Vec<u8>> {
        validate_backup_name(name)?;
        if !self.engine.has_backup(name) {
            return Err(EngineError::BackupNotFound(name.into()).into());
        }
        self.st
            .read_all(&paths::backup(name))?
            .ok_or_else(|| EngineError::BackupNotFound(name.into()).into())
    }

    /// The verified manifest of a published archive (read in chunks).
    pub fn backup_info(&mut self, name: &str) -> Result<Manifest> {
        validate_backup_name(name)?;
        if !self.engine.has_backup(name) {
            return Err(EngineError::BackupNotFound(name.into()).into());
        }
        let path = paths::backup(name);
        let size = self
            .st
            .size(&path)?
            .ok_or_else(|| EngineError::BackupNotFound(name.into()))?;
        let r = RangeReader::new(&mut self.st, &path, 0, size);
        Ok(archive::read_archive(r, &mut NullSink)?)
    }

    /// Validates an archive and publishes it under `name`, through the upload step
    /// machine (written and checked a chunk at a time). Nothing is kept on failure.
    pub fn import_backup(&mut self, name: &str, bytes: &[u8]) -> Result<Manifest> {
        let mut up = self.engine.begin_upload(name)?;
        for chunk in bytes.chunks(1 << 20) {
            up.feed(chunk.to_vec());
        }
        up.end();
        let mut host = Lend {
            engine: &mut self.engine,
            st: &mut self.st,
            indexes: None,
            targets: None,
        };
        while task::step(&mut up, &mut host, 0) != Stepped::Done {}
        match (up.manifest(), up.error()) {
            (Some(m), _) => Ok(m.clone()),
            (None, e) => Err(DatabaseError::Archive(archive::ArchiveError::Content(
                e.unwrap_or("upload failed")
                    .trim_start_matches("invalid backup archive: ")
                    .into(),
            ))),
        }
    }

    /// Deletes an archive unless a job uses it.
    pub fn delete_backup(&mut self, name: &str) -> Result<()> {
        self.delete_backups(name, false).map(|_| ())
    }

    /// Deletes archive `name` from `backups/`; one that later incremental backups continue
    /// is refused (409) unless `chain`, which deletes them with it. Returns what was deleted.
    pub fn delete_backups(&mut self, name: &str, chain: bool) -> Result<Vec<String>> {
        validate_backup_name(name)?;
        let names: Vec<String> = self.engine.backup_names().map(String::from).collect();
        let bases: Vec<(String, Option<String>)> = names
            .iter()
            .map(|n| {
                let base = self
                    .manifest_in(None, n)
                    .and_then(|m| m.base)
                    .map(|b| b.name);
                (n.clone(), base)
            })
            .collect();
        let doomed = Engine::deletion(name, &bases, chain)?;
        // The newest first: a failure part-way leaves whole chains.
        for n in doomed.iter().rev() {
            self.engine.delete_backup(n)?;
        }
        self.effects()?;
        Ok(doomed)
    }

    /// Restores archive `backup` into a new index `target` and runs the job to its end; the
    /// index is published only when complete.
    pub fn restore(
        &mut self,
        backup: &str,
        target: &str,
        now: u64,
        entropy: [u8; 6],
    ) -> Result<Job> {
        let job = self.start_restore(backup, target, now, entropy)?;
        self.run_job(&job.job_id, now, &mut |_, _| {})
    }
}
