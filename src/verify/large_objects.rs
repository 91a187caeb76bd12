//! Output columns holding large-object numbers (`oid`, or contrib's `lo` domain over it):
//! verify compares the numbers, as it does any value, but the objects they point at are
//! neither copied nor compared. The report says so, so that "no divergence" is not read as
//! "the documents arrived".

use super::error::VerifyError;
use super::outputs::OutputSpec;

/// `table.column (type)` for each compared column whose type is `oid` or a domain over it.
pub async fn columns(
    target: &tokio_postgres::Client,
    specs: &[OutputSpec],
) -> Result<Vec<String>, VerifyError> {
    let mut found = Vec::new();
    for spec in specs {
        let rows = target
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
                   FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                  WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
                    AND a.attname::text = ANY ($2::text[])
                    AND 'oid'::regtype IN (t.oid, CASE WHEN t.typtype = 'd' THEN t.typbasetype END)
                  ORDER BY a.attnum",
                &[&spec.table.quoted(), &spec.columns],
            )
            .await
            .map_err(VerifyError::target("reading the output columns' types"))?;
        for row in rows {
            let (column, ty): (String, String) = (row.get(0), row.get(1));
            found.push(format!("{}.{column} ({ty})", spec.table));
        }
    }
    Ok(found)
}
