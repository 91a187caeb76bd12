//! The demo building blocks the other tests stand on: throwaway clusters, the deterministic
//! legacy data, the seed migration's SQL files and the write load.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use switchyard::demo::cluster::{Cluster, ClusterOptions};
use switchyard::demo::generator::{load_legacy, LoadedCounts};
use switchyard::demo::write_load::{WriteKind, WriteLoad, WriteLoadOptions};
use tokio_postgres::Client;

/// Small enough for a test (200 projects, 40 services, 2,000 items), big enough for every case.
const TEST_SCALE: f64 = 0.002;
const EXPECTED_SQL: &str = include_str!("../../transforms/legacy_to_projects/expected.sql");
const TARGET_SCHEMA_SQL: &str =
    include_str!("../../transforms/legacy_to_projects/target_schema.sql");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn scalar<T>(client: &Client, sql: &str) -> T
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    let row = client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.get(0)
}

async fn names(client: &Client, sql: &str) -> BTreeSet<String> {
    let rows = client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter().map(|row| row.get(0)).collect()
}

#[test]
fn cluster_is_logical_and_vanishes_on_drop_even_after_a_panic() {
    let rt = runtime();
    let mut seen: Option<(PathBuf, u16)> = None;
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let cluster = Cluster::start(ClusterOptions::default()).expect("cluster starts");
        seen = Some((cluster.dir().to_path_buf(), cluster.port()));
        rt.block_on(async {
            let client = cluster.connect("postgres").await.expect("connects");
            let wal_level: String = scalar(&client, "SHOW wal_level").await;
            assert_eq!(wal_level, "logical");
            cluster
                .create_database("with \"quotes\"")
                .await
                .expect("creates a database");
            cluster
                .connect("with%20%22quotes%22")
                .await
                .expect("connects to it");
        });
        panic!("deliberate panic with the cluster alive");
    }));
    assert!(outcome.is_err(), "the closure panics on purpose");
    let (dir, port) = seen.expect("the cluster started");
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still answers"
    );
}

#[test]
fn scram_cluster_accepts_only_its_password_and_restarts() {
    let password = "s3cret/with:odd@chars";
    let mut cluster =
        Cluster::start(ClusterOptions::default().with_password(password)).expect("cluster starts");
    assert!(cluster
        .url("postgres")
        .contains("s3cret%2Fwith%3Aodd%40chars"));
    runtime().block_on(async {
        let client = cluster
            .connect("postgres")
            .await
            .expect("password accepted");
        let method: String = scalar(
            &client,
            "SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' LIMIT 1",
        )
        .await;
        assert_eq!(method, "scram-sha-256");
        let no_password = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port());
        let refused = tokio_postgres::connect(&no_password, tokio_postgres::NoTls).await;
        assert!(refused.is_err(), "connected without a password");
    });
    cluster.restart().expect("restarts on the same port");
    runtime().block_on(async {
        let client = cluster
            .connect("postgres")
            .await
            .expect("reconnects after restart");
        let one: i32 = scalar(&client, "SELECT 1").await;
        assert_eq!(one, 1);
    });
}

#[test]
fn generator_is_deterministic_and_the_seed_sql_runs() {
    let cluster = Cluster::start(ClusterOptions::default()).expect("cluster starts");
    runtime().block_on(async {
        let mut checksums = Vec::new();
        for db in ["legacy_a", "legacy_b"] {
            cluster.create_database(db).await.unwrap();
            let client = cluster.connect(db).await.unwrap();
            let counts = load_legacy(&client, TEST_SCALE).await.expect("loads");
            assert_eq!(counts, LoadedCounts::for_scale(TEST_SCALE));
            assert_eq!(counts.vortex_items, 2_000);
            let sum: String = scalar(
                &client,
                "SELECT (SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM company_projects t)
                     || (SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM company_services t)
                     || (SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM vortex_items t)",
            )
            .await;
            checksums.push(sum);
        }
        assert_eq!(checksums[0], checksums[1], "same scale, same data");

        let source = cluster.connect("legacy_a").await.unwrap();
        let sub_tasks: i64 =
            scalar(&source, "SELECT count(*) FROM vortex_items WHERE parent_item_id IS NOT NULL")
                .await;
        assert!((600..1000).contains(&sub_tasks), "about 40% sub-tasks, got {sub_tasks}");
        let orphans: i64 = scalar(
            &source,
            "SELECT count(*) FROM vortex_items v WHERE project_id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM company_projects p WHERE p.id = v.project_id)",
        )
        .await;
        assert!(orphans > 0, "some items reference projects that never existed");
        let toasted: i64 =
            scalar(&source, "SELECT count(*) FROM vortex_items WHERE pg_column_size(body) > 4000")
                .await;
        assert!(toasted > 10, "about 2% large, incompressible bodies, got {toasted}");
        let next_id: i64 = scalar(&source, "SELECT nextval('vortex_items_id_seq')").await;
        assert_eq!(next_id, 2_001, "the sequence is past the loaded ids");

        source.batch_execute(EXPECTED_SQL).await.expect("expected.sql runs");
        source.batch_execute(EXPECTED_SQL).await.expect("expected.sql runs again");
        let projects: i64 = scalar(&source, "SELECT count(*) FROM expected.projects").await;
        assert_eq!(projects, 240);
        let items: i64 = scalar(
            &source,
            "SELECT (SELECT count(*) FROM expected.tasks) + (SELECT count(*) FROM expected.sub_tasks)",
        )
        .await;
        assert_eq!(items, 2_000);
        let stages = names(&source, "SELECT name FROM expected.project_stages").await;
        let want = ["done", "in progress", "maintenance", "planning", "review"];
        assert_eq!(stages, want.iter().map(|s| s.to_string()).collect());
        let statuses = names(&source, "SELECT name FROM expected.task_statuses").await;
        let want = ["doing", "done", "todo"];
        assert_eq!(statuses, want.iter().map(|s| s.to_string()).collect());
        let project_statuses = names(&source, "SELECT DISTINCT status FROM expected.projects").await;
        let want = ["active", "archived", "on_hold", "unknown"];
        assert_eq!(project_statuses, want.iter().map(|s| s.to_string()).collect());
        let norm: Option<String> = scalar(&source, "SELECT expected.norm(' In-_ Progress ')").await;
        assert_eq!(norm.as_deref(), Some("in progress"));
        let dash: Option<String> = scalar(&source, "SELECT expected.norm('-')").await;
        assert_eq!(dash, None);
        let team_id: String = scalar(
            &source,
            "SELECT id::text FROM expected.teams WHERE company_id = 1",
        )
        .await;
        let want = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"company:1").to_string();
        assert_eq!(team_id, want, "team ids are uuid v5 of 'company:<id>'");
    });
}

