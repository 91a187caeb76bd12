//! `switchyard completions` and `switchyard man`: generated from the clap definition, so every
//! subcommand and option a release has is in them.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};

/// Prints the completion script for one shell on stdout.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    let name = command.get_name().to_owned();
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// Prints switchyard(1) on stdout, or writes it and one page per subcommand into `--out-dir`.
pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    // `switchyard help` is clap's, not a page of its own.
    let command = Cli::command().disable_help_subcommand(true);
    match args.out_dir {
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(command).render(&mut out)?;
            out.flush()?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            write_pages(&dir, command)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// switchyard.1, then switchyard-<sub>.1 for each subcommand (the names `man` and the SEE ALSO
/// sections use).
fn write_pages(dir: &Path, command: clap::Command) -> anyhow::Result<()> {
    let mut command = command;
    // Building gives each subcommand its display name, `switchyard-backfill`, which
    // clap_mangen uses as the page's title and NAME.
    command.build();
    let mut written = Vec::new();
    let page = |name: &str, cmd: clap::Command| -> anyhow::Result<std::path::PathBuf> {
        let path = dir.join(format!("{name}.1"));
        let mut buffer = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buffer)?;
        std::fs::write(&path, buffer).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let root = command.get_name().to_owned();
    for sub in command.get_subcommands() {
        let name = format!("{root}-{}", sub.get_name());
        // Subcommands carry no version of their own; the page footer shows the release's.
        written.push(page(&name, sub.clone().version(env!("CARGO_PKG_VERSION")))?);
    }
    written.insert(0, page(&root, command)?);
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}
