//! The shape of every multi-step protocol: a *task* says what IO to do next and takes the
//! result, in quinn-proto's style; a *host* executes. One host loop drives every task:
//!
//! ```text
//! loop {
//!     match task.poll(now) {
//!         Poll::Io(io)           => task.handle(host.perform(io)),     // read, append, sync, rename…
//!         Poll::Decode { .. }    => task.decode(&mut reader_over_range), // a decoder pulls a file range
//!         Poll::Engine           => host.engine(|e| task.engine(e, now)), // progress, cancel, conclude
//!         Poll::Wait { until_ms }=> sleep or yield to other work,
//!         Poll::Input            => hand it more input (an upload's next bytes),
//!         Poll::Done             => break,
//!     }
//! }
//! ```
//! [`step`] is one turn of that loop: the native host runs it on a thread until done, the
//! browser Worker runs a few turns between messages (so writes, searches and cancel
//! interleave with a backup), the simulation runs it over faulty storage and crashes between
//! any two turns. After every engine turn the engine's [`Effect`]s are performed here, so no
//! host has to remember them.

use crate::control::engine::{Effect, Engine};
use crate::control::generation;
use crate::engine::paths;
use crate::index::Index;
use crate::storage::Storage;
use crate::target::ArchiveTarget;
use std::collections::BTreeMap;
use std::io::{self, Read};

/// IO a task asks for. Paths are relative to the data directory, `/`-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Io {
    /// The size of a file (`Done::Size`, `None` if missing).
    Size {
        /// File.
        path: String,
    },
    /// Up to `len` bytes at `at` (`Done::Bytes`; short only at end of file).
    Read {
        /// File.
        path: String,
        /// Offset.
        at: u64,
        /// Most bytes wanted.
        len: usize,
    },
    /// Create or truncate a file (and its directory).
    Create {
        /// File.
        path: String,
    },
    /// Append bytes.
    Append {
        /// File.
        path: String,
        /// What to append.
        bytes: Vec<u8>,
    },
    /// Make a file's contents durable.
    Sync {
        /// File.
        path: String,
    },
    /// Rename a file or directory atomically, replacing a file at `to`.
    Rename {
        /// From.
        from: String,
        /// To.
        to: String,
    },
    /// Make the entries of a directory (creates, renames, removes in it) durable.
    SyncDir {
        /// Directory.
        dir: String,
    },
    /// Delete a file if present.
    Remove {
        /// File.
        path: String,
    },
    /// Delete a directory and everything under it, if present.
    RemoveTree {
        /// Directory.
        dir: String,
    },
    /// IO on a backup target's object store (see [`crate::target`]).
    Object {
        /// The target's configured name.
        target: String,
        /// What to do there.
        op: ObjectOp,
    },
}

/// One call on an [`ArchiveTarget`]; keys are relative to the target's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectOp {
    /// The size of an object (`Done::Size`).
    Size(String),
    /// Up to `len` bytes from `at` (`Done::Bytes`).
    Read {
        /// Object.
        key: String,
        /// Offset.
        at: u64,
        /// Most bytes wanted.
        len: usize,
    },
    /// Start writing an object (invisible until committed).
    Begin(String),
    /// Append to the object being written.
    Append {
        /// Object.
        key: String,
        /// What to append.
        bytes: Vec<u8>,
    },
    /// Make the object written visible.
    Commit(String),
    /// Abandon the object being written.
    Abort(String),
    /// Write a small object whole.
    Put {
        /// Object.
        key: String,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// Delete an object.
    Delete(String),
}

/// What an [`Io`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// Nothing to report.
    Unit,
    /// A size (`None`: no such file).
    Size(Option<u64>),
    /// Bytes read.
    Bytes(Vec<u8>),
    /// An upload begun on a target, with its id where the store has one.
    Upload(Option<String>),
}