#[test]
fn target_sql_is_rerunnable_and_orphans_leave_foreign_keys_not_valid() {
    let cluster = Cluster::start(ClusterOptions::default()).expect("cluster starts");
    runtime().block_on(async {
        cluster.create_database("target").await.unwrap();
        let target = cluster.connect("target").await.unwrap();
        target
            .batch_execute(TARGET_SCHEMA_SQL)
            .await
            .expect("target schema");
        target
            .batch_execute(TARGET_SCHEMA_SQL)
            .await
            .expect("target schema again");
        target
            .batch_execute(
                "INSERT INTO tasks (id, legacy_id, project_id, title)
                 VALUES (gen_random_uuid(), 1, gen_random_uuid(), 'orphan')",
            )
            .await
            .unwrap();
        target
            .batch_execute(&crate::support::seed_after_backfill_sql())
            .await
            .expect("after backfill");
        target
            .batch_execute(&crate::support::seed_after_backfill_sql())
            .await
            .expect("after backfill again");
        let not_valid = names(
            &target,
            "SELECT conname::text FROM pg_constraint WHERE contype = 'f' AND NOT convalidated",
        )
        .await;
        assert_eq!(
            not_valid,
            BTreeSet::from(["tasks_project_id_fkey".to_string()])
        );
        let constraints: i64 = scalar(
            &target,
            "SELECT count(*) FROM pg_constraint WHERE contype IN ('f', 'u')
               AND conrelid IN ('projects'::regclass, 'tasks'::regclass, 'sub_tasks'::regclass)",
        )
        .await;
        assert_eq!(constraints, 9, "three unique keys and six foreign keys");
        target
            .batch_execute(
                "DROP TABLE sub_tasks, tasks, projects, team_members, teams, task_statuses, project_stages",
            )
            .await
            .expect("the new tables drop in one statement whatever their foreign keys");
        let left: i64 = scalar(
            &target,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
        )
        .await;
        assert_eq!(left, 0);
    });
}

#[test]
fn write_load_logs_acknowledged_writes_and_stops() {
    let cluster = Cluster::start(ClusterOptions::default()).expect("cluster starts");
    runtime().block_on(async {
        let client = cluster.connect("postgres").await.unwrap();
        load_legacy(&client, TEST_SCALE).await.unwrap();
        let options = WriteLoadOptions {
            connections: 3,
            record_acks: true,
            ..WriteLoadOptions::default()
        };
        let load = WriteLoad::start(&cluster.url("postgres"), options)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while load.counts().committed() < 500 {
            assert!(
                Instant::now() < deadline,
                "write load stalled: {:?}",
                load.counts()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let report = load.stop().await.unwrap();
        let counts = report.counts;
        assert_eq!(counts.errors, 0, "{:?}", report.last_error);
        assert!(counts.item_updates > counts.item_inserts);
        assert!(counts.item_inserts > 0 && counts.sub_task_inserts > 0);
        assert!(counts.project_updates > 0 && counts.item_deletes > 0);
        assert_eq!(
            report.acked.len() as u64,
            counts.committed() - counts.misses
        );

        // Every inserted row that no later delete removed is in the table.
        let mut live = Vec::new();
        for (i, write) in report.acked.iter().enumerate() {
            let inserted = matches!(write.kind, WriteKind::InsertItem | WriteKind::InsertSubTask);
            let deleted_later = report.acked[i..]
                .iter()
                .any(|w| w.kind == WriteKind::DeleteItem && w.id == write.id);
            if inserted && !deleted_later {
                live.push(write.id);
            }
        }
        let found: i64 = client
            .query_one(
                "SELECT count(*) FROM vortex_items WHERE id = ANY($1)",
                &[&live],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(found as usize, live.len());
        let bad_parents: i64 = scalar(
            &client,
            "SELECT count(*) FROM vortex_items s JOIN vortex_items p ON p.id = s.parent_item_id
              WHERE p.parent_item_id IS NOT NULL",
        )
        .await;
        assert_eq!(bad_parents, 0, "sub-tasks hang off top-level items only");
    });
}
