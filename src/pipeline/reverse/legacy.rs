//! The legacy tables the reverse stream writes: found by the OID the backfill recorded
//! (after a same-database swap they are called `*_legacy`), their columns' types, and the
//! upsert and delete that write a batch of rows given as text arrays.

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::pg::ident::quote_ident;

use super::error::ReverseError;
use super::output::{casts, unnest, Column};

/// A legacy table as it is now on the legacy side.
#[derive(Debug)]
pub struct LegacyTable {
    /// Its name now, quoted and qualified.
    pub name: String,
    /// The legacy key, in the source's key order.
    pub key: Vec<Column>,
    /// Every column's type (`format_type`), by name.
    types: HashMap<String, String>,
}

impl LegacyTable {
    /// The table with OID `oid`, keyed by `key` (the plan source's key columns).
    pub async fn resolve(
        client: &Client,
        oid: u32,
        key: &[String],
    ) -> Result<LegacyTable, ReverseError> {
        let rows = client
            .query(
                "SELECT format('%I.%I', n.nspname, c.relname), a.attname::text,
                        format_type(a.atttypid, a.atttypmod)
                   FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                  WHERE c.oid = $1",
                &[&oid],
            )
            .await
            .map_err(ReverseError::legacy(format!("reading legacy table {oid}")))?;
        let Some(first) = rows.first() else {
            return Err(ReverseError::Unmappable(format!(
                "the legacy table the backfill recorded (OID {oid}) is gone from the legacy side: the reverse stream has nowhere to write. Nothing past the last applied change was confirmed"
            )));
        };
        let name: String = first.get(0);
        let types: HashMap<String, String> = rows.iter().map(|r| (r.get(1), r.get(2))).collect();
        let key = key
            .iter()
            .map(|k| match types.get(k) {
                Some(t) => Ok(Column {
                    name: k.clone(),
                    type_sql: t.clone(),
                }),
                None => Err(ReverseError::Unmappable(format!(
                    "legacy table {name} has no column {k} (its key in the plan)"
                ))),
            })
            .collect::<Result<_, _>>()?;
        Ok(LegacyTable { name, key, types })
    }

    /// `columns` with their types; an unknown column is a plan the legacy table no longer fits.
    pub fn typed(&self, columns: &[&str]) -> Result<Vec<Column>, ReverseError> {
        columns
            .iter()
            .map(|c| match self.types.get(*c) {
                Some(t) => Ok(Column {
                    name: (*c).to_owned(),
                    type_sql: t.clone(),
                }),
                None => Err(ReverseError::Unmappable(format!(
                    "legacy table {} has no column {c}, which a reverse rule writes: fix the rule (`switchyard check` compares them)",
                    self.name
                ))),
            })
            .collect()
    }

    /// Inserts or updates rows given as one text array per column of `columns` (the key
    /// first): `ON CONFLICT` on the key, so applying a batch again changes nothing.
    /// `OVERRIDING SYSTEM VALUE` lets it write an identity key the legacy side allocated.
    pub fn upsert_sql(&self, columns: &[Column]) -> String {
        let names: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
        let key: Vec<String> = self.key.iter().map(|c| quote_ident(&c.name)).collect();
        let set: Vec<String> = columns
            .iter()
            .filter(|c| !self.key.iter().any(|k| k.name == c.name))
            .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(&c.name)))
            .collect();
        let action = if set.is_empty() {
            "DO NOTHING".to_owned()
        } else {
            format!("DO UPDATE SET {}", set.join(", "))
        };
        format!(
            "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} ON CONFLICT ({}) {action}",
            self.name,
            names.join(", "),
            casts(columns),
            unnest(columns.len()),
            key.join(", ")
        )
    }

    /// Deletes the rows whose key is among `$1..$k` (one text array per key column).
    pub fn delete_sql(&self) -> String {
        let key: Vec<String> = self.key.iter().map(|c| quote_ident(&c.name)).collect();
        format!(
            "DELETE FROM {} WHERE ({}) IN (SELECT {} FROM {})",
            self.name,
            key.join(", "),
            casts(&self.key),
            unnest(self.key.len())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, type_sql: &str) -> Column {
        Column {
            name: name.into(),
            type_sql: type_sql.into(),
        }
    }

    fn table() -> LegacyTable {
        LegacyTable {
            name: "public.\"vortex items\"".into(),
            key: vec![column("id", "bigint")],
            types: [("id", "bigint"), ("title", "text")]
                .into_iter()
                .map(|(c, t)| (c.to_owned(), t.to_owned()))
                .collect(),
        }
    }

    #[test]
    fn an_upsert_updates_every_column_but_the_key() {
        let t = table();
        let columns = t.typed(&["id", "title"]).unwrap();
        assert_eq!(
            t.upsert_sql(&columns),
            "INSERT INTO public.\"vortex items\" (\"id\", \"title\") OVERRIDING SYSTEM VALUE \
             SELECT CAST(u.c0 AS bigint), CAST(u.c1 AS text) FROM unnest($1::text[], $2::text[]) AS u(c0, c1) \
             ON CONFLICT (\"id\") DO UPDATE SET \"title\" = EXCLUDED.\"title\""
        );
        let key_only = t.typed(&["id"]).unwrap();
        assert!(t.upsert_sql(&key_only).ends_with("DO NOTHING"));
    }

    #[test]
    fn a_delete_names_the_key_and_an_unknown_column_is_refused() {
        let t = table();
        assert_eq!(
            t.delete_sql(),
            "DELETE FROM public.\"vortex items\" WHERE (\"id\") IN (SELECT CAST(u.c0 AS bigint) FROM unnest($1::text[]) AS u(c0))"
        );
        let e = t.typed(&["id", "nope"]).unwrap_err().to_string();
        assert!(e.contains("no column nope"), "{e}");
    }
}
