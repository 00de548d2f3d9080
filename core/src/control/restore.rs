//! The restore protocol as a step machine: archive `backups/<name>.tar` becomes a new index
//! `<target>`, validated whole before anything is published.
//!
//! ```text
//! Size ─▶ Scan (tar structure, manifest, every digest; chunk by chunk)
//!   ─▶ Decode checkpoint ─▶ Decode log (the index rebuilds with every check; params and count
//!      match the manifest)
//!   ─▶ Stage generation 1 under indexes/.tmp/<job>/ (checkpoint and log copied from the
//!      archive as they are, digest record, manifest; each synced)
//!   ─▶ Publish: rename checkpoint, digest, log, then the manifest (the commit point) into
//!      indexes/<target>/, sync the directories ─▶ conclude (completed; the host serves the
//!      index the task built)
//! any error, or cancel before the first rename ─▶ remove what was staged (and published)
//!   ─▶ conclude (failed / cancelled)
//! ```
//! The archived checkpoint is published as it is (it was verified against its digest and
//! decoded), so a restore never re-encodes an index; the archived log replays at the next
//! start, or is folded in by the next checkpoint.

use crate::archive::{
    ArchiveDecoder, ArchiveLayout, CHECKPOINT_PATH, LOG_PATH, NullSink, decode_archived,
    encode_digest,
};
use crate::control::engine::{Engine, IndexManifest, LogState, Outcome};
use crate::control::task::{Done, Io, ObjectOp, Poll, Task};
use crate::engine::paths;
use crate::index::Index;
use crate::record::LogScan;
use crate::target;
use std::io::{self, Read};

/// Bytes per read step.
const CHUNK: usize = 1 << 20;
/// Bytes per read from a backup target (each a request: fewer, larger ones).
const FETCH_CHUNK: usize = 8 << 20;
/// Bytes between engine turns.
const ENGINE_EVERY: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// From a target: the archive's size there, then a local copy made chunk by chunk.
    FetchSize,
    FetchCreate,
    FetchRead {
        at: u64,
    },
    FetchWrite {
        at: u64,
    },
    Size,
    Scan {
        at: u64,
    },
    DecodeCheckpoint,
    DecodeLog,
    /// Staging file `file` (0 checkpoint, 1 digest, 2 log, 3 manifest): create.
    Create {
        file: usize,
    },
    /// Copy from the archive into staged file `file`.
    CopyRead {
        file: usize,
        at: u64,
    },
    CopyWrite {
        file: usize,
        at: u64,
    },
    /// Write a small staged file whole.
    WriteSmall {
        file: usize,
    },
    Sync {
        file: usize,
    },
    Publish {
        file: usize,
    },
    SyncTarget,
    SyncIndexes,
    RemoveStage,
    RemoveFetched,
    Cleanup {
        ios: Vec<Io>,
    },
    Conclude,
    Done,
}

/// A running restore (see the module doc).
pub struct RestoreTask {
    job: String,
    backup: String,
    target: String,
    created_at: u64,
    phase: Phase,
    archive_size: u64,
    decoder: Option<ArchiveDecoder>,
    layout: Option<ArchiveLayout>,
    index: Option<Index>,
    scan: Option<LogScan>,
    pending: Vec<u8>,
    done_bytes: u64,
    since_engine: u64,
    published: usize,
    cancel: bool,
    outcome: Option<Outcome>,
    /// The backup target the archive is fetched from (`None`: `backups/`).
    from: Option<String>,
    /// The archive's size on the target.
    fetch_size: u64,
}

impl RestoreTask {
    pub(crate) fn new(job: String, backup: String, target: String, created_at: u64) -> Self {
        Self {
            job,
            backup,
            target,
            created_at,
            phase: Phase::Size,
            archive_size: 0,
            decoder: Some(ArchiveDecoder::new()),
            layout: None,
            index: None,
            scan: None,
            pending: Vec::new(),
            done_bytes: 0,
            since_engine: 0,
            published: 0,
            cancel: false,
            outcome: None,
            from: None,
            fetch_size: 0,
        }
    }

    /// Restores from backup target `from`: the archive is first copied to `tmp/` (bounded
    /// memory; every byte then verified as for a local archive) and removed at the end.
    pub(crate) fn with_source(mut self, from: Option<String>) -> Self {
        if from.is_some() {
            self.phase = Phase::FetchSize;
        }
        self.from = from;
        self
    }