/// What a task wants next.
#[derive(Debug)]
pub enum Poll {
    /// Perform this and hand the result to [`Task::handle`].
    Io(Io),
    /// Call [`Task::decode`] with a reader over `len` bytes of `path` from `at` (decoders
    /// of checkpoints and logs pull from a `Read`).
    Decode {
        /// File.
        path: String,
        /// Offset.
        at: u64,
        /// Bytes.
        len: u64,
    },
    /// Call [`Task::engine`] with the engine (progress, cancel, concluding).
    Engine,
    /// Call [`Task::read_index`] with index `name` borrowed shared (a host with threads
    /// holds its read lock: searches go on, writes wait for this call).
    ReadIndex {
        /// The index.
        name: String,
    },
    /// Call [`Task::write_index`] with index `name` borrowed exclusively (writes held).
    WriteIndex {
        /// The index.
        name: String,
    },
    /// Write a checkpoint of index `name` the way the host always does (a new generation
    /// with the index's in-memory state), then hand the result to [`Task::handle`].
    Checkpoint {
        /// The index.
        name: String,
    },
    /// Take the index the task built ([`Task::hand_over`]) and serve it as `name`, opening
    /// generation `generation`'s files, then hand the result to [`Task::handle`]. Before the
    /// job concludes, so a job seen completed names an index that answers.
    Serve {
        /// The index's name.
        name: String,
        /// Its generation on disk.
        generation: u64,
    },
    /// Run this decode (CPU work over a range of a file), and hand its result to
    /// [`Task::decoded`]: a host with threads may run it on another one and go on stepping
    /// the task meanwhile (the task then asks for the result with [`Poll::Collect`]); a
    /// single-threaded host runs it at once.
    Detach(Box<CheckpointDecode>),
    /// Hand the result of the [`Poll::Detach`]ed decode to [`Task::decoded`], waiting for it.
    Collect,
    /// Waiting for the host to hand it input (an upload's next bytes).
    Input,
    /// Nothing to do before `until_ms` (pacing): do other work, then poll again.
    Wait {
        /// When to poll again.
        until_ms: u64,
    },
    /// The task is over.
    Done,
}

/// A step machine of the control plane.
pub trait Task {
    /// What to do next. Polling again without handling a result repeats the request.
    fn poll(&mut self, now_ms: u64) -> Poll;
    /// The result of the last [`Poll::Io`].
    fn handle(&mut self, result: io::Result<Done>);
    /// Decodes from the range the last [`Poll::Decode`] named.
    fn decode(&mut self, reader: &mut dyn Read);
    /// Exchanges state with the engine after [`Poll::Engine`]: reads a cancel request,
    /// publishes progress, concludes.
    fn engine(&mut self, engine: &mut Engine, now_ms: u64);
    /// Works on the index a [`Poll::ReadIndex`] named (only tasks that ask for one).
    fn read_index(&mut self, _ix: &Index) {}
    /// Works on the index a [`Poll::WriteIndex`] named (only tasks that ask for one).
    fn write_index(&mut self, _ix: &mut Index) {}
    /// The index a [`Poll::Serve`] asks the host to serve (only tasks that ask for one).
    fn hand_over(&mut self) -> Option<Index> {
        None
    }
    /// The result of a [`Poll::Detach`]ed decode (only tasks that detach one).
    fn decoded(&mut self, _result: Result<Index, String>) {}
}

/// A checkpoint entry of an archive to decode into an index: work a task detaches
/// ([`Poll::Detach`]) so a host with threads runs it beside the task's IO. It reads only
/// `path[at..at + len]`; the task must not change that range until it has the result.
#[derive(Debug, Clone)]
pub struct CheckpointDecode {
    /// The archive.
    pub path: String,
    /// Where the checkpoint's bytes start.
    pub at: u64,
    /// How many there are.
    pub len: u64,
    /// The archive's manifest (the decoded params must match it).
    pub manifest: crate::archive::Manifest,
}

impl CheckpointDecode {
    /// Decodes from `reader` (over the named range), with every check of a checkpoint load.
    pub fn run(&self, reader: &mut dyn Read) -> Result<Index, String> {
        crate::archive::archived_checkpoint(&self.manifest, reader).map_err(|e| e.to_string())
    }
}

