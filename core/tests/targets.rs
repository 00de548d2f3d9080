//! Backups to a backup target (an object store, here the in-memory one the native host's S3
//! target mirrors): written as one upload that is invisible until committed, recorded after,
//! listed and restored by a second database that shares only the target; a store that goes
//! away mid-upload fails the job with nothing listed, and a retry succeeds once it is back.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use cairn_core::Storage;
use cairn_core::rng::SplitMix64;
use cairn_core::target::{MemTarget, SharedMemTarget};
use cairn_core::{
    Database, DatabaseError, IndexParams, JobStatus, MemStorage, Precision, SearchRequest,
    SpaceType, UpsertItem,
};
use std::sync::{Arc, Mutex};

fn items(r: &mut SplitMix64, from: usize, n: usize) -> Vec<UpsertItem> {
    (from..from + n)
        .map(|i| UpsertItem {
            id: format!("v{i}"),
            vector: (0..16).map(|_| r.gaussian()).collect(),
            meta: format!("m{i}").into_bytes(),
            filter: "{}".into(),
            norm: 1.0,
            sparse_indices: vec![],
            sparse_values: vec![],
        })
        .collect()
}

fn finish(db: &mut Database<MemStorage>, job: &str) -> cairn_core::Job {
    while db.running_jobs().iter().any(|j| j == job) {
        db.step(10, 1);
    }
    db.job(job).unwrap()
}

fn top_ids(db: &mut Database<MemStorage>, ix: &str, qs: &[Vec<f32>]) -> Vec<Vec<String>> {
    qs.iter()
        .map(|q| {
            db.search(ix, &SearchRequest::new(q.clone(), 5))
                .unwrap()
                .into_iter()
                .map(|h| h.id)
                .collect()
        })
        .collect()
}

#[test]
fn a_backup_on_a_target_restores_on_another_database_sharing_only_the_target() {
    let store: SharedMemTarget = Arc::new(Mutex::new(MemTarget::default()));
    let mut r = SplitMix64::new(5);
    let mut a = Database::open(MemStorage::new(), 1, "a").unwrap();
    a.add_target("s3", Box::new(store.clone()));
    let p = IndexParams::new(16, SpaceType::Cosine).with_precision(Precision::Float32);
    a.create_index("docs", p, 1).unwrap();
    for k in 0..4 {
        a.upsert("docs", items(&mut r, k * 500, 500)).unwrap();
    }
    a.checkpoint("docs").unwrap();
    a.upsert("docs", items(&mut r, 2000, 300)).unwrap(); // in the log after the checkpoint

    // Unknown target: refused at submit (400), nothing started.
    let e = a.start_backup_to("docs", "b1", Some("nope"), None, 2, 2, [1; 6]);
    assert!(matches!(&e, Err(e) if e.fault() == cairn_core::Fault::BadInput));

    let job = a
        .start_backup_to("docs", "b1", Some("s3"), None, 3, 3, [2; 6])
        .unwrap();
    assert_eq!(job.target.as_deref(), Some("s3"));
    // Writes after the cut are not in the archive.
    a.upsert("docs", items(&mut r, 9000, 10)).unwrap();
    let done = finish(&mut a, &job.job_id);
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    // The target lists it with its digest; the data directory's backups do not.
    let listed = a.target_backups("s3").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].vector_count),
        ("b1", 2300)
    );
    assert_eq!(Some(&listed[0].sha256), done.archive_sha256.as_ref());
    assert!(a.backups().is_empty());
    assert!(
        store.lock().unwrap().uploads.is_empty(),
        "no upload left open"
    );
    // The same name on the same target: 409.
    let again = a.start_backup_to("docs", "b1", Some("s3"), None, 4, 4, [3; 6]);
    assert!(matches!(&again, Err(e) if e.fault() == cairn_core::Fault::Conflict));

    // Database B shares only the target.
    let mut b = Database::open(MemStorage::new(), 1, "b").unwrap();
    b.add_target("s3", Box::new(store.clone()));
    assert_eq!(b.target_backups("s3").unwrap()[0].name, "b1");
    let rj = b
        .start_restore_from("b1", Some("s3"), "docs", 5, [4; 6])
        .unwrap();
    let rdone = finish(&mut b, &rj.job_id);
    assert_eq!(rdone.status, JobStatus::Completed, "{:?}", rdone.error);
    let qs: Vec<Vec<f32>> = (0..20)
        .map(|_| (0..16).map(|_| r.gaussian()).collect())
        .collect();
    a.delete("docs", (9000..9010).map(|i| format!("v{i}")).collect())
        .unwrap();
    assert_eq!(top_ids(&mut a, "docs", &qs), top_ids(&mut b, "docs", &qs));
    assert_eq!(b.index("docs").unwrap().len(), 2300);
    // The fetched copy is gone; a missing archive is 404 at submit.
    let fetched = format!("tmp/{}.tar", rj.job_id);
    assert!(b.storage_mut().size(&fetched).unwrap().is_none());
    let missing = b.start_restore_from("nope", Some("s3"), "x", 6, [5; 6]);
    assert!(matches!(&missing, Err(DatabaseError::Engine(_))));
}

