//! Which sequences the output tables draw from, read from the target's catalog before the
//! lock, and which defaults draw from something the cutover cannot name.
//!
//! ```text
//!  identity / serial / OWNED BY      pg_depend: sequence -> column (deptype 'i' or 'a')
//!  DEFAULT nextval('s'), any shape   pg_depend: column default -> sequence (regclass constant)
//!    ('INV-' || nextval('s'), other schemas, shared sequences)
//!  DEFAULT of the column's domain    pg_depend: domain -> sequence
//!  DEFAULT nextval('s'::text)        the default's text, resolved with to_regclass
//!  DEFAULT f() (a function of ours)  listed as unplaced: its body is opaque
//! ```
//! Each sequence found is then set past the largest value of *every* column in the database
//! that draws from it (output tables or not), never the sum of anything.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::GenericClient;

use super::default_text;
use crate::pg::ident::TableName;

/// A column that draws from a sequence: `table` is regclass text (quoted where needed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Drawer {
    pub table: String,
    pub column: String,
    /// Integer and numeric columns are compared by value; others by the numbers in their text.
    pub numeric: bool,
}

/// A default whose sequence the cutover cannot place, with why and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unplaced {
    /// `table.column`.
    pub column: String,
    pub default: String,
    pub reason: String,
}

/// Every sequence the output tables use (regclass text -> every column drawing from it), and
/// the defaults that could not be placed.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub sequences: BTreeMap<String, Vec<Drawer>>,
    pub unplaced: Vec<Unplaced>,
}

/// The columns of `tables` that draw from a sequence, with the sequence as regclass text.
const OWN_COLUMNS_SQL: &str = "
WITH t AS (
    SELECT to_regclass(u) AS oid FROM unnest($1::text[]) u
), c AS (
    SELECT a.attrelid, a.attnum, a.attname::text AS attname, a.atttypid, d.oid AS defoid,
           coalesce(pg_get_expr(d.adbin, d.adrelid), ty.typdefault) AS def,
           CASE WHEN d.oid IS NULL THEN ty.oid END AS domain
      FROM pg_attribute a
      JOIN t ON t.oid = a.attrelid
      JOIN pg_type ty ON ty.oid = a.atttypid
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attnum > 0 AND NOT a.attisdropped
)
SELECT c.attrelid::regclass::text, c.attname, c.def,
       array(SELECT s.oid::regclass::text FROM pg_depend dep JOIN pg_class s ON s.oid = dep.objid
              WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
                AND dep.refobjid = c.attrelid AND dep.refobjsubid = c.attnum
                AND dep.deptype IN ('a', 'i') AND s.relkind = 'S'
             UNION
             SELECT s.oid::regclass::text FROM pg_depend dep JOIN pg_class s ON s.oid = dep.refobjid
              WHERE dep.refclassid = 'pg_class'::regclass AND s.relkind = 'S'
                AND (dep.classid = 'pg_attrdef'::regclass AND dep.objid = c.defoid
                     OR dep.classid = 'pg_type'::regclass AND dep.objid = c.domain)),
       array(SELECT p.oid::regprocedure::text FROM pg_depend dep JOIN pg_proc p ON p.oid = dep.refobjid
              WHERE dep.refclassid = 'pg_proc'::regclass
                AND (dep.classid = 'pg_attrdef'::regclass AND dep.objid = c.defoid
                     OR dep.classid = 'pg_type'::regclass AND dep.objid = c.domain)
                AND p.pronamespace <> 'pg_catalog'::regnamespace
                AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass
                                   AND e.objid = p.oid AND e.deptype = 'e'))
  FROM c
 ORDER BY 1, 2";

