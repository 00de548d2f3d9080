//! Archive round trip and hostile archives: each is rejected and nothing reaches the sink's
//! published state (the sink here only collects; publishing happens after `read_archive` is Ok).
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use cairn_core::archive::{
    self, ArchiveError, ArchiveWriter, CHECKPOINT_PATH, LOG_PATH, MANIFEST_PATH, Manifest,
    MemorySink, Source,
};
use cairn_core::checkpoint::CheckpointEncoder;
use cairn_core::{CutPoint, Index, IndexParams, Precision, SearchRequest, SpaceType, UpsertItem};

fn sample() -> (Index, Vec<u8>, Vec<u8>, Manifest) {
    let mut ix =
        Index::new(IndexParams::new(4, SpaceType::L2).with_precision(Precision::Float32)).unwrap();
    let items = (0..50)
        .map(|i| UpsertItem {
            id: format!("v{i}"),
            vector: vec![i as f32, 1.0, 2.0, 3.0],
            meta: vec![],
            filter: "{}".into(),
            norm: 1.0,
            sparse_indices: vec![],
            sparse_values: vec![],
        })
        .collect::<Vec<_>>();
    let (first, rest) = items.split_at(30);
    let r = ix.prepare_upsert(first.to_vec()).unwrap();
    ix.apply(&r);
    let ckpt = CheckpointEncoder::new(&ix).to_vec().unwrap();
    let r = ix.prepare_upsert(rest.to_vec()).unwrap();
    ix.apply(&r);
    let log = r.encode();
    let cut = CutPoint {
        generation: 1,
        log_len: log.len() as u64,
        vector_count: 50,
    };
    let source = Source {
        host: "native".into(),
        version: "test".into(),
    };
    let m = Manifest::for_backup(
        "src",
        ix.params().clone(),
        cut,
        1,
        source,
        &ckpt[..],
        &log[..],
    )
    .unwrap();
    (ix, ckpt, log, m)
}

fn good_archive() -> (Index, Vec<u8>) {
    let (ix, ckpt, log, m) = sample();
    let mut w = ArchiveWriter::new(Vec::new(), m).unwrap();
    w.append(&ckpt[..]).unwrap();
    w.append(&log[..]).unwrap();
    let (bytes, size, sha) = w.finish().unwrap();
    assert_eq!(size as usize, bytes.len());
    assert_eq!(archive::digest_reader(&bytes[..]).unwrap().1, sha);
    (ix, bytes)
}

#[test]
fn round_trip_restores_identical_search() {
    let (ix, bytes) = good_archive();
    let mut sink = MemorySink::default();
    let m = archive::read_archive(&bytes[..], &mut sink).unwrap();
    let restored = archive::restore_index(
        &m,
        &sink.files[CHECKPOINT_PATH][..],
        &sink.files[LOG_PATH][..],
    )
    .unwrap();
    let q = SearchRequest::new(vec![7.0, 1.0, 2.0, 3.0], 10);
    assert_eq!(ix.search(&q).unwrap(), restored.search(&q).unwrap());
    assert_eq!(restored.len(), 50);
}

#[test]
fn writer_refuses_data_that_changed_under_it() {
    let (_, ckpt, _, m) = sample();
    let mut w = ArchiveWriter::new(Vec::new(), m).unwrap();
    let mut changed = ckpt.clone();
    changed[20] ^= 1;
    assert!(matches!(
        w.append(&changed[..]),
        Err(ArchiveError::Digest(_))
    ));
}

/// A raw ustar header with any name bytes (the tar crate's safe setters refuse `..`).
fn raw(name: &str, kind: tar::EntryType, size: u64, link: &str) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name.fill(0);
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h
}

fn with_extra(extra: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let (_, ckpt, log, m) = sample();
    let mut b = tar::Builder::new(Vec::new());
    let mb = serde_json::to_vec(&m).unwrap();
    b.append(
        &raw(MANIFEST_PATH, tar::EntryType::Regular, mb.len() as u64, ""),
        &mb[..],
    )
    .unwrap();
    extra(&mut b);
    b.append(
        &raw(
            CHECKPOINT_PATH,
            tar::EntryType::Regular,
            ckpt.len() as u64,
            "",
        ),
        &ckpt[..],
    )
    .unwrap();
    b.append(
        &raw(LOG_PATH, tar::EntryType::Regular, log.len() as u64, ""),
        &log[..],
    )
    .unwrap();
    b.into_inner().unwrap()
}

fn reject(bytes: &[u8]) -> ArchiveError {
    let mut sink = MemorySink::default();
    archive::read_archive(bytes, &mut sink).expect_err("must be rejected")
}

