//! How busy the source is, for the backfill's automatic throttle (gh-ost's `--max-load` and
//! throttle query): the sessions running a statement now, and an operator's own SQL that
//! says when to slow down.

use tokio_postgres::types::Type;
use tokio_postgres::Client;

/// Sessions of the source's clients running a statement now (`pg_stat_activity.state =
/// 'active'`), leaving out switchyard's own (its readers are active for the whole copy, and a
/// backfill that counted them would throttle itself) and server processes (walsenders,
/// autovacuum, background workers).
pub async fn active_sessions(client: &Client) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
              WHERE state = 'active' AND backend_type = 'client backend'
                AND pid <> pg_backend_pid()
                AND application_name NOT LIKE 'switchyard%'",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Why an operator's throttle query cannot be used: the run stops at start with this, so a
/// typo never silently throttles (or never throttles) a backfill of hours. Fix the query.
#[derive(Debug, thiserror::Error)]
pub enum ThrottleQueryError {
    #[error("the throttle query failed on the source")]
    Failed(#[source] tokio_postgres::Error),
    #[error("the throttle query must return exactly one boolean (one row, one column of type boolean, not NULL); it returned {0}")]
    NotOneBoolean(String),
}

/// Runs the operator's `sql`: `true` means slow down.
pub async fn throttle_query(client: &Client, sql: &str) -> Result<bool, ThrottleQueryError> {
    let statement = client
        .prepare(sql)
        .await
        .map_err(ThrottleQueryError::Failed)?;
    let columns = statement.columns();
    if columns.len() != 1 || *columns[0].type_() != Type::BOOL {
        let shape: Vec<String> = columns
            .iter()
            .map(|c| format!("{} {}", c.name(), c.type_()))
            .collect();
        return Err(ThrottleQueryError::NotOneBoolean(format!(
            "columns ({})",
            shape.join(", ")
        )));
    }
    let rows = client
        .query(&statement, &[])
        .await
        .map_err(ThrottleQueryError::Failed)?;
    match rows.as_slice() {
        [row] => row
            .get::<_, Option<bool>>(0)
            .ok_or_else(|| ThrottleQueryError::NotOneBoolean("NULL".to_owned())),
        rows => Err(ThrottleQueryError::NotOneBoolean(format!(
            "{} rows",
            rows.len()
        ))),
    }
}
