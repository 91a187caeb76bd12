//! `switchyard verify`: compares the target with the transformed source and exits 1 on
//! divergence, so a script or the cutover can act on it.

use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::VerifyArgs;
use crate::pg::conninfo::ConnInfo;
use crate::plan::Plan;
use crate::verify::{verify, VerifyOptions};

/// The exit code of a verification that found divergence (errors exit with 1 too, after an
/// `error:` line on stderr; a clean run exits 0).
const DIVERGED: u8 = 1;

pub async fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let plan = Arc::new(Plan::load(&args.plan.plan)?);
    let source = ConnInfo::parse(&args.connections.source)?;
    let target = ConnInfo::parse(&args.connections.target)?;
    let options = VerifyOptions {
        recheck_rounds: args.recheck,
        fence_timeout: args.fence_timeout,
        notice: |line| eprintln!("{line}"),
        ..VerifyOptions::default()
    };
    let report = verify(&plan, &source, &target, options).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(if report.diverged() {
        ExitCode::from(DIVERGED)
    } else {
        ExitCode::SUCCESS
    })
}
