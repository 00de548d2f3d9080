//! The backup protocol as a step machine. [`crate::Engine::begin_backup`] checks every rule,
//! records the cut and pins its generation; this task then streams the pinned checkpoint and
//! the log prefix into `backups/.tmp/<job>.tar` one chunk per step, syncs it, publishes it
//! with a rename and concludes the job. Writes never wait for any of it.
//!
//! ```text
//! Size ─▶ Record ─▶ [HashCheckpoint] ─▶ HashLog ─▶ Create ─▶ Copy checkpoint ─▶ Copy log
//!   ─▶ Trailer ─▶ Sync ─▶ Rename ─▶ SyncDir ─▶ conclude (completed)
//! any error ─▶ remove the temp file ─▶ conclude (failed)
//! cancel before the rename ─▶ cancelling: remove the temp file ─▶ conclude (cancelled)
//! ```
//! The manifest goes first in the archive and lists every entry's SHA-256, so the log prefix
//! is read twice (once to digest, once to copy) and the checkpoint once when its digest record
//! (`ckpt-*.sha256`, written with it) is usable; every byte copied is checked against the
//! manifest as it streams.

use crate::archive::{
    ArchiveEncoder, BaseRef, CHECKPOINT_PATH, CheckpointDigest, FORMAT, LOG_PATH, Manifest,
    ManifestEntry, Source, VERSION,
};
use crate::control::engine::{Engine, Outcome};
use crate::control::task::{Done, Io, ObjectOp, Poll, Task};
use crate::engine::paths;
use crate::params::IndexParams;
use crate::registry::CutPoint;
use crate::target::{self, TargetRecord};
use sha2::{Digest, Sha256};
use std::io::{self, Read};

/// Bytes per read step.
pub const CHUNK: usize = 1 << 20;
/// Bytes copied between engine turns (progress and cancel checks).
const ENGINE_EVERY: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    SizeCheckpoint,
    ReadRecord,
    HashCheckpoint {
        at: u64,
    },
    HashLog {
        at: u64,
    },
    Create,
    Copy {
        entry: usize,
        at: u64,
    },
    Write,
    Sync,
    Rename,
    SyncDir,
    /// Undoing what this backup wrote (the temp file, a published archive, an upload to
    /// a target) before concluding, last first.
    Cleanup {
        ios: Vec<Io>,
    },
    Conclude,
    Done,
}

/// A running backup (see the module doc).
pub struct BackupTask {
    job: String,
    index: String,
    name: String,
    params: IndexParams,
    cut: CutPoint,
    created_at: u64,
    source: Source,
    rate: Option<u64>,
    phase: Phase,
    /// Where `Phase::Write` goes next.
    after_write: Box<Phase>,
    ck_size: u64,
    ck_digest: Option<(u64, String)>,
    hasher: Sha256,
    encoder: Option<ArchiveEncoder>,
    out: Vec<u8>,
    copied: u64,
    total: u64,
    since_engine: u64,
    started_ms: Option<u64>,
    renamed: bool,
    /// A target's archive object was committed (cleanup deletes it instead of aborting).
    committed: bool,
    /// What the job record is to say of the upload open at the target, at the next engine
    /// turn: its id once begun, `None` once committed or aborted.
    upload_news: Option<Option<String>>,
    /// Where the archive goes: `None` the data directory's `backups/`, else a target.
    target: Option<String>,
    /// An incremental backup's base.
    base: Option<BaseRef>,
    /// Where the log entry starts in the cut's log (see [`Manifest::log_from`]).
    log_from: u64,
    cancel: bool,
    outcome: Option<Outcome>,
    /// The archive's size and SHA-256 once written.
    result: Option<(u64, String)>,
}

