//! The migration plan: a TOML file in `transforms/` plus the SQL files its phases run.
//!
//! [`Plan::load`] (`load.rs`) reads the file into its serde mirror ([`file`]); the compile
//! pass (`compile.rs`) checks it and compiles every expression once ([`compile_expr`]) into
//! the compiled [`Plan`] (`compiled.rs`), whose sources carry the transforms' program
//! ([`crate::transform::program`]). The hot path only ever sees that. All problems are
//! reported together, each with file, line, column and field ([`diagnostics`]).

mod compile;
pub(crate) mod compile_expr;
mod compiled;
pub mod diagnostics;
mod duplicate_sources;
pub mod file;
mod keywords;
mod load;
pub mod reverse;
mod transaction_control;

#[cfg(test)]
mod never_panics;

#[cfg(test)]
use std::path::Path;

pub use compiled::{CutoverPlan, Dependents, LookupPlan, Phases, Plan, SqlFile, Stage};
pub use file::{CutoverSide, Disposition, LegacyNames, OnError, SlotDisposal};
pub use load::PlanLoadError;
pub use reverse::{ReversePlan, ReverseTable};

/// The seed plan of `transforms/legacy_to_projects`, for unit tests anywhere in the crate.
#[cfg(test)]
pub(crate) fn seed_plan() -> Plan {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("transforms/legacy_to_projects/plan.toml");
    Plan::load(&path).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_plan_reports_every_error_with_file_line_and_field() {
        let text = r#"name = "demo"
[[sources]]
table = "t"
key = ["id"]
[sources.derive]
a = "lowr(x)"
[[sources.outputs]]
table = "o"
key = ["id"]
when = "a ="
[sources.outputs.columns]
id = "lookup('missing', a)"
"#;
        let errors = Plan::parse(Path::new("p.toml"), text).unwrap_err().0;
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{rendered:#?}");
        assert_eq!(
            rendered[0],
            "p.toml:6:6: sources[0].derive.a: unknown function lowr"
        );
        assert!(rendered[1].starts_with("p.toml:10:"), "{}", rendered[1]);
        assert!(rendered[1].contains("sources[0].outputs[0].when: syntax error"));
        assert!(
            rendered[2].starts_with("p.toml:12:14: sources[0].outputs[0].columns.id:"),
            "{}",
            rendered[2]
        );
    }

    #[test]
    fn after_backfill_entries_are_files_or_lists_of_files_run_together() {
        let dir = std::env::temp_dir().join(format!("switchyard-stages-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["a.sql", "b.sql", "c.sql"] {
            std::fs::write(dir.join(f), format!("-- {f}")).unwrap();
        }
        let text = "name = \"x\"\n[phases]\nafter_backfill = [\"a.sql\", [\"b.sql\", \"c.sql\"]]\n";
        let plan = Plan::parse(&dir.join("p.toml"), text).unwrap();
        let stages: Vec<Vec<&str>> = plan
            .phases
            .after_backfill
            .iter()
            .map(|s| s.files.iter().map(|f| f.sql.as_str()).collect())
            .collect();
        assert_eq!(stages, [vec!["-- a.sql"], vec!["-- b.sql", "-- c.sql"]]);
        let flat: Vec<&str> = plan
            .phases
            .after_backfill_files()
            .map(|f| f.sql.as_str())
            .collect();
        assert_eq!(flat, ["-- a.sql", "-- b.sql", "-- c.sql"]);

        // An empty stage, a file twice in one stage, a missing file, a list in a list: each
        // named with its line and field.
        let text = "name = \"x\"\n[phases]\nafter_backfill = [\n  [],\n  [\"a.sql\", \"a.sql\"],\n  [\"nope.sql\"],\n]\n";
        let errors = Plan::parse(&dir.join("p.toml"), text).unwrap_err().0;
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{rendered:#?}");
        assert_eq!(
            (errors[0].line, errors[0].field.as_str()),
            (4, "phases.after_backfill")
        );
        assert!(errors[0].message.contains("lists no file"), "{rendered:?}");
        assert_eq!(errors[1].line, 5);
        assert!(
            errors[1].message.contains("a.sql is listed twice"),
            "{rendered:?}"
        );
        assert_eq!(errors[2].line, 6);
        assert!(errors[2].message.contains("nope.sql"), "{rendered:?}");
        let text = "name = \"x\"\n[phases]\nafter_backfill = [[[\"a.sql\"]]]\n";
        let errors = Plan::parse(&dir.join("p.toml"), text).unwrap_err().0;
        assert_eq!(errors[0].line, 3, "{}", errors[0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unknown_field_is_refused_with_its_line() {
        let errors = Plan::parse(Path::new("p.toml"), "name = \"x\"\nsourcez = []\n")
            .unwrap_err()
            .0;
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].line, errors[0].column), (2, 1));
        assert!(
            errors[0].message.contains("sourcez"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn an_output_key_must_come_from_the_source_key_for_deletes_to_find_it() {
        let text = r#"name = "demo"
[[sources]]
table = "t"
key = ["id"]
[sources.derive]
ident = "uuid_v5('url', 't:' || id)"
label = "lower(name)"
[[sources.outputs]]
table = "by_id"
key = ["id"]
[sources.outputs.columns]
id = "ident"
name = "name"
[[sources.outputs]]
table = "by_name"
key = ["label"]
[sources.outputs.columns]
label = "label"
"#;
        let plan = Plan::parse(Path::new("p.toml"), text).unwrap();
        let source = &plan.sources[0];
        assert!(source.key_from_source_key(&source.outputs[0]));
        assert!(!source.key_from_source_key(&source.outputs[1]));
    }

    #[test]
    fn outputs_are_numbered_once_across_sources_in_plan_order() {
        let plan = seed_plan();
        let numbered: Vec<(usize, usize)> = plan.outputs().map(|(s, o)| (s, o.number)).collect();
        let expected: Vec<(usize, usize)> = plan
            .sources
            .iter()
            .enumerate()
            .flat_map(|(s, source)| source.outputs.iter().map(move |_| s))
            .enumerate()
            .map(|(number, s)| (s, number))
            .collect();
        assert_eq!(numbered, expected);
        assert!(plan.sources.len() > 1 && numbered.len() > plan.sources.len());
    }

    #[test]
    fn a_schema_field_takes_the_table_literally_and_quoted_identifiers_name_any_column() {
        let text = r#"name = "demo"
[[sources]]
schema = 'Odd "Schema"'
table = 'dotted.name'
key = ["Id"]
[[sources.outputs]]
schema = "tgt"
table = 'My "Out"'
key = ["Key"]
[sources.outputs.columns]
"Key" = '"Id"'
"select" = '"select"'
'Their "Col"' = '"My ""Col"""'
"#;
        let plan = Plan::parse(Path::new("p.toml"), text).unwrap();
        let source = &plan.sources[0];
        assert_eq!(source.table.quoted(), r#""Odd ""Schema"""."dotted.name""#);
        assert_eq!(source.columns, ["Id", "select", r#"My "Col""#]);
        assert_eq!(source.outputs[0].table.quoted(), r#""tgt"."My ""Out""""#);
        assert_eq!(
            source.outputs[0].columns,
            ["Key", "select", r#"Their "Col""#]
        );
    }

    #[test]
    fn a_reserved_word_unquoted_or_a_bad_schema_is_refused_with_its_line() {
        let text = r#"name = "demo"
[[sources]]
table = "t"
key = ["id"]
[[sources.outputs]]
table = "o"
key = ["id"]
[sources.outputs.columns]
id = "id"
x = "select"
"#;
        let errors = Plan::parse(Path::new("p.toml"), text).unwrap_err().0;
        let rendered = errors[0].to_string();
        assert!(
            rendered.starts_with("p.toml:10:")
                && rendered.contains("sources[0].outputs[0].columns.x: select is a reserved word")
                && rendered.contains(r#"write the column quoted, "select""#),
            "{rendered}"
        );
        let errors = Plan::parse(
            Path::new("p.toml"),
            "name = \"demo\"\n[[sources]]\nschema = 3\ntable = \"t\"\nkey = [\"id\"]\n",
        )
        .unwrap_err()
        .0;
        assert_eq!(errors[0].line, 3, "{}", errors[0]);
    }

    #[test]
    fn carry_is_refused_for_a_kind_switchyard_cannot_carry_and_unset_kinds_refuse() {
        let text =
            "name = \"x\"\n[cutover.dependents]\nviews = \"carry\"\nforeign_keys = \"carry\"\n";
        let errors = Plan::parse(Path::new("p.toml"), text).unwrap_err().0;
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 1, "{rendered:#?}");
        assert!(
            rendered[0].starts_with("p.toml:4:16: cutover.dependents.foreign_keys: switchyard cannot carry foreign_keys")
                && rendered[0].contains("\"cutover_sql\""),
            "{}",
            rendered[0]
        );
        let plan = Plan::parse(Path::new("p.toml"), "name = \"x\"\n").unwrap();
        assert_eq!(plan.cutover.dependents.foreign_keys, Disposition::Refuse);
        assert_eq!(plan.cutover.dependents.views, Disposition::Refuse);
    }
}