/// What a host lends a task: the engine (behind whatever lock it keeps) and storage.
pub trait TaskHost {
    /// Runs `f` on the engine.
    fn with_engine<R>(&mut self, f: impl FnOnce(&mut Engine) -> R) -> R;
    /// The data directory's storage.
    fn storage(&mut self) -> &mut dyn Storage;
    /// Writes the jobs file from the engine's registry, atomically. A host with threads
    /// serialises this (encode and write under one lock) so an older registry never lands
    /// after a newer one.
    fn persist_jobs(&mut self) -> io::Result<()> {
        let bytes = self.with_engine(|e| e.registry.encode());
        self.storage().replace(paths::JOBS, &bytes)
    }
    /// Runs `f` on index `name` borrowed shared; false if the host serves no such index.
    fn read_index(&mut self, _name: &str, _f: &mut dyn FnMut(&Index)) -> bool {
        false
    }
    /// Runs `f` on index `name` borrowed exclusively; false if the host serves no such index.
    fn write_index(&mut self, _name: &str, _f: &mut dyn FnMut(&mut Index)) -> bool {
        false
    }
    /// Checkpoints index `name` (see [`Poll::Checkpoint`]).
    fn checkpoint(&mut self, name: &str) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("this host cannot checkpoint index {name}"),
        ))
    }
    /// Backup target `name`; `None` if this host has no such target.
    fn target(&mut self, _name: &str) -> Option<&mut dyn ArchiveTarget> {
        None
    }
    /// Runs a detached decode; `None` if it runs elsewhere and [`TaskHost::collect`] hands
    /// its result later. The default runs it at once.
    fn detach(&mut self, job: CheckpointDecode) -> Option<Result<Index, String>> {
        let mut r = RangeReader::new(self.storage(), &job.path, job.at, job.len);
        Some(job.run(&mut r))
    }
    /// Waits for the decode [`TaskHost::detach`] sent elsewhere; `None` if there is none.
    fn collect(&mut self) -> Option<Result<Index, String>> {
        None
    }
    /// Serves `ix` as index `name` (files of generation `generation`), replacing nothing: the
    /// engine reserved the name. Vectors a deferred replay left unlinked are the host's to
    /// link (at once, or in the background where it has threads).
    fn serve(&mut self, name: &str, _generation: u64, _ix: Index) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("this host cannot serve index {name}"),
        ))
    }
}

/// Performs one [`Io`]: object IO on the host's target, the rest on its storage.
pub fn perform_on(host: &mut impl TaskHost, io: Io) -> io::Result<Done> {
    let Io::Object { target, op } = io else {
        return perform(host.storage(), io);
    };
    let t = host.target(&target).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no backup target named {target:?}"),
        )
    })?;
    match op {
        ObjectOp::Size(key) => t.size(&key).map(Done::Size),
        ObjectOp::Read { key, at, len } => t.read_at(&key, at, len).map(Done::Bytes),
        ObjectOp::Begin(key) => t.begin(&key).map(Done::Upload),
        ObjectOp::Append { key, bytes } => t.append(&key, &bytes).map(|_| Done::Unit),
        ObjectOp::Commit(key) => t.commit(&key).map(|_| Done::Unit),
        ObjectOp::Abort(key) => t.abort(&key).map(|_| Done::Unit),
        ObjectOp::Put { key, bytes } => t.put(&key, &bytes).map(|_| Done::Unit),
        ObjectOp::Delete(key) => t.delete(&key).map(|_| Done::Unit),
    }
}