    fn object(&self, op: ObjectOp) -> Poll {
        Poll::Io(Io::Object {
            target: self.from.clone().unwrap_or_default(),
            op,
        })
    }

    /// The job id.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The index being restored into.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The restored index, once the task is done and completed (the host serves it).
    pub fn take_index(&mut self) -> Option<Index> {
        if self.phase == Phase::Done {
            self.index.take()
        } else {
            None
        }
    }

    fn archive(&self) -> String {
        match self.from {
            None => paths::backup(&self.backup),
            Some(_) => paths::fetch_tmp(&self.job),
        }
    }

    fn stage(&self) -> String {
        paths::restore_tmp(&self.job)
    }

    /// Staged file `i` (in publish order: the manifest last) and where it is published.
    fn file(&self, i: usize) -> (String, String) {
        let t = &self.target;
        let final_path = match i {
            0 => paths::checkpoint(t, 1),
            1 => paths::checkpoint_digest(t, 1),
            2 => paths::log(t, 1),
            _ => paths::index_manifest(t),
        };
        let name = final_path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        (format!("{}/{name}", self.stage()), final_path)
    }

    /// The archive range copied into staged file `i` (checkpoint or log).
    fn range(&self, i: usize) -> (u64, u64) {
        let path = if i == 0 { CHECKPOINT_PATH } else { LOG_PATH };
        self.layout
            .as_ref()
            .and_then(|l| l.range(path))
            .map_or((0, 0), |r| (r.offset, r.size))
    }

    fn small_file(&self, i: usize) -> Vec<u8> {
        let Some(layout) = &self.layout else {
            return Vec::new();
        };
        let m = &layout.manifest;
        if i == 1 {
            let ck = &m.entries[0];
            encode_digest(&(ck.size, ck.sha256.clone())).into_bytes()
        } else {
            IndexManifest::new(&self.target, m.params.clone(), 1, self.created_at).encode()
        }
    }

    fn stop(&mut self, outcome: Outcome) {
        // Once concluding, the outcome is the engine's: nothing may restart the cleanup.
        if self.outcome.is_some() || matches!(self.phase, Phase::Conclude | Phase::Done) {
            return;
        }
        let mut ios = vec![Io::RemoveTree { dir: self.stage() }];
        if self.from.is_some() {
            ios.push(Io::Remove {
                path: self.archive(),
            });
        }
        if self.published > 0 {
            ios.push(Io::Remove {
                path: paths::index_manifest(&self.target),
            });
            ios.push(Io::RemoveTree {
                dir: paths::index_dir(&self.target),
            });
        }
        // Popped from the end: the manifest goes before the rest of the published files.
        ios.reverse();
        self.index = None;
        self.outcome = Some(outcome);
        self.phase = Phase::Cleanup { ios };
    }

    fn fail(&mut self, e: impl std::fmt::Display) {
        self.stop(Outcome::Failed(e.to_string()));
    }

    fn total(&self) -> u64 {
        let data = self.layout.as_ref().map_or(0, |l| l.manifest.data_bytes());
        self.fetch_size + self.archive_size + data
    }

    fn after_file(&mut self, file: usize) {
        self.phase = if file < 3 {
            Phase::Create { file: file + 1 }
        } else {
            Phase::Publish { file: 0 }
        };
    }
}

