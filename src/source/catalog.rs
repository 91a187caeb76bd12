//! Questions to PostgreSQL's system catalogs that more than one step asks, each answered by
//! one query here: the columns of a table and their types, which of them hold large-object
//! numbers, whether a unique index covers a key, and the members of a partition tree.
//!
//! Both preflights ask them (`check` reads the source's tables and the target's outputs with
//! the same SQL), and so do verify and the cutover. They live in `source/` because a table's
//! shape is first learned here and every other layer already reads the source layer
//! (`crate::sink`, `crate::verify` and `crate::cutover` import from it; it imports from none
//! of them), while `pg/` holds codecs without I/O. Each function takes whichever server's
//! client it is asked of. Catalogs: <https://www.postgresql.org/docs/15/catalogs.html>.

use std::collections::HashMap;

use tokio_postgres::GenericClient;

use crate::pg::ident::TableName;

/// A table's columns and their types as `format_type` prints them (`character varying(20)`),
/// by name; empty when the table does not exist.
pub async fn columns(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<HashMap<String, String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&table.schema, &table.name],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Which of `columns` of `table` (quoted) hold large-object numbers: type `oid`, or a domain
/// over it (contrib's `lo`). `(column, type)` in column order.
pub async fn large_object_columns(
    client: &impl GenericClient,
    table: &str,
    columns: &[String],
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
               FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
              WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
                AND a.attname::text = ANY ($2::text[])
                AND 'oid'::regtype IN (t.oid, CASE WHEN t.typtype = 'd' THEN t.typbasetype END)
              ORDER BY a.attnum",
            &[&table, &columns],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Whether a unique index of `table` covers exactly the `key` columns (a partial index does
/// not count).
pub async fn has_unique_key(
    client: &impl GenericClient,
    table: &TableName,
    key: &[String],
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (
                 SELECT FROM pg_index i
                  WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL
                    AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
                           FROM pg_attribute a
                          WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))
                        = (SELECT array_agg(k ORDER BY k) FROM unnest($2::text[]) k)
                    AND array_length(i.indkey, 1) = cardinality($2::text[]))",
            &[&table.quoted(), &key],
        )
        .await?;
    Ok(row.get(0))
}

/// A subquery for a `FROM` list: every member of the partition tree rooted at the SQL
/// expression `root` (a `regclass`), the root included, as `(relid oid, level int)`.
/// `pg_partition_tree` returns no row for a plain table, hence the root's own row; a `NULL`
/// root yields no member that joins `pg_class`.
/// <https://www.postgresql.org/docs/15/functions-admin.html#FUNCTIONS-INFO-PARTITION>
pub fn partition_tree(root: &str) -> String {
    format!(
        "(SELECT {root}::oid AS relid, 0 AS level
           UNION SELECT relid, level FROM pg_partition_tree({root}))"
    )
}
