//! Rebuilding an index's graph in the background (the step machine every host drives): writes
//! and searches go on during it and land in the new graph, the new `M` / `ef_con` are durable
//! once it completes, a crash or a cancel before that leaves the old graph, and the rules it
//! shares with backups hold.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use cairn_core::rng::SplitMix64;
use cairn_core::{
    Database, Fault, IndexParams, JobStatus, MemStorage, Precision, SearchRequest, SpaceType,
    UpsertItem,
};

const DIM: usize = 16;

fn item(id: &str, r: &mut SplitMix64) -> UpsertItem {
    UpsertItem {
        id: id.into(),
        vector: (0..DIM).map(|_| r.gaussian()).collect(),
        meta: vec![],
        filter: "{}".into(),
        norm: 1.0,
        sparse_indices: vec![],
        sparse_values: vec![],
    }
}

/// A database with index `a` of `n` vectors at `M = 8`, `ef_con = 32`.
fn db_with(n: usize, r: &mut SplitMix64) -> Database<MemStorage> {
    let mut db = Database::open(MemStorage::new(), 1, "test").unwrap();
    let mut p = IndexParams::new(DIM, SpaceType::L2).with_precision(Precision::Float32);
    p.m = 8;
    p.ef_construction = 32;
    db.create_index("a", p, 1).unwrap();
    for c in 0..n / 100 {
        let items = (c * 100..(c + 1) * 100)
            .map(|i| item(&format!("v{i}"), r))
            .collect();
        db.upsert("a", items).unwrap();
    }
    db
}

/// Every live vector finds itself first: it is linked into the graph the search walks.
fn every_vector_finds_itself(db: &mut Database<MemStorage>) {
    let ids: Vec<String> = db.index("a").unwrap().ids().map(String::from).collect();
    for id in ids {
        let v = db.get("a", &id).unwrap().vector;
        let mut q = SearchRequest::new(v, 1);
        q.ef = 64;
        let hit = &db.search("a", &q).unwrap()[0];
        assert_eq!(hit.id, id, "{id} is reachable in the graph");
    }
}

fn m_and_ef(db: &Database<MemStorage>) -> (usize, usize) {
    let p = db.index("a").unwrap().params();
    (p.m, p.ef_construction)
}

#[test]
fn writes_during_a_rebuild_land_in_the_new_graph_and_the_new_params_survive_a_crash() {
    let mut r = SplitMix64::new(7);
    let mut db = db_with(3000, &mut r);
    let job = db
        .start_rebuild("a", Some(24), Some(200), 2, [1; 6])
        .unwrap();
    assert_eq!(job.status, JobStatus::Running);
    let (mut steps, mut now) = (0, 3);
    let mut n = 3000;
    // Step the rebuild a little at a time (the clock moves 5 ms a step, so batches stay
    // small); between steps write, overwrite and delete, some below where the rebuild
    // stands (those must be relinked) and some above it.
    while db.running_jobs().contains(&job.job_id) {
        now += 5;
        db.step(now, 1);
        steps += 1;
        if steps % 5 == 0 {
            let k = r.below(n as u64) as usize;
            db.upsert(
                "a",
                vec![
                    item(&format!("v{k}"), &mut r),
                    item(&format!("v{n}"), &mut r),
                ],
            )
            .unwrap();
            n += 1;
            let d = r.below(n as u64) as usize;
            let _ = db.delete("a", vec![format!("v{d}")]);
        }
        // Searches run on the old graph throughout.
        if steps % 7 == 0 {
            assert!(
                !db.search("a", &SearchRequest::new(vec![0.5; DIM], 5))
                    .unwrap()
                    .is_empty()
            );
        }
    }
    assert!(steps > 50, "the rebuild ran in many steps ({steps})");
    let done = db.job(&job.job_id).unwrap();
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error);
    assert_eq!(
        done.bytes_done, done.bytes_total,
        "progress reaches the total"
    );
    assert_eq!(m_and_ef(&db), (24, 200));
    every_vector_finds_itself(&mut db);
    let live = db.index("a").unwrap().len();

    // The rebuild's checkpoint is its commit point: a crash keeps the new graph and params.
    let mut st = db.into_storage();
    st.crash();
    let mut db = Database::open(st, 10, "test").unwrap();
    assert_eq!(m_and_ef(&db), (24, 200));
    assert_eq!(db.index("a").unwrap().len(), live);
    every_vector_finds_itself(&mut db);
}

