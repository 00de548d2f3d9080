//! Submit-time rules, cancel at every state, pins, recovery.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use cairn_core::engine::{Effect, EngineError, LogState, Outcome, paths};
use cairn_core::registry::{INTERRUPTED, JobError};
use cairn_core::{CutPoint, Engine, IndexParams, JobRegistry, JobStatus, SpaceType};
use std::sync::{Arc, Barrier, Mutex};

/// Generations whose files the engine's pending effects delete (drains them).
fn freed(e: &mut Engine) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for eff in e.take_effects() {
        if let Effect::Remove(files) = eff {
            for f in files {
                if let Some(rest) = f.strip_suffix(".bin")
                    && let Some((dir, g)) = rest.rsplit_once("/ckpt-")
                {
                    out.push((
                        dir.trim_start_matches("indexes/").to_string(),
                        g.parse().unwrap(),
                    ));
                }
            }
        }
    }
    out
}

fn params() -> IndexParams {
    IndexParams::new(4, SpaceType::L2)
}

fn engine() -> Engine {
    let mut e = Engine::new(JobRegistry::default());
    e.create_index("idx", params(), 1).unwrap();
    e.create_index("other", params(), 1).unwrap();
    e
}

const E: [u8; 6] = [1, 2, 3, 4, 5, 6];

fn cut(generation: u64) -> CutPoint {
    CutPoint {
        generation,
        log_len: 0,
        vector_count: 0,
    }
}

#[test]
fn every_submit_rule_is_its_own_error() {
    let mut e = engine();
    let long = "x".repeat(201);
    for bad in ["", "a b", "../x", "a/b", long.as_str()] {
        assert!(
            matches!(
                e.submit_backup(10, E, "idx", bad, None),
                Err(EngineError::InvalidBackupName(_))
            ),
            "{bad:?}"
        );
    }
    assert!(
        e.submit_backup(10, E, "idx", &"x".repeat(200), None)
            .is_ok()
    );
    assert!(matches!(
        e.submit_backup(10, E, "missing", "b1", None),
        Err(EngineError::IndexNotFound(_))
    ));
    let j = e.submit_backup(10, E, "other", "b1", None).unwrap();
    assert_eq!(j.status, JobStatus::Queued);
    // same index again
    assert!(
        matches!(e.submit_backup(11, E, "other", "b2", None), Err(EngineError::BackupInProgress { job, .. }) if job == j.job_id)
    );
    // same name from another index while active
    let mut e2 = engine();
    let j2 = e2.submit_backup(10, E, "idx", "shared", None).unwrap();
    assert!(
        matches!(e2.submit_backup(10, E, "other", "shared", None), Err(EngineError::NameBusy { job, .. }) if job == j2.job_id)
    );
    // existing archive
    e2.start(&j2.job_id, 11).unwrap();
    e2.cut(&j2.job_id, cut(1)).unwrap();
    e2.finish(
        &j2.job_id,
        12,
        Outcome::Backup {
            size: 10,
            sha256: "0".repeat(64),
        },
    )
    .unwrap();
    assert!(matches!(
        e2.submit_backup(13, E, "other", "shared", None),
        Err(EngineError::BackupExists(_))
    ));
    // after completion the index is free again
    assert!(e2.submit_backup(13, E, "idx", "next", None).is_ok());
    // restore rules
    assert!(matches!(
        e2.submit_restore(14, E, "nope", "t", None),
        Err(EngineError::BackupNotFound(_))
    ));
    assert!(matches!(
        e2.submit_restore(14, E, "shared", "other", None),
        Err(EngineError::IndexExists(_))
    ));
    assert!(matches!(
        e2.submit_restore(14, E, "shared", "bad/name", None),
        Err(EngineError::Invalid(_))
    ));
    let r = e2.submit_restore(14, E, "shared", "t", None).unwrap();
    assert!(
        matches!(e2.submit_restore(14, E, "shared", "t", None), Err(EngineError::IndexBusy { job, .. }) if job == r.job_id)
    );
    assert!(matches!(
        e2.create_index("t", IndexParams::new(4, SpaceType::L2), 1),
        Err(EngineError::IndexBusy { .. })
    ));
    assert!(matches!(
        e2.delete_backup("shared"),
        Err(EngineError::NameBusy { .. })
    ));
    assert!(matches!(
        e2.begin_upload("shared"),
        Err(EngineError::NameBusy { .. })
    ));
}

#[test]
fn racing_submits_second_always_loses() {
    for (a_index, b_index, name_a, name_b) in
        [("idx", "idx", "n1", "n2"), ("idx", "other", "same", "same")]
    {
        for _ in 0..20 {
            let e = Arc::new(Mutex::new(engine()));
            let barrier = Arc::new(Barrier::new(2));
            let hs: Vec<_> = [(a_index, name_a, 1u8), (b_index, name_b, 2u8)]
                .into_iter()
                .map(|(ix, name, seed)| {
                    let (e, b) = (e.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        b.wait();
                        e.lock()
                            .unwrap()
                            .submit_backup(5, [seed; 6], ix, name, None)
                            .is_ok()
                    })
                })
                .collect();
            let wins: usize = hs.into_iter().map(|h| h.join().unwrap() as usize).sum();
            assert_eq!(wins, 1);
        }
    }
}

