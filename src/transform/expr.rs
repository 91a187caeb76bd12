//! The compiled form of a plan expression: a tree built once at load, walked per row.
//!
//! Names are resolved at compile time: a column is an index into the row, a derived value an
//! index into the row's derived values, a lookup an index into the plan's lookup tables, a value
//! map an index into its maps. Nothing is looked up by name on the hot path.

use regex::Regex;
use uuid::Uuid;

use super::cast::CastType;
use super::value::Value;

#[derive(Debug, Clone)]
pub enum Expr {
    Literal(Value<'static>),
    /// The source row's column at this index (of the columns the plan reads).
    Column(usize),
    /// A value the source plan derived earlier for the same row.
    Derived(usize),
    Cast(Box<Expr>, CastType),
    Not(Box<Expr>),
    Negate(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(CompareOp, Box<Expr>, Box<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    /// `||`: NULL if either side is NULL, as in SQL.
    Concat(Box<Expr>, Box<Expr>),
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    IsDistinct {
        left: Box<Expr>,
        right: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Case {
        operand: Option<Box<Expr>>,
        branches: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    Call(Function, Vec<Expr>),
    /// `regexp_replace` with a constant pattern, compiled at load.
    RegexpReplace {
        input: Box<Expr>,
        pattern: Regex,
        replacement: Box<Expr>,
        global: bool,
    },
    UuidV5 {
        namespace: Uuid,
        name: Box<Expr>,
    },
    /// `map('name', expr)`: a value map of the plan, with its default.
    Map {
        map: usize,
        input: Box<Expr>,
    },
    /// `lookup('table', expr)`: the id of the value in a lookup table, created on a miss.
    Lookup {
        lookup: usize,
        input: Box<Expr>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// Built-in functions with a fixed argument count, named as in PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Lower,
    Upper,
    /// `trim(x)`, `btrim(x [, chars])`.
    Btrim,
    Ltrim,
    Rtrim,
    Replace,
    /// `substring(x, from [, for])`, 1-based like SQL.
    Substring,
    Length,
    /// `concat(...)`: NULL arguments are skipped, unlike `||`.
    Concat,
    Coalesce,
    Nullif,
    Greatest,
    Least,
}

impl Function {
    /// The function for a SQL name, with its accepted argument counts.
    pub fn from_name(name: &str) -> Option<(Function, std::ops::RangeInclusive<usize>)> {
        use Function::*;
        Some(match name {
            "lower" => (Lower, 1..=1),
            "upper" => (Upper, 1..=1),
            "trim" | "btrim" => (Btrim, 1..=2),
            "ltrim" => (Ltrim, 1..=2),
            "rtrim" => (Rtrim, 1..=2),
            "replace" => (Replace, 3..=3),
            "substring" | "substr" => (Substring, 2..=3),
            "length" | "char_length" => (Length, 1..=1),
            "concat" => (Concat, 1..=usize::MAX),
            "coalesce" => (Coalesce, 1..=usize::MAX),
            "nullif" => (Nullif, 2..=2),
            "greatest" => (Greatest, 1..=usize::MAX),
            "least" => (Least, 1..=usize::MAX),
            _ => return None,
        })
    }
}

impl Expr {
    /// The integer type PostgreSQL gives this expression, when it is one statically: an integer
    /// literal is `integer` when it fits (else `bigint`), a cast names its type, and arithmetic
    /// on two integers has the wider one (`int2pl`, `int24mul`, `int48div`...).
    pub fn int_type(&self) -> Option<CastType> {
        use CastType::{Int2, Int4, Int8};
        match self {
            Expr::Literal(Value::Int(i)) => Some(if i32::try_from(*i).is_ok() {
                Int4
            } else {
                Int8
            }),
            Expr::Cast(_, t @ (Int2 | Int4 | Int8)) => Some(*t),
            Expr::Negate(e) => e.int_type(),
            Expr::Arith(_, a, b) => match (a.int_type()?, b.int_type()?) {
                (Int8, _) | (_, Int8) => Some(Int8),
                (Int4, _) | (_, Int4) => Some(Int4),
                _ => Some(Int2),
            },
            _ => None,
        }
    }

    /// Wraps integer arithmetic narrower than `bigint` in a range check of its type, so that
    /// `2147483647 + 1` fails with "integer out of range" as in PostgreSQL instead of giving the
    /// `bigint` answer (the arithmetic itself runs in `i64`, where it cannot overflow).
    pub fn with_int_range_check(self) -> Expr {
        match self.int_type() {
            Some(t @ (CastType::Int2 | CastType::Int4)) => Expr::Cast(Box::new(self), t),
            _ => self,
        }
    }

    /// Whether PostgreSQL can evaluate this expression as written: no derived value, no
    /// switchyard function (`uuid_v5`, `map`, `lookup`). The cutover then runs it on the
    /// source table itself.
    pub fn is_plain_sql(&self) -> bool {
        let mut plain = true;
        self.walk(&mut |node| {
            if matches!(
                node,
                Expr::Derived(_) | Expr::UuidV5 { .. } | Expr::Map { .. } | Expr::Lookup { .. }
            ) {
                plain = false;
            }
        });
        plain
    }

    /// Visits this node and every node below it.
    pub fn walk(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Literal(_) | Expr::Column(_) | Expr::Derived(_) => {}
            Expr::Cast(e, _) | Expr::Not(e) | Expr::Negate(e) => e.walk(f),
            Expr::IsNull { expr, .. } => expr.walk(f),
            Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Compare(_, a, b)
            | Expr::Arith(_, a, b)
            | Expr::Concat(a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::IsDistinct { left, right, .. } => {
                left.walk(f);
                right.walk(f);
            }
            Expr::InList { expr, list, .. } => {
                expr.walk(f);
                list.iter().for_each(|e| e.walk(f));
            }
            Expr::Case {
                operand,
                branches,
                otherwise,
            } => {
                operand.iter().for_each(|e| e.walk(f));
                for (w, t) in branches {
                    w.walk(f);
                    t.walk(f);
                }
                otherwise.iter().for_each(|e| e.walk(f));
            }
            Expr::Call(_, args) => args.iter().for_each(|e| e.walk(f)),
            Expr::RegexpReplace {
                input, replacement, ..
            } => {
                input.walk(f);
                replacement.walk(f);
            }
            Expr::UuidV5 { name, .. } => name.walk(f),
            Expr::Map { input, .. } | Expr::Lookup { input, .. } => input.walk(f),
        }
    }
}
