//! The engine: the database's control plane as one state machine — the catalog of indexes
//! and archives, the per-index write gate, checkpoint generations and their pins, and the job
//! registry. Every rule is decided here, synchronously, at submit time; hosts do the IO.
//!
//! Index *data* ([`crate::Index`]) is held by the host next to this (the native host keeps one
//! lock per index so searches run in parallel); the engine knows each index's durable state.

use crate::archive::{BaseRef, Manifest, Source};
use crate::control::backup::BackupTask;
use crate::control::gate::{Admit, WriteGate};
use crate::control::rebuild::{FieldRebuild, RebuildTask};
use crate::control::restore::RestoreTask;
use crate::control::upload::UploadTask;
pub use crate::durability::layout::{IndexManifest, paths};
use crate::params::{self, IndexParams, ParamError};
use crate::record::checkpoint_due;
use crate::registry::{
    CutPoint, INTERRUPTED, Job, JobError, JobKind, JobRegistry, JobStatus, RebuildSpec,
};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// Longest backup name.
pub const MAX_BACKUP_NAME: usize = 200;

/// Most archives in one incremental chain (a full backup and the ones continuing it).
pub const MAX_CHAIN: usize = 1000;

/// Why the engine refused. Hosts map: `Invalid*` → 400, `*NotFound` → 404, the rest → 409.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EngineError {
    /// Bad backup name.
    #[error("{0}")]
    InvalidBackupName(String),
    /// Bad index name or parameter.
    #[error(transparent)]
    Invalid(#[from] ParamError),
    /// No such index.
    #[error("index {0:?} not found")]
    IndexNotFound(String),
    /// Index name taken.
    #[error("index {0:?} already exists")]
    IndexExists(String),
    /// No such archive.
    #[error("backup {0:?} not found")]
    BackupNotFound(String),
    /// An incremental backup's base can't be one.
    #[error("backup {name:?} can't be the base of this incremental backup: {why}")]
    BadBase {
        /// The base named.
        name: String,
        /// Why not.
        why: String,
    },
    /// An archive other backups are incremental on.
    #[error(
        "backup {name:?} is the base of {dependents:?}: delete the chain with it (?chain=true)"
    )]
    HasDependents {
        /// The archive.
        name: String,
        /// Archives that need it.
        dependents: Vec<String>,
    },
    /// No backup target of that name is configured.
    #[error("no backup target named {0:?} (configured: local and the --backup-target names)")]
    UnknownTarget(String),
    /// Archive name taken.
    #[error("backup {0:?} already exists")]
    BackupExists(String),
    /// Another backup of the index is active.
    #[error("a backup of index {index:?} is already running (job {job})")]
    BackupInProgress {
        /// The index.
        index: String,
        /// The active job.
        job: String,
    },
    /// Another rebuild of the index is active.
    #[error("a rebuild of index {index:?} is already running (job {job})")]
    RebuildInProgress {
        /// The index.
        index: String,
        /// The active job.
        job: String,
    },
    /// An active job or upload is producing or reading that archive name.
    #[error("backup name {name:?} is in use by {job}")]
    NameBusy {
        /// The archive name.
        name: String,
        /// The job id (or "upload").
        job: String,
    },
    /// A job uses the index, so it cannot be deleted or written into.
    #[error("index {index:?} is in use by job {job}")]
    IndexBusy {
        /// The index.
        index: String,
        /// The job id.
        job: String,
    },
    /// A job error (not found, finished, bad transition).
    #[error(transparent)]
    Job(#[from] JobError),
    /// A write came while a backup records its cut: retry (hosts wait and retry).
    #[error("index {0:?} is recording a backup cut; retry")]
    WriteHeld(String),
    /// A write's log position no longer matches the index (a checkpoint or delete came
    /// between its begin and its commit).
    #[error("index {0:?} changed during the write")]
    WriteRaced(String),
    /// The index is still loading after a start (hosts answer 503 with `Retry-After`).
    #[error("index {0:?} is loading; retry shortly")]
    IndexLoading(String),
    /// The index's files are on storage but did not load; they are kept untouched for a
    /// human (hosts answer 503). Deleting the index is the one operation it allows.
    #[error("index {name:?} failed to load and is unavailable: {reason}")]
    IndexBroken {
        /// The index.
        name: String,
        /// Why it did not load.
        reason: String,
    },
}

/// Checks a backup name: `^[A-Za-z0-9_-]{1,200}$`, with Endee's messages.
pub fn validate_backup_name(name: &str) -> Result<(), EngineError> {
    if name.is_empty() {
        return Err(EngineError::InvalidBackupName(
            "Backup name cannot be empty".into(),
        ));
    }
    if name.len() > MAX_BACKUP_NAME {
        return Err(EngineError::InvalidBackupName(format!(
            "Backup name too long (max {MAX_BACKUP_NAME} characters)"
        )));
    }
    // A database's archives are stored as `<database>.<name>` (see `validate_stored_name`);
    // names from users are checked without the separator by the hosts.
    let part = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let ok = match name.split_once('.') {
        Some((db, rest)) => part(db) && part(rest),
        None => part(name),
    };
    if !ok {
        return Err(EngineError::InvalidBackupName(
            "Invalid backup name: only alphanumeric, underscores, and hyphens allowed".into(),
        ));
    }
    Ok(())
}