#[test]
fn cancel_at_each_state() {
    let mut e = engine();
    let q = e.submit_backup(1, E, "idx", "q", None).unwrap();
    e.cancel(&q.job_id, 2).unwrap();
    assert_eq!(
        e.registry.get(&q.job_id).unwrap().status,
        JobStatus::Cancelled
    );
    assert!(
        e.submit_backup(3, E, "idx", "q", None).is_ok(),
        "cancel frees index and name"
    );
    let mut e = engine();
    let r = e.submit_backup(1, E, "idx", "r", None).unwrap();
    e.start(&r.job_id, 2).unwrap();
    e.cut(&r.job_id, cut(1)).unwrap();
    e.checkpoint_done("idx", 2, params()).unwrap();
    e.take_effects();
    e.cancel(&r.job_id, 3).unwrap();
    assert_eq!(
        e.registry.get(&r.job_id).unwrap().status,
        JobStatus::Cancelling,
        "a running job keeps its pins until its task stops"
    );
    assert!(freed(&mut e).is_empty());
    e.finish(&r.job_id, 3, Outcome::Cancelled).unwrap();
    assert_eq!(
        freed(&mut e),
        vec![("idx".to_string(), 1)],
        "pin released when the task acknowledges"
    );
    let j = e.registry.get(&r.job_id).unwrap();
    assert_eq!((j.status, j.completed_at), (JobStatus::Cancelled, Some(3)));
    for end in [
        Outcome::Backup {
            size: 1,
            sha256: "0".repeat(64),
        },
        Outcome::Failed("x".into()),
    ] {
        let mut e = engine();
        let j = e.submit_backup(1, E, "idx", "z", None).unwrap();
        e.start(&j.job_id, 2).unwrap();
        e.finish(&j.job_id, 3, end.clone()).unwrap();
        assert!(matches!(
            e.cancel(&j.job_id, 4),
            Err(EngineError::Job(JobError::Finished { .. }))
        ));
        assert!(matches!(
            e.cancel("nope", 4),
            Err(EngineError::Job(JobError::NotFound(_)))
        ));
    }
    let mut e = engine();
    let j = e.submit_backup(1, E, "idx", "z", None).unwrap();
    e.cancel(&j.job_id, 2).unwrap();
    assert!(matches!(
        e.cancel(&j.job_id, 4),
        Err(EngineError::Job(JobError::Finished { .. }))
    ));
}

#[test]
fn pins_hold_generations_and_the_gate_guards_deletion() {
    let mut e = engine();
    let j = e.submit_backup(1, E, "idx", "b", None).unwrap();
    assert!(
        matches!(e.delete_index("idx"), Err(EngineError::IndexBusy { job, .. }) if job == j.job_id)
    );
    e.begin_write("idx").unwrap(); // writes proceed during a backup
    e.start(&j.job_id, 2).unwrap();
    e.cut(&j.job_id, cut(1)).unwrap();
    assert!(e.cut(&j.job_id, cut(1)).is_err(), "one cut per job");
    e.take_effects();
    e.checkpoint_done("idx", 2, params()).unwrap();
    assert!(freed(&mut e).is_empty(), "pinned generation kept");
    e.checkpoint_done("idx", 3, params()).unwrap();
    assert_eq!(freed(&mut e), vec![("idx".to_string(), 2)]);
    e.record_pause(&j.job_id, 40).unwrap();
    e.finish(&j.job_id, 5, Outcome::Failed("disk".into()))
        .unwrap();
    assert_eq!(freed(&mut e), vec![("idx".to_string(), 1)]);
    assert_eq!(e.registry.get(&j.job_id).unwrap().write_pause_us, 40);
    assert!(!e.has_backup("b"), "failed backups publish nothing");
    e.delete_index("idx").unwrap();
    assert!(
        e.take_effects()
            .contains(&Effect::RemoveIndex("idx".into()))
    );
    assert!(matches!(
        e.begin_write("idx"),
        Err(EngineError::IndexNotFound(_))
    ));
}

#[test]
fn recovery_fails_active_jobs_and_lists_partials() {
    let mut e = engine();
    let a = e.submit_backup(1, E, "idx", "a", None).unwrap();
    e.start(&a.job_id, 2).unwrap();
    let b = e.submit_backup(1, [9; 6], "other", "b", None).unwrap();
    let bytes = e.registry.encode();
    // restart: the registry comes back from the jobs file
    let mut e2 = Engine::new(JobRegistry::decode(&bytes, 100).unwrap());
    e2.load_index(
        "idx",
        IndexParams::new(4, SpaceType::L2),
        1,
        1,
        LogState::default(),
    );
    e2.recover(10);
    let effects = e2.take_effects();
    for j in [&a, &b] {
        assert!(
            effects.contains(&Effect::Remove(vec![
                paths::backup_tmp(&j.job_id),
                paths::backup(&j.backup_name)
            ])),
            "{effects:?}"
        );
    }
    assert!(effects.contains(&Effect::PersistJobs));
    for id in [&a.job_id, &b.job_id] {
        let j = e2.registry.get(id).unwrap();
        assert_eq!(
            (j.status, j.error.as_deref(), j.completed_at),
            (JobStatus::Failed, Some(INTERRUPTED), Some(10))
        );
    }
    assert!(e2.registry.active().next().is_none());
    assert!(
        e2.submit_backup(11, E, "idx", "a", None).is_ok(),
        "same name works after recovery"
    );
}
