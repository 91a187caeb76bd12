//! The reverse stream end to end, with two servers and in one database: after
//! `cutover --keep-reverse` the application writes the new tables, the reverse consumer is
//! SIGKILLed and restarted (`follow --reverse`) mid-load, and `rollback` runs while the load
//! still writes. Afterwards the legacy tables equal the oracle computed from the new tables
//! (`transforms/legacy_to_projects/expected_legacy.sql`, joins over the new tables and
//! `switchyard.reverse_keys`, written apart from the plan's `[reverse]` rules), and every write
//! the load had acknowledged is there.
//!
//! ```text
//!  backfill ── following ── cutover --keep-reverse ─┬─ cut_over: backfill exits
//!                                                   └─ reverse stream ──╳ SIGKILL
//!  load on the new tables:  ─────── writes ──────────────────────────────────┐
//!                                           follow --reverse ── rollback ── exits
//!                                                                 └─ load: 25006
//! ```

mod acked;
mod load;
mod model;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use switchyard::demo::cluster::Cluster;
use tokio_postgres::Client;

use crate::small_migration::text_rows;
use crate::support::{cluster, command, repo, seed_plan, seeded_source};
use load::{Ending, Load};

/// Where the new tables live.
struct Layout {
    source_cluster: Cluster,
    /// `None`: the new tables are in the source database.
    target_cluster: Option<Cluster>,
    source: Client,
    target: Client,
}

impl Layout {
    /// A seeded source database `legacy`, and a target database `app` on a second cluster.
    async fn two_servers() -> Layout {
        let (source_cluster, target_cluster) = (cluster(), cluster());
        let source = seeded_source(&source_cluster, "legacy", 0.01).await;
        target_cluster.create_database("app").await.unwrap();
        let target = target_cluster.connect("app").await.unwrap();
        Layout {
            source_cluster,
            target_cluster: Some(target_cluster),
            source,
            target,
        }
    }

    /// A seeded database `legacy` that is the source and the target.
    async fn same_database() -> Layout {
        let source_cluster = cluster();
        let source = seeded_source(&source_cluster, "legacy", 0.01).await;
        let target = source_cluster.connect("legacy").await.unwrap();
        Layout {
            source_cluster,
            target_cluster: None,
            source,
            target,
        }
    }

    fn source_url(&self) -> String {
        self.source_cluster.url("legacy")
    }

    fn target_url(&self) -> String {
        match &self.target_cluster {
            Some(target) => target.url("app"),
            None => self.source_url(),
        }
    }

    /// A session of the new application's own, on the target.
    async fn application(&self) -> Client {
        match &self.target_cluster {
            Some(target) => target.connect("app").await.unwrap(),
            None => self.source_cluster.connect("legacy").await.unwrap(),
        }
    }

    /// `switchyard <command> ... <extra>`, its stdout and stderr in a log file next to the
    /// source cluster (removed with it).
    fn spawn(&self, name: &str, extra: &[&str]) -> Proc {
        let mut args = extra.to_vec();
        let subcommand = args.remove(0);
        let log = self.source_cluster.dir().join(format!("{name}.log"));
        let out = File::create(&log).unwrap();
        let child = command(
            subcommand,
            &seed_plan(),
            &self.source_url(),
            &self.target_url(),
            &args,
        )
        .env("SWITCHYARD_LOG", "switchyard=debug")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
        Proc { child, log }
    }

    async fn status(&self) -> String {
        self.target
            .query_one("SELECT status FROM switchyard.migrations", &[])
            .await
            .unwrap()
            .get(0)
    }
}

