//! What the lag displays show, as text: pure functions of the sample history (and its clock),
//! with no terminal in sight, so a test can hold a frame in a string and compare it.
//!
//! - [`Frame`]: `watch`'s screen on a terminal, redrawn in place each second;
//! - [`status_line`]: the one line `backfill` (once it follows) and `follow` keep updated;
//! - [`plain_line`]: a line that stands on its own in a log, for output that is no terminal.
//!
//! A frame is a list of sections, each a small function that pushes lines (or nothing): a new
//! fact on the screen is one more function in [`Frame::render`].

use std::fmt::Write as _;
use std::time::Duration;

use super::history::LagHistory;
use super::human;
use super::sparkline::{sparkline, squeeze};

/// Width of `watch`'s sparkline: a minute at one sample a second.
const TREND_WIDTH: usize = 60;

/// Width of the status line's sparkline: the same minute, three seconds a character, so the
/// whole line fits 80 columns.
const STATUS_TREND_WIDTH: usize = 20;

/// Width of a table's backfill bar.
const BAR_WIDTH: usize = 24;

/// One source table's backfill, as the tool's state records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChunks {
    pub table: String,
    pub chunks_done: i64,
    pub chunks_total: i64,
    pub row_count: i64,
}

/// `watch`'s screen.
pub struct Frame<'a> {
    pub migration: &'a str,
    pub history: &'a LagHistory,
    /// Per-table chunks, shown while the backfill copies.
    pub tables: &'a [TableChunks],
    /// The source's `max_slot_wal_keep_size` in bytes; `None` when unlimited.
    pub wal_keep_limit: Option<i64>,
    /// Why the migration stopped (or what it last reported), from its state.
    pub message: Option<&'a str>,
}

impl Frame<'_> {
    /// The frame's text, lines ending in `\n`.
    pub fn render(&self) -> String {
        let Some(now) = self.history.latest() else {
            return format!("{}: waiting for the first sample\n", self.migration);
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}  {}{}  (watching {}, Ctrl-C quits)",
            self.migration,
            now.status,
            if now.consistent { ", consistent" } else { "" },
            human::duration(self.history.now()),
        );
        self.backfill(&mut out);
        self.lag(&mut out);
        self.slot(&mut out);
        self.controls(&mut out);
        self.stop(&mut out);
        out
    }

    /// A pause or a throttle an operator set (`switchyard pause`, `throttle`), and the
    /// backfill's worker processes while they copy.
    fn controls(&self, out: &mut String) {
        let Some(now) = self.history.latest() else {
            return;
        };
        if let Some(line) = controls_line(now) {
            let _ = writeln!(out, "  control   {line}");
        }
        if now.chunks_done < now.chunks_total {
            for worker in now.workers.iter().filter(|w| !w.finished) {
                let _ = writeln!(out, "  worker    {worker}");
            }
        }
    }

    fn backfill(&self, out: &mut String) {
        let Some(now) = self.history.latest() else {
            return;
        };
        if now.chunks_done >= now.chunks_total {
            return;
        }
        let _ = writeln!(
            out,
            "  backfill  {}/{} chunks",
            now.chunks_done, now.chunks_total
        );
        let name_width = self.tables.iter().map(|t| t.table.len()).max().unwrap_or(0);
        for t in self.tables {
            let _ = writeln!(
                out,
                "    {:<name_width$}  [{}]  {}/{} chunks, {} rows",
                t.table,
                bar(t.chunks_done, t.chunks_total, BAR_WIDTH),
                t.chunks_done,
                t.chunks_total,
                human::count(t.row_count as f64),
            );
        }
    }

    fn lag(&self, out: &mut String) {
        let Some(now) = self.history.latest() else {
            return;
        };
        let trend = self.history.bytes_behind();
        let peak = trend.iter().flatten().fold(0.0_f64, |m, v| m.max(*v));
        let _ = writeln!(out, "  behind    {}", behind(now));
        let _ = writeln!(
            out,
            "  last {:<4} {} peak {}",
            human::duration(self.history.now().min(super::history::WINDOW)),
            sparkline(&trend, TREND_WIDTH),
            human::bytes(peak as i64),
        );
        let _ = writeln!(
            out,
            "  applying  {}, ETA {}, {} changes applied",
            self.history
                .apply_rate()
                .map_or("-".to_owned(), |r| human::rate(r, "changes")),
            eta(self.history),
            human::count(now.changes_applied as f64),
        );
    }

    fn slot(&self, out: &mut String) {
        let Some(now) = self.history.latest() else {
            return;
        };
        let retained = now.slot_retained_bytes.map_or(-1, |b| b);
        let limit = match self.wal_keep_limit {
            Some(limit) if limit > 0 && retained >= 0 => format!(
                "of max_slot_wal_keep_size {} ({}%)",
                human::bytes(limit),
                retained * 100 / limit
            ),
            Some(_) => String::new(),
            None => "(max_slot_wal_keep_size unlimited)".to_owned(),
        };
        let _ = writeln!(
            out,
            "  slot      retains {} {limit}",
            human::bytes(retained)
        );
    }

    fn stop(&self, out: &mut String) {
        let Some(now) = self.history.latest() else {
            return;
        };
        if now.status == "stopped" {
            let _ = writeln!(
                out,
                "  STOPPED   {}",
                self.message.unwrap_or("(no reason recorded)")
            );
        } else if !now.consumer_running && now.chunks_done >= now.chunks_total {
            let _ = writeln!(
                out,
                "  consumer  not running: start it with `switchyard follow`"
            );
        }
    }
}

