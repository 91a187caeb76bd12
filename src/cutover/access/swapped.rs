//! What the catalog shows, inside the swap's transaction, once the plan's cutover SQL ran:
//! what now takes each legacy name (by OID: the legacy table itself keeps its OID under its
//! new name), and the tables it feeds and the lookups they use. Read on the session that ran
//! the swap, so that uncommitted renames and views are seen.
//! `reloptions` (for `security_invoker`) and the view's rule dependencies come from
//! <https://www.postgresql.org/docs/15/catalog-pg-class.html> and
//! <https://www.postgresql.org/docs/15/catalog-pg-depend.html>.

use tokio_postgres::Client;

use crate::pg::ident::TableName;
use crate::plan::Plan;

use super::{fed_tables, LegacyAccess};

/// A relation as the catalog shows it after the cutover SQL (in its transaction).
const RELATION_SQL: &str = "
SELECT c.oid, c.oid::regclass::text, c.relkind::text, c.relrowsecurity, c.relforcerowsecurity,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)::int,
       coalesce((SELECT o.option_value FROM pg_options_to_table(c.reloptions) o
                  WHERE o.option_name = 'security_invoker'), 'false')::bool,
       array(SELECT a.attname::text FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       array(SELECT DISTINCT d.refobjid::regclass::text
               FROM pg_rewrite r
               JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                               AND d.refclassid = 'pg_class'::regclass
               JOIN pg_class x ON x.oid = d.refobjid AND x.relkind IN ('r', 'p', 'v', 'm', 'f')
              WHERE r.ev_class = c.oid AND d.refobjid <> c.oid),
       array(SELECT DISTINCT s.oid::regclass::text
               FROM pg_attrdef ad
               JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                               AND d.refclassid = 'pg_class'::regclass
               JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
              WHERE ad.adrelid = c.oid)
  FROM pg_class c WHERE c.oid = to_regclass($1)";

/// One relation after the swap.
#[derive(Debug, Clone)]
pub(super) struct Relation {
    pub oid: u32,
    /// `oid::regclass::text`: quoted where needed, ready for SQL text.
    pub name: String,
    pub relkind: String,
    pub row_security: bool,
    pub force_row_security: bool,
    pub policy_count: i32,
    pub security_invoker: bool,
    pub columns: Vec<String>,
    /// For a view: the relations its query reads.
    pub reads: Vec<String>,
    /// Sequences its column defaults draw from.
    pub sequences: Vec<String>,
}

impl Relation {
    async fn read(
        client: &Client,
        table: &TableName,
    ) -> Result<Option<Relation>, tokio_postgres::Error> {
        Ok(client
            .query_opt(RELATION_SQL, &[&table.quoted()])
            .await?
            .map(|r| Relation {
                oid: r.get(0),
                name: r.get(1),
                relkind: r.get(2),
                row_security: r.get(3),
                force_row_security: r.get(4),
                policy_count: r.get(5),
                security_invoker: r.get(6),
                columns: r.get(7),
                reads: r.get(8),
                sequences: r.get(9),
            }))
    }

    pub fn is_view(&self) -> bool {
        self.relkind == "v"
    }
}

/// What a legacy table's name and the tables it feeds are after the cutover SQL.
#[derive(Debug, Clone)]
pub(super) struct Swapped {
    /// What takes the legacy name, when that is no longer the legacy table itself.
    pub named: Option<Relation>,
    /// Nothing resolves the legacy name any more.
    pub name_free: bool,
    /// The tables the legacy table feeds, as the session that sees the new tables finds them.
    pub fed: Vec<(TableName, Option<Relation>)>,
    /// The lookup tables its rows go through.
    pub lookups: Vec<Relation>,
}

impl Swapped {
    pub async fn read(
        plan: &Plan,
        legacy: &LegacyAccess,
        named: &Client,
        new: &Client,
    ) -> Result<Swapped, tokio_postgres::Error> {
        let now = Relation::read(named, &legacy.table).await?;
        let name_free = now.is_none();
        let named = now.filter(|r| r.oid != legacy.oid);
        let mut fed = Vec::new();
        for t in fed_tables(plan, &legacy.table) {
            fed.push((t.clone(), Relation::read(new, t).await?));
        }
        let mut lookups = Vec::new();
        for t in plan.lookup_tables_of(&legacy.table) {
            if let Some(r) = Relation::read(new, &t).await? {
                lookups.push(r);
            }
        }
        Ok(Swapped {
            named,
            name_free,
            fed,
            lookups,
        })
    }
}
