//! Evaluates a compiled expression against one row.
//!
//! Source columns arrive as text, like PostgreSQL's `unknown` literals: an operator whose other
//! side is typed (a number, a date, ...) casts the text to that type with the input-function
//! rules, so `monthly_fee * 12` and `due < '2024-01-01'::date` mean what they mean in SQL. Text
//! that goes into the target unchanged is never parsed at all.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::cast::{cast, CastType};
pub use super::eval_error::EvalError;
use super::expr::{ArithOp, CompareOp, Expr, Function};
use super::functions;
use super::numeric;
use super::value::{text_of, Numeric, Value};

/// Resolves lookup values to their ids, creating rows on a miss. Implemented by the sink (a
/// cache in front of the target) and by an in-memory table in tests.
pub trait Lookups: Sync {
    fn id(&self, lookup: usize, name: &str) -> Result<i64, EvalError>;
}

/// A plan's value map: text keys to values, with a default for everything else.
#[derive(Debug, Clone)]
pub struct ValueMap {
    pub name: String,
    pub entries: std::collections::HashMap<String, Value<'static>>,
    pub default: Value<'static>,
}

/// What an expression can read: the row, the values derived from it so far, and the plan.
///
/// Values from the row and from earlier derives are cloned out of their slices, which is free
/// for text borrowed from the row and lets a derive be pushed while the others are read.
pub struct Scope<'s, 'r> {
    pub columns: &'s [Value<'r>],
    pub derived: &'s [Value<'r>],
    pub maps: &'r [ValueMap],
    pub lookups: &'r dyn Lookups,
}

impl Expr {
    pub fn eval<'r>(&'r self, scope: &Scope<'_, 'r>) -> Result<Value<'r>, EvalError> {
        Ok(match self {
            Expr::Literal(v) => borrow(v),
            Expr::Column(i) => scope.columns[*i].clone(),
            Expr::Derived(i) => scope.derived[*i].clone(),
            Expr::Cast(e, to) => cast(e.eval(scope)?, to)?,
            Expr::Not(e) => match truth(e.eval(scope)?)? {
                Some(b) => Value::Bool(!b),
                None => Value::Null,
            },
            Expr::Negate(e) => arith(ArithOp::Sub, Value::Int(0), e.eval(scope)?)?,
            Expr::And(a, b) => match truth(a.eval(scope)?)? {
                Some(false) => Value::Bool(false),
                left => match (left, truth(b.eval(scope)?)?) {
                    (_, Some(false)) => Value::Bool(false),
                    (Some(true), Some(true)) => Value::Bool(true),
                    _ => Value::Null,
                },
            },
            Expr::Or(a, b) => match truth(a.eval(scope)?)? {
                Some(true) => Value::Bool(true),
                left => match (left, truth(b.eval(scope)?)?) {
                    (_, Some(true)) => Value::Bool(true),
                    (Some(false), Some(false)) => Value::Bool(false),
                    _ => Value::Null,
                },
            },
            Expr::Compare(op, a, b) => match compare(&a.eval(scope)?, &b.eval(scope)?)? {
                None => Value::Null,
                Some(ord) => Value::Bool(op.holds(ord)),
            },
            Expr::Arith(op, a, b) => arith(*op, a.eval(scope)?, b.eval(scope)?)?,
            Expr::Concat(a, b) => match (a.eval(scope)?, b.eval(scope)?) {
                (Value::Null, _) | (_, Value::Null) => Value::Null,
                (a, b) => {
                    let (a, b) = (text_of(a), text_of(b));
                    let mut out = String::with_capacity(a.len() + b.len());
                    out.push_str(&a);
                    out.push_str(&b);
                    Value::Text(Cow::Owned(out))
                }
            },
            Expr::IsNull { expr, negated } => Value::Bool(expr.eval(scope)?.is_null() != *negated),
            Expr::IsDistinct {
                left,
                right,
                negated,
            } => {
                let (l, r) = (left.eval(scope)?, right.eval(scope)?);
                let distinct = match (l.is_null(), r.is_null()) {
                    (true, true) => false,
                    (true, false) | (false, true) => true,
                    _ => compare(&l, &r)? != Some(Ordering::Equal),
                };
                Value::Bool(distinct != *negated)
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => in_list(expr, list, *negated, scope)?,
            Expr::Case {
                operand,
                branches,
                otherwise,
            } => {
                let operand = operand.as_ref().map(|o| o.eval(scope)).transpose()?;
                for (when, then) in branches {
                    let hit = match &operand {
                        Some(o) => compare(o, &when.eval(scope)?)? == Some(Ordering::Equal),
                        None => truth(when.eval(scope)?)? == Some(true),
                    };
                    if hit {
                        return then.eval(scope);
                    }
                }
                match otherwise {
                    Some(e) => e.eval(scope)?,
                    None => Value::Null,
                }
            }
            Expr::Call(f, args) => call(*f, args, scope)?,
            Expr::RegexpReplace {
                input,
                pattern,
                replacement,
                global,
            } => match (input.eval(scope)?, replacement.eval(scope)?) {
                (Value::Null, _) | (_, Value::Null) => Value::Null,
                (input, replacement) => functions::regexp_replace(
                    text_of(input),
                    pattern,
                    &text_of(replacement),
                    *global,
                ),
            },
            Expr::UuidV5 { namespace, name } => match name.eval(scope)? {
                Value::Null => Value::Null,
                name => Value::Uuid(uuid::Uuid::new_v5(namespace, text_of(name).as_bytes())),
            },
            Expr::Map { map, input } => {
                let map = &scope.maps[*map];
                match input.eval(scope)? {
                    Value::Null => borrow(&map.default),
                    v => match map.entries.get(text_of(v).as_ref()) {
                        Some(hit) => borrow(hit),
                        None => borrow(&map.default),
                    },
                }
            }
            Expr::Lookup { lookup, input } => match input.eval(scope)? {
                Value::Null => Value::Null,
                v => Value::Int(scope.lookups.id(*lookup, &text_of(v))?),
            },
        })
    }
}

