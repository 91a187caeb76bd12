//! What can be known about the source before any work starts: `check` reports all of it, and
//! `backfill` refuses to start while an error stands. Every finding carries its fix.

use tokio_postgres::Client;

use crate::pg::ident::quote_ident;
use crate::plan::Plan;
use crate::source::catalog::has_unique_key;
use crate::source::{identity, slot};
use crate::transform::program::SourcePlan;

/// One thing `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// What it is about: `source`, `source.company_projects`, `target.projects.budget`, ...
    pub subject: String,
    pub problem: String,
    /// What to run or change to fix it.
    pub fix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

impl Finding {
    pub fn error(
        subject: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            severity: Severity::Error,
            subject: subject.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub fn warning(
        subject: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            severity: Severity::Warning,
            subject: subject.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{tag}: {}: {}\n    fix: {}",
            self.subject, self.problem, self.fix
        )
    }
}

/// Checks server settings, privileges, and every source table of the plan.
pub async fn check(client: &Client, plan: &Plan) -> Result<Vec<Finding>, tokio_postgres::Error> {
    let mut found = Vec::new();
    server(client, plan, &mut found).await?;
    for source in &plan.sources {
        table(client, plan, source, &mut found).await?;
    }
    Ok(found)
}

async fn server(
    client: &Client,
    plan: &Plan,
    found: &mut Vec<Finding>,
) -> Result<(), tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_setting('wal_level'),
                    (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
                    current_user::text,
                    current_setting('max_replication_slots')::int,
                    current_setting('max_wal_senders')::int
                      - (SELECT count(*) FROM pg_stat_replication)::int,
                    EXISTS (SELECT FROM pg_publication WHERE pubname = $1),
                    has_database_privilege(current_database(), 'CREATE'),
                    current_database()::text",
            &[&plan.publication_name()],
        )
        .await?;
    let (wal_level, replication, user): (String, bool, String) =
        (row.get(0), row.get(1), row.get(2));
    let (max_slots, free_senders, pub_exists): (i32, i32, bool) =
        (row.get(3), row.get(4), row.get(5));
    let (can_create, database): (bool, String) = (row.get(6), row.get(7));
    let slots = slot::all(client).await?;
    let free_slots = max_slots.saturating_sub(i32::try_from(slots.len()).unwrap_or(i32::MAX));
    let slot_exists = slots.iter().any(|s| s.name == plan.slot_name());
    if wal_level != "logical" {
        found.push(Finding::error(
            "source",
            format!("wal_level is {wal_level}; logical decoding needs wal_level = logical"),
            "ALTER SYSTEM SET wal_level = logical; then restart the source server",
        ));
    }
    if !replication {
        found.push(Finding::error(
            "source",
            format!("role {user} may not start replication"),
            format!("ALTER ROLE {} WITH REPLICATION;", quote_ident(&user)),
        ));
    }
    if free_slots < 1 && !slot_exists {
        found.push(Finding::error(
            "source",
            "no free replication slot (max_replication_slots is used up)",
            "raise max_replication_slots and restart, or drop an unused slot with pg_drop_replication_slot()",
        ));
    }
    if free_senders < 1 {
        found.push(Finding::error(
            "source",
            "no free WAL sender (max_wal_senders is used up)",
            "raise max_wal_senders and restart the source server",
        ));
    }
    if !pub_exists && !can_create {
        let tables: Vec<String> = plan.sources.iter().map(|s| s.table.quoted()).collect();
        found.push(Finding::error(
            "source",
            format!("role {user} may not create publication {}", plan.publication_name()),
            format!(
                "GRANT CREATE ON DATABASE {} TO {}; (and own the tables), or have their owner run: CREATE PUBLICATION {} FOR TABLE {};",
                quote_ident(&database),
                quote_ident(&user),
                quote_ident(&plan.publication_name()),
                tables.join(", ")
            ),
        ));
    }
    Ok(())
}

