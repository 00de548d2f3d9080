//! Deterministic simulation: a seeded mix of writes, backups, cancels, checkpoints, restores
//! and crashes over simulated storage that loses unsynced bytes. After every crash and
//! recovery: every acknowledged write is present, no job is left running, no partial archive is
//! listed, and every completed archive restores to exactly the index state at its cut.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use cairn_core::archive::{
    self, ArchiveWriter, CHECKPOINT_PATH, LOG_PATH, Manifest, MemorySink, Source,
};
use cairn_core::checkpoint::{CheckpointEncoder, read_checkpoint};
use cairn_core::engine::{IndexManifest, Outcome, paths};
use cairn_core::record::read_log;
use cairn_core::rng::SplitMix64;
use cairn_core::{
    CutPoint, Engine, Index, IndexParams, JobRegistry, JobStatus, Precision, SpaceType, UpsertItem,
};
use std::collections::BTreeMap;

/// A file: bytes, how many are durable, and whether its directory entry is durable.
#[derive(Clone, Default)]
struct SimFile {
    data: Vec<u8>,
    synced: usize,
    durable: bool,
}

#[derive(Default)]
struct SimFs {
    files: BTreeMap<String, SimFile>,
}

impl SimFs {
    fn append(&mut self, p: &str, b: &[u8]) {
        self.files
            .entry(p.into())
            .or_default()
            .data
            .extend_from_slice(b);
    }
    fn sync(&mut self, p: &str) {
        if let Some(f) = self.files.get_mut(p) {
            f.synced = f.data.len();
            f.durable = true;
        }
    }
    /// temp + fsync + rename + fsync dir: all or nothing.
    fn replace(&mut self, p: &str, b: Vec<u8>) {
        let n = b.len();
        self.files.insert(
            p.into(),
            SimFile {
                data: b,
                synced: n,
                durable: true,
            },
        );
    }
    fn read(&self, p: &str) -> Option<&[u8]> {
        self.files.get(p).map(|f| &f.data[..])
    }
    fn remove(&mut self, p: &str) {
        self.files.remove(p);
    }
    fn crash(&mut self) {
        self.files.retain(|_, f| f.durable);
        for f in self.files.values_mut() {
            f.data.truncate(f.synced);
        }
    }
}

type Model = BTreeMap<String, Vec<f32>>;

struct Pending {
    job: String,
    cut: CutPoint,
    snapshot: Model,
}

struct Host {
    fs: SimFs,
    engine: Engine,
    index: Index,
    log_len: u64,
    pending: Vec<Pending>,
    /// Completed archives and the state at their cut.
    archives: BTreeMap<String, Model>,
    model: Model,
    now: u64,
}

const IX: &str = "main";

fn params() -> IndexParams {
    IndexParams::new(6, SpaceType::L2)
        .with_precision(Precision::Float32)
        .with_hnsw(8, 32)
}

impl Host {
    fn new() -> Self {
        let mut h = Host {
            fs: SimFs::default(),
            engine: Engine::new(JobRegistry::new(50)),
            index: Index::new(params()).unwrap(),
            log_len: 0,
            pending: vec![],
            archives: BTreeMap::new(),
            model: Model::new(),
            now: 1_700_000_000_000,
        };
        h.engine.create_index(IX, params(), h.now).unwrap();
        h.fs.replace(
            &paths::checkpoint(IX, 1),
            CheckpointEncoder::new(&h.index).to_vec().unwrap(),
        );
        h.fs.replace(&paths::log(IX, 1), vec![]);
        h.fs.replace(
            &paths::index_manifest(IX),
            IndexManifest::new(IX, params(), 1, h.now).encode(),
        );
        h.persist_jobs();
        h
    }

    fn generation(&self) -> u64 {
        self.engine.index(IX).unwrap().generation
    }

    fn persist_jobs(&mut self) {
        let b = self.engine.registry.encode();
        self.fs.replace(paths::JOBS, b);
    }

    fn write(&mut self, r: &mut SplitMix64, crash_before_sync: bool) -> bool {
        let id = format!("v{}", r.below(40));
        let rec = if r.below(5) == 0 && self.model.contains_key(&id) {
            self.index.prepare_delete(vec![id.clone()]).unwrap()
        } else {
            let v: Vec<f32> = (0..6).map(|_| r.gaussian()).collect();
            let item = UpsertItem {
                id: id.clone(),
                vector: v,
                meta: vec![],
                filter: "{}".into(),
                norm: 1.0,
                sparse_indices: vec![],
                sparse_values: vec![],
            };
            self.index.prepare_upsert(vec![item]).unwrap()
        };
        let bytes = rec.encode();
        let log = paths::log(IX, self.generation());
        self.fs.append(&log, &bytes);
        if crash_before_sync {
            return false; // not acknowledged
        }
        self.fs.sync(&log);
        self.log_len += bytes.len() as u64;
        self.index.apply(&rec);
        match &rec {
            cairn_core::Record::Upsert(items) => {
                for it in items {
                    self.model.insert(it.id.clone(), it.vector.clone());
                }
            }
            cairn_core::Record::Delete(ids) => {
                for id in ids {
                    self.model.remove(id);
                }
            }
            _ => {}
        }
        true
    }

