//! Where everything lives in a data directory, the same for every host (the native server's
//! folders, the browser's OPFS pool, Node's folder): paths relative to the data directory,
//! `/`-separated, and the per-index manifest that names the current generation — the commit
//! point of every create, checkpoint and restore.

use crate::params::IndexParams;
use serde::{Deserialize, Serialize};

/// Paths of every file, relative to the data directory.
pub mod paths {
    /// The jobs file.
    pub const JOBS: &str = "jobs.json";
    /// The lock one process at a time holds on the data directory (the native host's).
    pub const LOCK: &str = "cairn.lock";
    /// The databases and their token digests (`/api/v2` tenancy).
    pub const TENANTS: &str = "tenants.json";
    /// Scratch files no protocol renames (archives fetched from a target); emptied at start.
    pub const TMP_DIR: &str = "tmp";
    /// Directory of one index.
    pub fn index_dir(name: &str) -> String {
        format!("indexes/{name}")
    }
    /// An index's manifest: the only index file replaced in place.
    pub fn index_manifest(name: &str) -> String {
        format!("indexes/{name}/manifest.json")
    }
    /// Checkpoint file of a generation.
    pub fn checkpoint(name: &str, generation: u64) -> String {
        format!("indexes/{name}/ckpt-{generation:016}.bin")
    }
    /// Size and SHA-256 of a generation's checkpoint, written with it (optional: a host that
    /// finds none digests the checkpoint).
    pub fn checkpoint_digest(name: &str, generation: u64) -> String {
        format!("indexes/{name}/ckpt-{generation:016}.sha256")
    }
    /// Log file following a generation's checkpoint.
    pub fn log(name: &str, generation: u64) -> String {
        format!("indexes/{name}/log-{generation:016}.bin")
    }
    /// A published archive.
    pub fn backup(name: &str) -> String {
        format!("backups/{name}.tar")
    }
    /// Where a backup job writes before publishing.
    pub fn backup_tmp(job_id: &str) -> String {
        format!("backups/.tmp/{job_id}.tar")
    }
    /// Where an upload is written before validation and publishing.
    pub fn upload_tmp(name: &str) -> String {
        format!("backups/.tmp/upload-{name}.tar")
    }
    /// Where a restore builds its index before publishing.
    pub fn restore_tmp(job_id: &str) -> String {
        format!("indexes/.tmp/{job_id}")
    }
    /// Where a restore from a backup target fetches the archive to (read, never renamed:
    /// a host may put `tmp/` on another volume).
    pub fn fetch_tmp(job_id: &str) -> String {
        format!("{TMP_DIR}/{job_id}.tar")
    }
}

/// The small per-index file naming the current generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexManifest {
    /// Always `cairn-index`.
    pub format: String,
    /// Manifest version (1).
    pub version: u32,
    /// Index name.
    pub name: String,
    /// Parameters.
    pub params: IndexParams,
    /// Current checkpoint generation.
    pub generation: u64,
    /// Creation time (ms).
    pub created_at: u64,
}

impl IndexManifest {
    /// A manifest for generation `generation`.
    pub fn new(name: &str, params: IndexParams, generation: u64, created_at: u64) -> Self {
        Self {
            format: "cairn-index".into(),
            version: 1,
            name: name.into(),
            params,
            generation,
            created_at,
        }
    }
    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
    /// Parses and checks format and version.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        let m: Self = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        if m.format != "cairn-index" || m.version != 1 {
            return Err(format!(
                "unknown index manifest {} v{}",
                m.format, m.version
            ));
        }
        Ok(m)
    }
}