async fn table(
    client: &Client,
    plan: &Plan,
    source: &SourcePlan,
    found: &mut Vec<Finding>,
) -> Result<(), tokio_postgres::Error> {
    let subject = format!("source.{}", source.table);
    let quoted = source.table.quoted();
    let Some(row) = client
        .query_opt(
            "SELECT c.relreplident::text, has_table_privilege(c.oid, 'SELECT'),
                    pg_has_role(c.relowner, 'USAGE'),
                    EXISTS (SELECT FROM pg_publication_tables p
                             WHERE p.pubname = $3 AND p.schemaname = $1 AND p.tablename = $2),
                    EXISTS (SELECT FROM pg_publication WHERE pubname = $3),
                    (SELECT array_agg(a.attname::text ORDER BY k.n)
                       FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, n), pg_attribute a
                      WHERE i.indrelid = c.oid AND a.attrelid = c.oid AND a.attnum = k.attnum
                        AND (i.indisprimary AND c.relreplident = 'd' OR i.indisreplident AND c.relreplident = 'i')),
                    c.relkind = 'p',
                    coalesce((SELECT pubviaroot FROM pg_publication WHERE pubname = $3), true),
                    (SELECT array_agg(format('%I.%I', ln.nspname, l.relname) ORDER BY l.relname)
                       FROM pg_partition_tree(c.oid) t
                       JOIN pg_class l ON l.oid = t.relid
                       JOIN pg_namespace ln ON ln.oid = l.relnamespace
                      WHERE c.relkind = 'p' AND t.isleaf AND l.relkind = 'r'
                        AND NOT (l.relreplident = 'f' OR EXISTS (
                            SELECT FROM pg_index li WHERE li.indrelid = l.oid
                               AND (li.indisprimary AND l.relreplident = 'd'
                                    OR li.indisreplident AND l.relreplident = 'i'))))
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&source.table.schema, &source.table.name, &plan.publication_name()],
        )
        .await?
    else {
        found.push(Finding::error(&subject, "table does not exist", "fix the table name in the plan, or create the table"));
        return Ok(());
    };
    let (replident, can_select, owns): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
    let (published, pub_exists): (bool, bool) = (row.get(3), row.get(4));
    let identity: Option<Vec<String>> = row.get(5);
    // Inheritance children, and partitions whose identity misses the plan's key: the consumer
    // would stop on them (see `crate::source::identity`); say so before any work starts.
    let oid: u32 = client
        .query_one("SELECT to_regclass($1)::oid", &[&quoted])
        .await?
        .get(0);
    let (children, uncovered) = identity::shape(client, oid, &source.key).await?;
    if let Some(children) = children {
        found.push(Finding::error(
            &subject,
            format!("has inheritance children ({children}): the backfill would read their rows through the parent, while the publication carries their changes as theirs, which the plan does not follow"),
            format!("ALTER TABLE <child> NO INHERIT {quoted}; for each, or migrate the children as sources of their own"),
        ));
    }
    if let Some(uncovered) = uncovered {
        found.push(Finding::error(
            &subject,
            format!("the replica identity of {uncovered} does not cover the plan's key ({}): deletes and key changes there would arrive without it", source.key.join(", ")),
            "give each a primary key on the plan's key, REPLICA IDENTITY USING INDEX a unique index on it, or REPLICA IDENTITY FULL",
        ));
    }
    if !can_select {
        found.push(Finding::error(
            &subject,
            "no SELECT privilege",
            format!("GRANT SELECT ON {quoted} TO <switchyard role>;"),
        ));
    }
    let (partitioned, via_root): (bool, bool) = (row.get(6), row.get(7));
    let leaves_without_identity: Option<Vec<String>> = row.get(8);
    if partitioned && pub_exists && !via_root {
        found.push(Finding::error(
            &subject,
            format!(
                "the table is partitioned and publication {} publishes its partitions, not the table the plan names",
                plan.publication_name()
            ),
            format!(
                "ALTER PUBLICATION {} SET (publish_via_partition_root = true);",
                quote_ident(&plan.publication_name())
            ),
        ));
    } else if pub_exists && !published {
        found.push(Finding::error(
            &subject,
            format!(
                "publication {} exists but does not include the table",
                plan.publication_name()
            ),
            format!(
                "ALTER PUBLICATION {} ADD TABLE {quoted};",
                quote_ident(&plan.publication_name())
            ),
        ));
    } else if !pub_exists && !owns {
        found.push(Finding::error(
            &subject,
            "only the table's owner may add it to a publication",
            format!(
                "have the owner run: CREATE PUBLICATION {} FOR TABLE ...;",
                quote_ident(&plan.publication_name())
            ),
        ));
    }
    match (replident.as_str(), identity) {
        ("n", _) => found.push(Finding::error(
            &subject,
            "REPLICA IDENTITY NOTHING: updates and deletes cannot be replicated",
            format!("ALTER TABLE {quoted} REPLICA IDENTITY DEFAULT; (with a primary key) or REPLICA IDENTITY FULL;"),
        )),
        ("f", _) => {}
        // The partitions' identities count, checked below.
        (_, None) if partitioned => {}
        (_, None) => found.push(Finding::error(
            &subject,
            "no primary key and no replica identity index: updates and deletes cannot be replicated",
            format!("ALTER TABLE {quoted} ADD PRIMARY KEY (...); or ALTER TABLE {quoted} REPLICA IDENTITY FULL;"),
        )),
        (_, Some(cols)) if cols != source.key => found.push(Finding::error(
            &subject,
            format!("the plan's key {:?} is not the table's replica identity {cols:?}", source.key),
            format!("set key = {cols:?} in the plan"),
        )),
        _ => {}
    }
    if replident == "f" && !has_unique_key(client, &source.table, &source.key).await? {
        found.push(Finding::warning(
            &subject,
            format!(
                "no unique index on the plan's key {:?}: under REPLICA IDENTITY FULL nothing keeps it unique, and source rows sharing a key would become one output row",
                source.key
            ),
            format!(
                "CREATE UNIQUE INDEX ON {quoted} ({}); (REPLICA IDENTITY USING INDEX on it then costs less WAL than FULL), or set the plan's key to columns that are unique",
                source.key.iter().map(|k| quote_ident(k)).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    // Each partition is written with its own replica identity, not the root's: one without
    // any would make the application's updates and deletes fail once it is published.
    for leaf in leaves_without_identity.unwrap_or_default() {
        found.push(Finding::error(
            &subject,
            format!("partition {leaf} has no primary key and no replica identity: once published, updates and deletes on it would fail"),
            format!("ALTER TABLE {leaf} REPLICA IDENTITY FULL; (or give it a primary key or a replica identity index)"),
        ));
    }
    columns(client, source, &subject, replident == "f", found).await
}

async fn columns(
    client: &Client,
    source: &SourcePlan,
    subject: &str,
    full_identity: bool,
    found: &mut Vec<Finding>,
) -> Result<(), tokio_postgres::Error> {
    let rows = client
        .query(
            // Out of line only: a varlena (attlen -1, as its type's typlen) whose storage is
            // not PLAIN (MAIN too, which PostgreSQL moves out of line as a last resort), in a
            // table that has a TOAST table at all: PostgreSQL gives none to a table whose rows
            // can never outgrow the threshold (`needs_toast_table`), nor to a partitioned root,
            // whose partitions are asked instead.
            "SELECT a.attname::text,
                    a.attlen = -1 AND a.attstorage <> 'p'
                      AND (c.reltoastrelid <> 0 OR EXISTS (
                            SELECT FROM pg_partition_tree(c.oid) p JOIN pg_class l ON l.oid = p.relid
                             WHERE l.reltoastrelid <> 0)),
                    a.attgenerated = 's'
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
              WHERE a.attrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass
                AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&source.table.schema, &source.table.name],
        )
        .await?;
    let existing: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    generated_columns(source, subject, &rows, found);
    for col in &source.columns {
        if !existing.iter().any(|(n, _)| n == col) {
            let names: Vec<&str> = existing.iter().map(|(n, _)| n.as_str()).collect();
            found.push(Finding::error(
                subject,
                format!("the plan reads column {col}, which the table does not have"),
                format!("use one of: {}", names.join(", ")),
            ));
        }
    }
    if full_identity {
        return Ok(());
    }
    let risky = toast_lookups(source, &existing);
    if !risky.is_empty() {
        found.push(Finding::warning(
            subject,
            format!(
                "the plan reads columns that can be stored out of line ({}): an UPDATE that leaves such a value unchanged does not send it (pgoutput marks it unchanged TOAST), so the consumer reads the row from the source by key, one extra query per such update",
                risky.join(", ")
            ),
            format!(
                "ALTER TABLE {} REPLICA IDENTITY FULL; puts the old values in the WAL instead (more WAL per update), or leave it if such updates are rare",
                source.table.quoted()
            ),
        ));
    }
    Ok(())
}

/// Columns the plan reads whose unchanged TOASTed value an update leaves out of the WAL,
/// given each column's name and whether it can be stored out of line. Key columns are not
/// among them: the replica identity is always in the WAL (PostgreSQL logs the old key in full
/// when it is stored out of line). Every other such column costs a lookup when an update
/// leaves it unchanged, copied 1:1 or not: the consumer fills it from the current source row
/// (`row_change`), never as NULL, and the transforms see the whole row.
fn toast_lookups<'a>(source: &SourcePlan, existing: &'a [(String, bool)]) -> Vec<&'a str> {
    existing
        .iter()
        .filter(|(name, out_of_line)| {
            *out_of_line
                && source.columns.iter().any(|c| c == name)
                && !source.key.iter().any(|k| k == name)
        })
        .map(|(n, _)| n.as_str())
        .collect()
}

