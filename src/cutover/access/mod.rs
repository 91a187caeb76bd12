//! Who may do what after the swap: the grants and the row-level security of the legacy tables.
//!
//! In the same database the swap renames each legacy table, and its privileges and policies go
//! with it (they are bound to the table's OID): the application's role then gets "permission
//! denied" on what takes the legacy name and on the new tables, and granting on a compatibility
//! view alone lets that role read through the view with the view owner's rights, past every
//! policy. The plan says per kind what happens (`[cutover.dependents]` `grants` and `policies`):
//!
//! ```text
//!  check / before the lock   read.rs: relacl, attacl, relrowsecurity, pg_policy of each legacy table
//!                            refuse -> error naming the object and the setting (nothing changed)
//!  under the lock, after     swapped.rs: what takes each legacy name now, what it feeds
//!  the cutover SQL           wanted.rs: the same privileges on what takes the legacy name and on
//!                              the tables it feeds (+ SELECT on lookups and on what a
//!                              security_invoker view reads, USAGE on sequences for INSERT)
//!                            grants = carry        carry.rs: GRANT each (roles missing on a
//!                                                  target server are reported, not skipped)
//!                            grants = cutover_sql  prove.rs: has_*_privilege each, else roll back
//!                            policies = cutover_sql prove.rs: RLS + a policy on every fed table,
//!                                                  security_invoker on a view taking the name
//! ```
//! `warn` reports what the proof would find and leaves it. With two servers the new tables'
//! policies cannot come from a cutover SQL that runs on the source: create them on the target
//! beforehand; the proof reads the target all the same. See
//! <https://www.postgresql.org/docs/15/ddl-priv.html> and
//! <https://www.postgresql.org/docs/15/ddl-rowsecurity.html>.

mod carry;
mod check;
mod prove;
mod read;
mod swapped;
mod wanted;

use serde::Serialize;
use tokio_postgres::Client;

use crate::error::Chain;
use crate::pg::ident::TableName;
use crate::plan::{Disposition, Plan};

pub use check::{check, AccessCheck};

/// One privilege granted on a legacy table (or one of its columns) to a role other than its
/// owner, as `aclexplode` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `None` for a table-level grant; a column grant comes from `pg_attribute.attacl`.
    pub column: Option<String>,
    /// A role name, or `PUBLIC` (grantee 0).
    pub grantee: String,
    /// `SELECT`, `INSERT`, `UPDATE`, `DELETE`, `TRUNCATE`, `REFERENCES` or `TRIGGER`.
    pub privilege: String,
    pub grantable: bool,
}

/// One `pg_policy` row of a legacy table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    /// `ALL`, `SELECT`, `INSERT`, `UPDATE` or `DELETE`.
    pub command: String,
    pub permissive: bool,
    /// Role names, `PUBLIC` for everyone.
    pub roles: Vec<String>,
    pub using: Option<String>,
    pub with_check: Option<String>,
}

/// What one legacy table grants and how it filters rows, read before the swap.
#[derive(Debug, Clone)]
pub struct LegacyAccess {
    pub table: TableName,
    /// The table's OID: after the swap its name may belong to another object.
    pub oid: u32,
    pub owner: String,
    pub row_security: bool,
    pub force_row_security: bool,
    pub grants: Vec<Grant>,
    pub policies: Vec<Policy>,
}

/// The grants and row-level security of every legacy table of the plan.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub tables: Vec<LegacyAccess>,
}

/// One thing the cutover carried, proved or left, for the operator and the JSON report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLine {
    /// `grants` or `policies`.
    pub kind: &'static str,
    /// The disposition that applied: `carry`, `cutover_sql` or `warn`.
    pub disposition: &'static str,
    /// The legacy table it comes from.
    pub legacy: String,
    pub what: String,
}

/// Why the cutover stopped over grants or policies. `Refused` is raised before the lock;
/// the others under it, and the lock's transaction is then rolled back.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cutover refused before taking any lock; nothing changed:\n  {}", .0.join("\n  "))]
    Refused(Vec<String>),
    #[error("cutover aborted after the cutover SQL: what the plan promised about privileges and row-level security does not hold. Everything was rolled back and the locks released:\n  {}", .0.join("\n  "))]
    Unproven(Vec<String>),
    #[error(
        "cutover aborted: {context}: {}. Everything was rolled back and the locks released",
        Chain::new(.cause)
    )]
    Database {
        context: &'static str,
        /// Printed inside the message with its own causes, before the fix, and so not its
        /// source: the chain would name it again after the fix.
        cause: tokio_postgres::Error,
    },
}

