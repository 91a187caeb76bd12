//! The new tables the reverse rules read (their `from`): each one's primary key, and the SQL
//! that evaluates a rule over rows of it, either as they are now in the table or as a WAL
//! tuple carried them (the old row of an update or delete).

use tokio_postgres::Client;

use crate::pg::ident::{quote_ident, TableName};
use crate::plan::ReverseTable;

use super::error::ReverseError;

/// A column and its type as SQL (`format_type`), for `CAST(text AS type)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_sql: String,
}

/// An output table that feeds legacy tables.
#[derive(Debug)]
pub struct OutputTable {
    pub table: TableName,
    pub oid: u32,
    /// Its primary key, in index order: how a changed row is found again.
    pub key: Vec<Column>,
}

impl OutputTable {
    /// Reads the primary key of `table` on the target; a table without one cannot be followed
    /// (a changed row could not be found again).
    pub async fn read(client: &Client, table: &TableName) -> Result<OutputTable, ReverseError> {
        let oid: u32 = client
            .query_one("SELECT $1::text::regclass::oid", &[&table.quoted()])
            .await
            .map_err(ReverseError::target(format!("finding {table}")))?
            .get(0);
        let rows = client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
                   FROM pg_index i
                   CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = $1::text::regclass AND i.indisprimary
                  ORDER BY k.n",
                &[&table.quoted()],
            )
            .await
            .map_err(ReverseError::target(format!(
                "reading the primary key of {table}"
            )))?;
        if rows.is_empty() {
            return Err(ReverseError::Unmappable(format!(
                "{table} has no primary key: the reverse stream finds a changed row again by it. Add one (ALTER TABLE {} ADD PRIMARY KEY (...)) and start `switchyard follow --reverse` again",
                table.quoted()
            )));
        }
        Ok(OutputTable {
            table: table.clone(),
            oid,
            key: rows
                .iter()
                .map(|r| Column {
                    name: r.get(0),
                    type_sql: r.get(1),
                })
                .collect(),
        })
    }

    /// The primary key's columns as text: the leading columns of both SELECTs.
    fn key_as_text(&self) -> Vec<String> {
        let alias = quote_ident(&self.table.name);
        self.key
            .iter()
            .map(|c| format!("{alias}.{}::text", quote_ident(&c.name)))
            .collect()
    }

    /// `rule` over the rows of this table whose primary key is among `$1..$k` (one text array
    /// per key column): returns the key as text, then the legacy key and columns as text.
    pub fn current_rows_sql(&self, rule: &ReverseTable) -> String {
        let alias = quote_ident(&self.table.name);
        let columns: Vec<String> = self
            .key
            .iter()
            .map(|c| format!("{alias}.{}", quote_ident(&c.name)))
            .collect();
        let condition = format!(
            "({}) IN (SELECT {} FROM {})",
            columns.join(", "),
            casts(&self.key),
            unnest(self.key.len())
        );
        rule.select_over(&self.table.quoted(), &self.key_as_text(), true, &condition)
    }

    /// `rule` over the rows whose legacy key is among `$1..$k` (one text array per legacy key
    /// column, cast to `key_types`, so that an index on the key expression serves it): the
    /// rows that claim one of those legacy rows now by their own columns.
    pub fn claiming_rows_sql(&self, rule: &ReverseTable, key_types: &[Column]) -> String {
        let exprs: Vec<String> = rule.key.iter().map(|(_, e)| format!("({e}\n)")).collect();
        let condition = format!(
            "({}) IN (SELECT {} FROM {})",
            exprs.join(", "),
            casts(key_types),
            unnest(key_types.len())
        );
        rule.select_over(&self.table.quoted(), &self.key_as_text(), true, &condition)
    }

    /// `rule` over the rows whose *allocated* legacy key (in `switchyard.reverse_keys`, for
    /// `migration` and `legacy_table`) is among `$1`, found by primary key; `None` for a
    /// primary key of several columns (allocated keys are kept as one text).
    pub fn allocated_rows_sql(
        &self,
        rule: &ReverseTable,
        migration: &str,
        legacy_table: &str,
    ) -> Option<String> {
        let [key] = self.key.as_slice() else {
            return None;
        };
        let condition = format!(
            "{}.{} IN (SELECT CAST(k.output_key AS {}) FROM switchyard.reverse_keys k
                        WHERE k.migration = {} AND k.legacy_table = {}
                          AND k.legacy_key = ANY ($1::text[]))",
            quote_ident(&self.table.name),
            quote_ident(&key.name),
            key.type_sql,
            crate::pg::ident::quote_literal(migration),
            crate::pg::ident::quote_literal(legacy_table)
        );
        Some(rule.select_over(&self.table.quoted(), &self.key_as_text(), true, &condition))
    }

    /// `rule` over rows given as text arrays `$1..$n`, one per column of `columns` (a WAL
    /// tuple's columns in the Relation's order): the old rows of updates and deletes, which
    /// are no longer in the table.
    pub fn tuple_rows_sql(&self, rule: &ReverseTable, columns: &[Column]) -> String {
        let named: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("CAST(u.c{i} AS {}) AS {}", c.type_sql, quote_ident(&c.name)))
            .collect();
        let relation = format!(
            "(SELECT {} FROM {})",
            named.join(", "),
            unnest(columns.len())
        );
        rule.select_over(&relation, &self.key_as_text(), true, "true")
    }
}