/// Where an index's current log stands: every byte in it is a committed (acknowledged)
/// record. The engine holds it so a backup's cut is O(1) and needs no host lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogState {
    /// Bytes of committed records in the current generation's log.
    pub log_len: u64,
    /// Vectors those records upsert (what replaying them costs).
    pub log_vectors: u64,
    /// Live vectors in the index after the last committed record.
    pub live: u64,
}

/// A write admitted by [`Engine::begin_write`]: where its record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSlot {
    /// The log file to append to.
    pub log_path: String,
    /// The generation whose log it is.
    pub generation: u64,
    /// Where the record starts: on failure the host cuts the log back to here (and syncs
    /// the cut) before answering, so a write reported failed never replays.
    pub at: u64,
}

/// Something a host must do because the engine changed, drained with
/// [`Engine::take_effects`] after every call that changes it. Hosts never decide these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The job registry changed: write the jobs file (atomically) with the current registry.
    PersistJobs,
    /// Delete these files (generations no one pins, partial files of stopped jobs).
    Remove(Vec<String>),
    /// Delete this directory and everything under it.
    RemoveTree(String),
    /// Delete an index: its manifest first (so a crash leaves no half index that looks
    /// whole), then its directory.
    RemoveIndex(String),
    /// Delete an index directory only if it has no manifest: what an interrupted restore
    /// left while publishing (with a manifest, the restored index is whole and stays).
    RemoveUnpublished(String),
    /// Delete a published archive (and make that durable): the engine no longer lists it.
    RemoveBackup(String),
}

/// What the engine knows of one index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// Parameters.
    pub params: IndexParams,
    /// Current checkpoint generation.
    pub generation: u64,
    /// Creation time.
    pub created_at: u64,
    /// The current log.
    pub log: LogState,
    gate: WriteGate,
    pins: BTreeMap<u64, u32>,
    retired: BTreeSet<u64>,
    users: BTreeSet<String>,
    active_backup: Option<String>,
    active_rebuild: Option<String>,
}

/// Generations of an index whose files may now be deleted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deletable {
    /// (index name, generation) pairs: delete checkpoint and log of each.
    pub generations: Vec<(String, u64)>,
}

/// The control plane.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Engine {
    indexes: BTreeMap<String, IndexEntry>,
    backups: BTreeSet<String>,
    /// The host's backup targets besides `backups/` (see [`crate::target`]).
    targets: BTreeSet<String>,
    uploads: BTreeSet<String>,
    /// Restore targets reserved by active restore jobs: index name → job id.
    reserved: BTreeMap<String, String>,
    /// Indexes whose files did not load: name → reason. The name stays taken.
    broken: BTreeMap<String, String>,
    /// Indexes found at start whose load has not finished. The names are taken.
    loading: BTreeSet<String>,
    /// What hosts must do, in order.
    effects: Vec<Effect>,
    /// All jobs.
    pub registry: JobRegistry,
}

impl Engine {
    /// An engine over a registry (fresh or decoded from the jobs file).
    pub fn new(registry: JobRegistry) -> Self {
        Self {
            registry,
            ..Default::default()
        }
    }

    /// Registers an index found on storage at startup (or published by a restore).
    pub fn load_index(
        &mut self,
        name: &str,
        params: IndexParams,
        generation: u64,
        created_at: u64,
        log: LogState,
    ) {
        self.loading.remove(name);
        self.indexes.insert(
            name.into(),
            IndexEntry {
                params,
                generation,
                created_at,
                log,
                gate: WriteGate::new(),
                pins: BTreeMap::new(),
                retired: BTreeSet::new(),
                users: BTreeSet::new(),
                active_backup: None,
                active_rebuild: None,
            },
        );
    }

    /// Records an index whose files are on storage but did not load (corrupt checkpoint,
    /// undecodable or corrupt log, unreadable manifest, a stray file): the name stays taken,
    /// every operation but delete answers [`EngineError::IndexBroken`].
    pub fn mark_broken(&mut self, name: &str, reason: &str) {
        self.indexes.remove(name);
        self.loading.remove(name);
        self.broken.insert(name.into(), reason.into());
    }

    /// Indexes that failed to load, with the reason, sorted by name.
    pub fn broken(&self) -> impl Iterator<Item = (&str, &str)> {
        self.broken.iter().map(|(n, r)| (n.as_str(), r.as_str()))
    }

    /// Records an index found at start that a host loads in the background: until
    /// [`Engine::load_index`] or [`Engine::mark_broken`], its name is taken and every operation
    /// on it answers [`EngineError::IndexLoading`].
    pub fn mark_loading(&mut self, name: &str) {
        self.loading.insert(name.into());
    }

    /// Indexes still loading, sorted by name.
    pub fn loading(&self) -> impl Iterator<Item = &str> {
        self.loading.iter().map(|s| s.as_str())
    }

