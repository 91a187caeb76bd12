//! The layering of `src/`, read from the source text: imports go one way only.
//!
//! What `lib.rs`'s layout section promises, checked so that nobody has to re-read the tree:
//! the runtime (`transform/`) never imports the config (`plan/`), no layer below the commands
//! imports `commands/`, no two top-level modules import each other through any chain, and no
//! two files either. An import is any `crate::`, `super::` or `self::` path (or a `use` of a
//! child module) outside comments and test code; a parent declaring its children (`mod x;`,
//! `pub use x::Y;`) is not one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module -> the top-level modules its non-test code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| top(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = top(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        if test_only(file) {
            continue;
        }
        for line in code_lines(&text) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if name != from && modules.contains(&name) {
                    graph.entry(from.clone()).or_default().insert(name);
                }
            }
        }
    }
    graph
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/sink/apply.rs` -> `sink`; `src/checkpoint.rs` -> `checkpoint`.
fn top(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// Files that are test modules of their parent (declared under `#[cfg(test)]`).
fn test_only(file: &Path) -> bool {
    let name = file.file_stem().unwrap().to_string_lossy().into_owned();
    let dir = file.parent().unwrap();
    let parents = [
        dir.join("mod.rs"),
        dir.with_extension("rs"),
        dir.join("lib.rs"),
    ];
    let declared = format!("#[cfg(test)]\nmod {name};");
    let in_tests_dir = dir.file_name().is_some_and(|d| d == "tests");
    in_tests_dir
        || parents.iter().any(|p| {
            std::fs::read_to_string(p).is_ok_and(|t| {
                t.contains(&declared)
                    || t.contains(&format!("#[cfg(test)]\npub(crate) mod {name};"))
            })
        })
}

/// The file's lines up to its `#[cfg(test)] mod tests`, without comment lines (`//` in Rust,
/// `--` in embedded SQL) so that a doc link is not an import.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end].lines().filter(|l| {
        let t = l.trim_start();
        !t.starts_with("//") && !t.starts_with("--")
    })
}

#[test]
fn the_runtime_never_imports_the_config() {
    let graph = imports();
    let transform = graph.get("transform").cloned().unwrap_or_default();
    assert!(
        !transform.contains("plan"),
        "src/transform/ imports crate::plan outside tests: the plan compiles into transform's program, never the reverse"
    );
}

/// The top-level modules from the top down: each may import only those after it. `lib.rs`'s
/// layout section states the same order.
const LAYERS: [&str; 18] = [
    "main",
    "lib",
    "commands",
    "cli",
    "demo",
    "cutover",
    "verify",
    "pipeline",
    "metrics",
    "progress",
    "sink",
    "lag",
    "source",
    "checkpoint",
    "plan",
    "transform",
    "pg",
    "error",
];

#[test]
fn every_import_goes_down_the_layers() {
    let graph = imports();
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut upward = Vec::new();
    for (from, to) in &graph {
        let Some(from_rank) = rank(from) else {
            upward.push(format!("{from} is not in LAYERS: place it"));
            continue;
        };
        for m in to {
            match rank(m) {
                Some(r) if r > from_rank => {}
                _ => upward.push(format!("{from} imports {m}")),
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that go up the layers {LAYERS:?}: {upward:#?}"
    );
}

#[test]
fn no_layer_below_the_commands_imports_them() {
    let graph = imports();
    let offenders: Vec<&String> = graph
        .iter()
        .filter(|(from, to)| {
            !["commands", "cli", "main", "lib"].contains(&from.as_str()) && to.contains("commands")
        })
        .map(|(from, _)| from)
        .collect();
    assert!(
        offenders.is_empty(),
        "these modules import crate::commands: {offenders:?}"
    );
}

#[test]
fn no_two_top_level_modules_import_each_other() {
    let graph = imports();
    // Every module reachable from each module; a module reaching itself is on a cycle.
    let mut cycles = Vec::new();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = graph[start].iter().collect();
        while let Some(m) = stack.pop() {
            if seen.insert(m.clone()) {
                stack.extend(graph.get(m).into_iter().flatten());
            }
        }
        if seen.contains(start) {
            let back: Vec<&String> = graph[start]
                .iter()
                .filter(|m| graph.get(*m).is_some_and(|to| to.contains(start)))
                .collect();
            cycles.push(format!(
                "{start} (imports each other directly with {back:?})"
            ));
        }
    }
    assert!(
        cycles.is_empty(),
        "modules on an import cycle: {cycles:#?}\n{graph:#?}"
    );
}

/// A module's path from `src/`: `src/sink/apply.rs` -> `["sink", "apply"]`,
/// `src/cutover/access/mod.rs` -> `["cutover", "access"]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// File (as its module path) -> the files its non-test code imports.
fn file_imports() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_path(&src, f)).collect();
    // The longest prefix of `path` that is a file's module.
    let resolve = |path: Vec<String>| -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|k| path[..k].to_vec())
            .find(|p| modules.contains(p))
    };
    let mut graph = BTreeMap::new();
    for file in files.iter().filter(|f| !test_only(f)) {
        let me = module_path(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let mut deps = BTreeSet::new();
        for line in code_lines(&text) {
            let declares_child = line.trim_start().starts_with("pub use ")
                && !line.contains("crate::")
                && !line.contains("super::");
            if declares_child {
                continue;
            }
            for path in paths(line, &me, &modules) {
                if let Some(dep) = resolve(path) {
                    if dep != me {
                        deps.insert(dep);
                    }
                }
            }
        }
        graph.insert(me, deps);
    }
    graph
}

