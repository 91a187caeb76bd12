//! Every session that writes the plan's tables (the backfill's workers, the WAL consumer's
//! apply session, the lookup resolver) runs with `session_replication_role = replica`, as
//! native logical replication's table-sync and apply workers do.
//!
//! Why every one: a target trigger must treat a row the same way whether the backfill copied it
//! or the follow streamed it. Under `replica`, ordinary triggers and rules (`ENABLE`, the
//! default) fire on neither path, triggers marked `ENABLE ALWAYS` or `ENABLE REPLICA` fire on
//! both; foreign keys are not checked on either (the source is the authority until the
//! cutover). `check` lists each trigger with what will happen ([`super::triggers`]).
//!
//! <https://www.postgresql.org/docs/15/sql-altertable.html#SQL-ALTERTABLE-DESC-DISABLE-ENABLE-TRIGGER>

use tokio_postgres::Client;

/// The session could not be made a replica: the role lacks the privilege. Fix the grant.
#[derive(Debug, thiserror::Error)]
#[error("the sessions that write the target run with session_replication_role = replica, as native logical replication does, which needs `GRANT SET ON PARAMETER session_replication_role TO <target role>` (PostgreSQL 15) or a superuser")]
pub struct ReplicationRoleError {
    #[source]
    pub source: tokio_postgres::Error,
}

impl ReplicationRoleError {
    pub fn postgres(&self) -> &tokio_postgres::Error {
        &self.source
    }
}

/// Makes `client` a replica session for the rest of its life.
pub async fn set_replica(client: &Client) -> Result<(), ReplicationRoleError> {
    client
        .batch_execute("SET session_replication_role = replica")
        .await
        .map_err(|source| ReplicationRoleError { source })
}

impl crate::error::Classify for ReplicationRoleError {
    fn class(&self) -> crate::error::ErrorClass {
        self.postgres().class()
    }
}
