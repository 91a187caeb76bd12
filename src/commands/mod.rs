//! One file per subcommand: each resolves its arguments into a job and runs it.

pub mod abort;
pub mod backfill;
pub mod check;
pub mod completions;
pub mod control;
pub mod cutover;
pub mod demo;
pub mod follow;
pub mod follow_reverse;
pub mod rollback;
pub mod signal;
pub mod status;
pub mod verify;
pub mod watch;

use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{Cli, Command, MetricsArg, OnErrorArg};
use crate::error::{Chain, ErrorClass};
use crate::metrics::{self, Metrics};
use crate::pg::conninfo::ConnInfo;
use crate::pipeline::control::SourceLoad;
use crate::pipeline::error::{class_of, PipelineError};
use crate::pipeline::follow::FollowEnd;
use crate::plan::{OnError, Plan};
use crate::progress::follow_status::FollowStatus;
use crate::progress::{BackfillProgress, DisplayMode};
use signal::{Interrupted, Stop};

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check::run(args).await,
        Command::Backfill(args) => {
            let plan = Plan::load(&args.plan.plan)?;
            let job = backfill::BackfillJob {
                progress: BackfillProgress::of_plan(&plan),
                on_error: on_error(args.on_error, &plan),
                plan: Arc::new(plan),
                source: ConnInfo::parse(&args.connections.source)?,
                target: ConnInfo::parse(&args.connections.target)?,
                jobs: args.jobs.max(1),
                maintenance_work_mem: args.maintenance_work_mem,
                resume: args.resume,
                snapshot_timeout: args.snapshot_timeout,
                display: if args.json {
                    DisplayMode::Json
                } else {
                    DisplayMode::Auto
                },
                load: SourceLoad {
                    max_sessions: args.max_source_sessions,
                    throttle_query: args.throttle_query.clone(),
                },
            };
            let json = args.json;
            let follow = follow::FollowJob {
                plan: Arc::clone(&job.plan),
                source: job.source.clone(),
                target: job.target.clone(),
                on_error: job.on_error,
                apply_jobs: args.apply_jobs,
                serial_through: None,
                progress: Default::default(),
            };
            if let Some(metrics) =
                serve_metrics(&args.metrics, &job.plan, &job.source, &job.target).await?
            {
                metrics.attach_backfill(Arc::clone(&job.progress));
                metrics.attach_follow(Arc::clone(&follow.progress));
            }
            let stop = Stop::on_signals();
            if args.join {
                return join(job, &stop).await;
            }
            let summary = match job.run(&stop).await {
                Ok(summary) => summary,
                Err(e) => match e.downcast_ref::<Interrupted>() {
                    Some(interrupted) => {
                        eprintln!("{interrupted}");
                        return Ok(stop.exit_code());
                    }
                    None => return Err(e),
                },
            };
            backfill_report(&summary, json);
            if args.no_follow {
                return Ok(ExitCode::SUCCESS);
            }
            println!("following the WAL (Ctrl-C stops; `switchyard follow` restarts; `switchyard watch` shows the lag)");
            run_follow(follow, stop, !json).await
        }
        Command::Follow(args) if args.reverse => {
            let plan = Arc::new(Plan::load(&args.plan.plan)?);
            let source = ConnInfo::parse(&args.connections.source)?;
            let target = ConnInfo::parse(&args.connections.target)?;
            follow_reverse::run(plan, &source, &target, Stop::on_signals()).await
        }
        Command::Follow(args) => {
            let plan = Plan::load(&args.plan.plan)?;
            let job = follow::FollowJob {
                on_error: on_error(args.on_error, &plan),
                plan: Arc::new(plan),
                source: ConnInfo::parse(&args.connections.source)?,
                target: ConnInfo::parse(&args.connections.target)?,
                apply_jobs: args.apply_jobs,
                serial_through: None,
                progress: Default::default(),
            };
            if let Some(metrics) =
                serve_metrics(&args.metrics, &job.plan, &job.source, &job.target).await?
            {
                metrics.attach_follow(Arc::clone(&job.progress));
            }
            run_follow(job, Stop::on_signals(), true).await
        }
        Command::Watch(args) => watch::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Abort(args) => abort::run(args).await,
        Command::Cutover(args) => cutover::run(args).await,
        Command::Rollback(args) => rollback::run(args).await,
        Command::Pause(args) => control::pause(args, true).await,
        Command::Resume(args) => control::pause(args, false).await,
        Command::Throttle(args) => control::throttle(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Verify(args) => verify::run(args).await,
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
    }
}