/// Aborts the uploads ended jobs left open on backup target `target` (a crash mid-upload,
/// or a store that was down for the abort) and clears them from the job records; returns
/// how many went. One the store refuses again stays recorded for the next sweep.
pub fn sweep_uploads(host: &mut impl TaskHost, target: &str) -> io::Result<usize> {
    let stale = host.with_engine(|e| e.stale_uploads(target));
    let mut swept = 0;
    let mut first_err = None;
    for (job, key, upload) in stale {
        let Some(t) = host.target(target) else {
            break;
        };
        match t.abort_upload(&key, &upload) {
            Ok(()) => {
                let _ = host.with_engine(|e| e.set_upload(&job, None));
                swept += 1;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    apply_effects(host)?;
    match first_err {
        Some(e) if swept == 0 => Err(e),
        _ => Ok(swept),
    }
}

fn not_served(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("index {name:?} is not open"),
    )
}

/// A single-threaded host's lending: the engine and storage, borrowed for a turn, and the
/// open indexes when a task works on them.
pub struct Lend<'a> {
    /// The engine.
    pub engine: &'a mut Engine,
    /// The storage.
    pub st: &'a mut dyn Storage,
    /// The open indexes (`None`: this turn lends none).
    pub indexes: Option<&'a mut BTreeMap<String, Index>>,
    /// The backup targets (`None`: this turn lends none).
    pub targets: Option<&'a mut BTreeMap<String, Box<dyn ArchiveTarget>>>,
}

impl TaskHost for Lend<'_> {
    fn with_engine<R>(&mut self, f: impl FnOnce(&mut Engine) -> R) -> R {
        f(self.engine)
    }
    fn storage(&mut self) -> &mut dyn Storage {
        self.st
    }
    fn read_index(&mut self, name: &str, f: &mut dyn FnMut(&Index)) -> bool {
        match self.indexes.as_deref().and_then(|m| m.get(name)) {
            Some(ix) => {
                f(ix);
                true
            }
            None => false,
        }
    }
    fn write_index(&mut self, name: &str, f: &mut dyn FnMut(&mut Index)) -> bool {
        match self.indexes.as_deref_mut().and_then(|m| m.get_mut(name)) {
            Some(ix) => {
                f(ix);
                true
            }
            None => false,
        }
    }
    fn target(&mut self, name: &str) -> Option<&mut dyn ArchiveTarget> {
        let t = self.targets.as_deref_mut()?.get_mut(name)?;
        Some(t.as_mut())
    }
    fn serve(&mut self, name: &str, _generation: u64, mut ix: Index) -> io::Result<()> {
        let open = self.indexes.as_deref_mut().ok_or_else(|| {
            io::Error::other(format!("this turn lends no indexes to serve {name}"))
        })?;
        // Single-threaded: the restore's unlinked vectors are linked now.
        ix.link_pending(usize::MAX);
        open.insert(name.to_string(), ix);
        Ok(())
    }
    fn checkpoint(&mut self, name: &str) -> io::Result<()> {
        let ix = self
            .indexes
            .as_deref_mut()
            .and_then(|m| m.get_mut(name))
            .ok_or_else(|| not_served(name))?;
        generation::checkpoint_index(self.st, self.engine, name, ix)
            .map_err(|e| io::Error::other(e.to_string()))?;
        apply_effects(self)
    }
}

/// Where a task stands after one [`step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stepped {
    /// More to do: step again.
    Busy,
    /// Paced: step again at or after this time.
    Wait(u64),
    /// Needs input from the host before it can go on.
    Input,
    /// Finished (the engine has its outcome).
    Done,
}

/// Performs one [`Io`] on `st`.
pub fn perform(st: &mut dyn Storage, io: Io) -> io::Result<Done> {
    match io {
        Io::Size { path } => st.size(&path).map(Done::Size),
        Io::Read { path, at, len } => st.read_at(&path, at, len).map(Done::Bytes),
        Io::Create { path } => st.create(&path).map(|_| Done::Unit),
        Io::Append { path, bytes } => st.append(&path, &bytes).map(|_| Done::Unit),
        Io::Sync { path } => st.sync(&path).map(|_| Done::Unit),
        Io::Rename { from, to } => st.rename(&from, &to).map(|_| Done::Unit),
        Io::SyncDir { dir } => st.sync_dir(&dir).map(|_| Done::Unit),
        Io::Remove { path } => st.remove(&path).map(|_| Done::Unit),
        Io::RemoveTree { dir } => st.remove_tree(&dir).map(|_| Done::Unit),
        Io::Object { target, .. } => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("backup target {target:?}: object IO needs a host with targets"),
        )),
    }
}

/// Reads `len` bytes of a file from `at` through storage, 1 MiB at a time: a decoder's small
/// reads (a frame's 8-byte header) are served from the last chunk, not each a storage call.
pub struct RangeReader<'a> {
    st: &'a mut dyn Storage,
    path: String,
    /// Where the next storage read starts.
    at: u64,
    end: u64,
    /// The last chunk read and how much of it is consumed.
    chunk: Vec<u8>,
    used: usize,
}

