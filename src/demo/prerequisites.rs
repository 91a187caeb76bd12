//! What the demo needs from a fresh machine, installed the way `.ci/run` installs it: both
//! run `scripts/install-postgres`, so the README's two commands each stand alone.

use std::path::Path;
use std::process::Command;

use anyhow::bail;

use super::cluster::Cluster;

/// The install script, relative to the repository root (the demo runs from a checkout).
const INSTALL_SCRIPT: &str = "scripts/install-postgres";

/// Returns once the machine can start throwaway clusters. When it cannot, runs the install
/// script if this process may (root, or `sudo` without a password), saying so first;
/// otherwise the error gives the exact command to run.
///
/// # Errors
/// The machine still lacks something: the message names it and the command that fixes it.
pub fn ensure(repo_root: &Path) -> anyhow::Result<()> {
    let Err(missing) = Cluster::machine_ready() else {
        return Ok(());
    };
    let script = repo_root.join(INSTALL_SCRIPT);
    let Some(mut install) = install_command(&script) else {
        bail!(
            "{missing}\nor install PostgreSQL with: sudo {}",
            script.display()
        );
    };
    println!("== this machine cannot start PostgreSQL yet: {missing}");
    println!("   running {} (what .ci/run runs)", script.display());
    let status = install.status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => bail!(
            "{} failed ({status}); its output is above. Fix that and run the demo again",
            script.display()
        ),
        Err(e) => bail!("could not run {}: {e}", script.display()),
    }
    Cluster::machine_ready().map_err(|still| {
        anyhow::anyhow!(
            "{} ran but the machine still lacks something: {still}",
            script.display()
        )
    })
}

/// The script itself when we are root, under `sudo -n` when that works without a password;
/// `None` when only a person can grant root.
fn install_command(script: &Path) -> Option<Command> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Some(Command::new(script));
    }
    let passwordless = Command::new("sudo")
        .args(["-n", "true"])
        .output()
        .is_ok_and(|out| out.status.success());
    passwordless.then(|| {
        let mut command = Command::new("sudo");
        command.arg("-n").arg(script);
        command
    })
}
