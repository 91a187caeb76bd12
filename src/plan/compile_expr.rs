//! Compiles one SQL expression of a plan (parsed by `sqlparser`, PostgreSQL dialect) into the
//! transform tree, resolving every name once. Each problem keeps the position the parser gave so
//! the plan's diagnostics can point at it; compilation goes on after an error to find the rest.

use std::borrow::Cow;

use sqlparser::ast::{
    self as sql, BinaryOperator, FunctionArg, FunctionArgExpr, FunctionArguments, Spanned,
    TrimWhereField, UnaryOperator,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::keywords::is_reserved;
use crate::transform::cast::{cast, CastType};
use crate::transform::expr::{ArithOp, CompareOp, Expr, Function};
use crate::transform::value::Value;

/// A problem at a 1-based (line, column) inside the expression text.
pub(crate) type ExprError = ((usize, usize), String);

/// The names an expression may use.
pub(crate) struct Names<'a> {
    /// Source columns read so far; a new column name is appended.
    pub columns: &'a mut Vec<String>,
    /// Derived values defined before this expression.
    pub derived: &'a [String],
    pub lookups: &'a [String],
    pub maps: &'a [String],
}

/// The deepest nesting of parentheses an expression may have. sqlparser backtracks over nested
/// function calls, so parsing time doubles with each level (found by fuzzing: 16 levels took
/// 6 s, 25 would take hours); an expression that deep is clearer split into derives anyway.
const MAX_NESTING: usize = 10;

/// Parses `text` as exactly one expression: trailing tokens are an error.
fn parse(text: &str) -> Result<sql::Expr, sqlparser::parser::ParserError> {
    let dialect = PostgreSqlDialect {};
    Parser::new(&dialect).try_with_sql(text).and_then(|mut p| {
        let e = p.parse_expr()?;
        p.expect_token(&sqlparser::tokenizer::Token::EOF)?;
        Ok(e)
    })
}

/// The expression printed back from its syntax tree, in parentheses, for SQL that switchyard
/// sends to the server itself (the cutover's counts filter by `when`). Never the text as
/// written: comments and whatever sqlparser's tokenizer and PostgreSQL's might read
/// differently stay out of the statement, and only the tree that was checked goes in.
pub(crate) fn canonical_sql(text: &str) -> Option<String> {
    parse(text).ok().map(|ast| format!("({ast})"))
}

/// Parses and compiles `text`, or returns every problem found.
pub(crate) fn compile(text: &str, names: &mut Names<'_>) -> Result<Expr, Vec<ExprError>> {
    if let Some(at) = too_deep(text) {
        return Err(vec![(
            at,
            format!(
                "parentheses nested more than {MAX_NESTING} deep: move inner parts into derives"
            ),
        )]);
    }
    let parsed = parse(text);
    let ast = match parsed {
        Ok(ast) => ast,
        Err(e) => return Err(vec![parser_error(&e.to_string())]),
    };
    let mut compiler = Compiler {
        names,
        errors: Vec::new(),
    };
    let expr = compiler.expr(&ast);
    if compiler.errors.is_empty() {
        Ok(expr)
    } else {
        Err(compiler.errors)
    }
}

