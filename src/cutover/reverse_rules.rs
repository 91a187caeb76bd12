//! `check` of the plan's reverse rules against both catalogs: every expression must prepare on
//! the target over its output table, and the legacy columns it writes must exist, be writable,
//! and cover every legacy column that has neither a default nor NULL allowed.
//!
//! Each expression is prepared on its own, inside a savepoint of `check`'s rolled-back target
//! transaction (after the before-backfill SQL, so the new tables exist): an error names the
//! field it comes from, and a failed prepare does not abort the checks after it.

use std::collections::HashMap;

use tokio_postgres::GenericClient;

use crate::pg::ident::quote_ident;
use crate::plan::{Plan, ReverseTable};
use crate::source::preflight::{Finding, Severity};

/// One column of a legacy table, as the source's catalog has it.
#[derive(Debug, Clone)]
pub struct LegacyColumn {
    pub name: String,
    /// `format_type` without the type modifier: `numeric`, `character varying`.
    pub sql_type: String,
    /// NOT NULL with no default, identity or generation: a row needs a value for it.
    pub required: bool,
    /// A generated column, which nothing writes.
    pub generated: bool,
}

/// The legacy tables' columns, by table as displayed (`public.vortex_items`).
pub type LegacyColumns = HashMap<String, Vec<LegacyColumn>>;

/// The columns of every legacy table a reverse rule writes (none without `[reverse]`). A table
/// that does not exist has no entry; the source checks report it.
pub async fn legacy_columns(
    source: &impl GenericClient,
    plan: &Plan,
) -> Result<LegacyColumns, tokio_postgres::Error> {
    let mut out = LegacyColumns::new();
    let Some(reverse) = &plan.reverse else {
        return Ok(out);
    };
    for rule in &reverse.tables {
        let table = rule.table.to_string();
        if out.contains_key(&table) {
            continue;
        }
        let rows = source
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, NULL),
                        a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = '',
                        a.attgenerated <> ''
                   FROM pg_attribute a
                  WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
                  ORDER BY a.attnum",
                &[&rule.table.quoted()],
            )
            .await?;
        if rows.is_empty() {
            continue;
        }
        let columns = rows
            .iter()
            .map(|r| LegacyColumn {
                name: r.get(0),
                sql_type: r.get(1),
                required: r.get(2),
                generated: r.get(3),
            })
            .collect();
        out.insert(table, columns);
    }
    Ok(out)
}

/// Every rule's `sequence` must be a sequence on the source (resolved as the legacy
/// application resolves it, on the source's search_path).
pub async fn sequences(
    source: &impl GenericClient,
    plan: &Plan,
) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let mut found = Vec::new();
    let Some(reverse) = &plan.reverse else {
        return Ok(found);
    };
    for rule in &reverse.tables {
        let Some(sequence) = &rule.sequence else {
            continue;
        };
        let is_sequence: bool = source
            .query_one(
                "SELECT coalesce((SELECT relkind = 'S' FROM pg_class WHERE oid = to_regclass($1)), false)",
                &[sequence],
            )
            .await?
            .get(0);
        if !is_sequence {
            found.push(Finding::error(
                format!("plan.{}.sequence", rule.field),
                format!("{sequence} is not a sequence on the source"),
                format!(
                    "name the sequence {}'s key is drawn from (pg_get_serial_sequence('{}', '<key column>') shows it)",
                    rule.table,
                    rule.table.quoted().replace('\'', "''")
                ),
            ));
        }
    }
    Ok(found)
}

/// Rules may call `switchyard.legacy_key` (the keys the reverse stream allocates), which the
/// tool's schema has only once a backfill made it: made here when missing, in the caller's
/// transaction, which is rolled back. Without the privilege to create it, rules calling it are
/// reported as PostgreSQL refuses them.
async fn tool_functions(target: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    let present: bool = target
        .query_one(
            "SELECT to_regprocedure('switchyard.legacy_key(text,text)') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if present {
        return Ok(());
    }
    // As `checkpoint::ensure_schema`: CREATE SCHEMA only when it is missing, since even
    // IF NOT EXISTS needs the database's CREATE privilege, which a role using a schema a DBA
    // made for it may lack.
    let schema_missing: bool = target
        .query_one("SELECT to_regnamespace('switchyard') IS NULL", &[])
        .await?
        .get(0);
    target.batch_execute("SAVEPOINT switchyard_tool").await?;
    let sql = format!(
        "{}{}",
        if schema_missing {
            "CREATE SCHEMA switchyard;"
        } else {
            ""
        },
        crate::checkpoint::reverse::KEYS_SQL
    );
    if target.batch_execute(&sql).await.is_err() {
        target
            .batch_execute("ROLLBACK TO SAVEPOINT switchyard_tool")
            .await?;
    }
    target
        .batch_execute("RELEASE SAVEPOINT switchyard_tool")
        .await
}

