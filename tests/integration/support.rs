//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use switchyard::demo::cluster::{Cluster, ClusterOptions};
use switchyard::demo::generator::load_legacy;
use switchyard::demo::verify::{compare, Exclusions};
use tokio_postgres::Client;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn seed_plan() -> PathBuf {
    repo().join("transforms/legacy_to_projects/plan.toml")
}

/// The seed plan's after-backfill files, stage by stage, as one script for one session (what
/// a DBA running them by hand, or `check`, runs).
pub fn seed_after_backfill_sql() -> String {
    let plan = switchyard::plan::Plan::load(&seed_plan()).expect("the seed plan loads");
    plan.phases
        .after_backfill_files()
        .map(|f| f.sql.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn cluster() -> Cluster {
    Cluster::start(ClusterOptions::default()).expect("start a throwaway cluster")
}

/// A database on `cluster` with the legacy tables at `scale` and schema `expected` computed
/// from them by the plain SQL migration.
pub async fn seeded_source(cluster: &Cluster, db: &str, scale: f64) -> Client {
    cluster.create_database(db).await.expect("create database");
    let client = cluster.connect(db).await.expect("connect");
    load_legacy(&client, scale).await.expect("load legacy data");
    compute_expected(&client).await;
    client
}

/// (Re)computes schema `expected` from the legacy tables as they are now.
pub async fn compute_expected(client: &Client) {
    let sql =
        std::fs::read_to_string(repo().join("transforms/legacy_to_projects/expected.sql")).unwrap();
    client.batch_execute(&sql).await.expect("expected.sql");
}

/// Runs the switchyard binary and returns its output.
pub fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env_remove("SWITCHYARD_SOURCE")
        .env_remove("SWITCHYARD_TARGET")
        .output()
        .expect("run switchyard")
}

/// `switchyard <command> --plan <plan> --source <source> --target <target> <extra>`, not yet
/// started, without the connection variables of the test's environment.
pub fn command(command: &str, plan: &Path, source: &str, target: &str, extra: &[&str]) -> Command {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    child
        .args([command, "--plan", plan.to_str().unwrap()])
        .args(["--source", source, "--target", target])
        .args(extra)
        .env_remove("SWITCHYARD_SOURCE")
        .env_remove("SWITCHYARD_TARGET");
    child
}

/// Runs `switchyard <command> --plan <plan> --source <source> --target <target> <extra>`.
pub fn run_command(
    command: &str,
    plan: &Path,
    source: &str,
    target: &str,
    extra: &[&str],
) -> Output {
    self::command(command, plan, source, target, extra)
        .output()
        .expect("run switchyard")
}

pub fn backfill(source: &str, target: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--jobs", "2", "--no-follow"];
    args.extend_from_slice(extra);
    let out = run_command("backfill", &seed_plan(), source, target, &args);
    assert!(
        out.status.success(),
        "backfill failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts every output table equals the expected result, row for row.
pub async fn assert_target_matches_expected(source: &Client, target: &Client) {
    let reports = compare(source, target, &Exclusions::default())
        .await
        .expect("compare");
    let dirty: Vec<String> = reports
        .iter()
        .filter(|r| !r.is_clean())
        .map(|r| {
            format!(
                "{}: {} equal, missing {:?}, extra {:?}, different {:?}",
                r.table,
                r.equal,
                &r.missing[..r.missing.len().min(5)],
                &r.extra[..r.extra.len().min(5)],
                &r.different[..r.different.len().min(5)]
            )
        })
        .collect();
    assert!(
        dirty.is_empty(),
        "target differs from the expected result:\n{}",
        dirty.join("\n")
    );
    for r in &reports {
        assert!(
            r.equal > 0 || r.table == "team_members",
            "{}: nothing was compared",
            r.table
        );
    }
}

/// Waits until `condition` (SQL returning one boolean) holds on `client`. Fails if `child`
/// exits first (showing its stderr when it is piped) or after two minutes.
pub async fn wait_for(client: &Client, condition: &str, child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                use std::io::Read;
                let _ = stderr.read_to_string(&mut err);
            }
            panic!("switchyard exited with {status} while waiting for {condition}: {err}");
        }
        let holds = client
            .query_one(condition, &[])
            .await
            .map(|r| r.get::<_, bool>(0))
            .unwrap_or(false);
        if holds {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {condition}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Creates the target tables ahead of the backfill (the before-phase SQL is idempotent) and
/// runs `extra_sql` on them.
pub async fn prepare_target(target: &Client, extra_sql: &str) {
    let sql =
        std::fs::read_to_string(repo().join("transforms/legacy_to_projects/target_schema.sql"))
            .unwrap();
    target.batch_execute(&sql).await.unwrap();
    target.batch_execute(extra_sql).await.unwrap();
}

/// Creates the target tables and makes the COPY into `tasks` stall on the rows with legacy
/// ids in `from..from + count`: the chunk holding them never finishes while the others do,
/// which is a deterministic point to kill a backfill at.
pub async fn stall_tasks(target: &Client, from: i64, count: i64) {
    prepare_target(
        target,
        &format!(
            "CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.legacy_id >= {from} AND NEW.legacy_id < {from} + {count} THEN PERFORM pg_sleep(600); END IF; RETURN NEW; END $$;
             CREATE TRIGGER stall BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION stall();
             ALTER TABLE tasks ENABLE ALWAYS TRIGGER stall;"
        ),
    )
    .await;
}

/// Ends the backends still sleeping in the stall (a killed client does not wake them), then
/// lifts it.
pub async fn lift_stall(target: &Client) {
    target
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'switchyard%';
             DROP TRIGGER stall ON tasks;",
        )
        .await
        .unwrap();
}

/// Waits until the consumer (`child`) has confirmed everything `source` has written so far
/// through replication slot `slot`.
pub async fn wait_until_applied(source: &Client, slot: &str, child: &mut std::process::Child) {
    // The insert position: with synchronous_commit off, a commit may not be written yet.
    let lsn: String = source
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let condition = format!(
        "SELECT confirmed_flush_lsn >= '{lsn}' FROM pg_replication_slots WHERE slot_name = '{slot}'"
    );
    wait_for(source, &condition, child).await;
}

/// The top-level item in the middle of `vortex_items`: stalling it leaves one chunk in flight.
pub async fn middle_top_level_item(source: &Client) -> i64 {
    source
        .query_one(
            "SELECT id FROM vortex_items WHERE parent_item_id IS NULL ORDER BY id
              OFFSET (SELECT count(*) / 2 FROM vortex_items WHERE parent_item_id IS NULL) LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// The chunks of every migration in `target` marked done.
pub async fn done_chunks(target: &Client) -> i64 {
    target
        .query_one(
            "SELECT count(*) FROM switchyard.chunks WHERE status = 'done'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}
