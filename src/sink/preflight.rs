//! What can be known about the target before work starts. The before-backfill SQL runs in a
//! transaction that is rolled back, so the checks see the tables it would create and leave
//! nothing behind.

use std::collections::HashMap;

use tokio_postgres::{Client, GenericClient, Transaction};

use super::copy_format::{self, CopyFormats};
use super::{filled_columns, triggers};
use crate::error::Chain;
use crate::pg::ident::quote_ident;
use crate::plan::Plan;
use crate::source::catalog::{self, has_unique_key};
use crate::source::preflight::Finding;
use crate::transform::cast::CastType;
use crate::transform::expr::{ArithOp, Expr, Function};
use crate::transform::program::{OutputPlan, SourcePlan, WriteMode};
use crate::transform::value::Value;

/// The families of types an expression can produce, for "does it fit the column" checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Text,
    Integer,
    Numeric,
    Bool,
    Date,
    Timestamp,
    Uuid,
    Json,
}

/// What the target check found, and the COPY format chosen for each output.
#[derive(Debug)]
pub struct TargetChecked {
    pub findings: Vec<Finding>,
    pub formats: CopyFormats,
}

/// Checks the target; `source_types` maps each source table to its column types. `beside`
/// runs the checks of layers above this one (the cutover's sequences) in the same
/// transaction, on the target as the plan's before-backfill SQL leaves it.
pub async fn check(
    client: &mut Client,
    plan: &Plan,
    source_types: &HashMap<String, HashMap<String, String>>,
    beside: impl AsyncFnOnce(&Transaction<'_>) -> Result<Vec<Finding>, tokio_postgres::Error>,
) -> Result<TargetChecked, tokio_postgres::Error> {
    let mut found = Vec::new();
    let tx = client.transaction().await?;
    for file in &plan.phases.before_backfill {
        if let Err(e) = tx.batch_execute(&file.sql).await {
            found.push(phase_failed(file, "before-backfill", &e));
            return Ok(TargetChecked {
                findings: found,
                formats: CopyFormats::text(plan.outputs().count()),
            });
        }
    }
    let formats = copy_format::choose(&tx, plan.outputs().map(|(_, o)| o)).await?;
    let checked = |findings| TargetChecked { findings, formats };
    super::privileges::check(&tx, plan, &mut found).await?;
    found.extend(beside(&tx).await?);
    for lookup in &plan.lookups {
        let columns = catalog::columns(&tx, &lookup.table).await?;
        for col in [&lookup.id_column, &lookup.value_column] {
            if !columns.contains_key(col) {
                found.push(Finding::error(
                    format!("target.{}", lookup.table),
                    format!("lookup table has no column {col}"),
                    "create it in the before-backfill SQL, or set id/value in [lookups]",
                ));
            }
        }
    }
    for source in &plan.sources {
        let types = source_types.get(&source.table.to_string());
        for output in &source.outputs {
            output_table(&tx, plan, source, output, types, &mut found).await?;
        }
    }
    // What the target fills itself, and its triggers and rules: the same on both paths.
    let copied_with = triggers::read(&tx, plan).await?;
    for output in plan.sources.iter().flat_map(|s| &s.outputs) {
        let filled = triggers::fills_inserts(&copied_with, &output.table);
        filled_columns::check(&tx, output, filled, &mut found).await?;
    }
    // Insert-if-absent outputs need their unique key during the copy; upserts only once the
    // after-backfill SQL ran (the follow's upserts come after it).
    keys(&tx, plan, WriteMode::InsertIfAbsent, &mut found).await?;
    // On a target that already holds rows (a resumed backfill) the after-backfill SQL would
    // build every index inside this check; it was checked before the first run.
    if holds_rows(&tx, plan).await? {
        triggers::report(&copied_with, None, &mut found);
        tx.rollback().await?;
        return Ok(checked(found));
    }
    for file in plan.phases.after_backfill_files() {
        if let Err(e) = tx.batch_execute(&file.sql).await {
            found.push(phase_failed(file, "after-backfill", &e));
            triggers::report(&copied_with, None, &mut found);
            tx.rollback().await?;
            return Ok(checked(found));
        }
    }
    keys(&tx, plan, WriteMode::Upsert, &mut found).await?;
    // The follow meets the triggers as they are after the after-backfill SQL.
    let followed_with = triggers::read(&tx, plan).await?;
    triggers::report(&followed_with, Some(&copied_with), &mut found);
    tx.rollback().await?;
    Ok(checked(found))
}

/// Whether any upsert output table already has a row.
async fn holds_rows(tx: &impl GenericClient, plan: &Plan) -> Result<bool, tokio_postgres::Error> {
    for output in plan
        .sources
        .iter()
        .flat_map(|s| &s.outputs)
        .filter(|o| o.mode == WriteMode::Upsert)
    {
        let readable = tx
            .query_one(
                "SELECT coalesce(has_table_privilege(to_regclass($1), 'SELECT'), false)",
                &[&output.table.quoted()],
            )
            .await?
            .get::<_, bool>(0);
        if !readable {
            continue; // already reported as a missing table or privilege
        }
        let row = tx
            .query_one(
                &format!("SELECT EXISTS (SELECT FROM {})", output.table.quoted()),
                &[],
            )
            .await?;
        if row.get::<_, bool>(0) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A phase's SQL failed inside the check's transaction: a missing privilege is named as such.
fn phase_failed(file: &crate::plan::SqlFile, phase: &str, e: &tokio_postgres::Error) -> Finding {
    let subject = format!("target: {}", file.path.display());
    match e.as_db_error() {
        Some(db) if db.code() == &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE => Finding::error(
            subject,
            format!("the {phase} SQL needs a privilege the target role lacks: {}", db.message()),
            "GRANT it, e.g. GRANT CREATE ON SCHEMA public TO <switchyard role>; or run the SQL once as the schema owner",
        ),
        Some(db) => Finding::error(subject, format!("the {phase} SQL fails: {}", db.message()), "fix the SQL file"),
        None => Finding::error(subject, format!("the {phase} SQL fails: {}", Chain::new(e)), "fix the SQL file"),
    }
}

async fn keys(
    tx: &impl GenericClient,
    plan: &Plan,
    mode: WriteMode,
    found: &mut Vec<Finding>,
) -> Result<(), tokio_postgres::Error> {
    for output in plan
        .sources
        .iter()
        .flat_map(|s| &s.outputs)
        .filter(|o| o.mode == mode)
    {
        if has_unique_key(tx, &output.table, &output.key).await? {
            continue;
        }
        let key: Vec<String> = output.key.iter().map(|k| quote_ident(k)).collect();
        let (when, phase) = match mode {
            WriteMode::InsertIfAbsent => ("during the copy", "before-backfill"),
            WriteMode::Upsert => ("after the backfill", "before- or after-backfill"),
        };
        found.push(Finding::error(
            format!("target.{}", output.table),
            format!(
                "no unique index on the output key {:?} {when}: writes by key need one",
                output.key
            ),
            format!(
                "add `ALTER TABLE {} ADD PRIMARY KEY ({});` to the {phase} SQL",
                output.table.quoted(),
                key.join(", ")
            ),
        ));
    }
    Ok(())
}

async fn output_table(
    tx: &impl GenericClient,
    plan: &Plan,
    source: &SourcePlan,
    output: &OutputPlan,
    source_types: Option<&HashMap<String, String>>,
    found: &mut Vec<Finding>,
) -> Result<(), tokio_postgres::Error> {
    let subject = format!("target.{}", output.table);
    if output.mode == WriteMode::Upsert && !source.key_from_source_key(output) {
        found.push(Finding::error(
            &subject,
            format!("the output key {:?} is computed from columns outside the source key {:?}: a delete or a move in the stream could not find the row", output.key, source.key),
            "compute the output key from the source key columns only (e.g. uuid_v5 of the legacy id)",
        ));
    }
    let columns = catalog::columns(tx, &output.table).await?;
    if columns.is_empty() {
        found.push(Finding::error(
            &subject,
            "table does not exist (even after the before-backfill SQL)",
            "create it in the before-backfill SQL",
        ));
        return Ok(());
    }
    for (name, expr) in output.columns.iter().zip(&output.exprs) {
        let Some(target_type) = columns.get(name) else {
            found.push(Finding::error(
                &subject,
                format!("no column {name}"),
                "fix the column name in the plan, or add it in the before-backfill SQL",
            ));
            continue;
        };
        let produced = infer(expr, source, source_types, plan);
        let wanted = family_of_type(target_type);
        match (produced, wanted) {
            (Some(p), Some(w)) if !fits(p, w) => found.push(Finding::error(
                format!("{subject}.{name}"),
                format!("the expression produces {p:?}, the column is {target_type}"),
                format!("cast the expression, e.g. (...)::{target_type}"),
            )),
            _ => {}
        }
    }
    Ok(())
}

fn fits(produced: Family, wanted: Family) -> bool {
    use Family::*;
    produced == wanted
        || wanted == Text
        || produced == Text
        || matches!(
            (produced, wanted),
            (Integer, Numeric) | (Numeric, Integer) | (Date, Timestamp)
        )
}

fn family_of_type(pg: &str) -> Option<Family> {
    let base = pg.split('(').next().unwrap_or(pg).trim();
    Some(match base {
        "text" | "character varying" | "character" | "name" | "citext" => Family::Text,
        "smallint" | "integer" | "bigint" => Family::Integer,
        "numeric" | "real" | "double precision" => Family::Numeric,
        "boolean" => Family::Bool,
        "date" => Family::Date,
        "timestamp without time zone" | "timestamp with time zone" => Family::Timestamp,
        "uuid" => Family::Uuid,
        "json" | "jsonb" => Family::Json,
        _ => return None,
    })
}

fn family_of_cast(c: &CastType) -> Family {
    match c {
        CastType::Bool => Family::Bool,
        CastType::Int2 | CastType::Int4 | CastType::Int8 => Family::Integer,
        CastType::Numeric { .. } => Family::Numeric,
        CastType::Text => Family::Text,
        CastType::Date => Family::Date,
        CastType::Timestamp | CastType::TimestampTz => Family::Timestamp,
        CastType::Uuid => Family::Uuid,
        CastType::Json | CastType::Jsonb => Family::Json,
    }
}

/// The family an expression produces, when it can be told without running it.
fn infer(
    e: &Expr,
    source: &SourcePlan,
    types: Option<&HashMap<String, String>>,
    plan: &Plan,
) -> Option<Family> {
    match e {
        Expr::Literal(v) => match v {
            Value::Null => None,
            Value::Int(_) => Some(Family::Integer),
            Value::Numeric(_) => Some(Family::Numeric),
            Value::Bool(_) => Some(Family::Bool),
            _ => Some(Family::Text),
        },
        Expr::Column(i) => types
            .and_then(|t| t.get(&source.columns[*i]))
            .and_then(|t| family_of_type(t)),
        Expr::Derived(i) => infer(&source.derived[*i].1, source, types, plan),
        Expr::Cast(_, c) => Some(family_of_cast(c)),
        Expr::Not(_)
        | Expr::And(..)
        | Expr::Or(..)
        | Expr::Compare(..)
        | Expr::IsNull { .. }
        | Expr::IsDistinct { .. }
        | Expr::InList { .. } => Some(Family::Bool),
        Expr::Arith(op, a, b) => {
            let (a, b) = (infer(a, source, types, plan), infer(b, source, types, plan));
            Some(
                if *op != ArithOp::Div && a == Some(Family::Integer) && b == Some(Family::Integer) {
                    Family::Integer
                } else {
                    Family::Numeric
                },
            )
        }
        Expr::Negate(a) => infer(a, source, types, plan),
        Expr::Concat(..) | Expr::RegexpReplace { .. } => Some(Family::Text),
        Expr::Call(Function::Length, _) => Some(Family::Integer),
        Expr::Call(
            Function::Coalesce | Function::Nullif | Function::Greatest | Function::Least,
            args,
        ) => args.iter().find_map(|a| infer(a, source, types, plan)),
        Expr::Call(..) => Some(Family::Text),
        Expr::Case {
            branches,
            otherwise,
            ..
        } => branches
            .iter()
            .map(|(_, t)| t)
            .chain(otherwise.as_deref())
            .find_map(|t| infer(t, source, types, plan)),
        Expr::UuidV5 { .. } => Some(Family::Uuid),
        Expr::Lookup { .. } => Some(Family::Integer),
        Expr::Map { map, .. } => {
            let m = &plan.maps[*map];
            m.entries
                .values()
                .chain(std::iter::once(&m.default))
                .find_map(|v| infer(&Expr::Literal(v.clone()), source, types, plan))
        }
    }
}

/// Column types of every source table, keyed by `schema.table`.
pub async fn source_column_types(
    client: &Client,
    plan: &Plan,
) -> Result<HashMap<String, HashMap<String, String>>, tokio_postgres::Error> {
    let mut out = HashMap::new();
    for s in &plan.sources {
        out.insert(
            s.table.to_string(),
            catalog::columns(client, &s.table).await?,
        );
    }
    Ok(out)
}
