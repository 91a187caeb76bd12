//! Fences: proof that the consumer has applied everything the source committed up to a point.
//!
//! The idea is gh-ost's `AllEventsUpToLockProcessed`, on PostgreSQL: a logical message written
//! into the WAL travels through the slot in commit order like any change, so once the consumer
//! has applied the message it has applied every transaction that committed before it. The
//! consumer records the fence in the target in the same transaction as those changes and
//! notifies ([`crate::sink::fence`] waits for that).
//!
//! The message is transactional and committed on its own, not written inside the caller's
//! transaction: a non-transactional message is not flushed before the WAL writer's next round
//! (up to `wal_writer_delay`, 200 ms by default), and the walsender only sends flushed WAL. The
//! commit flushes at once; `synchronous_commit = local` keeps a synchronous standby's round
//! trip out of it.

use tokio_postgres::Client;

use crate::pg::lsn::Lsn;

/// The logical message prefix of a fence. Messages reach every slot of the database, so the
/// content also names the migration.
pub const FENCE_PREFIX: &str = "switchyard.fence";

/// A fence written into the source's WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// Unique per fence, so a waiter never mistakes an older fence for its own.
    pub id: String,
    /// Where the message was written.
    pub lsn: Lsn,
}

/// Writes a fence for `migration` and commits it. `client` must not be inside a transaction.
pub async fn emit(client: &Client, migration: &str) -> Result<Fence, tokio_postgres::Error> {
    let id = new_id();
    let content = format!("{id}\n{migration}");
    client
        .batch_execute("BEGIN; SET LOCAL synchronous_commit = local")
        .await?;
    let lsn = client
        .query_one(
            "SELECT pg_logical_emit_message(true, $1, $2)",
            &[&FENCE_PREFIX, &content],
        )
        .await;
    let lsn: Lsn = match lsn {
        Ok(row) => row.get(0),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    };
    client.batch_execute("COMMIT").await?;
    Ok(Fence { id, lsn })
}

/// The fence id a message carries, if it is a fence of `migration`.
pub fn fence_id<'m>(prefix: &str, content: &'m [u8], migration: &str) -> Option<&'m str> {
    if prefix != FENCE_PREFIX {
        return None;
    }
    let (id, name) = std::str::from_utf8(content).ok()?.split_once('\n')?;
    (name == migration).then_some(id)
}

/// Process id, clock and a counter: unique across the processes that may fence one migration.
fn new_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{nanos:x}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_is_recognised_only_for_its_own_migration() {
        let content = format!("{}\n{}", "42-abc", "legacy_to_projects");
        assert_eq!(
            fence_id(FENCE_PREFIX, content.as_bytes(), "legacy_to_projects"),
            Some("42-abc")
        );
        assert_eq!(fence_id(FENCE_PREFIX, content.as_bytes(), "other"), None);
        assert_eq!(
            fence_id("app.message", content.as_bytes(), "legacy_to_projects"),
            None
        );
        assert_eq!(fence_id(FENCE_PREFIX, b"no separator", "x"), None);
    }

    #[test]
    fn fence_ids_differ_from_one_call_to_the_next() {
        assert_ne!(new_id(), new_id());
    }
}
