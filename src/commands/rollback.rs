//! `switchyard rollback`: undo what a cutover put in place on the source, whatever the recorded
//! status says (a cutover whose second commit failed leaves the swap without `cut_over`).
//!
//! ```text
//!  inspect     each legacy name: still its legacy table (by the recorded OID), or not;
//!              read-only triggers on the legacy tables            -> printed as found
//!  nothing     not cut over: what `abort` does; rolled back: nothing to do
//!  confirm     writes made to the new tables since the cutover's boundary, per table;
//!              any (or none countable) and no --yes: refuse, nothing changed
//!  undo        one source transaction: remove the triggers, run the plan's rollback SQL
//!              (on the cutover's side), inspect again: every legacy name must be its table,
//!              no trigger left, or the transaction rolls back
//! ```
//!
//! What a rollback keeps: the legacy tables hold every write acknowledged before the cutover
//! (the fence proved the new tables had them too). Writes made to the new tables after the
//! cutover stay in the new tables only, unless the cutover started a reverse stream
//! (`--keep-reverse`): then the rollback first blocks the new tables' writers and waits for
//! the stream's fence (`cutover::reverse_rollback`), ends the stream in the undo's
//! transaction, and leaves the new tables read-only.

use std::process::ExitCode;

use anyhow::{bail, Context};
use tokio_postgres::Client;

use std::time::Duration;

use crate::checkpoint::reverse as progress;
use crate::checkpoint::{self, MigrationStatus};
use crate::cli::RollbackArgs;
use crate::cutover::in_place::InPlace;
use crate::cutover::proof::{self, SAME_DATABASE_SETTING};
use crate::cutover::reverse_rollback::{self, WindowOptions};
use crate::cutover::reverse_stream;
use crate::cutover::writes_since::{self, WritesBoundary};
use crate::cutover::{read_only, same_database};
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::pg::ident::quote_literal;
use crate::plan::{CutoverSide, Plan};

