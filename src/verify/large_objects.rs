//! Output columns holding large-object numbers (`oid`, or contrib's `lo` domain over it):
//! verify compares the numbers, as it does any value, but the objects they point at are
//! neither copied nor compared. The report says so, so that "no divergence" is not read as
//! "the documents arrived".

use crate::source::catalog;

use super::error::VerifyError;
use super::outputs::OutputSpec;

/// `table.column (type)` for each compared column whose type is `oid` or a domain over it.
pub async fn columns(
    target: &tokio_postgres::Client,
    specs: &[OutputSpec],
) -> Result<Vec<String>, VerifyError> {
    let mut found = Vec::new();
    for spec in specs {
        let columns = catalog::large_object_columns(target, &spec.table.quoted(), &spec.columns)
            .await
            .map_err(VerifyError::target("reading the output columns' types"))?;
        for (column, ty) in columns {
            found.push(format!("{}.{column} ({ty})", spec.table));
        }
    }
    Ok(found)
}
