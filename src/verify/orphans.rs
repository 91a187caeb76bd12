//! The plan's `[reports]` (orphans and the like), counted on the target. They describe the
//! legacy data as the new schema sees it, so verify reports them and never calls them
//! divergence.

use tokio_postgres::Client;

use crate::plan::Plan;

use super::error::VerifyError;
use super::report::Orphans;

pub async fn count(target: &Client, plan: &Plan) -> Result<Vec<Orphans>, VerifyError> {
    let mut found = Vec::with_capacity(plan.reports.len());
    for (name, sql) in &plan.reports {
        let count: i64 = target
            .query_one(sql.as_str(), &[])
            .await
            .map_err(VerifyError::target(format!("report {name:?}")))?
            .get(0);
        found.push(Orphans {
            name: name.clone(),
            count,
        });
    }
    Ok(found)
}
