//! The restore protocol as a step machine: an archive — or a chain of them, a full backup
//! and the incremental backups that continue it — becomes a new index `<target>`, validated
//! whole before anything is published.
//!
//! ```text
//! [Fetch each member from its backup target into tmp/, chunk by chunk]
//!   ─▶ Size + Head of each member (manifest, where its checkpoint lies)
//!   ─▶ Detach the decode of the newest checkpoint of the chain (a host with threads runs it
//!      beside what follows; a single-threaded one at once)
//!   ─▶ Scan each member (tar structure, manifest, every digest; chunk by chunk)
//!   ─▶ Chain check (each member's base is the one before it, at its cut; the decode read
//!      the checkpoint the scan found)
//!   ─▶ Stage generation 1 under indexes/.tmp/<job>/ (the checkpoint and the log segments
//!      copied as they are, digest record, manifest; each synced)
//!   ─▶ Collect the decoded checkpoint ─▶ Decode each log segment from there on (the index
//!      rebuilds with every check; params and counts match each member's manifest)
//!   ─▶ Publish: rename checkpoint, digest, log, then the manifest (the commit point) into
//!      indexes/<target>/, sync the directories ─▶ the host serves the index the task built
//!      ─▶ conclude (completed: a job seen completed names an index that answers)
//! any error, or cancel before the first rename ─▶ remove what was staged (and published,
//!   and fetched) ─▶ conclude (failed / cancelled)
//! ```
//! The archived checkpoint is published as it is (it was verified against its digest and
//! decoded), so a restore never re-encodes an index; the archived log replays at the next
//! start, or is folded in by the next checkpoint. The log's vectors are replayed without
//! graph links ([`Index::replay_deferred`]): the restored index answers at once (those
//! vectors scanned exactly) and the host links them in the background, so a restore's time
//! tracks the disk rather than the graph inserts. The checkpoint's decode starts before its
//! bytes are verified: decoders take hostile bytes without harm, and nothing decoded is
//! served unless the scan then verifies every byte (on two cores a 1M-vector restore
//! decodes while it verifies and stages, ~1.4× a `tar -xf` of the archive rather than 3.5×).

use crate::archive::{
    ArchiveDecoder, ArchiveLayout, CHECKPOINT_PATH, HEAD_BYTES, LOG_PATH, Manifest, NullSink,
    archived_log_deferred, encode_digest,
};
use crate::control::engine::{Engine, IndexManifest, LogState, Outcome};
use crate::control::task::{CheckpointDecode, Done, Io, ObjectOp, Poll, Task};
use crate::engine::paths;
use crate::index::Index;
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
    /// From a target: member `m`'s size there, then a local copy made chunk by chunk.
    FetchSize {
        m: usize,
    },
    FetchCreate {
        m: usize,
    },
    FetchRead {
        m: usize,
        at: u64,
    },
    FetchWrite {
        m: usize,
        at: u64,
    },
    Size {
        m: usize,
    },
    /// Member `m`'s head: its manifest and where its checkpoint lies, so the checkpoint's
    /// decode can start beside the scans.
    Head {
        m: usize,
    },
    Scan {
        m: usize,
        at: u64,
    },
    /// Waiting for the detached checkpoint decode.
    Collect,
    /// Replaying member `m`'s log segment.
    DecodeLog {
        m: usize,
    },
    /// Staging file `file` (0 checkpoint, 1 digest, 2 log, 3 manifest): create.
    Create {
        file: usize,
    },
    /// Copy segment `seg` of staged file `file` from its archive.
    CopyRead {
        file: usize,
        seg: usize,
        at: u64,
    },
    CopyWrite {
        file: usize,
        seg: usize,
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
    /// Removing the copies fetched from a target (the next member first).
    RemoveFetched {
        m: usize,
    },
    Cleanup {
        ios: Vec<Io>,
    },
    /// The host takes the published index and serves it (before the job concludes).
    Serve,
    Conclude,
    Done,
}