/// `backfill --join`: copies chunks until none is left, then exits 0.
async fn join(job: backfill::BackfillJob, stop: &Stop) -> anyhow::Result<ExitCode> {
    let name = job.plan.name.clone();
    match job.join(stop).await {
        Ok(backfill::Joined::NothingLeft) => {
            println!("migration {name}: nothing left to copy");
            Ok(ExitCode::SUCCESS)
        }
        Ok(backfill::Joined::Copied { chunks, row_count }) => {
            println!("migration {name}: every chunk is copied; this worker copied {chunks} chunks ({row_count} source rows)");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => match e.downcast_ref::<Interrupted>() {
            Some(interrupted) => {
                eprintln!("{interrupted}");
                Ok(stop.exit_code())
            }
            None => Err(e),
        },
    }
}

/// Serves `--metrics-addr` when given; before any work, so that an address taken stops the
/// command before it starts anything.
pub(crate) async fn serve_metrics(
    arg: &MetricsArg,
    plan: &Arc<Plan>,
    source: &ConnInfo,
    target: &ConnInfo,
) -> anyhow::Result<Option<Arc<Metrics>>> {
    let Some(addr) = &arg.metrics_addr else {
        return Ok(None);
    };
    let (metrics, bound) =
        metrics::start(addr, Arc::clone(plan), source.clone(), target.clone()).await?;
    eprintln!("serving Prometheus metrics at http://{bound}/metrics");
    Ok(Some(metrics))
}

/// `--on-error` when given, else the plan's `on_error`.
fn on_error(arg: Option<OnErrorArg>, plan: &Plan) -> OnError {
    match arg {
        Some(OnErrorArg::Stop) => OnError::Stop,
        Some(OnErrorArg::DeadLetter) => OnError::DeadLetter,
        None => plan.on_error,
    }
}

/// Runs the consumer until a signal (a clean stop: the group in flight is rolled back and
/// replayed by the next start), the cutover, or an error that needs a person. A lost
/// connection is not one: the consumer starts over from the applied LSN the target recorded,
/// after a pause that doubles from 1 s up to 30 s while the connection stays lost. With
/// `status`, the consumer's lag is shown meanwhile ([`FollowStatus`]).
async fn run_follow(
    mut job: follow::FollowJob,
    stop: Stop,
    status: bool,
) -> anyhow::Result<ExitCode> {
    let status = status.then(|| {
        FollowStatus::start(
            job.source.clone(),
            job.target.clone(),
            Arc::clone(&job.plan),
        )
    });
    let end = follow_until_done(&mut job, &stop).await;
    if let Some(status) = status {
        status.finish().await;
    }
    match end? {
        FollowEnd::Stopped => println!("stopped; `switchyard follow` resumes from the applied LSN"),
        FollowEnd::CutOver => println!("the migration was cut over: the consumer's work is done"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The consumer's restarts, until it ends for good.
async fn follow_until_done(job: &mut follow::FollowJob, stop: &Stop) -> anyhow::Result<FollowEnd> {
    let mut stopped = stop.requested.clone();
    let mut pause = RECONNECT_FIRST;
    let end = loop {
        let started = std::time::Instant::now();
        match job.clone().run(stopped.clone()).await {
            Ok(end) => break end,
            Err(e) if lane_conflict(&e).is_some() && !*stopped.borrow() => {
                let through = lane_conflict(&e).expect("a lane conflict");
                tracing::info!("{}", Chain::from(&e));
                job.serial_through = Some(job.serial_through.map_or(through, |t| t.max(through)));
            }
            Err(e) if class_of(&e) == ErrorClass::Transient && !*stopped.borrow() => {
                if started.elapsed() > RECONNECT_LAST * 2 {
                    pause = RECONNECT_FIRST;
                }
                eprintln!(
                    "the consumer lost its connection ({}); reconnecting in {:.0} s",
                    Chain::from(&e),
                    pause.as_secs_f64()
                );
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stopped.changed() => {}
                }
                if *stopped.borrow() {
                    break FollowEnd::Stopped;
                }
                pause = (pause * 2).min(RECONNECT_LAST);
            }
            Err(e) => return Err(e),
        }
    };
    Ok(end)
}

/// The stretch to apply in one transaction per group after a conflict between apply lanes.
fn lane_conflict(e: &anyhow::Error) -> Option<crate::pg::lsn::Lsn> {
    e.chain()
        .find_map(|link| match link.downcast_ref::<PipelineError>() {
            Some(PipelineError::LaneConflict { through, .. }) => Some(*through),
            _ => None,
        })
}

/// The consumer's first pause after a lost connection, and the longest.
const RECONNECT_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
const RECONNECT_LAST: std::time::Duration = std::time::Duration::from_secs(30);

fn backfill_report(s: &backfill::BackfillSummary, json: bool) {
    let rate = s.rows as f64 / s.elapsed.as_secs_f64().max(0.001);
    if json {
        let reports: serde_json::Map<String, serde_json::Value> = s
            .reports
            .iter()
            .map(|(k, v)| (k.clone(), (*v).into()))
            .collect();
        println!(
            "{}",
            serde_json::json!({"event": "backfill_done", "rows": s.rows, "rejected": s.rejected,
                "elapsed_s": s.elapsed.as_secs_f64(), "rows_per_s": rate,
                "consistent_lsn": s.consistent_lsn.to_string(), "reports": reports})
        );
        return;
    }
    println!(
        "backfill done: {} rows in {} ({}), {} rejected (see switchyard.dead_letters); consistent from {}",
        s.rows,
        crate::progress::human::duration(s.elapsed),
        crate::progress::human::rate(rate, "rows"),
        s.rejected,
        s.consistent_lsn
    );
    for (name, count) in &s.reports {
        println!("  {name}: {count}");
    }
}
