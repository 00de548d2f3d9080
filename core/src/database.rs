//! A whole database for single-threaded hosts (the browser Worker, Node): indexes, durable
//! writes, checkpoints, backups, restores and recovery, doing IO only through a caller-supplied
//! [`Storage`]. Time and entropy are arguments. The file layout is the native host's
//! ([`crate::engine::paths`]), so data and archives move between hosts unchanged.

use crate::archive::{
    self, ArchiveWriter, CHECKPOINT_PATH, CheckpointDigest, EntrySink, LOG_PATH, Manifest,
    MemorySink, Source, encode_digest,
};
use crate::checkpoint::{self, read_checkpoint};
use crate::engine::{Deletable, EngineError, IndexManifest, Outcome, paths, validate_backup_name};
use crate::index::{Index, IndexError, SearchHit, SearchRequest, VectorRecord};
use crate::jobs::{CutPoint, DEFAULT_RETENTION, Job, JobRegistry};
use crate::originals::{CheckpointBytes, OriginalsLayout};
use crate::params::IndexParams;
use crate::record::{Record, checkpoint_due};
use crate::storage::{Storage, StorageReader};
use crate::{Engine, Filter, UpsertItem};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
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
}

type Result<T> = std::result::Result<T, DatabaseError>;

struct Open {
    index: Index,
    generation: u64,
    log_len: u64,
    /// Vectors the current log upserts (its replay cost).
    log_vectors: u64,
}

/// The database over storage `S`.
pub struct Database<S: Storage> {
    st: S,
    engine: Engine,
    open: BTreeMap<String, Open>,
    source: Source,
}

/// Appends through a [`Storage`] in large chunks (archive output).
struct StorageWriter<'a, S: Storage> {
    st: &'a RefCell<&'a mut S>,
    path: String,
    buf: Vec<u8>,
}

impl<S: Storage> Write for StorageWriter<'_, S> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.st.borrow_mut().append(&self.path, &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Reads of a checkpoint file in storage, for originals.
struct StorageBytes<'a, S: Storage> {
    st: &'a RefCell<&'a mut S>,
    path: String,
}

impl<S: Storage> CheckpointBytes for StorageBytes<'_, S> {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let got = self
            .st
            .borrow_mut()
            .read_at(&self.path, offset, buf.len())?;
        if got.len() != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: short read at {offset}", self.path),
            ));
        }
        buf.copy_from_slice(&got);
        Ok(())
    }
}

/// Where a checkpoint being written finds originals the index keeps on disk.
enum OriginalsFrom<'a> {
    /// A checkpoint file in storage (the index's current generation).
    Stored(String),
    /// Checkpoint bytes in memory (a restored archive's).
    Bytes(&'a [u8]),
}

struct Progress<'a, R> {
    inner: R,
    done: u64,
    total: u64,
    cb: &'a mut dyn FnMut(u64, u64),
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.cb)(self.done, self.total);
        Ok(n)
    }
}

/// Writes generation `g`'s checkpoint of index `name`, then its size and SHA-256 in the
/// digest file, so a backup reads the checkpoint once. Returns where its originals are: hand
/// it to [`Index::checkpointed`] once generation `g` is the index's.
fn write_checkpoint<S: Storage>(
    st: &mut S,
    name: &str,
    g: u64,
    ix: &Index,
    from: OriginalsFrom<'_>,
) -> io::Result<Option<OriginalsLayout>> {
    let path = paths::checkpoint(name, g);
    st.create(&path)?;
    let st = RefCell::new(st);
    let (size, sha, layout) = {
        let out = StorageWriter {
            st: &st,
            path: path.clone(),
            buf: Vec::new(),
        };
        let w = match from {
            OriginalsFrom::Stored(path) => {
                let mut src = StorageBytes { st: &st, path };
                checkpoint::write_checkpoint(ix, &mut src, out)?
            }
            OriginalsFrom::Bytes(mut b) => checkpoint::write_checkpoint(ix, &mut b, out)?,
        };
        let mut out = w.out;
        out.flush()?;
        (w.size, w.sha256, w.originals)
    };
    let mut st = st.borrow_mut();
    st.sync(&path)?;
    let dpath = paths::checkpoint_digest(name, g);
    st.create(&dpath)?;
    st.append(&dpath, encode_digest(&(size, sha)).as_bytes())?;
    st.sync(&dpath)?;
    Ok(layout)
}