impl CompareOp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            CompareOp::Eq => ord == Ordering::Equal,
            CompareOp::NotEq => ord != Ordering::Equal,
            CompareOp::Lt => ord == Ordering::Less,
            CompareOp::LtEq => ord != Ordering::Greater,
            CompareOp::Gt => ord == Ordering::Greater,
            CompareOp::GtEq => ord != Ordering::Less,
        }
    }
}

/// A value that borrows from `v` instead of copying its text.
fn borrow<'r>(v: &'r Value<'_>) -> Value<'r> {
    match v {
        Value::Text(t) => Value::Text(Cow::Borrowed(t.as_ref())),
        Value::Json(t) => Value::Json(Cow::Borrowed(t.as_ref())),
        Value::Null => Value::Null,
        Value::Bool(b) => Value::Bool(*b),
        Value::Int(i) => Value::Int(*i),
        Value::Numeric(n) => Value::Numeric(n.clone()),
        Value::Date(d) => Value::Date(*d),
        Value::Timestamp(t) => Value::Timestamp(*t),
        Value::TimestampTz(t) => Value::TimestampTz(*t),
        Value::Uuid(u) => Value::Uuid(*u),
    }
}

/// SQL's three-valued truth of a condition.
fn truth(v: Value<'_>) -> Result<Option<bool>, EvalError> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(b)),
        Value::Text(_) => match cast(v, &CastType::Bool)? {
            Value::Bool(b) => Ok(Some(b)),
            _ => Ok(None),
        },
        other => Err(EvalError::new(format!(
            "argument of a condition must be type boolean, not type {}",
            other.type_name()
        ))),
    }
}

/// The type a text operand is read as when the other operand is typed.
fn cast_type_of(v: &Value<'_>) -> Option<CastType> {
    Some(match v {
        Value::Bool(_) => CastType::Bool,
        Value::Int(_) => CastType::Int8,
        Value::Numeric(_) => CastType::Numeric { typmod: None },
        Value::Date(_) => CastType::Date,
        Value::Timestamp(_) => CastType::Timestamp,
        Value::TimestampTz(_) => CastType::TimestampTz,
        Value::Uuid(_) => CastType::Uuid,
        Value::Null | Value::Text(_) | Value::Json(_) => return None,
    })
}

/// Compares two values as SQL would, reading a text side as the other side's type.
pub(crate) fn compare(a: &Value<'_>, b: &Value<'_>) -> Result<Option<Ordering>, EvalError> {
    let coerced;
    let (a, b) = match (a, b) {
        (Value::Text(_), other) if cast_type_of(other).is_some() => {
            coerced = cast(borrow(a), &cast_type_of(other).unwrap())?;
            (&coerced, b)
        }
        (other, Value::Text(_)) if cast_type_of(other).is_some() => {
            coerced = cast(borrow(b), &cast_type_of(other).unwrap())?;
            (a, &coerced)
        }
        _ => (a, b),
    };
    if a.is_null() || b.is_null() {
        return Ok(None);
    }
    a.sql_cmp(b).map(Some).ok_or_else(|| {
        EvalError::new(format!(
            "operator does not exist: {} = {}",
            a.type_name(),
            b.type_name()
        ))
    })
}