/// The module paths a line names: `crate::a::b`, `super::x`, `self::y`, groups
/// (`crate::a::{b, c::d}`) and `use child::...` of a child module.
fn paths(line: &str, me: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let bytes: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..].iter().collect();
        let start_ok = i == 0 || !ident(bytes[i - 1]);
        let root = ["crate::", "super::", "self::"]
            .into_iter()
            .find(|r| start_ok && rest.starts_with(r));
        let Some(root) = root else {
            i += 1;
            continue;
        };
        // Read `a::b::super::c` segments, then an optional `{...}` group.
        let mut base: Vec<String> = match root {
            "crate::" => Vec::new(),
            _ => me.to_vec(),
        };
        if root == "super::" {
            base.pop();
        }
        let mut j = i + root.len();
        loop {
            let seg: String = bytes[j..].iter().take_while(|c| ident(**c)).collect();
            j += seg.len();
            if seg == "super" {
                base.pop();
            } else if !seg.is_empty() {
                base.push(seg);
            }
            if bytes[j..].starts_with(&[':', ':']) {
                j += 2;
            } else {
                break;
            }
        }
        if bytes.get(j) == Some(&'{') {
            let end = bytes[j..]
                .iter()
                .position(|c| *c == '}')
                .map_or(bytes.len(), |e| j + e);
            let group: String = bytes[j + 1..end].iter().collect();
            for item in group.split(',') {
                let item = item.split(" as ").next().unwrap().trim();
                let mut path = base.clone();
                path.extend(
                    item.split("::")
                        .filter(|s| !s.is_empty() && *s != "self")
                        .map(str::to_owned),
                );
                out.push(path);
            }
            j = end;
        } else {
            out.push(base);
        }
        i = j.max(i + 1);
    }
    // `use child::...;` in a module that declares `child`.
    if let Some(rest) = line.trim_start().strip_prefix("use ") {
        let first: String = rest.chars().take_while(|c| ident(*c)).collect();
        let mut child = me.to_vec();
        child.push(first);
        if rest.contains("::") && modules.contains(&child) {
            out.push(child);
        }
    }
    out
}

#[test]
fn no_two_files_import_each_other() {
    let graph = file_imports();
    let mut on_cycle = Vec::new();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&Vec<String>> = graph[start].iter().collect();
        while let Some(m) = stack.pop() {
            if seen.insert(m.clone()) {
                stack.extend(graph.get(m).into_iter().flatten());
            }
        }
        if seen.contains(start) {
            let next: Vec<String> = graph[start].iter().map(|m| m.join("::")).collect();
            on_cycle.push(format!("{} -> {next:?}", start.join("::")));
        }
    }
    assert!(
        on_cycle.is_empty(),
        "files on an import cycle (each with what it imports): {on_cycle:#?}"
    );
}
