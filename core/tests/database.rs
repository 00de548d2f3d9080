//! The single-threaded database (browser/Node host logic) over memory storage: writes survive
//! crashes, backups restore exactly, archives move between databases, bad archives change nothing.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use cairn_core::engine::paths;
use cairn_core::rng::SplitMix64;
use cairn_core::{
    Database, Fault, IndexParams, JobStatus, MemStorage, Precision, SearchRequest, SpaceType,
    Storage, UpsertItem,
};

fn item(i: usize, r: &mut SplitMix64) -> UpsertItem {
    UpsertItem {
        id: format!("v{i}"),
        vector: (0..12).map(|_| r.gaussian()).collect(),
        meta: format!("m{i}").into_bytes(),
        filter: format!("{{\"g\":{}}}", i % 4),
        norm: 1.0,
        sparse_indices: vec![],
        sparse_values: vec![],
    }
}

fn params() -> IndexParams {
    IndexParams::new(12, SpaceType::Cosine).with_precision(Precision::Float32)
}

#[test]
fn writes_backups_and_restores_survive_crashes() {
    let mut r = SplitMix64::new(1);
    let mut db = Database::open(MemStorage::new(), 1, "test").unwrap();
    db.create_index("a", params(), 1).unwrap();
    for c in 0..10 {
        db.upsert(
            "a",
            (c * 50..(c + 1) * 50).map(|i| item(i, &mut r)).collect(),
        )
        .unwrap();
    }
    db.checkpoint("a").unwrap();
    db.upsert("a", (500..600).map(|i| item(i, &mut r)).collect())
        .unwrap();
    let mut ticks = 0;
    let job = db
        .backup("a", "b1", 5, [1; 6], &mut |_, _| ticks += 1)
        .unwrap();
    assert_eq!(
        (job.status, job.cut.unwrap().vector_count),
        (JobStatus::Completed, 600)
    );
    assert!(ticks > 0, "progress reported");
    db.delete("a", vec!["v1".into()]).unwrap();
    let q = SearchRequest::new((0..12).map(|_| r.gaussian()).collect(), 10);
    let before = db.search("a", &q).unwrap();
    // crash: everything acknowledged survives
    let mut st = db.into_storage();
    st.crash();
    let mut db = Database::open(st, 10, "test").unwrap();
    assert_eq!(db.search("a", &q).unwrap(), before);
    assert_eq!(db.index("a").unwrap().len(), 599);
    assert_eq!(db.backups(), vec!["b1".to_string()]);
    // restore: state at the cut (600 vectors, v1 present)
    db.restore("b1", "copy", 11, [2; 6]).unwrap();
    assert_eq!(db.index("copy").unwrap().len(), 600);
    assert!(db.get("copy", "v1").is_ok());
    // rules hold here too
    assert_eq!(
        db.restore("b1", "copy", 12, [3; 6]).unwrap_err().fault(),
        Fault::Conflict
    );
    assert_eq!(
        db.backup("a", "b1", 12, [4; 6], &mut |_, _| {})
            .unwrap_err()
            .fault(),
        Fault::Conflict
    );
    assert_eq!(
        db.backup("nope", "b2", 12, [4; 6], &mut |_, _| {})
            .unwrap_err()
            .fault(),
        Fault::NotFound
    );
    assert_eq!(
        db.backup("a", "bad name", 12, [4; 6], &mut |_, _| {})
            .unwrap_err()
            .fault(),
        Fault::BadInput
    );
    // move the archive to another database
    let bytes = db.export_backup("b1").unwrap();
    let mut other = Database::open(MemStorage::new(), 20, "test").unwrap();
    other.import_backup("x", &bytes).unwrap();
    other.restore("x", "moved", 21, [5; 6]).unwrap();
    let q2 = SearchRequest::new(q.vector.clone(), 10);
    assert_eq!(
        other.search("moved", &q2).unwrap(),
        db.search("copy", &q2).unwrap()
    );
    // a damaged archive is refused and leaves nothing
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n - 2000] ^= 1;
    assert_eq!(
        other.import_backup("y", &bad).unwrap_err().fault(),
        Fault::BadInput
    );
    assert_eq!(other.backups(), vec!["x".to_string()]);
    assert!(
        other
            .storage_mut()
            .list("backups/.tmp/")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn crash_in_the_middle_of_a_write_loses_only_the_unacknowledged() {
    let mut r = SplitMix64::new(2);
    let mut db = Database::open(MemStorage::new(), 1, "test").unwrap();
    db.create_index("a", params(), 1).unwrap();
    db.upsert("a", (0..20).map(|i| item(i, &mut r)).collect())
        .unwrap();
    // append without sync, then crash: that record was never acknowledged
    let rec = cairn_core::Record::Upsert(vec![item(99, &mut r)]).encode();
    let mut st = db.into_storage();
    st.append("indexes/a/log-0000000000000001.bin", &rec[..rec.len() / 2])
        .unwrap();
    st.crash();
    let mut db = Database::open(st, 2, "test").unwrap();
    assert_eq!(db.index("a").unwrap().len(), 20);
    assert!(db.get("a", "v99").is_err());
}

#[test]
fn checkpoints_record_their_digest_and_backups_trust_it_only_when_true() {
    let mut r = SplitMix64::new(7);
    let mut db = Database::open(MemStorage::new(), 1, "test").unwrap();
    db.create_index("a", params(), 1).unwrap();
    db.upsert("a", (0..80).map(|i| item(i, &mut r)).collect())
        .unwrap();
    db.checkpoint("a").unwrap();
    let st = db.storage_mut();
    let ck = st
        .read_all("indexes/a/ckpt-0000000000000002.bin")
        .unwrap()
        .unwrap();
    let rec = st
        .read_all("indexes/a/ckpt-0000000000000002.sha256")
        .unwrap()
        .expect("digest written with the checkpoint");
    let rec = String::from_utf8(rec).unwrap();
    assert_eq!(
        cairn_core::archive::parse_digest(&rec),
        Some(cairn_core::archive::digest_reader(&ck[..]).unwrap())
    );
    // The superseded generation's files, digest included, are gone.
    assert!(
        st.list("indexes/a/ckpt-0000000000000001")
            .unwrap()
            .is_empty()
    );
    let ok = db.backup("a", "good", 2, [1; 6], &mut |_, _| {}).unwrap();
    assert_eq!(ok.status, JobStatus::Completed);
    // A record that lies fails the job; nothing is published.
    let size = ck.len();
    let st = db.storage_mut();
    let path = "indexes/a/ckpt-0000000000000002.sha256";
    st.create(path).unwrap();
    st.append(path, format!("{size} {}\n", "0".repeat(64)).as_bytes())
        .unwrap();
    let bad = db.backup("a", "bad", 3, [2; 6], &mut |_, _| {});
    let err = bad
        .expect_err("a lying digest record fails the backup")
        .to_string();
    assert!(err.contains("SHA-256"), "{err}");
    assert_eq!(db.backups(), vec!["good".to_string()]);
    // Without a record the backup digests the checkpoint itself.
    db.storage_mut().remove(path).unwrap();
    let again = db.backup("a", "again", 4, [3; 6], &mut |_, _| {}).unwrap();
    assert_eq!(again.status, JobStatus::Completed);
}

#[test]
fn int8_reads_originals_from_storage_across_checkpoints_crashes_and_restores() {
    let mut r = SplitMix64::new(5);
    let p = IndexParams::new(12, SpaceType::L2).with_precision(Precision::Int8);
    let items: Vec<UpsertItem> = (0..650).map(|i| item(i, &mut r)).collect();
    let mut db = Database::open(MemStorage::new(), 1, "test").unwrap();
    db.create_index("q", p, 1).unwrap();
    // Two checkpoints (the second copies the first's originals out of storage), then writes
    // that live only in the log and in memory.
    db.upsert("q", items[..300].to_vec()).unwrap();
    db.checkpoint("q").unwrap();
    db.upsert("q", items[300..600].to_vec()).unwrap();
    db.checkpoint("q").unwrap();
    db.upsert("q", items[600..].to_vec()).unwrap();
    let check = |db: &mut Database<MemStorage>, index: &str| {
        for i in [3, 450, 620] {
            let hits = db
                .search(index, &SearchRequest::new(items[i].vector.clone(), 4))
                .unwrap();
            // Re-ranked by float32 distance: the vector itself exactly (its code is not).
            assert_eq!(hits[0].id, format!("v{i}"));
            assert_eq!(hits[0].similarity, 1.0, "{index} v{i}");
        }
    };
    check(&mut db, "q");
    let job = db.backup("q", "b", 5, [1; 6], &mut |_, _| {}).unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    let mut st = db.into_storage();
    st.crash();
    let mut db = Database::open(st, 10, "test").unwrap();
    check(&mut db, "q");
    let bytes = db.export_backup("b").unwrap();
    let mut other = Database::open(MemStorage::new(), 20, "test").unwrap();
    other.import_backup("x", &bytes).unwrap();
    other.restore("x", "moved", 21, [5; 6]).unwrap();
    check(&mut other, "moved");
    // The restored index's own checkpoint holds the originals: still exact after a reopen.
    let mut other = Database::open(other.into_storage(), 30, "test").unwrap();
    check(&mut other, "moved");
}

#[test]
fn a_log_whose_replay_would_cost_a_quarter_of_the_index_is_checkpointed() {
    let mut r = SplitMix64::new(9);
    let mut db = Database::open(MemStorage::new(), 1, "test").unwrap();
    db.create_index("a", params(), 1).unwrap();
    let ckpts = |db: &mut Database<MemStorage>| {
        let st = db.storage_mut();
        st.list("indexes/a/ckpt-")
            .unwrap()
            .iter()
            .filter(|p| p.ends_with(".bin"))
            .count()
    };
    // Below the floor (4,096 vectors to replay) nothing is written, however small the index.
    for c in 0..4 {
        db.upsert(
            "a",
            (c * 1000..(c + 1) * 1000)
                .map(|i| item(i, &mut r))
                .collect(),
        )
        .unwrap();
    }
    let logs = |db: &mut Database<MemStorage>| db.storage_mut().list("indexes/a/log-").unwrap();
    assert_eq!(
        logs(&mut db),
        vec!["indexes/a/log-0000000000000001.bin".to_string()]
    );
    // The 4,096th vector makes the log's replay cost due: a new generation, an empty log.
    db.upsert("a", (4000..4096).map(|i| item(i, &mut r)).collect())
        .unwrap();
    assert_eq!(
        logs(&mut db),
        vec!["indexes/a/log-0000000000000002.bin".to_string()]
    );
    assert_eq!(ckpts(&mut db), 1);
    assert_eq!(db.index("a").unwrap().len(), 4096);
}

#[test]
fn recovery_serves_the_healthy_reports_the_damaged_and_clears_only_uncommitted_creates() {
    let mut r = SplitMix64::new(11);
    let mut db = Database::open(MemStorage::new(), 1, "t").unwrap();
    for name in ["good", "bad"] {
        db.create_index(name, params(), 1).unwrap();
        db.upsert(name, (0..20).map(|i| item(i, &mut r)).collect())
            .unwrap();
    }
    let mut st = db.into_storage();
    // A checkpoint overwritten with garbage.
    let ck = paths::checkpoint("bad", 1);
    st.create(&ck).unwrap();
    st.append(&ck, b"not a checkpoint").unwrap();
    // What a create leaves when it stops before its manifest: nothing of value.
    st.create(&paths::checkpoint("half", 1)).unwrap();
    st.create(&paths::log("half", 1)).unwrap();
    // No manifest but a log with records: maybe data, so kept and reported.
    st.append(&paths::log("orphan", 1), b"\x01\x02\x03")
        .unwrap();

    let mut db = Database::open(st, 2, "t").unwrap();
    assert_eq!(db.index("good").unwrap().len(), 20);
    let e = db
        .search("bad", &SearchRequest::new(vec![0.1; 12], 1))
        .unwrap_err();
    assert_eq!(e.fault(), Fault::Unavailable, "{e}");
    assert!(e.to_string().contains("checkpoint"), "{e}");
    assert!(db.index("half").is_err());
    let orphan = db.index("orphan").unwrap_err();
    assert!(
        orphan.to_string().contains("manifest.json is missing"),
        "{orphan}"
    );
    let files = db.storage_mut().list("indexes/").unwrap();
    assert!(
        !files.iter().any(|f| f.starts_with("indexes/half/")),
        "{files:?}"
    );
    assert!(files.contains(&paths::log("orphan", 1)), "{files:?}");
    assert!(files.contains(&ck), "damaged files are left for a human");
    assert!(
        db.recovery_notes().iter().any(|n| n.contains("half")),
        "{:?}",
        db.recovery_notes()
    );
    // An operator clears a damaged index by deleting it; the name is free again.
    db.delete_index("bad").unwrap();
    db.create_index("bad", params(), 3).unwrap();
    assert_eq!(db.index("bad").unwrap().len(), 0);
}

#[test]
fn a_restore_job_seen_completed_names_an_index_that_answers() {
    // A client polls the job, then searches: at no step may the job say completed while the
    // index does not answer yet.
    let mut r = SplitMix64::new(7);
    let mut db = Database::open(MemStorage::new(), 1, "test").unwrap();
    db.create_index("a", params(), 1).unwrap();
    db.upsert("a", (0..300).map(|i| item(i, &mut r)).collect())
        .unwrap();
    db.checkpoint("a").unwrap();
    // A log tail too: the restore replays it without links and the host links it.
    db.upsert("a", (300..400).map(|i| item(i, &mut r)).collect())
        .unwrap();
    db.backup("a", "b", 2, [2; 6], &mut |_, _| {}).unwrap();
    let q = SearchRequest::new((0..12).map(|_| r.gaussian()).collect(), 10);
    let want = db.search("a", &q).unwrap();
    let id = db.start_restore("b", "copy", 3, [3; 6]).unwrap().job_id;
    let mut steps = 0;
    loop {
        let (running, _) = db.step(4, 1);
        steps += 1;
        let status = db.job(&id).unwrap().status;
        if status == JobStatus::Completed {
            assert_eq!(db.search("copy", &q).unwrap(), want, "after step {steps}");
            assert_eq!(db.index("copy").unwrap().pending_links(), 0);
        }
        if running == 0 {
            break;
        }
        assert!(steps < 100_000, "the restore never ends");
    }
    assert_eq!(db.job(&id).unwrap().status, JobStatus::Completed);
}
