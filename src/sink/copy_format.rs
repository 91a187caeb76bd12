//! Which COPY format each output is written in, chosen once from the target's catalog.
//!
//! Binary when every column of the output has a type whose receive format switchyard writes
//! ([`BinaryType`], domains by their base type); otherwise the whole output goes as text and
//! the reason names the first column that decided it. `check` prints the choice, the backfill
//! logs it and writes accordingly.

use tokio_postgres::GenericClient;

use crate::pg::copy_binary::BinaryType;
use crate::pg::ident::TableName;
use crate::transform::copy_binary::RowFormat;
use crate::transform::program::OutputPlan;

/// The formats of a plan's outputs, indexed by [`OutputPlan::number`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyFormats {
    pub formats: Vec<RowFormat>,
    /// Per output, why it is written as text; `None` for binary outputs.
    pub text_because: Vec<Option<String>>,
}

impl CopyFormats {
    /// Text for every output (the follow, `verify`, a check that could not read the target).
    pub fn text(outputs: usize) -> CopyFormats {
        CopyFormats {
            formats: vec![RowFormat::Text; outputs],
            text_because: vec![None; outputs],
        }
    }

    /// One line per output table, for `check` and the backfill's log: `projects: binary`,
    /// `things: text (column tags is integer[], which switchyard has no binary writer for)`;
    /// a table that several outputs write is described once when they agree.
    pub fn describe<'p>(&self, outputs: impl Iterator<Item = &'p OutputPlan>) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        for o in outputs {
            let line = match (&self.formats.get(o.number), self.text_because.get(o.number)) {
                (Some(RowFormat::Binary(_)), _) => format!("{}: binary", o.table),
                (_, Some(Some(why))) => format!("{}: text ({why})", o.table),
                _ => format!("{}: text", o.table),
            };
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
        lines
    }
}

/// Reads the types of every output's columns (in `client`'s view: inside `check`'s
/// transaction the before-backfill SQL's tables are visible) and chooses each format.
pub async fn choose<'p>(
    client: &impl GenericClient,
    outputs: impl Iterator<Item = &'p OutputPlan>,
) -> Result<CopyFormats, tokio_postgres::Error> {
    let mut chosen = CopyFormats::default();
    for output in outputs {
        let (format, why) = match column_types(client, &output.table, &output.columns).await? {
            Ok(types) => (RowFormat::Binary(types.into_boxed_slice()), None),
            Err(why) => (RowFormat::Text, Some(why)),
        };
        if chosen.formats.len() <= output.number {
            chosen.formats.resize(output.number + 1, RowFormat::Text);
            chosen.text_because.resize(output.number + 1, None);
        }
        chosen.formats[output.number] = format;
        chosen.text_because[output.number] = why;
    }
    Ok(chosen)
}

/// The receive format of each of `columns` of `table`, or why one has none.
pub async fn column_types(
    client: &impl GenericClient,
    table: &TableName,
    columns: &[String],
) -> Result<Result<Vec<BinaryType>, String>, tokio_postgres::Error> {
    // Domains resolve to their base type, through domains over domains.
    let rows = client
        .query(
            "WITH RECURSIVE base AS (
                 SELECT a.attname::text AS column_name, format_type(a.atttypid, a.atttypmod) AS declared,
                        t.oid, t.typtype, t.typbasetype, t.typname, t.typnamespace
                   FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                  WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
                 UNION ALL
                 SELECT b.column_name, b.declared, t.oid, t.typtype, t.typbasetype, t.typname,
                        t.typnamespace
                   FROM base b JOIN pg_type t ON t.oid = b.typbasetype
                  WHERE b.typtype = 'd'
             )
             SELECT column_name, declared,
                    CASE WHEN typnamespace = 'pg_catalog'::regnamespace THEN typname::text END,
                    typtype::text
               FROM base WHERE typtype <> 'd'",
            &[&table.quoted()],
        )
        .await?;
    let mut types = Vec::with_capacity(columns.len());
    for column in columns {
        let Some(row) = rows.iter().find(|r| r.get::<_, &str>(0) == column) else {
            return Ok(Err(format!("column {column} is not in the table")));
        };
        let (declared, name, typtype): (&str, Option<&str>, &str) =
            (row.get(1), row.get(2), row.get(3));
        let typtype = typtype.as_bytes().first().copied().unwrap_or(b'b');
        match BinaryType::of_catalog_type(name, typtype) {
            Some(ty) => types.push(ty),
            None => {
                return Ok(Err(format!(
                    "column {column} is {declared}, which switchyard has no binary writer for"
                )))
            }
        }
    }
    Ok(Ok(types))
}
