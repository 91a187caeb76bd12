//! The backfill bench's result: one line per contender with its wall time and CPU seconds by
//! process, then the ratios issue 12 sets goals for, each marked `ok` or `MISSED`.

use std::time::Duration;

use crate::common::cpu::ChildUsage;

/// Who moved the data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Contender {
    RawTextOneByOne,
    RawText,
    RawBinary,
    Limit,
    PlainSql,
    Switchyard { jobs: usize },
}

impl Contender {
    pub fn name(self) -> String {
        match self {
            Contender::RawTextOneByOne => "raw text pipe, one table at a time".into(),
            Contender::RawText => "raw text pipe, three tables at once".into(),
            Contender::RawBinary => "raw binary pipe, three tables at once".into(),
            Contender::Limit => "the limit (binary output + after-backfill)".into(),
            Contender::PlainSql => "plain SQL migration (expected.sql)".into(),
            Contender::Switchyard { jobs } => format!("switchyard backfill --jobs {jobs}"),
        }
    }
}

/// What one contender cost.
#[derive(Debug)]
pub struct Measured {
    pub contender: Contender,
    pub wall: Duration,
    /// psql processes, or switchyard.
    pub client: ChildUsage,
    /// CPU seconds of the source cluster (postmaster, backends, background processes).
    pub source_cpu: f64,
    /// CPU seconds of the target cluster.
    pub target_cpu: f64,
}

impl Measured {
    fn total_cpu(&self) -> f64 {
        self.client.cpu_seconds + self.source_cpu + self.target_cpu
    }
}

/// Print the table and the goals; `rows` is the number of legacy rows every contender moved.
pub fn print(results: &[Measured], rows: u64) {
    let per_million_rows = |cpu: f64| cpu / (rows as f64 / 1e6);
    println!();
    println!(
        "{:<44} {:>7} | {:>6} {:>6} {:>6} {:>6} | {:>8} | {:>6}",
        "", "wall", "client", "source", "target", "total", "CPU s", "peak"
    );
    println!(
        "{:<44} {:>7} | {:>27} | {:>8} | {:>6}",
        format!("{rows} legacy rows"),
        "s",
        "CPU s",
        "/M rows",
        "RSS MB"
    );
    for m in results {
        let peak_rss_mb = (m.client.peak_rss_kb).map_or("-".into(), |kb| (kb / 1024).to_string());
        println!(
            "{:<44} {:>7.2} | {:>6.2} {:>6.2} {:>6.2} {:>6.2} | {:>8.2} | {:>6}",
            m.contender.name(),
            m.wall.as_secs_f64(),
            m.client.cpu_seconds,
            m.source_cpu,
            m.target_cpu,
            m.total_cpu(),
            per_million_rows(m.total_cpu()),
            peak_rss_mb
        );
    }

    let find = |contender: Contender| results.iter().find(|m| m.contender == contender);
    let switchyards: Vec<&Measured> = (results.iter())
        .filter(|m| matches!(m.contender, Contender::Switchyard { .. }))
        .collect();
    let (Some(limit), Some(plain_sql), Some(raw_text), Some(raw_one_by_one)) = (
        find(Contender::Limit),
        find(Contender::PlainSql),
        find(Contender::RawText),
        find(Contender::RawTextOneByOne),
    ) else {
        return;
    };
    let wall = |m: &Measured| m.wall.as_secs_f64();
    println!();
    print!("{:<44}", "issue 12 goals");
    for s in &switchyards {
        print!(
            " {:>14}",
            s.contender.name().replace("switchyard backfill ", "")
        );
    }
    println!("  goal");
    let goal =
        |label: &str, value: &dyn Fn(&Measured) -> f64, met: &dyn Fn(f64) -> bool, text: &str| {
            print!("{label:<44}");
            for s in &switchyards {
                let v = value(s);
                print!(" {v:>7.2} {:>6}", if met(v) { "ok" } else { "MISSED" });
            }
            println!("  {text}");
        };
    goal(
        "switchyard / the limit, wall",
        &|s| wall(s) / wall(limit),
        &|r| r <= 1.15,
        "<= 1.15",
    );
    goal(
        "plain SQL / switchyard, wall",
        &|s| wall(plain_sql) / wall(s),
        &|r| r >= 2.5,
        ">= 2.5",
    );
    goal(
        "raw text pipe (three at once) / switchyard",
        &|s| wall(raw_text) / wall(s),
        &|r| r >= 1.0,
        ">= 1.0",
    );
    goal(
        "raw text pipe (one at a time) / switchyard",
        &|s| wall(raw_one_by_one) / wall(s),
        &|r| r >= 1.0,
        ">= 1.0 (the older form of the goal)",
    );
    let sql_cpu = per_million_rows(plain_sql.total_cpu());
    goal(
        "total CPU s per M legacy rows",
        &|s| per_million_rows(s.total_cpu()),
        &|c| c < sql_cpu,
        &format!("< plain SQL's {sql_cpu:.2}"),
    );
    goal(
        "peak RSS of switchyard, MB",
        &|s| s.client.peak_rss_kb.unwrap_or(0) as f64 / 1024.0,
        &|mb| mb <= 256.0,
        "<= 256",
    );
}
