//! One table per mix: each contender's drain, its CPU by process, and the ratios against the
//! goals of issue 13.

use switchyard::pg::lsn::Lsn;

use crate::contender::{Contender, Drained};

/// What one mix wrote while every consumer was stopped.
pub struct Backlog {
    pub mix: &'static str,
    /// Transactions the load committed (one statement each).
    pub transactions: u64,
    /// Rows they changed: the transactions whose statement found its row.
    pub changes: u64,
    pub load_seconds: f64,
    pub wal_bytes: u64,
    /// The source's insert LSN once the load stopped: a contender has drained at this point.
    pub end: Lsn,
    /// Per slot: the WAL between its `restart_lsn` and the backlog's start, which its walsender
    /// decodes again (sending nothing) before it reaches the backlog.
    pub reread: Vec<(String, u64)>,
}

/// Switchyard's rate against the others, per mix.
pub struct Goals {
    pub vs_native: f64,
    pub vs_limit: Option<f64>,
}

impl Backlog {
    pub fn print_header(&self) {
        println!();
        println!(
            "{} mix: {} transactions ({:.0} tx/s for {:.0} s), {} row changes, {:.1} MB of WAL",
            self.mix,
            self.transactions,
            self.transactions as f64 / self.load_seconds,
            self.load_seconds,
            self.changes,
            self.wal_bytes as f64 / 1e6
        );
        let reread: Vec<String> = self
            .reread
            .iter()
            .map(|(slot, bytes)| format!("{slot} {:.0} kB", *bytes as f64 / 1e3))
            .collect();
        println!(
            "  WAL before the backlog each walsender decodes again (from restart_lsn): {}",
            reread.join(", ")
        );
    }
}

pub fn print(backlog: &Backlog, drained: &[(&Contender, Drained)], goals: &Goals) {
    println!(
        "  {:<36} {:>6} {:>6} {:>7} {:>7} {:>9} {:>9} {:>6} {:>6} {:>8} {:>8}",
        "contender",
        "start",
        "drain",
        "applied",
        "tx/s",
        "changes/s",
        "walsender",
        "client",
        "target",
        "sessions",
        "peak RSS"
    );
    println!(
        "  {:<36} {:>6} {:>6} {:>7} {:>7} {:>9} {:>9} {:>6} {:>6} {:>8}",
        "", "s", "s", "s", "", "", "CPU s", "CPU s", "CPU s", "CPU s"
    );
    let or_dash = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    for (contender, d) in drained {
        let rss = d
            .client
            .and_then(|c| c.peak_rss_kb)
            .map_or("-".to_owned(), |kb| format!("{:.0} MB", kb as f64 / 1024.0));
        println!(
            "  {:<36} {:>6} {:>6.2} {:>7} {:>7.0} {:>9.0} {:>9.2} {:>6} {:>6.2} {:>8} {:>8}",
            contender.label(),
            or_dash(d.startup_seconds),
            d.seconds,
            or_dash(d.applied_seconds),
            backlog.transactions as f64 / d.seconds,
            backlog.changes as f64 / d.seconds,
            d.walsender_cpu,
            or_dash(d.client.map(|c| c.cpu_seconds)),
            d.target_cpu,
            or_dash(d.sessions_cpu),
            rss
        );
    }
    let find = |want: fn(&Contender) -> bool| drained.iter().find(|(c, _)| want(c)).map(|(_, d)| d);
    let native = find(|c| matches!(c, Contender::Native)).expect("native ran");
    let limit = find(|c| matches!(c, Contender::Limit { .. })).expect("the limit ran");
    // CPU to apply: the consumer and the target, walsender excluded on both sides (it is in the
    // table); native's consumer is its apply worker, a process of the target cluster.
    let per_1000 = |cpu: f64| cpu * 1000.0 / backlog.changes.max(1) as f64;
    let native_cpu = per_1000(native.target_cpu);
    println!(
        "  CPU per 1,000 changes: native (target cluster, apply worker included) {native_cpu:.3} s; \
         the limit (walsender + pg_recvlogical) {:.3} s",
        per_1000(limit.walsender_cpu + limit.client.map_or(0.0, |c| c.cpu_seconds))
    );
    // Streaming only: from the walsender taking the slot to the end (switchyard: applied).
    let streaming = |d: &Drained, end: f64| end - d.startup_seconds.unwrap_or(0.0);
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    for (contender, d) in drained {
        if contender.apply_jobs().is_none() {
            continue;
        }
        let applied = d.applied_seconds.unwrap_or(d.seconds);
        let switchyard_streaming = streaming(d, applied);
        let vs_native = native.seconds / d.seconds;
        let vs_limit = limit.seconds / d.seconds;
        let limit_goal = match goals.vs_limit {
            Some(goal) => format!(" (goal >= {goal:.1}: {})", verdict(vs_limit >= goal)),
            None => String::new(),
        };
        let cpu = per_1000(d.client.map_or(0.0, |c| c.cpu_seconds) + d.target_cpu);
        println!("  {}:", contender.label());
        println!(
            "    vs native    {vs_native:.2}x (goal >= {:.1}: {}); by applied time {:.2}x, streaming only {:.2}x",
            goals.vs_native,
            verdict(vs_native >= goals.vs_native),
            native.seconds / applied,
            streaming(native, native.seconds) / switchyard_streaming
        );
        println!(
            "    vs the limit {vs_limit:.2}x{limit_goal}; streaming only {:.2}x",
            streaming(limit, limit.seconds) / switchyard_streaming
        );
        println!(
            "    CPU per 1,000 changes (switchyard + target) {cpu:.3} s vs native {native_cpu:.3} s (goal <= native: {})",
            verdict(cpu <= native_cpu)
        );
    }
}
