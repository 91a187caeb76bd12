//! Reads the verdict out of the suspects table: counts per kind and the first keys of each,
//! with the differing columns of changed rows.

use tokio_postgres::Client;

use super::buckets::SUSPECTS;
use super::error::VerifyError;
use super::lookups::ReadOnlyLookups;
use super::report::{ColumnDifference, Finding, Findings, KEYS_SHOWN};

/// Which suspects a finding list selects.
#[derive(Debug, Clone, Copy)]
pub enum Verdict {
    /// Differed the same way in every round.
    Diverged(&'static str),
    /// Matched in a recheck, or changed between rounds.
    InFlight,
    /// Extra keys of an `insert_if_absent` output.
    Retained,
}

impl Verdict {
    fn condition(self) -> String {
        match self {
            Verdict::Diverged(kind) => {
                format!("kind = '{kind}' AND NOT equal_seen AND stable")
            }
            Verdict::InFlight => "kind <> 'retained' AND (equal_seen OR NOT stable)".to_owned(),
            Verdict::Retained => "kind = 'retained'".to_owned(),
        }
    }
}

/// The suspects of output `spec` that `verdict` selects.
pub async fn findings(
    target: &Client,
    spec: usize,
    verdict: Verdict,
    lookups: &ReadOnlyLookups,
) -> Result<Findings, VerifyError> {
    let condition = verdict.condition();
    let context = || "reading the findings".to_owned();
    let count: i64 = target
        .query_one(
            &format!("SELECT count(*) FROM {SUSPECTS} WHERE spec = $1 AND {condition}"),
            &[&(spec as i32)],
        )
        .await
        .map_err(VerifyError::target(context()))?
        .get(0);
    let rows = target
        .query(
            &format!(
                "SELECT k, kind, detail FROM {SUSPECTS} WHERE spec = $1 AND {condition}
                  ORDER BY k LIMIT {KEYS_SHOWN}"
            ),
            &[&(spec as i32)],
        )
        .await
        .map_err(VerifyError::target(context()))?;
    let first = rows
        .iter()
        .map(|r| Finding {
            key: r.get(0),
            kind: matches!(verdict, Verdict::InFlight).then(|| r.get(1)),
            columns: r
                .get::<_, Option<String>>(2)
                .map(|d| columns(&d, lookups))
                .unwrap_or_default(),
        })
        .collect();
    Ok(Findings { count, first })
}

/// `[["column", target, source], ...]` as written by the row comparison.
fn columns(detail: &str, lookups: &ReadOnlyLookups) -> Vec<ColumnDifference> {
    let parsed: Vec<(String, Option<String>, Option<String>)> =
        serde_json::from_str(detail).unwrap_or_default();
    parsed
        .into_iter()
        .map(|(column, target, source)| ColumnDifference {
            reason: source
                .as_deref()
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|id| *id <= 0)
                .and_then(|id| lookups.miss_reason(id)),
            column,
            target,
            source,
        })
        .collect()
}
