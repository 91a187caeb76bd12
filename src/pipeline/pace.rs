//! A rate cap as a schedule, with no clock of its own (the caller passes `now`), so that it is
//! tested without sleeping. Work is paid for after it is done: each batch moves the time the
//! next may start by `units / rate`, and the caller waits until then. Idle time earns no more
//! than [`CATCH_UP`] of credit (a cap that allowed bursts after a pause would not be a cap).
//!
//! ```text
//!   batch of 500 rows at 1000 rows/s done at t ──> next batch not before max(due, t) + 0.5 s
//! ```

use std::time::{Duration, Instant};

/// How far behind its schedule the work may be and still catch up: a sleep ends late, and the
/// work between two waits takes time; without this credit every such delay would be lost and
/// a consumer paced change by change would run well under its cap. More would allow bursts.
const CATCH_UP: Duration = Duration::from_millis(100);

/// When the next unit of work may start, under a rate cap.
#[derive(Debug, Default)]
pub struct Pace {
    /// The cap `due` was computed under; another cap starts the schedule afresh.
    rate: Option<u64>,
    due: Option<Instant>,
}

impl Pace {
    /// Records that `units` were done at `now` under `rate` units per second; returns how long
    /// to wait before the next.
    pub fn after(&mut self, now: Instant, units: u64, rate: u64) -> Duration {
        if self.rate != Some(rate) {
            self.rate = Some(rate);
            self.due = None;
        }
        let earliest = now.checked_sub(CATCH_UP).unwrap_or(now);
        let from = self.due.map_or(now, |due| due.max(earliest));
        let due = from + Duration::from_secs_f64(units as f64 / rate.max(1) as f64);
        self.due = Some(due);
        due.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_spaced_by_their_size_over_the_rate() {
        let mut pace = Pace::default();
        let t = Instant::now();
        assert_eq!(pace.after(t, 500, 1000), Duration::from_millis(500));
        // Done again at once (another worker): it waits for both batches.
        assert_eq!(pace.after(t, 500, 1000), Duration::from_millis(1000));
        // Done after the schedule: idle time earns no more than the catch-up credit.
        let late = t + Duration::from_secs(5);
        assert_eq!(pace.after(late, 300, 1000), Duration::from_millis(200));
    }

    #[test]
    fn a_late_wake_up_is_made_up_by_the_next_wait() {
        let mut pace = Pace::default();
        let t = Instant::now();
        assert_eq!(pace.after(t, 10, 1000), Duration::from_millis(10));
        // Woke 4 ms late: the next batch waits 4 ms less.
        let woke = t + Duration::from_millis(14);
        assert_eq!(pace.after(woke, 10, 1000), Duration::from_millis(6));
    }

    #[test]
    fn a_new_rate_starts_the_schedule_afresh() {
        let mut pace = Pace::default();
        let t = Instant::now();
        assert_eq!(pace.after(t, 10_000, 1), Duration::from_secs(10_000));
        assert_eq!(pace.after(t, 1000, 1000), Duration::from_secs(1));
    }

    #[test]
    fn many_single_units_add_up_to_the_rate() {
        let mut pace = Pace::default();
        let t = Instant::now();
        let mut wait = Duration::ZERO;
        for _ in 0..2000 {
            wait = pace.after(t, 1, 1000);
        }
        assert!((wait.as_secs_f64() - 2.0).abs() < 1e-6, "{wait:?}");
    }
}
