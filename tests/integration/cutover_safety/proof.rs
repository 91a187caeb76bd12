//! Kind 5, a swap that silently does nothing: the cutover proves, under the lock and before
//! the commit, that the legacy names are what the plan promises (`[cutover] legacy_names`) and,
//! with two servers, that the read-only triggers are in place and enabled ALWAYS. The seed's SQL
//! also asserts its own assumptions through `switchyard.same_database`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_postgres::Client;

use crate::follow::Following;
use crate::support::{cluster, repo, run_command, seed_plan, seeded_source, wait_for};

/// Runs `switchyard <command> --plan <plan> --source --target <extra>`: success, and stdout
/// followed by stderr.
pub(super) fn run(
    command: &str,
    plan: &Path,
    source: &str,
    target: &str,
    extra: &[&str],
) -> (bool, String) {
    let out = run_command(command, plan, source, target, extra);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A file of the seed plan and what to make of its text.
pub(super) type Edit<'a> = (&'a str, &'a dyn Fn(&str) -> String);

/// The seed plan copied into a directory of its own, each named file passed through its edit.
pub(super) fn seed_copy(edits: &[Edit<'_>]) -> PathBuf {
    static DIRS: AtomicUsize = AtomicUsize::new(0);
    let to = std::env::temp_dir().join(format!(
        "switchyard-cutover-safety-{}-{}",
        std::process::id(),
        DIRS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(repo().join("transforms/legacy_to_projects")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let text = match edits.iter().find(|(file, _)| *file == name) {
            Some((_, edit)) => edit(&text),
            None => text,
        };
        std::fs::write(to.join(&name), text).unwrap();
    }
    to.join("plan.toml")
}

pub(super) async fn slot_exists(db: &Client) -> bool {
    db.query_one(
        "SELECT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = 'switchyard_legacy_to_projects')",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// Waits until no consumer holds the slot: the in-process consumer of a cutover that just
/// exited may hold it a moment longer, and the next cutover would find it busy.
pub(super) async fn wait_until_slot_idle(db: &Client) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let active: bool = db
            .query_one(
                "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots
                  WHERE slot_name = 'switchyard_legacy_to_projects'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if !active {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot stayed active"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `pg_class.relkind` of what `name` resolves to: `r` a table, `v` a view.
pub(super) async fn relkind(db: &Client, name: &str) -> String {
    db.query_one(
        "SELECT relkind::text FROM pg_class WHERE oid = $1::text::regclass",
        &[&name],
    )
    .await
    .unwrap()
    .get(0)
}

pub(super) async fn status(target: &Client) -> String {
    target
        .query_one("SELECT status FROM switchyard.migrations", &[])
        .await
        .unwrap()
        .get(0)
}

/// Nothing of the swap is there: the legacy names are tables, no `*_legacy` table, no
/// read-only trigger; the slot is kept and the migration not cut over.
pub(super) async fn assert_nothing_swapped(db: &Client, state: &Client) {
    for table in ["company_projects", "company_services", "vortex_items"] {
        assert_eq!(
            relkind(db, &format!("public.{table}")).await,
            "r",
            "{table}"
        );
    }
    let leftovers: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_legacy')
                  + (SELECT count(*) FROM pg_trigger WHERE tgname = 'switchyard_read_only')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0);
    assert!(slot_exists(db).await, "the slot is kept");
    let status = status(state).await;
    assert!(
        status == "backfilled" || status == "following",
        "the migration is {status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn new_tables_in_their_own_schema_make_the_cutover_refuse_and_keep_following() {
    let c = cluster();
    let db = seeded_source(&c, "legacy", 0.01).await;
    db.batch_execute("CREATE SCHEMA app").await.unwrap();
    let plan = seed_copy(&[("plan.toml", &|t| format!("target_schema = \"app\"\n{t}"))]);
    let source = c.url("legacy");
    // The target's session finds the new tables through its search_path; the source's does not.
    let target = format!("{source}?options=-csearch_path%3Dapp");
    let (ok, out) = run("backfill", &plan, &source, &target, &["--no-follow"]);
    assert!(ok, "{out}");

    let (ok, out) = run("cutover", &plan, &source, &target, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("one database, but the new tables (projects, tasks, sub_tasks) are not on the source session's search_path"),
        "{out}"
    );
    assert!(
        out.contains("options=-csearch_path"),
        "the hint says how: {out}"
    );
    assert!(out.contains("Everything was rolled back"), "{out}");
    assert!(!out.contains("cutover committed"), "{out}");
    assert_nothing_swapped(&db, &db).await;
    wait_until_slot_idle(&db).await;

    // The migration still follows: a write to a legacy table reaches the new tables.
    db.batch_execute("UPDATE company_projects SET name = 'after the refused cutover' WHERE id = 1")
        .await
        .unwrap();
    let mut follow = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["follow", "--plan", plan.to_str().unwrap()])
        .args(["--source", &source, "--target", &target])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        &db,
        "SELECT EXISTS (SELECT FROM app.projects WHERE legacy_table = 'company_projects'
                          AND legacy_id = 1 AND name = 'after the refused cutover')",
        &mut follow,
    )
    .await;
    let _ = follow.kill();
    let _ = follow.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cutover_sql_that_breaks_the_plans_promise_is_rolled_back() {
    let c = cluster();
    let db = seeded_source(&c, "legacy", 0.01).await;
    let url = c.url("legacy");
    let (ok, out) = run("backfill", &seed_plan(), &url, &url, &["--no-follow"]);
    assert!(ok, "{out}");

    // A cutover SQL that does nothing at all: the legacy names are still the legacy tables.
    let nothing = seed_copy(&[("cutover.sql", &|_| "SELECT 1;".to_owned())]);
    let (ok, out) = run("cutover", &nothing, &url, &url, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("the swap did not do what the plan promises ([cutover] legacy_names = \"views\", the default with one database): public.company_projects is still the legacy table; public.company_services is still the legacy table; public.vortex_items is still the legacy table"),
        "{out}"
    );
    assert!(
        out.contains("declare what it does with [cutover] legacy_names"),
        "{out}"
    );
    assert!(out.contains("Everything was rolled back"), "{out}");
    assert_nothing_swapped(&db, &db).await;
    wait_until_slot_idle(&db).await;

    // The seed's own SQL keeps the promise and goes through. (A plan declaring another
    // promise needs its own backfill: `legacy_names` is part of the plan's checksum.)
    let (ok, out) = run("cutover", &seed_plan(), &url, &url, &[]);
    assert!(ok, "{out}");
    assert_eq!(relkind(&db, "public.company_projects").await, "v");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_a_cutover_sql_that_weakens_the_guard_is_rolled_back() {
    let mut f = Following::start(0.01).await;
    let (source, target) = (f.source_cluster.url("legacy"), f.target_cluster.url("app"));
    // ENABLE TRIGGER (not ALWAYS) lets replica-role sessions through again.
    let weakened = seed_copy(&[("cutover.sql", &|t| {
        format!("{t}\nALTER TABLE vortex_items ENABLE TRIGGER switchyard_read_only;\n")
    })]);
    let (ok, out) = run("cutover", &weakened, &source, &target, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("([cutover] legacy_names = \"unchanged\", the default with two servers, and read-only triggers enabled ALWAYS on the legacy tables): vortex_items has no read-only trigger enabled ALWAYS"),
        "{out}"
    );
    assert_nothing_swapped(&f.source, &f.target).await;
    assert_eq!(status(&f.target).await, "following");
    assert!(
        f.consumer.try_wait().unwrap().is_none(),
        "the consumer still runs"
    );
    f.source
        .batch_execute("UPDATE vortex_items SET title = 'after the refused cutover' WHERE id = 1")
        .await
        .unwrap();
    f.assert_converged().await;
}
