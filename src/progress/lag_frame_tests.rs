//! Frames as a person sees them, from a made-up minute: a backlog that grows, then drains.

use std::time::Duration;

use super::*;
use crate::lag::Sample;
use crate::progress::history::tests::sample;

/// A follow 75 s long, sampled each second: a burst of writes at 20-35 s that the consumer
/// drains by 55 s, applying 1,250 changes a second.
fn followed() -> LagHistory {
    let mut h = LagHistory::default();
    for s in 0..=75_i64 {
        let behind = match s {
            20..=35 => (s - 19) * 310_000,
            36..=55 => (55 - s) * 248_000,
            _ => 0,
        };
        h.push(
            Duration::from_secs(s as u64),
            sample(behind, 40_000 + 1_250 * s),
        );
    }
    h
}

/// No number with more decimals than a person reads.
fn assert_no_float_noise(text: &str) {
    let noisy = text
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|n| n.split_once('.').is_some_and(|(_, frac)| frac.len() > 1));
    assert!(!noisy, "float noise in:\n{text}");
}

#[test]
fn watch_shows_lag_trend_rate_eta_and_the_slot_against_its_limit() {
    let mut h = followed();
    let mut s = sample(1_240_000, 40_000 + 1_250 * 76);
    s.seconds_behind = Some(0.84);
    s.slot_retained_bytes = Some(5_180_000);
    h.push(Duration::from_secs(76), s);
    let frame = Frame {
        migration: "legacy_to_projects",
        history: &h,
        tables: &[],
        wal_keep_limit: Some(1 << 30),
        message: None,
    }
    .render();
    assert_eq!(
        frame,
        "\
legacy_to_projects  following, consistent  (watching 1m16s, Ctrl-C quits)
  behind    1.2 MB / 0.8s
  last 1m00s ▁▁▁▁▂▂▃▃▄▄▅▅▅▆▆▇▇███▇▇▇▆▆▆▅▅▅▄▄▃▃▃▂▂▂▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▃ peak 4.7 MB
  applying  1.2k changes/s, ETA -, 135k changes applied
  slot      retains 4.9 MB of max_slot_wal_keep_size 1.0 GB (0%)
"
    );
    assert_no_float_noise(&frame);
}

#[test]
fn watch_shows_a_bar_per_table_while_copying_and_a_stop_with_its_reason() {
    let mut h = LagHistory::default();
    let copying = |done| Sample {
        status: "backfilling".to_owned(),
        chunks_done: done,
        chunks_total: 40,
        ..sample(0, 0)
    };
    h.push(Duration::from_secs(0), copying(10));
    h.push(Duration::from_secs(1), copying(12));
    let tables = [
        TableChunks {
            table: "public.company_projects".to_owned(),
            chunks_done: 8,
            chunks_total: 10,
            row_count: 73_564,
        },
        TableChunks {
            table: "public.items".to_owned(),
            chunks_done: 4,
            chunks_total: 30,
            row_count: 1_234_567,
        },
    ];
    let frame = Frame {
        migration: "m",
        history: &h,
        tables: &tables,
        wal_keep_limit: None,
        message: None,
    }
    .render();
    assert!(
        frame.contains(
            "  backfill  12/40 chunks
    public.company_projects  [===================>    ]  8/10 chunks, 73.6k rows
    public.items             [===>                    ]  4/30 chunks, 1.2M rows
"
        ),
        "{frame}"
    );
    assert!(
        frame.contains("(max_slot_wal_keep_size unlimited)"),
        "{frame}"
    );

    let mut stopped = sample(2048, 10);
    stopped.status = "stopped".to_owned();
    stopped.consumer_running = false;
    stopped.seconds_behind = None;
    h.push(Duration::from_secs(2), stopped);
    let frame = Frame {
        migration: "m",
        history: &h,
        tables: &tables,
        wal_keep_limit: None,
        message: Some("consumer stopped: the slot was invalidated"),
    }
    .render();
    assert!(
        frame.contains("  behind    2.0 kB / ? (consumer not running)\n"),
        "{frame}"
    );
    assert!(
        frame.ends_with("  STOPPED   consumer stopped: the slot was invalidated\n"),
        "{frame}"
    );
}

#[test]
fn the_status_line_fits_a_terminal_and_the_plain_line_reads_alone() {
    let h = followed();
    let line = status_line(&h);
    assert_eq!(
        line,
        "behind 0 B / 0.0s ▁▂▄▆██▇▅▄▂▁▁▁▁▁▁ · 1.2k changes/s · slot 4.0 MB · consistent"
    );
    assert!(line.chars().count() <= 80, "{line}");
    assert_eq!(
        plain_line("legacy_to_projects", &h),
        "legacy_to_projects following: 0 B / 0.0s behind, 1.2k changes/s, slot holds 4.0 MB, ETA caught up, consistent"
    );
    assert_no_float_noise(&line);
}
