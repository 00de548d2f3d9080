//! The engine: the database's control plane as one state machine — the catalog of indexes
//! and archives, the per-index write gate, checkpoint generations and their pins, and the job
//! registry. Every rule is decided here, synchronously, at submit time; hosts do the IO.
//!
//! Index *data* ([`crate::Index`]) is held by the host next to this (the native host keeps one
//! lock per index so searches run in parallel); the engine knows each index's durable state.

use crate::jobs::{CutPoint, INTERRUPTED, Job, JobError, JobKind, JobRegistry, JobStatus};
use crate::params::{self, IndexParams, ParamError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// Longest backup name.
pub const MAX_BACKUP_NAME: usize = 200;

/// File layout shared by every host (paths relative to the data directory, `/`-separated).
pub mod paths {
    /// The jobs file.
    pub const JOBS: &str = "jobs.json";
    /// Directory of one index.
    pub fn index_dir(name: &str) -> String {
        format!("indexes/{name}")
    }
    /// An index's manifest: the only index file replaced in place.
    pub fn index_manifest(name: &str) -> String {
        format!("indexes/{name}/manifest.json")
    }
    /// Checkpoint file of a generation.
    pub fn checkpoint(name: &str, generation: u64) -> String {
        format!("indexes/{name}/ckpt-{generation:016}.bin")
    }
    /// Size and SHA-256 of a generation's checkpoint, written with it (optional: a host that
    /// finds none digests the checkpoint).
    pub fn checkpoint_digest(name: &str, generation: u64) -> String {
        format!("indexes/{name}/ckpt-{generation:016}.sha256")
    }
    /// Log file following a generation's checkpoint.
    pub fn log(name: &str, generation: u64) -> String {
        format!("indexes/{name}/log-{generation:016}.bin")
    }
    /// A published archive.
    pub fn backup(name: &str) -> String {
        format!("backups/{name}.tar")
    }
    /// Where a backup job writes before publishing.
    pub fn backup_tmp(job_id: &str) -> String {
        format!("backups/.tmp/{job_id}.tar")
    }
    /// Where an upload is written before validation and publishing.
    pub fn upload_tmp(name: &str) -> String {
        format!("backups/.tmp/upload-{name}.tar")
    }
    /// Where a restore builds its index before publishing.
    pub fn restore_tmp(job_id: &str) -> String {
        format!("indexes/.tmp/{job_id}")
    }
}

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
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(EngineError::InvalidBackupName(
            "Invalid backup name: only alphanumeric, underscores, and hyphens allowed".into(),
        ));
    }
    Ok(())
}

/// The small per-index file naming the current generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexManifest {
    /// Always `cairn-index`.
    pub format: String,
    /// Manifest version (1).
    pub version: u32,
    /// Index name.
    pub name: String,
    /// Parameters.
    pub params: IndexParams,
    /// Current checkpoint generation.
    pub generation: u64,
    /// Creation time (ms).
    pub created_at: u64,
}