/// Stored generated columns the plan reads. PostgreSQL 15 publishes none of them
/// (`logicalrep_write_attrs` in `proto.c` skips `attgenerated` columns): the backfill copies the
/// stored value and the consumer reads it from the source row by key, so both paths agree, at
/// one source query per change. A generated key column could not be followed at all.
fn generated_columns(
    source: &SourcePlan,
    subject: &str,
    rows: &[tokio_postgres::Row],
    found: &mut Vec<Finding>,
) {
    let generated: Vec<&str> = rows
        .iter()
        .filter(|r| r.get::<_, bool>(2))
        .map(|r| r.get::<_, &str>(0))
        .filter(|name| source.columns.iter().any(|c| c == name))
        .collect();
    if let Some(key) = generated
        .iter()
        .find(|g| source.key.iter().any(|k| k == *g))
    {
        found.push(Finding::error(
            subject,
            format!("key column {key} is a generated column, which PostgreSQL does not publish: deletes and key changes could not be followed"),
            "key the plan on the table's primary key or replica identity columns, none of them generated",
        ));
    }
    if !generated.is_empty() {
        found.push(Finding::warning(
            subject,
            format!(
                "the plan reads stored generated columns ({}), which PostgreSQL 15 does not publish: the consumer reads them from the source row by key, one query per change",
                generated.join(", ")
            ),
            "to avoid the queries, compute them in the plan from the columns they are generated from",
        ));
    }
}
