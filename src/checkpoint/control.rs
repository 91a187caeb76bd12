//! `switchyard.control`: what an operator asked of a running migration, from any terminal on
//! any machine (`switchyard pause`, `resume`, `throttle`). It lives in the target with the rest
//! of the tool's state, so nothing has to reach the machine the workers run on: each running
//! process reads its row about twice a second (see `crate::pipeline::control`).
//!
//! ```text
//!   switchyard pause ──UPDATE──> switchyard.control ──read every 500 ms──> backfill workers
//!   (any machine)                (one row per migration)               └──> WAL consumer
//! ```
//! No foreign key to `switchyard.migrations`: a pause or throttle outlives an `abort` and a new
//! backfill of the same plan, which is what the person who set it expects until they lift it.

use tokio_postgres::Client;

use super::{ctx, CheckpointError};

/// Who set a control, and when (the target's clock).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SetBy {
    /// `user@host` of the machine that ran the command, and the database role.
    pub by: String,
    /// When, as the target prints a timestamptz.
    pub at: String,
    pub seconds_ago: f64,
}

/// A migration's controls as recorded.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Control {
    /// Set by `switchyard pause`, cleared by `switchyard resume`.
    pub paused: Option<SetBy>,
    /// Set by `switchyard throttle --rows-per-sec N`, cleared by `--off`.
    pub rows_per_sec: Option<i64>,
    /// Who set the throttle, while one is set.
    pub throttled: Option<SetBy>,
}

/// The controls of `migration`; all unset when nobody set any (or the table does not exist:
/// state made by an older switchyard, read by `watch` or `status`, which create nothing).
pub async fn control(client: &Client, migration: &str) -> Result<Control, CheckpointError> {
    let row = client
        .query_one("SELECT to_regclass('switchyard.control') IS NOT NULL", &[])
        .await
        .map_err(ctx("looking for switchyard.control"))?;
    if !row.get::<_, bool>(0) {
        return Ok(Control::default());
    }
    let Some(row) = client
        .query_opt(
            "SELECT paused, paused_by, paused_at::text,
                    extract(epoch FROM now() - paused_at)::float8,
                    rows_per_sec, throttle_by, throttle_at::text,
                    extract(epoch FROM now() - throttle_at)::float8
               FROM switchyard.control WHERE migration = $1",
            &[&migration],
        )
        .await
        .map_err(ctx("reading switchyard.control"))?
    else {
        return Ok(Control::default());
    };
    let set_by = |by: usize| {
        Some(SetBy {
            by: row.get::<_, Option<String>>(by)?,
            at: row.get::<_, Option<String>>(by + 1)?,
            seconds_ago: row.get::<_, Option<f64>>(by + 2)?.max(0.0),
        })
    };
    let rows_per_sec: Option<i64> = row.get(4);
    Ok(Control {
        paused: if row.get(0) { set_by(1) } else { None },
        rows_per_sec,
        throttled: rows_per_sec.and_then(|_| set_by(5)),
    })
}

/// Pauses (`true`) or resumes `migration`, as `by`.
pub async fn set_paused(
    client: &Client,
    migration: &str,
    paused: bool,
    by: &str,
) -> Result<(), CheckpointError> {
    client
        .execute(
            "INSERT INTO switchyard.control AS c (migration, paused, paused_by, paused_at)
             VALUES ($1, $2, $3, now())
             ON CONFLICT (migration) DO UPDATE
                SET paused = $2, paused_by = $3, paused_at = now()",
            &[&migration, &paused, &by],
        )
        .await
        .map_err(ctx("writing switchyard.control"))?;
    Ok(())
}

/// Caps `migration` at `rows_per_sec` (`None` lifts the cap), as `by`.
pub async fn set_throttle(
    client: &Client,
    migration: &str,
    rows_per_sec: Option<i64>,
    by: &str,
) -> Result<(), CheckpointError> {
    client
        .execute(
            "INSERT INTO switchyard.control AS c (migration, rows_per_sec, throttle_by, throttle_at)
             VALUES ($1, $2, $3, now())
             ON CONFLICT (migration) DO UPDATE
                SET rows_per_sec = $2, throttle_by = $3, throttle_at = now()",
            &[&migration, &rows_per_sec, &by],
        )
        .await
        .map_err(ctx("writing switchyard.control"))?;
    Ok(())
}
