//! The metrics of one migration, registered once with the official client
//! ([`prometheus_client`]) and encoded by it in the Prometheus text format (version 0.0.4) at
//! each scrape. Names follow Prometheus' conventions: a `switchyard_` prefix, `_total` on
//! counters (added by the client), the unit last (`_bytes`, `_seconds`), and a `migration`
//! label on every series.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::progress::{BackfillProgress, FollowProgress};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// A gauge holding a float: a rate, a lag, or NaN for "not known".
pub(super) type FloatGauge = Gauge<f64, AtomicU64>;

/// The `table` label: a source table of the plan.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TableLabel {
    pub(super) table: String,
}

/// The `status` label: the migration's status, as `status` prints it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StatusLabel {
    pub(super) status: String,
}

/// This process's counters, once the command attached them, and the recent readings of the
/// backfill's rate (see `observe.rs`).
#[derive(Debug, Default)]
pub(super) struct InProcess {
    pub(super) backfill: Option<Arc<BackfillProgress>>,
    pub(super) follow: Option<Arc<FollowProgress>>,
    /// (when, total rows copied) over the rate's window, oldest first.
    pub(super) readings: VecDeque<(Instant, u64)>,
}

/// Every metric of a migration, and where the in-process ones are read from.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub(super) rows: Family<TableLabel, Counter>,
    pub(super) rows_rejected: Family<TableLabel, Counter>,
    pub(super) rows_per_second: FloatGauge,
    pub(super) chunks_done: Gauge,
    pub(super) chunks_planned: Gauge,
    pub(super) changes_applied: Counter,
    pub(super) lag_bytes: FloatGauge,
    pub(super) lag_seconds: FloatGauge,
    pub(super) slot_retained_wal: FloatGauge,
    pub(super) consumer_running: Gauge,
    pub(super) status: Family<StatusLabel, Gauge>,
    pub(super) dead_letters: Gauge,
    pub(super) paused: Gauge,
    pub(super) throttle: FloatGauge,
    pub(super) last_fence_lsn: FloatGauge,
    pub(super) last_fence_time: FloatGauge,
    /// The counters of this process's backfill and consumer, once the command attached them.
    pub(super) in_process: Mutex<InProcess>,
}

impl Metrics {
    /// The metrics of migration `migration`, all registered; nothing read yet (the values a
    /// reading would only guess, such as the lag, are NaN until then).
    pub fn new(migration: &str) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix_and_labels(
            "switchyard",
            [(Cow::Borrowed("migration"), Cow::Owned(migration.to_owned()))].into_iter(),
        );
        let unknown = || {
            let g = FloatGauge::default();
            g.set(f64::NAN);
            g
        };
        let m = Metrics {
            registry: Registry::default(),
            rows: Family::default(),
            rows_rejected: Family::default(),
            rows_per_second: FloatGauge::default(),
            chunks_done: Gauge::default(),
            chunks_planned: Gauge::default(),
            changes_applied: Counter::default(),
            lag_bytes: unknown(),
            lag_seconds: unknown(),
            slot_retained_wal: unknown(),
            consumer_running: Gauge::default(),
            status: Family::default(),
            dead_letters: Gauge::default(),
            paused: Gauge::default(),
            throttle: FloatGauge::default(),
            last_fence_lsn: unknown(),
            last_fence_time: unknown(),
            in_process: Mutex::default(),
        };
        let r = &mut registry;
        r.register(
            "backfill_rows",
            "Source rows the backfill copied into the target, per source table (on --resume, from the rows earlier runs copied)",
            m.rows.clone(),
        );
        r.register(
            "backfill_rows_rejected",
            "Source rows the backfill rejected into switchyard.dead_letters, per source table, in chunks that committed",
            m.rows_rejected.clone(),
        );
        r.register(
            "backfill_rows_per_second",
            "Rows per second the backfill copied over the last 10 seconds (rate(switchyard_backfill_rows_total[1m]) is the same from the counter)",
            m.rows_per_second.clone(),
        );
        r.register(
            "backfill_chunks_done",
            "Chunks of the backfill copied and recorded in the target",
            m.chunks_done.clone(),
        );
        r.register(
            "backfill_chunks_planned",
            "Chunks the backfill planned, done or not",
            m.chunks_planned.clone(),
        );
        r.register(
            "follow_changes_applied",
            "Source row changes the WAL consumer of this process applied and committed in the target",
            m.changes_applied.clone(),
        );
        r.register_with_unit(
            "lag",
            "WAL between the source's current position and what the target applied (NaN: no slot)",
            Unit::Bytes,
            m.lag_bytes.clone(),
        );
        r.register_with_unit(
            "lag",
            "Age of the oldest source commit the consumer holds unapplied, 0 when caught up (NaN: no consumer running)",
            Unit::Seconds,
            m.lag_seconds.clone(),
        );
        r.register_with_unit(
            "slot_retained_wal",
            "WAL the migration's replication slot keeps on the source (NaN: no slot)",
            Unit::Bytes,
            m.slot_retained_wal.clone(),
        );
        r.register(
            "consumer_running",
            "1 while a WAL consumer of the migration heartbeats, from any machine",
            m.consumer_running.clone(),
        );
        r.register(
            "migration_status",
            "1 for the migration's status as the target records it",
            m.status.clone(),
        );
        r.register(
            "dead_letters",
            "Rows of the migration in switchyard.dead_letters (backfill and follow)",
            m.dead_letters.clone(),
        );
        r.register(
            "paused",
            "1 while the migration is paused (switchyard pause)",
            m.paused.clone(),
        );
        r.register(
            "throttle_rows_per_second",
            "The rows per second the migration is throttled to; 0 when not throttled",
            m.throttle.clone(),
        );
        r.register(
            "last_fence_lsn",
            "Source WAL position of the last fence the consumer applied, in bytes",
            m.last_fence_lsn.clone(),
        );
        r.register_with_unit(
            "last_fence_timestamp",
            "When the consumer applied the last fence, since the Unix epoch",
            Unit::Seconds,
            m.last_fence_time.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// The exposition of every metric, read now: the in-process counters as they are, the
    /// target's state as last sampled.
    pub fn encode(&self) -> String {
        self.read_in_process();
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)
            .expect("writing into a String cannot fail");
        text
    }
}