pub async fn run(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::load(&args.plan.plan)?;
    let source = ConnInfo::parse(&args.connections.source)?;
    let target = ConnInfo::parse(&args.connections.target)?;
    let state = connect(&target, "switchyard rollback").await?;
    let Some(m) = checkpoint::load(&state, &plan.name).await? else {
        bail!("there is no migration {}", plan.name);
    };
    let mut src = connect(&source, "switchyard rollback").await?;
    let same_database = same_database(&src, &state).await?;
    let found = InPlace::inspect(&src, &state, &plan)
        .await
        .context("inspecting the legacy tables on the source")?;
    println!("on the source now:");
    for line in found.describe() {
        println!("  {line}");
    }
    if !found.anything() && m.status != MigrationStatus::CutOver {
        return nothing_in_place(&plan, &source, &target, m.status).await;
    }
    // A reverse stream kept the legacy tables up to date: block the new tables' writers, prove
    // the stream caught up, and nothing is left behind (see `cutover::reverse_rollback`).
    let stream = match m.status {
        MigrationStatus::CutOver => progress::load(&src, &plan.name).await?.filter(|s| !s.ended),
        _ => None,
    };
    if stream.is_some() {
        // A stream whose consumer is not running cannot answer the fence: refuse before the
        // lock, rather than block the application's writes for --max-blocked for nothing.
        let lag = crate::lag::reverse(&src, &state, &plan.name).await?;
        if let Some(lag) = lag.filter(|l| l.stale) {
            bail!(
                "rollback refused: no reverse consumer is running ({}), so none could apply the fence. Nothing was changed. Start `switchyard follow --reverse` (if it stops on an error, its message says what to do), or end the stream with `switchyard abort` and roll back without it",
                crate::progress::lag_frame::reverse_line(&lag)
            );
        }
    }
    let (left, blocked) = match &stream {
        Some(s) => {
            println!(
                "a reverse stream (slot {}) keeps the legacy tables up to date: blocking writes to the new tables until it has applied them all",
                s.slot_name
            );
            let options = WindowOptions {
                max_blocked: args.max_blocked,
                lock_timeout: args.lock_timeout,
                lock_attempts: args.lock_attempts.max(1),
            };
            let say = |line: String| println!("rollback: {line}");
            let blocked =
                reverse_rollback::block_and_fence(&plan, &target, &src, &options, &say).await?;
            // After the fence: the stream records a refused row before it commits the rest.
            let refused: i64 = state
                .query_one(
                    "SELECT count(*) FROM switchyard.dead_letters WHERE migration = $1 AND phase = 'reverse'",
                    &[&plan.name],
                )
                .await?
                .get(0);
            (LeftBehind::Kept { refused }, Some(blocked))
        }
        None => (
            confirm_writes_left_behind(&state, &plan, args.yes).await?,
            None,
        ),
    };
    let undone = undo(
        &mut src,
        &state,
        &plan,
        &found,
        m.status,
        same_database,
        stream.is_some(),
    )
    .await;
    let undone = match (undone, blocked) {
        (Ok(undone), None) => Ok(undone),
        (Ok(mut undone), Some(blocked)) => {
            let (attempts, fence_took, tables) =
                (blocked.attempts, blocked.fence_took, blocked.tables.clone());
            let window = blocked.commit().await?;
            undone.push(format!(
                "writes to {} blocked for {:.0} ms (limit {:.0} ms, lock granted at attempt {attempts}; the reverse stream applied the fence {:.0} ms after the lock), and refused from now on",
                tables.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                window.as_secs_f64() * 1e3,
                args.max_blocked.as_secs_f64() * 1e3,
                fence_took.as_secs_f64() * 1e3
            ));
            undone.push(reverse_stream::discard(&plan, &state, Duration::from_secs(5)).await);
            Ok(undone)
        }
        (Err(e), blocked) => {
            if let Some(blocked) = blocked {
                blocked.abandon().await;
            }
            Err(e)
        }
    };
    let undone = match undone {
        Err(e) if waited_for_a_lock(&e) => bail!(
            "rollback stopped: a session holds a lock on a legacy name or table, and the rollback's ACCESS EXCLUSIVE lock was not granted within {LOCK_TIMEOUT} (it does not queue longer, so that readers are not stalled behind it). Nothing was changed. Find the session with SELECT pid, state, xact_start, query FROM pg_stat_activity JOIN pg_locks USING (pid) WHERE relation = '<legacy table>'::regclass, end it, and run rollback again"
        ),
        undone => undone?,
    };
    if matches!(
        m.status,
        MigrationStatus::CutOver | MigrationStatus::RolledBack
    ) {
        checkpoint::set_status(
            &state,
            &plan.name,
            MigrationStatus::RolledBack,
            Some("rolled back by the operator"),
        )
        .await?;
        println!(
            "migration {} rolled back: {}. The legacy tables are back and writable.{}",
            plan.name,
            undone.join("; "),
            left.sentence()
        );
    } else {
        println!(
            "the cutover of migration {} was recorded as {} but had committed on the source; undone: {}. The legacy tables are back and writable. The migration is still {} with its slot: issue the cutover again, or `switchyard abort` to end it",
            plan.name,
            m.status,
            undone.join("; "),
            m.status
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Nothing of a cutover is on the source: already rolled back, or never cut over (then the
/// slot goes, as with `abort`).
async fn nothing_in_place(
    plan: &Plan,
    source: &ConnInfo,
    target: &ConnInfo,
    status: MigrationStatus,
) -> anyhow::Result<ExitCode> {
    if status == MigrationStatus::RolledBack {
        println!("migration {} is already rolled back", plan.name);
        return Ok(ExitCode::SUCCESS);
    }
    let publication = match super::abort::abort(plan, source, target).await? {
        true => "and publication dropped",
        false => "dropped; the publication belongs to another role and was kept",
    };
    println!(
        "migration {} was {status}, not cut over, and nothing of a cutover is in place on the source: aborted instead (slot {publication})",
        plan.name
    );
    Ok(ExitCode::SUCCESS)
}

/// What a rollback leaves in the new tables, as `confirm_writes_left_behind` found it.
enum LeftBehind {
    /// No write was made to the new tables since the cutover.
    Nothing,
    /// Writes were made since and stay there (`--yes`).
    Writes,
    /// The cutover recorded no boundary, so nothing could be counted (`--yes`).
    Uncounted,
    /// A reverse stream brought every write back, and a fence proved it, but for the rows the
    /// legacy tables refused (dead letters of phase `reverse`).
    Kept { refused: i64 },
}

impl LeftBehind {
    /// The closing sentence of the rollback's last line; empty when nothing was left.
    fn sentence(&self) -> String {
        match self {
            LeftBehind::Nothing => String::new(),
            LeftBehind::Kept { refused: 0 } => " Every write made to the new tables since the cutover is in them: the reverse stream applied them all (a fence proved it)".to_owned(),
            LeftBehind::Kept { refused } => format!(" Every write made to the new tables since the cutover is in them (a fence proved it) EXCEPT {refused} rows the legacy tables refused: they are in switchyard.dead_letters (phase 'reverse') with their key and reason; write them back by hand"),
            LeftBehind::Writes => " The writes listed above stay in the new tables: nothing copied them back".to_owned(),
            LeftBehind::Uncounted => " Writes made to the new tables since the cutover, if any, stay there: they could not be counted".to_owned(),
        }
    }
}

/// Refuses, without `--yes`, a rollback that would leave writes behind in the new tables
/// (listing them per table), or one that cannot count them.
async fn confirm_writes_left_behind(
    state: &Client,
    plan: &Plan,
    yes: bool,
) -> anyhow::Result<LeftBehind> {
    let boundary: Option<String> = state
        .query_opt(
            "SELECT (cutover_report -> 'writes_boundary')::text FROM switchyard.migrations
              WHERE name = $1 AND cutover_report ? 'writes_boundary'
                AND cutover_report -> 'writes_boundary' <> 'null'::jsonb",
            &[&plan.name],
        )
        .await?
        .and_then(|r| r.get(0));
    let Some(boundary) = boundary else {
        if yes {
            println!("the cutover recorded no writes boundary: rolling back anyway (--yes)");
            return Ok(LeftBehind::Uncounted);
        }
        bail!(
            "rollback refused: the cutover recorded no writes boundary (its report was not saved, or an older switchyard ran it), so the writes made to the new tables since cannot be counted, and a rollback leaves them there. Check them yourself, then run `switchyard rollback --yes`. Nothing was changed"
        );
    };
    let boundary: WritesBoundary =
        serde_json::from_str(&boundary).context("reading the cutover's writes boundary")?;
    let written = writes_since::count(state, &boundary)
        .await
        .context("counting the writes made to the new tables since the cutover")?;
    let left: Vec<String> = written
        .iter()
        .filter(|w| w.any())
        .map(|w| w.to_string())
        .collect();
    if left.is_empty() {
        return Ok(LeftBehind::Nothing);
    }
    if yes {
        println!("rolling back anyway (--yes), leaving these writes in the new tables:");
        for line in &left {
            println!("  {line}");
        }
        return Ok(LeftBehind::Writes);
    }
    bail!(
        "rollback refused: writes were made to the new tables since the cutover, and a rollback leaves them there (nothing copies them back to the legacy tables):\n  {}\nCopy back what must be kept, then run `switchyard rollback --yes`. Nothing was changed",
        left.join("\n  ")
    )
}

/// Undoes what `found` shows in one source transaction, proving the result before the commit;
/// returns what it did, for the operator.
async fn undo(
    src: &mut Client,
    state: &Client,
    plan: &Plan,
    found: &InPlace,
    status: MigrationStatus,
    same_database: bool,
    end_stream: bool,
) -> anyhow::Result<Vec<String>> {
    let mut undone = Vec::new();
    let tx = src.transaction().await?;
    if end_stream {
        // Its consumer sees this once committed, and stops.
        progress::end(&tx, &plan.name).await?;
        undone.push("the reverse stream ended".to_owned());
    }
    // Never queued behind a long transaction: readers of the legacy names would wait behind
    // the rollback's ACCESS EXCLUSIVE request for as long as that transaction lives.
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .await?;
    proof::tell_layout(&tx, same_database).await?;
    read_only::remove(&tx, &found.guards)
        .await
        .context("removing the read-only triggers from the legacy tables")?;
    if !found.guards.is_empty() {
        let tables: Vec<String> = found.guards.iter().map(|g| g.table.to_string()).collect();
        undone.push(format!(
            "read-only triggers removed from {}",
            tables.join(", ")
        ));
    }
    if found.swapped() || status == MigrationStatus::CutOver {
        let restored = match plan.cutover.side {
            CutoverSide::Source => restore_carried_views(&tx, plan).await?,
            CutoverSide::Target => restore_carried_views(state, plan).await?,
        };
        for view in &restored {
            undone.push(format!(
                "view {view} restored: it reads the legacy table again"
            ));
        }
        let sql: String = plan
            .phases
            .rollback
            .iter()
            .map(|f| f.sql.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        match plan.cutover.side {
            CutoverSide::Source => tx.batch_execute(&sql).await,
            // One simple query: one implicit transaction, in which the setting holds.
            CutoverSide::Target => {
                state
                    .batch_execute(&format!(
                        "SELECT set_config({}, {}, true);\n{sql}",
                        quote_literal(SAME_DATABASE_SETTING),
                        quote_literal(if same_database { "on" } else { "off" })
                    ))
                    .await
            }
        }
        .context("running the plan's rollback SQL (nothing was changed on the source)")?;
        undone.push("the plan's rollback SQL ran".to_owned());
    }
    let after = InPlace::inspect(&tx, state, plan)
        .await
        .context("inspecting the legacy tables after the rollback SQL")?;
    if after.anything() {
        bail!(
            "the rollback SQL ran, but the legacy tables are not back:\n  {}\nNothing was changed on the source (its transaction was rolled back): fix the plan's rollback SQL so that every legacy name is its legacy table again",
            after.describe().join("\n  ")
        );
    }
    tx.commit().await?;
    if found.swapped() {
        undone.push("every legacy name is its legacy table again".to_owned());
    }
    Ok(undone)
}

/// Views the cutover carried over (`views = "carry"`) read the compatibility views, which the
/// rollback SQL drops: point them back at the renamed legacy tables first, in the rollback's
/// transaction, on the side the cutover carried them (see
/// [`crate::cutover::dependents::carry`]).
async fn restore_carried_views(
    tx: &impl tokio_postgres::GenericClient,
    plan: &Plan,
) -> anyhow::Result<Vec<String>> {
    crate::cutover::dependents::carry::restore(tx, &plan.name)
        .await
        .context("restoring the views the cutover carried over (nothing was changed)")
}

/// How long the rollback waits for a lock before it gives up, changing nothing.
const LOCK_TIMEOUT: &str = "5s";

/// Whether `e` is PostgreSQL's `lock_not_available` (a `lock_timeout` ran out).
fn waited_for_a_lock(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<tokio_postgres::Error>()
            .and_then(|d| d.code())
            .is_some_and(|code| *code == tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
    })
}
