//! The catalog reads, one per kind, each returning the objects bound to a legacy table with
//! what the swap does to them and the fix. Catalogs per
//! <https://www.postgresql.org/docs/15/catalogs.html>:
//! - foreign keys: `pg_constraint` (`contype = 'f'`, `confrelid` the referenced table);
//! - views, materialized views and rules: `pg_depend` rows of `pg_rewrite` rules on the table
//!   (a view's query is its `_RETURN` rule, `pg_rewrite.ev_class` the view);
//! - functions: see [`super::functions`];
//! - triggers: `pg_trigger` (`tgisinternal` excludes the foreign keys' own);
//! - publications: see [`super::publications`].

use std::collections::HashMap;

use tokio_postgres::GenericClient;

use crate::cutover::read_only;
use crate::pg::ident::{quote_ident, TableName};
use crate::plan::Plan;

use super::parts::{dependent, frozen, rel, When};
use super::{functions, publications};
use super::{Dependent, Kind, Layout, Legacy};

/// Everything bound to `legacy`, dispositions not yet set (see `super::decide`).
pub(super) async fn all(
    client: &impl GenericClient,
    plan: &Plan,
    legacy: &[Legacy],
    layout: Layout,
    when: When,
) -> Result<Vec<Dependent>, tokio_postgres::Error> {
    if legacy.is_empty() {
        return Ok(Vec::new());
    }
    let oids: Vec<u32> = legacy.iter().map(|l| l.oid).collect();
    let by_oid: HashMap<u32, &Legacy> = legacy.iter().map(|l| (l.oid, l)).collect();
    let name = |oid: u32| {
        by_oid.get(&oid).map_or_else(
            || TableName {
                schema: String::new(),
                name: oid.to_string(),
            },
            |l| l.table.clone(),
        )
    };
    let mut out = Vec::new();
    foreign_keys(client, &oids, layout, &name, &mut out).await?;
    views(client, &oids, layout, when, &name, &mut out).await?;
    functions::functions(client, legacy, layout, when, &mut out).await?;
    triggers(client, &oids, layout, &name, &mut out).await?;
    rules(client, &oids, &name, &mut out).await?;
    publications::publications(client, plan, &oids, &name, &mut out).await?;
    Ok(out)
}

async fn foreign_keys(
    client: &impl GenericClient,
    oids: &[u32],
    layout: Layout,
    name: &dyn Fn(u32) -> TableName,
    out: &mut Vec<Dependent>,
) -> Result<(), tokio_postgres::Error> {
    let sql = format!(
        "SELECT con.oid, con.conname::text, {}, con.confrelid, pg_get_constraintdef(con.oid)
           FROM pg_constraint con
          WHERE con.contype = 'f' AND con.confrelid = ANY($1) AND NOT con.conrelid = ANY($1)
            AND con.conparentid = 0
          ORDER BY 3, 2",
        rel("con.conrelid")
    );
    for r in client.query(&sql, &[&oids]).await? {
        let (conname, table, def): (String, String, String) = (r.get(1), r.get(2), r.get(4));
        let table_name = name(r.get(3));
        let legacy = table_name.to_string();
        let mut d = dependent(
            Kind::ForeignKey,
            r.get(0),
            format!("foreign key {} on {table} ({def})", quote_ident(&conname)),
            legacy.clone(),
        );
        d.swap = format!(
            "it references {legacy} by OID, so after the swap it references {}: a row of {table} that refers to a row written after the cutover is refused, and deleting such a row no longer cascades to (or is checked against) {table}",
            frozen(layout)
        );
        d.fix = format!(
            "in the plan's cutover SQL drop it (`ALTER TABLE {table} DROP CONSTRAINT {};`) or re-create it against the new table holding those rows, and set `[cutover.dependents] foreign_keys = \"cutover_sql\"`; or `foreign_keys = \"warn\"` to leave it on the legacy table",
            quote_ident(&conname)
        );
        out.push(d);
    }
    Ok(())
}