/// A database whose index "docs" (40,000 vectors) is being backed up to target "s3" (a
/// shared in-memory store), stepped until a mebibyte of the upload is at the store.
fn backup_a_megabyte_in(seed: u64) -> (SharedMemTarget, Database<MemStorage>, cairn_core::Job) {
    let store: SharedMemTarget = Arc::new(Mutex::new(MemTarget::default()));
    let mut r = SplitMix64::new(seed);
    let mut a = Database::open(MemStorage::new(), 1, "a").unwrap();
    a.add_target("s3", Box::new(store.clone()));
    let p = IndexParams::new(16, SpaceType::L2).with_precision(Precision::Float32);
    a.create_index("docs", p, 1).unwrap();
    for k in 0..40 {
        a.upsert("docs", items(&mut r, k * 1000, 1000)).unwrap();
    }
    let job = a
        .start_backup_to("docs", "b1", Some("s3"), None, 2, 2, [1; 6])
        .unwrap();
    let mut steps = 0;
    while store
        .lock()
        .unwrap()
        .uploads
        .values()
        .all(|u| u.len() < (1 << 20))
    {
        a.step(3, 1);
        steps += 1;
        assert!(steps < 10_000, "the upload never began");
    }
    (store, a, job)
}

#[test]
fn a_store_gone_mid_upload_fails_the_job_lists_nothing_and_a_retry_succeeds() {
    let (store, mut a, job) = backup_a_megabyte_in(6);
    // A few steps in, the store goes away.
    store.lock().unwrap().down = true;
    let failed = finish(&mut a, &job.job_id);
    assert_eq!(failed.status, JobStatus::Failed);
    assert!(
        failed.error.as_deref().unwrap().contains("unreachable"),
        "{:?}",
        failed.error
    );
    store.lock().unwrap().down = false;
    assert!(a.target_backups("s3").unwrap().is_empty(), "nothing listed");
    // The abort failed with the store: the job record kept the upload, and a sweep (what
    // the next start does) aborts it.
    assert!(failed.upload.is_some());
    assert_eq!(store.lock().unwrap().uploads.len(), 1);
    assert_eq!(a.sweep_uploads("s3").unwrap(), 1);
    assert!(store.lock().unwrap().uploads.is_empty());
    assert_eq!(a.job(&job.job_id).unwrap().upload, None);
    // Back up: the same name succeeds and restores.
    let retry = a
        .start_backup_to("docs", "b1", Some("s3"), None, 4, 4, [2; 6])
        .unwrap();
    assert_eq!(finish(&mut a, &retry.job_id).status, JobStatus::Completed);
    assert_eq!(a.target_backups("s3").unwrap().len(), 1);
    // A cancelled upload is aborted: nothing visible, no upload left open.
    let c = a
        .start_backup_to("docs", "b2", Some("s3"), None, 5, 5, [3; 6])
        .unwrap();
    a.step(6, 3);
    a.cancel(&c.job_id, 7).unwrap();
    assert_eq!(finish(&mut a, &c.job_id).status, JobStatus::Cancelled);
    let st = store.lock().unwrap();
    assert!(st.uploads.is_empty());
    assert!(!st.objects.contains_key("b2.tar") && !st.objects.contains_key("b2.json"));
}

fn state(db: &mut Database<MemStorage>, ix: &str) -> Vec<(String, Vec<f32>)> {
    let i = db.index(ix).unwrap();
    let mut ids: Vec<String> = i.ids().map(String::from).collect();
    ids.sort();
    ids.into_iter()
        .map(|id| {
            let v = db.get(ix, &id).unwrap().vector;
            (id, v)
        })
        .collect()
}

