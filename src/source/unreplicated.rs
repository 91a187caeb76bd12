//! Source data that logical decoding never carries, found before work starts.
//!
//! - **UNLOGGED and TEMP tables** (or partitions) write no WAL, so the slot never sees their
//!   changes and PostgreSQL refuses to publish them: `check` refuses, with the fix.
//! - **Large objects.** An `oid` column (or contrib's `lo` domain over it) holds the number of
//!   an object in `pg_largeobject`, a catalog logical decoding does not decode. switchyard
//!   copies and follows the numbers, never the objects: `check` warns with what happens and
//!   what to do, and `verify` says it compared numbers. See the README, "Large objects".

use tokio_postgres::Client;

use crate::pg::ident::quote_ident;
use crate::plan::Plan;

use super::catalog;
use super::preflight::Finding;

/// Findings for every source table of `plan`.
pub async fn check(client: &Client, plan: &Plan) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let mut found = Vec::new();
    for source in &plan.sources {
        let quoted = source.table.quoted();
        let subject = format!("source.{}", source.table);
        let unlogged: Vec<(String, String, bool)> = client
            .query(
                &format!(
                    "SELECT format('%I.%I', n.nspname, c.relname), c.relpersistence::text, t.level = 0
                       FROM {} t
                       JOIN pg_class c ON c.oid = t.relid
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE c.relpersistence <> 'p' AND c.relkind IN ('r', 'p')
                      ORDER BY t.level, 1",
                    catalog::partition_tree("to_regclass($1)")
                ),
                &[&quoted],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        for (table, persistence, is_root) in unlogged {
            let what = if is_root {
                "the table".to_owned()
            } else {
                format!("partition {table}")
            };
            if persistence == "t" {
                found.push(Finding::error(
                    &subject,
                    format!("{what} is TEMPORARY: it writes no WAL and lives only in its own session, so it cannot be published or followed"),
                    "copy it into an ordinary table (CREATE TABLE ... AS TABLE ...) and name that in the plan",
                ));
            } else {
                found.push(Finding::error(
                    &subject,
                    format!("{what} is UNLOGGED: it writes no WAL, so logical decoding never sees its changes and it cannot be published"),
                    format!("ALTER TABLE {table} SET LOGGED; (rewrites the table and writes it all to the WAL once)"),
                ));
            }
        }
        for (column, ty) in catalog::large_object_columns(client, &quoted, &source.columns).await? {
            found.push(Finding::warning(
                &subject,
                format!(
                    "the plan reads column {} ({ty}): if it holds large-object numbers, switchyard copies and follows the numbers only, never the objects (logical decoding does not carry pg_largeobject). In another database they point at nothing, or at unrelated objects; in the same database both tables share each object, and lo_unlink (or an lo_manage trigger) on either side removes it for both",
                    quote_ident(&column)
                ),
                format!(
                    "migrate the contents instead: ALTER TABLE {quoted} ADD COLUMN {c} bytea; UPDATE {quoted} SET {c} = lo_get({col}); and read {c} in the plan. Or copy the objects with their numbers yourself (pg_dump --large-objects) and copy again any written after the backfill, before the cutover",
                    c = quote_ident(&format!("{column}_data")),
                    col = quote_ident(&column),
                ),
            ));
        }
    }
    Ok(found)
}
