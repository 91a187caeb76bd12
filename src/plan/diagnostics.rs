//! Errors in a plan, each pointing at the file, line, column and field, all of them at once.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a plan file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Where in the plan's structure, e.g. `sources[1].outputs[0].columns.budget`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.field,
            self.message
        )
    }
}

/// Every problem found in a plan; loading fails with all of them, not the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanErrors(pub Vec<Diagnostic>);

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the plan has {} error(s):", self.0.len())?;
        for d in &self.0 {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics against one file's text.
pub(crate) struct Collector<'a> {
    file: &'a Path,
    text: &'a str,
    pub(crate) found: Vec<Diagnostic>,
}

impl<'a> Collector<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Collector {
            file,
            text,
            found: Vec::new(),
        }
    }

    /// Reports a problem at a byte offset of the file.
    pub(crate) fn at(
        &mut self,
        offset: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = line_column(self.text, offset);
        self.push(line, column, field, message);
    }

    /// Reports a problem inside a string value whose span is `span`, at the 1-based line and
    /// column the expression parser gave relative to the string's content.
    pub(crate) fn inside(
        &mut self,
        span: &Range<usize>,
        inner: (usize, usize),
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let quote = if self.text[span.start..].starts_with("\"\"\"")
            || self.text[span.start..].starts_with("'''")
        {
            3
        } else {
            1
        };
        let (line, column) = line_column(self.text, span.start + quote);
        let (inner_line, inner_column) = (inner.0.max(1), inner.1.max(1));
        if inner_line == 1 {
            self.push(line, column + inner_column - 1, field, message);
        } else {
            self.push(line + inner_line - 1, inner_column, field, message);
        }
    }

    pub(crate) fn push(
        &mut self,
        line: usize,
        column: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.found.push(Diagnostic {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        });
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines_and_columns() {
        let text = "a\nbcd\nef";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 2));
        assert_eq!(line_column(text, 6), (3, 1));
    }
}
