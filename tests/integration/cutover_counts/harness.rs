//! Helpers of the count tests: `switchyard cutover` run to the end or watched line by line,
//! rows deleted and put back from a plain session, and what a refused cutover must leave as it
//! was.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use switchyard::demo::cluster::Cluster;
use tokio_postgres::Client;

use crate::follow::Following;
use crate::support::seed_plan;

/// The legacy tables of the seed plan.
const LEGACY: [&str; 3] = ["company_projects", "company_services", "vortex_items"];

/// The seed plan at a scale that keeps each test to a few seconds.
pub(super) const SCALE: f64 = 0.01;

/// A task no sub-task points at (a foreign key would refuse its delete), as JSON.
pub(super) const A_LEAF_TASK: &str = "SELECT row_to_json(t)::text FROM tasks t
     WHERE NOT EXISTS (SELECT FROM sub_tasks s WHERE s.task_id = t.id) ORDER BY legacy_id LIMIT 1";

/// `switchyard cutover <extra>` with the seed plan; the process, not yet awaited.
pub(super) fn cutover_command(
    source: &str,
    target: &str,
    extra: &[&str],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .arg("cutover")
        .args(extra)
        .args(["--plan", seed_plan().to_str().unwrap()])
        .args(["--source", source, "--target", target])
        .env_remove("SWITCHYARD_SOURCE")
        .env_remove("SWITCHYARD_TARGET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs a cutover to completion: (exit code, stdout + stderr).
pub(super) async fn cutover(source: &str, target: &str, extra: &[&str]) -> (Option<i32>, String) {
    let out = cutover_command(source, target, extra)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// How long the test's own statements wait for a lock before failing the test: a change
/// that the cutover blocks would otherwise hold the cutover (and the test) until it gives up.
const CHANGE_LOCK_TIMEOUT: &str = "SET lock_timeout = '10s'";

/// Runs a cutover of `f`'s migration to its end, holding it before its write lock: once it
/// reports a lock attempt (every step before the lock is done, the counts' baselines taken),
/// each of `source_changes` runs on the source in a transaction of its own, then
/// `target_change` on `target_db`, and only then is the lock let through. An open transaction on the source
/// holds the cutover there: its lock conflicts with the write lock, so the cutover backs off
/// and retries, and says so. (exit code, stdout + stderr).
pub(super) async fn cutover_changing_while_it_waits(
    f: &Following,
    source_changes: &[&str],
    target_db: &Client,
    target_change: &str,
) -> (Option<i32>, String) {
    let (source, target) = (f.source_cluster.url("legacy"), f.target_cluster.url("app"));
    // ROW SHARE conflicts with the write lock's EXCLUSIVE. No transaction id is assigned, so
    // nothing that waits for running transactions (a slot exporting a snapshot) waits for it.
    let holder = f.source_cluster.connect("legacy").await.unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE vortex_items IN ROW SHARE MODE")
        .await
        .unwrap();
    let mut child = cutover_command(
        &source,
        &target,
        &["--lock-timeout", "200ms", "--lock-attempts", "30"],
    )
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = String::new();
    let waiting = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            out.push_str(&line);
            out.push('\n');
            if line.contains("lock attempt") {
                return true;
            }
        }
        false
    })
    .await;
    if waiting != Ok(true) {
        let _ = child.kill().await;
        panic!("the cutover never reported waiting for its lock:\n{out}");
    }
    let changes = source_changes.iter().map(|c| (&f.source, *c));
    for (db, change) in changes.chain([(target_db, target_change)]) {
        if change.is_empty() {
            continue;
        }
        if let Err(e) = db
            .batch_execute(&format!("{CHANGE_LOCK_TIMEOUT}; {change}"))
            .await
        {
            let _ = child.kill().await;
            panic!("the change `{change}` failed: {e:?}\n{out}");
        }
    }
    holder.batch_execute("COMMIT").await.unwrap();
    while let Some(line) = lines.next_line().await.unwrap() {
        out.push_str(&line);
        out.push('\n');
    }
    let mut stderr = child.stderr.take().unwrap();
    stderr.read_to_string(&mut out).await.unwrap();
    (child.wait().await.unwrap().code(), out)
}

/// The cutover failed, saying the counts differ and naming `table` in that message.
pub(super) fn assert_refused_naming(code: Option<i32>, out: &str, table: &str) {
    assert_eq!(code, Some(1), "the cutover must fail:\n{out}");
    let start = out
        .lines()
        .position(|l| l.contains("differ"))
        .unwrap_or_else(|| panic!("no message says the counts differ:\n{out}"));
    let refusal = out.lines().skip(start).collect::<Vec<_>>().join("\n");
    assert!(
        refusal.contains(table),
        "the refusal does not name {table}:\n{out}"
    );
    assert!(!out.contains("cutover committed"), "{out}");
}