/// Findings for every reverse rule of `plan`, on `target` (a transaction the caller rolls back).
pub async fn check(
    target: &impl GenericClient,
    plan: &Plan,
    legacy: &LegacyColumns,
) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let mut found = Vec::new();
    let Some(reverse) = &plan.reverse else {
        return Ok(found);
    };
    tool_functions(target).await?;
    for rule in &reverse.tables {
        if let Some(columns) = legacy.get(&rule.table.to_string()) {
            found.extend(against_legacy(rule, columns));
        }
        if let Some(when) = &rule.when {
            let sql = format!(
                "SELECT 1 FROM {} AS {} WHERE ({when}\n) AND false",
                rule.from.quoted(),
                quote_ident(&rule.from.name)
            );
            if let Err(problem) = prepare(target, &sql).await? {
                found.push(refused(rule, "when", problem));
            }
        }
        for (column, expr) in rule.all_columns() {
            let field = field_of(rule, column);
            let sql = format!(
                "SELECT ({expr}\n) FROM {} AS {} WHERE false",
                rule.from.quoted(),
                quote_ident(&rule.from.name)
            );
            let returned = match prepare(target, &sql).await? {
                Ok(types) => types.first().copied().unwrap_or_default(),
                Err(problem) => {
                    found.push(refused(rule, &field, problem));
                    continue;
                }
            };
            let Some(legacy_type) = legacy
                .get(&rule.table.to_string())
                .and_then(|cs| cs.iter().find(|c| &c.name == column))
                .map(|c| &c.sql_type)
            else {
                continue;
            };
            let returned_type: String = target
                .query_one("SELECT format_type($1::oid, NULL)", &[&returned])
                .await?
                .get(0);
            if &returned_type != legacy_type {
                found.push(Finding::warning(
                    format!("plan.{}.{field}", rule.field),
                    format!(
                        "returns {returned_type} where legacy column {}.{column} is {legacy_type}: the value would be converted through its text form, unchecked until the first row",
                        rule.table
                    ),
                    format!("cast the expression (`({expr})::{legacy_type}`) so that check verifies the conversion"),
                ));
            }
        }
        // The whole rule only once its parts prepare: its error would repeat theirs.
        if !found.iter().any(|f| {
            f.severity == Severity::Error && f.subject.starts_with(&format!("plan.{}.", rule.field))
        }) {
            found.extend(whole_rule(target, rule).await?);
        }
    }
    Ok(found)
}

