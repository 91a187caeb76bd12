//! Sequences and identity columns of the new tables, moved past the highest value the
//! migration wrote, so that the application's first insert after the cutover cannot collide
//! with a copied row. `setval` only moves forward here (`greatest` with the current value) and
//! is not transactional: an aborted cutover leaves a sequence further on, which is harmless.

use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::pg::ident::{quote_ident, TableName};

/// One sequence that was set.
#[derive(Debug, Clone, Serialize)]
pub struct SequenceSet {
    pub sequence: String,
    pub column: String,
    pub value: i64,
}

/// Sets every sequence owned by a column of `tables` (serial and identity columns alike)
/// to at least the column's maximum.
pub async fn sync(
    client: &impl GenericClient,
    tables: &[TableName],
) -> Result<Vec<SequenceSet>, tokio_postgres::Error> {
    let names: Vec<String> = tables.iter().map(TableName::quoted).collect();
    let owned = client
        .query(
            "SELECT d.refobjid::regclass::text, a.attname::text, d.objid::regclass::text
               FROM pg_depend d
               JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
              WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                AND d.deptype IN ('a', 'i')
                AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S'
                AND d.refobjid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t)
              ORDER BY 1, 2",
            &[&names],
        )
        .await?;
    let mut set = Vec::new();
    for row in owned {
        let (table, column, sequence): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        // `table` and `sequence` come from regclass output, already quoted where needed.
        let value: i64 = client
            .query_one(
                &format!(
                    "SELECT setval($1::regclass, greatest(
                         (SELECT max({col})::int8 FROM {table}),
                         (SELECT last_value FROM {sequence}), 1))",
                    col = quote_ident(&column),
                ),
                &[&sequence],
            )
            .await?
            .get(0);
        set.push(SequenceSet {
            sequence,
            column: format!("{table}.{column}"),
            value,
        });
    }
    Ok(set)
}
