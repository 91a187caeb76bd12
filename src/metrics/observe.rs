//! Values into the metrics: the counters the backfill and the consumer of this process bump
//! (read at each scrape and each second), and what the sampler read from the two databases.
//! Nothing here drives work.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use super::exposition::{InProcess, Metrics, StatusLabel, TableLabel};
use crate::lag::Sample;
use crate::pg::lsn::Lsn;
use crate::progress::{BackfillProgress, FollowProgress};

/// The window of `switchyard_backfill_rows_per_second`: long enough to smooth out chunks that
/// commit in bursts, short enough to show a throttle or a pause within a scrape or two.
const RATE_WINDOW: Duration = Duration::from_secs(10);

impl Metrics {
    /// Reads the backfill's per-table counters from now on.
    pub fn attach_backfill(&self, progress: Arc<BackfillProgress>) {
        self.in_process().backfill = Some(progress);
    }

    /// Reads the consumer's counters from now on.
    pub fn attach_follow(&self, progress: Arc<FollowProgress>) {
        self.in_process().follow = Some(progress);
    }

    /// Brings the counters up to the in-process ones. A counter never goes down: rows a failed
    /// chunk attempt had copied (taken back from the progress, copied again by the retry) are
    /// counted once, when the count passes them again.
    pub(super) fn read_in_process(&self) {
        let mut in_process = self.in_process();
        if let Some(backfill) = in_process.backfill.clone() {
            for t in &backfill.tables {
                let label = TableLabel {
                    table: t.name.clone(),
                };
                raise(&self.rows.get_or_create(&label), &t.rows);
                raise(&self.rows_rejected.get_or_create(&label), &t.rejected);
            }
            let rows = backfill.total_rows();
            let now = Instant::now();
            let readings = &mut in_process.readings;
            readings.push_back((now, rows));
            while readings
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
            {
                readings.pop_front();
            }
            let (first_at, first_rows) = readings[0];
            let elapsed = now.duration_since(first_at).as_secs_f64();
            if elapsed > 0.0 {
                self.rows_per_second
                    .set(rows.saturating_sub(first_rows) as f64 / elapsed);
            }
        }
        if let Some(follow) = &in_process.follow {
            raise(&self.changes_applied, &follow.changes_applied);
        }
    }

    /// The migration's state as [`crate::lag::sample`] read it.
    pub fn observe_sample(&self, s: &Sample) {
        let known = |v: Option<f64>| v.unwrap_or(f64::NAN);
        self.lag_bytes.set(known(s.bytes_behind.map(|b| b as f64)));
        self.lag_seconds.set(known(s.seconds_behind));
        self.slot_retained_wal
            .set(known(s.slot_retained_bytes.map(|b| b as f64)));
        self.consumer_running.set(i64::from(s.consumer_running));
        self.chunks_done.set(s.chunks_done);
        self.chunks_planned.set(s.chunks_total);
        // One series, the current status: a status left behind must not read 1 still.
        self.status.clear();
        self.status
            .get_or_create(&StatusLabel {
                status: s.status.clone(),
            })
            .set(1);
    }

    /// The rows of the migration in `switchyard.dead_letters`.
    pub fn observe_dead_letters(&self, count: i64) {
        self.dead_letters.set(count);
    }

    /// The last fence the consumer applied, and when (seconds since the Unix epoch).
    pub fn observe_fence(&self, lsn: Lsn, at: Option<f64>) {
        self.last_fence_lsn.set(lsn.0 as f64);
        self.last_fence_time.set(at.unwrap_or(f64::NAN));
    }

    /// The runtime control's state (`switchyard pause`, `throttle`): `throttle` in rows per
    /// second, `None` when not throttled. The sampler is where this gets called once
    /// [`Sample`] carries that state; until then both read 0.
    pub fn observe_control(&self, paused: bool, throttle: Option<f64>) {
        self.paused.set(i64::from(paused));
        self.throttle.set(throttle.unwrap_or(0.0));
    }

    fn in_process(&self) -> std::sync::MutexGuard<'_, InProcess> {
        // A panic while holding it left plain numbers behind: still fine to read.
        self.in_process
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Raises `counter` to the value of `source` when that is higher.
fn raise(counter: &Counter, source: &std::sync::atomic::AtomicU64) {
    let now = source.load(Ordering::Relaxed);
    let shown = counter.get();
    if now > shown {
        counter.inc_by(now - shown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'t>(text: &'t str, series: &str) -> &'t str {
        text.lines()
            .find(|l| l.starts_with(series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn rows_a_failed_chunk_took_back_are_counted_once() {
        let metrics = Metrics::new("m");
        let progress = BackfillProgress::new(["t".to_owned()]);
        metrics.attach_backfill(Arc::clone(&progress));
        let rows = &progress.tables[0].rows;
        let series = r#"switchyard_backfill_rows_total{migration="m",table="t"}"#;
        rows.store(100, Ordering::Relaxed);
        assert_eq!(line(&metrics.encode(), series), format!("{series} 100"));
        // The chunk failed: its 60 rows are taken back, then copied again by the retry.
        rows.store(40, Ordering::Relaxed);
        assert_eq!(line(&metrics.encode(), series), format!("{series} 100"));
        rows.store(130, Ordering::Relaxed);
        assert_eq!(line(&metrics.encode(), series), format!("{series} 130"));
    }

    #[test]
    fn what_is_not_read_yet_is_nan_and_unattached_counters_are_absent() {
        let text = Metrics::new("m").encode();
        assert_eq!(
            line(&text, "switchyard_lag_seconds{"),
            r#"switchyard_lag_seconds{migration="m"} NaN"#
        );
        assert!(!text.contains("switchyard_backfill_rows_total{"));
        assert!(text.contains("# TYPE switchyard_follow_changes_applied_total counter"));
    }
}
