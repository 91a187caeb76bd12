//! Reads, from the source's catalog, who may do what on each legacy table: its grants (table and
//! column) and its row-level security (the switch, FORCE, and every policy).
//!
//! - Grants: `pg_class.relacl` and `pg_attribute.attacl`, unpacked by `aclexplode`; grantee 0
//!   is PUBLIC; the owner's own entries are left out (ownership does not move with a grant).
//!   <https://www.postgresql.org/docs/15/catalog-pg-class.html>,
//!   <https://www.postgresql.org/docs/15/catalog-pg-attribute.html>,
//!   <https://www.postgresql.org/docs/15/ddl-priv.html>
//! - Row-level security: `pg_class.relrowsecurity` / `relforcerowsecurity`, and `pg_policy`
//!   with `polcmd`, `polpermissive`, `polroles` and the USING / WITH CHECK expressions through
//!   `pg_get_expr`. <https://www.postgresql.org/docs/15/catalog-pg-policy.html>

use tokio_postgres::GenericClient;

use crate::pg::ident::TableName;

use super::{Grant, LegacyAccess, Policy};

/// The table itself (by OID, so that the name may move), its owner and its RLS switches.
const TABLE_SQL: &str = "
SELECT c.oid, pg_get_userbyid(c.relowner)::text, c.relrowsecurity, c.relforcerowsecurity
  FROM pg_class c WHERE c.oid = to_regclass($1)";

/// Table grants (column NULL) and column grants to anyone but the owner and the role switchyard
/// runs as (its SELECT for the copy is the tool's, not the application's), one row per grantee,
/// privilege and column, in the order GRANT lists privileges; several grantors of the same
/// privilege make one row.
const GRANTS_SQL: &str = "
WITH t AS (SELECT oid, relowner, relacl FROM pg_class WHERE oid = $1),
acl AS (
    SELECT NULL::text AS col, a.grantee, a.privilege_type, a.is_grantable
      FROM t, aclexplode(t.relacl) a
     WHERE a.grantee NOT IN (t.relowner, (SELECT oid FROM pg_roles WHERE rolname = current_user))
    UNION ALL
    SELECT att.attname::text, a.grantee, a.privilege_type, a.is_grantable
      FROM t
      JOIN pg_attribute att ON att.attrelid = t.oid AND att.attnum > 0 AND NOT att.attisdropped,
           aclexplode(att.attacl) a
     WHERE a.grantee NOT IN (t.relowner, (SELECT oid FROM pg_roles WHERE rolname = current_user))
)
SELECT col, CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(grantee)::text END,
       privilege_type, bool_or(is_grantable)
  FROM acl
 GROUP BY 1, 2, 3
 ORDER BY 2, 1 NULLS FIRST,
          array_position(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES',
                               'TRIGGER'], privilege_type)";

const POLICIES_SQL: &str = "
SELECT p.polname::text,
       CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                     WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
       p.polpermissive,
       array(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(r)::text END
               FROM unnest(p.polroles) r),
       pg_get_expr(p.polqual, p.polrelid),
       pg_get_expr(p.polwithcheck, p.polrelid)
  FROM pg_policy p WHERE p.polrelid = $1
 ORDER BY 1";

/// Reads one legacy table's grants and row-level security; `None` when there is no such table
/// (a renamed or dropped source is reported elsewhere).
pub(super) async fn legacy_access(
    client: &impl GenericClient,
    table: &TableName,
) -> Result<Option<LegacyAccess>, tokio_postgres::Error> {
    let Some(row) = client.query_opt(TABLE_SQL, &[&table.quoted()]).await? else {
        return Ok(None);
    };
    let oid: u32 = row.get(0);
    let grants = client
        .query(GRANTS_SQL, &[&oid])
        .await?
        .iter()
        .map(|r| Grant {
            column: r.get(0),
            grantee: r.get(1),
            privilege: r.get(2),
            grantable: r.get(3),
        })
        .collect();
    let policies = client
        .query(POLICIES_SQL, &[&oid])
        .await?
        .iter()
        .map(|r| Policy {
            name: r.get(0),
            command: r.get(1),
            permissive: r.get(2),
            roles: r.get(3),
            using: r.get(4),
            with_check: r.get(5),
        })
        .collect();
    Ok(Some(LegacyAccess {
        table: table.clone(),
        oid,
        owner: row.get(1),
        row_security: row.get(2),
        force_row_security: row.get(3),
        grants,
        policies,
    }))
}
