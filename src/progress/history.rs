//! The last minute of lag samples, and what only a series can tell: the apply rate, how fast
//! the backlog drains, the ETA and the trend. The clock is whatever the caller says (time since
//! it started sampling), so a test drives it with made-up instants and gets the same frames
//! every run.

use std::collections::VecDeque;
use std::time::Duration;

use crate::lag::Sample;

/// How much history is kept: the sparkline's minute, one sample a second.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Rates are measured over this much of the history: long enough to smooth the consumer's
/// group-sized steps (it commits a group of source transactions at a time), short enough to
/// follow a change of pace within a few seconds.
const RATE_OVER: Duration = Duration::from_secs(10);

/// Samples, oldest first, each with the instant it was taken.
#[derive(Debug, Default, Clone)]
pub struct LagHistory {
    samples: VecDeque<(Duration, Sample)>,
}

impl LagHistory {
    /// Adds a sample taken at `at` (time since sampling began) and forgets what is older than
    /// [`WINDOW`].
    pub fn push(&mut self, at: Duration, sample: Sample) {
        self.samples.push_back((at, sample));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| at.saturating_sub(*t) > WINDOW)
        {
            self.samples.pop_front();
        }
    }

    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back().map(|(_, s)| s)
    }

    /// When the latest sample was taken.
    pub fn now(&self) -> Duration {
        self.samples.back().map_or(Duration::ZERO, |(t, _)| *t)
    }

    /// Changes applied per second over the last [`RATE_OVER`]; `None` before two samples.
    pub fn apply_rate(&self) -> Option<f64> {
        self.per_second(|s| Some(s.changes_applied as f64))
    }

    /// Bytes of backlog drained per second (negative while it grows).
    pub fn drain_rate(&self) -> Option<f64> {
        self.per_second(|s| s.bytes_behind.map(|b| -b as f64))
    }

    /// Time until caught up at the current drain rate: zero when caught up, `None` while the
    /// backlog does not shrink (or is unknown).
    pub fn eta(&self) -> Option<Duration> {
        match (self.latest()?.bytes_behind?, self.drain_rate()) {
            (0, _) => Some(Duration::ZERO),
            (b, Some(r)) if r > 0.0 => Some(Duration::from_secs_f64((b as f64 / r).min(1e9))),
            _ => None,
        }
    }

    /// Bytes behind, oldest first, one value per sample.
    pub fn bytes_behind(&self) -> Vec<Option<f64>> {
        self.samples
            .iter()
            .map(|(_, s)| s.bytes_behind.map(|b| b as f64))
            .collect()
    }

    /// The change of `value` per second between the oldest sample within [`RATE_OVER`] of
    /// the latest (or the one just before that stretch) and the latest.
    fn per_second(&self, value: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        let (now, last) = self.samples.back()?;
        let (then, first) = self
            .samples
            .iter()
            .find(|(t, _)| now.saturating_sub(*t) <= RATE_OVER && t < now)?;
        let seconds = (*now - *then).as_secs_f64();
        Some((value(last)? - value(first)?) / seconds)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A sample of a following migration, for the renderers' tests. The default fills the
    /// fields a display does not show yet (`Sample` grows).
    #[allow(clippy::needless_update)]
    pub(crate) fn sample(bytes_behind: i64, changes_applied: i64) -> Sample {
        Sample {
            status: "following".to_owned(),
            bytes_behind: Some(bytes_behind),
            seconds_behind: Some(0.0),
            consumer_running: true,
            changes_applied,
            slot_retained_bytes: Some(bytes_behind + (4 << 20)),
            applied_lsn: Some("0/3A2B1C0".to_owned()),
            consistent: true,
            chunks_done: 12,
            chunks_total: 12,
            ..Sample::default()
        }
    }

    fn at(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn rates_come_from_the_last_ten_seconds() {
        let mut h = LagHistory::default();
        assert_eq!(h.apply_rate(), None);
        h.push(at(0), sample(9_000, 0));
        assert_eq!(h.apply_rate(), None, "one sample has no rate");
        for s in 1..=20 {
            // 500 changes a second for 10 s, then 2,000 a second.
            let applied = if s <= 10 {
                500 * s
            } else {
                5_000 + 2_000 * (s - 10)
            };
            h.push(at(s as u64), sample(9_000 - 300 * s, applied));
        }
        assert_eq!(h.apply_rate(), Some(2_000.0));
        assert_eq!(h.drain_rate(), Some(300.0));
        assert_eq!(h.eta(), Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_growing_backlog_has_no_eta_and_a_caught_up_one_has_zero() {
        let mut h = LagHistory::default();
        h.push(at(0), sample(100, 0));
        h.push(at(1), sample(200, 0));
        assert_eq!(h.eta(), None);
        h.push(at(2), sample(0, 0));
        assert_eq!(h.eta(), Some(Duration::ZERO));
    }

    #[test]
    fn keeps_one_minute() {
        let mut h = LagHistory::default();
        for s in 0..=100 {
            h.push(at(s), sample(s as i64, 0));
        }
        assert_eq!(h.bytes_behind().len(), 61);
        assert_eq!(h.bytes_behind()[0], Some(40.0));
        assert_eq!(h.now(), at(100));
    }
}