    fn backup(&mut self, r: &mut SplitMix64) {
        self.now += 1;
        let name = format!("b{}", r.below(12));
        let ent = [r.next_u64() as u8, 1, 2, 3, 4, 5];
        let Ok(job) = self.engine.submit_backup(self.now, ent, IX, &name) else {
            return;
        };
        self.persist_jobs();
        self.engine.start(&job.job_id, self.now).unwrap();
        let cut = CutPoint {
            generation: self.generation(),
            log_len: self.log_len,
            vector_count: self.index.len() as u64,
        };
        self.engine.cut(&job.job_id, cut).unwrap();
        self.persist_jobs();
        self.pending.push(Pending {
            job: job.job_id,
            cut,
            snapshot: self.model.clone(),
        });
    }

    /// Streams a pending backup; `crash_mid` stops after writing part of the temp file.
    fn run_backup(&mut self, i: usize, crash_mid: bool) -> bool {
        let p = &self.pending[i];
        let ckpt = self
            .fs
            .read(&paths::checkpoint(IX, p.cut.generation))
            .expect("pinned checkpoint exists")
            .to_vec();
        let log_all = self
            .fs
            .read(&paths::log(IX, p.cut.generation))
            .expect("pinned log exists");
        let log = log_all[..p.cut.log_len as usize].to_vec();
        let source = Source {
            host: "sim".into(),
            version: "0".into(),
        };
        let m = Manifest::for_backup(IX, params(), p.cut, self.now, source, &ckpt[..], &log[..])
            .unwrap();
        let mut w = ArchiveWriter::new(Vec::new(), m).unwrap();
        w.append(&ckpt[..]).unwrap();
        w.append(&log[..]).unwrap();
        let (bytes, size, sha) = w.finish().unwrap();
        let tmp = paths::backup_tmp(&p.job);
        if crash_mid {
            self.fs.append(&tmp, &bytes[..bytes.len() / 2]);
            return false;
        }
        self.fs.append(&tmp, &bytes);
        self.fs.sync(&tmp);
        let p = self.pending.remove(i);
        let name = self
            .engine
            .registry
            .get(&p.job)
            .unwrap()
            .backup_name
            .clone();
        // rename tmp → final (atomic)
        let f = self.fs.files.remove(&tmp).unwrap();
        self.fs.files.insert(paths::backup(&name), f);
        self.now += 1;
        let freed = self
            .engine
            .finish(&p.job, self.now, Outcome::Backup { size, sha256: sha })
            .unwrap();
        self.persist_jobs();
        self.delete_generations(freed.generations);
        self.archives.insert(name, p.snapshot);
        true
    }

    fn cancel(&mut self, i: usize) {
        let p = self.pending.remove(i);
        self.now += 1;
        let freed = self.engine.cancel(&p.job, self.now).unwrap();
        self.persist_jobs();
        self.fs.remove(&paths::backup_tmp(&p.job));
        self.delete_generations(freed.generations);
    }

    fn delete_generations(&mut self, gens: Vec<(String, u64)>) {
        for (ix, g) in gens {
            assert_ne!(g, self.generation(), "never delete the current generation");
            self.fs.remove(&paths::checkpoint(&ix, g));
            self.fs.remove(&paths::log(&ix, g));
        }
    }

    fn checkpoint(&mut self) {
        let g = self.generation() + 1;
        self.fs.replace(
            &paths::checkpoint(IX, g),
            CheckpointEncoder::new(&self.index).to_vec().unwrap(),
        );
        self.fs.replace(&paths::log(IX, g), vec![]);
        self.fs.replace(
            &paths::index_manifest(IX),
            IndexManifest::new(IX, params(), g, 0).encode(),
        );
        self.log_len = 0;
        let freed = self.engine.checkpoint_done(IX, g).unwrap();
        self.delete_generations(freed.generations);
    }

    fn restore_check(&self, name: &str) {
        let bytes = self
            .fs
            .read(&paths::backup(name))
            .expect("listed archive exists");
        let mut sink = MemorySink::default();
        let m = archive::read_archive(bytes, &mut sink).expect("completed archive validates");
        let ix = archive::restore_index(
            &m,
            &sink.files[CHECKPOINT_PATH][..],
            &sink.files[LOG_PATH][..],
        )
        .expect("restores");
        assert_same(&ix, &self.archives[name]);
    }

