//! The tool's own state, kept in the target in schema `switchyard` (never in a local file, so
//! that `status` and `watch` work from any machine and a restart finds everything).
//!
//! ```text
//! switchyard.migrations    one row per plan: status, plan checksum, slot, LSNs, timestamps
//! switchyard.chunks        the backfill's chunk list; a chunk turns `done` in the same target
//!                          transaction that writes its rows, so a chunk lands exactly once
//! switchyard.source_relations  the source tables' OIDs the backfill copied, which the
//!                          consumer follows by identity
//! switchyard.apply_lanes   per apply lane of the WAL consumer, the LSN it applied up to,
//!                          written in the same target transaction as the lane's changes
//! switchyard.dead_letters  rows a transform rejected or the target refused, with key and reason
//! switchyard.control       per migration, a pause or a throttle an operator set, by whom, when
//! switchyard.workers       the backfill processes sharing a migration's chunks (leases.rs)
//! switchyard.reverse_keys  legacy keys the reverse stream allocated (reverse.rs, which also
//!                          keeps the reverse stream's progress beside the legacy tables)
//! ```

mod apply_lanes;
mod chunks;
mod control;
mod dead_letters;
pub mod leases;
mod migrations;
pub mod reverse;
mod source_relations;
mod workers;

use tokio_postgres::Client;

pub use apply_lanes::{
    commit_synchronously, lane_positions, raise_idle_lanes, record_lane, reset_lanes, summarize,
};
pub use chunks::{chunk_progress, finish_chunk, insert_chunks, Chunk, ChunkStatus};
pub use control::{control, set_paused, set_throttle, Control, SetBy};
pub use dead_letters::dead_letter_count;
pub use migrations::{
    applied_fence, create, exported_snapshot, heartbeat, last_fence, load, set_exported_snapshot,
    set_lsns, set_status, state_exists, Migration, MigrationStatus, FENCE_CHANNEL,
};
pub use source_relations::{record_source_relations, source_relations, SourceRelation};
pub use workers::{register_worker, worker_heartbeat, workers, WorkerState};

/// Creates the tables in schema `switchyard`; idempotent, run by every command that writes
/// state (after [`ensure_schema`] made the schema itself when it was missing).
pub const SCHEMA_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS switchyard.migrations (
    name            text PRIMARY KEY,
    plan_checksum   text NOT NULL,
    status          text NOT NULL,
    slot_name       text NOT NULL,
    publication     text NOT NULL,
    snapshot_lsn    pg_lsn,
    consistent_lsn  pg_lsn,
    applied_lsn     pg_lsn,
    message         text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    backfill_started_at  timestamptz,
    backfill_finished_at timestamptz
);
-- The WAL consumer's progress, written with each applied group (applied_*) and on a timer
-- (heartbeat_at, received_lsn, pending_since), for `status` and `watch`.
ALTER TABLE switchyard.migrations
    ADD COLUMN IF NOT EXISTS applied_commit_at timestamptz,
    ADD COLUMN IF NOT EXISTS changes_applied bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz,
    ADD COLUMN IF NOT EXISTS received_lsn pg_lsn,
    ADD COLUMN IF NOT EXISTS pending_since timestamptz;
-- The last fence the consumer applied (see `crate::source::fence`), written in the target
-- transaction that applied everything before it; `cutover` and `verify` wait on it.
ALTER TABLE switchyard.migrations
    ADD COLUMN IF NOT EXISTS fence_id text,
    ADD COLUMN IF NOT EXISTS fence_lsn pg_lsn,
    ADD COLUMN IF NOT EXISTS cutover_at timestamptz,
    ADD COLUMN IF NOT EXISTS cutover_report jsonb;
