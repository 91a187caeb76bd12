//! The backfill's chunk transactions commit with `synchronous_commit = off`: the commit returns
//! once its WAL record is in the server's WAL buffers, and the WAL writer flushes it within
//! three `wal_writer_delay`s (600 ms by default). A chunk is one long COPY, so waiting for one
//! flush per chunk costs little on a fast disk, but on a slow or networked one it stalls every
//! worker once per chunk for nothing.
//!
//! Nothing is lost by it. A chunk's rows, its dead letters and its `done` mark commit in one
//! transaction ([`crate::checkpoint::finish_chunk`]). A server crash can lose the last commits
//! that were not flushed yet, but it loses each one whole: the rows and the mark together, never
//! one without the other, and the server comes back consistent (no torn transaction, unlike
//! `fsync = off`). `switchyard backfill --resume` copies the chunks not marked done, so a lost
//! chunk is copied again. The integration test `chunks_committed_asynchronously_survive_an_
//! immediate_target_crash` crashes the target mid-backfill and checks the result row for row.
//!
//! The WAL consumer's apply lanes do it too, as native logical replication's apply worker
//! does; the consumer confirms an LSN to the source only after a synchronous commit on its own
//! session flushed every lane commit before it (see `pipeline::follow::lanes`), so a lost
//! apply is never gone from the slot. The cutover and the migration's state are written by
//! sessions that keep the server's setting.
//!
//! <https://www.postgresql.org/docs/current/wal-async-commit.html>

use tokio_postgres::Client;

/// Makes every later commit of `client`'s session asynchronous.
pub async fn commit_asynchronously(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute("SET synchronous_commit = off").await
}
