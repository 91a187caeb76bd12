//! The target's row counts carried forward without a scan: while a cutover runs, statement
//! triggers on the output and lookup tables add each statement's inserted minus deleted rows
//! to `switchyard.cutover_tally`.
//!
//! ```text
//!  before the lock   install: AFTER INSERT / DELETE ... REFERENCING NEW|OLD TABLE FOR EACH
//!                    STATEMENT, and AFTER TRUNCATE; ENABLE ALWAYS, so they fire for the
//!                    consumer (session_replication_role = replica) and for anyone else
//!                    baseline: count(*) and the tally's sum, in one snapshot per table
//!  under the lock    rows at the fence = baseline count + tally sum now - tally sum then
//!  the swap          triggers dropped in the swap's transaction; any other end drops them
//! ```
//! Every writer counts, so a row removed behind the consumer's back after the baseline is
//! seen as surely as one removed before it (which the baseline's count sees). A TRUNCATE
//! leaves a NULL delta: that table is counted by a scan under the lock. Transition tables are
//! PostgreSQL's (<https://www.postgresql.org/docs/15/sql-createtrigger.html>); a table that
//! cannot have them (an inheritance child, a foreign table) is counted by a scan.

use std::collections::BTreeMap;

use tokio_postgres::{Client, GenericClient};

use crate::pg::ident::{quote_literal, TableName};

/// The tally's table and the function its triggers call, created when missing. The function
/// is `SECURITY DEFINER` so that whoever writes the table can add to the tally.
const SCHEMA_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS switchyard;
CREATE TABLE IF NOT EXISTS switchyard.cutover_tally (
    migration text NOT NULL,
    relation text NOT NULL,
    delta bigint
);
CREATE OR REPLACE FUNCTION switchyard.cutover_tally() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $tally$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO switchyard.cutover_tally
        SELECT TG_ARGV[0], TG_ARGV[1], count(*) FROM switchyard_new HAVING count(*) > 0;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO switchyard.cutover_tally
        SELECT TG_ARGV[0], TG_ARGV[1], -count(*) FROM switchyard_old HAVING count(*) > 0;
    ELSE
        INSERT INTO switchyard.cutover_tally VALUES (TG_ARGV[0], TG_ARGV[1], NULL);
    END IF;
    RETURN NULL;
END
$tally$;
";

/// The triggers' names, also how `check` tells them from the application's.
pub const TRIGGER_PREFIX: &str = "switchyard_tally_";

/// A table's count at the baseline.
#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    pub rows: i64,
    /// The tally's sum in the same snapshot.
    pub tally: i64,
}

/// Installs the triggers on `tables`. Returns the tables that could not get them, with why;
/// those are counted by a scan under the lock. Each table is one short transaction, waiting at
/// most a second for the consumer's group to commit.
pub async fn install(
    client: &Client,
    migration: &str,
    tables: &[TableName],
) -> Result<Vec<(TableName, String)>, tokio_postgres::Error> {
    client.batch_execute(SCHEMA_SQL).await?;
    client
        .execute(
            "DELETE FROM switchyard.cutover_tally WHERE migration = $1",
            &[&migration],
        )
        .await?;
    let mut refused = Vec::new();
    for table in tables {
        let t = table.quoted();
        let args = format!(
            "{}, {}",
            quote_literal(migration),
            quote_literal(&table.to_string())
        );
        let sql = format!(
            "BEGIN; SET LOCAL lock_timeout = '1s';
             DROP TRIGGER IF EXISTS {p}insert ON {t};
             DROP TRIGGER IF EXISTS {p}delete ON {t};
             DROP TRIGGER IF EXISTS {p}truncate ON {t};
             CREATE TRIGGER {p}insert AFTER INSERT ON {t} REFERENCING NEW TABLE AS switchyard_new
                 FOR EACH STATEMENT EXECUTE FUNCTION switchyard.cutover_tally({args});
             CREATE TRIGGER {p}delete AFTER DELETE ON {t} REFERENCING OLD TABLE AS switchyard_old
                 FOR EACH STATEMENT EXECUTE FUNCTION switchyard.cutover_tally({args});
             CREATE TRIGGER {p}truncate AFTER TRUNCATE ON {t}
                 FOR EACH STATEMENT EXECUTE FUNCTION switchyard.cutover_tally({args});
             ALTER TABLE {t} ENABLE ALWAYS TRIGGER {p}insert, ENABLE ALWAYS TRIGGER {p}delete,
                 ENABLE ALWAYS TRIGGER {p}truncate;
             COMMIT",
            p = TRIGGER_PREFIX
        );
        if let Err(e) = client.batch_execute(&sql).await {
            let _ = client.batch_execute("ROLLBACK").await;
            refused.push((table.clone(), crate::error::Chain::new(&e).to_string()));
        }
    }
    Ok(refused)
}

