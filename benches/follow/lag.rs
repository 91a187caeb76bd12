//! The lag of one running consumer while the uniform mix writes as fast as the source allows.
//!
//! Bytes behind are `switchyard watch`'s (`switchyard::lag::sample`): the source's WAL position
//! minus the later of the slot's confirmed position and the applied LSN.
//!
//! Seconds behind are measured here as the age of the oldest source commit not yet applied:
//! `clock_timestamp() - applied_commit_at` on the target, `applied_commit_at` being the commit
//! time of the last transaction of the last applied group (or the load's start, if later: the
//! first commit after that group is the load's first); both clusters run on this machine's
//! clock. Under a load committing every fraction of a millisecond, the oldest unapplied commit
//! follows the newest applied one within one commit interval. The consumer is running (its
//! slot active) before the load starts, so its start-up is not counted.
//!
//! `watch`'s own seconds behind (`lag::sample`, printed beside it) reads 0 under this load, and
//! that is a blind spot of its definition, not a measurement: it is `now() - pending_since`,
//! where `pending_since` is the first commit of the group the consumer holds open, written only
//! by the heartbeat (once a second, `STATUS_INTERVAL`) and set back to NULL by every applied
//! group (`checkpoint::summarize`). Groups commit every few milliseconds, so a sample
//! almost always finds NULL, which reads 0 while a consumer runs; and transactions still in the
//! walsender, the network or the consumer's queue count in neither case.

use std::time::{Duration, Instant};

use switchyard::demo::write_load::{WriteLoad, WriteLoadOptions};
use switchyard::plan::Plan;

use crate::contender::Contender;
use crate::{Bench, LAG_LOAD};

/// How often the lag is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

pub async fn run(bench: &Bench, contender: &Contender) {
    let Contender::Switchyard {
        plan, target_url, ..
    } = contender
    else {
        panic!("the lag part runs a switchyard consumer");
    };
    let plan = Plan::load(plan).unwrap();
    let (target, connection) = tokio_postgres::connect(target_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let end = bench.insert_lsn().await;
    let consumer = contender.start(bench, end);
    bench.wait_for_active(&contender.slot()).await;
    let load_started: f64 = target
        .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
        .await
        .unwrap()
        .get(0);
    let load = WriteLoad::start(&bench.source_url, WriteLoadOptions::default())
        .await
        .unwrap();
    let (mut bytes, mut seconds, mut watch_seconds) = (Vec::new(), Vec::new(), Vec::new());
    let sampling = Instant::now();
    while sampling.elapsed() < LAG_LOAD {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let Some(sample) = switchyard::lag::sample(&bench.source, &target, &plan)
            .await
            .unwrap()
        else {
            continue;
        };
        bytes.push(sample.bytes_behind.unwrap_or(0) as f64);
        if let Some(s) = sample.seconds_behind {
            watch_seconds.push(s);
        }
        let age: Option<f64> = target
            .query_one(
                "SELECT extract(epoch FROM clock_timestamp()
                                   - greatest(applied_commit_at, to_timestamp($2)))::float8
                   FROM switchyard.migrations WHERE name = $1",
                &[&plan.name, &load_started],
            )
            .await
            .unwrap()
            .get(0);
        seconds.extend(age);
    }
    let report = load.stop().await.unwrap();
    contender.stop(bench, consumer).await;
    let (bytes, seconds, watch_seconds) = (
        Percentiles::of(bytes),
        Percentiles::of(seconds),
        Percentiles::of(watch_seconds),
    );
    println!();
    println!(
        "lag of {} under the uniform mix at {:.0} tx/s for {:.0} s, sampled every {} ms:",
        contender.label(),
        report.counts.committed() as f64 / LAG_LOAD.as_secs_f64(),
        LAG_LOAD.as_secs_f64(),
        SAMPLE_EVERY.as_millis()
    );
    println!(
        "  bytes behind  p50 {:.1} kB, max {:.1} kB",
        bytes.p50 / 1e3,
        bytes.max / 1e3
    );
    println!(
        "  seconds behind (age of the oldest unapplied source commit) p50 {:.3}, max {:.3}  (goal <= 0.5 s)",
        seconds.p50, seconds.max
    );
    println!(
        "  watch's seconds behind (open group's first commit, heartbeat only) p50 {:.3}, max {:.3}",
        watch_seconds.p50, watch_seconds.max
    );
}

struct Percentiles {
    p50: f64,
    max: f64,
}

impl Percentiles {
    /// NaN for no samples.
    fn of(mut values: Vec<f64>) -> Percentiles {
        values.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let index = ((values.len() as f64 - 1.0) * p).round() as usize;
            values.get(index).copied().unwrap_or(f64::NAN)
        };
        Percentiles {
            p50: at(0.5),
            max: at(1.0),
        }
    }
}