/// The consumer's one status line on a terminal.
pub fn status_line(history: &LagHistory) -> String {
    let Some(now) = history.latest() else {
        return "following the WAL: waiting for the first sample".to_owned();
    };
    let trend = squeeze(&history.bytes_behind(), STATUS_TREND_WIDTH);
    format!(
        "behind {} {} · {} · slot {}{}{}",
        behind(now),
        sparkline(&trend, STATUS_TREND_WIDTH),
        history
            .apply_rate()
            .map_or("-".to_owned(), |r| human::rate(r, "changes")),
        now.slot_retained_bytes.map_or("?".to_owned(), human::bytes),
        if now.consistent { " · consistent" } else { "" },
        // What an operator set, so that a consumer applying nothing is not taken for a stall.
        match (&now.paused, now.throttle_rows_per_sec) {
            (Some(_), _) => " · PAUSED".to_owned(),
            (None, Some(cap)) => format!(" · capped at {}", human::rate(cap as f64, "changes")),
            (None, None) => String::new(),
        },
    )
}

/// A line that reads on its own in a log: what `watch` prints off a terminal, once a sample.
pub fn plain_line(migration: &str, history: &LagHistory) -> String {
    let Some(now) = history.latest() else {
        return format!("{migration}: no sample");
    };
    format!(
        "{migration} {}: {} behind, {}, slot holds {}, ETA {}{}",
        now.status,
        behind(now),
        history
            .apply_rate()
            .map_or("- changes/s".to_owned(), |r| human::rate(r, "changes")),
        now.slot_retained_bytes.map_or("?".to_owned(), human::bytes),
        eta(history),
        if now.chunks_done < now.chunks_total {
            format!(", backfill chunks {}/{}", now.chunks_done, now.chunks_total)
        } else if now.consistent {
            ", consistent".to_owned()
        } else {
            String::new()
        }
    )
}

/// `1.2 MB / 0.8s`, or the bytes and why the seconds are unknown.
fn behind(now: &crate::lag::Sample) -> String {
    let bytes = now.bytes_behind.map_or("?".to_owned(), human::bytes);
    match now.seconds_behind {
        Some(s) => format!("{bytes} / {}", human::seconds(s)),
        None => format!("{bytes} / ? (consumer not running)"),
    }
}

fn eta(history: &LagHistory) -> String {
    match history.eta() {
        Some(Duration::ZERO) => "caught up".to_owned(),
        Some(d) => human::duration(d),
        None => "-".to_owned(),
    }
}

/// `=========>      `: done out of total, `width` characters.
fn bar(done: i64, total: i64, width: usize) -> String {
    let filled = if total > 0 {
        (done.clamp(0, total) as usize * width) / total as usize
    } else {
        0
    };
    let mut s = "=".repeat(filled);
    if filled < width {
        s.push(if filled > 0 { '>' } else { ' ' });
        s.push_str(&" ".repeat(width - filled - 1));
    }
    s
}

#[cfg(test)]
#[path = "lag_frame_tests.rs"]
mod tests;

/// Who paused the migration or capped its rate, and when; `None` when neither is set.
pub fn controls_line(now: &crate::lag::Sample) -> Option<String> {
    let ago = |seconds: f64| human::duration(Duration::from_secs_f64(seconds.max(0.0)));
    let paused = now.paused.as_ref().map(|p| {
        format!(
            "PAUSED by {} at {} ({} ago)",
            p.by,
            p.at,
            ago(p.seconds_ago)
        )
    });
    let throttled = now.throttle_rows_per_sec.map(|r| {
        let by = now.throttled.as_ref();
        format!(
            "throttled to {} by {} at {}",
            human::rate(r as f64, "rows"),
            by.map_or("?", |t| &t.by),
            by.map_or("?", |t| &t.at)
        )
    });
    match (paused, throttled) {
        (None, None) => None,
        (p, t) => Some(p.into_iter().chain(t).collect::<Vec<_>>().join("; ")),
    }
}

/// The reverse stream's line (after `cutover --keep-reverse`), for `watch` and `status`.
pub fn reverse_line(r: &crate::lag::ReverseLag) -> String {
    let consumer = match (r.heartbeat_age_s, r.stale) {
        (Some(age), false) => format!("consumer alive ({age:.0} s ago)"),
        (Some(age), true) => {
            format!("NO CONSUMER for {age:.0} s: start `switchyard follow --reverse`")
        }
        (None, _) => "no consumer yet: start `switchyard follow --reverse`".to_owned(),
    };
    format!(
        "reverse stream: applied up to {} ({} behind), {} changes back in the legacy tables, {consumer}",
        r.applied_lsn,
        human::bytes(r.bytes_behind),
        r.changes_applied
    )
}