impl BackupTask {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        job: String,
        index: String,
        name: String,
        params: IndexParams,
        cut: CutPoint,
        created_at: u64,
        source: Source,
        rate: Option<u64>,
    ) -> Self {
        Self {
            job,
            index,
            name,
            params,
            cut,
            created_at,
            source,
            rate: rate.filter(|r| *r > 0),
            phase: Phase::SizeCheckpoint,
            after_write: Box::new(Phase::Done),
            ck_size: 0,
            ck_digest: None,
            hasher: Sha256::new(),
            encoder: None,
            out: Vec::new(),
            copied: 0,
            total: 0,
            since_engine: 0,
            started_ms: None,
            renamed: false,
            committed: false,
            upload_news: None,
            target: None,
            base: None,
            log_from: 0,
            cancel: false,
            outcome: None,
            result: None,
        }
    }

    /// Sends the archive to backup target `target` instead of `backups/`.
    pub(crate) fn with_target(mut self, target: Option<String>) -> Self {
        self.target = target;
        self
    }

    /// Makes this an incremental backup of `base`. `continues` `Some(at)`: the cut shares
    /// the base's generation, and only the log from the base's cut (`at`) on is archived,
    /// with an empty checkpoint entry; `None`: a checkpoint was written since, and it goes
    /// in whole with its log.
    pub(crate) fn with_base(mut self, base: Option<BaseRef>, continues: Option<u64>) -> Self {
        self.base = base;
        if let Some(at) = continues {
            self.log_from = at;
            self.ck_digest = Some((0, hex::encode(Sha256::digest(b""))));
            self.phase = Phase::HashLog { at };
        }
        self
    }

    /// The job id.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The index backed up.
    pub fn index(&self) -> &str {
        &self.index
    }

    /// The cut this backup captures.
    pub fn cut(&self) -> CutPoint {
        self.cut
    }

    fn tmp(&self) -> String {
        paths::backup_tmp(&self.job)
    }

    fn ck_path(&self) -> String {
        paths::checkpoint(&self.index, self.cut.generation)
    }

    fn log_path(&self) -> String {
        paths::log(&self.index, self.cut.generation)
    }

    /// Stops with `outcome` after removing what this backup wrote.
    fn stop(&mut self, outcome: Outcome) {
        // Once concluding, the outcome is the engine's: nothing may restart the cleanup.
        if self.outcome.is_some() || matches!(self.phase, Phase::Conclude | Phase::Done) {
            return;
        }
        let ios = match &self.target {
            None => {
                let mut ios = vec![Io::Remove { path: self.tmp() }];
                if self.renamed {
                    ios.push(Io::Remove {
                        path: paths::backup(&self.name),
                    });
                }
                ios
            }
            Some(t) => {
                let key = target::archive_key(&self.name);
                let mut ops = vec![if self.committed {
                    ObjectOp::Delete(key)
                } else {
                    ObjectOp::Abort(key)
                }];
                if self.renamed {
                    ops.push(ObjectOp::Delete(target::record_key(&self.name)));
                }
                ops.into_iter()
                    .map(|op| Io::Object {
                        target: t.clone(),
                        op,
                    })
                    .collect()
            }
        };
        self.outcome = Some(outcome);
        self.phase = Phase::Cleanup { ios };
    }

    fn fail(&mut self, e: impl std::fmt::Display) {
        self.stop(Outcome::Failed(e.to_string()));
    }

    fn manifest(&mut self) -> Manifest {
        let (ck_size, ck_sha) = self.ck_digest.clone().unwrap_or_default();
        let log_sha = hex::encode(std::mem::take(&mut self.hasher).finalize());
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            index_name: self.index.clone(),
            params: self.params.clone(),
            vector_count: self.cut.vector_count,
            created_at: self.created_at,
            source: self.source.clone(),
            cut: self.cut,
            entries: vec![
                ManifestEntry {
                    path: CHECKPOINT_PATH.into(),
                    size: ck_size,
                    sha256: ck_sha,
                },
                ManifestEntry {
                    path: LOG_PATH.into(),
                    size: self.cut.log_len - self.log_from,
                    sha256: log_sha,
                },
            ],
            base: self.base.clone(),
            log_from: self.log_from,
        }
    }

    /// The entry `i`'s file and size.
    fn entry(&self, i: usize) -> (String, u64) {
        if i == 0 {
            (self.ck_path(), self.ck_size)
        } else {
            (self.log_path(), self.cut.log_len)
        }
    }

    /// Queues the encoder's output for appending, then continues at `next`.
    fn write_then(&mut self, next: Phase) {
        if self.out.is_empty() {
            self.phase = next;
        } else {
            *self.after_write = next;
            self.phase = Phase::Write;
        }
    }

    fn read(path: String, at: u64, end: u64) -> Poll {
        Poll::Io(Io::Read {
            path,
            at,
            len: (end - at).min(CHUNK as u64) as usize,
        })
    }

    fn bytes(result: io::Result<Done>) -> io::Result<Vec<u8>> {
        match result? {
            Done::Bytes(b) => Ok(b),
            other => Err(io::Error::other(format!("expected bytes, got {other:?}"))),
        }
    }
}

