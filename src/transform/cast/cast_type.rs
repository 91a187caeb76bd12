//! The types a plan can cast to, named the way PostgreSQL names them.

use std::fmt;

/// PostgreSQL 15's limit on `numeric` precision (`NUMERIC_MAX_PRECISION`).
const NUMERIC_MAX_PRECISION: u32 = 1000;
/// PostgreSQL 15's limit on `numeric` scale (`NUMERIC_MAX_SCALE`); negative scales, which it also
/// allows, cannot be written as the `u32` arguments a plan passes.
const NUMERIC_MAX_SCALE: u32 = 1000;

/// A cast target. `Numeric`'s typmod is `(precision, scale)` as in `numeric(10, 2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CastType {
    Bool,
    Int2,
    Int4,
    Int8,
    Numeric { typmod: Option<(u32, u32)> },
    Text,
    Date,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
    Jsonb,
}

impl CastType {
    /// The cast target for a type name as written in SQL (`integer`, `int4`, `decimal`,
    /// `timestamp with time zone`...), case-insensitive, with `args` the typmod in parentheses.
    /// `None` for names switchyard does not cast to, and for typmods PostgreSQL rejects or that
    /// switchyard would not enforce (such as `varchar(10)`, whose length it does not check).
    pub fn from_sql_name(name: &str, args: &[u32]) -> Option<CastType> {
        let is = |words: &str| {
            words
                .split(' ')
                .eq(name.split_ascii_whitespace().map(Lower))
        };
        let simple = [
            ("bool", CastType::Bool),
            ("boolean", CastType::Bool),
            ("int2", CastType::Int2),
            ("smallint", CastType::Int2),
            ("int", CastType::Int4),
            ("int4", CastType::Int4),
            ("integer", CastType::Int4),
            ("int8", CastType::Int8),
            ("bigint", CastType::Int8),
            ("text", CastType::Text),
            ("varchar", CastType::Text),
            ("character varying", CastType::Text),
            ("date", CastType::Date),
            ("timestamp", CastType::Timestamp),
            ("timestamp without time zone", CastType::Timestamp),
            ("timestamptz", CastType::TimestampTz),
            ("timestamp with time zone", CastType::TimestampTz),
            ("uuid", CastType::Uuid),
            ("json", CastType::Json),
            ("jsonb", CastType::Jsonb),
        ];
        if is("numeric") || is("decimal") {
            let typmod = match *args {
                [] => None,
                [precision] => Some((precision, 0)),
                [precision, scale] => Some((precision, scale)),
                _ => return None,
            };
            let valid = |(precision, scale): (u32, u32)| {
                (1..=NUMERIC_MAX_PRECISION).contains(&precision) && scale <= NUMERIC_MAX_SCALE
            };
            return typmod
                .is_none_or(valid)
                .then_some(CastType::Numeric { typmod });
        }
        if !args.is_empty() {
            return None;
        }
        simple
            .into_iter()
            .find_map(|(words, cast_type)| is(words).then_some(cast_type))
    }

    /// The name PostgreSQL's `format_type` gives the type, usable in SQL and in messages.
    pub fn sql_name(&self) -> String {
        match self {
            CastType::Numeric {
                typmod: Some((precision, scale)),
            } => format!("numeric({precision},{scale})"),
            other => other.base_name().to_owned(),
        }
    }

    /// The name without typmod.
    fn base_name(&self) -> &'static str {
        match self {
            CastType::Bool => "boolean",
            CastType::Int2 => "smallint",
            CastType::Int4 => "integer",
            CastType::Int8 => "bigint",
            CastType::Numeric { .. } => "numeric",
            CastType::Text => "text",
            CastType::Date => "date",
            CastType::Timestamp => "timestamp without time zone",
            CastType::TimestampTz => "timestamp with time zone",
            CastType::Uuid => "uuid",
            CastType::Json => "json",
            CastType::Jsonb => "jsonb",
        }
    }
}

impl fmt::Display for CastType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sql_name())
    }
}

/// A word compared ASCII case-insensitively, since SQL folds unquoted type names.
struct Lower<'a>(&'a str);

impl PartialEq<Lower<'_>> for &str {
    fn eq(&self, other: &Lower<'_>) -> bool {
        self.eq_ignore_ascii_case(other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_names_postgres_accepts() {
        let cases = [
            ("BOOLEAN", CastType::Bool),
            ("smallint", CastType::Int2),
            ("Int", CastType::Int4),
            ("int8", CastType::Int8),
            ("character  varying", CastType::Text),
            ("timestamp without time zone", CastType::Timestamp),
            ("TIMESTAMP WITH TIME ZONE", CastType::TimestampTz),
            ("timestamptz", CastType::TimestampTz),
            ("jsonb", CastType::Jsonb),
        ];
        for (name, expected) in cases {
            assert_eq!(CastType::from_sql_name(name, &[]), Some(expected), "{name}");
        }
    }

    #[test]
    fn numeric_takes_precision_and_scale() {
        let numeric = |typmod| Some(CastType::Numeric { typmod });
        assert_eq!(CastType::from_sql_name("decimal", &[]), numeric(None));
        assert_eq!(
            CastType::from_sql_name("numeric", &[7]),
            numeric(Some((7, 0)))
        );
        assert_eq!(
            CastType::from_sql_name("NUMERIC", &[10, 2]),
            numeric(Some((10, 2)))
        );
        assert_eq!(CastType::from_sql_name("numeric", &[0]), None);
        assert_eq!(CastType::from_sql_name("numeric", &[1001, 2]), None);
        assert_eq!(CastType::from_sql_name("numeric", &[1, 2, 3]), None);
    }

    #[test]
    fn rejects_unknown_names_and_unenforced_typmods() {
        assert_eq!(CastType::from_sql_name("float8", &[]), None);
        assert_eq!(CastType::from_sql_name("varchar", &[10]), None);
        assert_eq!(CastType::from_sql_name("timestamp with zone", &[]), None);
        assert_eq!(CastType::from_sql_name("", &[]), None);
    }

    #[test]
    fn sql_names_are_postgres_format_type() {
        let numeric = CastType::Numeric {
            typmod: Some((10, 2)),
        };
        assert_eq!(numeric.sql_name(), "numeric(10,2)");
        assert_eq!(CastType::TimestampTz.sql_name(), "timestamp with time zone");
        for cast_type in [
            CastType::Int4,
            numeric,
            CastType::Timestamp,
            CastType::Jsonb,
        ] {
            let name = cast_type.sql_name();
            let base = name.split('(').next().unwrap();
            let args: Vec<u32> = name
                .trim_end_matches(')')
                .split_once('(')
                .map(|(_, args)| args.split(',').map(|a| a.parse().unwrap()).collect())
                .unwrap_or_default();
            assert_eq!(CastType::from_sql_name(base, &args), Some(cast_type));
        }
    }
}