fn db(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> AccessError {
    move |cause| AccessError::Database { context, cause }
}

impl LegacyAccess {
    /// Row-level security applies, or policies wait for it to be enabled.
    pub fn has_row_security(&self) -> bool {
        self.row_security || !self.policies.is_empty()
    }

    /// `app: SELECT, INSERT; PUBLIC: SELECT (id, name)`, one entry per grantee.
    pub fn describe_grants(&self) -> String {
        let mut by_grantee: Vec<(&str, Vec<String>)> = Vec::new();
        for g in &self.grants {
            let what = match &g.column {
                None => g.privilege.clone(),
                Some(c) => format!("{} ({c})", g.privilege),
            };
            let what = if g.grantable {
                format!("{what} WITH GRANT OPTION")
            } else {
                what
            };
            match by_grantee.iter_mut().find(|(r, _)| *r == g.grantee) {
                Some((_, list)) => list.push(what),
                None => by_grantee.push((&g.grantee, vec![what])),
            }
        }
        by_grantee
            .iter()
            .map(|(r, list)| format!("{r}: {}", list.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// `row-level security enabled (FORCE); policies tenant (ALL TO app USING (...))`.
    pub fn describe_row_security(&self) -> String {
        let state = match (self.row_security, self.force_row_security) {
            (true, true) => "row-level security enabled and forced",
            (true, false) => "row-level security enabled",
            (false, _) => "row-level security disabled",
        };
        if self.policies.is_empty() {
            return format!("{state}, no policy (nobody but the owner sees a row)");
        }
        let policies: Vec<String> = self
            .policies
            .iter()
            .map(|p| {
                let mut s = format!(
                    "{}{} ({} TO {}",
                    p.name,
                    if p.permissive { "" } else { " RESTRICTIVE" },
                    p.command,
                    p.roles.join(", ")
                );
                if let Some(u) = &p.using {
                    s.push_str(&format!(" USING ({u})"));
                }
                if let Some(w) = &p.with_check {
                    s.push_str(&format!(" WITH CHECK ({w})"));
                }
                s.push(')');
                s
            })
            .collect();
        format!("{state}; policies {}", policies.join(", "))
    }
}

/// The new tables a legacy table feeds: its source's outputs, each once.
fn fed_tables<'p>(plan: &'p Plan, legacy: &TableName) -> Vec<&'p TableName> {
    let mut fed: Vec<&TableName> = Vec::new();
    for source in plan.sources.iter().filter(|s| &s.table == legacy) {
        for o in &source.outputs {
            if !fed.contains(&&o.table) {
                fed.push(&o.table);
            }
        }
    }
    fed
}

fn disposition_name(d: Disposition) -> &'static str {
    match d {
        Disposition::Refuse => "refuse",
        Disposition::Warn => "warn",
        Disposition::CutoverSql => "cutover_sql",
        Disposition::Carry => "carry",
    }
}

/// Reads every legacy table's grants and row-level security.
pub(crate) async fn read(plan: &Plan, client: &Client) -> Result<Access, tokio_postgres::Error> {
    let mut tables = Vec::new();
    for source in &plan.sources {
        if let Some(a) = read::legacy_access(client, &source.table).await? {
            tables.push(a);
        }
    }
    Ok(Access { tables })
}

/// Before the lock: refuses (nothing changed) when a legacy table has grants or row-level
/// security the plan refuses; otherwise says what will be carried, proved or left.
pub(crate) async fn before_lock(
    plan: &Plan,
    source: &Client,
    say: &(dyn Fn(String) + Sync),
) -> Result<Access, AccessError> {
    let access = read(plan, source)
        .await
        .map_err(db("reading the legacy tables' grants and policies"))?;
    let findings = check::findings(plan, &access);
    let refused: Vec<String> = findings
        .errors
        .iter()
        .map(|f| format!("{}: {} Fix: {}", f.subject, f.problem, f.fix))
        .collect();
    if !refused.is_empty() {
        return Err(AccessError::Refused(refused));
    }
    for f in &findings.warnings {
        say(format!("warning: {}: {}", f.subject, f.problem));
    }
    for line in &findings.notes {
        say(line.clone());
    }
    Ok(access)
}

/// Under the lock, after the plan's cutover SQL: carries the grants, proves what the plan's SQL
/// promised, and reports what `warn` leaves. `named` is the session where the legacy names now
/// resolve (the one that ran the swap, or the source's lock session with two servers); `new`
/// the one that sees the new tables (the same session in one database).
pub(crate) async fn after_swap(
    plan: &Plan,
    access: &Access,
    named: &Client,
    new: &Client,
    two_servers: bool,
) -> Result<Vec<AccessLine>, AccessError> {
    let mut lines = Vec::new();
    let mut gaps = Vec::new();
    let grants = plan.cutover.dependents.grants;
    let policies = plan.cutover.dependents.policies;
    for legacy in &access.tables {
        let swapped = swapped::Swapped::read(plan, legacy, named, new)
            .await
            .map_err(db(
                "reading what takes the legacy names after the cutover SQL",
            ))?;
        if !legacy.grants.is_empty() && grants != Disposition::Refuse {
            let want = wanted::privileges(plan, legacy, &swapped);
            let unmapped = wanted::unmapped_columns(plan, legacy, &swapped);
            let (done, missing) = match grants {
                Disposition::Carry => carry::grant(&want, named, new, two_servers).await?,
                _ => prove::privileges(&want, named, new).await?,
            };
            let disposition = disposition_name(grants);
            let line = |what: String| AccessLine {
                kind: "grants",
                disposition,
                legacy: legacy.table.to_string(),
                what,
            };
            lines.extend(done.into_iter().chain(unmapped).map(line));
            if swapped.name_free {
                lines.push(line(format!(
                    "nothing takes the name {} after the cutover SQL: its grants went to the tables it feeds only",
                    legacy.table
                )));
            }
            match grants {
                Disposition::CutoverSql => gaps.extend(missing),
                _ => lines.extend(missing.into_iter().map(line)),
            }
        }
        if legacy.has_row_security() && policies != Disposition::Refuse {
            let (held, missing) = prove::row_security(legacy, &swapped);
            let disposition = disposition_name(policies);
            let line = |what: String| AccessLine {
                kind: "policies",
                disposition,
                legacy: legacy.table.to_string(),
                what,
            };
            lines.extend(held.into_iter().map(line));
            match policies {
                Disposition::CutoverSql => gaps.extend(missing),
                _ => lines.extend(missing.into_iter().map(line)),
            }
        }
    }
    if !gaps.is_empty() {
        return Err(AccessError::Unproven(gaps));
    }
    Ok(lines)
}