impl Task for BackupTask {
    fn poll(&mut self, now_ms: u64) -> Poll {
        // A cancel is honoured until the archive is renamed into place; after that the
        // backup completes (it is already published).
        if self.cancel && !self.renamed && self.outcome.is_none() {
            self.stop(Outcome::Cancelled);
        }
        let started = *self.started_ms.get_or_insert(now_ms);
        let reading = matches!(
            self.phase,
            Phase::HashCheckpoint { .. } | Phase::HashLog { .. } | Phase::Copy { .. }
        );
        // An upload's id goes into the job record before anything else is done.
        if (reading && self.since_engine >= ENGINE_EVERY) || self.upload_news.is_some() {
            return Poll::Engine;
        }
        match &self.phase {
            Phase::SizeCheckpoint => Poll::Io(Io::Size {
                path: self.ck_path(),
            }),
            Phase::ReadRecord => Poll::Io(Io::Read {
                path: paths::checkpoint_digest(&self.index, self.cut.generation),
                at: 0,
                len: 4096,
            }),
            Phase::HashCheckpoint { at } => Self::read(self.ck_path(), *at, self.ck_size),
            Phase::HashLog { at } => Self::read(self.log_path(), *at, self.cut.log_len),
            Phase::Create => self.archive_io(ObjectOp::Begin, Io::Create { path: self.tmp() }),
            Phase::Copy { entry, at } => {
                if let Some(rate) = self.rate {
                    // Paced: no further than `rate` bytes a second since the start.
                    let allowed = rate.saturating_mul(now_ms.saturating_sub(started)) / 1000;
                    if self.copied > allowed {
                        let until = started + self.copied.saturating_mul(1000) / rate;
                        return Poll::Wait { until_ms: until };
                    }
                }
                let (path, end) = self.entry(*entry);
                Self::read(path, *at, end)
            }
            Phase::Write => {
                let bytes = std::mem::take(&mut self.out);
                Poll::Io(match &self.target {
                    None => Io::Append {
                        path: self.tmp(),
                        bytes,
                    },
                    Some(t) => Io::Object {
                        target: t.clone(),
                        op: ObjectOp::Append {
                            key: target::archive_key(&self.name),
                            bytes,
                        },
                    },
                })
            }
            // A target's archive is committed (made visible and durable) where a local one
            // is synced, and its record is put where a local one is renamed into place.
            Phase::Sync => self.archive_io(ObjectOp::Commit, Io::Sync { path: self.tmp() }),
            Phase::Rename => match &self.target {
                None => Poll::Io(Io::Rename {
                    from: self.tmp(),
                    to: paths::backup(&self.name),
                }),
                Some(t) => Poll::Io(Io::Object {
                    target: t.clone(),
                    op: ObjectOp::Put {
                        key: target::record_key(&self.name),
                        bytes: self.record().encode(),
                    },
                }),
            },
            Phase::SyncDir if self.target.is_some() => {
                self.phase = Phase::Conclude;
                Poll::Engine
            }
            Phase::SyncDir => Poll::Io(Io::SyncDir {
                dir: "backups".into(),
            }),
            Phase::Cleanup { ios } => match ios.last() {
                Some(io) => Poll::Io(io.clone()),
                None => {
                    self.phase = Phase::Conclude;
                    Poll::Engine
                }
            },
            Phase::Conclude => Poll::Engine,
            Phase::Done => Poll::Done,
        }
    }

