//! TEMPORARY stub until the PG-exact cast layer lands (branch wt-cast).
use super::value::Value;

#[derive(Debug, Clone, PartialEq)]
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
    pub fn from_sql_name(name: &str, args: &[u32]) -> Option<CastType> {
        Some(match name {
            "int" | "integer" | "int4" => CastType::Int4,
            "bigint" | "int8" => CastType::Int8,
            "smallint" | "int2" => CastType::Int2,
            "numeric" | "decimal" => CastType::Numeric {
                typmod: match args {
                    [p, s] => Some((*p, *s)),
                    [p] => Some((*p, 0)),
                    _ => None,
                },
            },
            "text" => CastType::Text,
            "date" => CastType::Date,
            "timestamp" => CastType::Timestamp,
            "timestamptz" => CastType::TimestampTz,
            "uuid" => CastType::Uuid,
            "jsonb" => CastType::Jsonb,
            "json" => CastType::Json,
            "bool" | "boolean" => CastType::Bool,
            _ => return None,
        })
    }
}
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct CastError {
    message: String,
}
pub fn cast<'a>(value: Value<'a>, to: &CastType) -> Result<Value<'a>, CastError> {
    match (value, to) {
        (Value::Text(t), CastType::Int2 | CastType::Int4 | CastType::Int8) => {
            t.trim().parse().map(Value::Int).map_err(|_| CastError {
                message: format!("invalid input syntax for type integer: \"{t}\""),
            })
        }
        (Value::Text(t), CastType::Numeric { .. }) => t
            .trim()
            .parse()
            .map(|d| Value::Numeric(super::value::Numeric::Finite(d)))
            .map_err(|_| CastError {
                message: format!("invalid input syntax for type numeric: \"{t}\""),
            }),
        (v, _) => Ok(v),
    }
}
