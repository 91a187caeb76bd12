//! `grants = "carry"`: the legacy tables' privileges granted again, under the lock and after
//! the plan's cutover SQL, on what takes each legacy name and on the new tables it feeds.
//! With two servers the new tables live on the target, where a role of the source may not
//! exist: such grants are not made, and each role is reported with the statements to run.

use tokio_postgres::Client;

use super::wanted::{Side, Want};
use super::{db, AccessError};

/// Roles among `grantees` that `client`'s cluster does not know (PUBLIC always exists).
pub(super) async fn missing_roles(
    client: &Client,
    grantees: Vec<String>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT array(SELECT DISTINCT u FROM unnest($1::text[]) u
                           WHERE u <> 'PUBLIC' AND NOT EXISTS (SELECT FROM pg_roles WHERE rolname = u)
                           ORDER BY u)",
            &[&grantees],
        )
        .await?;
    Ok(row.get(0))
}

/// The grantees of the wants that go to the new tables' side.
pub(super) fn new_side_grantees(wants: &[Want]) -> Vec<String> {
    wants
        .iter()
        .filter(|w| w.side == Side::New)
        .map(|w| w.grantee.clone())
        .collect()
}

/// Grants every want on its side. Returns what was granted and what was not (roles missing on
/// the target server), one line each.
pub(super) async fn grant(
    wants: &[Want],
    named: &Client,
    new: &Client,
    two_servers: bool,
) -> Result<(Vec<String>, Vec<String>), AccessError> {
    let missing = if two_servers {
        missing_roles(new, new_side_grantees(wants))
            .await
            .map_err(db("looking up the grantees' roles on the target"))?
    } else {
        Vec::new()
    };
    let mut done = Vec::new();
    for w in wants {
        if w.side == Side::New && missing.contains(&w.grantee) {
            continue;
        }
        let client = match w.side {
            Side::Named => named,
            Side::New => new,
        };
        client.batch_execute(&w.grant_sql()).await.map_err(db(
            "granting the legacy tables' privileges on the new objects",
        ))?;
        done.push(format!("granted {}", w.describe()));
    }
    let not_made = missing
        .iter()
        .map(|role| {
            let statements: Vec<String> = wants
                .iter()
                .filter(|w| w.side == Side::New && &w.grantee == role)
                .map(|w| format!("{};", w.grant_sql()))
                .collect();
            format!(
                "NOT granted: role {role} does not exist on the target; create it there, then run: {}",
                statements.join(" ")
            )
        })
        .collect();
    Ok((done, not_made))
}