    fn handle(&mut self, result: io::Result<Done>) {
        let phase = self.phase.clone();
        match phase {
            Phase::SizeCheckpoint => match result {
                Ok(Done::Size(Some(n))) => {
                    self.ck_size = n;
                    self.phase = Phase::ReadRecord;
                }
                Ok(_) => self.fail("pinned checkpoint missing"),
                Err(e) => self.fail(format!("checkpoint: {e}")),
            },
            Phase::ReadRecord => {
                // The record is optional (older data directories have none).
                let record = Self::bytes(result).ok();
                let ck: CheckpointDigest<()> =
                    CheckpointDigest::from_record(record.as_deref(), self.ck_size, ());
                match ck {
                    CheckpointDigest::Recorded(n, sha) => {
                        self.ck_digest = Some((n, sha));
                        self.phase = Phase::HashLog { at: self.log_from };
                    }
                    CheckpointDigest::Read(()) => self.phase = Phase::HashCheckpoint { at: 0 },
                }
            }
            Phase::HashCheckpoint { at } => match Self::bytes(result) {
                Ok(b) if b.is_empty() => self.fail("checkpoint shorter than its size"),
                Ok(b) => {
                    self.hasher.update(&b);
                    self.since_engine += b.len() as u64;
                    let at = at + b.len() as u64;
                    if at >= self.ck_size {
                        let sha = hex::encode(std::mem::take(&mut self.hasher).finalize());
                        self.ck_digest = Some((self.ck_size, sha));
                        self.phase = Phase::HashLog { at: self.log_from };
                    } else {
                        self.phase = Phase::HashCheckpoint { at };
                    }
                }
                Err(e) => self.fail(format!("checkpoint: {e}")),
            },
            Phase::HashLog { at } => {
                let r = if at >= self.cut.log_len {
                    Ok(Vec::new())
                } else {
                    Self::bytes(result)
                };
                match r {
                    Ok(b) if b.is_empty() && at < self.cut.log_len => self.fail(format!(
                        "log shorter than its cut ({at} < {})",
                        self.cut.log_len
                    )),
                    Ok(b) => {
                        self.hasher.update(&b);
                        self.since_engine += b.len() as u64;
                        let at = at + b.len() as u64;
                        self.phase = if at >= self.cut.log_len {
                            Phase::Create
                        } else {
                            Phase::HashLog { at }
                        };
                    }
                    Err(e) => self.fail(format!("log: {e}")),
                }
            }
            Phase::Create => match result {
                Ok(done) => {
                    if let Done::Upload(Some(id)) = done {
                        // Recorded (the jobs file written) before the first part goes up.
                        self.upload_news = Some(Some(id));
                    }
                    let manifest = self.manifest();
                    self.total = manifest.data_bytes();
                    match ArchiveEncoder::new(manifest, &mut self.out) {
                        Ok(enc) => {
                            self.encoder = Some(enc);
                            self.open_entry(0);
                        }
                        Err(e) => self.fail(e),
                    }
                }
                Err(e) => self.fail(e),
            },
            Phase::Copy { entry, at } => match Self::bytes(result) {
                Ok(b) => {
                    let (_, end) = self.entry(entry);
                    if b.is_empty() && at < end {
                        return self.fail("a pinned file is shorter than its cut");
                    }
                    let Some(enc) = self.encoder.as_mut() else {
                        return self.fail("no archive open");
                    };
                    if let Err(e) = enc.feed(&b, &mut self.out) {
                        return self.fail(e);
                    }
                    self.copied += b.len() as u64;
                    self.since_engine += b.len() as u64;
                    let at = at + b.len() as u64;
                    if at < end {
                        self.write_then(Phase::Copy { entry, at });
                    } else if let Err(e) = enc.end_entry(&mut self.out) {
                        self.fail(e);
                    } else {
                        self.open_entry(entry + 1);
                    }
                }
                Err(e) => self.fail(e),
            },
            Phase::Write => match result {
                Ok(_) => self.phase = (*self.after_write).clone(),
                Err(e) => self.fail(e),
            },
            Phase::Sync => match result {
                Ok(_) => {
                    self.committed = self.target.is_some();
                    if self.committed {
                        self.upload_news = Some(None);
                    }
                    self.phase = Phase::Rename;
                }
                Err(e) => self.fail(e),
            },
            Phase::Rename => match result {
                Ok(_) => {
                    self.renamed = true;
                    self.phase = Phase::SyncDir;
                }
                Err(e) => self.fail(e),
            },
            Phase::SyncDir => match result {
                Ok(_) => self.phase = Phase::Conclude,
                // Not durable: the rename may vanish at a crash. Unpublish and fail.
                Err(e) => self.fail(e),
            },
            Phase::Cleanup { mut ios } => {
                // Cleanup is best effort: a leftover temp file goes at the next start, an
                // upload left open on a target when the target is next opened (the job
                // record keeps its id).
                if let Some(Io::Object {
                    op: ObjectOp::Abort(_),
                    ..
                }) = ios.pop()
                    && result.is_ok()
                {
                    self.upload_news = Some(None);
                }
                self.phase = Phase::Cleanup { ios };
            }
            Phase::Conclude | Phase::Done => {}
        }
    }