/// Each table's count and tally sum, in one snapshot per table; the tables are counted
/// concurrently, one session each (`sessions` holds at least as many as `tables`).
pub async fn baseline(
    sessions: &[Client],
    migration: &str,
    tables: &[TableName],
) -> Result<BTreeMap<String, Baseline>, tokio_postgres::Error> {
    let counted = futures_util::future::try_join_all(tables.iter().zip(sessions).map(
        |(table, s)| async move {
            s.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?;
            let result = async {
                let rows: i64 = s
                    .query_one(&format!("SELECT count(*) FROM {}", table.quoted()), &[])
                    .await?
                    .get(0);
                let tally = sums(s, migration).await?;
                Ok::<_, tokio_postgres::Error>((rows, tally))
            }
            .await;
            s.batch_execute("COMMIT").await?;
            let (rows, tally) = result?;
            let name = table.to_string();
            let tally = tally.get(&name).copied().flatten().unwrap_or(0);
            Ok::<_, tokio_postgres::Error>((name, Baseline { rows, tally }))
        },
    ))
    .await?;
    Ok(counted.into_iter().collect())
}

/// The tally's sum per table; `None` for a table truncated since the triggers were installed.
pub async fn sums(
    client: &impl GenericClient,
    migration: &str,
) -> Result<BTreeMap<String, Option<i64>>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT relation, CASE WHEN bool_and(delta IS NOT NULL) THEN sum(delta)::int8 END
               FROM switchyard.cutover_tally WHERE migration = $1 GROUP BY relation",
            &[&migration],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Drops the tally's triggers found on `tables` and empties the tally, in `client`'s current
/// transaction or on their own. Only triggers that exist are named: `DROP TRIGGER IF EXISTS`
/// would still take the table's ACCESS EXCLUSIVE lock, and after a cutover the application
/// writes these tables. Waits for the locks as the caller's `lock_timeout` allows.
pub async fn remove(
    client: &impl GenericClient,
    migration: &str,
    tables: &[TableName],
) -> Result<(), tokio_postgres::Error> {
    let names: Vec<String> = tables.iter().map(TableName::quoted).collect();
    let found = client
        .query(
            "SELECT t.tgrelid::regclass::text, quote_ident(t.tgname)
               FROM pg_trigger t
              WHERE t.tgrelid = ANY (ARRAY(SELECT to_regclass(n) FROM unnest($1::text[]) AS n))
                AND t.tgname LIKE 'switchyard\\_tally\\_%'",
            &[&names],
        )
        .await?;
    let mut sql = String::new();
    for row in found {
        let (table, trigger): (String, String) = (row.get(0), row.get(1));
        sql.push_str(&format!("DROP TRIGGER {trigger} ON {table};\n"));
    }
    sql.push_str(&format!(
        "DELETE FROM switchyard.cutover_tally WHERE migration = {};",
        quote_literal(migration)
    ));
    client.batch_execute(&sql).await
}

/// Drops what a cutover that did not commit (or died) left: the triggers on the plan's output
/// and lookup tables and its tally rows. Does nothing when no cutover ever ran.
pub async fn remove_leftovers(
    client: &Client,
    plan: &crate::plan::Plan,
) -> Result<(), tokio_postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('switchyard.cutover_tally') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(());
    }
    client
        .batch_execute("BEGIN; SET LOCAL lock_timeout = '1s'")
        .await?;
    let tables = super::writes_since::tables_of(plan);
    let removed = remove(client, &plan.name, &tables).await;
    client
        .batch_execute(if removed.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        })
        .await?;
    removed
}
