//! `switchyard.apply_lanes`: how far each apply lane of the WAL consumer has applied the
//! stream. A lane's row is written in the same target transaction as the lane's changes, so
//! each lane applies exactly once on its own; `switchyard.migrations` keeps the summary
//! (everything applied by every lane) for `status`, `watch` and the fences.
//!
//! ```text
//!   lane 0 row  applied_lsn A0 ─┐
//!   lane 1 row  applied_lsn A1 ─┼─ restart streams from min(Ai); lane i skips commits below Ai
//!   lane 2 row  applied_lsn A2 ─┘  (see crate::pipeline::follow)
//! ```
//! The table is created with the rest of the tool's state ([`super::SCHEMA_SQL`]).

use tokio_postgres::GenericClient;

use super::{ctx, CheckpointError};
use crate::pg::lsn::Lsn;
use crate::pg::replication_message::PgTimestamp;

/// The applied LSN of every lane, in lane order; empty when no consumer ran since the
/// backfill (or the migration's state predates lanes).
pub async fn lane_positions(
    client: &impl GenericClient,
    migration: &str,
) -> Result<Vec<Lsn>, CheckpointError> {
    let rows = client
        .query(
            "SELECT applied_lsn FROM switchyard.apply_lanes WHERE migration = $1 ORDER BY lane",
            &[&migration],
        )
        .await
        .map_err(ctx("reading the apply lanes"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Sets `lanes` lanes, all at `applied`, replacing whatever lanes there were; their changes
/// count carries over to lane 0. Only when every old lane has applied up to `applied` at
/// least: a lane's assignment of keys changes with the number of lanes.
pub async fn reset_lanes(
    tx: &impl GenericClient,
    migration: &str,
    lanes: usize,
    applied: Lsn,
) -> Result<(), CheckpointError> {
    tx.execute(
        "WITH old AS (DELETE FROM switchyard.apply_lanes WHERE migration = $1
                      RETURNING changes_applied, applied_commit_at),
              m AS (SELECT changes_applied, applied_commit_at
                      FROM switchyard.migrations WHERE name = $1)
         INSERT INTO switchyard.apply_lanes
                (migration, lane, applied_lsn, applied_commit_at, changes_applied)
         SELECT $1, l, $3,
                coalesce((SELECT max(applied_commit_at) FROM old), (SELECT applied_commit_at FROM m)),
                CASE WHEN l = 0
                     THEN coalesce((SELECT sum(changes_applied) FROM old)::bigint,
                                   (SELECT changes_applied FROM m), 0)
                     ELSE 0 END
           FROM generate_series(0, $2 - 1) AS l",
        &[&migration, &(lanes as i32), &applied],
    )
    .await
    .map_err(ctx("setting up the apply lanes"))?;
    Ok(())
}

/// Records that `lane` applied everything up to `applied`, inside the target transaction that
/// applied it; `lane` `None` records it for every lane (one transaction applied the group for
/// all of them). A lane already further on keeps its position.
pub async fn record_lane(
    tx: &impl GenericClient,
    migration: &str,
    lane: Option<usize>,
    applied: Lsn,
    commit_micros_since_2000: i64,
    changes: i64,
) -> Result<(), CheckpointError> {
    let lane = lane.map(|l| l as i32);
    tx.execute(
        "UPDATE switchyard.apply_lanes
            SET applied_lsn = greatest(applied_lsn, $3),
                applied_commit_at = greatest(applied_commit_at, $4),
                changes_applied = changes_applied
                    + CASE WHEN lane = coalesce($2::int, 0) THEN $5::bigint ELSE 0 END
          WHERE migration = $1 AND ($2::int IS NULL OR lane = $2)",
        &[
            &migration,
            &lane,
            &applied,
            &PgTimestamp(commit_micros_since_2000),
            &changes,
        ],
    )
    .await
    .map_err(ctx("recording a lane's applied LSN"))?;
    Ok(())
}

/// Brings every lane whose row is behind `applied` up to it, before [`summarize`] says
/// `applied`: no lane's row is then behind the summary, and a restart streams from there
/// rather than from far back. Only once every lane committed every group up to `applied`: a
/// lane still behind it had empty shares since it last recorded (it reports those done
/// without a transaction), so it holds everything up to `applied`. A row its lane is writing
/// is left to that lane (`SKIP LOCKED`), which records a later position as it commits: the
/// consumer never waits for a lane here.
pub async fn raise_idle_lanes(
    client: &impl GenericClient,
    migration: &str,
    applied: Lsn,
    commit_micros_since_2000: i64,
) -> Result<(), CheckpointError> {
    client
        .execute(
            "UPDATE switchyard.apply_lanes l
                SET applied_lsn = $2, applied_commit_at = greatest(l.applied_commit_at, $3)
               FROM (SELECT lane FROM switchyard.apply_lanes
                      WHERE migration = $1 AND applied_lsn < $2
                        FOR UPDATE SKIP LOCKED) behind
              WHERE l.migration = $1 AND l.lane = behind.lane",
            &[&migration, &applied, &PgTimestamp(commit_micros_since_2000)],
        )
        .await
        .map_err(ctx("bringing idle apply lanes up to the summary"))?;
    Ok(())
}

/// Writes the summary of the lanes into `switchyard.migrations`: everything up to `applied`
/// is applied by every lane (the source commit there committed at `commit_micros_since_2000`),
/// and the changes every lane applied; with `fence`, the fence every lane applied, announced on
/// [`super::FENCE_CHANNEL`] when the transaction commits. Inside a group's transaction when
/// one transaction applied it for every lane; else after every lane committed, on its own: it
/// then only ever says less than the lanes hold.
pub async fn summarize(
    client: &impl GenericClient,
    migration: &str,
    applied: Lsn,
    commit_micros_since_2000: i64,
    fence: Option<&str>,
) -> Result<(), CheckpointError> {
    client
        .execute(
            "WITH m AS (UPDATE switchyard.migrations
                           SET applied_lsn = greatest(applied_lsn, $2),
                               applied_commit_at = greatest(applied_commit_at, $3),
                               changes_applied = coalesce((SELECT sum(changes_applied)::bigint
                                   FROM switchyard.apply_lanes WHERE migration = $1), 0),
                               pending_since = NULL, updated_at = now(),
                               fence_id = coalesce($4, fence_id),
                               fence_lsn = CASE WHEN $4::text IS NULL THEN fence_lsn ELSE $2 END,
                               fence_at = CASE WHEN $4::text IS NULL THEN fence_at ELSE now() END
                         WHERE name = $1
                        RETURNING name)
             SELECT pg_notify($5, name) FROM m WHERE $4::text IS NOT NULL",
            &[
                &migration,
                &applied,
                &PgTimestamp(commit_micros_since_2000),
                &fence,
                &super::FENCE_CHANNEL,
            ],
        )
        .await
        .map_err(ctx("summarizing the apply lanes"))?;
    Ok(())
}

/// Forgets the lanes of a migration being backfilled again.
pub(super) async fn clear(
    client: &impl GenericClient,
    migration: &str,
) -> Result<(), CheckpointError> {
    client
        .execute(
            "DELETE FROM switchyard.apply_lanes WHERE migration = $1",
            &[&migration],
        )
        .await
        .map_err(ctx("clearing the apply lanes"))?;
    Ok(())
}

/// Makes the commit of `tx` wait for its WAL flush, in a session that commits asynchronously
/// otherwise: a fence is announced at that commit.
pub async fn commit_synchronously(tx: &impl GenericClient) -> Result<(), CheckpointError> {
    tx.batch_execute("SET LOCAL synchronous_commit = on")
        .await
        .map_err(ctx("making a fence's commit synchronous"))
}
