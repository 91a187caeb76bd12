//! What the target role must be allowed to do, each missing privilege named with the GRANT
//! that fixes it. The role needs no ownership and no superuser: the tables may be created by
//! their owner, who grants
//!
//! ```text
//! output tables          SELECT, INSERT, UPDATE, DELETE   (COPY in, upsert, delete by key, verify)
//! lookup tables          SELECT, INSERT                    (read the map, add new values)
//! serial sequences       USAGE                             (a serial column's nextval() default)
//! schema switchyard      CREATE on the database, or the schema created for the role and owned by it
//! temporary tables       TEMP on the database              (apply and verify stage rows there)
//! parameter              SET on session_replication_role   (backfill and apply sessions, as native replication)
//! ```
//!
//! `has_table_privilege` with a list of privileges is true when *any* of them is held, so each
//! privilege is asked for on its own.
//!
//! <https://www.postgresql.org/docs/15/ddl-priv.html>

use tokio_postgres::GenericClient;

use crate::pg::ident::{quote_ident, TableName};
use crate::plan::Plan;
use crate::source::preflight::Finding;

/// The privileges output tables need.
const OUTPUT_PRIVILEGES: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE"];
/// The privileges lookup tables need.
const LOOKUP_PRIVILEGES: &[&str] = &["SELECT", "INSERT"];
/// PostgreSQL 15 made parameters grantable (`GRANT SET ON PARAMETER`); before, `SET
/// session_replication_role` needed a superuser.
const GRANTABLE_PARAMETERS_SINCE: i32 = 150_000;

/// Checks the role's privileges on the target; tables that do not exist are skipped (reported
/// elsewhere).
pub async fn check(
    client: &impl GenericClient,
    plan: &Plan,
    found: &mut Vec<Finding>,
) -> Result<(), tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_user::text, current_database()::text,
                    current_setting('server_version_num')::int,
                    has_database_privilege(current_database(), 'CREATE'),
                    EXISTS (SELECT FROM pg_namespace
                             WHERE nspname = 'switchyard' AND has_schema_privilege(oid, 'CREATE')),
                    has_database_privilege(current_database(), 'TEMP'),
                    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
            &[],
        )
        .await?;
    let (user, database, version): (String, String, i32) = (row.get(0), row.get(1), row.get(2));
    let (create_db, create_schema, temp, superuser): (bool, bool, bool, bool) =
        (row.get(3), row.get(4), row.get(5), row.get(6));
    let (role, db) = (quote_ident(&user), quote_ident(&database));
    if !create_db && !create_schema {
        found.push(Finding::error(
            "target",
            "may not create schema switchyard (the tool's state)",
            format!("GRANT CREATE ON DATABASE {db} TO {role}; or have a superuser run: CREATE SCHEMA switchyard AUTHORIZATION {role};"),
        ));
    }
    if !temp {
        found.push(Finding::error(
            "target",
            "may not create temporary tables (the apply and verify stage rows in them)",
            format!("GRANT TEMP ON DATABASE {db} TO {role};"),
        ));
    }
    replication_role(client, version, superuser, &role, found).await?;
    for output in plan.sources.iter().flat_map(|s| &s.outputs) {
        table(client, &output.table, OUTPUT_PRIVILEGES, &role, found).await?;
    }
    for lookup in &plan.lookups {
        table(client, &lookup.table, LOOKUP_PRIVILEGES, &role, found).await?;
    }
    Ok(())
}

/// The apply session's `SET session_replication_role = replica`.
async fn replication_role(
    client: &impl GenericClient,
    version: i32,
    superuser: bool,
    role: &str,
    found: &mut Vec<Finding>,
) -> Result<(), tokio_postgres::Error> {
    if version < GRANTABLE_PARAMETERS_SINCE {
        if !superuser {
            found.push(Finding::error(
                "target",
                "may not SET session_replication_role (the backfill's and the WAL consumer's sessions need it; before PostgreSQL 15 only a superuser may)",
                format!("ALTER ROLE {role} SUPERUSER; or use PostgreSQL 15 or later and GRANT SET ON PARAMETER session_replication_role"),
            ));
        }
        return Ok(());
    }
    let may_set: bool = client
        .query_one(
            "SELECT has_parameter_privilege('session_replication_role', 'SET')",
            &[],
        )
        .await?
        .get(0);
    if !may_set {
        found.push(Finding::error(
            "target",
            "may not SET session_replication_role (the backfill's and the WAL consumer's sessions run as a replica, as native logical replication does)",
            format!("GRANT SET ON PARAMETER session_replication_role TO {role};"),
        ));
    }
    Ok(())
}

/// Each of `wanted` on `table`, and USAGE on the sequences behind its serial columns.
async fn table(
    client: &impl GenericClient,
    table: &TableName,
    wanted: &[&str],
    role: &str,
    found: &mut Vec<Finding>,
) -> Result<(), tokio_postgres::Error> {
    let quoted = table.quoted();
    let Some(row) = client
        .query_opt(
            "SELECT array(SELECT p FROM unnest($2::text[]) p WHERE NOT has_table_privilege(c.oid, p)),
                    array(SELECT s.oid::regclass::text
                            FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
                           WHERE d.classid = 'pg_class'::regclass AND d.refobjid = c.oid
                             AND d.deptype = 'a'
                             -- CASE: the planner may test the privilege before the relkind.
                             AND CASE WHEN s.relkind = 'S'
                                      THEN NOT has_sequence_privilege(s.oid, 'USAGE') END)
               FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&quoted, &wanted],
        )
        .await?
    else {
        return Ok(());
    };
    let (missing, sequences): (Vec<String>, Vec<String>) = (row.get(0), row.get(1));
    if !missing.is_empty() {
        let list = missing.join(", ");
        found.push(Finding::error(
            format!("target.{table}"),
            format!("missing {list} privilege"),
            format!("GRANT {list} ON {quoted} TO {role};"),
        ));
    }
    for sequence in sequences {
        // regclass prints the sequence quoted as needed already.
        found.push(Finding::error(
            format!("target.{table}"),
            format!("missing USAGE on sequence {sequence}, which a column's default draws from"),
            format!("GRANT USAGE ON SEQUENCE {sequence} TO {role};"),
        ));
    }
    Ok(())
}