/// The 1-based (line, column) of the first `(` nested deeper than [`MAX_NESTING`], outside
/// string literals and quoted identifiers.
fn too_deep(text: &str) -> Option<(usize, usize)> {
    let (mut depth, mut quote, mut line, mut column) = (0_usize, None, 1, 0);
    for c in text.chars() {
        column += 1;
        match (quote, c) {
            (_, '\n') => (line, column) = (line + 1, 0),
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some((line, column));
                }
            }
            (None, ')') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// sqlparser puts the position in its message: "... at Line: 1, Column: 9".
fn parser_error(message: &str) -> ExprError {
    let position = message.rfind(" at Line: ").and_then(|i| {
        let rest = &message[i + " at Line: ".len()..];
        let (line, column) = rest.split_once(", Column: ")?;
        Some((i, line.trim().parse().ok()?, column.trim().parse().ok()?))
    });
    let clean = message.trim_start_matches("sql parser error: ");
    match position {
        Some((_, line, column)) => {
            let text = clean.rsplit_once(" at Line: ").map_or(clean, |(m, _)| m);
            ((line, column), format!("syntax error: {text}"))
        }
        None => ((1, 1), format!("syntax error: {clean}")),
    }
}

struct Compiler<'n, 'a> {
    names: &'n mut Names<'a>,
    errors: Vec<ExprError>,
}

impl Compiler<'_, '_> {
    fn fail(&mut self, at: &impl Spanned, message: impl Into<String>) -> Expr {
        let start = at.span().start;
        self.errors
            .push(((start.line as usize, start.column as usize), message.into()));
        Expr::Literal(Value::Null)
    }

    fn boxed(&mut self, e: &sql::Expr) -> Box<Expr> {
        Box::new(self.expr(e))
    }

    fn expr(&mut self, e: &sql::Expr) -> Expr {
        use sql::Expr as E;
        match e {
            E::Identifier(ident) if ident.quote_style.is_none() && is_reserved(&ident.value) => {
                self.fail(
                    e,
                    format!(
                        "{} is a reserved word in PostgreSQL: write the column quoted, \"{}\"",
                        ident.value,
                        ident.value.to_lowercase()
                    ),
                )
            }
            E::Identifier(ident) => self.name(ident),
            E::CompoundIdentifier(_) => self.fail(
                e,
                "qualified names are not supported: name the column alone",
            ),
            E::Value(v) => self.literal(e, &v.value),
            E::Nested(inner) => self.expr(inner),
            E::UnaryOp { op, expr } => match op {
                UnaryOperator::Not => Expr::Not(self.boxed(expr)),
                UnaryOperator::Minus => Expr::Negate(self.boxed(expr)).with_int_range_check(),
                UnaryOperator::Plus => self.expr(expr),
                other => self.fail(e, format!("operator {other} is not supported")),
            },
            E::BinaryOp { left, op, right } => self.binary(e, left, op, right),
            E::IsNull(inner) => Expr::IsNull {
                expr: self.boxed(inner),
                negated: false,
            },
            E::IsNotNull(inner) => Expr::IsNull {
                expr: self.boxed(inner),
                negated: true,
            },
            E::IsDistinctFrom(l, r) => Expr::IsDistinct {
                left: self.boxed(l),
                right: self.boxed(r),
                negated: false,
            },
            E::IsNotDistinctFrom(l, r) => Expr::IsDistinct {
                left: self.boxed(l),
                right: self.boxed(r),
                negated: true,
            },
            E::InList {
                expr,
                list,
                negated,
            } => Expr::InList {
                expr: self.boxed(expr),
                list: list.iter().map(|i| self.expr(i)).collect(),
                negated: *negated,
            },
            E::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let inside = Expr::And(
                    Box::new(Expr::Compare(
                        CompareOp::GtEq,
                        self.boxed(expr),
                        self.boxed(low),
                    )),
                    Box::new(Expr::Compare(
                        CompareOp::LtEq,
                        self.boxed(expr),
                        self.boxed(high),
                    )),
                );
                if *negated {
                    Expr::Not(Box::new(inside))
                } else {
                    inside
                }
            }
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => Expr::Case {
                operand: operand.as_ref().map(|o| self.boxed(o)),
                branches: conditions
                    .iter()
                    .map(|w| (self.expr(&w.condition), self.expr(&w.result)))
                    .collect(),
                otherwise: else_result.as_ref().map(|o| self.boxed(o)),
            },
            E::Cast {
                expr, data_type, ..
            } => {
                let inner = self.boxed(expr);
                match cast_type(&data_type.to_string()) {
                    Some(to) => Expr::Cast(inner, to),
                    None => self.fail(e, format!("cast to type {data_type} is not supported")),
                }
            }
            E::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.expr(expr)];
                match substring_from {
                    Some(from) => args.push(self.expr(from)),
                    None => args.push(Expr::Literal(Value::Int(1))),
                }
                if let Some(count) = substring_for {
                    args.push(self.expr(count));
                }
                Expr::Call(Function::Substring, args)
            }
            E::Trim {
                expr,
                trim_where,
                trim_what,
                trim_characters,
            } => {
                let f = match trim_where {
                    Some(TrimWhereField::Leading) => Function::Ltrim,
                    Some(TrimWhereField::Trailing) => Function::Rtrim,
                    _ => Function::Btrim,
                };
                let mut args = vec![self.expr(expr)];
                if let Some(what) = trim_what {
                    args.push(self.expr(what));
                } else if let Some(chars) = trim_characters.as_ref().and_then(|c| c.first()) {
                    args.push(self.expr(chars));
                }
                Expr::Call(f, args)
            }
            E::Function(f) => self.function(e, f),
            other => self.fail(
                other,
                format!("expression not supported in a plan: {other}"),
            ),
        }
    }

    /// A bare name: a derived value if one of that name is defined earlier, else a column.
    fn name(&mut self, ident: &sql::Ident) -> Expr {
        // Unquoted names fold to lower case, as in PostgreSQL.
        let name = match ident.quote_style {
            Some(_) => ident.value.clone(),
            None => ident.value.to_lowercase(),
        };
        if let Some(i) = self.names.derived.iter().position(|d| *d == name) {
            return Expr::Derived(i);
        }
        let columns = &mut *self.names.columns;
        let index = columns.iter().position(|c| *c == name).unwrap_or_else(|| {
            columns.push(name);
            columns.len() - 1
        });
        Expr::Column(index)
    }

    fn literal(&mut self, at: &sql::Expr, v: &sql::Value) -> Expr {
        use sql::Value as V;
        Expr::Literal(match v {
            V::Null => Value::Null,
            V::Boolean(b) => Value::Bool(*b),
            V::Number(n, _) => match n.parse::<i64>() {
                Ok(i) => Value::Int(i),
                // PostgreSQL reads any other numeric constant as `numeric`, exactly.
                Err(_) => match cast(Value::text(n), &CastType::Numeric { typmod: None }) {
                    Ok(number @ Value::Numeric(_)) => number.into_owned(),
                    _ => return self.fail(at, format!("number out of range: {n}")),
                },
            },
            V::SingleQuotedString(s) | V::EscapedStringLiteral(s) => {
                Value::Text(Cow::Owned(s.clone()))
            }
            V::DollarQuotedString(s) => Value::Text(Cow::Owned(s.value.clone())),
            other => return self.fail(at, format!("literal not supported: {other}")),
        })
    }

    fn binary(
        &mut self,
        at: &sql::Expr,
        l: &sql::Expr,
        op: &BinaryOperator,
        r: &sql::Expr,
    ) -> Expr {
        use BinaryOperator as B;
        let (left, right) = (self.boxed(l), self.boxed(r));
        match op {
            B::And => Expr::And(left, right),
            B::Or => Expr::Or(left, right),
            B::StringConcat => Expr::Concat(left, right),
            B::Plus => Expr::Arith(ArithOp::Add, left, right).with_int_range_check(),
            B::Minus => Expr::Arith(ArithOp::Sub, left, right).with_int_range_check(),
            B::Multiply => Expr::Arith(ArithOp::Mul, left, right).with_int_range_check(),
            B::Divide => {
                // PostgreSQL truncates an integer quotient (`int4div`) and keeps the digits of a
                // numeric one: a bare source column does not say which it is.
                let untyped = |e: &Expr| matches!(e, Expr::Column(_));
                let integer = |e: &Expr| untyped(e) || e.int_type().is_some();
                if (untyped(&left) && integer(&right)) || (untyped(&right) && integer(&left)) {
                    return self.fail(
                        at,
                        format!(
                            "{at}: the plan does not know whether a bare source column is an integer (PostgreSQL truncates integer division) or numeric; cast it, e.g. `{l}::int / {r}` or `{l}::numeric / {r}`"
                        ),
                    );
                }
                Expr::Arith(ArithOp::Div, left, right).with_int_range_check()
            }
            B::Modulo => Expr::Arith(ArithOp::Mod, left, right).with_int_range_check(),
            B::Eq => Expr::Compare(CompareOp::Eq, left, right),
            B::NotEq => Expr::Compare(CompareOp::NotEq, left, right),
            B::Lt => Expr::Compare(CompareOp::Lt, left, right),
            B::LtEq => Expr::Compare(CompareOp::LtEq, left, right),
            B::Gt => Expr::Compare(CompareOp::Gt, left, right),
            B::GtEq => Expr::Compare(CompareOp::GtEq, left, right),
            other => self.fail(at, format!("operator {other} is not supported")),
        }
    }

    fn function(&mut self, at: &sql::Expr, f: &sql::Function) -> Expr {
        let name = f.name.to_string().to_lowercase();
        let args: Vec<&sql::Expr> = match &f.args {
            FunctionArguments::None => Vec::new(),
            FunctionArguments::List(list) => {
                let mut out = Vec::new();
                for arg in &list.args {
                    match arg {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => out.push(e),
                        _ => {
                            return self
                                .fail(at, format!("{name}: only plain arguments are supported"))
                        }
                    }
                }
                out
            }
            FunctionArguments::Subquery(_) => return self.fail(at, "subqueries are not supported"),
        };
        match name.as_str() {
            "uuid_v5" => self.uuid_v5(at, &args),
            "lookup" | "map" => self.named_table(at, &name, &args),
            "regexp_replace" => self.regexp_replace(at, &args),
            _ => match Function::from_name(&name) {
                Some((func, counts)) if counts.contains(&args.len()) => {
                    Expr::Call(func, args.iter().map(|a| self.expr(a)).collect())
                }
                Some(_) => self.fail(
                    at,
                    format!("{name}: wrong number of arguments ({})", args.len()),
                ),
                None => self.fail(at, format!("unknown function {name}")),
            },
        }
    }

    fn uuid_v5(&mut self, at: &sql::Expr, args: &[&sql::Expr]) -> Expr {
        let [ns, value] = args else {
            return self.fail(at, "uuid_v5(namespace, text) takes two arguments");
        };
        let namespace = match constant_text(ns).as_deref() {
            Some("url") => uuid::Uuid::NAMESPACE_URL,
            Some("dns") => uuid::Uuid::NAMESPACE_DNS,
            Some("oid") => uuid::Uuid::NAMESPACE_OID,
            Some("x500") => uuid::Uuid::NAMESPACE_X500,
            Some(other) => match uuid::Uuid::parse_str(other) {
                Ok(u) => u,
                Err(_) => {
                    return self.fail(
                        *ns,
                        "uuid_v5: namespace must be 'url', 'dns', 'oid', 'x500' or a uuid",
                    )
                }
            },
            None => return self.fail(*ns, "uuid_v5: the namespace must be a constant string"),
        };
        Expr::UuidV5 {
            namespace,
            name: self.boxed(value),
        }
    }

    fn named_table(&mut self, at: &sql::Expr, kind: &str, args: &[&sql::Expr]) -> Expr {
        let [table, value] = args else {
            return self.fail(at, format!("{kind}('name', value) takes two arguments"));
        };
        let Some(table_name) = constant_text(table) else {
            return self.fail(
                *table,
                format!("{kind}: the first argument must be a constant string"),
            );
        };
        let declared = if kind == "lookup" {
            self.names.lookups
        } else {
            self.names.maps
        };
        let Some(index) = declared.iter().position(|n| *n == table_name) else {
            let section = if kind == "lookup" { "lookups" } else { "maps" };
            return self.fail(
                *table,
                format!(
                    "{kind} '{table_name}' is not declared: add a [{section}.{table_name}] section"
                ),
            );
        };
        let input = self.boxed(value);
        if kind == "lookup" {
            Expr::Lookup {
                lookup: index,
                input,
            }
        } else {
            Expr::Map { map: index, input }
        }
    }

    fn regexp_replace(&mut self, at: &sql::Expr, args: &[&sql::Expr]) -> Expr {
        if !(3..=4).contains(&args.len()) {
            return self.fail(
                at,
                "regexp_replace(text, pattern, replacement [, flags]) takes 3 or 4 arguments",
            );
        }
        let Some(pattern) = constant_text(args[1]) else {
            return self.fail(
                args[1],
                "regexp_replace: the pattern must be a constant string",
            );
        };
        let flags = match args.get(3) {
            Some(f) => match constant_text(f) {
                Some(flags) => flags,
                None => return self.fail(*f, "regexp_replace: flags must be a constant string"),
            },
            None => String::new(),
        };
        if let Some(bad) = flags.chars().find(|c| !matches!(c, 'g' | 'i')) {
            return self.fail(
                args[3],
                format!("regexp_replace: flag '{bad}' is not supported (use g, i)"),
            );
        }
        let source = if flags.contains('i') {
            format!("(?i){pattern}")
        } else {
            pattern
        };
        match regex::Regex::new(&source) {
            Ok(pattern) => Expr::RegexpReplace {
                input: self.boxed(args[0]),
                pattern,
                replacement: self.boxed(args[2]),
                global: flags.contains('g'),
            },
            Err(e) => self.fail(args[1], format!("regexp_replace: invalid pattern: {e}")),
        }
    }
}

