//! Objects bound to the legacy tables, and what the cutover does with each (issue 18, kind 1).
//!
//! PostgreSQL binds most objects to a table by OID, not by name, so a rename takes them along.
//! In the same-database layout the swap renames each legacy table to `*_legacy` and puts a
//! compatibility view in its place; everything bound by OID then follows the frozen table:
//!
//! ```text
//!   before the swap                       after the swap (same database)
//!   comments.item_id ──FK──> vortex_items  comments.item_id ──FK──> vortex_items_legacy (frozen)
//!   view v ──reads──> vortex_items         view v ──reads──> vortex_items_legacy
//!   function f: 'UPDATE vortex_items'      f: 'UPDATE vortex_items' = the read-only view: fails
//!   publication p ∋ vortex_items           p ∋ vortex_items_legacy: subscribers hear nothing
//! ```
//! With two servers the legacy tables keep their names and become read-only; the same objects
//! keep reading or pointing at frozen tables.
//!
//! The plan says per kind what to do (`[cutover.dependents]`, [`crate::plan::Dependents`]):
//! `refuse` stops `check` and the cutover before any lock; `warn` reports; `cutover_sql` leaves
//! it to the plan's cutover SQL and proves, under the lock, that nothing is still bound
//! ([`after_swap`]); `carry` (views) re-creates each view after the swap SQL from the
//! definition read before it, so it reads what now takes the legacy name ([`carry`]).
//!
//! Catalogs read: `pg_constraint`, `pg_depend`, `pg_rewrite`, `pg_class`, `pg_proc`,
//! `pg_trigger`, `pg_publication_tables`, `pg_replication_slots`
//! (<https://www.postgresql.org/docs/15/catalogs.html>). Grants and row-level security
//! policies are another module's.

mod body;
pub mod carry;
mod functions;
mod parts;
mod publications;
mod read;
mod report;

use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::error::Chain;
use crate::pg::ident::{quote_ident, TableName};
use crate::plan::{Dependents, Disposition, Plan};

pub use body::Access;
pub use report::{findings, line};

/// A kind of object bound to a legacy table; each has its line in `[cutover.dependents]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A foreign key of another table referencing a legacy table (`pg_constraint.confrelid`).
    ForeignKey,
    /// A view reading a legacy table, directly or through other views (`pg_rewrite` rules in
    /// `pg_depend`).
    View,
    MaterializedView,
    /// A `sql` or `plpgsql` function or procedure whose body names a legacy table.
    Function,
    /// A trigger on a legacy table (`pg_trigger`), switchyard's own excepted.
    Trigger,
    /// A rule on a legacy table, or a rule of another table whose action uses one.
    Rule,
    /// A publication other than the migration's own that carries a legacy table.
    Publication,
}

impl Kind {
    /// Its key in `[cutover.dependents]`.
    pub fn setting(self) -> &'static str {
        match self {
            Kind::ForeignKey => "foreign_keys",
            Kind::View => "views",
            Kind::MaterializedView => "materialized_views",
            Kind::Function => "functions",
            Kind::Trigger => "triggers",
            Kind::Rule => "rules",
            Kind::Publication => "publications",
        }
    }

    fn disposition(self, d: &Dependents) -> Disposition {
        match self {
            Kind::ForeignKey => d.foreign_keys,
            Kind::View => d.views,
            Kind::MaterializedView => d.materialized_views,
            Kind::Function => d.functions,
            Kind::Trigger => d.triggers,
            Kind::Rule => d.rules,
            Kind::Publication => d.publications,
        }
    }
}

/// Where the new tables live, which decides what the swap does to a dependent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// The swap renames the legacy tables; their names go to compatibility views.
    SameDatabase,
    /// The legacy tables keep their names and become read-only.
    TwoServers,
}

/// A legacy table: its OID, which survives the swap's rename, and its name before the swap.
#[derive(Debug, Clone, Serialize)]
pub struct Legacy {
    #[serde(skip)]
    pub oid: u32,
    #[serde(serialize_with = "as_text")]
    pub table: TableName,
}