    fn check_not_broken(&self, name: &str) -> Result<(), EngineError> {
        if self.loading.contains(name) {
            return Err(EngineError::IndexLoading(name.into()));
        }
        match self.broken.get(name) {
            Some(reason) => Err(EngineError::IndexBroken {
                name: name.into(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Names the host's backup targets (object stores) that jobs may use.
    pub fn set_targets(&mut self, names: impl IntoIterator<Item = String>) {
        self.targets = names.into_iter().collect();
    }

    /// Checks `target` names a configured backup target (`None`: the data directory).
    pub fn check_target(&self, target: Option<&str>) -> Result<(), EngineError> {
        match target {
            Some(t) if !self.targets.contains(t) => Err(EngineError::UnknownTarget(t.into())),
            _ => Ok(()),
        }
    }

    /// Registers an archive found on storage at startup.
    pub fn load_backup(&mut self, name: &str) {
        self.backups.insert(name.into());
    }

    /// One index's entry.
    pub fn index(&self, name: &str) -> Result<&IndexEntry, EngineError> {
        self.check_not_broken(name)?;
        self.indexes
            .get(name)
            .ok_or_else(|| EngineError::IndexNotFound(name.into()))
    }

    /// Index names, sorted.
    pub fn index_names(&self) -> impl Iterator<Item = &str> {
        self.indexes.keys().map(|s| s.as_str())
    }

    /// Archive names, sorted.
    pub fn backup_names(&self) -> impl Iterator<Item = &str> {
        self.backups.iter().map(|s| s.as_str())
    }

    /// True if an archive with that name is published.
    pub fn has_backup(&self, name: &str) -> bool {
        self.backups.contains(name)
    }

    /// Checks and registers a new index at generation 1.
    pub fn create_index(
        &mut self,
        name: &str,
        params: IndexParams,
        now: u64,
    ) -> Result<(), EngineError> {
        params::validate_stored_name(name)?;
        params.validate()?;
        self.check_not_broken(name)?;
        if self.indexes.contains_key(name) {
            return Err(EngineError::IndexExists(name.into()));
        }
        if let Some(job) = self.reserved.get(name) {
            return Err(EngineError::IndexBusy {
                index: name.into(),
                job: job.clone(),
            });
        }
        self.load_index(name, params, 1, now, LogState::default());
        Ok(())
    }

    /// Forgets an index whose creation failed before it was published.
    pub fn abandon_create(&mut self, name: &str) {
        self.indexes.remove(name);
    }

    /// Admits a write to `name` through its gate and says where its record goes. Writes are
    /// never refused because of a backup (a cut holds them for microseconds: `WriteHeld`,
    /// retry). The host appends and syncs the record, applies it, then calls
    /// [`Engine::commit_write`] — or, if the append failed, cuts the log back to `at`.
    pub fn begin_write(&self, name: &str) -> Result<WriteSlot, EngineError> {
        let e = self.index(name)?;
        match e.gate.admit() {
            Admit::Go => Ok(WriteSlot {
                log_path: paths::log(name, e.generation),
                generation: e.generation,
                at: e.log.log_len,
            }),
            Admit::Wait => Err(EngineError::WriteHeld(name.into())),
            Admit::Closed => Err(EngineError::IndexNotFound(name.into())),
        }
    }

    /// Records a write made durable and applied: `bytes` appended at `slot.at`, `upserted`
    /// vectors, `live` vectors after it. Returns true when a checkpoint is now due (replay
    /// cost or `max_log_bytes` of log; see [`checkpoint_due`]).
    pub fn commit_write(
        &mut self,
        name: &str,
        slot: &WriteSlot,
        bytes: u64,
        upserted: u64,
        live: u64,
        max_log_bytes: u64,
    ) -> Result<bool, EngineError> {
        let e = self
            .indexes
            .get_mut(name)
            .ok_or_else(|| EngineError::IndexNotFound(name.into()))?;
        if e.generation != slot.generation || e.log.log_len != slot.at {
            return Err(EngineError::WriteRaced(name.into()));
        }
        e.log.log_len += bytes;
        e.log.log_vectors += upserted;
        e.log.live = live;
        Ok(checkpoint_due(
            e.log.log_len,
            e.log.log_vectors,
            live,
            max_log_bytes,
        ))
    }

    /// True when `name`'s log holds records a checkpoint would fold in.
    pub fn log_dirty(&self, name: &str) -> bool {
        self.indexes.get(name).is_some_and(|e| e.log.log_len > 0)
    }

    /// Queues an effect (and the jobs file, when the registry changed).
    fn effect(&mut self, e: Effect) {
        if self.effects.last() != Some(&e) {
            self.effects.push(e);
        }
    }

    /// Takes what the host must now do, in order. Call after every engine call that can
    /// change state; performing them is the host's only job.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn deletable(&mut self, d: Deletable) {
        let files: Vec<String> = d
            .generations
            .iter()
            .flat_map(|(ix, g)| {
                [
                    paths::checkpoint(ix, *g),
                    paths::checkpoint_digest(ix, *g),
                    paths::log(ix, *g),
                ]
            })
            .collect();
        if !files.is_empty() {
            self.effect(Effect::Remove(files));
        }
    }

    /// Removes an index unless a job uses it; returns its generations to delete. A broken
    /// index is forgotten (the host removes its directory: the operator asked for it).
    pub fn delete_index(&mut self, name: &str) -> Result<(), EngineError> {
        self.index_deletable(name)?;
        if self.broken.remove(name).is_none() {
            self.indexes.remove(name);
        }
        self.effect(Effect::RemoveIndex(name.into()));
        Ok(())
    }

    /// Why [`Engine::delete_index`] would refuse `name` now, if it would. Changes nothing.
    fn index_deletable(&self, name: &str) -> Result<(), EngineError> {
        if self.loading.contains(name) {
            return Err(EngineError::IndexLoading(name.into()));
        }
        if self.broken.contains_key(name) {
            return Ok(());
        }
        let e = self.index(name)?;
        if let Some(job) = e.users.iter().next() {
            return Err(EngineError::IndexBusy {
                index: name.into(),
                job: job.clone(),
            });
        }
        Ok(())
    }

    /// Checks that every index and archive named could be deleted now, before any is, and
    /// that no active job names an index or archive starting with `prefix` (a restore still
    /// creating one, a backup still writing one): what deleting a whole database asks first,
    /// so a job on its last collection cannot leave it half deleted, nor a job leave behind
    /// what belonged to it. Changes nothing.
    pub fn check_deletable(
        &self,
        indexes: &[String],
        backups: &[String],
        prefix: &str,
    ) -> Result<(), EngineError> {
        for i in indexes {
            self.index_deletable(i)?;
        }
        if let Some(j) = self.registry.active().find(|j| {
            j.index_name.starts_with(prefix)
                || (!j.backup_name.is_empty() && j.backup_name.starts_with(prefix))
        }) {
            return Err(EngineError::IndexBusy {
                index: j.index_name.clone(),
                job: j.job_id.clone(),
            });
        }
        for b in backups {
            if let Some(job) = self.name_user(b) {
                return Err(EngineError::NameBusy {
                    name: b.clone(),
                    job,
                });
            }
        }
        Ok(())
    }

    fn name_user(&self, name: &str) -> Option<String> {
        if self.uploads.contains(name) {
            return Some("upload".into());
        }
        self.registry
            .active()
            .find(|j| j.backup_name == name)
            .map(|j| j.job_id.clone())
    }

    /// A new archive name must be unused by jobs, uploads and published archives.
    fn check_name_free(&self, name: &str) -> Result<(), EngineError> {
        if let Some(job) = self.name_user(name) {
            return Err(EngineError::NameBusy {
                name: name.into(),
                job,
            });
        }
        if self.backups.contains(name) {
            return Err(EngineError::BackupExists(name.into()));
        }
        Ok(())
    }

    /// Accepts a backup job, or refuses with the rule it breaks. The job is queued.
    pub fn submit_backup(
        &mut self,
        now: u64,
        entropy: [u8; 6],
        index: &str,
        name: &str,
        target: Option<&str>,
    ) -> Result<Job, EngineError> {
        validate_backup_name(name)?;
        self.check_target(target)?;
        let e = self.index(index)?;
        if let Some(job) = &e.active_backup {
            return Err(EngineError::BackupInProgress {
                index: index.into(),
                job: job.clone(),
            });
        }
        if let Some(job) = self.name_user(name) {
            return Err(EngineError::NameBusy {
                name: name.into(),
                job,
            });
        }
        // A target's own listing is the host's to check (another server may share it).
        if target.is_none() && self.backups.contains(name) {
            return Err(EngineError::BackupExists(name.into()));
        }
        let job = self.new_job(now, entropy, JobKind::Backup, index, name, target);
        if let Some(e) = self.indexes.get_mut(index) {
            e.users.insert(job.job_id.clone());
            e.active_backup = Some(job.job_id.clone());
        }
        Ok(job)
    }

    fn new_job(
        &mut self,
        now: u64,
        entropy: [u8; 6],
        kind: JobKind,
        index: &str,
        name: &str,
        target: Option<&str>,
    ) -> Job {
        let mut job = Job::queued(self.registry.new_id(now, entropy), kind, index, name, now);
        job.target = target.map(String::from);
        self.registry.insert(job.clone());
        self.effect(Effect::PersistJobs);
        job
    }

    /// Accepts a restore of archive `backup` into a new index `target`, or refuses.
    pub fn submit_restore(
        &mut self,
        now: u64,
        entropy: [u8; 6],
        backup: &str,
        target: &str,
        from: Option<&str>,
    ) -> Result<Job, EngineError> {
        validate_backup_name(backup)?;
        params::validate_stored_name(target)?;
        self.check_target(from)?;
        // A target's archive was found there by the host; the task verifies it whole.
        if from.is_none() && !self.backups.contains(backup) {
            return Err(EngineError::BackupNotFound(backup.into()));
        }
        self.check_not_broken(target)?;
        if self.indexes.contains_key(target) {
            return Err(EngineError::IndexExists(target.into()));
        }
        if let Some(job) = self.reserved.get(target) {
            return Err(EngineError::IndexBusy {
                index: target.into(),
                job: job.clone(),
            });
        }
        let job = self.new_job(now, entropy, JobKind::Restore, target, backup, from);
        self.reserved.insert(target.into(), job.job_id.clone());
        Ok(job)
    }

    /// queued → running.
    pub fn start(&mut self, job: &str, now: u64) -> Result<(), EngineError> {
        self.registry.start(job, now)?;
        self.effect(Effect::PersistJobs);
        Ok(())
    }

    /// Accepts a backup of `index` as archive `name` (every rule, now) and begins it: the
    /// gate is cut at `now_us`, the cut (generation, log length, live vectors) recorded and
    /// its generation pinned, all in O(1). The host calls [`Engine::release_cut`] right
    /// after, then drives the returned task. `max_bytes_per_sec` paces the task's reads.
    #[allow(clippy::too_many_arguments)]
    pub fn begin_backup(
        &mut self,
        now: u64,
        now_us: u64,
        entropy: [u8; 6],
        index: &str,
        name: &str,
        target: Option<&str>,
        base: Option<(&str, &Manifest)>,
        source: Source,
        max_bytes_per_sec: Option<u64>,
    ) -> Result<BackupTask, EngineError> {
        // An incremental backup's base is checked before anything is accepted: the cut is
        // the index's state now, which the base must precede.
        let base = match base {
            None => None,
            Some((b, m)) => Some(self.incremental_base(index, b, m)?),
        };
        let job = self.submit_backup(now, entropy, index, name, target)?;
        let id = job.job_id.clone();
        self.start(&id, now)?;
        let e = self
            .indexes
            .get_mut(index)
            .ok_or_else(|| EngineError::IndexNotFound(index.into()))?;
        e.gate.cut(&id, now_us);
        let cut = CutPoint {
            generation: e.generation,
            log_len: e.log.log_len,
            vector_count: e.log.live,
        };
        let params = e.params.clone();
        self.cut(&id, cut)?;
        Ok(BackupTask::new(
            id,
            index.into(),
            name.into(),
            params,
            cut,
            now,
            source,
            max_bytes_per_sec,
        )
        .with_target(target.map(String::from))
        .with_base(base.as_ref().map(|b| b.0.clone()), base.and_then(|b| b.1)))
    }

    /// The chain archive `name` restores from, oldest first: follows each manifest's base
    /// back to a full backup. `manifest_of` reads an archive's manifest (`None`: no such
    /// archive, or not one). An archive whose head is no manifest is a chain of itself: the
    /// restore finds out what is wrong with it and says so.
    pub fn chain_of(
        name: &str,
        mut manifest_of: impl FnMut(&str) -> Option<Manifest>,
    ) -> Result<Vec<String>, EngineError> {
        let mut chain = vec![name.to_string()];
        let mut at = name.to_string();
        loop {
            let Some(m) = manifest_of(&at) else {
                if at == name {
                    break;
                }
                return Err(EngineError::BackupNotFound(at));
            };
            let Some(b) = m.base else { break };
            if chain.contains(&b.name) || chain.len() >= MAX_CHAIN {
                return Err(EngineError::BadBase {
                    name: b.name,
                    why: format!("the chain of {name:?} loops or is longer than {MAX_CHAIN}"),
                });
            }
            chain.push(b.name.clone());
            at = b.name;
        }
        chain.reverse();
        Ok(chain)
    }

    /// Archive `name` and every archive whose chain goes through it, `name` first then in
    /// chain order; `bases` maps each archive to the base it continues.
    pub fn dependents(name: &str, bases: &[(String, Option<String>)]) -> Vec<String> {
        let mut out = vec![name.to_string()];
        let mut i = 0;
        while i < out.len() {
            for (n, b) in bases {
                if b.as_deref() == Some(out[i].as_str()) && !out.contains(n) {
                    out.push(n.clone());
                }
            }
            i += 1;
        }
        out
    }

    /// What deleting archive `name` deletes, given each archive's base (`bases`): `name`
    /// alone, or with `chain` every archive whose chain goes through it (in chain order);
    /// without `chain`, an archive others continue is refused (409 naming them).
    pub fn deletion(
        name: &str,
        bases: &[(String, Option<String>)],
        chain: bool,
    ) -> Result<Vec<String>, EngineError> {
        let doomed = Self::dependents(name, bases);
        if doomed.len() > 1 && !chain {
            return Err(EngineError::HasDependents {
                name: name.into(),
                dependents: doomed[1..].to_vec(),
            });
        }
        Ok(doomed)
    }

    /// Checks archive `name` (its manifest `m`) can be the base of an incremental backup of
    /// `index` cut now; returns the reference and where the new archive's log starts when
    /// it continues the base's (no checkpoint written since; `None`: the new checkpoint goes
    /// in).
    fn incremental_base(
        &self,
        index: &str,
        name: &str,
        m: &Manifest,
    ) -> Result<(BaseRef, Option<u64>), EngineError> {
        let e = self.index(index)?;
        let refuse = |why: String| {
            Err(EngineError::BadBase {
                name: name.into(),
                why,
            })
        };
        if m.index_name != index {
            return refuse(format!("it is a backup of index {:?}", m.index_name));
        }
        let (b, g, len) = (m.cut, e.generation, e.log.log_len);
        let log_from = if b.generation == g && b.log_len <= len {
            Some(b.log_len)
        } else if b.generation < g {
            None
        } else {
            return refuse(
                "its cut is not behind the index's state (was the index recreated?)".into(),
            );
        };
        Ok((
            BaseRef {
                name: name.into(),
                cut: b,
            },
            log_from,
        ))
    }

    /// Ends the cut a backup of `index` began at `now_us`: writes go on, and the time they
    /// were held is added to the job.
    pub fn release_cut(&mut self, index: &str, now_us: u64) {
        let held = self
            .indexes
            .get_mut(index)
            .and_then(|e| e.gate.release(now_us));
        if let Some((job, us)) = held {
            let _ = self.record_pause(&job, us);
        }
    }

    /// Accepts a restore of archive `backup` into a new index `target` and begins it.
    pub fn begin_restore(
        &mut self,
        now: u64,
        entropy: [u8; 6],
        chain: Vec<String>,
        target: &str,
        from: Option<&str>,
    ) -> Result<RestoreTask, EngineError> {
        let Some(backup) = chain.last().cloned() else {
            return Err(EngineError::BackupNotFound(String::new()));
        };
        if from.is_none()
            && let Some(missing) = chain.iter().find(|n| !self.backups.contains(n.as_str()))
        {
            return Err(EngineError::BackupNotFound(missing.clone()));
        }
        let job = self.submit_restore(now, entropy, &backup, target, from)?;
        self.start(&job.job_id, now)?;
        Ok(RestoreTask::new(job.job_id, chain, target.into(), now)
            .with_source(from.map(String::from)))
    }

    /// Accepts a rebuild of dense field `field`'s graph of `index` (0: the index's own;
    /// `i + 1`: a collection's further field `i`) with `m` and `ef_con` (Endee's bounds; `None`
    /// keeps the current value), or refuses: see [`Engine::begin_rebuild_fields`].
    pub fn begin_rebuild(
        &mut self,
        now: u64,
        entropy: [u8; 6],
        index: &str,
        field: usize,
        m: Option<usize>,
        ef_con: Option<usize>,
    ) -> Result<RebuildTask, EngineError> {
        let one = FieldRebuild { field, m, ef_con };
        self.begin_rebuild_fields(now, entropy, index, &[one])
    }

    /// Accepts one rebuild job for several dense fields of `index`, rebuilt one after the
    /// other, or refuses it whole: every field must be a dense field of the index, named
    /// once, with `M` / `ef_con` in Endee's bounds; the index must be served and have no
    /// other active rebuild. Backups of the index may run beside it (they copy pinned
    /// generations; the rebuild changes memory until its own checkpoint); deleting the index
    /// waits for it to end or be cancelled. The job starts at once; the host drives the
    /// returned task.
    pub fn begin_rebuild_fields(
        &mut self,
        now: u64,
        entropy: [u8; 6],
        index: &str,
        fields: &[FieldRebuild],
    ) -> Result<RebuildTask, EngineError> {
        let e = self.index(index)?;
        let bad_field = |got: String| -> EngineError {
            ParamError::Invalid {
                field: "field",
                allowed: "the index's dense fields, each at most once".into(),
                got,
            }
            .into()
        };
        if fields.is_empty() {
            return Err(bad_field("no field".into()));
        }
        let mut plan = Vec::with_capacity(fields.len());
        for (i, f) in fields.iter().enumerate() {
            // Also a collection without a vector field asked for field 0: it has no graph.
            if e.params.dense_field_name(f.field).is_none()
                || fields[..i].iter().any(|g| g.field == f.field)
            {
                return Err(bad_field(f.field.to_string()));
            }
            let (cur_m, cur_ef) = match f.field {
                0 => (e.params.m, e.params.ef_construction),
                n => {
                    let x = &e.params.extra_fields()[n - 1];
                    (x.m, x.ef_construction)
                }
            };
            let m = f.m.unwrap_or(cur_m);
            let ef_con = f.ef_con.unwrap_or(cur_ef);
            IndexParams {
                m,
                ef_construction: ef_con,
                ..e.params.clone()
            }
            .validate()?;
            plan.push(RebuildSpec {
                m,
                ef_con,
                previous_m: cur_m,
                previous_ef_con: cur_ef,
                field: f.field,
            });
        }
        if let Some(job) = &e.active_rebuild {
            return Err(EngineError::RebuildInProgress {
                index: index.into(),
                job: job.clone(),
            });
        }
        let total = e.log.live;
        let id = self.registry.new_id(now, entropy);
        let mut job = Job::queued(id.clone(), JobKind::Rebuild, index, "", now);
        job.rebuild = Some(plan[0]);
        if plan.len() > 1 {
            job.rebuild_plan = plan.clone();
        }
        job.bytes_total = total;
        self.registry.insert(job);
        if let Some(e) = self.indexes.get_mut(index) {
            e.users.insert(id.clone());
            e.active_rebuild = Some(id.clone());
        }
        self.start(&id, now)?;
        Ok(RebuildTask::new(id, index.into(), plan))
    }

    /// Records that a rebuild job committed its current field; a job of several fields
    /// moves on to the next one (what its status reports). O(1).
    pub fn rebuild_field_done(&mut self, job: &str) {
        if let Ok(j) = self.registry.get_mut(job) {
            j.rebuild_fields_done = j.rebuild_fields_done.saturating_add(1);
            if let Some(next) = j.rebuild_plan.get(j.rebuild_fields_done as usize) {
                j.rebuild = Some(*next);
            }
        }
    }

    /// The newest rebuild job of `index` (what its rebuild status reports), if any.
    pub fn last_rebuild(&self, index: &str) -> Option<&Job> {
        self.registry
            .list()
            .filter(|j| j.kind == JobKind::Rebuild && j.index_name == index)
            .last()
    }

    /// True when a cancel was asked of a running job: its task stops at its next step.
    pub fn cancel_requested(&self, job: &str) -> bool {
        self.registry.get(job).map(|j| j.status) == Some(JobStatus::Cancelling)
    }

    /// Records a running job's progress (not persisted: progress is for watching).
    pub fn progress(&mut self, job: &str, done: u64, total: u64) {
        let _ = self.registry.progress(job, done, total);
    }

    /// Records a running backup's cut and pins its generation. O(1).
    pub fn cut(&mut self, job: &str, cut: CutPoint) -> Result<(), EngineError> {
        let j = self.registry.get_mut(job)?;
        if j.status != JobStatus::Running || j.kind != JobKind::Backup || j.cut.is_some() {
            return Err(JobError::Transition {
                id: job.into(),
                from: j.status,
                to: JobStatus::Running,
            }
            .into());
        }
        j.cut = Some(cut);
        let index = j.index_name.clone();
        let e = self
            .indexes
            .get_mut(&index)
            .ok_or(EngineError::IndexNotFound(index))?;
        *e.pins.entry(cut.generation).or_default() += 1;
        Ok(())
    }

    /// Adds to the write pause a job caused.
    pub fn record_pause(&mut self, job: &str, micros: u64) -> Result<(), EngineError> {
        self.registry.get_mut(job)?.write_pause_us += micros;
        Ok(())
    }

    fn release(&mut self, job: &Job) -> Deletable {
        let mut out = Deletable::default();
        if job.kind == JobKind::Restore {
            self.reserved.remove(&job.index_name);
            return out;
        }
        if let Some(e) = self.indexes.get_mut(&job.index_name) {
            e.users.remove(&job.job_id);
            if e.active_backup.as_deref() == Some(job.job_id.as_str()) {
                e.active_backup = None;
            }
            if e.active_rebuild.as_deref() == Some(job.job_id.as_str()) {
                e.active_rebuild = None;
            }
            if let Some(c) = job.cut
                && let Some(n) = e.pins.get_mut(&c.generation)
            {
                *n -= 1;
                if *n == 0 {
                    e.pins.remove(&c.generation);
                }
            }
            let free: Vec<u64> = e
                .retired
                .iter()
                .filter(|g| !e.pins.contains_key(g))
                .copied()
                .collect();
            for g in free {
                e.retired.remove(&g);
                out.generations.push((job.index_name.clone(), g));
            }
        }
        out
    }

    /// Ends a job in `status` (completed, failed or cancelled), releasing pins and names.
    /// A completed backup publishes its archive name; a completed restore, its index.
    pub fn finish(&mut self, job: &str, now: u64, outcome: Outcome) -> Result<(), EngineError> {
        let (status, error) = match &outcome {
            Outcome::Backup { .. } | Outcome::Restore { .. } | Outcome::Rebuilt => {
                (JobStatus::Completed, None)
            }
            Outcome::Failed(e) => (JobStatus::Failed, Some(e.clone())),
            Outcome::Cancelled => (JobStatus::Cancelled, Some("cancelled".into())),
        };
        let j = self.registry.finish(job, now, status, error)?;
        match outcome {
            Outcome::Backup { size, sha256 } => {
                j.archive_size = Some(size);
                j.archive_sha256 = Some(sha256);
                j.bytes_done = j.bytes_total.max(j.bytes_done);
            }
            Outcome::Restore {
                params,
                generation,
                log,
            } => {
                let name = j.index_name.clone();
                j.bytes_done = j.bytes_total.max(j.bytes_done);
                self.load_index(&name, params, generation, now, log);
            }
            Outcome::Rebuilt => j.bytes_done = j.bytes_total.max(j.bytes_done),
            _ => {}
        }
        let j = self
            .registry
            .get(job)
            .cloned()
            .ok_or_else(|| JobError::NotFound(job.into()))?;
        if j.kind == JobKind::Backup && j.status == JobStatus::Completed && j.target.is_none() {
            self.backups.insert(j.backup_name.clone());
        }
        let out = self.release(&j);
        self.deletable(out);
        self.effect(Effect::PersistJobs);
        Ok(())
    }

    /// Cancels a job. A queued one ends now; a running one moves to *cancelling* and keeps
    /// its pins until its task stops and reports it (then *cancelled*, or *completed* if it
    /// had already published).
    pub fn cancel(&mut self, job: &str, now: u64) -> Result<(), EngineError> {
        let status = self
            .registry
            .get(job)
            .map(|j| j.status)
            .ok_or_else(|| JobError::NotFound(job.into()))?;
        match status {
            JobStatus::Queued => self.finish(job, now, Outcome::Cancelled),
            JobStatus::Running => {
                self.registry.request_cancel(job)?;
                self.effect(Effect::PersistJobs);
                Ok(())
            }
            JobStatus::Cancelling => Ok(()),
            s => Err(JobError::Finished {
                id: job.into(),
                status: s,
            }
            .into()),
        }
    }

    /// Records a new checkpoint generation, written with `params` (a finished rebuild changes
    /// `M` and `ef_con`; backups cut from now on describe the generation they copy). The old
    /// generation's files go now, or when the last backup pinning them ends.
    pub fn checkpoint_done(
        &mut self,
        index: &str,
        generation: u64,
        params: IndexParams,
    ) -> Result<(), EngineError> {
        let e = self
            .indexes
            .get_mut(index)
            .ok_or_else(|| EngineError::IndexNotFound(index.into()))?;
        let old = e.generation;
        e.generation = generation;
        e.params = params;
        e.log.log_len = 0;
        e.log.log_vectors = 0;
        let mut out = Deletable::default();
        if e.pins.contains_key(&old) {
            e.retired.insert(old);
        } else {
            out.generations.push((index.into(), old));
        }
        self.deletable(out);
        Ok(())
    }

    /// Checks an archive can be deleted now (exists, no job or upload uses the name).
    pub fn delete_backup(&mut self, name: &str) -> Result<(), EngineError> {
        validate_backup_name(name)?;
        if !self.backups.contains(name) {
            return Err(EngineError::BackupNotFound(name.into()));
        }
        if let Some(job) = self.name_user(name) {
            return Err(EngineError::NameBusy {
                name: name.into(),
                job,
            });
        }
        self.backups.remove(name);
        self.effect(Effect::RemoveBackup(name.into()));
        Ok(())
    }

    /// Reserves `name` for an upload and returns the task that validates and publishes it
    /// as the host feeds it bytes; the task ends it with [`Engine::finish_upload`].
    pub fn begin_upload(&mut self, name: &str) -> Result<UploadTask, EngineError> {
        validate_backup_name(name)?;
        self.check_name_free(name)?;
        self.uploads.insert(name.into());
        Ok(UploadTask::new(name.into()))
    }

    /// Ends an upload; `published` adds the archive name.
    pub fn finish_upload(&mut self, name: &str, published: bool) {
        self.uploads.remove(name);
        if published {
            self.backups.insert(name.into());
        }
    }

    /// Records (`Some`) or clears the upload a backup job has open at its target; the jobs
    /// file is written with it, so a crash cannot lose it.
    pub fn set_upload(&mut self, job: &str, upload: Option<String>) -> Result<(), EngineError> {
        self.registry.set_upload(job, upload)?;
        self.effect(Effect::PersistJobs);
        Ok(())
    }

    /// Uploads that ended jobs left open on target `target` (a crash mid-upload, or an abort
    /// the store refused): `(job, archive key, upload id)`, for the host to abort.
    pub fn stale_uploads(&self, target: &str) -> Vec<(String, String, String)> {
        self.registry
            .list()
            .filter(|j| !j.status.is_active() && j.target.as_deref() == Some(target))
            .filter_map(|j| {
                let up = j.upload.clone()?;
                Some((
                    j.job_id.clone(),
                    crate::target::archive_key(&j.backup_name),
                    up,
                ))
            })
            .collect()
    }

    /// After a restart: active jobs become failed "interrupted by restart" (a job whose
    /// cancel was asked becomes cancelled); their partial files are queued for deletion and
    /// the jobs file for writing.
    pub fn recover(&mut self, now: u64) {
        let active: Vec<Job> = self.registry.active().cloned().collect();
        for j in active {
            match j.kind {
                // A backup that renamed its archive but crashed before its record said
                // completed: the job ends failed, so its archive goes too (the name was
                // reserved for it, so the file can be no one else's).
                JobKind::Backup => self.effect(Effect::Remove(vec![
                    paths::backup_tmp(&j.job_id),
                    paths::backup(&j.backup_name),
                ])),
                JobKind::Restore => {
                    self.effect(Effect::RemoveTree(paths::restore_tmp(&j.job_id)));
                    self.effect(Effect::RemoveUnpublished(j.index_name.clone()));
                }
                // A rebuild wrote nothing but (perhaps) its checkpoint, a whole generation
                // like any other: whichever generation the manifest names is the index.
                JobKind::Rebuild => {}
            }
            let outcome = if j.status == JobStatus::Cancelling {
                Outcome::Cancelled
            } else {
                Outcome::Failed(INTERRUPTED.into())
            };
            let _ = self.finish(&j.job_id, now, outcome);
        }
        self.effect(Effect::PersistJobs);
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A backup's archive was published.
    Backup {
        /// Archive bytes.
        size: u64,
        /// Archive SHA-256 (hex).
        sha256: String,
    },
    /// A restore published its index at `generation`.
    Restore {
        /// The restored index's parameters.
        params: IndexParams,
        /// Its first generation.
        generation: u64,
        /// Its log as published.
        log: LogState,
    },
    /// A rebuild's graph serves and is checkpointed.
    Rebuilt,
    /// An error stopped it.
    Failed(String),
    /// Cancelled on request.
    Cancelled,
}
