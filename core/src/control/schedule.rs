//! Scheduled backups and their retention, as pure decisions a host's timer acts on: when a
//! schedule is due (a run missed while the server was down happens once at start, not once
//! per missed period), what the next archive is called and whether it is incremental, and
//! which archives retention deletes (the oldest beyond `keep`, never one a kept archive's
//! chain needs).

use crate::control::engine::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// A `--backup-schedule` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("backup schedule {spec:?}: {why}")]
pub struct ScheduleError {
    /// The text given.
    pub spec: String,
    /// What is wrong with it.
    pub why: String,
}

/// One schedule: back up `index` every `every_ms` to `target`, keep the newest `keep`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// The index backed up.
    pub index: String,
    /// Period, ms.
    pub every_ms: u64,
    /// Archives of this schedule kept (at least 1).
    pub keep: usize,
    /// Backup target (`None`: the data directory's `backups/`).
    pub target: Option<String>,
    /// Every `full_every`-th archive is full, the others incremental on the one before
    /// (1: all full).
    pub full_every: usize,
}

/// Parses `1h`, `30m`, `45s`, `2d`, `500ms` into ms.
fn duration_ms(s: &str) -> Option<u64> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mul = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mul).filter(|ms| *ms > 0)
}

impl Schedule {
    /// Parses `index=NAME every=1h keep=24 [target=NAME] [full_every=N]`.
    pub fn parse(spec: &str) -> Result<Self, ScheduleError> {
        let err = |why: String| ScheduleError {
            spec: spec.into(),
            why,
        };
        let mut kv = BTreeMap::new();
        for part in spec.split_whitespace() {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| err(format!("{part:?} is not key=value")))?;
            if kv.insert(k, v).is_some() {
                return Err(err(format!("{k} given twice")));
            }
        }
        let index = kv
            .remove("index")
            .ok_or_else(|| err("missing index=NAME".into()))?;
        crate::params::validate_stored_name(index).map_err(|e| err(e.to_string()))?;
        let every = kv
            .remove("every")
            .ok_or_else(|| err("missing every=DURATION (e.g. 1h, 30m)".into()))?;
        let every_ms = duration_ms(every)
            .ok_or_else(|| err(format!("every={every}: a duration like 90s, 30m, 1h, 1d")))?;
        let keep =
            match kv.remove("keep") {
                None => 24,
                Some(k) => k.parse::<usize>().ok().filter(|k| *k >= 1).ok_or_else(|| {
                    err(format!("keep={k}: a whole number of archives, at least 1"))
                })?,
            };
        let target = kv
            .remove("target")
            .filter(|t| *t != "local")
            .map(String::from);
        let full_every = match kv.remove("full_every") {
            None => 1,
            Some(k) => k
                .parse::<usize>()
                .ok()
                .filter(|k| *k >= 1)
                .ok_or_else(|| err(format!("full_every={k}: at least 1")))?,
        };
        if let Some(k) = kv.keys().next() {
            return Err(err(format!(
                "unknown key {k:?} (index, every, keep, target, full_every)"
            )));
        }
        Ok(Self {
            index: index.into(),
            every_ms,
            keep,
            target,
            full_every,
        })
    }

    /// What names this schedule's archives and its state: `<index>@<target>`.
    pub fn id(&self) -> String {
        format!(
            "{}@{}",
            self.index,
            self.target.as_deref().unwrap_or("local")
        )
    }

    /// The prefix of this schedule's archive names.
    pub fn prefix(&self) -> String {
        format!("{}-sched-", self.index)
    }

    /// When the next run is due: now if it never ran (or ran a period or more ago: one run
    /// however many periods were missed), else a period after the last.
    pub fn next_at(&self, last_run_ms: Option<u64>) -> u64 {
        last_run_ms.map_or(0, |l| l.saturating_add(self.every_ms))
    }

    /// The archive a run at `now_ms` writes: names sort by time (zero-padded ms).
    pub fn archive_name(&self, now_ms: u64) -> String {
        format!("{}{now_ms:015}", self.prefix())
    }

    /// The base of the next archive given this schedule's existing ones (oldest first):
    /// the newest, unless the chain it ends is `full_every` long already (then a full one).
    pub fn base_for(&self, existing: &[(String, Option<String>)]) -> Option<String> {
        if self.full_every <= 1 {
            return None;
        }
        let (newest, _) = existing.last()?;
        // Length of the chain ending at the newest archive.
        let mut len = 1;
        let mut at = newest.clone();
        while let Some(Some(b)) = existing.iter().find(|(n, _)| *n == at).map(|(_, b)| b) {
            len += 1;
            at = b.clone();
            if len > existing.len() {
                break;
            }
        }
        (len < self.full_every).then(|| newest.clone())
    }

    /// This schedule's archives among `all` (name, base), oldest first.
    pub fn own(&self, all: &[(String, Option<String>)]) -> Vec<(String, Option<String>)> {
        let p = self.prefix();
        let mut v: Vec<_> = all
            .iter()
            .filter(|(n, _)| {
                n.strip_prefix(&p)
                    .is_some_and(|t| t.len() == 15 && t.bytes().all(|b| b.is_ascii_digit()))
            })
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// What retention deletes among this schedule's archives `own` (oldest first): those
    /// beyond the newest `keep`, except any a kept archive's chain needs; newest first, so
    /// a deletion stopped part-way never leaves an archive without its base.
    pub fn expired(&self, own: &[(String, Option<String>)]) -> Vec<String> {
        let cut = own.len().saturating_sub(self.keep);
        let mut doomed: Vec<String> = own[..cut].iter().map(|(n, _)| n.clone()).collect();
        // Keep whatever a kept archive depends on: drop a candidate whose dependents are
        // not all candidates too.
        loop {
            let current = doomed.clone();
            doomed.retain(|n| {
                Engine::dependents(n, own)
                    .iter()
                    .all(|d| current.contains(d))
            });
            if doomed.len() == current.len() {
                break;
            }
        }
        doomed.reverse();
        doomed
    }
}

