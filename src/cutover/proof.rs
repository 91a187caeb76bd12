//! A swap that proves it swapped. The cutover SQL is the plan's; a file that matched nothing
//! (new tables in a schema its session does not search, a guard clause that returned early)
//! would otherwise commit as a success while the application goes on writing to the legacy
//! tables, which nobody follows any more. So, inside the lock's transaction (which sees its
//! own DDL), after the SQL and before the commit:
//!
//! ```text
//!  before the SQL   each legacy name -> its table's OID (the lock holds: no rename since)
//!                   SET LOCAL switchyard.same_database = on | off  (the SQL may assert it)
//!  after the SQL    each legacy name is what [cutover] legacy_names promises
//!                     views:     a view, no longer the legacy table
//!                     gone:      nothing
//!                     unchanged: still the legacy table
//!                   two servers: every legacy table (and partition) has its read-only
//!                   trigger, enabled ALWAYS
//!  any miss         the caller rolls back: nothing changed, the consumer keeps following
//! ```

use tokio_postgres::GenericClient;

use crate::pg::ident::TableName;
use crate::plan::LegacyNames;
use crate::source::catalog;

use super::read_only::TRIGGER;

/// The custom setting through which switchyard tells the cutover and rollback SQL the layout:
/// `on` when source and target are one database, `off` with two servers. Set with `SET LOCAL`
/// semantics, in the transaction that runs the SQL
/// (<https://www.postgresql.org/docs/current/runtime-config-custom.html>).
pub const SAME_DATABASE_SETTING: &str = "switchyard.same_database";

/// Sets [`SAME_DATABASE_SETTING`] for the rest of the client's transaction.
pub async fn tell_layout(
    client: &impl GenericClient,
    same_database: bool,
) -> Result<(), tokio_postgres::Error> {
    let value = if same_database { "on" } else { "off" };
    client
        .execute(
            "SELECT set_config($1, $2, true)",
            &[&SAME_DATABASE_SETTING, &value],
        )
        .await
        .map(drop)
}

/// The OID each legacy name resolves to now, in the order of `tables`.
pub(super) async fn legacy_oids(
    client: &impl GenericClient,
    tables: &[TableName],
) -> Result<Vec<u32>, tokio_postgres::Error> {
    let quoted: Vec<String> = tables.iter().map(TableName::quoted).collect();
    let rows = client
        .query(
            "SELECT t.name::regclass::oid FROM unnest($1::text[]) WITH ORDINALITY AS t(name, i)
              ORDER BY t.i",
            &[&quoted],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What a name resolves to.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub oid: u32,
    /// `pg_class.relkind`.
    pub relkind: String,
}

impl Resolved {
    pub fn kind(&self) -> &'static str {
        match self.relkind.as_str() {
            "r" => "a table",
            "p" => "a partitioned table",
            "v" => "a view",
            "m" => "a materialized view",
            "f" => "a foreign table",
            "S" => "a sequence",
            _ => "a relation",
        }
    }
}

/// What `table` resolves to, if anything.
pub async fn resolve(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<Option<Resolved>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT c.oid, c.relkind::text FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&table.quoted()],
        )
        .await?;
    Ok(row.map(|r| Resolved {
        oid: r.get(0),
        relkind: r.get(1),
    }))
}

/// The name the relation with this OID has now (schema-qualified where needed), if it exists.
pub async fn name_of(
    client: &impl GenericClient,
    oid: u32,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT oid::regclass::text FROM pg_class WHERE oid = $1",
            &[&oid],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Checks the promise on `client` (the session that ran the cutover SQL, inside its
/// transaction); returns every broken part, each naming the object. `oids` are the legacy
/// tables' OIDs from [`legacy_oids`], before the SQL.
pub(super) async fn legacy_names_kept(
    client: &impl GenericClient,
    promise: LegacyNames,
    tables: &[TableName],
    oids: &[u32],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut broken = Vec::new();
    for (table, &oid) in tables.iter().zip(oids) {
        let now = resolve(client, table).await?;
        let legacy = now.as_ref().is_some_and(|r| r.oid == oid);
        let miss = match (promise, &now) {
            (LegacyNames::Views, Some(r)) if r.relkind == "v" && !legacy => None,
            (LegacyNames::Gone, None) => None,
            (LegacyNames::Unchanged, Some(_)) if legacy => None,
            (_, None) => Some(format!("{table} names nothing")),
            (_, Some(_)) if legacy => Some(format!("{table} is still the legacy table")),
            (_, Some(r)) => {
                let moved = match name_of(client, oid).await? {
                    Some(name) => format!("the legacy table is now {name}"),
                    None => "the legacy table is gone".to_owned(),
                };
                Some(format!("{table} is {} (OID {}); {moved}", r.kind(), r.oid))
            }
        };
        if let Some(miss) = miss {
            broken.push(miss);
        }
    }
    Ok(broken)
}

/// Two servers: every member of the legacy tables' partition trees must carry the read-only
/// trigger enabled ALWAYS. Returns the members that do not.
pub(super) async fn guards_in_place(
    client: &impl GenericClient,
    oids: &[u32],
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT p.relid::regclass::text
                   FROM unnest($1::oid[]) AS t(relid),
                        LATERAL {} AS p
                  WHERE NOT EXISTS (SELECT FROM pg_trigger g
                                     WHERE g.tgrelid = p.relid AND g.tgname = $2 AND g.tgenabled = 'A')",
                catalog::partition_tree("t.relid::regclass")
            ),
            &[&oids, &TRIGGER],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            format!(
                "{} has no read-only trigger enabled ALWAYS",
                r.get::<_, String>(0)
            )
        })
        .collect())
}

/// The session's `search_path`, for a message about names the SQL did not find.
pub(super) async fn search_path(
    client: &impl GenericClient,
) -> Result<String, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT current_setting('search_path')", &[])
        .await?
        .get(0))
}
