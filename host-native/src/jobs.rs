//! Backup and restore jobs on their own threads, and archive uploads.

use crate::archive_out::{HashBehind, PacedFile};
use crate::db::{Db, DbError, PreadFile, file_name, lock, write_checkpoint};
use crate::fsutil::{self, now_ms};
use cairn_core::archive::{
    self, ArchiveWriter, CHECKPOINT_PATH, CheckpointDigest, EntrySink, LOG_PATH, Manifest, Source,
};
use cairn_core::engine::{IndexManifest, Outcome, paths};
use cairn_core::{CutPoint, Job, JobStatus};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Bytes between progress updates.
const PROGRESS_STEP: u64 = 4 << 20;

/// Counts bytes for progress and stops when the job is cancelled.
struct Tracked<'a, R> {
    inner: R,
    db: &'a Db,
    job: &'a str,
    cancel: &'a AtomicBool,
    done: u64,
    total: u64,
    last: u64,
}

impl<R: Read> Read for Tracked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("cancelled"));
        }
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.last >= PROGRESS_STEP || n == 0 {
            self.last = self.done;
            let _ = lock(&self.db.engine)
                .registry
                .progress(self.job, self.done, self.total);
        }
        Ok(n)
    }
}

/// Test hook: `CAIRN_TEST_BACKUP_DELAY_MS` holds a running backup after its cut (checking for
/// cancellation), so tests can observe the running state deterministically. Unset in production.
fn test_delay(cancel: &AtomicBool) -> Result<(), String> {
    let ms: u64 = std::env::var("CAIRN_TEST_BACKUP_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let until = Instant::now() + std::time::Duration::from_millis(ms);
    while Instant::now() < until {
        if cancel.load(Ordering::Relaxed) {
            return Err("cancelled".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Ok(())
}

fn register_cancel(db: &Db, job: &str) -> Arc<AtomicBool> {
    let f = Arc::new(AtomicBool::new(false));
    lock(&db.cancel_flags).insert(job.into(), f.clone());
    f
}

/// Cancels a job: the engine marks it, the worker sees the flag and cleans up.
pub fn cancel(db: &Db, job: &str) -> Result<Job, DbError> {
    let freed = lock(&db.engine).cancel(job, now_ms())?;
    if let Some(f) = lock(&db.cancel_flags).get(job) {
        f.store(true, Ordering::SeqCst);
    }
    db.delete_generations(&freed);
    db.persist_jobs()?;
    let j = lock(&db.engine).registry.get(job).cloned();
    j.ok_or_else(|| DbError::Internal("job vanished".into()))
}

/// Accepts a backup (every rule checked now) and starts its thread.
pub fn submit_backup(db: &Arc<Db>, index: &str, name: &str) -> Result<Job, DbError> {
    let job = lock(&db.engine).submit_backup(now_ms(), fsutil::entropy(), index, name)?;
    if let Err(e) = db.persist_jobs() {
        let _ = lock(&db.engine).finish(&job.job_id, now_ms(), Outcome::Failed(e.to_string()));
        return Err(e);
    }
    let cancel = register_cancel(db, &job.job_id);
    let (db2, id) = (db.clone(), job.job_id.clone());
    std::thread::Builder::new()
        .name(format!("backup-{id}"))
        .spawn(move || run_backup(&db2, &id, &cancel))
        .map_err(DbError::Io)?;
    Ok(job)
}

fn finish_failed(db: &Db, job: &str, err: String, tmp: &Path) {
    let _ = fsutil::remove_any(tmp);
    let freed = lock(&db.engine).finish(job, now_ms(), Outcome::Failed(err.clone()));
    match freed {
        Ok(d) => {
            tracing::warn!(job, error = %err, "job failed");
            db.delete_generations(&d);
        }
        Err(_) => tracing::info!(job, "job stopped (cancelled)"),
    }
    if let Err(e) = db.persist_jobs() {
        tracing::error!(error = %e, "could not persist jobs file");
    }
    lock(&db.cancel_flags).remove(job);
}

fn run_backup(db: &Arc<Db>, job: &str, cancel: &AtomicBool) {
    let tmp = db.path(&paths::backup_tmp(job));
    match backup_inner(db, job, cancel, &tmp) {
        Ok(()) => {
            lock(&db.cancel_flags).remove(job);
        }
        Err(e) => finish_failed(db, job, e, &tmp),
    }
}

fn backup_inner(db: &Arc<Db>, job: &str, cancel: &AtomicBool, tmp: &Path) -> Result<(), String> {
    let index = {
        let mut eng = lock(&db.engine);
        eng.start(job, now_ms()).map_err(|e| e.to_string())?;
        eng.registry
            .get(job)
            .map(|j| j.index_name.clone())
            .ok_or("job vanished")?
    };
    db.persist_jobs().map_err(|e| e.to_string())?;
    let h = db.handle(&index).map_err(|e| e.to_string())?;
    // The cut: O(1) under the writer lock. Writes wait only for this.
    let t0 = Instant::now();
    let cut = {
        let w = lock(&h.writer);
        let count = h.index.read().map(|ix| ix.len()).unwrap_or(0) as u64;
        let cut = CutPoint {
            generation: w.generation,
            log_len: w.log_len,
            vector_count: count,
        };
        lock(&db.engine).cut(job, cut).map_err(|e| e.to_string())?;
        cut
    };
    let pause = t0.elapsed().as_micros() as u64;
    let _ = lock(&db.engine).record_pause(job, pause);
    db.persist_jobs().map_err(|e| e.to_string())?;
    test_delay(cancel)?;
    let (params, name) = {
        let eng = lock(&db.engine);
        let p = eng.index(&index).map_err(|e| e.to_string())?.params.clone();
        let n = eng
            .registry
            .get(job)
            .map(|j| j.backup_name.clone())
            .ok_or("job vanished")?;
        (p, n)
    };
    let ck_path = db.path(&paths::checkpoint(&index, cut.generation));
    let log_path = db.path(&paths::log(&index, cut.generation));
    let ck_size = fs::metadata(&ck_path)
        .map_err(|e| format!("checkpoint: {e}"))?
        .len();
    let need = ck_size + cut.log_len + (1 << 20);
    let avail = fs2::available_space(db.path("backups")).map_err(|e| e.to_string())?;
    if avail < need {
        return Err(format!(
            "insufficient disk space: need {need} bytes, available {avail} bytes"
        ));
    }
    let open_log = || -> io::Result<io::Take<BufReader<File>>> {
        Ok(BufReader::new(File::open(&log_path)?).take(cut.log_len))
    };
    let mut ck_r = BufReader::new(File::open(&ck_path).map_err(|e| e.to_string())?);
    let source = Source {
        host: "native".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let log_r = open_log().map_err(|e| e.to_string())?;
    // The checkpoint's digest was recorded when it was written; without a usable record
    // (an older data directory) the manifest digests it, and it is read twice.
    let t_digest = Instant::now();
    let record = fs::read(db.path(&paths::checkpoint_digest(&index, cut.generation))).ok();
    let ck = CheckpointDigest::from_record(record.as_deref(), ck_size, &mut ck_r);
    let digest_read = ck.needs_read();
    let manifest = Manifest::for_backup_digested(&index, params, cut, now_ms(), source, ck, log_r)
        .map_err(|e| e.to_string())?;
    let digest_ms = t_digest.elapsed().as_millis() as u64;
    let total = manifest.data_bytes();
    let file = File::create(tmp).map_err(|e| e.to_string())?;
    let out = HashBehind::new(PacedFile::new(file)).map_err(|e| e.to_string())?;
    let t_stream = Instant::now();
    let mut w = ArchiveWriter::with_sink(out, manifest).map_err(|e| e.to_string())?;
    ck_r.rewind().map_err(|e| e.to_string())?;
    let mut tr = Tracked {
        inner: ck_r,
        db,
        job,
        cancel,
        done: 0,
        total,
        last: 0,
    };
    w.append(&mut tr).map_err(|e| e.to_string())?;
    let done = tr.done;
    let mut tr = Tracked {
        inner: open_log().map_err(|e| e.to_string())?,
        db,
        job,
        cancel,
        done,
        total,
        last: done,
    };
    w.append(&mut tr).map_err(|e| e.to_string())?;
    let (out, size, sha) = w.finish().map_err(|e| e.to_string())?;
    let stream_ms = t_stream.elapsed().as_millis() as u64;
    let t_sync = Instant::now();
    out.finish().map_err(|e| e.to_string())?;
    let sync_ms = t_sync.elapsed().as_millis() as u64;
    // Publish under the engine lock so a concurrent cancel either wins before or not at all.
    let final_path = db.path(&paths::backup(&name));
    let freed = {
        let mut eng = lock(&db.engine);
        if cancel.load(Ordering::SeqCst)
            || eng.registry.get(job).map(|j| j.status) != Some(JobStatus::Running)
        {
            return Err("cancelled".into());
        }
        fs::rename(tmp, &final_path).map_err(|e| e.to_string())?;
        fsutil::sync_dir(&db.path("backups")).map_err(|e| e.to_string())?;
        eng.finish(job, now_ms(), Outcome::Backup { size, sha256: sha })
            .map_err(|e| e.to_string())?
    };
    db.delete_generations(&freed);
    if let Err(e) = db.persist_jobs() {
        // The archive is complete and published; only the history write failed.
        tracing::error!(job, error = %e, "backup completed but the jobs file could not be written");
    }
    tracing::info!(
        job,
        backup = %name,
        bytes = size,
        pause_us = pause,
        digest_ms,
        digest_read,
        stream_ms,
        sync_ms,
        "backup completed"
    );
    Ok(())
}

/// Writes validated entries into a directory (names are the archive's, already checked safe).
struct DirSink {
    dir: PathBuf,
}

impl EntrySink for DirSink {
    fn entry(&mut self, path: &str, _size: u64, data: &mut dyn Read) -> io::Result<()> {
        let file = match path {
            CHECKPOINT_PATH => "checkpoint.bin",
            LOG_PATH => "log.bin",
            _ => return Err(io::Error::other("unexpected entry")),
        };
        let mut f = BufWriter::new(File::create(self.dir.join(file))?);
        io::copy(data, &mut f)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()
    }
}

/// Drains entries: validation (sizes, digests, structure) without keeping data.
struct NullSink;

impl EntrySink for NullSink {
    fn entry(&mut self, _path: &str, _size: u64, data: &mut dyn Read) -> io::Result<()> {
        io::copy(data, &mut io::sink()).map(|_| ())
    }
}

/// Checks an archive file's structure and every digest by streaming it; writes nothing.
pub fn verify_digests(archive_path: &Path) -> Result<Manifest, DbError> {
    let f = BufReader::new(File::open(archive_path)?);
    archive::read_archive(f, &mut NullSink)
        .map_err(|e| DbError::BadRequest(format!("invalid backup archive: {e}")))
}

/// Validates an archive file completely, extracting its entries into `dir`.
pub fn validate_into(archive_path: &Path, dir: &Path) -> Result<Manifest, DbError> {
    fs::create_dir_all(dir)?;
    let f = BufReader::new(File::open(archive_path)?);
    archive::read_archive(
        f,
        &mut DirSink {
            dir: dir.to_path_buf(),
        },
    )
    .map_err(|e| DbError::BadRequest(format!("invalid backup archive: {e}")))
}

/// Accepts a restore (rules checked now). `wait` runs it on this thread and returns the result.
pub fn submit_restore(
    db: &Arc<Db>,
    backup: &str,
    target: &str,
    wait: bool,
) -> Result<Job, DbError> {
    let job = lock(&db.engine).submit_restore(now_ms(), fsutil::entropy(), backup, target)?;
    db.persist_jobs()?;
    let cancel = register_cancel(db, &job.job_id);
    if wait {
        run_restore(db, &job.job_id, &cancel)?;
        let j = lock(&db.engine).registry.get(&job.job_id).cloned();
        return j.ok_or_else(|| DbError::Internal("job vanished".into()));
    }
    let (db2, id) = (db.clone(), job.job_id.clone());
    std::thread::Builder::new()
        .name(format!("restore-{id}"))
        .spawn(move || {
            let _ = run_restore(&db2, &id, &cancel);
        })
        .map_err(DbError::Io)?;
    Ok(job)
}

fn run_restore(db: &Arc<Db>, job: &str, cancel: &AtomicBool) -> Result<(), DbError> {
    let tmp = db.path(&paths::restore_tmp(job));
    let r = restore_inner(db, job, cancel, &tmp);
    lock(&db.cancel_flags).remove(job);
    match r {
        Ok(()) => Ok(()),
        Err(e) => {
            let msg = e.to_string();
            let _ = fsutil::remove_any(&tmp);
            let _ = lock(&db.engine).finish(job, now_ms(), Outcome::Failed(msg.clone()));
            db.persist_jobs()?;
            Err(e)
        }
    }
}

fn restore_inner(db: &Arc<Db>, job: &str, cancel: &AtomicBool, tmp: &Path) -> Result<(), DbError> {
    let (backup, target) = {
        let mut eng = lock(&db.engine);
        eng.start(job, now_ms())?;
        let j = eng
            .registry
            .get(job)
            .ok_or_else(|| DbError::Internal("job vanished".into()))?;
        (j.backup_name.clone(), j.index_name.clone())
    };
    let archive_path = db.path(&paths::backup(&backup));
    let total = fs::metadata(&archive_path)?.len();
    let _ = lock(&db.engine).registry.progress(job, 0, total);
    let extract = tmp.join("extract");
    let manifest = validate_into(&archive_path, &extract)?;
    if cancel.load(Ordering::SeqCst) {
        return Err(DbError::BadRequest("cancelled".into()));
    }
    let ck = File::open(extract.join("checkpoint.bin"))?;
    let log = BufReader::new(File::open(extract.join("log.bin"))?);
    let ix = archive::restore_index(&manifest, BufReader::new(&ck), log)
        .map_err(|e| DbError::BadRequest(format!("invalid backup archive: {e}")))?;
    // Lay out the new index in the temp dir, then publish it with one rename.
    let stage = tmp.join("index");
    fs::create_dir_all(&stage)?;
    let staged = |p: String| stage.join(file_name(&p));
    write_checkpoint(
        &staged(paths::checkpoint(&target, 1)),
        &staged(paths::checkpoint_digest(&target, 1)),
        &ix,
        &mut PreadFile(&ck),
    )?;
    fsutil::create_synced(&staged(paths::log(&target, 1)))?;
    let params = ix.params().clone();
    fsutil::replace_atomic(
        &stage.join("manifest.json"),
        &IndexManifest::new(&target, params.clone(), 1, now_ms()).encode(),
    )?;
    drop(ix);
    {
        let mut eng = lock(&db.engine);
        if cancel.load(Ordering::SeqCst)
            || eng.registry.get(job).map(|j| j.status) != Some(JobStatus::Running)
        {
            return Err(DbError::BadRequest("cancelled".into()));
        }
        fs::rename(&stage, db.path(&paths::index_dir(&target)))?;
        fsutil::sync_dir(&db.path("indexes"))?;
        eng.finish(
            job,
            now_ms(),
            Outcome::Restore {
                params,
                generation: 1,
            },
        )?;
    }
    db.adopt_index(&target)?;
    fsutil::remove_any(tmp)?;
    db.persist_jobs()?;
    tracing::info!(job, backup = %backup, index = %target, "restore completed");
    Ok(())
}

/// Publishes an uploaded archive already written to its temp path: validates it whole first.
/// On any failure the temp file is removed and the name released.
pub fn publish_upload(db: &Db, name: &str, tmp: &Path) -> Result<(), DbError> {
    let res = (|| -> Result<(), DbError> {
        fs::File::open(tmp)?.sync_all()?;
        // Contents validated as an index (not only as a tar): an archive that would load
        // into something a search or insert could trip over is refused here.
        archive::verify_archive(BufReader::new(File::open(tmp)?))
            .map_err(|e| DbError::BadRequest(format!("invalid backup archive: {e}")))?;
        fs::rename(tmp, db.path(&paths::backup(name)))?;
        fsutil::sync_dir(&db.path("backups"))?;
        Ok(())
    })();
    if res.is_err() {
        let _ = fsutil::remove_any(tmp);
    }
    lock(&db.engine).finish_upload(name, res.is_ok());
    res
}