/// A range of one member's archive that goes into a staged file.
#[derive(Debug, Clone, Copy)]
struct Segment {
    member: usize,
    offset: u64,
    len: u64,
}

/// A running restore (see the module doc).
pub struct RestoreTask {
    job: String,
    /// The archives, oldest first: a full backup, then the incremental ones continuing it;
    /// the last is the one asked for.
    chain: Vec<String>,
    target: String,
    created_at: u64,
    phase: Phase,
    /// Each member's archive size (local) once known.
    sizes: Vec<u64>,
    decoder: Option<ArchiveDecoder>,
    layouts: Vec<ArchiveLayout>,
    /// The member whose checkpoint the index starts from (the newest that has one).
    base: usize,
    index: Option<Index>,
    /// Each member's head, read before the scans: its manifest and checkpoint range (`None`
    /// when the head did not show them; the scan then decides alone).
    heads: Vec<Option<(Manifest, crate::archive::EntryRange)>>,
    /// The checkpoint decode to hand the host at the next poll.
    to_detach: Option<CheckpointDecode>,
    /// Member and range the detached decode reads (checked against the scan's layout).
    detached: Option<(usize, u64, u64)>,
    /// The detached decode's result, once handed back.
    decoded: Option<Result<Index, String>>,
    /// Live vectors of the index built (it goes to the host before the engine concludes).
    live: u64,
    /// Why the host could not serve the published index (reported as the index's damage).
    serve_error: Option<String>,
    /// Log bytes and upserted vectors replayed, over every segment.
    log: (u64, u64),
    pending: Vec<u8>,
    done_bytes: u64,
    since_engine: u64,
    published: usize,
    cancel: bool,
    outcome: Option<Outcome>,
    /// The backup target the archives are fetched from (`None`: `backups/`).
    from: Option<String>,
    /// Each member's size on the target.
    fetch_sizes: Vec<u64>,
}

impl RestoreTask {
    pub(crate) fn new(job: String, chain: Vec<String>, target: String, created_at: u64) -> Self {
        let n = chain.len();
        Self {
            job,
            chain,
            target,
            created_at,
            phase: Phase::Size { m: 0 },
            sizes: vec![0; n],
            decoder: Some(ArchiveDecoder::new()),
            layouts: Vec::new(),
            base: 0,
            index: None,
            heads: Vec::new(),
            to_detach: None,
            detached: None,
            decoded: None,
            live: 0,
            serve_error: None,
            log: (0, 0),
            pending: Vec::new(),
            done_bytes: 0,
            since_engine: 0,
            published: 0,
            cancel: false,
            outcome: None,
            from: None,
            fetch_sizes: vec![0; n],
        }
    }