/// The cutover committed.
pub(super) fn assert_committed(code: Option<i32>, out: &str) {
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("cutover committed"), "{out}");
}

pub(super) async fn status(target: &Client) -> String {
    target
        .query_one("SELECT status FROM switchyard.migrations", &[])
        .await
        .unwrap()
        .get(0)
}

/// Nothing was swapped on `source`: each legacy name is still a table, no read-only trigger
/// guards it, and a write goes through.
pub(super) async fn assert_legacy_untouched(source: &Client) {
    for table in LEGACY {
        let kind: String = source
            .query_one(
                "SELECT relkind::text FROM pg_class WHERE oid = $1::text::regclass",
                &[&table],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(kind, "r", "{table} is still the legacy table");
    }
    let guards: i64 = source
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'switchyard_read_only'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(guards, 0, "no read-only trigger is left on the source");
    source
        .batch_execute(
            "SET lock_timeout = '2s'; UPDATE vortex_items SET title = title WHERE id = 1; RESET lock_timeout",
        )
        .await
        .expect("the legacy tables take writes");
}

/// What a cutover may add for its duration and must take away again: the triggers on the
/// counted output tables of `target` (the target's counts may be carried forward by some) and
/// the replication slots of `source` (the source's by a snapshot a slot exported).
pub(super) async fn transient_objects(source: &Client, target: &Client) -> Vec<String> {
    let mut objects: Vec<String> = target
        .query(
            "SELECT format('trigger %s on %s', tgname, tgrelid::regclass) FROM pg_trigger
              WHERE NOT tgisinternal
                AND tgrelid = ANY ('{public.projects,public.tasks,public.sub_tasks}'::regclass[])",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    objects.extend(
        source
            .query("SELECT 'slot ' || slot_name FROM pg_replication_slots", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0)),
    );
    objects.sort();
    objects
}

/// A committed cutover took away the triggers it put on the output tables for its duration
/// (the slot goes as the plan says, so only the triggers of `before` are compared).
pub(super) async fn assert_no_trigger_left(source: &Client, target: &Client, before: &[String]) {
    let triggers = |objects: &[String]| -> Vec<String> {
        objects
            .iter()
            .filter(|o| o.starts_with("trigger "))
            .cloned()
            .collect()
    };
    let after = transient_objects(source, target).await;
    assert_eq!(triggers(&after), triggers(before));
}

/// The refused cutover left the two-server migration as it was: `before` is what
/// [`transient_objects`] found before it.
pub(super) async fn assert_nothing_changed(f: &mut Following, before: &[String]) {
    assert_eq!(status(&f.target).await, "following");
    assert_eq!(transient_objects(&f.source, &f.target).await, before);
    assert_legacy_untouched(&f.source).await;
    assert!(
        f.consumer.try_wait().unwrap().is_none(),
        "the consumer still runs"
    );
}

/// Deletes `row_sql`'s row (JSON of a `table` row) from `table` behind the consumer's back;
/// returns it for [`put_back`].
pub(super) async fn delete_behind_the_back(db: &Client, table: &str, row_sql: &str) -> String {
    let row: String = db.query_one(row_sql, &[]).await.unwrap().get(0);
    let deleted = db
        .execute(
            &format!("DELETE FROM {table} WHERE id = ($1::text::json ->> 'id')::uuid"),
            &[&row],
        )
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    row
}

/// Inserts `row` (JSON) into `table` again.
pub(super) async fn put_back(db: &Client, table: &str, row: &str) {
    db.execute(
        &format!(
            "INSERT INTO {table} SELECT * FROM json_populate_record(NULL::{table}, $1::text::json)"
        ),
        &[&row],
    )
    .await
    .unwrap();
}

/// `switchyard follow` on one database, its stderr in a file in the cluster's directory.
pub(super) fn follow_in_one_database(c: &Cluster, url: &str) -> std::process::Child {
    let log = std::fs::File::create(c.dir().join("follow.log")).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["follow", "--plan", seed_plan().to_str().unwrap()])
        .args(["--source", url, "--target", url])
        .env_remove("SWITCHYARD_SOURCE")
        .env_remove("SWITCHYARD_TARGET")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Kills the consumer when the test ends, even when it fails.
pub(super) struct Consumer(pub(super) std::process::Child);

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
