//! Plan files and the SQL expressions inside them: the input as a whole plan file, then as one
//! expression placed in every slot of a small plan that holds one (a derive, a `when`, an output
//! column). Diagnostics are fine; panics, stack overflows and huge allocations are not.
#![no_main]

use std::fmt::Write;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use switchyard::plan::Plan;

/// The plan's directory does not exist, so SQL files named by a plan fail to read.
const PLAN_PATH: &str = "/nonexistent-switchyard-fuzz/plan.toml";

/// A TOML basic string holding `text`.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => write!(out, "\\u{:04x}", u32::from(c)).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn plan_around(expression: &str) -> String {
    let e = toml_string(expression);
    format!(
        r#"name = "fuzz"
[lookups.stages]
[maps.status]
values = {{ "a" = "active", "1" = 1 }}
default = "unknown"
[[sources]]
table = "legacy"
key = ["id"]
[sources.derive]
first = "lower(name)"
fuzzed = {e}
[[sources.outputs]]
table = "target"
key = ["id"]
when = {e}
[sources.outputs.columns]
id = "id"
value = {e}
derived = "fuzzed"
"#
    )
}

fn exercise(text: &str) {
    match Plan::parse(Path::new(PLAN_PATH), text) {
        Ok(plan) => {
            let _ = (plan.slot_name(), plan.output_tables());
            for source in &plan.sources {
                for output in &source.outputs {
                    let _ = source.key_from_source_key(output);
                }
            }
        }
        Err(errors) => drop(errors.to_string()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A plan's SQL files are read from disk; a device or /proc file may never end. Plans are
    // written by the operator, so that is not hostile input, just not what is fuzzed here.
    if !["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        exercise(text);
    }
    exercise(&plan_around(text));
});
