//! `views = "carry"`: views that read a legacy table are re-created after the swap SQL, inside
//! the lock's transaction, from their definition read before it, so that they read what now
//! takes the legacy name (the compatibility view) instead of following the renamed table.
//!
//! `CREATE OR REPLACE VIEW` keeps the view's OID, owner, grants and the views built on it
//! (<https://www.postgresql.org/docs/15/sql-createview.html>); the options (`security_barrier`,
//! `security_invoker`, `check_option`) are written back from `pg_class.reloptions`, since a
//! replace without them would reset them.
//!
//! For `rollback`, each carried view's definition as the swap left it (reading `*_legacy`) is
//! kept in `switchyard.carried_views`, written in the same transaction: [`restore`] puts it
//! back before the rollback SQL drops the compatibility views (which it could not do while a
//! carried view depended on them), and the rollback's renames then take the view back to the
//! legacy name with the table.

use tokio_postgres::GenericClient;

use crate::plan::Disposition;

use super::{Dependent, DependentsError, Kind};

/// The table holding what [`restore`] needs; created before the lock (same database only: the
/// views and switchyard's schema are in the one database).
pub const TABLE_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS switchyard;
CREATE TABLE IF NOT EXISTS switchyard.carried_views (
    migration   text NOT NULL,
    view_name   text NOT NULL,   -- schema.name, quoted where needed
    restore_sql text NOT NULL,   -- CREATE OR REPLACE VIEW reading the renamed legacy tables
    carried_sql text NOT NULL,   -- what the cutover ran: the definition from before the swap
    carried_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration, view_name)
);";

/// `CREATE OR REPLACE VIEW` for the view with OID `$1` as it is now, options included.
pub(super) const VIEW_SQL: &str = "
SELECT format('%I.%I', n.nspname, c.relname),
       format('CREATE OR REPLACE VIEW %I.%I%s AS %s', n.nspname, c.relname,
              (SELECT ' WITH (' || string_agg(format('%s = %L', split_part(opt, '=', 1),
                                                     substr(opt, strpos(opt, '=') + 1)), ', ') || ')'
                 FROM unnest(c.reloptions) opt),
              pg_get_viewdef(c.oid))
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = $1";

/// Re-creates every view the plan carries and that has a definition from before the swap;
/// returns their names. Runs in the swap's transaction, after the swap SQL.
pub(super) async fn carry(
    client: &impl GenericClient,
    migration: &str,
    dependents: &[Dependent],
) -> Result<Vec<String>, DependentsError> {
    let mut carried = Vec::new();
    for d in dependents {
        let (Kind::View, Disposition::Carry, Some(definition)) =
            (d.kind, d.disposition, &d.definition)
        else {
            continue;
        };
        let Some(now) = client.query_opt(VIEW_SQL, &[&d.oid]).await? else {
            continue; // dropped by the plan's cutover SQL
        };
        let (view, restore): (String, String) = (now.get(0), now.get(1));
        client
            .batch_execute(definition)
            .await
            .map_err(|cause| DependentsError::Carry {
                view: view.clone(),
                cause,
            })?;
        client
            .execute(
                "INSERT INTO switchyard.carried_views (migration, view_name, restore_sql, carried_sql)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (migration, view_name) DO UPDATE
                    SET restore_sql = EXCLUDED.restore_sql, carried_sql = EXCLUDED.carried_sql,
                        carried_at = now()",
                &[&migration, &view, &restore, definition],
            )
            .await?;
        carried.push(view);
    }
    Ok(carried)
}

/// Before the rollback SQL, in its transaction: points every view the cutover carried back at
/// the renamed legacy tables, so the rollback SQL can drop the compatibility views and rename
/// the tables back (the views follow them). Returns the views restored.
pub async fn restore(
    client: &impl GenericClient,
    migration: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('switchyard.carried_views') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "DELETE FROM switchyard.carried_views WHERE migration = $1
             RETURNING view_name, restore_sql",
            &[&migration],
        )
        .await?;
    let mut restored = Vec::new();
    for r in rows {
        let (view, sql): (String, String) = (r.get(0), r.get(1));
        client.batch_execute(&sql).await?;
        restored.push(view);
    }
    Ok(restored)
}
