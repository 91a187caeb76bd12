//! `switchyard follow --reverse`, and the tail of `cutover --keep-reverse`: the reverse
//! stream's consumer (see [`crate::pipeline::reverse`]), started again after a lost connection
//! from the position recorded on the legacy side.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Chain, Classify, ErrorClass};
use crate::pg::conninfo::ConnInfo;
use crate::pipeline::reverse::{self, ReverseEnd};
use crate::plan::Plan;

use super::signal::Stop;

/// Runs the reverse consumer until the stream is ended (by `rollback`), a stop is requested,
/// or an error retrying cannot fix.
pub async fn run(
    plan: Arc<Plan>,
    source: &ConnInfo,
    target: &ConnInfo,
    stop: Stop,
) -> anyhow::Result<ExitCode> {
    let say = |line: String| println!("{line}");
    loop {
        let outcome = reverse::run(
            Arc::clone(&plan),
            target,
            source,
            stop.requested.clone(),
            &say,
        )
        .await;
        match outcome {
            Ok(ReverseEnd::Ended) => {
                println!(
                    "reverse stream of migration {} ended (by `rollback`, which makes the legacy tables live again, or by `abort`, which leaves the migration cut over): nothing more goes back",
                    plan.name
                );
                return Ok(ExitCode::SUCCESS);
            }
            Ok(ReverseEnd::Stopped) => {
                println!(
                    "reverse stream of migration {} stopped: everything received was applied and recorded; `switchyard follow --reverse` goes on from there",
                    plan.name
                );
                return Ok(stop.exit_code());
            }
            Err(e) if e.class() == ErrorClass::Transient && !*stop.requested.borrow() => {
                eprintln!(
                    "reverse stream: {}; starting again in 1 s from the position applied",
                    Chain::new(&e)
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