impl Task for RestoreTask {
    fn poll(&mut self, _now_ms: u64) -> Poll {
        if self.cancel && self.published == 0 && self.outcome.is_none() {
            self.stop(Outcome::Cancelled);
        }
        let reading = matches!(
            self.phase,
            Phase::Scan { .. } | Phase::CopyRead { .. } | Phase::FetchRead { .. }
        );
        if reading && self.since_engine >= ENGINE_EVERY {
            return Poll::Engine;
        }
        match &self.phase {
            Phase::FetchSize => self.object(ObjectOp::Size(target::archive_key(&self.backup))),
            Phase::FetchCreate => Poll::Io(Io::Create {
                path: self.archive(),
            }),
            Phase::FetchRead { at } => self.object(ObjectOp::Read {
                key: target::archive_key(&self.backup),
                at: *at,
                len: (self.fetch_size - at).min(FETCH_CHUNK as u64) as usize,
            }),
            Phase::FetchWrite { .. } => Poll::Io(Io::Append {
                path: self.archive(),
                bytes: std::mem::take(&mut self.pending),
            }),
            Phase::Size => Poll::Io(Io::Size {
                path: self.archive(),
            }),
            Phase::Scan { at } => Poll::Io(Io::Read {
                path: self.archive(),
                at: *at,
                len: (self.archive_size - at).min(CHUNK as u64) as usize,
            }),
            Phase::DecodeCheckpoint => {
                let (at, len) = self.range(0);
                Poll::Decode {
                    path: self.archive(),
                    at,
                    len,
                }
            }
            Phase::DecodeLog => {
                let (at, len) = self.range(2);
                Poll::Decode {
                    path: self.archive(),
                    at,
                    len,
                }
            }
            Phase::Create { file } => Poll::Io(Io::Create {
                path: self.file(*file).0,
            }),
            Phase::CopyRead { file, at } => {
                let (start, len) = self.range(*file);
                Poll::Io(Io::Read {
                    path: self.archive(),
                    at: start + at,
                    len: (len - at).min(CHUNK as u64) as usize,
                })
            }
            Phase::CopyWrite { file, .. } => Poll::Io(Io::Append {
                path: self.file(*file).0,
                bytes: std::mem::take(&mut self.pending),
            }),
            Phase::WriteSmall { file } => Poll::Io(Io::Append {
                path: self.file(*file).0,
                bytes: self.small_file(*file),
            }),
            Phase::Sync { file } => Poll::Io(Io::Sync {
                path: self.file(*file).0,
            }),
            Phase::Publish { file } => {
                let (from, to) = self.file(*file);
                Poll::Io(Io::Rename { from, to })
            }
            Phase::SyncTarget => Poll::Io(Io::SyncDir {
                dir: paths::index_dir(&self.target),
            }),
            Phase::SyncIndexes => Poll::Io(Io::SyncDir {
                dir: "indexes".into(),
            }),
            Phase::RemoveStage => Poll::Io(Io::RemoveTree { dir: self.stage() }),
            Phase::RemoveFetched => Poll::Io(Io::Remove {
                path: self.archive(),
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
        match (phase, result) {
            (Phase::Cleanup { mut ios }, _) => {
                ios.pop();
                self.phase = Phase::Cleanup { ios };
            }
            (Phase::FetchSize | Phase::FetchRead { .. }, Err(e)) => self.fail(format!(
                "backup target {:?}: {e}",
                self.from.as_deref().unwrap_or_default()
            )),
            (_, Err(e)) => self.fail(e),
            (Phase::FetchSize, Ok(Done::Size(Some(n)))) => {
                self.fetch_size = n;
                self.phase = Phase::FetchCreate;
            }
            (Phase::FetchSize, Ok(_)) => self.fail(format!(
                "backup {:?} not found on target {:?}",
                self.backup,
                self.from.as_deref().unwrap_or_default()
            )),
            (Phase::FetchCreate, Ok(_)) => {
                self.phase = if self.fetch_size == 0 {
                    Phase::Size
                } else {
                    Phase::FetchRead { at: 0 }
                };
            }
            (Phase::FetchRead { at }, Ok(Done::Bytes(b))) => {
                if b.is_empty() {
                    return self.fail("archive on the target ended before its size");
                }
                let at = at + b.len() as u64;
                self.done_bytes = at;
                self.since_engine += b.len() as u64;
                self.pending = b;
                self.phase = Phase::FetchWrite { at };
            }
            (Phase::FetchWrite { at }, Ok(_)) => {
                self.phase = if at < self.fetch_size {
                    Phase::FetchRead { at }
                } else {
                    Phase::Size
                };
            }
            (Phase::Size, Ok(Done::Size(Some(n)))) => {
                self.archive_size = n;
                self.phase = Phase::Scan { at: 0 };
            }
            (Phase::Size, Ok(_)) => self.fail(format!("backup {:?} not found", self.backup)),
            (Phase::Scan { at }, Ok(Done::Bytes(b))) => {
                let Some(dec) = self.decoder.as_mut() else {
                    return self.fail("no decoder");
                };
                if let Err(e) = dec.feed(&b, &mut NullSink) {
                    return self.fail(format!("invalid backup archive: {e}"));
                }
                let at = at + b.len() as u64;
                self.done_bytes = self.fetch_size + at;
                self.since_engine += b.len() as u64;
                if !b.is_empty() && at < self.archive_size {
                    self.phase = Phase::Scan { at };
                    return;
                }
                let Some(dec) = self.decoder.take() else {
                    return self.fail("no decoder");
                };
                match dec.finish() {
                    Ok(layout) => {
                        self.layout = Some(layout);
                        self.phase = Phase::DecodeCheckpoint;
                    }
                    Err(e) => self.fail(format!("invalid backup archive: {e}")),
                }
            }
            (Phase::CopyRead { file, at }, Ok(Done::Bytes(b))) => {
                if b.is_empty() {
                    return self.fail("archive shorter than while it was verified");
                }
                let at = at + b.len() as u64;
                self.done_bytes += b.len() as u64;
                self.since_engine += b.len() as u64;
                self.pending = b;
                self.phase = Phase::CopyWrite { file, at };
            }
            (Phase::CopyWrite { file, at }, Ok(_)) => {
                let (_, len) = self.range(file);
                self.phase = if at < len {
                    Phase::CopyRead { file, at }
                } else {
                    Phase::Sync { file }
                };
            }
            (Phase::Create { file }, Ok(_)) => {
                self.phase = match file {
                    0 | 2 if self.range(file).1 > 0 => Phase::CopyRead { file, at: 0 },
                    0 | 2 => Phase::Sync { file },
                    _ => Phase::WriteSmall { file },
                };
            }
            (Phase::WriteSmall { file }, Ok(_)) => self.phase = Phase::Sync { file },
            (Phase::Sync { file }, Ok(_)) => self.after_file(file),
            (Phase::Publish { file }, Ok(_)) => {
                self.published = file + 1;
                self.phase = if file < 3 {
                    Phase::Publish { file: file + 1 }
                } else {
                    Phase::SyncTarget
                };
            }
            (Phase::SyncTarget, Ok(_)) => self.phase = Phase::SyncIndexes,
            (Phase::SyncIndexes, Ok(_)) => self.phase = Phase::RemoveStage,
            // A stage left behind is removed at the next start; the index is published.
            (Phase::RemoveStage, _) if self.from.is_some() => self.phase = Phase::RemoveFetched,
            (Phase::RemoveStage | Phase::RemoveFetched, _) => self.phase = Phase::Conclude,
            (p, Ok(d)) => self.fail(format!("unexpected result {d:?} in {p:?}")),
        }
    }

    fn decode(&mut self, reader: &mut dyn Read) {
        let Some(layout) = self.layout.as_ref() else {
            return self.fail("no archive layout");
        };
        match decode_archived(&layout.manifest, &mut self.index, reader) {
            Ok(None) => self.phase = Phase::DecodeLog,
            Ok(Some(scan)) => {
                self.scan = Some(scan);
                self.phase = Phase::Create { file: 0 };
            }
            Err(e) => self.fail(format!("invalid backup archive: {e}")),
        }
    }

    fn engine(&mut self, engine: &mut Engine, now_ms: u64) {
        self.since_engine = 0;
        if engine.cancel_requested(&self.job) {
            self.cancel = true;
        }
        let total = self.total();
        engine.progress(&self.job, self.done_bytes, total);
        if self.phase != Phase::Conclude {
            return;
        }
        let outcome = match self.outcome.take() {
            Some(o) => o,
            None => match (&self.layout, &self.index, &self.scan) {
                (Some(l), Some(ix), Some(scan)) => Outcome::Restore {
                    params: l.manifest.params.clone(),
                    generation: 1,
                    log: LogState {
                        log_len: scan.valid_len,
                        log_vectors: scan.upserted,
                        live: ix.len() as u64,
                    },
                },
                _ => Outcome::Failed("restore ended without an index".into()),
            },
        };
        if !matches!(outcome, Outcome::Restore { .. }) {
            self.index = None;
        }
        let _ = engine.finish(&self.job, now_ms, outcome);
        self.phase = Phase::Done;
    }
}
