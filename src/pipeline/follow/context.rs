//! What the consumer's parts share: the context the command resolves, and the idle timer.
//! Below every other file of the consumer, so that they import it and it imports none of them.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

use crate::pg::conninfo::ConnInfo;
use crate::pipeline::control::Gate;
use crate::plan::{OnError, Plan};
use crate::progress::FollowProgress;
use crate::sink::lookup::LookupCache;

/// With source commits pending, this long without a message commits the group at once.
pub const IDLE_COMMIT: Duration = Duration::from_millis(5);

/// What the consumer needs, resolved by the command.
pub struct FollowContext {
    pub plan: Arc<Plan>,
    pub lookups: Arc<LookupCache>,
    pub on_error: OnError,
    /// The source session: the slot's state, confirmations, catalog checks.
    pub source: Client,
    /// Where the reads of current source rows (for unchanged TOASTed values) connect.
    pub source_conninfo: ConnInfo,
    /// Key column types per source, for those reads.
    pub key_types: Vec<Vec<String>>,
    /// Heartbeats, on a connection of their own.
    pub monitor: Client,
    /// The OIDs of the followed source tables, per plan source: their identity, whatever
    /// they are called (see [`crate::source::identity`]).
    pub oids: Vec<u32>,
    /// Each followed table's row in the publication as the backfill saw it
    /// (`pg_publication_rel.oid`): another one means it left the publication and came back.
    pub publication_rels: Vec<Option<u32>>,
    /// The publication the slot decodes through.
    pub publication: String,
    /// Pause and rate cap: see [`crate::pipeline::control`].
    pub gate: Gate,
    /// What the lanes applied, for the metrics; outlives the consumer's restarts.
    pub progress: Arc<FollowProgress>,
}
