//! Rechecks: a difference seen once may be a change in flight, so it is looked at again.
//!
//! The source snapshot and the target are read at different moments while the application
//! writes and the consumer applies. Each recheck round takes a new snapshot, waits for the
//! consumer to pass a fence emitted after it, transforms the source again and reads the suspect
//! keys on both sides again:
//!
//! ```text
//!  round 0:  key k differs (source image s0, target image t0)          -> suspect
//!  round i:  k equal on both sides                                     -> equal_seen: in flight
//!            s_i != s0 or t_i != t0 (the row moved between rounds)     -> unstable:   in flight
//!            same images, still different                              -> still a candidate
//!  after the last round: candidates that differed the same way every round are divergence
//! ```
//!
//! A round re-reads the whole source table and keeps only the suspect keys in the comparison.
//! Reading "by key" would need the source key of each output key, and output keys such as
//! `uuid_v5(...)` cannot be inverted; an extra target row has no source row to re-read at all.
//! A scan is generic and its cost is only paid while differences remain.

use tokio_postgres::Client;

use super::buckets::{source_relation, target_relation, SUSPECTS};
use super::error::VerifyError;
use super::outputs::OutputSpec;

/// The outputs (indexes into the specs) that still have candidates for divergence.
pub async fn outputs_with_candidates(target: &Client) -> Result<Vec<usize>, VerifyError> {
    let rows = target
        .query(
            &format!(
                "SELECT DISTINCT spec FROM {SUSPECTS}
                  WHERE kind <> 'retained' AND NOT equal_seen AND stable ORDER BY spec"
            ),
            &[],
        )
        .await
        .map_err(VerifyError::target("reading the suspects"))?;
    Ok(rows.iter().map(|r| r.get::<_, i32>(0) as usize).collect())
}

/// Compares the suspect keys of `spec` again, after its temp table was refilled under a new
/// snapshot, and marks each as seen equal or as changed.
pub async fn recheck(
    target: &Client,
    spec_index: usize,
    spec: &OutputSpec,
) -> Result<(), VerifyError> {
    let side = |relation: &str| {
        format!(
            "SELECT DISTINCT ON (k) k, r FROM (SELECT {} AS k, {} AS r FROM {relation}) y
              WHERE k IN (SELECT k FROM {SUSPECTS} WHERE spec = $1)",
            spec.key_text("x"),
            spec.row_text("x")
        )
    };
    let sql = format!(
        "UPDATE {SUSPECTS} q
            SET equal_seen = q.equal_seen OR n.s_r IS NOT DISTINCT FROM n.t_r,
                stable = q.stable AND n.s_r IS NOT DISTINCT FROM q.source_row
                                  AND n.t_r IS NOT DISTINCT FROM q.target_row
           FROM (SELECT p.k, s.r AS s_r, t.r AS t_r
                   FROM (SELECT DISTINCT k FROM {SUSPECTS} WHERE spec = $1) p
                   LEFT JOIN ({}) s ON s.k = p.k
                   LEFT JOIN ({}) t ON t.k = p.k) n
          WHERE q.spec = $1 AND q.k = n.k AND q.kind <> 'retained'",
        side(&source_relation(spec_index, spec)),
        side(&target_relation(spec))
    );
    target
        .execute(&sql, &[&(spec_index as i32)])
        .await
        .map_err(VerifyError::target(format!(
            "rechecking the differing keys of {}",
            spec.table
        )))?;
    Ok(())
}
