//! What a verification found, for people (`render`) and for scripts (`serde` JSON).

use std::fmt::Write as _;

use serde::Serialize;

/// Keys listed per kind of finding; the rest are counted.
pub const KEYS_SHOWN: usize = 20;

/// The whole result. Divergence is a result, not an error: [`VerifyReport::diverged`].
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub migration: String,
    /// Whether the target was known to have caught up with each snapshot.
    pub consumer: ConsumerState,
    /// Why no fence was (or stopped being) waited for: no consumer, or one that stopped or lags.
    pub consumer_detail: Option<String>,
    /// Recheck rounds run after the first comparison.
    pub recheck_rounds: u32,
    pub elapsed_s: f64,
    pub tables: Vec<TableReport>,
    /// Source rows the transform refuses (dead letters in the backfill); not compared.
    pub rejected: Vec<RejectedRows>,
    /// Lookup values the source has and the target's lookup tables lack.
    pub lookup_misses: Vec<String>,
    /// The plan's `[reports]`, run on the target: reported, not divergence.
    pub orphans: Vec<Orphans>,
    /// Compared columns holding large-object numbers: the numbers were compared, the
    /// objects were not (they are not copied either).
    pub large_objects: Vec<String>,
}

/// How the consumer kept up with verify's snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerState {
    /// Every fence was applied: the target held at least what each snapshot saw.
    CaughtUp,
    /// A fence was not applied in time: the consumer lags or stopped. Differences on rows
    /// nobody writes are still real; on busy rows they may be the backlog.
    NotCaughtUp,
    /// No consumer runs (none started yet, or the migration was cut over and the source is
    /// frozen): there was nothing to wait for.
    NotRunning,
}

/// One output table.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub table: String,
    pub mode: &'static str,
    pub source_rows: i64,
    pub target_rows: i64,
    pub buckets: i64,
    pub differing_buckets: i64,
    /// In the transformed source, not in the target: divergence.
    pub missing: Findings,
    /// In the target, not in the transformed source (`upsert` outputs): divergence.
    pub extra: Findings,
    /// On both sides with different values: divergence.
    pub different: Findings,
    /// In the target only, in an `insert_if_absent` output: kept by design, not divergence.
    pub retained: Findings,
    /// Differed, then matched or changed during the rechecks: writes in flight.
    pub in_flight: Findings,
}