impl IndexManifest {
    /// A manifest for generation `generation`.
    pub fn new(name: &str, params: IndexParams, generation: u64, created_at: u64) -> Self {
        Self {
            format: "cairn-index".into(),
            version: 1,
            name: name.into(),
            params,
            generation,
            created_at,
        }
    }
    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
    /// Parses and checks format and version.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        let m: Self = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        if m.format != "cairn-index" || m.version != 1 {
            return Err(format!(
                "unknown index manifest {} v{}",
                m.format, m.version
            ));
        }
        Ok(m)
    }
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
    pins: BTreeMap<u64, u32>,
    retired: BTreeSet<u64>,
    users: BTreeSet<String>,
    active_backup: Option<String>,
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
    uploads: BTreeSet<String>,
    /// Restore targets reserved by active restore jobs: index name → job id.
    reserved: BTreeMap<String, String>,
    /// Indexes whose files did not load: name → reason. The name stays taken.
    broken: BTreeMap<String, String>,
    /// Indexes found at start whose load has not finished. The names are taken.
    loading: BTreeSet<String>,
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
    ) {
        self.loading.remove(name);
        self.indexes.insert(
            name.into(),
            IndexEntry {
                params,
                generation,
                created_at,
                pins: BTreeMap::new(),
                retired: BTreeSet::new(),
                users: BTreeSet::new(),
                active_backup: None,
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
        params::validate_index_name(name)?;
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
        self.load_index(name, params, 1, now);
        Ok(())
    }

    /// Refuses writes to a missing index. Writes are never refused because of a backup.
    pub fn check_write(&self, name: &str) -> Result<(), EngineError> {
        self.index(name).map(|_| ())
    }

    /// Removes an index unless a job uses it; returns its generations to delete. A broken
    /// index is forgotten (the host removes its directory: the operator asked for it).
    pub fn delete_index(&mut self, name: &str) -> Result<Deletable, EngineError> {
        if self.loading.contains(name) {
            return Err(EngineError::IndexLoading(name.into()));
        }
        if self.broken.remove(name).is_some() {
            return Ok(Deletable::default());
        }
        let e = self.index(name)?;
        if let Some(job) = e.users.iter().next() {
            return Err(EngineError::IndexBusy {
                index: name.into(),
                job: job.clone(),
            });
        }
        let mut gens: Vec<u64> = e.retired.iter().copied().collect();
        gens.push(e.generation);
        self.indexes.remove(name);
        Ok(Deletable {
            generations: gens.into_iter().map(|g| (name.to_string(), g)).collect(),
        })
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
    ) -> Result<Job, EngineError> {
        validate_backup_name(name)?;
        let e = self.index(index)?;
        if let Some(job) = &e.active_backup {
            return Err(EngineError::BackupInProgress {
                index: index.into(),
                job: job.clone(),
            });
        }
        self.check_name_free(name)?;
        let job = self.new_job(now, entropy, JobKind::Backup, index, name);
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
    ) -> Job {
        let job = Job {
            job_id: self.registry.new_id(now, entropy),
            kind,
            index_name: index.into(),
            backup_name: name.into(),
            status: JobStatus::Queued,
            bytes_done: 0,
            bytes_total: 0,
            created_at: now,
            started_at: None,
            completed_at: None,
            error: None,
            archive_size: None,
            archive_sha256: None,
            write_pause_us: 0,
            cut: None,
        };
        self.registry.insert(job.clone());
        job
    }

    /// Accepts a restore of archive `backup` into a new index `target`, or refuses.
    pub fn submit_restore(
        &mut self,
        now: u64,
        entropy: [u8; 6],
        backup: &str,
        target: &str,
    ) -> Result<Job, EngineError> {
        validate_backup_name(backup)?;
        params::validate_index_name(target)?;
        if !self.backups.contains(backup) {
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
        let job = self.new_job(now, entropy, JobKind::Restore, target, backup);
        self.reserved.insert(target.into(), job.job_id.clone());
        Ok(job)
    }

    /// queued → running.
    pub fn start(&mut self, job: &str, now: u64) -> Result<(), EngineError> {
        Ok(self.registry.start(job, now)?)
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
    pub fn finish(
        &mut self,
        job: &str,
        now: u64,
        outcome: Outcome,
    ) -> Result<Deletable, EngineError> {
        let (status, error) = match &outcome {
            Outcome::Backup { .. } | Outcome::Restore { .. } => (JobStatus::Completed, None),
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
            Outcome::Restore { params, generation } => {
                let name = j.index_name.clone();
                j.bytes_done = j.bytes_total.max(j.bytes_done);
                self.load_index(&name, params, generation, now);
            }
            _ => {}
        }
        let j = self
            .registry
            .get(job)
            .cloned()
            .ok_or_else(|| JobError::NotFound(job.into()))?;
        if j.kind == JobKind::Backup && j.status == JobStatus::Completed {
            self.backups.insert(j.backup_name.clone());
        }
        let out = self.release(&j);
        Ok(out)
    }

    /// Cancels a queued or running job. The host stops its worker and deletes its temp file.
    pub fn cancel(&mut self, job: &str, now: u64) -> Result<Deletable, EngineError> {
        self.finish(job, now, Outcome::Cancelled)
    }

    /// Records a new checkpoint generation; returns generations that may be deleted now.
    pub fn checkpoint_done(
        &mut self,
        index: &str,
        generation: u64,
    ) -> Result<Deletable, EngineError> {
        let e = self
            .indexes
            .get_mut(index)
            .ok_or_else(|| EngineError::IndexNotFound(index.into()))?;
        let old = e.generation;
        e.generation = generation;
        let mut out = Deletable::default();
        if e.pins.contains_key(&old) {
            e.retired.insert(old);
        } else {
            out.generations.push((index.into(), old));
        }
        Ok(out)
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
        Ok(())
    }

    /// Reserves a name for an upload; `finish_upload` must follow.
    pub fn begin_upload(&mut self, name: &str) -> Result<(), EngineError> {
        validate_backup_name(name)?;
        self.check_name_free(name)?;
        self.uploads.insert(name.into());
        Ok(())
    }

    /// Ends an upload; `published` adds the archive name.
    pub fn finish_upload(&mut self, name: &str, published: bool) {
        self.uploads.remove(name);
        if published {
            self.backups.insert(name.into());
        }
    }

    /// After a restart: active jobs become failed "interrupted by restart". Returns the
    /// partial paths the host must delete.
    pub fn recover(&mut self, now: u64) -> Vec<String> {
        let active: Vec<Job> = self.registry.active().cloned().collect();
        let mut partial = Vec::new();
        for j in active {
            partial.push(match j.kind {
                JobKind::Backup => paths::backup_tmp(&j.job_id),
                JobKind::Restore => paths::restore_tmp(&j.job_id),
            });
            let _ = self.finish(&j.job_id, now, Outcome::Failed(INTERRUPTED.into()));
        }
        partial
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
    },
    /// An error stopped it.
    Failed(String),
    /// Cancelled on request.
    Cancelled,
}
