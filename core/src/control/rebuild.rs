//! The rebuild protocol as a step machine: an index's HNSW graph rebuilt with new `M` /
//! `ef_con` in the background, while searches and writes go on against the old graph.
//!
//! 1. *Open* (index borrowed exclusively, O(1)): the index starts noting the slots it writes
//!    and the task creates the new, empty graph ([`GraphBuilder::begin`]).
//! 2. *Build*, repeated (index borrowed shared — a host's read lock, searches go on; writes
//!    wait at most one batch): relink placed slots that writes changed, then place the next
//!    slots in order. Each batch is followed by an engine turn (progress, cancel). A batch
//!    does about [`BATCH_WORK`] of distance work.
//! 3. *Swap* (exclusive, writes held for this batch only): place what writes added since,
//!    then swap in the new graph and the new parameters ([`GraphBuilder::install`]).
//! 4. *Save*: the host writes a checkpoint as it always does — a new generation with the new
//!    graph and parameters, committed by its manifest. That checkpoint is the rebuild's
//!    commit point: a crash before it leaves the old generation, the old graph and the old
//!    parameters (the log replays into them); after it, the new ones.
//! 5. *Next* (engine turn): a job of several fields records the field done and opens the
//!    next one (back to 1); each field is committed by its own checkpoint, so a crash or a
//!    cancel later leaves the fields before it rebuilt.
//! 6. *Conclude* (engine turn): completed, or failed with the reason.
//!
//! A cancel seen at an engine turn before the swap drops the new graph (the old one never
//! stopped serving). If the checkpoint fails, the job fails; the new graph keeps serving in
//! memory and the next checkpoint that succeeds makes it durable (the data is in the log
//! either way).

use crate::control::engine::{Engine, Outcome};
use crate::control::task::{Done, Poll, Task};
use crate::index::Index;
use crate::index::rebuild::GraphBuilder;
use crate::registry::RebuildSpec;
use std::io::{self, Read};

/// One dense field a rebuild request names: which (0: the index's own vectors; `i + 1`: a
/// collection's further field `i`) and its new `M` / `ef_con` (`None` keeps the current).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRebuild {
    /// Which dense field.
    pub field: usize,
    /// New `M`, if it changes.
    pub m: Option<usize>,
    /// New `ef_con`, if it changes.
    pub ef_con: Option<usize>,
}

/// Work one build batch may do, in multiply-adds of distance computations: about 1 ms of
/// one core (measured: 384-d, M 24, ef_con 200 places a slot in 1.2 ms ≈ 3.7 M multiply-adds).
/// A write waits at most that long; a browser Worker answers its next message after that. Counted, not timed, so the protocol stays deterministic and a host whose
/// clock moves only between turns (the browser steps with one timestamp) gets small batches.
pub const BATCH_WORK: u64 = 4 << 20;

/// Largest batch (slots are cheap to place when they are deleted ones).
const MAX_BATCH: usize = 4096;

/// Slots per build batch for a graph of `m` and `ef_con` over `dim`-dimensional vectors:
/// placing one costs about `ef_con` candidates × `2m` neighbours × `dim`.
pub fn batch_size(dim: usize, m: usize, ef_con: usize) -> usize {
    let per_slot = (dim.max(1) as u64)
        .saturating_mul(2 * m.max(1) as u64)
        .saturating_mul(ef_con.max(1) as u64);
    (BATCH_WORK / per_slot).clamp(1, MAX_BATCH as u64) as usize
}

#[derive(Debug)]
enum Phase {
    Open,
    Build,
    /// Engine turn after a build batch: progress, cancel.
    Report,
    Swap,
    Save,
    /// Engine turn after a field's checkpoint: the next field, or the end.
    Next,
    /// Cancelled or failed before the swap: the index stops noting writes.
    Abandon,
    Conclude,
    Done,
}

/// A rebuild in progress (see the module doc).
#[derive(Debug)]
pub struct RebuildTask {
    job: String,
    index: String,
    /// The fields to rebuild, in order, with the parameters they get.
    plan: Vec<RebuildSpec>,
    /// Which of `plan` is being rebuilt.
    current: usize,
    phase: Phase,
    builder: Option<GraphBuilder>,
    /// Slots per build batch (see [`batch_size`]), set when the index is opened.
    batch: usize,
    done: u64,
    total: u64,
    /// Slots placed for the fields already rebuilt (progress runs over all fields).
    done_before: u64,
    outcome: Option<Outcome>,
}

impl RebuildTask {
    /// A task for job `job` (already running), rebuilding the dense fields of `index` that
    /// `plan` names, in order, each with its `m` / `ef_con`.
    pub fn new(job: String, index: String, plan: Vec<RebuildSpec>) -> Self {
        Self {
            job,
            index,
            plan,
            current: 0,
            phase: Phase::Open,
            builder: None,
            batch: 1,
            done: 0,
            total: 0,
            done_before: 0,
            outcome: None,
        }
    }