impl<S: Storage> Database<S> {
    /// Opens the database on `st`, recovering after a crash: replays logs, cuts torn tails,
    /// fails interrupted jobs and deletes partial files. `host` names the source in archives.
    pub fn open(mut st: S, now: u64, host: &str) -> Result<Self> {
        let registry = match st.read_all(paths::JOBS)? {
            None => JobRegistry::default(),
            Some(b) => match JobRegistry::decode(&b, DEFAULT_RETENTION) {
                Ok(r) => r,
                Err(_) => {
                    // Keep the unreadable file aside; never pretend it was empty.
                    st.rename(paths::JOBS, &format!("{}.unreadable-{now}", paths::JOBS))?;
                    JobRegistry::default()
                }
            },
        };
        let mut db = Self {
            st,
            engine: Engine::new(registry),
            open: BTreeMap::new(),
            source: Source {
                host: host.into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
        };
        for p in db
            .st
            .list("indexes/.tmp/")?
            .into_iter()
            .chain(db.st.list("backups/.tmp/")?)
        {
            db.st.remove(&p)?;
        }
        let manifests: Vec<String> = db
            .st
            .list("indexes/")?
            .into_iter()
            .filter(|p| p.ends_with("/manifest.json"))
            .collect();
        for m in &manifests {
            let name = m
                .trim_start_matches("indexes/")
                .trim_end_matches("/manifest.json")
                .to_string();
            db.load_index(&name)?;
        }
        // Files of an index without a manifest belong to a create or restore that never committed.
        for f in db.st.list("indexes/")? {
            let dir = f.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            if !manifests.contains(&format!("{dir}/manifest.json")) {
                db.st.remove(&f)?;
            }
        }
        for p in db.st.list("backups/")? {
            if let Some(n) = p
                .strip_prefix("backups/")
                .and_then(|x| x.strip_suffix(".tar"))
                && validate_backup_name(n).is_ok()
            {
                db.engine.load_backup(n);
            }
        }
        for p in db.engine.recover(now) {
            for f in db.st.list(&p)? {
                db.st.remove(&f)?;
            }
        }
        db.persist_jobs()?;
        Ok(db)
    }

    fn load_index(&mut self, name: &str) -> Result<()> {
        let bytes = self
            .st
            .read_all(&paths::index_manifest(name))?
            .ok_or_else(|| DatabaseError::Corrupt(format!("{name}: no manifest")))?;
        let man = IndexManifest::decode(&bytes).map_err(DatabaseError::Corrupt)?;
        let g = man.generation;
        let ck = self
            .st
            .read_all(&paths::checkpoint(name, g))?
            .ok_or_else(|| DatabaseError::Corrupt(format!("{name}: checkpoint {g} missing")))?;
        let mut ix =
            read_checkpoint(&ck[..]).map_err(|e| DatabaseError::Corrupt(format!("{name}: {e}")))?;
        let log_path = paths::log(name, g);
        let log = self.st.read_all(&log_path)?.unwrap_or_default();
        let scan = ix
            .replay(&log[..])
            .map_err(|e| DatabaseError::Corrupt(format!("{name}: log: {e}")))?;
        let valid = scan.valid_len;
        if scan.torn {
            self.st.truncate(&log_path, valid)?;
            self.st.sync(&log_path)?;
        }
        let keep = [
            paths::checkpoint(name, g),
            paths::checkpoint_digest(name, g),
            paths::log(name, g),
            paths::index_manifest(name),
        ];
        for f in self.st.list(&format!("{}/", paths::index_dir(name)))? {
            if !keep.contains(&f) {
                self.st.remove(&f)?;
            }
        }
        self.engine
            .load_index(name, man.params.clone(), g, man.created_at);
        self.open.insert(
            name.into(),
            Open {
                index: ix,
                generation: g,
                log_len: valid,
                log_vectors: scan.upserted,
            },
        );
        Ok(())
    }

    fn persist_jobs(&mut self) -> Result<()> {
        let b = self.engine.registry.encode();
        self.st.replace(paths::JOBS, &b)?;
        Ok(())
    }

    /// The storage (for hosts that need to flush or inspect it).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.st
    }

    /// Gives the storage back (e.g. to simulate a crash and reopen).
    pub fn into_storage(self) -> S {
        self.st
    }

    fn get_open(&self, name: &str) -> Result<&Open> {
        self.open
            .get(name)
            .ok_or_else(|| EngineError::IndexNotFound(name.into()).into())
    }

