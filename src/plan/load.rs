//! Reading a plan file: the TOML parsed into its mirror ([`super::file`]), then compiled
//! ([`super::compile`]), every problem collected with file, line and field.

use std::path::{Path, PathBuf};

use super::compile::Compile;
use super::compiled::Plan;
use super::diagnostics::{Collector, PlanErrors};
use super::file;

#[derive(Debug, thiserror::Error)]
pub enum PlanLoadError {
    #[error("cannot read plan {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] PlanErrors),
}

impl Plan {
    pub fn load(path: &Path) -> Result<Plan, PlanLoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanLoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Plan::parse(path, &text)?)
    }

    /// Compiles plan text; `path` names the file in diagnostics and anchors the SQL files.
    pub fn parse(path: &Path, text: &str) -> Result<Plan, PlanErrors> {
        let mut diags = Collector::new(path, text);
        let parsed: file::PlanFile = match toml::from_str(text) {
            Ok(p) => p,
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                diags.at(offset, "plan", e.message().to_owned());
                return Err(PlanErrors(diags.found));
            }
        };
        let plan = Compile {
            diags: &mut diags,
            dir: path.parent().unwrap_or(Path::new(".")),
            next_output: 0,
        }
        .plan(path, text, parsed);
        if diags.found.is_empty() {
            Ok(plan)
        } else {
            Err(PlanErrors(diags.found))
        }
    }
}