/// The tables the rules' tables reference through foreign keys and that no rule reads from
/// (lookups, `teams`): their rows feed the rules' subqueries (a stage's name, a team's
/// company), so the reverse stream follows them too, by key only, and a changed row there
/// marks the rows referencing it as changed (see [`Reference`]).
pub async fn referenced_tables(
    client: &Client,
    read: &[TableName],
) -> Result<Vec<TableName>, ReverseError> {
    let quoted: Vec<String> = read.iter().map(TableName::quoted).collect();
    let rows = client
        .query(
            "SELECT DISTINCT n.nspname::text, c.relname::text
               FROM pg_constraint k
               JOIN pg_class c ON c.oid = k.confrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE k.contype = 'f'
                AND k.conrelid = ANY (SELECT t::regclass FROM unnest($1::text[]) AS t)
                AND k.confrelid <> ALL (SELECT t::regclass FROM unnest($1::text[]) AS t)
              ORDER BY 1, 2",
            &[&quoted],
        )
        .await
        .map_err(ReverseError::target(
            "reading the tables the new tables reference",
        ))?;
    Ok(rows
        .iter()
        .map(|r| TableName {
            schema: r.get(0),
            name: r.get(1),
        })
        .collect())
}

/// A foreign key from one output table (`child`) to another's primary key (`parent`),
/// indices into the outputs. A rule reading the parent through a subquery (a task's legacy
/// project id, read from `projects`) gives another result when the parent row changes, so a
/// changed parent row also marks the rows referencing it as changed.
#[derive(Debug)]
pub struct Reference {
    pub child: usize,
    pub parent: usize,
    /// The child's columns, in the order of the parent's primary key.
    pub columns: Vec<String>,
}

