//! `cutover --keep-reverse`: the reverse stream starts with the swap (see
//! [`crate::pipeline::reverse`]).
//!
//! ```text
//!  before the lock   REPLICA IDENTITY FULL on the new tables the reverse rules read (a delete
//!                    must carry the legacy key its row had); their publication, with the
//!                    tables they reference by foreign key; the slot on the new tables'
//!                    server; switchyard.reverse_progress on the legacy side
//!  under the lock    after the fence: the boundary = the target's WAL insert position, recorded
//!                    in the lock's transaction, so the stream exists exactly when the swap does
//! ```
//!
//! The slot is created before the lock because creating one waits for every transaction
//! running at that moment to end (`SnapBuildWaitSnapshot` in PostgreSQL's
//! `replication/logical/snapbuild.c`), and under the lock the application's transactions wait
//! for the cutover: the two would wait for each other. So the slot starts earlier and decodes
//! the forward consumer's last writes too; the boundary tells them apart. After the fence the
//! forward consumer has committed everything, and the application writes the new tables only
//! after the swap commits, so every transaction committing after the boundary is the
//! application's, and every one before it the forward consumer's.

use tokio_postgres::{Client, GenericClient};

use crate::checkpoint::reverse as progress;
use crate::error::Chain;
use crate::pg::ident::{quote_ident, TableName};
use crate::pg::lsn::Lsn;
use crate::plan::Plan;
use crate::source::{publication, slot};

use super::error::CutoverError;

/// The new tables the reverse rules read, in plan order.
pub fn fed_tables(plan: &Plan) -> Vec<TableName> {
    let mut tables: Vec<TableName> = Vec::new();
    for rule in plan.reverse.iter().flat_map(|r| &r.tables) {
        if !tables.contains(&rule.from) {
            tables.push(rule.from.clone());
        }
    }
    tables
}

/// Refuses `--keep-reverse` for a plan without reverse rules, before anything is done.
pub fn require_rules(plan: &Plan) -> Result<(), CutoverError> {
    if plan.reverse.as_ref().is_some_and(|r| !r.tables.is_empty()) {
        return Ok(());
    }
    Err(CutoverError::NotReady(format!(
        "--keep-reverse needs reverse rules: plan {} has no [reverse] section (see the README's \"Reverse rules\"); nothing was changed",
        plan.name
    )))
}

/// Everything before the lock (see the module documentation); idempotent: what exists is
/// reused (a cutover that did not commit drops the slot and publication with [`discard`], and
/// leaves REPLICA IDENTITY FULL, which the next attempt needs anyway).
pub async fn prepare(plan: &Plan, target: &Client, legacy: &Client) -> anyhow::Result<()> {
    require_rules(plan)?;
    let tables = fed_tables(plan);
    // ALTER TABLE ... REPLICA IDENTITY takes ACCESS EXCLUSIVE for a moment: never queued for
    // long behind a reader of the new tables.
    let mut sql = String::from("SET lock_timeout = '5s';\n");
    for t in &tables {
        sql.push_str(&format!(
            "ALTER TABLE {} REPLICA IDENTITY FULL;\n",
            t.quoted()
        ));
    }
    sql.push_str("RESET lock_timeout;");
    target.batch_execute(&sql).await?;
    // The tables they reference (lookups, teams) too, by key: a change there reaches the
    // rows referencing it (see `pipeline::reverse`).
    let referenced = crate::pipeline::reverse::referenced_tables(target, &tables).await?;
    let quoted: Vec<String> = tables
        .iter()
        .chain(&referenced)
        .map(TableName::quoted)
        .collect();
    let name = plan.reverse_publication_name();
    let exists: bool = target
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_publication WHERE pubname = $1)",
            &[&name],
        )
        .await?
        .get(0);
    let verb = if exists {
        format!("ALTER PUBLICATION {} SET TABLE", quote_ident(&name))
    } else {
        format!("CREATE PUBLICATION {} FOR TABLE", quote_ident(&name))
    };
    target
        .batch_execute(&format!("{verb} {}", quoted.join(", ")))
        .await?;
    if slot::state(target, &plan.reverse_slot_name())
        .await?
        .is_none()
    {
        target
            .query_one(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&plan.reverse_slot_name()],
            )
            .await?;
    }
    progress::ensure_progress_table(legacy).await?;
    Ok(())
}

/// Under the lock, after the fence: records the boundary in the lock's transaction on the
/// legacy side (`lock`), read from the new tables' server (`target`).
pub async fn begin(
    lock: &impl GenericClient,
    target: &impl GenericClient,
    plan: &Plan,
) -> Result<Lsn, tokio_postgres::Error> {
    let boundary: Lsn = target
        .query_one("SELECT pg_current_wal_insert_lsn()", &[])
        .await?
        .get(0);
    progress::start(
        lock,
        &plan.name,
        &plan.reverse_slot_name(),
        &plan.reverse_publication_name(),
        boundary,
    )
    .await
    .map_err(crate::checkpoint::CheckpointError::into_postgres)?;
    Ok(boundary)
}

/// Drops the reverse slot and publication once no consumer holds the slot (at most `wait`),
/// after a cutover that did not commit or a rollback that ended the stream. Returns what it
/// did, for the operator; a failure is said, never hidden.
pub async fn discard(plan: &Plan, target: &Client, wait: std::time::Duration) -> String {
    let slot_name = plan.reverse_slot_name();
    let deadline = std::time::Instant::now() + wait;
    let result = async {
        loop {
            let active = slot::state(target, &slot_name).await?.map(|s| s.active);
            if active != Some(true) || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        slot::drop(target, &slot_name).await?;
        publication::drop(target, &plan.reverse_publication_name()).await?;
        Ok::<_, tokio_postgres::Error>(())
    }
    .await;
    match result {
        Ok(()) => format!("reverse slot {slot_name} and its publication dropped"),
        Err(e) => format!(
            "reverse slot {slot_name} NOT dropped ({}): drop it (SELECT pg_drop_replication_slot('{slot_name}') on the new tables' server), or that server keeps WAL for it",
            Chain::new(&e)
        ),
    }
}