fn constant_text(e: &sql::Expr) -> Option<String> {
    match e {
        sql::Expr::Value(v) => match &v.value {
            sql::Value::SingleQuotedString(s) | sql::Value::EscapedStringLiteral(s) => {
                Some(s.clone())
            }
            _ => None,
        },
        _ => None,
    }
}

/// `numeric(14,2)` -> the cast type; names are matched as PostgreSQL spells them.
fn cast_type(spelled: &str) -> Option<CastType> {
    let lower = spelled.to_lowercase();
    let (name, args) = match lower.split_once('(') {
        Some((name, rest)) => {
            let inner = rest.trim_end().strip_suffix(')')?;
            let args: Option<Vec<u32>> = inner.split(',').map(|a| a.trim().parse().ok()).collect();
            (name.trim().to_owned(), args?)
        }
        None => (lower.trim().to_owned(), Vec::new()),
    };
    CastType::from_sql_name(&name, &args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sql_keeps_the_checked_tree_and_drops_comments() {
        assert_eq!(
            canonical_sql("parent_item_id IS NULL -- top level only").as_deref(),
            Some("(parent_item_id IS NULL)")
        );
        assert_eq!(
            canonical_sql("status = 'it''s' /* note */ AND \"Kind\" <> 'x'").as_deref(),
            Some("(status = 'it''s' AND \"Kind\" <> 'x')")
        );
        // Whatever follows the one expression makes it no expression at all.
        assert_eq!(canonical_sql("true) OR (SELECT pg_sleep(9)"), None);
        assert_eq!(canonical_sql("true; DROP TABLE t"), None);
    }

    fn compile_with(text: &str) -> Result<(Expr, Vec<String>), Vec<ExprError>> {
        let mut columns = Vec::new();
        let derived = vec!["stage".to_owned()];
        let lookups = vec!["project_stages".to_owned()];
        let mut names = Names {
            columns: &mut columns,
            derived: &derived,
            lookups: &lookups,
            maps: &[],
        };
        let e = compile(text, &mut names)?;
        Ok((e, columns))
    }

    #[test]
    fn dividing_a_bare_column_by_an_integer_must_say_which_division() {
        for text in ["qty / 2", "2 / qty", "qty / other", "qty / (1 + 1)"] {
            let errors = compile_with(text).unwrap_err();
            assert!(errors[0].1.contains("::int"), "{text}: {errors:?}");
        }
        for text in [
            "qty::int / 2",
            "qty::numeric / 2",
            "qty / 2.5",
            "qty::int / other::int",
        ] {
            assert!(compile_with(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn resolves_columns_and_derived_values_once() {
        let (_, columns) = compile_with("coalesce(budget, '') || stage || Budget").unwrap();
        assert_eq!(columns, vec!["budget"]);
    }

    #[test]
    fn reports_every_error_with_its_position() {
        let errors = compile_with("lowr(a) || lookup('nope', b)").unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0], ((1, 1), "unknown function lowr".to_owned()));
        assert_eq!(errors[1].0, (1, 19));
        assert!(errors[1].1.contains("[lookups.nope]"), "{}", errors[1].1);
    }

    #[test]
    fn reports_syntax_errors_with_their_position() {
        let errors = compile_with("a +").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].1.starts_with("syntax error"), "{}", errors[0].1);
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_before_parsing() {
        let nested = |depth: usize| format!("{}a{}", "lower(".repeat(depth), ")".repeat(depth));
        assert!(compile_with(&nested(MAX_NESTING)).is_ok());
        // 30 levels would keep sqlparser busy for hours.
        let errors = compile_with(&nested(30)).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, (1, 6 * MAX_NESTING + 6), "{}", errors[0].1);
        assert!(errors[0].1.contains("derives"), "{}", errors[0].1);
        // Parentheses inside literals do not count.
        assert!(compile_with(&format!("lower('{}')", "(".repeat(40))).is_ok());
    }

    #[test]
    fn trailing_tokens_are_an_error() {
        assert!(compile_with("a b").is_err());
    }
}
