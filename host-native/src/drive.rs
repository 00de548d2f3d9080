//! Runs the core's step machines (backup, restore, upload, rebuild) on threads over real
//! files and the server's indexes. Every rule and every step of those protocols is the core's
//! (`cairn_core::control`); this module only picks the thread, sleeps when a task is paced,
//! and hands a restored index to the server.

use crate::db::{Db, DbError, NativeHost, lock};
use crate::fs_storage::IoTime;
use crate::fsutil::{self, now_ms};
use cairn_core::archive::{self, Manifest, NullSink, Source};
use cairn_core::control::rebuild::FieldRebuild;
use cairn_core::control::task::{self, Stepped, Task};
use cairn_core::control::upload::UploadTask;
use cairn_core::engine::{Engine, EngineError};
use cairn_core::{Job, JobStatus};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Longest sleep between steps of a paced task (a cancel is seen within this).
const MAX_NAP: Duration = Duration::from_millis(50);

/// Microseconds on a monotonic clock (write-gate timing).
fn now_us() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// Steps `task` until it is done or needs input.
pub fn run(db: &Db, task: &mut dyn Task) -> Stepped {
    run_timed(db, task).0
}

/// [`run`], also saying where the time of its storage calls went.
fn run_timed(db: &Db, task: &mut dyn Task) -> (Stepped, IoTime) {
    let mut host = NativeHost::new(db);
    let s = run_on(&mut host, db, task);
    (s, host.st.time)
}

fn run_on(host: &mut NativeHost<'_>, db: &Db, task: &mut dyn Task) -> Stepped {
    loop {
        match task::step(task, host, now_ms()) {
            Stepped::Busy => {}
            Stepped::Wait(until) => {
                let nap = until.saturating_sub(now_ms()).max(1);
                std::thread::sleep(Duration::from_millis(nap).min(MAX_NAP));
                // A paced task still sees a cancel at its next engine turn.
                host_engine_turn(db, task);
            }
            s @ (Stepped::Input | Stepped::Done) => return s,
        }
    }
}

/// One engine turn for a task outside its own schedule (a paced task waiting).
fn host_engine_turn(db: &Db, task: &mut dyn Task) {
    let _ = db.control(|e| task.engine(e, now_ms()));
}

