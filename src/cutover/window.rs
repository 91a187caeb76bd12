//! The write-blocked window: from the moment the lock is granted to the moment it is released,
//! with the time each step inside it took, and the limit it must stay under.

use std::time::{Duration, Instant};

use serde::Serialize;

/// The steps of a cutover, in order; `Lock` and everything before it happen without blocking
/// writes (beyond `lock_timeout` per attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    WaitForLag,
    Rehearsal,
    Lock,
    Fence,
    Counts,
    /// The row tally's triggers dropped (see `tally`).
    Tally,
    Verify,
    /// The swap's ACCESS EXCLUSIVE lock (reads wait too); see `swap_lock`.
    SwapLock,
    WritesBoundary,
    /// `--keep-reverse`: the reverse stream's boundary recorded (see `reverse_stream`).
    ReverseStream,
    Sequences,
    CutoverSql,
    Proof,
    Dependents,
    Commit,
}

impl Step {
    pub fn describe(self) -> &'static str {
        match self {
            Step::WaitForLag => "waiting for the lag to fall under --max-lag",
            Step::Rehearsal => "rehearsal fence, count baseline (no lock)",
            Step::Lock => "acquiring the write lock",
            Step::Fence => "fence: consumer applying everything before the lock",
            Step::Counts => "row counts, carried from the baseline to the fence",
            Step::Tally => "row-tally triggers dropped from the new tables",
            Step::Verify => "verify under the lock",
            Step::SwapLock => "the swap's ACCESS EXCLUSIVE lock (reads wait too)",
            Step::WritesBoundary => "writes boundary for rollback (uncounted tables)",
            Step::ReverseStream => "reverse stream: its boundary recorded",
            Step::Sequences => "sequences and identity columns",
            Step::CutoverSql => "the plan's cutover SQL",
            Step::Proof => "proof of the swap (legacy names, read-only triggers)",
            Step::Dependents => "objects bound to the legacy tables: carried, proven unbound",
            Step::Commit => "commit (locks released)",
        }
    }
}

/// Times every step; once the lock is granted, also the window and its limit.
#[derive(Debug)]
pub struct Window {
    limit: Duration,
    granted: Option<Instant>,
    pub steps: Vec<(Step, Duration)>,
    /// What a step read when it is more than a constant, e.g. the keys the counts looked up
    /// or the tables they scanned (`--dry-run` shows how the window scales with size).
    pub reads: Vec<(Step, String)>,
}

/// The window would exceed its limit at `step`.
#[derive(Debug, Clone, Copy)]
pub struct Overrun {
    pub step: Step,
    pub elapsed: Duration,
}

impl Window {
    pub fn new(limit: Duration) -> Window {
        Window {
            limit,
            granted: None,
            steps: Vec::new(),
            reads: Vec::new(),
        }
    }

    pub fn granted(&mut self) {
        self.granted = Some(Instant::now());
    }

    /// The lock was released without a commit and will be requested again: forgets the
    /// grant and the steps timed under it.
    pub fn released(&mut self) {
        self.granted = None;
        self.steps
            .retain(|(s, _)| matches!(s, Step::WaitForLag | Step::Rehearsal));
        self.reads
            .retain(|(s, _)| matches!(s, Step::WaitForLag | Step::Rehearsal));
    }

    /// Time the lock has been held.
    pub fn elapsed(&self) -> Duration {
        self.granted.map_or(Duration::ZERO, |g| g.elapsed())
    }

    /// What is left of the limit; zero when spent.
    pub fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.elapsed())
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Records `step` as done in `took`, and fails when the window is over its limit.
    pub fn finished(&mut self, step: Step, took: Duration) -> Result<(), Overrun> {
        self.steps.push((step, took));
        if self.granted.is_some() && self.elapsed() > self.limit {
            return Err(Overrun {
                step,
                elapsed: self.elapsed(),
            });
        }
        Ok(())
    }

    /// The slowest step inside the window (what to blame for an overrun found by a timeout).
    pub fn overrun_at(&self, step: Step) -> Overrun {
        Overrun {
            step,
            elapsed: self.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_before_the_lock_never_overrun() {
        let mut w = Window::new(Duration::ZERO);
        assert!(w.finished(Step::WaitForLag, Duration::from_secs(9)).is_ok());
        w.granted();
        std::thread::sleep(Duration::from_millis(2));
        let e = w
            .finished(Step::Fence, Duration::from_millis(2))
            .unwrap_err();
        assert_eq!(e.step, Step::Fence);
    }
}