/// Every column in the database drawing from one of the sequences (regclass text).
const DRAWERS_SQL: &str = "
WITH s AS (SELECT u::regclass AS oid, u AS name FROM unnest($1::text[]) u),
cols AS (
    SELECT s.name, dep.refobjid AS rel, dep.refobjsubid AS attnum
      FROM s JOIN pg_depend dep ON dep.classid = 'pg_class'::regclass AND dep.objid = s.oid
     WHERE dep.refclassid = 'pg_class'::regclass AND dep.refobjsubid > 0 AND dep.deptype IN ('a', 'i')
    UNION
    SELECT s.name, d.adrelid, d.adnum
      FROM s JOIN pg_depend dep ON dep.refclassid = 'pg_class'::regclass AND dep.refobjid = s.oid
      JOIN pg_attrdef d ON dep.classid = 'pg_attrdef'::regclass AND d.oid = dep.objid
    UNION
    SELECT s.name, a.attrelid, a.attnum
      FROM s JOIN pg_depend dep ON dep.refclassid = 'pg_class'::regclass AND dep.refobjid = s.oid
      JOIN pg_attribute a ON dep.classid = 'pg_type'::regclass AND a.atttypid = dep.objid
     WHERE a.attnum > 0 AND NOT a.attisdropped
       AND NOT EXISTS (SELECT FROM pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum)
)
SELECT cols.name, cols.rel::regclass::text, a.attname::text,
       coalesce(bt.typcategory, ty.typcategory) = 'N'
  FROM cols
  JOIN pg_class r ON r.oid = cols.rel AND r.relkind IN ('r', 'p')
  JOIN pg_attribute a ON a.attrelid = cols.rel AND a.attnum = cols.attnum
  JOIN pg_type ty ON ty.oid = a.atttypid
  LEFT JOIN pg_type bt ON bt.oid = ty.typbasetype AND ty.typtype = 'd'";

/// Reads which sequences the columns of `tables` draw from. Read-only: run it anywhere.
pub async fn inventory(
    client: &impl GenericClient,
    tables: &[TableName],
) -> Result<Inventory, tokio_postgres::Error> {
    let names: Vec<String> = tables.iter().map(TableName::quoted).collect();
    let rows = client.query(OWN_COLUMNS_SQL, &[&names]).await?;
    let mut sequences: Vec<String> = Vec::new();
    let mut unplaced = Vec::new();
    for row in rows {
        let (table, column): (String, String) = (row.get(0), row.get(1));
        let linked: Vec<String> = row.get(3);
        let functions: Vec<String> = row.get(4);
        sequences.extend(linked);
        // Identity columns and defaults-less columns have no text to read.
        let Some(default) = row.get::<_, Option<String>>(2) else {
            continue;
        };
        let at = |reason: String| Unplaced {
            column: format!("{table}.{column}"),
            default: default.clone(),
            reason,
        };
        let calls = default_text::calls(&default);
        for name in &calls.by_name {
            match resolve(client, name).await? {
                Some(sequence) => sequences.push(sequence),
                None => unplaced.push(at(format!(
                    "nextval('{name}') names no sequence switchyard can see from its session (search_path {})",
                    search_path(client).await?
                ))),
            }
        }
        if calls.computed {
            unplaced.push(at(
                "nextval() is called with a name computed at insert time".to_owned(),
            ));
        }
        for f in functions {
            unplaced.push(at(format!(
                "calls {f}, whose body switchyard does not read: a sequence it draws from is not set"
            )));
        }
    }
    sequences.sort();
    sequences.dedup();
    let mut inventory = Inventory {
        sequences: BTreeMap::new(),
        unplaced,
    };
    for row in client.query(DRAWERS_SQL, &[&sequences]).await? {
        inventory
            .sequences
            .entry(row.get(0))
            .or_default()
            .push(Drawer {
                table: row.get(1),
                column: row.get(2),
                numeric: row.get(3),
            });
    }
    for drawers in inventory.sequences.values_mut() {
        drawers.sort();
        drawers.dedup();
    }
    Ok(inventory)
}

/// A text name resolved as `nextval` resolves it, to a sequence's regclass text.
async fn resolve(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT (SELECT c.oid::regclass::text FROM pg_class c
                      WHERE c.oid = to_regclass($1) AND c.relkind = 'S')",
            &[&name],
        )
        .await?;
    Ok(row.get(0))
}

async fn search_path(client: &impl GenericClient) -> Result<String, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT current_setting('search_path')", &[])
        .await?
        .get(0))
}