impl<'a> RangeReader<'a> {
    /// A reader over `path[at..at + len]`.
    pub fn new(st: &'a mut dyn Storage, path: &str, at: u64, len: u64) -> Self {
        Self {
            st,
            path: path.into(),
            at,
            end: at.saturating_add(len),
            chunk: Vec::new(),
            used: 0,
        }
    }
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.used == self.chunk.len() {
            let want = (self.end.saturating_sub(self.at)).min(1 << 20) as usize;
            if want == 0 || buf.is_empty() {
                return Ok(0);
            }
            let got = self.st.read_at(&self.path, self.at, want)?;
            if got.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: ends before byte {}", self.path, self.end),
                ));
            }
            self.at += got.len() as u64;
            self.chunk = got;
            self.used = 0;
        }
        let n = buf.len().min(self.chunk.len() - self.used);
        buf[..n].copy_from_slice(&self.chunk[self.used..self.used + n]);
        self.used += n;
        Ok(n)
    }
}

/// Performs the engine's pending effects. Every one is attempted; the first error is
/// returned (the state they record is already in the engine: a failed delete leaves a
/// file the next start removes, a failed jobs-file write is retried with the next change).
pub fn apply_effects(host: &mut impl TaskHost) -> io::Result<()> {
    let effects = host.with_engine(|e| e.take_effects());
    let mut first = None;
    for e in effects {
        let r = match e {
            Effect::PersistJobs => host.persist_jobs(),
            Effect::Remove(files) => files.iter().try_for_each(|f| host.storage().remove(f)),
            Effect::RemoveTree(dir) => host.storage().remove_tree(&dir),
            Effect::RemoveIndex(name) => {
                let st = host.storage();
                st.remove(&paths::index_manifest(&name))
                    .and_then(|()| st.remove_tree(&paths::index_dir(&name)))
                    .and_then(|()| st.sync_dir("indexes"))
            }
            Effect::RemoveBackup(name) => {
                let st = host.storage();
                st.remove(&paths::backup(&name))
                    .and_then(|()| st.sync_dir("backups"))
            }
            Effect::RemoveUnpublished(name) => {
                let st = host.storage();
                match st.size(&paths::index_manifest(&name)) {
                    Ok(None) => st.remove_tree(&paths::index_dir(&name)),
                    Ok(Some(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// One turn of the host loop (see the module doc).
pub fn step(task: &mut dyn Task, host: &mut impl TaskHost, now_ms: u64) -> Stepped {
    match task.poll(now_ms) {
        Poll::Io(io) => {
            let r = perform_on(host, io);
            task.handle(r);
            Stepped::Busy
        }
        Poll::Decode { path, at, len } => {
            let mut r = RangeReader::new(host.storage(), &path, at, len);
            task.decode(&mut r);
            Stepped::Busy
        }
        Poll::Engine => {
            host.with_engine(|e| task.engine(e, now_ms));
            // The engine's effects are the host's job: the jobs file, freed generations.
            let _ = apply_effects(host);
            Stepped::Busy
        }
        Poll::ReadIndex { name } => {
            if !host.read_index(&name, &mut |ix| task.read_index(ix)) {
                task.handle(Err(not_served(&name)));
            }
            Stepped::Busy
        }
        Poll::WriteIndex { name } => {
            if !host.write_index(&name, &mut |ix| task.write_index(ix)) {
                task.handle(Err(not_served(&name)));
            }
            Stepped::Busy
        }
        Poll::Checkpoint { name } => {
            let r = host.checkpoint(&name);
            task.handle(r.map(|()| Done::Unit));
            Stepped::Busy
        }
        Poll::Serve { name, generation } => {
            let r = match task.hand_over() {
                Some(ix) => host.serve(&name, generation, ix),
                None => Err(io::Error::other(format!("no index to serve as {name}"))),
            };
            task.handle(r.map(|()| Done::Unit));
            Stepped::Busy
        }
        Poll::Detach(job) => {
            if let Some(r) = host.detach(*job) {
                task.decoded(r);
            }
            Stepped::Busy
        }
        Poll::Collect => {
            let r = host
                .collect()
                .unwrap_or_else(|| Err("no decode was detached".into()));
            task.decoded(r);
            Stepped::Busy
        }
        Poll::Wait { until_ms } => Stepped::Wait(until_ms),
        Poll::Input => Stepped::Input,
        Poll::Done => Stepped::Done,
    }
}
