//! The job registry: backup, restore and rebuild jobs, their states, the jobs file and
//! recovery.
//!
//! Every rule is checked at submit time, synchronously, by [`crate::engine::Engine`]; the
//! registry itself owns ids, transitions, retention and the versioned jobs-file encoding.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// Format name of the jobs file.
pub const JOBS_FORMAT: &str = "cairn-jobs";
/// Current jobs-file version.
pub const JOBS_VERSION: u32 = 1;
/// Finished jobs kept by default.
pub const DEFAULT_RETENTION: usize = 1000;
/// Error text of jobs failed by recovery.
pub const INTERRUPTED: &str = "interrupted by restart";

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Writes an archive of an index.
    Backup,
    /// Builds a new index from an archive.
    Restore,
    /// Rebuilds an index's graph with new `M` / `ef_con`.
    Rebuild,
}

/// What a rebuild job changes: the graph parameters before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildSpec {
    /// `M` asked for.
    pub m: usize,
    /// `ef_con` asked for.
    pub ef_con: usize,
    /// `M` when the job was submitted.
    pub previous_m: usize,
    /// `ef_con` when the job was submitted.
    pub previous_ef_con: usize,
    /// Which dense field: 0 the index's own vectors, `i + 1` a collection's further field `i`.
    #[serde(default)]
    pub field: usize,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Accepted, not started.
    Queued,
    /// Working.
    Running,
    /// Asked to stop; its task still holds what it pinned until it reports it stopped.
    Cancelling,
    /// Done; the archive or index is published.
    Completed,
    /// Stopped by an error; nothing published.
    Failed,
    /// Stopped on request; nothing published.
    Cancelled,
}

impl JobStatus {
    /// Queued, running or cancelling.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Running | Self::Cancelling)
    }
}

/// The point-in-time a backup captures: a checkpoint generation and a log prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutPoint {
    /// Checkpoint generation.
    pub generation: u64,
    /// Bytes of that generation's log included.
    pub log_len: u64,
    /// Live vectors at the cut.
    pub vector_count: u64,
}

/// One job record, as stored in the jobs file and shown by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// `<ms-since-epoch>_<6 chars of [0-9a-z]>`.
    pub job_id: String,
    /// Backup or restore.
    pub kind: JobKind,
    /// Source index (backup) or target index (restore).
    pub index_name: String,
    /// Archive name (empty for a rebuild).
    pub backup_name: String,
    /// Current status.
    pub status: JobStatus,
    /// Bytes processed (a rebuild: vectors placed in the new graph).
    pub bytes_done: u64,
    /// Bytes to process, 0 until known (a rebuild: vectors in the index).
    pub bytes_total: u64,
    /// Submit time (ms since epoch).
    pub created_at: u64,
    /// Start time, once running.
    pub started_at: Option<u64>,
    /// Finish time, only once finished.
    pub completed_at: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Archive size in bytes (completed backups).
    pub archive_size: Option<u64>,
    /// Archive SHA-256, hex (completed backups).
    pub archive_sha256: Option<String>,
    /// How long writes to the index waited because of this job, in microseconds.
    pub write_pause_us: u64,
    /// The cut, once taken.
    pub cut: Option<CutPoint>,
    /// A rebuild's parameters: of the field it is rebuilding now (or rebuilt last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<RebuildSpec>,
    /// Every field a rebuild of several dense fields rebuilds, in order (empty: the one
    /// in `rebuild`). Each field is committed by its own checkpoint before the next starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rebuild_plan: Vec<RebuildSpec>,
    /// Fields of `rebuild_plan` rebuilt and committed so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rebuild_fields_done: u32,
    /// The backup target a backup writes to or a restore reads from (`None`: the data
    /// directory's `backups/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A restore's vectors rebuilt so far and in all (its other measure of progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vectors: Option<(u64, u64)>,
    /// The upload a backup to a target has open at the store (its multipart upload id):
    /// recorded before the first part goes up, cleared once committed or aborted. One a
    /// crash (or a store that was down for the abort) left is aborted when the target is
    /// next opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Job {
    /// A rebuild's fields in all (1 for a rebuild of one field; 0 for other jobs).
    pub fn rebuild_fields_total(&self) -> usize {
        match (&self.rebuild, self.rebuild_plan.len()) {
            (None, _) => 0,
            (Some(_), n) => n.max(1),
        }
    }

    /// A new record, queued: no progress, no cut, no result yet.
    pub fn queued(job_id: String, kind: JobKind, index: &str, backup: &str, now: u64) -> Self {
        Self {
            job_id,
            kind,
            index_name: index.into(),
            backup_name: backup.into(),
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
            rebuild: None,
            rebuild_plan: Vec::new(),
            rebuild_fields_done: 0,
            target: None,
            vectors: None,
            upload: None,
        }
    }
}