    fn crash_and_recover(&mut self) {
        self.fs.crash();
        self.pending.clear();
        let jobs = self.fs.read(paths::JOBS).expect("jobs file survives");
        let reg = JobRegistry::decode(jobs, 50).expect("jobs file readable after crash");
        self.engine = Engine::new(reg);
        let man = IndexManifest::decode(self.fs.read(&paths::index_manifest(IX)).unwrap()).unwrap();
        self.engine
            .load_index(IX, man.params.clone(), man.generation, man.created_at);
        let mut ix = read_checkpoint(
            self.fs
                .read(&paths::checkpoint(IX, man.generation))
                .expect("current checkpoint"),
        )
        .unwrap();
        let log_path = paths::log(IX, man.generation);
        let (records, valid, _) = read_log(self.fs.read(&log_path).unwrap_or(&[])).unwrap();
        for r in &records {
            ix.apply(r);
        }
        if let Some(f) = self.fs.files.get_mut(&log_path) {
            f.data.truncate(valid as usize);
        }
        self.log_len = valid;
        self.index = ix;
        // archives on storage, never the temp ones
        let names: Vec<String> = self
            .fs
            .files
            .keys()
            .filter_map(|k| {
                k.strip_prefix("backups/")?
                    .strip_suffix(".tar")
                    .map(String::from)
            })
            .filter(|n| !n.starts_with(".tmp/"))
            .collect();
        for n in &names {
            self.engine.load_backup(n);
        }
        self.now += 1;
        for p in self.engine.recover(self.now) {
            self.fs.remove(&p);
        }
        self.persist_jobs();
        // old generations no manifest points at are garbage after a restart
        let stale: Vec<String> = self
            .fs
            .files
            .keys()
            .filter(|k| k.starts_with("indexes/main/") && !k.ends_with("manifest.json"))
            .filter(|k| !k.contains(&format!("{:016}", man.generation)))
            .cloned()
            .collect();
        for k in stale {
            self.fs.remove(&k);
        }
        // invariants
        assert_same(&self.index, &self.model);
        assert!(
            self.engine.registry.active().next().is_none(),
            "no job left running"
        );
        assert!(
            !self.fs.files.keys().any(|k| k.starts_with("backups/.tmp/")),
            "partial files deleted"
        );
        let listed: Vec<&str> = self.engine.backup_names().collect();
        let done: Vec<&str> = self.archives.keys().map(|s| s.as_str()).collect();
        assert_eq!(listed, done, "exactly the completed archives are listed");
        for n in done {
            self.restore_check(n);
        }
    }
}

fn assert_same(ix: &Index, model: &Model) {
    assert_eq!(ix.len(), model.len());
    for (id, v) in model {
        assert_eq!(&ix.get(id).expect("acknowledged write present").vector, v);
    }
}

#[test]
fn seeded_simulation_of_writes_backups_and_crashes() {
    let (mut ops, mut crashes, mut backups_done, mut restores) = (0u64, 0u64, 0u64, 0u64);
    let seeds = 150;
    for seed in 0..seeds {
        let mut r = SplitMix64::new(seed);
        let mut h = Host::new();
        for _ in 0..120 {
            ops += 1;
            match r.below(100) {
                0..=54 => {
                    h.write(&mut r, false);
                }
                55..=62 => h.backup(&mut r),
                63..=72 if !h.pending.is_empty() => {
                    let i = r.below(h.pending.len() as u64) as usize;
                    if h.run_backup(i, false) {
                        backups_done += 1;
                    }
                }
                73..=75 if !h.pending.is_empty() => {
                    let i = r.below(h.pending.len() as u64) as usize;
                    h.cancel(i);
                }
                76..=82 => h.checkpoint(),
                83..=88 if !h.archives.is_empty() => {
                    let names: Vec<String> = h.archives.keys().cloned().collect();
                    h.restore_check(&names[r.below(names.len() as u64) as usize]);
                    restores += 1;
                }
                89..=93 => {
                    // crash in the middle of something
                    match r.below(3) {
                        0 => {
                            h.write(&mut r, true);
                        }
                        1 if !h.pending.is_empty() => {
                            h.run_backup(0, true);
                        }
                        _ => {}
                    }
                    h.crash_and_recover();
                    crashes += 1;
                }
                _ => {
                    h.write(&mut r, false);
                }
            }
            for j in h.engine.registry.list() {
                assert!(
                    j.status != JobStatus::Completed
                        || h.archives.contains_key(&j.backup_name)
                        || j.kind != cairn_core::JobKind::Backup
                );
            }
        }
        h.crash_and_recover();
        crashes += 1;
    }
    println!(
        "simulation: {seeds} seeds, {ops} operations, {crashes} crashes, {backups_done} backups completed, {restores} restores verified"
    );
    assert!(crashes > seeds && backups_done > 100);
}
