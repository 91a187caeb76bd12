//! How dependents read: in `check` (one finding each), in the cutover's report, and in the
//! errors that stop a cutover.

use tokio_postgres::Client;

use crate::plan::{Disposition, Plan};
use crate::source::preflight::Finding;

use super::{before_swap, Dependent, Layout};

/// What the plan's disposition makes the cutover do to `d`, in words.
fn meaning(d: &Dependent) -> &'static str {
    if d.disposition == Disposition::Carry && d.definition.is_none() {
        return "it reads the legacy table through another view: carried with that view, and proven unbound after the swap";
    }
    match d.disposition {
        Disposition::Refuse => "the cutover refuses to start while it exists",
        Disposition::Warn => "reported and left as it is",
        Disposition::CutoverSql => {
            "the plan's cutover SQL deals with it; the cutover checks that after that SQL and rolls back if it is still bound"
        }
        Disposition::Carry => {
            "switchyard re-creates it after the swap SQL so it reads what takes the legacy name; `rollback` restores it"
        }
    }
}

fn spelled(d: Disposition) -> &'static str {
    match d {
        Disposition::Refuse => "refuse",
        Disposition::Warn => "warn",
        Disposition::CutoverSql => "cutover_sql",
        Disposition::Carry => "carry",
    }
}

/// One line for the cutover's report: the object, what the swap does to it, what the plan says.
pub fn line(d: &Dependent) -> String {
    format!(
        "{}, bound to {}: {}. Plan: {} = \"{}\" ({})",
        d.object,
        d.legacy_table,
        d.swap,
        d.kind.setting(),
        spelled(d.disposition),
        meaning(d)
    )
}

/// The list in an error: each object, what the swap does to it, and its fix.
pub(super) fn list(dependents: &[Dependent]) -> String {
    dependents
        .iter()
        .map(|d| {
            format!(
                "  - {}, bound to {}: {}.\n    fix: {}",
                d.object, d.legacy_table, d.swap, d.fix
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `check`'s findings: an error for each dependent the plan refuses (with the fix), a warning
/// for each other one (what the plan says happens to it). `layout` as the cutover will find
/// it (see `crate::cutover::sessions::same_database`).
pub async fn findings(
    plan: &Plan,
    source: &Client,
    target: &Client,
) -> anyhow::Result<Vec<Finding>> {
    let layout = match crate::cutover::sessions::same_database(source, target).await? {
        true => Layout::SameDatabase,
        false => Layout::TwoServers,
    };
    let found = before_swap(source, plan, layout).await?;
    Ok(found
        .dependents
        .iter()
        .map(|d| {
            let subject = format!("source.{}", d.legacy_table);
            let problem = format!(
                "{} is bound to it: {}. Plan: [cutover.dependents] {} = \"{}\" ({})",
                d.object,
                d.swap,
                d.kind.setting(),
                spelled(d.disposition),
                meaning(d)
            );
            match d.disposition {
                Disposition::Refuse => Finding::error(subject, problem, d.fix.clone()),
                Disposition::Warn => Finding::warning(
                    subject,
                    problem,
                    format!("none needed if that is what you want; otherwise {}", d.fix),
                ),
                Disposition::CutoverSql => Finding::warning(
                    subject,
                    problem,
                    format!("make sure the plan's cutover SQL does it: {}", d.fix),
                ),
                Disposition::Carry => Finding::warning(subject, problem, "none needed"),
            }
        })
        .collect())
}
