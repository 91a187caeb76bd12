//! Rejected rows, and `switchyard.dead_letters`, where they go: rows that could not be
//! transformed or that the target refused. They are written in the same transaction as the rows
//! of their chunk (or group), so rows and their rejects land together or not at all.
//!
//! [`Rejects`] is the one policy for a rejected row, for the backfill, the consumer and
//! verify alike:
//!
//! ```text
//!   --on-error stop          the first rejected row stops the run (BadRow)
//!   --on-error dead-letter   every rejected row is written with the rows, the run goes on
//!   verify                   every rejected row is counted, the first few shown in the report
//! ```

use rustc_hash::FxHashMap;
use tokio_postgres::GenericClient;

use crate::plan::OnError;
use crate::transform::program::SourcePlan;
use crate::transform::row::Rejected;

/// A rejected row and where it was going.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub rejected: Rejected,
    /// The output table the target refused it for; `None` when the transform rejected it.
    pub output_table: Option<String>,
}

/// A rejected row under `--on-error stop`: the run stops at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// The source table, as the plan names it.
    pub table: String,
    pub key: String,
    pub reason: String,
}

/// What happens to the rejected rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    Stop,
    DeadLetter,
    /// Count every rejected row, keep the first `kept` (verify).
    Count {
        kept: usize,
    },
}

/// The rejected rows of one unit of work (a batch of a chunk, a group of source transactions,
/// a verify scan), under one policy.
#[derive(Debug)]
pub struct Rejects {
    policy: Policy,
    /// The plan source each came from, and the row, in the order they were rejected.
    letters: Vec<(usize, DeadLetter)>,
    count: u64,
}

impl Rejects {
    /// The rejects of a backfill or a consumer, under `--on-error`.
    pub fn new(on_error: OnError) -> Rejects {
        Rejects::with(match on_error {
            OnError::Stop => Policy::Stop,
            OnError::DeadLetter => Policy::DeadLetter,
        })
    }

    /// Rejects that are only counted; the first `kept` are kept for a report.
    pub fn counted(kept: usize) -> Rejects {
        Rejects::with(Policy::Count { kept })
    }

    fn with(policy: Policy) -> Rejects {
        Rejects {
            policy,
            letters: Vec::new(),
            count: 0,
        }
    }

    /// Takes a row of plan source `source` that was rejected.
    pub fn push(&mut self, source: usize, letter: DeadLetter) {
        self.count += 1;
        if let Policy::Count { kept } = self.policy {
            if self.letters.len() >= kept {
                return;
            }
        }
        self.letters.push((source, letter));
    }

    /// Rows rejected so far (those already written included).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Under `--on-error stop`, the first rejected row held, as the reason to stop.
    pub fn check(&self, sources: &[SourcePlan]) -> Result<(), BadRow> {
        match (self.policy, self.letters.first()) {
            (Policy::Stop, Some((source, first))) => Err(BadRow {
                table: sources[*source].table.to_string(),
                key: first.rejected.key.clone(),
                reason: first.rejected.reason.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Writes the rows held into `switchyard.dead_letters` (one statement per source table)
    /// and lets go of them.
    pub async fn write(
        &mut self,
        client: &impl GenericClient,
        migration: &str,
        phase: &str,
        sources: &[SourcePlan],
    ) -> Result<(), tokio_postgres::Error> {
        let mut by_source: FxHashMap<usize, Vec<DeadLetter>> = FxHashMap::default();
        for (source, letter) in self.letters.drain(..) {
            by_source.entry(source).or_default().push(letter);
        }
        for (source, letters) in by_source {
            insert(
                client,
                migration,
                phase,
                &sources[source].table.to_string(),
                &letters,
            )
            .await?;
        }
        Ok(())
    }

    /// The rows kept, for a report.
    pub fn into_kept(self) -> Vec<Rejected> {
        self.letters.into_iter().map(|(_, l)| l.rejected).collect()
    }
}

async fn insert(
    client: &impl GenericClient,
    migration: &str,
    phase: &str,
    source_table: &str,
    letters: &[DeadLetter],
) -> Result<(), tokio_postgres::Error> {
    if letters.is_empty() {
        return Ok(());
    }
    let outputs: Vec<Option<&str>> = letters.iter().map(|l| l.output_table.as_deref()).collect();
    let keys: Vec<&str> = letters.iter().map(|l| l.rejected.key.as_str()).collect();
    let rows: Vec<&str> = letters.iter().map(|l| l.rejected.row.as_str()).collect();
    let reasons: Vec<&str> = letters.iter().map(|l| l.rejected.reason.as_str()).collect();
    client
        .execute(
            "INSERT INTO switchyard.dead_letters
                    (migration, phase, source_table, output_table, source_key, row_data, reason)
             SELECT $1, $2, $3, o, k::jsonb, r::jsonb, why
               FROM unnest($4::text[], $5::text[], $6::text[], $7::text[]) AS u(o, k, r, why)",
            &[
                &migration,
                &phase,
                &source_table,
                &outputs,
                &keys,
                &rows,
                &reasons,
            ],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(key: &str) -> DeadLetter {
        DeadLetter {
            rejected: Rejected {
                key: key.into(),
                row: "{}".into(),
                reason: "bad".into(),
            },
            output_table: None,
        }
    }

    #[test]
    fn counted_rejects_keep_the_first_few_and_count_all() {
        let mut rejects = Rejects::counted(2);
        for key in ["1", "2", "3"] {
            rejects.push(0, letter(key));
        }
        assert_eq!(rejects.count(), 3);
        let kept: Vec<String> = rejects.into_kept().into_iter().map(|r| r.key).collect();
        assert_eq!(kept, ["1", "2"]);
    }

    #[test]
    fn dead_letter_rejects_never_stop() {
        let mut rejects = Rejects::new(OnError::DeadLetter);
        rejects.push(0, letter("1"));
        assert!(rejects.check(&[]).is_ok());
        assert_eq!(rejects.count(), 1);
    }
}