/// Registry errors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JobError {
    /// No such job.
    #[error("job {0} not found")]
    NotFound(String),
    /// The job already finished.
    #[error("job {id} already {status:?}")]
    Finished {
        /// Job id.
        id: String,
        /// Its final status.
        status: JobStatus,
    },
    /// The transition is not allowed from the current status.
    #[error("job {id} cannot go from {from:?} to {to:?}")]
    Transition {
        /// Job id.
        id: String,
        /// Current status.
        from: JobStatus,
        /// Wanted status.
        to: JobStatus,
    },
}

/// The jobs file could not be read; the host keeps it aside and reports this.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JobsFileError {
    /// Not JSON or not the expected shape.
    #[error("jobs file unreadable: {0}")]
    Unreadable(String),
    /// Written by another format or a newer version.
    #[error("jobs file has unknown format {format:?} version {version}")]
    UnknownVersion {
        /// Format name found.
        format: String,
        /// Version found.
        version: u32,
    },
}

/// True for ids of the form [`JobRegistry::new_id`] makes: `<digits>_<6 of [0-9a-z]>`.
pub fn valid_job_id(id: &str) -> bool {
    match id.split_once('_') {
        Some((ms, tail)) => {
            !ms.is_empty()
                && ms.len() <= 20
                && ms.bytes().all(|b| b.is_ascii_digit())
                && tail.len() == 6
                && tail.bytes().all(|b| ID_CHARS.contains(&b))
        }
        None => false,
    }
}

#[derive(Serialize, Deserialize)]
struct JobsFile {
    format: String,
    version: u32,
    jobs: Vec<Job>,
}

/// All jobs, by id (ids sort by submit time).
#[derive(Debug, Clone, PartialEq)]
pub struct JobRegistry {
    jobs: BTreeMap<String, Job>,
    retention: usize,
}

impl Default for JobRegistry {
    fn default() -> Self {
        Self::new(DEFAULT_RETENTION)
    }
}

const ID_CHARS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

impl JobRegistry {
    /// An empty registry keeping at most `retention` finished jobs.
    pub fn new(retention: usize) -> Self {
        Self {
            jobs: BTreeMap::new(),
            retention,
        }
    }

    /// A fresh job id from host time and entropy, unique in this registry (see [`valid_job_id`]).
    pub fn new_id(&self, now_ms: u64, entropy: [u8; 6]) -> String {
        let mut bump = 0u8;
        loop {
            let tail: String = entropy
                .iter()
                .map(|b| ID_CHARS[(b.wrapping_add(bump) % 36) as usize] as char)
                .collect();
            let id = format!("{now_ms}_{tail}");
            if !self.jobs.contains_key(&id) {
                return id;
            }
            bump = bump.wrapping_add(1);
        }
    }

    /// Adds a queued job (rules already checked by the engine).
    pub(crate) fn insert(&mut self, job: Job) {
        self.jobs.insert(job.job_id.clone(), job);
        self.prune();
    }

    fn prune(&mut self) {
        let finished: Vec<String> = self
            .jobs
            .values()
            .filter(|j| !j.status.is_active())
            .map(|j| j.job_id.clone())
            .collect();
        if finished.len() > self.retention {
            for id in &finished[..finished.len() - self.retention] {
                self.jobs.remove(id);
            }
        }
    }

