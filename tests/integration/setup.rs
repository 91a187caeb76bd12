//! No database here: the binary's completions and man pages, and the install script that both
//! README commands rely on.

use std::path::Path;
use std::process::Command;

fn switchyard(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .expect("run switchyard");
    assert!(
        out.status.success(),
        "switchyard {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The subcommands a user types, from `--help`'s list (skipping clap's own `help`).
fn subcommands() -> Vec<String> {
    let help = switchyard(&["--help"]);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|name| name != "help")
        .collect()
}

#[test]
fn completions_name_every_subcommand_in_each_shell() {
    let subcommands = subcommands();
    assert!(subcommands.len() >= 10, "{subcommands:?}");
    for shell in ["bash", "zsh", "fish"] {
        let script = switchyard(&["completions", shell]);
        for sub in &subcommands {
            assert!(
                script.contains(sub.as_str()),
                "{shell} completions lack {sub}"
            );
        }
        let plan_option = if shell == "fish" { "-l plan" } else { "--plan" };
        assert!(
            script.contains(plan_option),
            "{shell} completions lack --plan"
        );
    }
    let bash = switchyard(&["completions", "bash"]);
    let syntax = Command::new("bash")
        .args(["-n", "-c", &bash])
        .status()
        .expect("bash -n");
    assert!(
        syntax.success(),
        "the bash completion script does not parse"
    );
}

#[test]
fn man_pages_cover_every_subcommand_with_its_options() {
    let dir = tempdir();
    let listed = switchyard(&["man", "--out-dir", dir.to_str().unwrap()]);
    let root = std::fs::read_to_string(dir.join("switchyard.1")).unwrap();
    assert!(
        root.starts_with(".ie") && root.contains(".TH switchyard 1"),
        "{root}"
    );
    for sub in subcommands() {
        let path = dir.join(format!("switchyard-{sub}.1"));
        assert!(listed.contains(path.to_str().unwrap()), "{listed}");
        let page = std::fs::read_to_string(&path).unwrap();
        assert!(page.contains(&format!(".TH switchyard-{sub} 1")), "{page}");
        assert!(page.contains(env!("CARGO_PKG_VERSION")), "{page}");
    }
    let backfill = std::fs::read_to_string(dir.join("switchyard-backfill.1")).unwrap();
    assert!(backfill.contains(r"\-\-resume"), "{backfill}");
    let stdout = switchyard(&["man"]);
    assert_eq!(stdout, root, "`man` prints switchyard.1");
    std::fs::remove_dir_all(dir).unwrap();
}

/// On a machine that has what the clusters need, as this one does, the script changes nothing
/// and says so; `.ci/run` installs through it, as the demo does.
#[test]
fn the_install_script_is_shared_and_idempotent() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(ci.contains("scripts/install-postgres"), "{ci}");
    let demo = std::fs::read_to_string(root.join("src/demo/prerequisites.rs")).unwrap();
    assert!(demo.contains("\"scripts/install-postgres\""));
    for _ in 0..2 {
        let out = Command::new(root.join("scripts/install-postgres"))
            .output()
            .expect("run the install script");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("binaries present"), "{stdout}");
    }
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-man-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `.ci/run` runs exactly the test command the README gives a new user, in a shell block of
/// its own under "Two commands on a fresh machine".
#[test]
fn ci_runs_the_readme_test_command() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Two commands on a fresh machine"))
        .expect("the README's section on a fresh machine");
    let command = section
        .split("```sh\n")
        .skip(1)
        .filter_map(|block| block.split("\n```").next())
        .map(str::trim)
        .find(|block| block.starts_with("cargo test") && !block.contains('\n'))
        .expect("a shell block holding only the test command");
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    let last = ci
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap()
        .trim();
    assert_eq!(last, command, ".ci/run ends with the README's test command");
    assert!(section.contains("cargo run --release -- demo"), "{section}");
}
