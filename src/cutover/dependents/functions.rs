//! Functions and procedures bound to a legacy table: `sql` and `plpgsql` bodies
//! (`pg_proc.prosrc`) that name it (see [`super::body`]), and `BEGIN ATOMIC` bodies
//! (`pg_proc.prosqlbody`), which PostgreSQL parses at creation and ties to the table in
//! `pg_depend`. Extension members (`pg_depend.deptype = 'e'`) and switchyard's own schema are
//! left out. Catalogs: <https://www.postgresql.org/docs/15/catalog-pg-proc.html>.
//!
//! After the swap a body that names the legacy table by its old name reaches whatever took the
//! name: reading it is fine (the compatibility view), writing it is not when that refuses
//! writes (`pg_relation_is_updatable`, INSTEAD OF triggers and rules counted).

use tokio_postgres::GenericClient;

use crate::pg::ident::TableName;

use super::body::{access, Access};
use super::parts::{dependent, frozen, rel, When};
use super::{Dependent, Kind, Layout, Legacy};

/// A legacy table's names: before the swap, and now (the same before the swap).
struct Names<'a> {
    legacy: &'a Legacy,
    current: TableName,
    /// After the swap: whether what now takes the name from before the swap refuses writes
    /// (`pg_relation_is_updatable`, INSTEAD OF triggers and rules included), when something
    /// other than the legacy table takes it.
    renamed_read_only: Option<bool>,
}

async fn names<'a>(
    client: &impl GenericClient,
    legacy: &'a [Legacy],
) -> Result<Vec<Names<'a>>, tokio_postgres::Error> {
    let mut out = Vec::new();
    for l in legacy {
        let r = client
            .query_one(
                "SELECT n.nspname::text, c.relname::text, to_regclass($2)::oid,
                        pg_relation_is_updatable(to_regclass($2), true) & 28 <> 28
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
                &[&l.oid, &l.table.quoted()],
            )
            .await?;
        let now: Option<u32> = r.get(2);
        out.push(Names {
            legacy: l,
            current: TableName {
                schema: r.get(0),
                name: r.get(1),
            },
            renamed_read_only: match now {
                Some(oid) if oid != l.oid => r.get(3),
                _ => None,
            },
        });
    }
    Ok(out)
}

pub(super) async fn functions(
    client: &impl GenericClient,
    legacy: &[Legacy],
    layout: Layout,
    when: When,
    out: &mut Vec<Dependent>,
) -> Result<(), tokio_postgres::Error> {
    let names = names(client, legacy).await?;
    let oids: Vec<u32> = legacy.iter().map(|l| l.oid).collect();
    // A cheap superset for the server to filter on (`_` matches any character); the body
    // scan decides.
    let patterns: Vec<String> = names
        .iter()
        .flat_map(|n| [&n.legacy.table.name, &n.current.name])
        .map(|n| format!("%{}%", n.to_lowercase()))
        .collect();
    let sql = format!(
        "SELECT p.oid, format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
                p.prokind::text,
                CASE WHEN p.prosqlbody IS NOT NULL THEN pg_get_functiondef(p.oid) ELSE p.prosrc END,
                ARRAY(SELECT DISTINCT d.refobjid FROM pg_depend d
                       WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                         AND d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY($1)),
                (SELECT string_agg(format('%I on %s', t.tgname, {}), ', ' ORDER BY t.tgname)
                   FROM pg_trigger t WHERE t.tgfoid = p.oid AND NOT t.tgisinternal)
           FROM pg_proc p
           JOIN pg_namespace n ON n.oid = p.pronamespace
           JOIN pg_language l ON l.oid = p.prolang
          WHERE l.lanname IN ('sql', 'plpgsql')
            AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'switchyard')
            AND n.nspname !~ '^pg_(toast|temp)'
            AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass
                               AND e.objid = p.oid AND e.deptype = 'e')
            AND (lower(p.prosrc) LIKE ANY($2)
                 OR EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                               AND d.objid = p.oid AND d.refclassid = 'pg_class'::regclass
                               AND d.refobjid = ANY($1)))
          ORDER BY 2",
        rel("t.tgrelid")
    );
    for r in client.query(&sql, &[&oids, &patterns]).await? {
        let (signature, prokind, body): (String, String, String) = (r.get(1), r.get(2), r.get(3));
        let bound_by_oid: Vec<u32> = r.get(4);
        let triggers: Option<String> = r.get(5);
        let what = if prokind == "p" {
            "procedure"
        } else {
            "function"
        };
        let object = match &triggers {
            Some(t) => format!("trigger {what} {signature} (fired by {t})"),
            None => format!("{what} {signature}"),
        };
        for n in &names {
            let by_oid = bound_by_oid.contains(&n.legacy.oid);
            let now = access(&body, &n.current.schema, &n.current.name);
            let before = if n.current == n.legacy.table {
                None
            } else {
                access(&body, &n.legacy.table.schema, &n.legacy.table.name)
            };
            let found = match when {
                When::BeforeSwap => (by_oid || now.is_some()).then(|| now.unwrap_or(Access::Reads)),
                // Still bound: to the legacy table itself (by OID, or by its current name), or
                // writing a name that now belongs to something that takes no writes.
                When::AfterSwap if by_oid || now.is_some() => Some(now.unwrap_or(Access::Reads)),
                When::AfterSwap
                    if before == Some(Access::Writes) && n.renamed_read_only == Some(true) =>
                {
                    Some(Access::Writes)
                }
                When::AfterSwap => None,
            };
            let Some(a) = found else { continue };
            let legacy = n.legacy.table.to_string();
            let mut d = dependent(Kind::Function, r.get(0), object.clone(), legacy.clone());
            d.access = Some(a);
            d.swap = match (by_oid, a, layout) {
                (true, Access::Writes, _) => format!("its body (BEGIN ATOMIC) is bound to {legacy} by OID and writes it: after the swap it writes {}, where nobody reads the rows any more", frozen(layout)),
                (true, Access::Reads, _) => format!("its body (BEGIN ATOMIC) is bound to {legacy} by OID: after the swap it reads {}", frozen(layout)),
                (false, Access::Writes, Layout::SameDatabase) => format!("it writes {legacy} by name (INSERT/UPDATE/DELETE/MERGE): after the swap that name is the compatibility view, which is read-only, so it will fail (\"cannot insert into view\")"),
                (false, Access::Writes, Layout::TwoServers) => format!("it writes {legacy} by name: after the cutover the table is read-only, so it will fail"),
                (false, Access::Reads, Layout::SameDatabase) => format!("it reads {legacy} by name: after the swap it reads whatever takes that name (the plan's compatibility view), not the table"),
                (false, Access::Reads, Layout::TwoServers) => format!("it reads {legacy} by name: after the cutover it reads the frozen table, none of the writes made on the new tables"),
            };
            d.fix = format!(
                "rewrite it for the new tables in the plan's cutover SQL (`CREATE OR REPLACE {} {signature} ...`) and set `[cutover.dependents] functions = \"cutover_sql\"` (the cutover proves none still writes a read-only name or reads the legacy table); or `functions = \"warn\"` once you know what it reads after the swap is what it needs",
                what.to_uppercase()
            );
            out.push(d);
        }
    }
    Ok(())
}