async fn views(
    client: &impl GenericClient,
    oids: &[u32],
    layout: Layout,
    when: When,
    name: &dyn Fn(u32) -> TableName,
    out: &mut Vec<Dependent>,
) -> Result<(), tokio_postgres::Error> {
    // A view's query is its `_RETURN` rule; `pg_depend` ties the rule to every relation it
    // reads. Views over views are followed through the views (never through a table's rule).
    let sql = format!(
        "WITH RECURSIVE over(view, legacy, through, depth) AS (
             SELECT r.ev_class, d.refobjid, 0::oid, 1
               FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
              WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                AND d.refobjid = ANY($1) AND r.ev_class <> d.refobjid AND r.rulename = '_RETURN'
             UNION
             SELECT r.ev_class, o.legacy, o.view, o.depth + 1
               FROM over o
               JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = o.view
                               AND d.classid = 'pg_rewrite'::regclass
               JOIN pg_rewrite r ON r.oid = d.objid AND r.rulename = '_RETURN'
              WHERE r.ev_class <> o.view AND o.depth < 8
         )
         SELECT DISTINCT ON (o.view, o.legacy) o.view, c.relkind::text, {}, o.legacy,
                CASE WHEN o.through <> 0 THEN {} END,
                o.depth
           FROM over o JOIN pg_class c ON c.oid = o.view
          WHERE c.relkind IN ('v', 'm')
          ORDER BY o.view, o.legacy, o.depth",
        rel("o.view"),
        rel("o.through"),
    );
    let mut rows = client.query(&sql, &[&oids]).await?;
    rows.sort_by_key(|r| r.get::<_, String>(2));
    for r in rows {
        let (relkind, view, through): (String, String, Option<String>) =
            (r.get(1), r.get(2), r.get(4));
        let table_name = name(r.get(3));
        let legacy = table_name.to_string();
        let matview = relkind == "m";
        let (kind, what) = if matview {
            (Kind::MaterializedView, "materialized view")
        } else {
            (Kind::View, "view")
        };
        let via = through
            .as_deref()
            .map_or(String::new(), |t| format!(" (through {t})"));
        let mut d = dependent(
            kind,
            r.get(0),
            format!("{what} {view}{via}"),
            legacy.clone(),
        );
        // What `carry` runs after the swap: the definition from before it.
        let depth: i32 = r.get(5);
        if when == When::BeforeSwap && depth == 1 && !matview {
            d.definition = client
                .query_opt(super::carry::VIEW_SQL, &[&d.oid])
                .await?
                .map(|r| r.get(1));
        }
        d.swap = if matview {
            format!(
                "it reads {legacy} by OID: after the swap a REFRESH reads {}, so its rows stay as they were at the cutover",
                frozen(layout)
            )
        } else {
            format!(
                "it reads {legacy} by OID: after the swap it keeps reading {}, so it shows none of the writes made after the cutover",
                frozen(layout)
            )
        };
        d.fix = if matview {
            format!("in the plan's cutover SQL drop it and re-create it over the new tables (`DROP MATERIALIZED VIEW {view}; CREATE MATERIALIZED VIEW {view} AS ...`) with `materialized_views = \"cutover_sql\"`; or `materialized_views = \"warn\"` to leave it")
        } else {
            match layout {
                Layout::SameDatabase => format!("set `[cutover.dependents] views = \"carry\"` (switchyard re-creates it after the swap SQL, so it reads what takes the legacy name; `rollback` restores it), or re-create it in the plan's cutover SQL (`CREATE OR REPLACE VIEW {view} AS ...`) with `views = \"cutover_sql\"`, or `views = \"warn\"`"),
                Layout::TwoServers => format!("re-create it over the new tables on the target and drop it here (`DROP VIEW {view}`) in the plan's cutover SQL with `views = \"cutover_sql\"`, or `views = \"warn\"`"),
            }
        };
        out.push(d);
    }
    Ok(())
}

async fn triggers(
    client: &impl GenericClient,
    oids: &[u32],
    layout: Layout,
    name: &dyn Fn(u32) -> TableName,
    out: &mut Vec<Dependent>,
) -> Result<(), tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT t.oid, t.tgname::text, t.tgrelid, t.tgfoid::regprocedure::text
               FROM pg_trigger t
              WHERE t.tgrelid = ANY($1) AND NOT t.tgisinternal AND t.tgname <> $2
              ORDER BY t.tgrelid, t.tgname",
            &[&oids, &read_only::TRIGGER],
        )
        .await?;
    for r in rows {
        let (trigger, function): (String, String) = (r.get(1), r.get(3));
        let table_name = name(r.get(2));
        let legacy = table_name.to_string();
        let mut d = dependent(
            Kind::Trigger,
            r.get(0),
            format!(
                "trigger {} on {legacy} (executes {function})",
                quote_ident(&trigger)
            ),
            legacy.clone(),
        );
        d.swap = match layout {
            Layout::SameDatabase => "it stays on the renamed legacy table: after the swap the application writes go to the new tables and it no longer fires".to_owned(),
            Layout::TwoServers => "after the cutover the application writes go to the new tables on the target and it no longer fires".to_owned(),
        };
        d.fix = format!(
            "in the plan's cutover SQL re-create it on the new tables and drop it here (`DROP TRIGGER {} ON {};`) with `triggers = \"cutover_sql\"`; or `triggers = \"warn\"` to leave it",
            quote_ident(&trigger),
            table_name.quoted(),
        );
        out.push(d);
    }
    Ok(())
}

async fn rules(
    client: &impl GenericClient,
    oids: &[u32],
    name: &dyn Fn(u32) -> TableName,
    out: &mut Vec<Dependent>,
) -> Result<(), tokio_postgres::Error> {
    let sql = format!(
        "SELECT DISTINCT r.oid, r.rulename::text, {}, d.refobjid, r.ev_class = d.refobjid
           FROM pg_rewrite r
           JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                           AND d.refclassid = 'pg_class'::regclass
          WHERE d.refobjid = ANY($1) AND r.rulename <> '_RETURN'
          ORDER BY 3, 2",
        rel("r.ev_class")
    );
    for r in client.query(&sql, &[&oids]).await? {
        let (rule, table, on_legacy): (String, String, bool) = (r.get(1), r.get(2), r.get(4));
        let table_name = name(r.get(3));
        let legacy = table_name.to_string();
        let mut d = dependent(
            Kind::Rule,
            r.get(0),
            format!("rule {} on {table}", quote_ident(&rule)),
            legacy.clone(),
        );
        d.swap = if on_legacy {
            "it rewrites statements on the legacy table and stays with it: after the swap it no longer applies to the application's statements".to_owned()
        } else {
            format!("its action uses {legacy} by OID: after the swap it acts on the frozen legacy table")
        };
        d.fix = format!(
            "in the plan's cutover SQL drop it (`DROP RULE {} ON {table};`) and re-create what it did on the new tables, with `rules = \"cutover_sql\"`; or `rules = \"warn\"`",
            quote_ident(&rule)
        );
        out.push(d);
    }
    Ok(())
}