    fn decode(&mut self, _reader: &mut dyn Read) {}

    fn engine(&mut self, engine: &mut Engine, now_ms: u64) {
        self.since_engine = 0;
        if engine.cancel_requested(&self.job) {
            self.cancel = true;
        }
        if let Some(news) = self.upload_news.take() {
            let _ = engine.set_upload(&self.job, news);
        }
        engine.progress(&self.job, self.copied, self.total);
        if self.phase == Phase::Conclude {
            let outcome = self.outcome.take().unwrap_or_else(|| {
                let (size, sha256) = self.result.take().unwrap_or_default();
                Outcome::Backup { size, sha256 }
            });
            let _ = engine.finish(&self.job, now_ms, outcome);
            self.phase = Phase::Done;
        }
    }
}

impl BackupTask {
    /// The archive's IO: `object(key)` on a target, else `local`.
    fn archive_io(&self, object: impl FnOnce(String) -> ObjectOp, local: Io) -> Poll {
        Poll::Io(match &self.target {
            None => local,
            Some(t) => Io::Object {
                target: t.clone(),
                op: object(target::archive_key(&self.name)),
            },
        })
    }

    /// What a target records of this archive once it is committed.
    fn record(&self) -> TargetRecord {
        let (size, sha256) = self.result.clone().unwrap_or_default();
        TargetRecord {
            name: self.name.clone(),
            index_name: self.index.clone(),
            size,
            sha256,
            created_at: self.created_at,
            vector_count: self.cut.vector_count,
            cut: self.cut,
            base: self.base.as_ref().map(|b| b.name.clone()),
        }
    }

    /// Opens archive entry `i`, or ends the archive after the last one.
    fn open_entry(&mut self, i: usize) {
        let Some(enc) = self.encoder.as_mut() else {
            return self.fail("no archive open");
        };
        if i < 2 {
            match enc.begin_entry(&mut self.out) {
                Ok(0) => match enc.end_entry(&mut self.out) {
                    Ok(()) => self.open_entry(i + 1),
                    Err(e) => self.fail(e),
                },
                Ok(_) => {
                    let at = if i == 1 { self.log_from } else { 0 };
                    self.write_then(Phase::Copy { entry: i, at });
                }
                Err(e) => self.fail(e),
            }
            return;
        }
        let Some(enc) = self.encoder.take() else {
            return self.fail("no archive open");
        };
        match enc.finish(&mut self.out) {
            Ok(r) => {
                self.result = Some(r);
                self.write_then(Phase::Sync);
            }
            Err(e) => self.fail(e),
        }
    }
}
