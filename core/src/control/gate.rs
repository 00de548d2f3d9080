//! The write gate of one index: whether a write may go ahead now, and how long writes waited
//! because of each backup.
//!
//! ```text
//!            cut(job, now)              release(now) → (job, waited µs)
//!   Open ─────────────────────▶ Cut ─────────────────────────────────▶ Open
//!     │ close()                                                        ▲
//!     └──────────────────────▶ Closed ── reopen() ─────────────────────┘
//! ```
//! *Open* admits writes. *Cut* is the instant a backup records its point in time: writes wait
//! (they are never refused for a backup). *Closed* refuses writes: the index is being deleted.
//! Time is the host's monotonic clock in microseconds, passed in.

/// What the gate says to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Go ahead.
    Go,
    /// A backup is recording its cut: retry when it is released.
    Wait,
    /// The index is closing: refuse.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum State {
    #[default]
    Open,
    Cut {
        job: String,
        since_us: u64,
    },
    Closed,
}

/// One index's gate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteGate {
    state: State,
}

impl WriteGate {
    /// A gate admitting writes.
    pub fn new() -> Self {
        Self::default()
    }

    /// May a write proceed now?
    pub fn admit(&self) -> Admit {
        match self.state {
            State::Open => Admit::Go,
            State::Cut { .. } => Admit::Wait,
            State::Closed => Admit::Closed,
        }
    }

    /// A backup starts recording its cut at `now_us`. Only from open (one cut at a time).
    pub fn cut(&mut self, job: &str, now_us: u64) -> bool {
        if self.state != State::Open {
            return false;
        }
        self.state = State::Cut {
            job: job.into(),
            since_us: now_us,
        };
        true
    }

    /// The cut is recorded: writes go on. Returns the job and how long writes were held.
    pub fn release(&mut self, now_us: u64) -> Option<(String, u64)> {
        match std::mem::take(&mut self.state) {
            State::Cut { job, since_us } => Some((job, now_us.saturating_sub(since_us))),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Refuses every write from now on (the index is being deleted).
    pub fn close(&mut self) {
        self.state = State::Closed;
    }

    /// Admits writes again after a close that did not go through.
    pub fn reopen(&mut self) {
        if self.state == State::Closed {
            self.state = State::Open;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_holds_writes_and_measures_the_hold() {
        let mut g = WriteGate::new();
        assert_eq!(g.admit(), Admit::Go);
        assert!(g.cut("j1", 1_000));
        assert_eq!(g.admit(), Admit::Wait);
        assert!(!g.cut("j2", 1_001), "one cut at a time");
        assert_eq!(g.release(1_007), Some(("j1".into(), 7)));
        assert_eq!(g.admit(), Admit::Go);
        assert_eq!(g.release(2_000), None);
        g.close();
        assert_eq!(g.admit(), Admit::Closed);
        assert!(!g.cut("j3", 3_000));
        g.reopen();
        assert_eq!(g.admit(), Admit::Go);
    }
}
