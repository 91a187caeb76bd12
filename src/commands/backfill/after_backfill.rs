//! The after-backfill SQL, stage by stage, on up to `--jobs` sessions, as `pg_restore --jobs`
//! and pgcopydb's index jobs do.
//!
//! ```text
//!  stage 1: [keys_projects.sql] [keys_tasks.sql] [keys_sub_tasks.sql]   one session each
//!                    └────────────── all committed ──────────────┘
//!  stage 2: [foreign_keys.sql]
//!  stage 3: [validate_projects.sql] [validate_tasks.sql] [validate_sub_tasks.sql]
//! ```
//! The plan says what may overlap: the files of one stage run at the same time, each in its own
//! implicit transaction on its own session; a stage starts once every file of the one before it
//! committed. So a foreign key, listed in a later stage, finds its referenced key built.
//!
//! The sessions are ordinary target sessions with the settings of every switchyard session
//! ([`crate::pg::connect`]), not replica sessions (the SQL creates keys and validates foreign
//! keys, which the replica role would not check), plus a larger `maintenance_work_mem` for the
//! index builds and validations, never below the server's own.
//!
//! One failing file stops the run: the files running beside it finish (they are independent,
//! and whatever they build is kept), nothing new starts, and the error names the file and says
//! what committed and what did not run. The files are re-runnable, so `--resume` runs them all
//! again and the committed ones find their work done.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use tokio_postgres::Client;

use crate::error::Chain;
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::plan::{SqlFile, Stage};

/// What the after-backfill sessions did so far: read by a stop, which cancels what runs and
/// says what committed.
#[derive(Debug, Default)]
pub(super) struct AfterBackfillState {
    /// The backends of the sessions, for `pg_cancel_backend` on a stop.
    pub(super) pids: Mutex<Vec<i32>>,
    /// The files that committed, in the order they did.
    pub(super) committed: Mutex<Vec<String>>,
}

impl AfterBackfillState {
    pub(super) fn pids(&self) -> Vec<i32> {
        self.pids.lock().expect("pids poisoned").clone()
    }

    /// What a stop left, for the migration's message.
    pub(super) fn describe_stop(&self) -> String {
        let committed = self.committed.lock().expect("committed poisoned");
        if committed.is_empty() {
            "during the after-backfill SQL: no file had committed, the ones running were cancelled and rolled back; every chunk is copied".to_owned()
        } else {
            format!(
                "during the after-backfill SQL: {} committed, the files running were cancelled and rolled back (the files are re-runnable); every chunk is copied",
                committed.join(", ")
            )
        }
    }
}

/// Runs `stages` in order on up to `jobs` sessions, each with `maintenance_work_mem` of at
/// least `maintenance_work_mem` bytes.
pub(super) async fn run_stages(
    stages: &[Stage],
    target: &ConnInfo,
    jobs: usize,
    maintenance_work_mem: i64,
    state: &AfterBackfillState,
) -> anyhow::Result<()> {
    let widest = stages.iter().map(|s| s.files.len()).max().unwrap_or(0);
    let mut sessions = Vec::new();
    for _ in 0..widest.min(jobs.max(1)) {
        let client = connect(target, "switchyard backfill").await?;
        let row = client
            .query_one(
                "SELECT pg_backend_pid(), set_config('maintenance_work_mem',
                     (greatest(pg_size_bytes(current_setting('maintenance_work_mem')), $1) / 1024)::text || 'kB',
                     false)",
                &[&maintenance_work_mem],
            )
            .await
            .context("setting maintenance_work_mem on an after-backfill session")?;
        state.pids.lock().expect("pids poisoned").push(row.get(0));
        tracing::debug!(
            maintenance_work_mem = row.get::<_, String>(1),
            "after-backfill session"
        );
        sessions.push(client);
    }
    for (number, stage) in stages.iter().enumerate() {
        let started = Instant::now();
        run_stage(stage, &sessions, state)
            .await
            .map_err(|failed| failed.into_error(stages, number, state))?;
        tracing::info!(stage = number + 1, files = stage.files.len(), elapsed = ?started.elapsed(), "after-backfill stage done");
    }
    Ok(())
}

/// The files of a stage that failed, with their errors.
struct StageFailed(Vec<(usize, tokio_postgres::Error)>);

/// Runs the files of `stage`, each on the next free session; after a failure no new file
/// starts and the ones running finish.
async fn run_stage(
    stage: &Stage,
    sessions: &[Client],
    state: &AfterBackfillState,
) -> Result<(), StageFailed> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let width = stage.files.len().min(sessions.len());
    let workers = sessions[..width]
        .iter()
        .map(|client| run_files(stage, client, &next, &failed, state));
    let errors: Vec<_> = futures_util::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(StageFailed(errors))
    }
}

/// One session's share of a stage: the next file not taken, until none is left or one failed.
async fn run_files(
    stage: &Stage,
    client: &Client,
    next: &AtomicUsize,
    failed: &AtomicBool,
    state: &AfterBackfillState,
) -> Vec<(usize, tokio_postgres::Error)> {
    let mut errors = Vec::new();
    while !failed.load(Ordering::Relaxed) {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(file) = stage.files.get(i) else {
            break;
        };
        let started = Instant::now();
        match client.batch_execute(&file.sql).await {
            Ok(()) => {
                tracing::info!(file = %file.path.display(), elapsed = ?started.elapsed(), "after-backfill file committed");
                state
                    .committed
                    .lock()
                    .expect("committed poisoned")
                    .push(name(file));
            }
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                errors.push((i, e));
            }
        }
    }
    errors
}

impl StageFailed {
    /// The error the DBA reads: the failing files, what committed, what did not run, and that
    /// running again resumes.
    fn into_error(
        self,
        stages: &[Stage],
        number: usize,
        state: &AfterBackfillState,
    ) -> anyhow::Error {
        let failed: Vec<String> = self
            .0
            .iter()
            .map(|(i, e)| {
                format!(
                    "{} failed and was rolled back: {}",
                    name(&stages[number].files[*i]),
                    Chain::new(e)
                )
            })
            .collect();
        let committed = state.committed.lock().expect("committed poisoned").clone();
        let done: Vec<&str> = committed.iter().map(String::as_str).collect();
        let not_run: Vec<String> = stages[number..]
            .iter()
            .flat_map(|s| &s.files)
            .enumerate()
            // The stage's own files come first, at their index in the stage.
            .filter(|(i, f)| {
                !done.contains(&name(f).as_str()) && !self.0.iter().any(|(failed, _)| failed == i)
            })
            .map(|(_, f)| name(f))
            .collect();
        let list = |names: &[String]| {
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        };
        anyhow::anyhow!(
            "after-backfill stage {} of {}: {}; committed: {}; not run: {}. The files are re-runnable: `switchyard backfill --resume` runs every stage again from the first",
            number + 1,
            stages.len(),
            failed.join("; "),
            list(&committed),
            list(&not_run)
        )
    }
}

/// A file as the plan names it (its file name; the plan's directory is implied).
fn name(file: &SqlFile) -> String {
    file.path.file_name().map_or_else(
        || file.path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
