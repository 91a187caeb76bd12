//! What verify compares for each output table, resolved once from the plan: the columns the
//! plan writes, the key, the mode, and which sources feed it.
//!
//! Lookup tables are not outputs of rows (their rows are created on the side); they take part
//! only through the ids the outputs hold.

use crate::pg::ident::{quote_ident, TableName};
use crate::plan::Plan;
use crate::transform::program::WriteMode;

/// One output table and the plan outputs that write it.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub table: TableName,
    pub key: Vec<String>,
    pub mode: WriteMode,
    /// Every column some source writes, in first-seen order; columns no source writes keep
    /// their defaults on both sides and are not compared.
    pub columns: Vec<String>,
    /// `(source index, output index)` of each plan output writing this table.
    pub feeds: Vec<(usize, usize)>,
}

impl OutputSpec {
    /// The distinct output tables of `plan`, in plan order. Outputs of one table must agree on
    /// key and mode, or the comparison would have no single meaning.
    pub fn from_plan(plan: &Plan) -> Result<Vec<OutputSpec>, String> {
        let mut specs: Vec<OutputSpec> = Vec::new();
        for (s, source) in plan.sources.iter().enumerate() {
            for (o, output) in source.outputs.iter().enumerate() {
                match specs.iter_mut().find(|spec| spec.table == output.table) {
                    Some(spec) => {
                        if spec.key != output.key || spec.mode != output.mode {
                            return Err(format!(
                                "{}: its outputs disagree on key or mode ({} writes key {:?})",
                                output.table, source.table, output.key
                            ));
                        }
                        for c in &output.columns {
                            if !spec.columns.contains(c) {
                                spec.columns.push(c.clone());
                            }
                        }
                        spec.feeds.push((s, o));
                    }
                    None => specs.push(OutputSpec {
                        table: output.table.clone(),
                        key: output.key.clone(),
                        mode: output.mode,
                        columns: output.columns.clone(),
                        feeds: vec![(s, o)],
                    }),
                }
            }
        }
        Ok(specs)
    }

    /// Whether rows are compared whole (`upsert`) or by key presence (`insert_if_absent`).
    pub fn keys_only(&self) -> bool {
        self.mode == WriteMode::InsertIfAbsent
    }

    /// `ROW(k1, k2)::text`: the key as one canonical text, for joins and bucket hashes.
    pub fn key_text(&self, alias: &str) -> String {
        row_text(alias, &self.key)
    }

    /// The canonical text of what is compared: the whole row, or only the key.
    pub fn row_text(&self, alias: &str) -> String {
        if self.keys_only() {
            self.key_text(alias)
        } else {
            row_text(alias, &self.columns)
        }
    }
}

/// `ROW(a.c1, a.c2)::text`: each value printed by its type's output function, so equal values
/// print alike whatever text the transform produced (a timestamp going into `timestamptz`).
fn row_text(alias: &str, columns: &[String]) -> String {
    let list: Vec<String> = columns
        .iter()
        .map(|c| format!("{alias}.{}", quote_ident(c)))
        .collect();
    format!("ROW({})::text", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn merged_outputs_become_one_spec_and_lookup_tables_none() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("transforms/legacy_to_projects/plan.toml");
        let plan = Plan::load(&path).unwrap();
        let specs = OutputSpec::from_plan(&plan).unwrap();
        let names: Vec<&str> = specs.iter().map(|s| s.table.name.as_str()).collect();
        assert_eq!(
            names,
            ["projects", "teams", "team_members", "tasks", "sub_tasks"]
        );
        assert_eq!(specs[0].feeds, [(0, 0), (1, 0)]);
        assert!(specs[1].keys_only() && !specs[0].keys_only());
        assert_eq!(
            specs[2].key_text("t"),
            r#"ROW(t."team_id", t."email")::text"#
        );
    }
}