    /// Creates an index.
    pub fn create_index(&mut self, name: &str, params: IndexParams, now: u64) -> Result<()> {
        let ix = Index::new(params.clone())?;
        self.engine.create_index(name, params.clone(), now)?;
        let r = (|| -> io::Result<()> {
            write_checkpoint(&mut self.st, name, 1, &ix, OriginalsFrom::Bytes(&[]))?;
            self.st.create(&paths::log(name, 1))?;
            self.st.sync(&paths::log(name, 1))?;
            self.st.replace(
                &paths::index_manifest(name),
                &IndexManifest::new(name, params, 1, now).encode(),
            )
        })();
        if let Err(e) = r {
            let _ = self.engine.delete_index(name);
            return Err(e.into());
        }
        self.open.insert(
            name.into(),
            Open {
                index: ix,
                generation: 1,
                log_len: 0,
                log_vectors: 0,
            },
        );
        Ok(())
    }

    /// Deletes an index unless a job uses it.
    pub fn delete_index(&mut self, name: &str) -> Result<()> {
        let d = self.engine.delete_index(name)?;
        self.open.remove(name);
        self.st.remove(&paths::index_manifest(name))?;
        self.delete_generations(&d)?;
        for f in self.st.list(&format!("{}/", paths::index_dir(name)))? {
            self.st.remove(&f)?;
        }
        Ok(())
    }

    /// Index names with their parameters, created time and vector count.
    pub fn list_indexes(&self) -> Vec<(String, IndexParams, u64, usize)> {
        self.open
            .iter()
            .map(|(n, o)| {
                (
                    n.clone(),
                    o.index.params().clone(),
                    self.engine.index(n).map(|e| e.created_at).unwrap_or(0),
                    o.index.len(),
                )
            })
            .collect()
    }

    /// One index (read-only).
    pub fn index(&self, name: &str) -> Result<&Index> {
        Ok(&self.get_open(name)?.index)
    }

    fn write(
        &mut self,
        name: &str,
        prepare: impl FnOnce(&Index) -> std::result::Result<Record, IndexError>,
    ) -> Result<usize> {
        self.engine.check_write(name)?;
        let o = self
            .open
            .get(name)
            .ok_or_else(|| EngineError::IndexNotFound(name.into()))?;
        let rec = prepare(&o.index)?;
        let bytes = rec.encode();
        let log = paths::log(name, o.generation);
        let good_len = o.log_len;
        let appended = self
            .st
            .append(&log, &bytes)
            .and_then(|()| self.st.sync(&log));
        if let Err(e) = appended {
            // Cut back to the last whole record before answering: the write the caller is told
            // failed must never replay, and the next record must start on a frame boundary.
            let _ = self
                .st
                .truncate(&log, good_len)
                .and_then(|()| self.st.sync(&log));
            return Err(e.into());
        }
        let o = self
            .open
            .get_mut(name)
            .ok_or_else(|| EngineError::IndexNotFound(name.into()))?;
        o.log_len += bytes.len() as u64;
        o.log_vectors += rec.upserted();
        let n = o.index.apply(&rec);
        let live = o.index.len() as u64;
        if checkpoint_due(o.log_len, o.log_vectors, live, CHECKPOINT_AFTER_BYTES) {
            self.checkpoint(name)?;
        }
        Ok(n)
    }

    /// Inserts or replaces vectors; durable when this returns.
    pub fn upsert(&mut self, name: &str, items: Vec<UpsertItem>) -> Result<usize> {
        self.write(name, |ix| ix.prepare_upsert(items))
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
        let o = self
            .open
            .get(name)
            .ok_or_else(|| EngineError::IndexNotFound(name.into()))?;
        let st = RefCell::new(&mut self.st);
        let mut src = StorageBytes {
            st: &st,
            path: paths::checkpoint(name, o.generation),
        };
        Ok(f(&o.index, &mut src)?)
    }