    /// Restores from backup target `from`: each archive is first copied to `tmp/` (bounded
    /// memory; every byte then verified as for a local archive) and removed at the end.
    pub(crate) fn with_source(mut self, from: Option<String>) -> Self {
        if from.is_some() {
            self.phase = Phase::FetchSize { m: 0 };
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

    /// Member `m`'s archive file.
    fn archive(&self, m: usize) -> String {
        match self.from {
            None => paths::backup(&self.chain[m]),
            Some(_) => paths::fetch_tmp(&format!("{}-{m}", self.job)),
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

    /// Where entry `path` of member `m` lies: `(offset, size)`.
    fn range(&self, m: usize, path: &str) -> (u64, u64) {
        self.layouts
            .get(m)
            .and_then(|l| l.range(path))
            .map_or((0, 0), |r| (r.offset, r.size))
    }

    /// What staged file `file` (checkpoint or log) is copied from.
    fn segments(&self, file: usize) -> Vec<Segment> {
        let seg = |member: usize, path: &str| {
            let (offset, len) = self.range(member, path);
            Segment {
                member,
                offset,
                len,
            }
        };
        if file == 0 {
            vec![seg(self.base, CHECKPOINT_PATH)]
        } else {
            (self.base..self.layouts.len())
                .map(|m| seg(m, LOG_PATH))
                .filter(|s| s.len > 0)
                .collect()
        }
    }

    fn last(&self) -> Option<&Manifest> {
        self.layouts.last().map(|l| &l.manifest)
    }

    fn small_file(&self, i: usize) -> Vec<u8> {
        let (Some(base), Some(last)) = (self.layouts.get(self.base), self.last()) else {
            return Vec::new();
        };
        if i == 1 {
            let ck = &base.manifest.entries[0];
            encode_digest(&(ck.size, ck.sha256.clone())).into_bytes()
        } else {
            IndexManifest::new(&self.target, last.params.clone(), 1, self.created_at).encode()
        }
    }

    fn stop(&mut self, outcome: Outcome) {
        // Once concluding, the outcome is the engine's: nothing may restart the cleanup.
        if self.outcome.is_some()
            || matches!(self.phase, Phase::Serve | Phase::Conclude | Phase::Done)
        {
            return;
        }
        let mut ios = vec![Io::RemoveTree { dir: self.stage() }];
        if self.from.is_some() {
            for m in 0..self.chain.len() {
                ios.push(Io::Remove {
                    path: self.archive(m),
                });
            }
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
        let data: u64 = (self.base..self.layouts.len())
            .map(|m| self.layouts[m].manifest.data_bytes())
            .sum();
        self.fetch_sizes.iter().sum::<u64>() + self.sizes.iter().sum::<u64>() + data
    }

    fn after_file(&mut self, file: usize) {
        self.phase = if file < 3 {
            Phase::Create { file: file + 1 }
        } else {
            Phase::Collect
        };
    }

    /// After member `m`'s scan: the next member, or the chain check and the first decode.
    fn scanned(&mut self, m: usize, layout: ArchiveLayout) {
        self.layouts.push(layout);
        if m + 1 < self.chain.len() {
            self.decoder = Some(ArchiveDecoder::new());
            self.phase = Phase::Scan { m: m + 1, at: 0 };
            return;
        }
        if let Err(e) = self.check_chain() {
            return self.fail(format!("invalid backup archive: {e}"));
        }
        let (at, len) = self.range(self.base, CHECKPOINT_PATH);
        match self.detached {
            Some(d) if d == (self.base, at, len) => {}
            // Only an archive that changed between its head's read and its scan gets here.
            Some(_) => return self.fail("invalid backup archive: it changed while being read"),
            None => {
                let manifest = self.layouts[self.base].manifest.clone();
                self.to_detach = Some(self.decode_job(self.base, at, len, manifest));
            }
        }
        self.phase = Phase::Create { file: 0 };
    }

    /// Starts the checkpoint's decode from what the heads show (the newest member with a
    /// checkpoint), so it runs beside the scans; without them it starts after the scans.
    fn detach_from_heads(&mut self) {
        let Some(heads) = self.heads.iter().cloned().collect::<Option<Vec<_>>>() else {
            return;
        };
        let Some(base) = heads.iter().rposition(|(man, _)| man.entries[0].size > 0) else {
            return;
        };
        let (manifest, r) = &heads[base];
        self.to_detach = Some(self.decode_job(base, r.offset, r.size, manifest.clone()));
    }

    fn decode_job(&mut self, m: usize, at: u64, len: u64, manifest: Manifest) -> CheckpointDecode {
        self.detached = Some((m, at, len));
        CheckpointDecode {
            path: self.archive(m),
            at,
            len,
            manifest,
        }
    }

    /// The detached decode's result: the index the logs replay into.
    fn collected(&mut self, r: Result<Index, String>) {
        match r {
            Ok(ix) => {
                self.index = Some(ix);
                self.phase = Phase::DecodeLog { m: self.base };
            }
            Err(e) => self.fail(format!("invalid backup archive: {e}")),
        }
    }

    /// Each member continues the one before it; picks the newest checkpoint.
    fn check_chain(&mut self) -> Result<(), String> {
        for (m, l) in self.layouts.iter().enumerate() {
            let man = &l.manifest;
            let has_checkpoint = man.entries[0].size > 0;
            match (m, &man.base) {
                (0, None) => {}
                (0, Some(b)) => {
                    return Err(format!(
                        "{:?} is incremental: it needs its base {:?}",
                        self.chain[0], b.name
                    ));
                }
                (_, None) => {
                    return Err(format!("{:?} is not incremental", self.chain[m]));
                }
                (_, Some(b)) => {
                    let prev = &self.layouts[m - 1].manifest;
                    if b.name != self.chain[m - 1] || b.cut != prev.cut {
                        return Err(format!(
                            "{:?} continues {:?} at {:?}, not {:?} at {:?}",
                            self.chain[m],
                            b.name,
                            b.cut,
                            self.chain[m - 1],
                            prev.cut
                        ));
                    }
                }
            }
            if has_checkpoint {
                self.base = m;
            }
        }
        Ok(())
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
        if let Some(job) = self.to_detach.take() {
            return Poll::Detach(Box::new(job));
        }
        match &self.phase {
            Phase::FetchSize { m } => {
                self.object(ObjectOp::Size(target::archive_key(&self.chain[*m])))
            }
            Phase::FetchCreate { m } => Poll::Io(Io::Create {
                path: self.archive(*m),
            }),
            Phase::FetchRead { m, at } => self.object(ObjectOp::Read {
                key: target::archive_key(&self.chain[*m]),
                at: *at,
                len: (self.fetch_sizes[*m] - at).min(FETCH_CHUNK as u64) as usize,
            }),
            Phase::FetchWrite { m, .. } => Poll::Io(Io::Append {
                path: self.archive(*m),
                bytes: std::mem::take(&mut self.pending),
            }),
            Phase::Size { m } => Poll::Io(Io::Size {
                path: self.archive(*m),
            }),
            Phase::Scan { m, at } => Poll::Io(Io::Read {
                path: self.archive(*m),
                at: *at,
                len: (self.sizes[*m] - at).min(CHUNK as u64) as usize,
            }),
            Phase::Head { m } => Poll::Io(Io::Read {
                path: self.archive(*m),
                at: 0,
                len: HEAD_BYTES,
            }),
            Phase::Collect => match self.decoded.take() {
                Some(r) => {
                    self.collected(r);
                    self.poll(_now_ms)
                }
                None => Poll::Collect,
            },
            Phase::DecodeLog { m } => {
                let (at, len) = self.range(*m, LOG_PATH);
                Poll::Decode {
                    path: self.archive(*m),
                    at,
                    len,
                }
            }
            Phase::Create { file } => Poll::Io(Io::Create {
                path: self.file(*file).0,
            }),
            Phase::CopyRead { file, seg, at } => {
                let s = self.segments(*file)[*seg];
                Poll::Io(Io::Read {
                    path: self.archive(s.member),
                    at: s.offset + at,
                    len: (s.len - at).min(CHUNK as u64) as usize,
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
            Phase::RemoveFetched { m } => Poll::Io(Io::Remove {
                path: self.archive(*m),
            }),
            Phase::Cleanup { ios } => match ios.last() {
                Some(io) => Poll::Io(io.clone()),
                None => {
                    self.phase = Phase::Conclude;
                    Poll::Engine
                }
            },
            Phase::Serve => Poll::Serve {
                name: self.target.clone(),
                generation: 1,
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
            (Phase::FetchSize { .. } | Phase::FetchRead { .. }, Err(e)) => self.fail(format!(
                "backup target {:?}: {e}",
                self.from.as_deref().unwrap_or_default()
            )),
            (Phase::RemoveFetched { m }, _) => {
                // A copy left behind is removed at the next start.
                self.phase = if m + 1 < self.chain.len() {
                    Phase::RemoveFetched { m: m + 1 }
                } else {
                    Phase::Serve
                };
            }
            (Phase::Serve, r) => {
                self.serve_error = r.err().map(|e| e.to_string());
                self.phase = Phase::Conclude;
            }
            // A stage left behind is removed at the next start; the index is published.
            (Phase::RemoveStage, _) if self.from.is_some() => {
                self.phase = Phase::RemoveFetched { m: 0 };
            }
            (Phase::RemoveStage, _) => self.phase = Phase::Serve,
            (_, Err(e)) => self.fail(e),
            (Phase::FetchSize { m }, Ok(Done::Size(Some(n)))) => {
                self.fetch_sizes[m] = n;
                self.phase = Phase::FetchCreate { m };
            }
            (Phase::FetchSize { m }, Ok(_)) => self.fail(format!(
                "backup {:?} not found on target {:?}",
                self.chain[m],
                self.from.as_deref().unwrap_or_default()
            )),
            (Phase::FetchCreate { m }, Ok(_)) => {
                self.phase = if self.fetch_sizes[m] == 0 {
                    self.next_fetch(m)
                } else {
                    Phase::FetchRead { m, at: 0 }
                };
            }
            (Phase::FetchRead { m, at }, Ok(Done::Bytes(b))) => {
                if b.is_empty() {
                    return self.fail("archive on the target ended before its size");
                }
                let at = at + b.len() as u64;
                self.done_bytes += b.len() as u64;
                self.since_engine += b.len() as u64;
                self.pending = b;
                self.phase = Phase::FetchWrite { m, at };
            }
            (Phase::FetchWrite { m, at }, Ok(_)) => {
                self.phase = if at < self.fetch_sizes[m] {
                    Phase::FetchRead { m, at }
                } else {
                    self.next_fetch(m)
                };
            }
            (Phase::Size { m }, Ok(Done::Size(Some(n)))) => {
                self.sizes[m] = n;
                self.phase = Phase::Head { m };
            }
            (Phase::Head { m }, Ok(Done::Bytes(b))) => {
                // What the head shows is trusted for nothing but where to start decoding: the
                // scan verifies every byte, and the range is checked against its layout.
                let mut dec = ArchiveDecoder::new();
                let _ = dec.feed(&b, &mut NullSink);
                let head = match (dec.manifest(), dec.entry(CHECKPOINT_PATH)) {
                    (Some(man), Some(r)) => Some((man.clone(), r.clone())),
                    _ => None,
                };
                self.heads.push(head);
                self.phase = if m + 1 < self.chain.len() {
                    Phase::Size { m: m + 1 }
                } else {
                    self.detach_from_heads();
                    Phase::Scan { m: 0, at: 0 }
                };
            }
            (Phase::Size { m }, Ok(_)) => {
                self.fail(format!("backup {:?} not found", self.chain[m]));
            }
            (Phase::Scan { m, at }, Ok(Done::Bytes(b))) => {
                let Some(dec) = self.decoder.as_mut() else {
                    return self.fail("no decoder");
                };
                if let Err(e) = dec.feed(&b, &mut NullSink) {
                    return self.fail(format!("invalid backup archive: {e}"));
                }
                let at = at + b.len() as u64;
                self.done_bytes += b.len() as u64;
                self.since_engine += b.len() as u64;
                if !b.is_empty() && at < self.sizes[m] {
                    self.phase = Phase::Scan { m, at };
                    return;
                }
                let Some(dec) = self.decoder.take() else {
                    return self.fail("no decoder");
                };
                match dec.finish() {
                    Ok(layout) => self.scanned(m, layout),
                    Err(e) => self.fail(format!("invalid backup archive: {e}")),
                }
            }
            (Phase::CopyRead { file, seg, at }, Ok(Done::Bytes(b))) => {
                if b.is_empty() {
                    return self.fail("archive shorter than while it was verified");
                }
                let at = at + b.len() as u64;
                self.done_bytes += b.len() as u64;
                self.since_engine += b.len() as u64;
                self.pending = b;
                self.phase = Phase::CopyWrite { file, seg, at };
            }
            (Phase::CopyWrite { file, seg, at }, Ok(_)) => {
                let segs = self.segments(file);
                self.phase = if at < segs[seg].len {
                    Phase::CopyRead { file, seg, at }
                } else if seg + 1 < segs.len() {
                    Phase::CopyRead {
                        file,
                        seg: seg + 1,
                        at: 0,
                    }
                } else {
                    Phase::Sync { file }
                };
            }
            (Phase::Create { file }, Ok(_)) => {
                self.phase = match file {
                    0 | 2 if !self.segments(file).is_empty() => {
                        let segs = self.segments(file);
                        match segs.iter().position(|s| s.len > 0) {
                            Some(seg) => Phase::CopyRead { file, seg, at: 0 },
                            None => Phase::Sync { file },
                        }
                    }
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
            (p, Ok(d)) => self.fail(format!("unexpected result {d:?} in {p:?}")),
        }
    }

    fn decode(&mut self, reader: &mut dyn Read) {
        let Phase::DecodeLog { m } = self.phase else {
            return self.fail("decode outside a decode phase");
        };
        let Some(manifest) = self.layouts.get(m).map(|l| l.manifest.clone()) else {
            return self.fail("no archive layout");
        };
        let Some(ix) = self.index.as_mut() else {
            return self.fail("log before checkpoint");
        };
        // Each segment ends at its member's cut: the count is checked there.
        match archived_log_deferred(&manifest, ix, reader) {
            Ok(scan) => {
                self.log.0 += scan.valid_len;
                self.log.1 += scan.upserted;
                self.since_engine = ENGINE_EVERY; // report the vectors at the next turn
                self.phase = if m + 1 < self.layouts.len() {
                    Phase::DecodeLog { m: m + 1 }
                } else {
                    Phase::Publish { file: 0 }
                };
            }
            Err(e) => self.fail(format!("invalid backup archive: {e}")),
        }
    }

    fn decoded(&mut self, r: Result<Index, String>) {
        if self.phase == Phase::Collect {
            self.collected(r);
        } else {
            self.decoded = Some(r);
        }
    }

    fn hand_over(&mut self) -> Option<Index> {
        if self.phase != Phase::Serve {
            return None;
        }
        let ix = self.index.take()?;
        self.live = ix.len() as u64;
        Some(ix)
    }

    fn engine(&mut self, engine: &mut Engine, now_ms: u64) {
        self.since_engine = 0;
        if engine.cancel_requested(&self.job) {
            self.cancel = true;
        }
        let total = self.total();
        engine.progress(&self.job, self.done_bytes, total);
        if let Some(last) = self.last() {
            let done = self.index.as_ref().map_or(0, |ix| ix.len() as u64);
            let _ = engine.registry.vectors(&self.job, done, last.vector_count);
        }
        if self.phase != Phase::Conclude {
            return;
        }
        let outcome = match self.outcome.take() {
            Some(o) => o,
            None => match (self.last(), self.index.is_none()) {
                (Some(last), true) => Outcome::Restore {
                    params: last.params.clone(),
                    generation: 1,
                    log: LogState {
                        log_len: self.log.0,
                        log_vectors: self.log.1,
                        live: self.live,
                    },
                },
                _ => Outcome::Failed("restore ended without serving its index".into()),
            },
        };
        self.index = None;
        let _ = engine.finish(&self.job, now_ms, outcome);
        // Published (the commit point passed) but not served: reported like an index found
        // damaged at a start, its files kept for a human to look at.
        if let Some(e) = self.serve_error.take() {
            engine.mark_broken(
                &self.target,
                &format!("restored index could not be opened: {e}"),
            );
        }
        self.phase = Phase::Done;
    }
}

impl RestoreTask {
    /// After member `m` is fetched: the next member, or the scans.
    fn next_fetch(&self, m: usize) -> Phase {
        if m + 1 < self.chain.len() {
            Phase::FetchSize { m: m + 1 }
        } else {
            Phase::Size { m: 0 }
        }
    }
}