    /// One job.
    pub fn get(&self, id: &str) -> Option<&Job> {
        self.jobs.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Result<&mut Job, JobError> {
        self.jobs
            .get_mut(id)
            .ok_or_else(|| JobError::NotFound(id.into()))
    }

    /// Every job, oldest first.
    pub fn list(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// Active jobs.
    pub fn active(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values().filter(|j| j.status.is_active())
    }

    /// queued → running.
    pub fn start(&mut self, id: &str, now: u64) -> Result<(), JobError> {
        let j = self.get_mut(id)?;
        if j.status != JobStatus::Queued {
            return Err(JobError::Transition {
                id: id.into(),
                from: j.status,
                to: JobStatus::Running,
            });
        }
        j.status = JobStatus::Running;
        j.started_at = Some(now);
        Ok(())
    }

    /// running → cancelling.
    pub fn request_cancel(&mut self, id: &str) -> Result<(), JobError> {
        let j = self.get_mut(id)?;
        if j.status != JobStatus::Running {
            return Err(JobError::Transition {
                id: id.into(),
                from: j.status,
                to: JobStatus::Cancelling,
            });
        }
        j.status = JobStatus::Cancelling;
        Ok(())
    }

    /// Progress of a running job (no persistence needed).
    pub fn progress(&mut self, id: &str, done: u64, total: u64) -> Result<(), JobError> {
        let j = self.get_mut(id)?;
        if j.status.is_active() {
            j.bytes_done = done;
            j.bytes_total = total;
        }
        Ok(())
    }

    /// Records how many vectors a running restore has rebuilt, of how many.
    pub fn vectors(&mut self, id: &str, done: u64, total: u64) -> Result<(), JobError> {
        let j = self.get_mut(id)?;
        if j.status.is_active() {
            j.vectors = Some((done, total));
        }
        Ok(())
    }

    /// Records (`Some`) or clears the upload job `id` has open at its target, whatever the
    /// job's state (a failed job's abort may come later).
    pub fn set_upload(&mut self, id: &str, upload: Option<String>) -> Result<(), JobError> {
        self.get_mut(id)?.upload = upload;
        Ok(())
    }

    pub(crate) fn finish(
        &mut self,
        id: &str,
        now: u64,
        to: JobStatus,
        error: Option<String>,
    ) -> Result<&mut Job, JobError> {
        let j = self.get_mut(id)?;
        if !j.status.is_active() {
            return Err(JobError::Finished {
                id: id.into(),
                status: j.status,
            });
        }
        if to == JobStatus::Completed
            && !matches!(j.status, JobStatus::Running | JobStatus::Cancelling)
        {
            return Err(JobError::Transition {
                id: id.into(),
                from: j.status,
                to,
            });
        }
        j.status = to;
        j.completed_at = Some(now);
        j.error = error;
        Ok(j)
    }

    /// The jobs file bytes (pretty JSON, versioned).
    pub fn encode(&self) -> Vec<u8> {
        let f = JobsFile {
            format: JOBS_FORMAT.into(),
            version: JOBS_VERSION,
            jobs: self.jobs.values().cloned().collect(),
        };
        serde_json::to_vec_pretty(&f).unwrap_or_default()
    }

    /// Reads a jobs file. Never returns an empty registry for a file it cannot read.
    pub fn decode(bytes: &[u8], retention: usize) -> Result<Self, JobsFileError> {
        #[derive(Deserialize)]
        struct Probe {
            format: String,
            version: u32,
        }
        let p: Probe =
            serde_json::from_slice(bytes).map_err(|e| JobsFileError::Unreadable(e.to_string()))?;
        if p.format != JOBS_FORMAT || p.version != JOBS_VERSION {
            return Err(JobsFileError::UnknownVersion {
                format: p.format,
                version: p.version,
            });
        }
        let f: JobsFile =
            serde_json::from_slice(bytes).map_err(|e| JobsFileError::Unreadable(e.to_string()))?;
        let mut r = Self::new(retention);
        for j in f.jobs {
            // Ids and names become file paths (temp files, archives, index directories): a
            // tampered file must not name `../` anything.
            let safe_name = |n: &str| crate::params::validate_stored_name(n).is_ok();
            // A rebuild names no archive.
            let safe_backup =
                j.kind == JobKind::Rebuild && j.backup_name.is_empty() || safe_name(&j.backup_name);
            if !valid_job_id(&j.job_id) || !safe_name(&j.index_name) || !safe_backup {
                return Err(JobsFileError::Unreadable(format!(
                    "job {:?}: invalid id or name",
                    j.job_id
                )));
            }
            r.jobs.insert(j.job_id.clone(), j);
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, status: JobStatus) -> Job {
        let mut j = Job::queued(id.into(), JobKind::Backup, "i", &format!("b{id}"), 1);
        j.status = status;
        j
    }

    #[test]
    fn ids_have_the_documented_shape_and_never_collide() {
        let mut r = JobRegistry::default();
        let id = r.new_id(1739512345678, [0, 35, 36, 200, 7, 255]);
        assert_eq!(id.len(), "1739512345678_".len() + 6);
        let (ms, tail) = id.split_once('_').unwrap();
        assert_eq!(ms, "1739512345678");
        assert!(
            tail.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        );
        r.insert(job(&id, JobStatus::Queued));
        let again = r.new_id(1739512345678, [0, 35, 36, 200, 7, 255]);
        assert_ne!(again, id);
    }

    #[test]
    fn transitions() {
        let mut r = JobRegistry::default();
        r.insert(job("1_a", JobStatus::Queued));
        assert!(matches!(
            r.finish("1_a", 5, JobStatus::Completed, None),
            Err(JobError::Transition { .. })
        ));
        r.start("1_a", 2).unwrap();
        assert!(r.start("1_a", 2).is_err());
        r.progress("1_a", 10, 20).unwrap();
        assert_eq!(r.get("1_a").unwrap().completed_at, None);
        r.finish("1_a", 9, JobStatus::Completed, None).unwrap();
        let j = r.get("1_a").unwrap();
        assert_eq!(
            (j.status, j.started_at, j.completed_at),
            (JobStatus::Completed, Some(2), Some(9))
        );
        assert!(matches!(
            r.finish("1_a", 9, JobStatus::Failed, None),
            Err(JobError::Finished { .. })
        ));
        assert!(matches!(r.start("nope", 1), Err(JobError::NotFound(_))));
    }

    #[test]
    fn retention_keeps_the_newest_finished_and_every_active() {
        let mut r = JobRegistry::new(3);
        for i in 0..10 {
            r.insert(job(&format!("{i:02}_x"), JobStatus::Completed));
        }
        r.insert(job("99_active", JobStatus::Queued));
        let ids: Vec<&str> = r.list().map(|j| j.job_id.as_str()).collect();
        assert_eq!(ids, vec!["07_x", "08_x", "09_x", "99_active"]);
    }

    #[test]
    fn jobs_file_round_trips_and_refuses_garbage() {
        let mut r = JobRegistry::default();
        r.insert(job("1_abc123", JobStatus::Running));
        let bytes = r.encode();
        assert_eq!(JobRegistry::decode(&bytes, DEFAULT_RETENTION).unwrap(), r);
        // Ids and names become paths: a tampered file naming `../` anything is refused.
        let text = String::from_utf8(bytes.clone()).unwrap();
        for (from, to) in [
            ("\"job_id\": \"1_abc123\"", "\"job_id\": \"../../etc\""),
            ("\"b1_abc123\"", "\"../x\""),
            ("\"i\"", "\"a/b\""),
        ] {
            let bad = text.replace(from, to);
            assert_ne!(bad, text, "{from}");
            assert!(matches!(
                JobRegistry::decode(bad.as_bytes(), 5),
                Err(JobsFileError::Unreadable(_))
            ));
        }
        assert!(matches!(
            JobRegistry::decode(b"{not json", 5),
            Err(JobsFileError::Unreadable(_))
        ));
        assert!(matches!(
            JobRegistry::decode(&bytes[..bytes.len() / 2], 5),
            Err(JobsFileError::Unreadable(_))
        ));
        let v2 = String::from_utf8(bytes)
            .unwrap()
            .replace("\"version\": 1", "\"version\": 2");
        assert!(matches!(
            JobRegistry::decode(v2.as_bytes(), 5),
            Err(JobsFileError::UnknownVersion { version: 2, .. })
        ));
        assert!(matches!(
            JobRegistry::decode(b"[]", 5),
            Err(JobsFileError::Unreadable(_))
        ));
    }
}
