//! Recovery at open, one protocol for every host. [`open_engine`] reads the jobs file, fails
//! interrupted jobs and deletes their partial files, clears the staging folders, and lists
//! what is there; then [`recover_index`] brings each index back from its files: checkpoint,
//! log replay (every record checked), a torn tail cut, stale generations removed. The native
//! server runs `recover_index` on a loader thread while it already answers; the browser and
//! Node run it inline. Either way the result goes to [`Engine::load_index`], a failure to
//! [`Engine::mark_broken`]: one bad index never keeps the others (or the server) from opening,
//! and its files are left for a human to look at.

use crate::checkpoint::read_checkpoint;
use crate::control::engine::{Engine, IndexManifest, LogState, paths, validate_backup_name};
use crate::control::task::{Lend, RangeReader, apply_effects};
use crate::index::Index;
use crate::params::validate_stored_name;
use crate::registry::{DEFAULT_RETENTION, JobRegistry};
use crate::storage::Storage;
use std::collections::BTreeSet;
use std::io::{self, BufReader};
use thiserror::Error;

/// Why an index could not be brought back.
#[derive(Debug, Error)]
pub enum RecoveryError {
    /// Storage failed while reading it.
    #[error("storage error: {0}")]
    Io(#[from] io::Error),
    /// Its files are missing or damaged (the message says which and how).
    #[error("{0}")]
    Damaged(String),
}

/// The engine as recovery left it, and what is left for the host to do.
pub struct Opened {
    /// The control plane: jobs from the jobs file (interrupted ones failed), archives listed,
    /// every index found marked loading.
    pub engine: Engine,
    /// Indexes to bring back with [`recover_index`].
    pub indexes: Vec<String>,
    /// What recovery did that an operator should hear about.
    pub notes: Vec<String>,
}

/// Opens the control plane on `st` (see the module doc). `now` (ms) stamps the jobs recovery
/// fails. An effect that fails (a partial file that could not be deleted) is noted, not fatal:
/// the next start deletes it.
pub fn open_engine(st: &mut dyn Storage, now: u64) -> io::Result<Opened> {
    let mut notes = Vec::new();
    let registry = match st.read_all(paths::JOBS)? {
        None => JobRegistry::default(),
        Some(b) => match JobRegistry::decode(&b, DEFAULT_RETENTION) {
            Ok(r) => r,
            Err(e) => {
                // Kept aside, never pretended empty: the history may matter to someone.
                let aside = format!("{}.unreadable-{now}", paths::JOBS);
                st.rename(paths::JOBS, &aside)?;
                notes.push(format!(
                    "jobs file unreadable ({e}); kept as {aside}, starting with no job history"
                ));
                JobRegistry::default()
            }
        },
    };
    let mut engine = Engine::new(registry);
    // Interrupted jobs first: their partial files (an unpublished restore included) go
    // before indexes are looked for.
    engine.recover(now);
    if let Err(e) = apply_effects(&mut Lend {
        engine: &mut engine,
        st,
        indexes: None,
        targets: None,
    }) {
        notes.push(format!(
            "could not clean up after an interrupted job ({e}); retried at the next start"
        ));
    }
    for dir in ["indexes/.tmp", "backups/.tmp", paths::TMP_DIR] {
        if let Err(e) = st.remove_tree(dir) {
            notes.push(format!(
                "could not clear {dir} ({e}); retried at the next start"
            ));
        }
    }
    let mut indexes = BTreeSet::new();
    for f in st.list("indexes/")? {
        let rest = &f["indexes/".len()..];
        let Some((dir, _)) = rest.split_once('/') else {
            if validate_stored_name(rest).is_ok() {
                // Reported under its name (a create of it would collide), left alone.
                engine.mark_broken(rest, "not a directory: a file is in the index's place");
            }
            notes.push(format!("ignoring {f}: not inside an index folder"));
            continue;
        };
        if dir.starts_with('.') || indexes.contains(dir) {
            continue;
        }
        if validate_stored_name(dir).is_err() {
            notes.push(format!("ignoring indexes/{dir}: not an index name"));
            continue;
        }
        indexes.insert(dir.to_string());
    }
    for p in st.list("backups/")? {
        if let Some(n) = p
            .strip_prefix("backups/")
            .and_then(|x| x.strip_suffix(".tar"))
            && validate_backup_name(n).is_ok()
        {
            engine.load_backup(n);
        }
    }
    let mut kept = Vec::new();
    for name in indexes {
        if uncommitted_create(st, &name)? {
            // Files of a create that never reached its manifest hold nothing: they go.
            st.remove_tree(&paths::index_dir(&name))?;
            notes.push(format!(
                "removed indexes/{name}: a create that never committed"
            ));
            continue;
        }
        engine.mark_loading(&name);
        kept.push(name);
    }
    Ok(Opened {
        engine,
        indexes: kept,
        notes,
    })
}

/// True for a folder without a manifest whose files are only generation 1's with an empty
/// log: what a create leaves when it stops before its commit point (the manifest). Anything
/// else without a manifest may hold data and is reported damaged instead, untouched.
fn uncommitted_create(st: &mut dyn Storage, name: &str) -> io::Result<bool> {
    if st.size(&paths::index_manifest(name))?.is_some() {
        return Ok(false);
    }
    let own = [
        paths::checkpoint(name, 1),
        paths::checkpoint_digest(name, 1),
        paths::log(name, 1),
    ];
    let files = st.list(&format!("{}/", paths::index_dir(name)))?;
    if !files.iter().all(|f| own.contains(f)) {
        return Ok(false);
    }
    Ok(st.size(&paths::log(name, 1))?.unwrap_or(0) == 0)
}

/// An index brought back from its files.
pub struct Recovered {
    /// The index, every logged write applied.
    pub index: Index,
    /// Its manifest (parameters, generation, creation time).
    pub manifest: IndexManifest,
    /// Where its log stands (for [`Engine::load_index`]).
    pub log: LogState,
    /// Log records replayed.
    pub replayed: u64,
    /// Set when a torn tail was cut: the log's length before the cut.
    pub cut_from: Option<u64>,
}

/// Brings index `name` back (see the module doc). Fails with [`RecoveryError::Damaged`] when
/// its files are missing or damaged, touching none of them; a torn tail (a write that was
/// never acknowledged) is cut and the cut synced. With `defer_links` the log's vectors are
/// stored and searchable but not yet linked into the graph ([`Index::replay_deferred`]): a
/// host with threads serves at once and links them in the background
/// ([`Index::link_pending`]).
pub fn recover_index(
    st: &mut dyn Storage,
    name: &str,
    defer_links: bool,
) -> Result<Recovered, RecoveryError> {
    let damaged = RecoveryError::Damaged;
    let bytes = st.read_all(&paths::index_manifest(name))?.ok_or_else(|| {
        damaged("manifest.json is missing (damage, or an interrupted restore); delete the index to clear it".into())
    })?;
    let manifest =
        IndexManifest::decode(&bytes).map_err(|e| damaged(format!("manifest.json: {e}")))?;
    let g = manifest.generation;
    let ck = paths::checkpoint(name, g);
    let ck_size = st
        .size(&ck)?
        .ok_or_else(|| damaged(format!("checkpoint {g} is missing")))?;
    let mut index = read_checkpoint(BufReader::with_capacity(
        1 << 20,
        RangeReader::new(st, &ck, 0, ck_size),
    ))
    .map_err(|e| damaged(format!("checkpoint {g}: {e}")))?;
    if index.params() != &manifest.params {
        return Err(damaged(format!(
            "checkpoint {g} parameters differ from manifest.json"
        )));
    }
    let log = paths::log(name, g);
    let log_size = st
        .size(&log)?
        .ok_or_else(|| damaged(format!("log {g} is missing")))?;
    // Every record is checked before it is applied; corruption in the middle of the log (a
    // bad frame with data after it) fails the index instead of dropping what follows.
    let reader = BufReader::with_capacity(1 << 20, RangeReader::new(st, &log, 0, log_size));
    let scan = if defer_links {
        index.replay_deferred(reader)
    } else {
        index.replay(reader)
    }
    .map_err(|e| damaged(format!("log {g}: {e}")))?;
    let cut_from = if scan.torn {
        st.truncate(&log, scan.valid_len)?;
        st.sync(&log)?;
        Some(log_size)
    } else {
        None
    };
    // Files of other generations are garbage after a restart (no pins survive one); files
    // that are not ours are left alone.
    let current = [ck, paths::checkpoint_digest(name, g), log];
    for f in st.list(&format!("{}/", paths::index_dir(name)))? {
        let file = f.rsplit('/').next().unwrap_or_default();
        if (file.starts_with("ckpt-") || file.starts_with("log-")) && !current.contains(&f) {
            st.remove(&f)?;
        }
    }
    let log = LogState {
        log_len: scan.valid_len,
        log_vectors: scan.upserted,
        live: index.len() as u64,
    };
    Ok(Recovered {
        index,
        manifest,
        log,
        replayed: scan.records,
        cut_from,
    })
}

/// Brings index `name` back and hands it to the engine, or marks it broken with the reason.
/// Returns the index for the host to serve.
pub fn load_into(
    engine: &mut Engine,
    name: &str,
    recovered: Result<Recovered, RecoveryError>,
) -> Result<Recovered, RecoveryError> {
    match recovered {
        Ok(r) => {
            engine.load_index(
                name,
                r.manifest.params.clone(),
                r.manifest.generation,
                r.manifest.created_at,
                r.log,
            );
            Ok(r)
        }
        Err(e) => {
            engine.mark_broken(name, &e.to_string());
            Err(e)
        }
    }
}