    /// Writes a new checkpoint generation and starts a new log.
    pub fn checkpoint(&mut self, name: &str) -> Result<()> {
        let o = self
            .open
            .get(name)
            .ok_or_else(|| EngineError::IndexNotFound(name.into()))?;
        let g = o.generation + 1;
        let from = OriginalsFrom::Stored(paths::checkpoint(name, o.generation));
        let layout = write_checkpoint(&mut self.st, name, g, &o.index, from)?;
        self.st.create(&paths::log(name, g))?;
        self.st.sync(&paths::log(name, g))?;
        let created = self.engine.index(name)?.created_at;
        let params = o.index.params().clone();
        self.st.replace(
            &paths::index_manifest(name),
            &IndexManifest::new(name, params, g, created).encode(),
        )?;
        if let Some(o) = self.open.get_mut(name) {
            o.generation = g;
            o.log_len = 0;
            o.log_vectors = 0;
            o.index.checkpointed(layout);
        }
        let d = self.engine.checkpoint_done(name, g)?;
        self.delete_generations(&d)?;
        Ok(())
    }

    fn delete_generations(&mut self, d: &Deletable) -> Result<()> {
        for (ix, g) in &d.generations {
            self.st.remove(&paths::checkpoint(ix, *g))?;
            let digest = paths::checkpoint_digest(ix, *g);
            if self.st.size(&digest)?.is_some() {
                self.st.remove(&digest)?;
            }
            self.st.remove(&paths::log(ix, *g))?;
        }
        Ok(())
    }

