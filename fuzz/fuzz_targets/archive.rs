//! Backup archives: raw bytes through the full verifier (tar, manifest, digests, contents),
//! the manifest-at-the-head reader (incremental chains are followed through it) and a
//! target's archive record; and fuzzed checkpoint + log bytes wrapped in an archive with
//! correct digests, so the contents validation is reached.
#![no_main]
#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fn wrap(ck: &[u8], log: &[u8], count: u64) -> Vec<u8> {
    let entry = |path: &str, d: &[u8]| serde_json::json!({"path": path, "size": d.len(), "sha256": hex::encode(Sha256::digest(d))});
    let manifest = serde_json::json!({
        "format": "cairn-backup", "version": 1, "index_name": "f",
        "params": cairn_core::IndexParams::new(4, cairn_core::SpaceType::Cosine)
            .with_precision(cairn_core::Precision::Int8),
        "vector_count": count, "created_at": 0,
        "source": {"host": "fuzz", "version": "0"},
        "cut": {"generation": 1, "log_len": log.len(), "vector_count": count},
        "entries": [entry("index/checkpoint.bin", ck), entry("index/log.bin", log)],
    });
    let m = serde_json::to_vec(&manifest).unwrap_or_default();
    let mut b = tar::Builder::new(Vec::new());
    for (path, d) in [
        ("cairn-backup.json", &m[..]),
        ("index/checkpoint.bin", ck),
        ("index/log.bin", log),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        let _ = b.append_data(&mut h, path, d);
    }
    b.into_inner().unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let _ = cairn_core::archive::verify_archive(data);
    if let Some(m) = cairn_core::archive::manifest_of(data) {
        let _ = m.validate();
    }
    let _ = cairn_core::target::TargetRecord::decode(data);
    if data.len() < 3 {
        return;
    }
    let split = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (ck, log) = data[2..].split_at(split);
    let archive = wrap(&common::reframe(ck), &common::reframe(log), data[0] as u64);
    let _ = cairn_core::archive::verify_archive(&archive[..]);
});
