//! Runs `--backup-schedule`s: a timer thread that submits each schedule's backup when the
//! core says it is due (`cairn_core::control::schedule`), applies retention once it has
//! completed, and remembers each schedule's last run in `schedules.json` so a run missed
//! while the server was down happens once at start.

use crate::db::{Db, DbError, lock};
use crate::drive;
use crate::fsutil::{self, now_ms};
use cairn_core::JobStatus;
use cairn_core::control::schedule::{Schedule, ScheduleState};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The state file, in the data directory.
pub const STATE_FILE: &str = "schedules.json";
/// How often the timer looks (a due run starts within this).
const TICK: Duration = Duration::from_millis(250);
/// Wait before retrying a run that could not be submitted (index loading, busy, store down).
const RETRY_MS: u64 = 10_000;

/// One schedule as `GET /api/v1/backups/schedules` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleStatus {
    /// `index@target`.
    pub id: String,
    /// The schedule.
    #[serde(flatten)]
    pub schedule: Schedule,
    /// Last run (ms since epoch).
    pub last_run: Option<u64>,
    /// Next run (ms since epoch).
    pub next_run: u64,
    /// The job of the last run.
    pub last_job: Option<String>,
    /// Why the last attempt could not start or retention failed.
    pub last_error: Option<String>,
}

/// Starts the timer thread over `schedules` (nothing when empty).
pub fn start(db: Arc<Db>, schedules: Vec<Schedule>) -> std::io::Result<()> {
    if schedules.is_empty() {
        return Ok(());
    }
    let state = std::fs::read(db.path(STATE_FILE))
        .map(|b| ScheduleState::decode(&b))
        .unwrap_or_default();
    *lock(&db.schedules) = schedules
        .into_iter()
        .map(|s| {
            let last = state.last_run.get(&s.id()).copied();
            ScheduleStatus {
                id: s.id(),
                next_run: s.next_at(last),
                schedule: s,
                last_run: last,
                last_job: None,
                last_error: None,
            }
        })
        .collect();
    std::thread::Builder::new()
        .name("backup-scheduler".into())
        .spawn(move || {
            let mut pending: Vec<Option<String>> = vec![None; lock(&db.schedules).len()];
            loop {
                std::thread::sleep(TICK);
                for (i, p) in pending.iter_mut().enumerate() {
                    turn(&db, i, p);
                }
            }
        })?;
    Ok(())
}

/// One look at schedule `i`: conclude its pending job (retention), or start a due run.
fn turn(db: &Arc<Db>, i: usize, pending: &mut Option<String>) {
    let s = lock(&db.schedules)[i].clone();
    if let Some(job) = pending.clone() {
        let status = db.job(&job).map(|j| j.status);
        match status {
            Ok(st) if st.is_active() => return,
            Ok(JobStatus::Completed) => {
                let r = retention(db, &s.schedule);
                set_error(db, i, r.err().map(|e| format!("retention: {e}")));
            }
            _ => {}
        }
        *pending = None;
    }
    let now = now_ms();
    if now < s.next_run || !db.ready() {
        return;
    }
    match run(db, &s.schedule, now) {
        Ok(job) => {
            tracing::info!(schedule = %s.id, job = %job, "scheduled backup started");
            *pending = Some(job.clone());
            {
                let mut all = lock(&db.schedules);
                let st = &mut all[i];
                st.last_run = Some(now);
                st.next_run = st.schedule.next_at(Some(now));
                st.last_job = Some(job);
                st.last_error = None;
            }
            persist(db);
        }
        Err(e) => {
            tracing::warn!(schedule = %s.id, error = %e, "scheduled backup could not start; retrying");
            let mut all = lock(&db.schedules);
            all[i].next_run = now + RETRY_MS.min(all[i].schedule.every_ms);
            all[i].last_error = Some(e.to_string());
        }
    }
}

fn set_error(db: &Db, i: usize, e: Option<String>) {
    if let Some(e) = &e {
        tracing::warn!(error = %e, "backup schedule");
    }
    lock(&db.schedules)[i].last_error = e;
}

/// This schedule's archives where it writes them, `(name, base)` oldest first.
fn own(db: &Db, s: &Schedule) -> Result<Vec<(String, Option<String>)>, DbError> {
    let all: Vec<(String, Option<String>)> = match &s.target {
        Some(t) => db
            .target_backups(t)?
            .into_iter()
            .map(|r| (r.name, r.base))
            .collect(),
        None => db.local_bases(),
    };
    Ok(s.own(&all))
}

/// Submits one run: full, or incremental on the newest archive while its chain is shorter
/// than `full_every`.
fn run(db: &Arc<Db>, s: &Schedule, now: u64) -> Result<String, DbError> {
    let existing = own(db, s)?;
    let base = s.base_for(&existing);
    let name = s.archive_name(now);
    let job = drive::submit_backup(db, &s.index, &name, s.target.as_deref(), base.as_deref())?;
    Ok(job.job_id)
}

/// Deletes what retention says, newest first.
fn retention(db: &Db, s: &Schedule) -> Result<(), DbError> {
    for name in s.expired(&own(db, s)?) {
        match &s.target {
            Some(t) => db.delete_target_backup(t, &name, false)?,
            None => db.delete_backup(&name, false)?,
        };
        tracing::info!(schedule = %s.id(), archive = %name, "retention deleted a backup");
    }
    Ok(())
}

fn persist(db: &Db) {
    let state = ScheduleState {
        last_run: lock(&db.schedules)
            .iter()
            .filter_map(|s| s.last_run.map(|l| (s.id.clone(), l)))
            .collect(),
    };
    if let Err(e) = fsutil::replace_atomic(&db.path(STATE_FILE), &state.encode()) {
        tracing::warn!(error = %e, "could not write {STATE_FILE}; a restart may run a schedule early");
    }
}