/// The rule's generated `SELECT` as a reverse stream runs it: it must prepare, give one column
/// per legacy column, and one row per row of its output table (no aggregate, window or
/// set-returning function outside a subquery: each expression alone cannot show that).
async fn whole_rule(
    target: &impl GenericClient,
    rule: &ReverseTable,
) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let subject = format!("plan.{}", rule.field);
    let fix = format!(
        "make each expression one value per row of {}; read other rows through a scalar subquery",
        rule.from
    );
    let select = rule.select("false");
    let columns = match prepare(target, &select).await? {
        Ok(columns) => columns,
        Err(problem) => {
            return Ok(vec![Finding::error(
                subject,
                format!(
                    "PostgreSQL refuses the rule's SELECT over {}: {problem}",
                    rule.from
                ),
                fix,
            )])
        }
    };
    let written = rule.all_columns().count();
    if columns.len() != written {
        return Ok(vec![Finding::error(
            subject,
            format!(
                "the rule's SELECT gives {} columns for its {written} legacy columns: an expression holds a top-level comma",
                columns.len()
            ),
            fix,
        )]);
    }
    // Through the simple protocol, which returns the `json` column as text. EXPLAIN needs the
    // privileges the SELECT does; without them this part is skipped (the privilege checks
    // name the missing grant).
    target.batch_execute("SAVEPOINT switchyard_reverse").await?;
    let messages = match target
        .simple_query(&format!("EXPLAIN (FORMAT JSON) {select}"))
        .await
    {
        Ok(messages) => {
            target
                .batch_execute("RELEASE SAVEPOINT switchyard_reverse")
                .await?;
            messages
        }
        Err(e) if e.as_db_error().is_some() => {
            target
                .batch_execute("ROLLBACK TO SAVEPOINT switchyard_reverse")
                .await?;
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let text = messages
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default();
    let plan: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let mut node = &plan[0]["Plan"];
    while !node.is_null() {
        let kind = node["Node Type"].as_str().unwrap_or_default();
        if matches!(kind, "Aggregate" | "WindowAgg" | "ProjectSet" | "Group") {
            return Ok(vec![Finding::error(
                subject,
                format!(
                    "the rule's SELECT does not give one row per row of {} (its plan has a {kind} node): an aggregate, window or set-returning function is used outside a subquery",
                    rule.from
                ),
                fix,
            )]);
        }
        // The chain under the top node, not the subqueries (SubPlan, InitPlan).
        node = node["Plans"]
            .as_array()
            .and_then(|children| {
                children
                    .iter()
                    .find(|c| c["Parent Relationship"].as_str() == Some("Outer"))
            })
            .unwrap_or(&serde_json::Value::Null);
    }
    Ok(Vec::new())
}

/// What the plan alone cannot see: columns the legacy table lacks or cannot take, and
/// required ones the rule leaves out.
fn against_legacy(rule: &ReverseTable, columns: &[LegacyColumn]) -> Vec<Finding> {
    let mut found = Vec::new();
    let subject = format!("plan.{}", rule.field);
    for (column, _) in rule.all_columns() {
        let at = format!("{subject}.{}", field_of(rule, column));
        match columns.iter().find(|c| &c.name == column) {
            None => found.push(Finding::error(
                at,
                format!("legacy table {} has no column {column}", rule.table),
                "name a column of the legacy table, or remove the line",
            )),
            Some(c) if c.generated => found.push(Finding::error(
                at,
                format!(
                    "{}.{column} is a generated column, which cannot be written",
                    rule.table
                ),
                "remove the line: PostgreSQL computes it",
            )),
            Some(_) => {}
        }
    }
    for c in columns.iter().filter(|c| c.required) {
        if !rule.all_columns().any(|(name, _)| name == &c.name) {
            found.push(Finding::error(
                format!("{subject}.columns"),
                format!(
                    "legacy column {}.{} is NOT NULL without a default, and the rule gives it no expression: a row the new tables hold could not be written back",
                    rule.table, c.name
                ),
                format!("add `{} = \"<SQL over {}>\"` to the rule's columns", c.name, rule.from.name),
            ));
        }
    }
    found
}

/// Prepares `sql` in a savepoint: the types of its columns, or PostgreSQL's message.
async fn prepare(
    target: &impl GenericClient,
    sql: &str,
) -> Result<Result<Vec<u32>, String>, tokio_postgres::Error> {
    target.batch_execute("SAVEPOINT switchyard_reverse").await?;
    match target.prepare(sql).await {
        Ok(statement) => {
            target
                .batch_execute("RELEASE SAVEPOINT switchyard_reverse")
                .await?;
            Ok(Ok(statement
                .columns()
                .iter()
                .map(|c| c.type_().oid())
                .collect()))
        }
        Err(e) => {
            let Some(db) = e.as_db_error() else {
                return Err(e);
            };
            let message = db.message().to_owned();
            target
                .batch_execute("ROLLBACK TO SAVEPOINT switchyard_reverse")
                .await?;
            Ok(Err(message))
        }
    }
}

/// `key.<column>` or `columns.<column>`: where the rule gives the column.
fn field_of(rule: &ReverseTable, column: &str) -> String {
    if rule.key.iter().any(|(k, _)| k == column) {
        format!("key.{column}")
    } else {
        format!("columns.{column}")
    }
}

fn refused(rule: &ReverseTable, field: &str, problem: String) -> Finding {
    Finding::error(
        format!("plan.{}.{field}", rule.field),
        format!(
            "PostgreSQL refuses the expression over {}: {problem}",
            rule.from
        ),
        format!(
            "write it as SQL over one row of {} (other tables through scalar subqueries)",
            rule.from
        ),
    )
}