/// Accepts a backup (every rule checked and the cut recorded now) and runs it on a thread.
pub fn submit_backup(
    db: &Arc<Db>,
    index: &str,
    name: &str,
    target: Option<&str>,
    incremental_from: Option<&str>,
) -> Result<Job, DbError> {
    if let Some(t) = target {
        db.control(|e| e.check_target(Some(t)))??;
        // The target's own listing: another server sharing it may have written the name.
        if db.target_lists(t, name)? {
            return Err(EngineError::BackupExists(name.into()).into());
        }
    }
    let base = match incremental_from {
        None => None,
        Some(b) => {
            cairn_core::engine::validate_backup_name(b)?;
            let m = db
                .manifest_in(target, b)?
                .ok_or_else(|| EngineError::BackupNotFound(b.into()))?;
            Some((b, m))
        }
    };
    let source = Source {
        host: "native".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let mut t = db.control(|e| {
        let t0 = now_us();
        let t = e.begin_backup(
            now_ms(),
            t0,
            fsutil::entropy(),
            index,
            name,
            target,
            base.as_ref().map(|(b, m)| (*b, m)),
            source,
            db.backup_rate,
        )?;
        e.release_cut(index, now_us());
        Ok::<_, DbError>(t)
    })??;
    let job = job(db, t.job())?;
    let db2 = db.clone();
    std::thread::Builder::new()
        .name(format!("backup-{}", job.job_id))
        .spawn(move || {
            let t0 = Instant::now();
            let (_, time) = run_timed(&db2, &mut t);
            log_end(&db2, t.job(), Some((time, t0.elapsed())));
        })
        .map_err(DbError::Io)?;
    Ok(job)
}

/// Accepts a restore (rules checked now). `wait` runs it on this thread and returns the
/// finished job; otherwise it runs on its own thread.
pub fn submit_restore(
    db: &Arc<Db>,
    backup: &str,
    from: Option<&str>,
    target: &str,
    wait: bool,
) -> Result<Job, DbError> {
    if let Some(t) = from {
        db.control(|e| e.check_target(Some(t)))??;
        if !db.target_lists(t, backup)? {
            return Err(EngineError::BackupNotFound(backup.into()).into());
        }
    }
    cairn_core::engine::validate_backup_name(backup)?;
    // The chain it restores from (an incremental backup's bases, back to a full one).
    let mut failed = None;
    let chain = Engine::chain_of(backup, |n| match db.manifest_in(from, n) {
        Ok(m) => m,
        Err(e) => {
            failed = Some(e);
            None
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let chain = chain?;
    let mut t =
        db.control(|e| e.begin_restore(now_ms(), fsutil::entropy(), chain, target, from))??;
    let id = t.job().to_string();
    // The task hands its index to the host to serve before the job concludes: a job seen
    // completed names an index that answers.
    let finish = move |db: &Db, t: &mut cairn_core::control::restore::RestoreTask| {
        let t0 = Instant::now();
        let (_, time) = run_timed(db, t);
        log_end(db, t.job(), Some((time, t0.elapsed())));
    };
    if wait {
        finish(db, &mut t);
        let j = job(db, &id)?;
        return match j.status {
            JobStatus::Completed => Ok(j),
            _ => {
                let msg = j.error.unwrap_or_default();
                Err(if msg.starts_with("invalid backup archive") {
                    DbError::BadRequest(msg)
                } else {
                    DbError::Internal(msg)
                })
            }
        };
    }
    let db2 = db.clone();
    std::thread::Builder::new()
        .name(format!("restore-{id}"))
        .spawn(move || finish(&db2, &mut t))
        .map_err(DbError::Io)?;
    job(db, &id)
}

/// Accepts a rebuild of dense fields of `index` (rules checked now; `None` keeps the current
/// value) and runs it on its own thread: batches under the index's read lock, the swap under its
/// write lock, then a checkpoint.
pub fn submit_rebuild(db: &Arc<Db>, index: &str, fields: &[FieldRebuild]) -> Result<Job, DbError> {
    let mut t =
        db.control(|e| e.begin_rebuild_fields(now_ms(), fsutil::entropy(), index, fields))??;
    let job = job(db, t.job())?;
    let db2 = db.clone();
    std::thread::Builder::new()
        .name(format!("rebuild-{}", job.job_id))
        .spawn(move || {
            fsutil::background_priority();
            let t0 = Instant::now();
            run(&db2, &mut t);
            log_end(&db2, t.job(), None);
            tracing::info!(
                job = t.job(),
                index = t.index(),
                ms = t0.elapsed().as_millis() as u64,
                "rebuild ended"
            );
        })
        .map_err(DbError::Io)?;
    Ok(job)
}

/// Asks a job to stop and waits (up to 10 s) for its task to acknowledge; returns the job.
pub fn cancel(db: &Db, id: &str) -> Result<Job, DbError> {
    db.control(|e| e.cancel(id, now_ms()))??;
    let t0 = Instant::now();
    loop {
        let j = job(db, id)?;
        if j.status != JobStatus::Cancelling || t0.elapsed() > Duration::from_secs(10) {
            return Ok(j);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn job(db: &Db, id: &str) -> Result<Job, DbError> {
    lock(&db.engine)
        .registry
        .get(id)
        .cloned()
        .ok_or_else(|| DbError::Internal(format!("job {id} vanished")))
}

/// Logs how a job ended; a backup's line says where its time went (the backup benchmark
/// reads it).
fn log_end(db: &Db, id: &str, time: Option<(IoTime, Duration)>) {
    let Ok(j) = job(db, id) else { return };
    crate::observe::job_ended(&j, time.map(|(_, d)| d));
    match (j.status, time) {
        // A restore's time that is not storage time is decoding (and fetching from a target).
        (JobStatus::Completed, Some((t, total))) => tracing::info!(
            job = id,
            kind = ?j.kind,
            backup = %j.backup_name,
            index = %j.index_name,
            bytes = j.archive_size.unwrap_or(j.bytes_total),
            pause_us = j.write_pause_us,
            total_ms = total.as_millis() as u64,
            read_ms = t.read_us / 1000,
            write_ms = t.append_us / 1000,
            sync_ms = t.sync_us / 1000,
            "job completed"
        ),
        (JobStatus::Completed, None) => {
            tracing::info!(job = id, kind = ?j.kind, pause_us = j.write_pause_us, "job completed")
        }
        (s, _) => {
            tracing::warn!(job = id, status = ?s, error = j.error.as_deref().unwrap_or(""), "job ended")
        }
    }
}

/// Reserves `name` and returns the upload task the HTTP body is fed into.
pub fn begin_upload(db: &Db, name: &str) -> Result<UploadTask, DbError> {
    Ok(db.control(|e| e.begin_upload(name))??)
}

/// Feeds one body chunk to an upload and writes it (blocking); an invalid archive stops it.
pub fn feed_upload(db: &Db, up: &mut UploadTask, chunk: Vec<u8>) -> Result<(), DbError> {
    up.feed(chunk);
    run(db, up);
    match up.error() {
        Some(e) => Err(upload_error(e)),
        None => Ok(()),
    }
}

/// Ends an upload: validated as an index, then published (or refused with nothing kept).
pub fn end_upload(db: &Db, mut up: UploadTask, abort: Option<DbError>) -> Result<(), DbError> {
    let reason = abort.as_ref().map(|e| e.to_string());
    match &reason {
        Some(r) => up.abort(r),
        None => up.end(),
    }
    run(db, &mut up);
    if let Some(e) = abort {
        return Err(e);
    }
    match up.error() {
        Some(e) => Err(upload_error(e)),
        None => Ok(()),
    }
}

fn upload_error(e: &str) -> DbError {
    if e.starts_with("invalid backup archive") {
        DbError::BadRequest(e.into())
    } else {
        DbError::Internal(e.into())
    }
}

/// Checks an archive file's structure and every digest by streaming it; writes nothing.
pub fn verify_digests(archive_path: &Path) -> Result<Manifest, DbError> {
    let f = BufReader::new(File::open(archive_path)?);
    archive::read_archive(f, &mut NullSink)
        .map_err(|e| DbError::BadRequest(format!("invalid backup archive: {e}")))
}
