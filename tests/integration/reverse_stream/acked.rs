//! Every write the load had acknowledged is in the legacy tables after the rollback, checked
//! from the load's own record rather than through the oracle: a created row under its
//! allocated key with its name, a deleted one gone (by key and by every name it had), the
//! last name, budget, status and parent of a changed one.

use tokio_postgres::Client;

use super::model::{Known, Model, Output};

/// The legacy key of a row: its legacy id, or the one the reverse consumer allocated.
async fn legacy_key(target: &Client, id: &str, known: &Known) -> Option<i64> {
    if known.legacy_id.is_some() {
        return known.legacy_id;
    }
    target
        .query_one(
            "SELECT switchyard.legacy_key($1, $2)::bigint",
            &[&known.output.legacy_table(), &id],
        )
        .await
        .unwrap()
        .get(0)
}

pub async fn assert_acknowledged_writes_kept(source: &Client, target: &Client, model: &Model) {
    let mut wrong = Vec::new();
    for (id, known) in model.rows.iter().filter(|(_, k)| k.written()) {
        let (table, name_column) = (known.output.legacy_table(), known.output.legacy_name());
        let key = legacy_key(target, id, known).await;
        if known.deleted {
            if let Some(key) = key {
                let there = source
                    .query_opt(&format!("SELECT 1 FROM {table} WHERE id = $1"), &[&key])
                    .await
                    .unwrap();
                if there.is_some() {
                    wrong.push(format!("{table} {key} ({id}): deleted, still there"));
                }
            }
            let named: i64 = source
                .query_one(
                    &format!("SELECT count(*) FROM {table} WHERE {name_column} = ANY($1)"),
                    &[&known.names],
                )
                .await
                .unwrap()
                .get(0);
            if named > 0 {
                wrong.push(format!(
                    "{table} ({id}): deleted, a row still has one of its names {:?}",
                    known.names
                ));
            }
            continue;
        }
        let Some(key) = key else {
            wrong.push(format!("{table} ({id}): created, no legacy key allocated"));
            continue;
        };
        let Some(row) = source
            .query_opt(&legacy_row_sql(known.output), &[&key])
            .await
            .unwrap()
        else {
            wrong.push(format!("{table} {key} ({id}): missing"));
            continue;
        };
        let got: Vec<Option<String>> = (0..4).map(|i| row.get(i)).collect();
        let want = [
            known.name.clone(),
            expected_budget(known),
            known.status.clone(),
            match &known.parent {
                Some(parent) => parent_key(target, model, known.output, parent).await,
                None => None,
            },
        ];
        for (i, what) in ["name", "budget", "status", "parent"].iter().enumerate() {
            let written = match i {
                0 => known.name.is_some(),
                1 => known.budget.is_some(),
                2 => known.status.is_some(),
                _ => known.parent.is_some(),
            };
            if written && got[i] != want[i] {
                wrong.push(format!(
                    "{table} {key} ({id}): {what} {:?}, acknowledged {:?}",
                    got[i], want[i]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "acknowledged writes not in the legacy tables ({}):\n{}",
        model.summary(),
        wrong.join("\n")
    );
}

/// The name, budget (as the legacy text), status and parent key of a legacy row, as text.
fn legacy_row_sql(output: Output) -> String {
    match output {
        Output::CompanyProject => {
            "SELECT name, budget, NULL::text, NULL::text FROM company_projects WHERE id = $1"
        }
        Output::CompanyService => {
            "SELECT service_name, monthly_fee::text, NULL::text, NULL::text FROM company_services WHERE id = $1"
        }
        Output::Task => "SELECT title, NULL::text, status, project_id::text FROM vortex_items WHERE id = $1",
        Output::SubTask => {
            "SELECT title, NULL::text, status, parent_item_id::text FROM vortex_items WHERE id = $1"
        }
    }
    .to_string()
}

/// A project's budget as the legacy row holds it: as written, or a service's monthly fee
/// (budget / 12 in cents, rounded half away from zero).
fn expected_budget(known: &Known) -> Option<String> {
    let budget = known.budget.as_ref()?;
    if known.output != Output::CompanyService {
        return Some(budget.clone());
    }
    let (units, cents) = budget
        .split_once('.')
        .expect("budgets are written with cents");
    let cents: i64 = units.parse::<i64>().unwrap() * 100 + cents.parse::<i64>().unwrap();
    let fee = (cents * 2 + 12) / 24; // floor(cents / 12 + 1/2)
    Some(format!("{}.{:02}", fee / 100, fee % 100))
}

/// The legacy key a task's project_id or a sub-task's parent_item_id must hold: the parent's
/// key, or NULL for a task under a service (a legacy item names only company projects).
async fn parent_key(
    target: &Client,
    model: &Model,
    output: Output,
    parent: &str,
) -> Option<String> {
    let known = &model.rows[parent];
    if output == Output::Task && known.output != Output::CompanyProject {
        return None;
    }
    legacy_key(target, parent, known)
        .await
        .map(|k| k.to_string())
}