/// What a host remembers of its schedules across restarts: each one's last run (ms).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// Last run by schedule id.
    pub last_run: BTreeMap<String, u64>,
}

impl ScheduleState {
    /// Decodes the state file; an unreadable one is an empty state (each schedule then
    /// runs once at start, which is what a missed run does anyway).
    pub fn decode(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_default()
    }
    /// The state file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(spec: &str) -> Schedule {
        Schedule::parse(spec).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        let x = s("index=docs every=1h keep=3 target=s3 full_every=4");
        assert_eq!(
            (x.every_ms, x.keep, x.target.as_deref(), x.full_every),
            (3_600_000, 3, Some("s3"), 4)
        );
        assert_eq!(s("index=docs every=30m target=local").target, None);
        for bad in [
            "every=1h",
            "index=docs",
            "index=docs every=1y",
            "index=docs every=0s",
            "index=docs every=1h keep=0",
            "index=docs every=1h nope=1",
            "index=a/b every=1h",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missed_run_happens_once_and_names_sort_by_time() {
        let x = s("index=docs every=10s");
        assert_eq!(x.next_at(None), 0);
        assert_eq!(x.next_at(Some(5_000)), 15_000);
        assert!(x.archive_name(9) < x.archive_name(10_000));
    }

    #[test]
    fn retention_keeps_the_newest_and_every_base_they_need() {
        let x = s("index=d every=1h keep=2 full_every=3");
        let n = |i: u64| x.archive_name(i);
        // Chains: [0 ← 1 ← 2], [3 ← 4].
        let own = vec![
            (n(0), None),
            (n(1), Some(n(0))),
            (n(2), Some(n(1))),
            (n(3), None),
            (n(4), Some(n(3))),
        ];
        assert_eq!(x.expired(&own), vec![n(2), n(1), n(0)]);
        // Keep 3: archive 2 is kept, so its chain 0 ← 1 stays too.
        let keep3 = Schedule {
            keep: 3,
            ..x.clone()
        };
        assert!(keep3.expired(&own).is_empty());
        // The next archive continues the newest chain until it is full_every long.
        assert_eq!(x.base_for(&own), Some(n(4)));
        assert_eq!(x.base_for(&own[..3]), None);
        assert_eq!(s("index=d every=1h").base_for(&own), None);
        // Only this schedule's archives are its own.
        let mixed = vec![(n(0), None), ("other".to_string(), None)];
        assert_eq!(x.own(&mixed).len(), 1);
    }
}