    /// Runs a backup job to the end (this host has one thread): submit (every rule), cut,
    /// stream into `backups/.tmp/<job>.tar`, sync, publish. `progress(done, total)` is called
    /// as bytes stream. Returns the finished job; a failure is recorded in the job and returned.
    pub fn backup(
        &mut self,
        index: &str,
        name: &str,
        now: u64,
        entropy: [u8; 6],
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Job> {
        let job = self.engine.submit_backup(now, entropy, index, name)?;
        let id = job.job_id.clone();
        self.persist_jobs()?;
        self.engine.start(&id, now)?;
        let o = self.get_open(index)?;
        let cut = CutPoint {
            generation: o.generation,
            log_len: o.log_len,
            vector_count: o.index.len() as u64,
        };
        let params = o.index.params().clone();
        self.engine.cut(&id, cut)?;
        self.persist_jobs()?;
        let tmp = paths::backup_tmp(&id);
        let res = self.stream_backup(index, &params, cut, now, &tmp, progress);
        let outcome = match &res {
            Ok((size, sha)) => {
                self.st.rename(&tmp, &paths::backup(name))?;
                Outcome::Backup {
                    size: *size,
                    sha256: sha.clone(),
                }
            }
            Err(e) => {
                let _ = self.st.remove(&tmp);
                Outcome::Failed(e.to_string())
            }
        };
        let d = self.engine.finish(&id, now, outcome)?;
        self.delete_generations(&d)?;
        self.persist_jobs()?;
        res?;
        self.engine
            .registry
            .get(&id)
            .cloned()
            .ok_or_else(|| DatabaseError::Corrupt("job vanished".into()))
    }

    fn stream_backup(
        &mut self,
        index: &str,
        params: &IndexParams,
        cut: CutPoint,
        now: u64,
        tmp: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(u64, String)> {
        let ck = paths::checkpoint(index, cut.generation);
        let log = paths::log(index, cut.generation);
        let ck_size = self
            .st
            .size(&ck)?
            .ok_or_else(|| DatabaseError::Corrupt("pinned checkpoint missing".into()))?;
        let source = self.source.clone();
        let record = self
            .st
            .read_all(&paths::checkpoint_digest(index, cut.generation))?;
        let st = RefCell::new(&mut self.st);
        let ck_digest = CheckpointDigest::from_record(
            record.as_deref(),
            ck_size,
            StorageReader::new(&st, &ck, 0, ck_size),
        );
        let log_r = StorageReader::new(&st, &log, 0, cut.log_len);
        let manifest = Manifest::for_backup_digested(
            index,
            params.clone(),
            cut,
            now,
            source,
            ck_digest,
            log_r,
        )?;
        let total = manifest.data_bytes();
        st.borrow_mut().create(tmp)?;
        let out = StorageWriter {
            st: &st,
            path: tmp.into(),
            buf: Vec::new(),
        };
        let mut w = ArchiveWriter::new(out, manifest)?;
        let mut r = Progress {
            inner: StorageReader::new(&st, &ck, 0, ck_size),
            done: 0,
            total,
            cb: progress,
        };
        w.append(&mut r)?;
        let done = r.done;
        let mut r = Progress {
            inner: StorageReader::new(&st, &log, 0, cut.log_len),
            done,
            total,
            cb: progress,
        };
        w.append(&mut r)?;
        let (mut out, size, sha) = w.finish()?;
        out.flush()?;
        drop(out);
        st.borrow_mut().sync(tmp)?;
        Ok((size, sha))
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
            .ok_or_else(|| EngineError::Job(crate::jobs::JobError::NotFound(id.into())).into())
    }

    /// Cancels a queued or running job.
    pub fn cancel(&mut self, id: &str, now: u64) -> Result<Job> {
        let d = self.engine.cancel(id, now)?;
        self.delete_generations(&d)?;
        let _ = self.st.remove(&paths::backup_tmp(id));
        self.persist_jobs()?;
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

    /// The verified manifest of a published archive.
    pub fn backup_info(&mut self, name: &str) -> Result<Manifest> {
        let bytes = self.export_backup(name)?;
        Ok(archive::read_archive(&bytes[..], &mut NullSink)?)
    }

    /// Validates an archive whole, then publishes it under `name`. Nothing is kept on failure.
    pub fn import_backup(&mut self, name: &str, bytes: &[u8]) -> Result<Manifest> {
        self.engine.begin_upload(name)?;
        let tmp = paths::upload_tmp(name);
        let r = (|| -> Result<Manifest> {
            let m = archive::read_archive(bytes, &mut NullSink)?;
            self.st.create(&tmp)?;
            self.st.append(&tmp, bytes)?;
            self.st.sync(&tmp)?;
            self.st.rename(&tmp, &paths::backup(name))?;
            Ok(m)
        })();
        if r.is_err() {
            let _ = self.st.remove(&tmp);
        }
        self.engine.finish_upload(name, r.is_ok());
        r
    }

    /// Deletes an archive unless a job uses it.
    pub fn delete_backup(&mut self, name: &str) -> Result<()> {
        self.engine.delete_backup(name)?;
        self.st.remove(&paths::backup(name))?;
        Ok(())
    }

    /// Restores archive `backup` into a new index `target` as a job; the index is published
    /// only when complete.
    pub fn restore(
        &mut self,
        backup: &str,
        target: &str,
        now: u64,
        entropy: [u8; 6],
    ) -> Result<Job> {
        let job = self.engine.submit_restore(now, entropy, backup, target)?;
        let id = job.job_id.clone();
        self.persist_jobs()?;
        self.engine.start(&id, now)?;
        let res = self.build_restored(backup, target, &id, now);
        let outcome = match &res {
            Ok(params) => Outcome::Restore {
                params: params.clone(),
                generation: 1,
            },
            Err(e) => Outcome::Failed(e.to_string()),
        };
        self.engine.finish(&id, now, outcome)?;
        self.persist_jobs()?;
        res?;
        self.job(&id)
    }

    fn build_restored(
        &mut self,
        backup: &str,
        target: &str,
        job: &str,
        now: u64,
    ) -> Result<IndexParams> {
        let bytes = self
            .st
            .read_all(&paths::backup(backup))?
            .ok_or_else(|| EngineError::BackupNotFound(backup.into()))?;
        let _ = self.engine.registry.progress(job, 0, bytes.len() as u64);
        let mut sink = MemorySink::default();
        let m = archive::read_archive(&bytes[..], &mut sink)?;
        let empty = Vec::new();
        let ck = &sink.files.get(CHECKPOINT_PATH).unwrap_or(&empty)[..];
        let mut ix =
            archive::restore_index(&m, ck, &sink.files.get(LOG_PATH).unwrap_or(&empty)[..])?;
        // Stage under the temp dir, then publish the manifest last: it is the commit point.
        let params = ix.params().clone();
        let layout = write_checkpoint(&mut self.st, target, 1, &ix, OriginalsFrom::Bytes(ck))?;
        ix.checkpointed(layout);
        self.st.create(&paths::log(target, 1))?;
        self.st.sync(&paths::log(target, 1))?;
        self.st.replace(
            &paths::index_manifest(target),
            &IndexManifest::new(target, params.clone(), 1, now).encode(),
        )?;
        let _ = self
            .engine
            .registry
            .progress(job, bytes.len() as u64, bytes.len() as u64);
        self.open.insert(
            target.into(),
            Open {
                index: ix,
                generation: 1,
                log_len: 0,
                log_vectors: 0,
            },
        );
        Ok(params)
    }
}

struct NullSink;

impl EntrySink for NullSink {
    fn entry(&mut self, _path: &str, _size: u64, data: &mut dyn Read) -> io::Result<()> {
        io::copy(data, &mut io::sink()).map(|_| ())
    }
}