impl TableReport {
    pub fn diverged(&self) -> bool {
        self.missing.count + self.extra.count + self.different.count > 0
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Findings {
    pub count: i64,
    /// The first [`KEYS_SHOWN`] keys, in key order.
    pub first: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The output key as PostgreSQL prints a row: `(value1,value2)`.
    pub key: String,
    /// What was seen first (`missing`, `extra`, `different`), for in-flight keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// For a different row: each differing column with the target's and the source's value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnDifference>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnDifference {
    pub column: String,
    pub target: Option<String>,
    pub source: Option<String>,
    /// Why the source value cannot match, when known (a lookup miss).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectedRows {
    pub source_table: String,
    pub count: u64,
    /// `(source key, reason)` of the first ones.
    pub first: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Orphans {
    pub name: String,
    pub count: i64,
}

impl VerifyReport {
    /// Whether any output table holds a real divergence (after the rechecks).
    pub fn diverged(&self) -> bool {
        self.tables.iter().any(TableReport::diverged)
    }

    /// The human report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "verify {}: {} ({} recheck round{}, {:.1}s)",
            self.migration,
            if self.diverged() {
                "DIVERGED"
            } else {
                "no divergence"
            },
            self.recheck_rounds,
            if self.recheck_rounds == 1 { "" } else { "s" },
            self.elapsed_s
        );
        let why = self
            .consumer_detail
            .as_deref()
            .unwrap_or("no reason recorded");
        match self.consumer {
            ConsumerState::NotCaughtUp => {
                let _ = writeln!(
                    out,
                    "  note: no consumer applied verify's fence ({why}; is `switchyard follow` running?); \
                     differences on rows being written may be its backlog"
                );
            }
            ConsumerState::NotRunning => {
                let _ = writeln!(
                    out,
                    "  note: no consumer runs ({why}): compared without a fence"
                );
            }
            ConsumerState::CaughtUp => {}
        }
        for t in &self.tables {
            let _ = writeln!(
                out,
                "  {} ({}): {} source rows, {} target rows, {} bucket(s), {} differing; \
                 missing {}, extra {}, different {}, in flight {}{}",
                t.table,
                t.mode,
                t.source_rows,
                t.target_rows,
                t.buckets,
                t.differing_buckets,
                t.missing.count,
                t.extra.count,
                t.different.count,
                t.in_flight.count,
                if t.retained.count > 0 {
                    format!(", retained by design {}", t.retained.count)
                } else {
                    String::new()
                }
            );
            for (label, findings) in [
                ("missing", &t.missing),
                ("extra", &t.extra),
                ("different", &t.different),
                ("in flight (changed during verify)", &t.in_flight),
                ("retained by design", &t.retained),
            ] {
                render_findings(&mut out, label, findings);
            }
        }
        for r in &self.rejected {
            let _ = writeln!(
                out,
                "  {}: {} row(s) the transform rejects (dead letters; not compared)",
                r.source_table, r.count
            );
            for (key, reason) in &r.first {
                let _ = writeln!(out, "      {key}: {reason}");
            }
        }
        for miss in &self.lookup_misses {
            let _ = writeln!(out, "  lookup: {miss}");
        }
        for o in &self.orphans {
            let _ = writeln!(out, "  report: {}: {}", o.name, o.count);
        }
        for column in &self.large_objects {
            let _ = writeln!(
                out,
                "  note: {column} holds large-object numbers: the numbers were compared; the objects are not copied by switchyard and were not compared"
            );
        }
        out
    }
}

fn render_findings(out: &mut String, label: &str, findings: &Findings) {
    if findings.count == 0 {
        return;
    }
    let _ = writeln!(out, "    {label}: {}", findings.count);
    for f in &findings.first {
        let _ = write!(out, "      {}", f.key);
        if let Some(kind) = &f.kind {
            let _ = write!(out, " (was {kind})");
        }
        for c in &f.columns {
            let value = |v: &Option<String>| v.as_deref().map_or("NULL".to_owned(), shorten);
            let _ = write!(out, "; {}: target {}", c.column, value(&c.target));
            match &c.reason {
                Some(reason) => {
                    let _ = write!(out, ", source cannot match: {reason}");
                }
                None => {
                    let _ = write!(out, ", source {}", value(&c.source));
                }
            }
        }
        out.push('\n');
    }
    if findings.count as usize > findings.first.len() {
        let _ = writeln!(
            out,
            "      ... and {} more",
            findings.count as usize - findings.first.len()
        );
    }
}

/// A value quoted and cut to a readable length.
fn shorten(v: &str) -> String {
    const MAX_CHARS: usize = 60;
    if v.chars().count() <= MAX_CHARS {
        format!("{v:?}")
    } else {
        let cut: String = v.chars().take(MAX_CHARS).collect();
        format!("{cut:?}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(key: &str) -> Findings {
        Findings {
            count: 1,
            first: vec![Finding {
                key: key.to_owned(),
                kind: None,
                columns: vec![ColumnDifference {
                    column: "title".to_owned(),
                    target: Some("tampered".to_owned()),
                    source: Some("Fix the login".to_owned()),
                    reason: None,
                }],
            }],
        }
    }

    #[test]
    fn the_human_report_names_keys_columns_and_the_verdict() {
        let report = VerifyReport {
            migration: "m".to_owned(),
            consumer: ConsumerState::NotCaughtUp,
            consumer_detail: Some("it did not apply fence 7 within 30s".to_owned()),
            recheck_rounds: 3,
            elapsed_s: 1.0,
            tables: vec![TableReport {
                table: "public.tasks".to_owned(),
                mode: "upsert",
                source_rows: 10,
                target_rows: 10,
                buckets: 1,
                differing_buckets: 1,
                missing: Findings::default(),
                extra: Findings::default(),
                different: findings("(42)"),
                retained: Findings::default(),
                in_flight: Findings::default(),
            }],
            rejected: vec![],
            lookup_misses: vec![],
            orphans: vec![Orphans {
                name: "orphans".to_owned(),
                count: 2,
            }],
            large_objects: vec![],
        };
        assert!(report.diverged());
        let text = report.render();
        assert!(text.starts_with("verify m: DIVERGED"), "{text}");
        assert!(text.contains("no consumer applied"), "{text}");
        assert!(
            text.contains(r#"(42); title: target "tampered", source "Fix the login""#),
            "{text}"
        );
        assert!(text.contains("report: orphans: 2"), "{text}");
    }
}