/// A chain: a full backup, an incremental one on the same generation (only the log since
/// the base's cut), one after a checkpoint (the new checkpoint and its log), and one more;
/// each member restores to the state at its own cut, here and on a target shared with
/// another database.
#[test]
fn incremental_chains_restore_to_each_cut_and_bases_are_kept_while_needed() {
    for on_target in [false, true] {
        let store: SharedMemTarget = Arc::new(Mutex::new(MemTarget::default()));
        let target = on_target.then_some("s3");
        let mut r = SplitMix64::new(8);
        let mut a = Database::open(MemStorage::new(), 1, "a").unwrap();
        a.add_target("s3", Box::new(store.clone()));
        let p = IndexParams::new(16, SpaceType::L2).with_precision(Precision::Float32);
        a.create_index("docs", p, 1).unwrap();
        for k in 0..10 {
            a.upsert("docs", items(&mut r, k * 1000, 1000)).unwrap();
        }
        a.checkpoint("docs").unwrap();
        let mut cuts = Vec::new();
        let mut sizes = Vec::new();
        let mut t = 10;
        let mut backup = |a: &mut Database<MemStorage>, name: &str, base: Option<&str>| {
            t += 1;
            let j = a
                .start_backup_to("docs", name, target, base, t, t, [t as u8; 6])
                .unwrap();
            let done = finish(a, &j.job_id);
            assert_eq!(
                done.status,
                JobStatus::Completed,
                "{name}: {:?}",
                done.error
            );
            done.archive_size.unwrap()
        };
        sizes.push(backup(&mut a, "b0", None));
        cuts.push(state(&mut a, "docs"));
        // 1 % of the vectors change: the incremental holds only their log records.
        let changed: Vec<UpsertItem> = items(&mut r, 0, 100);
        a.upsert("docs", changed).unwrap();
        a.delete("docs", vec!["v500".into()]).unwrap();
        sizes.push(backup(&mut a, "b1", Some("b0")));
        cuts.push(state(&mut a, "docs"));
        // A checkpoint since: the next one carries the new checkpoint.
        a.upsert("docs", items(&mut r, 20_000, 50)).unwrap();
        a.checkpoint("docs").unwrap();
        a.upsert("docs", items(&mut r, 30_000, 20)).unwrap();
        sizes.push(backup(&mut a, "b2", Some("b1")));
        cuts.push(state(&mut a, "docs"));
        a.upsert("docs", items(&mut r, 100, 30)).unwrap();
        sizes.push(backup(&mut a, "b3", Some("b2")));
        cuts.push(state(&mut a, "docs"));
        println!(
            "full {} B, incremental after 1% changed {} B, after a checkpoint {} B, then {} B",
            sizes[0], sizes[1], sizes[2], sizes[3]
        );
        assert!(sizes[1] * 10 < sizes[0], "{sizes:?}");
        assert!(sizes[3] * 10 < sizes[0], "{sizes:?}");
        // Wrong bases: another index's backup, an unknown name.
        a.create_index("other", IndexParams::new(16, SpaceType::L2), 1)
            .unwrap();
        let wrong = a.start_backup_to("other", "x", target, Some("b3"), 50, 50, [1; 6]);
        assert!(matches!(&wrong, Err(e) if e.fault() == cairn_core::Fault::BadInput));
        let unknown = a.start_backup_to("docs", "x", target, Some("nope"), 50, 50, [1; 6]);
        assert!(matches!(&unknown, Err(e) if e.fault() == cairn_core::Fault::NotFound));

        // Restored (on A, or on B sharing only the target): each member at its own cut.
        let mut b = Database::open(MemStorage::new(), 1, "b").unwrap();
        b.add_target("s3", Box::new(store.clone()));
        let db = if on_target { &mut b } else { &mut a };
        for (k, want) in cuts.iter().enumerate() {
            let ix = format!("r{k}");
            let j = db
                .start_restore_from(&format!("b{k}"), target, &ix, 60, [k as u8; 6])
                .unwrap();
            let done = finish(db, &j.job_id);
            assert_eq!(done.status, JobStatus::Completed, "b{k}: {:?}", done.error);
            assert_eq!(&state(db, &ix), want, "b{k} restores to its cut");
        }
        if !on_target {
            // An incremental archive alone is not an index: an upload of one says so.
            let bytes = a.export_backup("b1").unwrap();
            let e = a.import_backup("up", &bytes).unwrap_err().to_string();
            assert!(e.contains("incremental on \"b0\""), "{e}");
            // A base others need is kept unless the chain goes with it.
            let refused = a.delete_backup("b1");
            assert!(matches!(&refused, Err(e) if e.fault() == cairn_core::Fault::Conflict));
            assert!(refused.unwrap_err().to_string().contains("b2"));
            let gone = a.delete_backups("b1", true).unwrap();
            assert_eq!(gone, ["b1", "b2", "b3"]);
            assert_eq!(a.backups(), ["b0"]);
        }
    }
}

#[test]
fn an_upload_a_crash_abandons_is_aborted_when_the_target_is_next_opened() {
    let (store, a, job) = backup_a_megabyte_in(8);
    // The power goes mid-upload: the store keeps the open upload, nobody will finish it.
    let mut st = a.into_storage();
    st.crash();
    assert_eq!(store.lock().unwrap().uploads.len(), 1);
    let mut a = Database::open(st, 10, "a").unwrap();
    let j = a.job(&job.job_id).unwrap();
    assert_eq!(j.status, JobStatus::Failed);
    assert!(j.upload.is_some(), "the upload's id survived the crash");
    // Opening the target aborts it and clears the record.
    a.add_target("s3", Box::new(store.clone()));
    assert!(store.lock().unwrap().uploads.is_empty());
    assert_eq!(a.job(&job.job_id).unwrap().upload, None);
    assert!(a.target_backups("s3").unwrap().is_empty());
    // A backup completed leaves no upload recorded.
    let ok = a
        .start_backup_to("docs", "b1", Some("s3"), None, 11, 11, [2; 6])
        .unwrap();
    let done = finish(&mut a, &ok.job_id);
    assert_eq!((done.status, done.upload), (JobStatus::Completed, None));
}