#[test]
fn hostile_archives_are_rejected() {
    let e = reject(&with_extra(|b| {
        b.append(&raw("../x", tar::EntryType::Regular, 1, ""), &b"x"[..])
            .unwrap()
    }));
    assert!(matches!(e, ArchiveError::UnsafePath(p) if p == "../x"));
    let e = reject(&with_extra(|b| {
        b.append(&raw("/etc/x", tar::EntryType::Regular, 1, ""), &b"x"[..])
            .unwrap()
    }));
    assert!(matches!(e, ArchiveError::UnsafePath(_)));
    let e = reject(&with_extra(|b| {
        b.append(
            &raw("index/a/../../x", tar::EntryType::Regular, 1, ""),
            &b"x"[..],
        )
        .unwrap()
    }));
    assert!(matches!(e, ArchiveError::UnsafePath(_)));
    let e = reject(&with_extra(|b| {
        b.append(
            &raw("index/link", tar::EntryType::Symlink, 0, "/etc/passwd"),
            &b""[..],
        )
        .unwrap()
    }));
    assert!(matches!(e, ArchiveError::NotRegular(_)));
    let e = reject(&with_extra(|b| {
        b.append(
            &raw("index/hard", tar::EntryType::Link, 0, "cairn-backup.json"),
            &b""[..],
        )
        .unwrap()
    }));
    assert!(matches!(e, ArchiveError::NotRegular(_)));
    let e = reject(&with_extra(|b| {
        b.append(&raw("index/dev", tar::EntryType::Char, 0, ""), &b""[..])
            .unwrap()
    }));
    assert!(matches!(e, ArchiveError::NotRegular(_)));
    let e = reject(&with_extra(|b| {
        b.append(
            &raw("index/other.bin", tar::EntryType::Regular, 1, ""),
            &b"x"[..],
        )
        .unwrap()
    }));
    assert!(matches!(e, ArchiveError::Unlisted(_)));
    let (_, ckpt, _, _) = sample();
    let e = reject(&with_extra(|b| {
        b.append(
            &raw(
                CHECKPOINT_PATH,
                tar::EntryType::Regular,
                ckpt.len() as u64,
                "",
            ),
            &ckpt[..],
        )
        .unwrap()
    }));
    assert!(matches!(e, ArchiveError::Duplicate(_)));

    let (_, good) = good_archive();
    // huge declared size: the header of the checkpoint claims 1 TB
    let mut huge = good.clone();
    let manifest_size = {
        let mut a = tar::Archive::new(&good[..]);
        let e = a.entries().unwrap().next().unwrap().unwrap();
        e.size()
    };
    let ck_header = 512 + (manifest_size as usize).div_ceil(512) * 512;
    let mut h = tar::Header::from_byte_slice(&huge[ck_header..ck_header + 512]).clone();
    h.set_size(1 << 40);
    h.set_cksum();
    huge[ck_header..ck_header + 512].copy_from_slice(h.as_bytes());
    assert!(matches!(reject(&huge), ArchiveError::Size { want, .. } if want != 1 << 40));

    // a flipped byte inside the checkpoint data
    let mut flipped = good.clone();
    flipped[ck_header + 512 + 40] ^= 0x01;
    assert!(matches!(reject(&flipped), ArchiveError::Digest(_)));

    // missing manifest
    let mut b = tar::Builder::new(Vec::new());
    b.append(
        &raw(CHECKPOINT_PATH, tar::EntryType::Regular, 1, ""),
        &b"x"[..],
    )
    .unwrap();
    assert!(matches!(
        reject(&b.into_inner().unwrap()),
        ArchiveError::MissingManifest
    ));
    assert!(matches!(
        reject(&[]),
        ArchiveError::MissingManifest | ArchiveError::Io(_)
    ));

    // truncated tail at several places
    for cut in [good.len() - 1024 - 100, good.len() / 2, ck_header + 600] {
        let e = reject(&good[..cut]);
        assert!(
            matches!(
                e,
                ArchiveError::Io(_) | ArchiveError::Missing(_) | ArchiveError::Size { .. }
            ),
            "cut {cut}: {e}"
        );
    }

    // unknown format version
    let (_, ckpt, log, mut m) = sample();
    m.version = 99;
    let mut b = tar::Builder::new(Vec::new());
    let mb = serde_json::to_vec(&m).unwrap();
    b.append(
        &raw(MANIFEST_PATH, tar::EntryType::Regular, mb.len() as u64, ""),
        &mb[..],
    )
    .unwrap();
    b.append(
        &raw(
            CHECKPOINT_PATH,
            tar::EntryType::Regular,
            ckpt.len() as u64,
            "",
        ),
        &ckpt[..],
    )
    .unwrap();
    b.append(
        &raw(LOG_PATH, tar::EntryType::Regular, log.len() as u64, ""),
        &log[..],
    )
    .unwrap();
    assert!(matches!(
        reject(&b.into_inner().unwrap()),
        ArchiveError::UnsupportedVersion { version: 99, .. }
    ));

    // params that don't fit
    let (_, _, _, mut m) = sample();
    m.params.dim = 1;
    assert!(matches!(m.validate(), Err(ArchiveError::BadManifest(_))));
}

#[test]
fn restore_checks_content_against_manifest() {
    let (_, ckpt, log, mut m) = sample();
    m.vector_count = 49;
    assert!(matches!(
        archive::restore_index(&m, &ckpt[..], &log[..]),
        Err(ArchiveError::Content(_))
    ));
    let (_, ckpt, log, m) = sample();
    assert!(matches!(
        archive::restore_index(&m, &ckpt[..], &log[..log.len() - 3]),
        Err(ArchiveError::Content(_))
    ));
}

#[test]
fn digest_records_round_trip_and_garbage_is_refused() {
    let d = archive::digest_reader(&b"checkpoint bytes"[..]).unwrap();
    let text = archive::encode_digest(&d);
    assert_eq!(archive::parse_digest(&text), Some(d.clone()));
    let sha = &d.1;
    for bad in [
        String::new(),
        "16".into(),
        format!("x {sha}"),
        format!("16 {}", &sha[1..]),
        format!("16 {}g", &sha[1..]),
        format!("-1 {sha}"),
    ] {
        assert_eq!(archive::parse_digest(&bad), None, "{bad:?}");
    }
}