fn in_list<'r>(
    expr: &'r Expr,
    list: &'r [Expr],
    negated: bool,
    scope: &Scope<'_, 'r>,
) -> Result<Value<'r>, EvalError> {
    let needle = expr.eval(scope)?;
    if needle.is_null() {
        return Ok(Value::Null);
    }
    let mut saw_null = false;
    for item in list {
        match compare(&needle, &item.eval(scope)?)? {
            Some(Ordering::Equal) => return Ok(Value::Bool(!negated)),
            None => saw_null = true,
            Some(_) => {}
        }
    }
    Ok(if saw_null {
        Value::Null
    } else {
        Value::Bool(negated)
    })
}

/// Arithmetic on integers (checked, like int8) and numerics; text reads as numeric.
fn arith<'r>(op: ArithOp, a: Value<'r>, b: Value<'r>) -> Result<Value<'r>, EvalError> {
    let as_number = |v: Value<'r>| -> Result<Value<'r>, EvalError> {
        match v {
            Value::Text(_) => Ok(cast(v, &CastType::Numeric { typmod: None })?),
            Value::Null | Value::Int(_) | Value::Numeric(_) => Ok(v),
            other => Err(EvalError::new(format!(
                "arithmetic on type {} is not supported",
                other.type_name()
            ))),
        }
    };
    match (as_number(a)?, as_number(b)?) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::Int(x), Value::Int(y)) => int_arith(op, x, y).map(Value::Int),
        (x, y) => numeric_arith(op, &to_numeric(x), &to_numeric(y)).map(Value::Numeric),
    }
}

fn to_numeric(v: Value<'_>) -> Numeric {
    match v {
        Value::Int(i) => Numeric::from_i64(i),
        Value::Numeric(n) => n,
        _ => Numeric::NaN,
    }
}

/// Integer arithmetic as `int8pl`, `int8mi`, `int8mul`, `int8div` and `int8mod` do it:
/// overflow is an error, division truncates, and `x % -1` is 0 even for the minimum value.
fn int_arith(op: ArithOp, x: i64, y: i64) -> Result<i64, EvalError> {
    let out = match op {
        ArithOp::Add => x.checked_add(y),
        ArithOp::Sub => x.checked_sub(y),
        ArithOp::Mul => x.checked_mul(y),
        ArithOp::Div | ArithOp::Mod if y == 0 => {
            return Err(EvalError::new("division by zero"));
        }
        ArithOp::Div => x.checked_div(y),
        ArithOp::Mod if y == -1 => Some(0),
        ArithOp::Mod => x.checked_rem(y),
    };
    out.ok_or_else(|| EvalError::new("bigint out of range"))
}

fn numeric_arith(op: ArithOp, x: &Numeric, y: &Numeric) -> Result<Numeric, EvalError> {
    match op {
        ArithOp::Add => numeric::add(x, y),
        ArithOp::Sub => numeric::sub(x, y),
        ArithOp::Mul => numeric::mul(x, y),
        ArithOp::Div => numeric::div(x, y),
        ArithOp::Mod => numeric::modulo(x, y),
    }
}

fn call<'r>(f: Function, args: &'r [Expr], scope: &Scope<'_, 'r>) -> Result<Value<'r>, EvalError> {
    match f {
        Function::Coalesce => {
            for a in args {
                let v = a.eval(scope)?;
                if !v.is_null() {
                    return Ok(v);
                }
            }
            Ok(Value::Null)
        }
        Function::Nullif => {
            let a = args[0].eval(scope)?;
            let b = args[1].eval(scope)?;
            Ok(match compare(&a, &b)? {
                Some(Ordering::Equal) => Value::Null,
                _ => a,
            })
        }
        Function::Concat => {
            let mut out = String::new();
            for a in args {
                let v = a.eval(scope)?;
                if !v.is_null() {
                    out.push_str(&text_of(v));
                }
            }
            Ok(Value::Text(Cow::Owned(out)))
        }
        Function::Greatest | Function::Least => {
            let mut best: Option<Value<'r>> = None;
            for a in args {
                let v = a.eval(scope)?;
                if v.is_null() {
                    continue;
                }
                let replace = match &best {
                    None => true,
                    Some(b) => {
                        let ord = compare(&v, b)?;
                        (f == Function::Greatest && ord == Some(Ordering::Greater))
                            || (f == Function::Least && ord == Some(Ordering::Less))
                    }
                };
                if replace {
                    best = Some(v);
                }
            }
            Ok(best.unwrap_or(Value::Null))
        }
        _ => {
            let mut values = Vec::with_capacity(args.len());
            for a in args {
                let v = a.eval(scope)?;
                if v.is_null() {
                    // Every remaining built-in is strict: NULL in, NULL out.
                    return Ok(Value::Null);
                }
                values.push(v);
            }
            functions::call_strict(f, values)
        }
    }
}