impl Reference {
    /// The foreign keys between `outputs` that reference a primary key (others cannot be
    /// followed from a changed row's key, and are left out).
    pub async fn read(
        client: &Client,
        outputs: &[OutputTable],
    ) -> Result<Vec<Reference>, ReverseError> {
        let oids: Vec<u32> = outputs.iter().map(|o| o.oid).collect();
        let rows = client
            .query(
                "SELECT c.conrelid, c.confrelid,
                        array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY AS k(n, o)
                                JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
                               ORDER BY k.o),
                        array(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY AS k(n, o)
                                JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n
                               ORDER BY k.o)
                   FROM pg_constraint c
                  WHERE c.contype = 'f' AND c.conrelid = ANY($1) AND c.confrelid = ANY($1)",
                &[&oids],
            )
            .await
            .map_err(ReverseError::target("reading the foreign keys between the new tables"))?;
        let mut references = Vec::new();
        for r in rows {
            let (child_oid, parent_oid): (u32, u32) = (r.get(0), r.get(1));
            let (child_columns, parent_columns): (Vec<String>, Vec<String>) = (r.get(2), r.get(3));
            let child = oids.iter().position(|o| *o == child_oid);
            let parent = oids.iter().position(|o| *o == parent_oid);
            let (Some(child), Some(parent)) = (child, parent) else {
                continue;
            };
            let columns: Option<Vec<String>> = outputs[parent]
                .key
                .iter()
                .map(|k| {
                    parent_columns
                        .iter()
                        .position(|p| *p == k.name)
                        .map(|i| child_columns[i].clone())
                })
                .collect();
            if let Some(columns) = columns.filter(|c| c.len() == parent_columns.len()) {
                references.push(Reference {
                    child,
                    parent,
                    columns,
                });
            }
        }
        Ok(references)
    }

    /// The child rows' primary keys (as text) referencing parent keys `$1..$k`.
    pub fn children_sql(&self, outputs: &[OutputTable]) -> String {
        let (child, parent) = (&outputs[self.child], &outputs[self.parent]);
        let alias = quote_ident(&child.table.name);
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{alias}.{}", quote_ident(c)))
            .collect();
        format!(
            "SELECT {} FROM {} AS {alias} WHERE ({}) IN (SELECT {} FROM {})",
            child.key_as_text().join(", "),
            child.table.quoted(),
            columns.join(", "),
            casts(&parent.key),
            unnest(parent.key.len())
        )
    }
}

/// `CAST(u.c0 AS t0), CAST(u.c1 AS t1), ...`
pub(super) fn casts(columns: &[Column]) -> String {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("CAST(u.c{i} AS {})", c.type_sql))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `unnest($1::text[], ..., $n::text[]) AS u(c0, ..., c<n-1>)`: n parallel text arrays as rows.
pub(super) fn unnest(n: usize) -> String {
    let arrays: Vec<String> = (1..=n).map(|i| format!("${i}::text[]")).collect();
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    format!("unnest({}) AS u({})", arrays.join(", "), names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> ReverseTable {
        ReverseTable {
            field: "reverse.tables[0]".into(),
            table: TableName::parse("company_projects", "public"),
            source: 0,
            from: TableName::parse("projects", "app"),
            when: Some("legacy_table = 'company_projects'".into()),
            key: vec![("id".into(), "legacy_id".into())],
            sequence: Some("company_projects_id_seq".into()),
            columns: vec![("name".into(), "name -- as written".into())],
        }
    }

    fn projects() -> OutputTable {
        OutputTable {
            table: TableName::parse("projects", "app"),
            oid: 0,
            key: vec![Column {
                name: "id".into(),
                type_sql: "uuid".into(),
            }],
        }
    }

    #[test]
    fn the_current_rows_are_found_by_primary_key_and_carried_as_text() {
        let sql = projects().current_rows_sql(&rule());
        assert_eq!(
            sql,
            "SELECT \"projects\".\"id\"::text, (legacy_id\n)::text AS \"id\", (name -- as written\n)::text AS \"name\" \
             FROM \"app\".\"projects\" AS \"projects\" WHERE (legacy_table = 'company_projects'\n) \
             AND ((\"projects\".\"id\") IN (SELECT CAST(u.c0 AS uuid) FROM unnest($1::text[]) AS u(c0)))"
        );
    }

    #[test]
    fn old_rows_are_rebuilt_from_text_arrays_under_the_tables_name() {
        let columns = [
            Column {
                name: "id".into(),
                type_sql: "uuid".into(),
            },
            Column {
                name: "legacy id".into(),
                type_sql: "bigint".into(),
            },
        ];
        let sql = projects().tuple_rows_sql(&rule(), &columns);
        assert!(
            sql.contains(
                "FROM (SELECT CAST(u.c0 AS uuid) AS \"id\", CAST(u.c1 AS bigint) AS \"legacy id\" \
                 FROM unnest($1::text[], $2::text[]) AS u(c0, c1)) AS \"projects\""
            ),
            "{sql}"
        );
        assert!(sql.starts_with("SELECT \"projects\".\"id\"::text, (legacy_id\n)::text"));
    }
}