-- When the consumer applied that fence (for the metrics' last-fence timestamp).
ALTER TABLE switchyard.migrations ADD COLUMN IF NOT EXISTS fence_at timestamptz;
CREATE TABLE IF NOT EXISTS switchyard.chunks (
    migration     text NOT NULL REFERENCES switchyard.migrations (name) ON DELETE CASCADE,
    source_table  text NOT NULL,
    chunk_no      int NOT NULL,
    first_block   bigint NOT NULL,
    end_block     bigint,
    status        text NOT NULL DEFAULT 'pending',  -- ChunkStatus::as_str
    row_count     bigint,
    rejected_count bigint,
    finished_at   timestamptz,
    PRIMARY KEY (migration, source_table, chunk_no)
);
-- The source tables' OIDs under the backfill's snapshot: the consumer follows these tables,
-- whatever they are called later (see `crate::source::identity`).
CREATE TABLE IF NOT EXISTS switchyard.source_relations (
    migration     text NOT NULL REFERENCES switchyard.migrations (name) ON DELETE CASCADE,
    source_table  text NOT NULL,
    relid         oid NOT NULL,
    PRIMARY KEY (migration, source_table)
);
-- Its row in the publication (`pg_publication_rel.oid`), NULL when the publication holds it
-- otherwise: another row later means it left the publication and came back.
ALTER TABLE switchyard.source_relations ADD COLUMN IF NOT EXISTS publication_rel oid;
-- How far each apply lane of the WAL consumer applied the stream (see apply_lanes.rs).
CREATE TABLE IF NOT EXISTS switchyard.apply_lanes (
    migration         text NOT NULL REFERENCES switchyard.migrations (name) ON DELETE CASCADE,
    lane              int NOT NULL,
    applied_lsn       pg_lsn NOT NULL,
    applied_commit_at timestamptz,
    changes_applied   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (migration, lane)
);
CREATE TABLE IF NOT EXISTS switchyard.dead_letters (
    id            bigserial PRIMARY KEY,
    migration     text NOT NULL,
    phase         text NOT NULL,
    source_table  text NOT NULL,
    output_table  text,
    source_key    jsonb NOT NULL,
    row_data      jsonb,
    reason        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- What an operator asked of a running migration: `pause`, `resume`, `throttle` (see control.rs).
CREATE TABLE IF NOT EXISTS switchyard.control (
    migration     text PRIMARY KEY,
    paused        boolean NOT NULL DEFAULT false,
    paused_by     text,
    paused_at     timestamptz,
    rows_per_sec  bigint CHECK (rows_per_sec > 0),
    throttle_by   text,
    throttle_at   timestamptz
);
-- Backfill workers sharing one migration, on any number of machines (`backfill --join`, see
-- leases.rs): a chunk is copied by whoever holds its lease; `copied_by` names who marked it done.
ALTER TABLE switchyard.chunks
    ADD COLUMN IF NOT EXISTS lease_owner text,
    ADD COLUMN IF NOT EXISTS lease_expires_at timestamptz,
    ADD COLUMN IF NOT EXISTS copied_by text;
-- The snapshot the copy reads under, exported by the process that keeps it alive while the
-- chunks are copied; NULL once they all are. A joining worker imports it.
ALTER TABLE switchyard.migrations ADD COLUMN IF NOT EXISTS exported_snapshot text;
CREATE TABLE IF NOT EXISTS switchyard.workers (
    migration     text NOT NULL REFERENCES switchyard.migrations (name) ON DELETE CASCADE,
    worker_id     text NOT NULL,  -- LeaseOwner: the chunks' lease_owner
    host          text NOT NULL,
    pid           int NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    chunks_done   bigint NOT NULL DEFAULT 0,
    row_count     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (migration, worker_id)
);
"#;

/// Everything [`ensure_schema`] creates: [`SCHEMA_SQL`] and the reverse stream's keys.
fn schema_sql() -> String {
    format!("{SCHEMA_SQL}{}", reverse::KEYS_SQL)
}

#[derive(Debug, thiserror::Error)]
#[error("switchyard state in the target: {context}")]
pub struct CheckpointError {
    context: &'static str,
    #[source]
    source: tokio_postgres::Error,
}

impl CheckpointError {
    /// The underlying error, to tell a lost connection from a refusal.
    pub fn postgres(&self) -> &tokio_postgres::Error {
        &self.source
    }

    /// The underlying error, for callers that report database errors by step.
    pub fn into_postgres(self) -> tokio_postgres::Error {
        self.source
    }
}

fn ctx(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> CheckpointError {
    move |source| CheckpointError { context, source }
}

/// Creates schema `switchyard` only when it is missing: `CREATE SCHEMA IF NOT EXISTS` checks
/// the database's CREATE privilege before it looks whether the schema exists, so a role that
/// may not create schemas could not use one a DBA created for it (least privilege).
pub async fn ensure_schema(client: &Client) -> Result<(), CheckpointError> {
    let missing: bool = client
        .query_one("SELECT to_regnamespace('switchyard') IS NULL", &[])
        .await
        .map_err(ctx("looking for schema switchyard"))?
        .get(0);
    if missing {
        client
            .batch_execute("CREATE SCHEMA IF NOT EXISTS switchyard")
            .await
            .map_err(ctx("creating schema switchyard"))?;
    }
    client
        .batch_execute(&schema_sql())
        .await
        .map_err(ctx("creating schema switchyard"))
}

impl crate::error::Classify for CheckpointError {
    fn class(&self) -> crate::error::ErrorClass {
        self.postgres().class()
    }
}
