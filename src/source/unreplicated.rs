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

use super::preflight::Finding;

/// The source columns the plan reads whose values are large-object numbers, as
/// `(table, column, type)`; one query per source.
const LARGE_OBJECT_COLUMNS_SQL: &str = "
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
   AND a.attname::text = ANY ($2::text[])
   AND 'oid'::regtype IN (t.oid, CASE WHEN t.typtype = 'd' THEN t.typbasetype END)
 ORDER BY a.attnum";

/// Findings for every source table of `plan`.
pub async fn check(client: &Client, plan: &Plan) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let mut found = Vec::new();
    for source in &plan.sources {
        let quoted = source.table.quoted();
        let subject = format!("source.{}", source.table);
        let unlogged: Vec<(String, String, bool)> = client
            .query(
                "SELECT format('%I.%I', n.nspname, c.relname), c.relpersistence::text, t.level = 0
                   FROM (SELECT to_regclass($1) AS relid, 0 AS level
                         UNION SELECT relid, level FROM pg_partition_tree(to_regclass($1))) t
                   JOIN pg_class c ON c.oid = t.relid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relpersistence <> 'p' AND c.relkind IN ('r', 'p')
                  ORDER BY t.level, 1",
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
        let rows = client
            .query(LARGE_OBJECT_COLUMNS_SQL, &[&quoted, &source.columns])
            .await?;
        for row in rows {
            let (column, ty): (String, String) = (row.get(0), row.get(1));
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