#[test]
fn a_crash_or_a_cancel_before_the_swap_leaves_the_old_graph() {
    let mut r = SplitMix64::new(8);
    let mut db = db_with(2000, &mut r);
    let job = db
        .start_rebuild("a", Some(32), Some(100), 2, [1; 6])
        .unwrap();
    db.step(3, 6);
    db.upsert("a", vec![item("late", &mut r)]).unwrap();
    let mut st = db.into_storage();
    st.crash();
    let mut db = Database::open(st, 10, "test").unwrap();
    let j = db.job(&job.job_id).unwrap();
    assert_eq!(
        (j.status, j.error.as_deref()),
        (JobStatus::Failed, Some("interrupted by restart"))
    );
    assert_eq!(m_and_ef(&db), (8, 32), "old params after restart");
    assert!(db.get("a", "late").is_ok(), "the write during it is kept");
    assert_eq!(db.rebuild_status("a").unwrap().unwrap().job_id, job.job_id);

    let job = db
        .start_rebuild("a", Some(32), Some(100), 11, [2; 6])
        .unwrap();
    db.step(12, 4);
    db.cancel(&job.job_id, 12).unwrap();
    while db.running_jobs().contains(&job.job_id) {
        db.step(13, 1);
    }
    assert_eq!(db.job(&job.job_id).unwrap().status, JobStatus::Cancelled);
    assert_eq!(
        m_and_ef(&db),
        (8, 32),
        "a cancelled rebuild changes nothing"
    );
    assert!(
        !db.index("a").unwrap().rebuilding(),
        "the index stops noting writes"
    );
    // The next one runs to the end.
    let j = db.rebuild("a", Some(12), Some(48), 14, [3; 6]).unwrap();
    assert_eq!(j.status, JobStatus::Completed);
    assert_eq!(m_and_ef(&db), (12, 48));
    every_vector_finds_itself(&mut db);
}

#[test]
fn rebuild_rules_one_per_index_bounds_delete_waits_backups_run_beside() {
    let mut r = SplitMix64::new(9);
    let mut db = db_with(1000, &mut r);
    for (m, ef) in [(3, 64), (513, 64), (16, 7), (16, 4097)] {
        assert_eq!(
            db.start_rebuild("a", Some(m), Some(ef), 2, [1; 6])
                .unwrap_err()
                .fault(),
            Fault::BadInput,
            "M {m} ef_con {ef}"
        );
    }
    assert_eq!(
        db.start_rebuild("nope", Some(16), Some(64), 2, [1; 6])
            .unwrap_err()
            .fault(),
        Fault::NotFound
    );
    let job = db
        .start_rebuild("a", Some(16), Some(64), 2, [1; 6])
        .unwrap();
    db.step(3, 3);
    let second = db
        .start_rebuild("a", Some(20), Some(64), 3, [2; 6])
        .unwrap_err();
    assert_eq!(second.fault(), Fault::Conflict);
    assert!(second.to_string().contains(&job.job_id), "{second}");
    let del = db.delete_index("a").unwrap_err();
    assert_eq!(del.fault(), Fault::Conflict, "delete waits for the rebuild");
    // A backup during the rebuild copies the index as it was (old params); both finish.
    let b = db.backup("a", "during", 4, [3; 6], &mut |_, _| {}).unwrap();
    assert_eq!(b.status, JobStatus::Completed);
    while db.running_jobs().contains(&job.job_id) {
        db.step(5, 1);
    }
    assert_eq!(db.job(&job.job_id).unwrap().status, JobStatus::Completed);
    db.restore("during", "copy", 6, [4; 6]).unwrap();
    assert_eq!(db.index("copy").unwrap().params().m, 8);
    assert_eq!(db.index("copy").unwrap().len(), 1000);
    // A backup after it carries the new params.
    db.backup("a", "after", 7, [5; 6], &mut |_, _| {}).unwrap();
    db.restore("after", "copy2", 8, [6; 6]).unwrap();
    assert_eq!(db.index("copy2").unwrap().params().m, 16);
    // A rebuild during a backup is accepted too, and the index deletes once both ended.
    let b = db.start_backup("a", "b3", 9, 9000, [7; 6]).unwrap();
    let j = db.start_rebuild("a", Some(8), Some(32), 9, [8; 6]).unwrap();
    while !db.running_jobs().is_empty() {
        db.step(10, 8);
    }
    assert_eq!(db.job(&b.job_id).unwrap().status, JobStatus::Completed);
    assert_eq!(db.job(&j.job_id).unwrap().status, JobStatus::Completed);
    db.delete_index("a").unwrap();
}

#[test]
fn a_rebuild_of_deleted_slots_checkpoints_reopens_and_takes_new_vectors() {
    let mut r = SplitMix64::new(10);
    let mut db = db_with(200, &mut r);
    let ids: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
    db.delete("a", ids[..150].to_vec()).unwrap();
    // Slot 0 is dead: the new graph's first node is an empty one.
    db.rebuild("a", Some(8), Some(40), 2, [1; 6]).unwrap();
    every_vector_finds_itself(&mut db);
    db.delete("a", ids[150..].to_vec()).unwrap();
    db.rebuild("a", Some(12), Some(40), 3, [2; 6]).unwrap();
    let st = db.into_storage();
    let mut db = Database::open(st, 4, "test").unwrap();
    assert_eq!(m_and_ef(&db), (12, 40), "{:?}", db.recovery_notes());
    db.upsert(
        "a",
        (0..50).map(|i| item(&format!("n{i}"), &mut r)).collect(),
    )
    .unwrap();
    every_vector_finds_itself(&mut db);
}