fn as_text<S: serde::Serializer>(t: &TableName, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

/// One object bound to a legacy table.
#[derive(Debug, Clone, Serialize)]
pub struct Dependent {
    pub kind: Kind,
    /// What it is, qualified: `foreign key "comments_item_id_fkey" on public.comments`.
    pub object: String,
    /// The legacy table it is bound to, by its name before the swap.
    pub legacy_table: String,
    /// What the swap does to it.
    pub swap: String,
    /// What to do about it: the SQL, or the setting.
    pub fix: String,
    /// What the plan says for its kind (a `carry` that cannot apply reads as `refuse`).
    pub disposition: Disposition,
    /// Functions: whether the body writes the table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    /// The object's OID (views: what [`carry`] re-creates).
    #[serde(skip)]
    pub oid: u32,
    /// Views read directly (not through another view): `CREATE OR REPLACE VIEW` text read
    /// before the swap, what [`carry`] runs after it.
    #[serde(skip)]
    pub definition: Option<String>,
}

/// The legacy tables and everything bound to them, read before the lock; kept in the cutover's
/// report.
#[derive(Debug, Clone, Serialize)]
pub struct DependencyReport {
    pub layout: Layout,
    pub legacy: Vec<Legacy>,
    pub dependents: Vec<Dependent>,
    /// Views re-created by [`carry`] after the swap SQL (qualified names).
    pub carried: Vec<String>,
}

impl DependencyReport {
    /// The dependents the plan refuses (or whose `carry` cannot apply in this layout).
    pub fn refused(&self) -> Vec<&Dependent> {
        self.dependents
            .iter()
            .filter(|d| d.disposition == Disposition::Refuse)
            .collect()
    }
}

/// Why the cutover stopped because of a dependent.
#[derive(Debug, thiserror::Error)]
pub enum DependentsError {
    #[error("cutover refused before taking any lock; nothing was changed. The plan refuses {} object(s) bound to a legacy table:\n{}", .0.len(), report::list(.0))]
    Refused(Vec<Dependent>),
    #[error("cutover aborted after the plan's cutover SQL: {} object(s) are still bound to a legacy table though the plan says the cutover deals with them. Everything was rolled back and the locks released:\n{}", .0.len(), report::list(.0))]
    StillBound(Vec<Dependent>),
    #[error("reading the objects bound to the legacy tables")]
    Catalog(#[from] tokio_postgres::Error),
    #[error("carrying view {view} over to what takes the legacy name: {}. Everything was rolled back and the locks released; fix the view, or drop it, or set views = \"warn\"", Chain::new(.cause))]
    Carry {
        view: String,
        /// Printed inside the message with its own causes, before the fix, and so not its
        /// source: the chain would name it again after the fix.
        cause: tokio_postgres::Error,
    },
}

/// Resolves the plan's source tables to OIDs on the source (`to_regclass`); missing tables are
/// left out (the preflight reports them).
pub async fn legacy_tables(
    client: &impl GenericClient,
    plan: &Plan,
) -> Result<Vec<Legacy>, tokio_postgres::Error> {
    let mut out = Vec::new();
    for s in &plan.sources {
        let name = format!(
            "{}.{}",
            quote_ident(&s.table.schema),
            quote_ident(&s.table.name)
        );
        let oid: Option<u32> = client
            .query_one("SELECT to_regclass($1)::oid", &[&name])
            .await?
            .get(0);
        if let Some(oid) = oid {
            out.push(Legacy {
                oid,
                table: s.table.clone(),
            });
        }
    }
    Ok(out)
}

/// Reads everything bound to the legacy tables before the swap, each with the plan's
/// disposition. Run on the source; before the lock by the cutover, and by `check`.
pub async fn before_swap(
    client: &impl GenericClient,
    plan: &Plan,
    layout: Layout,
) -> Result<DependencyReport, tokio_postgres::Error> {
    let legacy = legacy_tables(client, plan).await?;
    let found = read::all(client, plan, &legacy, layout, parts::When::BeforeSwap).await?;
    let dependents = found
        .into_iter()
        .map(|d| decide(d, &plan.cutover.dependents, layout))
        .collect();
    Ok(DependencyReport {
        layout,
        legacy,
        dependents,
        carried: Vec::new(),
    })
}

/// Before the lock, on the lock's session: reads the dependents, refuses (nothing changed, no
/// lock taken) when the plan refuses one, and creates `switchyard.carried_views` when a view is
/// to be carried.
pub(super) async fn before_lock(
    client: &impl GenericClient,
    plan: &Plan,
    same_database: bool,
) -> Result<DependencyReport, DependentsError> {
    let layout = if same_database {
        Layout::SameDatabase
    } else {
        Layout::TwoServers
    };
    let found = before_swap(client, plan, layout).await?;
    let refused: Vec<Dependent> = found.refused().into_iter().cloned().collect();
    if !refused.is_empty() {
        return Err(DependentsError::Refused(refused));
    }
    if found
        .dependents
        .iter()
        .any(|d| d.disposition == Disposition::Carry && d.definition.is_some())
    {
        client.batch_execute(carry::TABLE_SQL).await?;
    }
    Ok(found)
}

/// Sets the plan's disposition on a dependent found by [`read`]. `carry` needs the
/// same-database layout; with two servers it reads as `refuse`, with the reason. (A view that
/// reads a legacy table through another view follows that view: carried with it, or found
/// still bound after the swap.)
fn decide(mut d: Dependent, plan: &Dependents, layout: Layout) -> Dependent {
    d.disposition = d.kind.disposition(plan);
    if d.disposition == Disposition::Carry && layout == Layout::TwoServers {
        d.disposition = Disposition::Refuse;
        d.fix = format!(
            "views = \"carry\" needs the same-database layout: with two servers nothing takes the legacy name, so a re-created view would read the same frozen table. {}",
            d.fix
        );
    }
    d
}

/// After the plan's cutover SQL, inside the lock's transaction, on the session that ran it:
/// carries the views over (same database, `views = "carry"`), then re-reads the catalog and
/// fails, naming each, when an object the plan refuses or says the cutover deals with is still
/// bound to a legacy table. The caller rolls back on error.
pub async fn after_swap(
    client: &impl GenericClient,
    plan: &Plan,
    found: &mut DependencyReport,
) -> Result<(), DependentsError> {
    if found.layout == Layout::SameDatabase {
        found.carried = carry::carry(client, &plan.name, &found.dependents).await?;
    }
    let still = read::all(
        client,
        plan,
        &found.legacy,
        found.layout,
        parts::When::AfterSwap,
    )
    .await?;
    let bound: Vec<Dependent> = still
        .into_iter()
        .map(|d| decide(d, &plan.cutover.dependents, found.layout))
        .filter(|d| d.disposition != Disposition::Warn)
        .collect();
    if bound.is_empty() {
        Ok(())
    } else {
        Err(DependentsError::StillBound(bound))
    }
}
