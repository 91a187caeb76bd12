//! Whether a consumer is there to apply verify's fences, decided at once from two witnesses
//! that cannot both lie: its heartbeat in the target, and its walsender holding the slot on
//! the source. A heartbeat alone stays fresh for seconds after the consumer died (or was
//! stopped with Ctrl-C); a fence emitted then was waited for until the timeout, 30 s of
//! silence. The slot's `active` flag drops the moment the consumer's connection closes.

use tokio_postgres::Client;

use crate::checkpoint;
use crate::source::slot;

use super::error::VerifyError;

/// A consumer whose last heartbeat is older than this is taken as not running (it beats about
/// once a second, see [`crate::source::wal_stream::STATUS_INTERVAL`]).
const SILENT_AFTER_S: f64 = 10.0;

/// What verify found about the migration's consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumer {
    /// Beating and streaming from this slot: fences will be applied.
    Running { slot: String },
    /// Nobody will apply a fence; why, in words for the report.
    NotRunning(String),
}

/// Looks for the consumer of `migration` in the target's state and on the source's slot.
pub async fn find(
    target: &Client,
    source: &Client,
    migration: &str,
) -> Result<Consumer, VerifyError> {
    let context = "looking for a running consumer in switchyard.migrations";
    if !checkpoint::state_exists(target)
        .await
        .map_err(VerifyError::target(context))?
    {
        return Ok(Consumer::NotRunning(
            "the target holds no migration state".to_owned(),
        ));
    }
    let Some(row) = target
        .query_opt(
            "SELECT status, slot_name, extract(epoch FROM now() - heartbeat_at)::float8
               FROM switchyard.migrations WHERE name = $1",
            &[&migration],
        )
        .await
        .map_err(VerifyError::target(context))?
    else {
        return Ok(Consumer::NotRunning(format!(
            "the target holds no migration {migration}"
        )));
    };
    let (status, slot_name, silent): (String, String, Option<f64>) =
        (row.get(0), row.get(1), row.get(2));
    if status != "following" {
        return Ok(Consumer::NotRunning(format!("the migration is {status}")));
    }
    match silent {
        Some(s) if s < SILENT_AFTER_S => {}
        Some(s) => {
            return Ok(Consumer::NotRunning(format!(
                "its last heartbeat was {} ago",
                crate::progress::human::seconds(s)
            )))
        }
        None => return Ok(Consumer::NotRunning("it never beat".to_owned())),
    }
    slot_holder(source, &slot_name).await
}

/// Whether a walsender holds `slot` now: the consumer's half of the evidence, asked again
/// while a fence is waited for.
pub async fn slot_holder(source: &Client, slot_name: &str) -> Result<Consumer, VerifyError> {
    let state = slot::state(source, slot_name)
        .await
        .map_err(VerifyError::source("reading the migration's slot"))?;
    Ok(match state {
        None => Consumer::NotRunning(format!("slot {slot_name} does not exist")),
        Some(s) if !s.active => Consumer::NotRunning(format!(
            "slot {slot_name} is inactive: no consumer streams from it"
        )),
        Some(_) => Consumer::Running {
            slot: slot_name.to_owned(),
        },
    })
}