    /// Progress over every field of the plan: (slots placed, slots to place).
    fn overall(&self) -> (u64, u64) {
        let left = (self.plan.len() - self.current).max(1) as u64;
        (
            self.done_before + self.done,
            self.done_before + self.total * left,
        )
    }

    /// The job id.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The index being rebuilt.
    pub fn index(&self) -> &str {
        &self.index
    }

    fn fail(&mut self, why: String) {
        self.outcome = Some(Outcome::Failed(why));
        self.phase = if self.builder.is_some() {
            Phase::Abandon
        } else {
            Phase::Conclude
        };
    }
}

impl Task for RebuildTask {
    fn poll(&mut self, _now_ms: u64) -> Poll {
        let name = self.index.clone();
        match self.phase {
            Phase::Open | Phase::Swap | Phase::Abandon => Poll::WriteIndex { name },
            Phase::Build => Poll::ReadIndex { name },
            Phase::Report | Phase::Next | Phase::Conclude => Poll::Engine,
            Phase::Save => Poll::Checkpoint { name },
            Phase::Done => Poll::Done,
        }
    }

    fn handle(&mut self, result: io::Result<Done>) {
        match (&self.phase, result) {
            (Phase::Save, Ok(_)) => self.phase = Phase::Next,
            (Phase::Save, Err(e)) => {
                self.outcome = Some(Outcome::Failed(format!(
                    "the rebuilt graph serves but its checkpoint failed: {e} \
                     (the next checkpoint saves it; until then a restart serves the old graph)"
                )));
                self.phase = Phase::Conclude;
            }
            // The index is not served (it cannot be deleted while the job runs, so this is a
            // host that lost it): nothing of the rebuild was installed.
            (_, Err(e)) => {
                self.builder = None;
                self.outcome = Some(Outcome::Failed(e.to_string()));
                self.phase = Phase::Conclude;
            }
            (_, Ok(_)) => {}
        }
    }

    fn decode(&mut self, _reader: &mut dyn Read) {}

    fn read_index(&mut self, ix: &Index) {
        let Some(b) = self.builder.as_mut() else {
            return;
        };
        b.step(ix, self.batch);
        let p = b.progress(ix);
        (self.done, self.total) = (p.done, p.total);
        self.phase = if b.caught_up(ix) {
            Phase::Swap
        } else {
            Phase::Report
        };
    }

    fn write_index(&mut self, ix: &mut Index) {
        match self.phase {
            Phase::Open => {
                if ix.rebuilding() {
                    // The engine allows one rebuild per index; a second watcher would
                    // steal the first one's change list.
                    self.fail("another rebuild is running on this index".into());
                    return;
                }
                let Some(spec) = self.plan.get(self.current).copied() else {
                    self.fail("a rebuild with no field".into());
                    return;
                };
                if spec.field > ix.extra_field_names().len() {
                    self.fail(format!(
                        "the index has no dense field number {}",
                        spec.field
                    ));
                    return;
                }
                self.builder = Some(GraphBuilder::begin(ix, spec.field, spec.m, spec.ef_con));
                let dim = match spec.field {
                    0 => ix.params().dim,
                    f => ix.params().extra_fields()[f - 1].dim,
                };
                self.batch = batch_size(dim, spec.m, spec.ef_con);
                self.done = 0;
                self.total = u64::from(ix.slot_count());
                self.phase = Phase::Build;
            }
            Phase::Swap => {
                if let Some(b) = self.builder.take() {
                    b.install(ix);
                }
                self.done = u64::from(ix.slot_count());
                self.total = self.done;
                self.phase = Phase::Save;
            }
            Phase::Abandon => {
                self.builder = None;
                ix.abandon_rebuild();
                self.phase = Phase::Conclude;
            }
            _ => {}
        }
    }

    fn engine(&mut self, engine: &mut Engine, now_ms: u64) {
        match self.phase {
            Phase::Report => {
                let (done, total) = self.overall();
                engine.progress(&self.job, done, total);
                if engine.cancel_requested(&self.job) {
                    self.outcome = Some(Outcome::Cancelled);
                    self.phase = Phase::Abandon;
                } else {
                    self.phase = Phase::Build;
                }
            }
            Phase::Next => {
                engine.rebuild_field_done(&self.job);
                self.done_before += self.done;
                (self.done, self.total) = (0, 0);
                self.current += 1;
                if self.current < self.plan.len() {
                    self.phase = if engine.cancel_requested(&self.job) {
                        self.outcome = Some(Outcome::Cancelled);
                        Phase::Conclude
                    } else {
                        Phase::Open
                    };
                } else {
                    self.outcome = Some(Outcome::Rebuilt);
                    self.phase = Phase::Conclude;
                }
            }
            Phase::Conclude => {
                let (done, total) = self.overall();
                engine.progress(&self.job, done, total.max(done));
                let outcome = self
                    .outcome
                    .take()
                    .unwrap_or_else(|| Outcome::Failed("rebuild ended without an outcome".into()));
                let _ = engine.finish(&self.job, now_ms, outcome);
                self.phase = Phase::Done;
            }
            _ => {}
        }
    }
}