/// A switchyard process, SIGKILLed on drop if it still runs.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of its output, for failure messages.
    fn tail(&self) -> String {
        let out = self.output();
        let lines: Vec<&str> = out.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits until its output contains `needle`; fails if it exits first.
    async fn wait_for_output(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.output().contains(needle) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "exited with {status} before printing {needle:?}:\n{}",
                    self.tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "never printed {needle:?}:\n{}",
                self.tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `condition` (SQL returning one boolean) holds on `client`; fails if it
    /// exits first.
    async fn wait_for(&mut self, client: &Client, condition: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let holds = client
                .query_one(condition, &[])
                .await
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false);
            if holds {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "exited with {status} while waiting for {condition}:\n{}",
                    self.tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {condition}:\n{}",
                self.tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for it to exit on its own, within `limit`.
    async fn exited(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "did not exit within {limit:?}:\n{}",
                self.tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn sigkill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `switchyard rollback`, run to completion (within two minutes).
async fn rollback(layout: &Layout) -> (bool, String) {
    let mut rollback = tokio::process::Command::from(command(
        "rollback",
        &seed_plan(),
        &layout.source_url(),
        &layout.target_url(),
        &[],
    ));
    rollback.kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), rollback.output())
        .await
        .expect("rollback finished within two minutes")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The columns of each legacy table (legacy_schema.sql).
const LEGACY_TABLES: [(&str, &[&str]); 3] = [
    (
        "company_projects",
        &[
            "id",
            "company_id",
            "name",
            "type",
            "status",
            "owner_email",
            "budget",
            "start_date",
            "created_at",
            "updated_at",
            "meta",
        ],
    ),
    (
        "company_services",
        &[
            "id",
            "company_id",
            "service_name",
            "type",
            "status",
            "contact_email",
            "monthly_fee",
            "created_at",
            "updated_at",
        ],
    ),
    (
        "vortex_items",
        &[
            "id",
            "project_id",
            "parent_item_id",
            "title",
            "status",
            "priority",
            "assignee_email",
            "due",
            "body",
            "created_at",
            "updated_at",
        ],
    ),
];

/// Before the cutover, on the source: the legacy tables as they are (`legacy_at_cutover`),
/// and their round trip through the new model (`expected_reverse.sql`, over the legacy tables
/// alone). Nothing writes the legacy tables between this and the cutover.
async fn snapshot_legacy_tables(layout: &Layout) {
    let mut sql = String::from(
        "DROP SCHEMA IF EXISTS legacy_at_cutover CASCADE; CREATE SCHEMA legacy_at_cutover;",
    );
    for (table, _) in LEGACY_TABLES {
        sql.push_str(&format!(
            "CREATE TABLE legacy_at_cutover.{table} AS SELECT * FROM public.{table};"
        ));
    }
    layout.source.batch_execute(&sql).await.unwrap();
    let round_trip =
        std::fs::read_to_string(repo().join("transforms/legacy_to_projects/expected_reverse.sql"))
            .unwrap();
    layout
        .source
        .batch_execute(&round_trip)
        .await
        .expect("expected_reverse.sql");
}

/// Runs expected_legacy.sql on the target and compares every legacy table on the source with
/// it, row for row, all columns as text; a difference is listed by id.
///
/// A legacy row the reverse stream never had to write keeps its original values, which the
/// new model normalized (' In_Progress', not 'in progress'): such a row passes when it is as it
/// was at the cutover and its round trip (`expected_reverse`) is what the oracle says now, so a
/// row whose new-table row changed must have been rewritten.
async fn assert_legacy_tables_equal_the_oracle(layout: &Layout) {
    let oracle =
        std::fs::read_to_string(repo().join("transforms/legacy_to_projects/expected_legacy.sql"))
            .unwrap();
    layout
        .target
        .batch_execute(&oracle)
        .await
        .expect("expected_legacy.sql");
    let mut differences = Vec::new();
    for (table, columns) in LEGACY_TABLES {
        let unkeyed: i64 = layout
            .target
            .query_one(
                &format!("SELECT count(*) FROM expected_legacy.{table} WHERE id IS NULL"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            unkeyed, 0,
            "{table}: rows of the new tables without a legacy key"
        );
        let got = text_rows(&layout.source, &format!("public.{table}"), columns).await;
        let want = text_rows(&layout.target, &format!("expected_legacy.{table}"), columns).await;
        assert!(want.len() > 10, "{table}: the oracle has rows");
        let before = text_rows(
            &layout.source,
            &format!("legacy_at_cutover.{table}"),
            columns,
        )
        .await;
        let round_trip = text_rows(
            &layout.source,
            &format!("expected_reverse.{table}"),
            columns,
        )
        .await;
        let untouched = untouched_rows(&got, &want, &before, &round_trip);
        let got: Vec<TextRow> = got
            .into_iter()
            .filter(|g| !untouched.contains(&g[0]))
            .collect();
        let want: Vec<TextRow> = want
            .into_iter()
            .filter(|w| !untouched.contains(&w[0]))
            .collect();
        differences.extend(differences_by_id(table, columns, &got, &want));
    }
    assert!(
        differences.is_empty(),
        "the legacy tables differ from expected_legacy ({} differences, first 30):\n{}",
        differences.len(),
        differences[..differences.len().min(30)].join("\n")
    );
}

type TextRow = Vec<Option<String>>;

/// The ids of rows left as they were at the cutover whose round trip is what the oracle wants
/// now: the reverse stream had nothing to write there.
fn untouched_rows(
    got: &[TextRow],
    want: &[TextRow],
    before: &[TextRow],
    round_trip: &[TextRow],
) -> std::collections::BTreeSet<Option<String>> {
    use std::collections::BTreeMap;
    let by_id = |rows: &[TextRow]| -> BTreeMap<Option<String>, TextRow> {
        rows.iter().map(|r| (r[0].clone(), r.clone())).collect()
    };
    let (want, before, round_trip) = (by_id(want), by_id(before), by_id(round_trip));
    got.iter()
        .filter(|g| {
            before.get(&g[0]) == Some(*g)
                && round_trip.contains_key(&g[0])
                && round_trip.get(&g[0]) == want.get(&g[0])
        })
        .map(|g| g[0].clone())
        .collect()
}

/// Rows missing, extra or different, by their id (the first column).
fn differences_by_id(
    table: &str,
    columns: &[&str],
    got: &[TextRow],
    want: &[TextRow],
) -> Vec<String> {
    use std::collections::BTreeMap;
    let by_id = |rows: &[TextRow]| -> BTreeMap<Option<String>, TextRow> {
        rows.iter().map(|r| (r[0].clone(), r.clone())).collect()
    };
    let (got_by_id, want_by_id) = (by_id(got), by_id(want));
    let mut out = Vec::new();
    if got_by_id.len() != got.len() || want_by_id.len() != want.len() {
        out.push(format!(
            "{table}: ids repeat (got {} rows, {} ids)",
            got.len(),
            got_by_id.len()
        ));
    }
    for (id, w) in &want_by_id {
        match got_by_id.get(id) {
            None => out.push(format!("{table} {id:?}: missing, expected {w:?}")),
            Some(g) if g != w => {
                let columns: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| g[*i] != w[*i])
                    .map(|(i, c)| format!("{c}: {:?}, expected {:?}", g[i], w[i]))
                    .collect();
                out.push(format!("{table} {id:?}: {}", columns.join("; ")));
            }
            Some(_) => {}
        }
    }
    for (id, g) in &got_by_id {
        if !want_by_id.contains_key(id) {
            out.push(format!("{table} {id:?}: extra {g:?}"));
        }
    }
    out
}

/// The whole story on `layout`; `seed` drives the load's choices.
async fn writes_after_the_cutover_come_back_with_the_rollback(layout: Layout, seed: u64) {
    // The forward stream: backfill, then follow.
    let mut backfill = layout.spawn("backfill", &["backfill", "--jobs", "2"]);
    backfill
        .wait_for(
            &layout.target,
            "SELECT coalesce((SELECT status = 'following' FROM switchyard.migrations), false)",
        )
        .await;

    snapshot_legacy_tables(&layout).await;
    // The cutover stays on as the reverse consumer.
    let mut reverse = layout.spawn("cutover", &["cutover", "--keep-reverse"]);
    reverse
        .wait_for(
            &layout.target,
            "SELECT coalesce((SELECT status = 'cut_over' FROM switchyard.migrations), false)",
        )
        .await;
    // The application writes the new tables from the moment the cutover committed.
    let load = Load::start(layout.application().await, seed).await;
    // The forward consumer sees cut_over at its next heartbeat and stops.
    backfill.exited(Duration::from_secs(60)).await;
    reverse.wait_for_output("reverse stream").await;

    load.wait_acked(80).await;
    reverse.sigkill();
    load.wait_acked(140).await; // writes with no reverse consumer running
    let mut reverse = layout.spawn("follow-reverse", &["follow", "--reverse"]);
    load.wait_acked(220).await;

    let (ok, out) = rollback(&layout).await;
    assert!(
        ok,
        "rollback failed:\n{out}\nreverse consumer:\n{}",
        reverse.tail()
    );
    let status = reverse.exited(Duration::from_secs(60)).await;
    assert!(
        status.success(),
        "the reverse consumer: {status}\n{}",
        reverse.tail()
    );
    let report = load.ended().await;
    assert!(
        matches!(report.ending, Ending::ReadOnly(_)),
        "the load should end at a write refused as read-only after the rollback; it ended {}",
        report.ending
    );
    assert!(report.acked >= 220, "{} writes acknowledged", report.acked);
    assert_eq!(layout.status().await, "rolled_back");

    assert_legacy_tables_equal_the_oracle(&layout).await;
    acked::assert_acknowledged_writes_kept(&layout.source, &layout.target, &report.model).await;
    // The legacy side takes writes again.
    layout
        .source
        .batch_execute("UPDATE company_projects SET name = name WHERE id = (SELECT min(id) FROM company_projects)")
        .await
        .expect("the legacy tables are writable after the rollback");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_after_a_cutover_come_back_with_the_rollback_on_two_servers() {
    writes_after_the_cutover_come_back_with_the_rollback(Layout::two_servers().await, 0x5eed_0002)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_after_a_cutover_come_back_with_the_rollback_in_one_database() {
    writes_after_the_cutover_come_back_with_the_rollback(
        Layout::same_database().await,
        0x5eed_0001,
    )
    .await;
}

/// One legacy row, one claimant: a legacy id set by hand on a sub-task that a task has (in the
/// same transaction as a change to that task, and alone) stops the stream before anything is
/// written over; the fix its message asks for (the sub-task's id given back) keeps the task's
/// legacy row instead of deleting it.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_row_two_rows_claim_stops_the_stream_and_one_given_back_is_kept() {
    let layout = Layout::same_database().await;
    let mut backfill = layout.spawn("backfill", &["backfill", "--no-follow"]);
    assert!(
        backfill.exited(Duration::from_secs(120)).await.success(),
        "{}",
        backfill.tail()
    );
    let mut reverse = layout.spawn("cutover", &["cutover", "--keep-reverse"]);
    reverse.wait_for_output("reverse stream of migration").await;
    let tasks = ids(&layout.target, "tasks").await;
    let subs = ids(&layout.target, "sub_tasks").await;
    let title = |id: i64| legacy_title(&layout.source, id);
    let task_title = title(tasks[0]).await.expect("the task's legacy row");

    // In one transaction with a change to the task that has that id.
    layout
        .target
        .batch_execute(&format!(
            "BEGIN;
             UPDATE tasks SET title = 'edited' WHERE legacy_id = {t};
             UPDATE sub_tasks SET legacy_id = {t} WHERE legacy_id = {s};
             COMMIT;",
            t = tasks[0],
            s = subs[0]
        ))
        .await
        .unwrap();
    let status = reverse.exited(Duration::from_secs(60)).await;
    assert!(!status.success(), "{}", reverse.tail());
    assert!(
        reverse.output().contains("map to legacy row"),
        "{}",
        reverse.tail()
    );
    assert_eq!(
        title(tasks[0]).await.as_deref(),
        Some(task_title.as_str()),
        "nothing written over"
    );

    // The fix: the sub-task's id given back. The task's legacy row stays, with its edit.
    layout
        .target
        .batch_execute(&format!(
            "UPDATE sub_tasks SET legacy_id = {s} WHERE legacy_id = {t}",
            t = tasks[0],
            s = subs[0]
        ))
        .await
        .unwrap();
    let mut reverse = layout.spawn("follow-reverse", &["follow", "--reverse"]);
    reverse
        .wait_for(
            &layout.source,
            &format!(
                "SELECT coalesce((SELECT title = 'edited' FROM vortex_items_legacy WHERE id = {}), false)",
                tasks[0]
            ),
        )
        .await;
    assert!(title(subs[0]).await.is_some(), "the sub-task's legacy row");

    // Alone, against a task no change touches: the stream stops, the task's row is kept.
    let other = title(tasks[1]).await;
    layout
        .target
        .batch_execute(&format!(
            "UPDATE sub_tasks SET legacy_id = {t} WHERE legacy_id = {s}",
            t = tasks[1],
            s = subs[1]
        ))
        .await
        .unwrap();
    let status = reverse.exited(Duration::from_secs(60)).await;
    assert!(!status.success(), "{}", reverse.tail());
    assert!(
        reverse.output().contains("map to legacy row"),
        "{}",
        reverse.tail()
    );
    assert_eq!(
        title(tasks[1]).await,
        other,
        "the task's legacy row is not written over"
    );
}

/// The two smallest legacy ids of `table` in the new tables.
async fn ids(target: &Client, table: &str) -> Vec<i64> {
    let rows = target
        .query(
            &format!("SELECT legacy_id FROM {table} ORDER BY legacy_id LIMIT 2"),
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// The title of legacy item `id` (one database: the renamed legacy table), if it is there.
async fn legacy_title(source: &Client, id: i64) -> Option<String> {
    source
        .query_opt(
            "SELECT title FROM vortex_items_legacy WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}
