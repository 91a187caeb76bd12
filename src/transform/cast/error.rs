//! Why a cast failed, worded like PostgreSQL's own error so an operator recognizes it.

use std::fmt::Display;

/// A value the cast refuses. The row cannot be written as is: the caller dead-letters it or
/// stops, and the fix is in the source data or in the plan's cast.
///
/// `message` is PostgreSQL's primary message (`invalid input syntax for type integer: "12a"`)
/// or, where switchyard is deliberately narrower than PostgreSQL, a message that says so and
/// names the fix. `detail` carries what PostgreSQL puts in its DETAIL line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct CastError {
    message: String,
    detail: Option<String>,
}

impl CastError {
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    pub(super) fn new(message: impl Into<String>) -> Self {
        CastError {
            message: message.into(),
            detail: None,
        }
    }

    pub(super) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// PostgreSQL's generic rejection by an input function.
    pub(super) fn invalid_syntax(type_name: &str, input: &str) -> Self {
        CastError::new(format!(
            "invalid input syntax for type {type_name}: {}",
            Quoted(input)
        ))
    }

    pub(super) fn cannot_cast(from: &str, to: &str) -> Self {
        CastError::new(format!("cannot cast type {from} to {to}"))
    }

    /// A message of the form `what: "input"`, as PostgreSQL words range errors.
    pub(super) fn about_input(what: &str, input: &str) -> Self {
        CastError::new(format!("{what}: {}", Quoted(input)))
    }
}

/// The input in double quotes, as PostgreSQL's messages show it (no escaping).
pub(super) struct Quoted<'a>(pub &'a str);

impl Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\"", self.0)
    }
}

/// A cast that fails fails the row's transform, with the cast's message.
impl From<CastError> for crate::transform::eval_error::EvalError {
    fn from(e: CastError) -> Self {
        crate::transform::eval_error::EvalError::new(e.to_string())
    }
}
