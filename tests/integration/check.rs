use switchyard::demo::cluster::{Cluster, ClusterOptions};

use crate::support::{seed_plan, seeded_source, switchyard};

#[test]
fn a_broken_plan_reports_all_its_errors_with_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("switchyard-broken-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("plan.toml");
    std::fs::write(
        &path,
        r#"name = "broken"
[phases]
before_backfill = ["missing.sql"]

[[sources]]
table = "company_projects"
key = ["id"]
[sources.derive]
stage = "lowr(type)"

[[sources.outputs]]
table = "projects"
key = ["id"]
when = "status = "
[sources.outputs.columns]
id = "uuid_v5('nowhere', id)"
stage_id = "lookup('project_stages', stage)"
"#,
    )
    .unwrap();
    let out = switchyard(&[
        "check",
        "--plan",
        path.to_str().unwrap(),
        "--source",
        "host=/nowhere",
        "--target",
        "host=/nowhere",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let file = path.display().to_string();
    for expected in [
        format!("{file}:3:20: phases.before_backfill: cannot read"),
        format!("{file}:9:10: sources[0].derive.stage: unknown function lowr"),
        format!("{file}:14:"),
        format!("{file}:16:15: sources[0].outputs[0].columns.id: uuid_v5: namespace must be"),
        format!("{file}:17:20: sources[0].outputs[0].columns.stage_id: lookup 'project_stages' is not declared"),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(stderr.contains("5 error(s)"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_a_missing_wal_level_and_primary_key_with_their_fixes_and_backfill_refuses() {
    let cluster =
        Cluster::start(ClusterOptions::default().with_setting("wal_level", "replica")).unwrap();
    let source = seeded_source(&cluster, "app", 0.001).await;
    source
        .batch_execute("ALTER TABLE company_services DROP CONSTRAINT company_services_pkey")
        .await
        .unwrap();
    let url = cluster.url("app");
    let plan = seed_plan();
    let out = switchyard(&[
        "check",
        "--plan",
        plan.to_str().unwrap(),
        "--source",
        &url,
        "--target",
        &url,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("wal_level is replica")
            && stdout.contains("ALTER SYSTEM SET wal_level = logical"),
        "{stdout}"
    );
    assert!(
        stdout.contains("source.public.company_services: no primary key")
            && stdout.contains(r#"ALTER TABLE "public"."company_services" REPLICA IDENTITY FULL"#),
        "{stdout}"
    );
    assert!(stdout.contains("2 error(s)"), "{stdout}");

    let out = switchyard(&[
        "backfill",
        "--plan",
        plan.to_str().unwrap(),
        "--source",
        &url,
        "--target",
        &url,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot start") && stderr.contains("wal_level"),
        "{stderr}"
    );
    let leftovers: i64 = source
        .query_one(
            "SELECT (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_publication)
                  + (SELECT count(*) FROM pg_namespace WHERE nspname = 'switchyard')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        leftovers, 0,
        "a refused backfill leaves no slot, publication or state behind"
    );
}

#[test]
fn passwords_never_appear_in_connection_errors() {
    let out = switchyard(&[
        "check",
        "--plan",
        seed_plan().to_str().unwrap(),
        "--source",
        "postgres://someone:s3cret-Pa55@127.0.0.1:1/db",
        "--target",
        "host=127.0.0.1 port=1 user=someone password=s3cret-Pa55 dbname=db",
    ]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(
        all.contains("127.0.0.1"),
        "the error names the server: {all}"
    );
    assert!(!all.contains("s3cret-Pa55"), "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_missing_privileges_with_the_grants_that_fix_them() {
    let cluster = crate::support::cluster();
    let source = seeded_source(&cluster, "legacy", 0.001).await;
    source
        .batch_execute("CREATE ROLE limited LOGIN; REVOKE ALL ON company_services FROM PUBLIC; GRANT SELECT ON company_projects, vortex_items TO limited;")
        .await
        .unwrap();
    cluster.create_database("app").await.unwrap();
    let url = |db: &str| cluster.url(db).replacen("postgres@", "limited@", 1);
    let plan = seed_plan();
    let out = switchyard(&[
        "check",
        "--plan",
        plan.to_str().unwrap(),
        "--source",
        &url("legacy"),
        "--target",
        &url("app"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    for expected in [
        r#"ALTER ROLE "limited" WITH REPLICATION;"#,
        r#"source.public.company_services: no SELECT privilege"#,
        r#"GRANT SELECT ON "public"."company_services""#,
        "may not create publication",
        "needs a privilege the target role lacks: permission denied for schema public",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_refuses_unlogged_source_tables_and_partitions_with_the_fix() {
    use crate::small_migration::{copy_plan, Migration};
    let source = "
        CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY, v text);
        CREATE TABLE events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
        CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE UNLOGGED TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');";
    let target = "CREATE TABLE scratch (id int PRIMARY KEY, v text);
                  CREATE TABLE events (id int, at date, PRIMARY KEY (id, at));";
    let plan = copy_plan(&[
        ("scratch", &["id"], "scratch", &["id", "v"]),
        ("events", &["id", "at"], "events", &["id", "at"]),
    ]);
    let m = Migration::prepare(source, target, &plan).await;
    let (ok, report) = m.check();
    assert!(!ok, "{report}");
    assert!(
        report.contains("error: source.public.scratch: the table is UNLOGGED")
            && report.contains("fix: ALTER TABLE public.scratch SET LOGGED;"),
        "{report}"
    );
    assert!(
        report.contains("error: source.public.events: partition public.events_2025 is UNLOGGED")
            && report.contains("fix: ALTER TABLE public.events_2025 SET LOGGED;")
            && !report.contains("events_2024 is"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_refuses_a_plan_naming_one_source_table_twice_with_file_line_and_field() {
    use crate::small_migration::Migration;
    let plan = "name = \"hostile\"
[[sources]]
table = \"t\"
key = [\"id\"]
[[sources.outputs]]
table = \"a\"
key = [\"id\"]
[sources.outputs.columns]
id = \"id\"
[[sources]]
schema = \"public\"
table = \"t\"
key = [\"id\"]
[[sources.outputs]]
table = \"b\"
key = [\"id\"]
[sources.outputs.columns]
id = \"id\"
";
    let m = Migration::prepare(
        "CREATE TABLE t (id int PRIMARY KEY)",
        "CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)",
        plan,
    )
    .await;
    let (ok, report) = m.check();
    assert!(!ok, "{report}");
    assert!(
        report.contains("hostile_plan.toml:12:9: sources[1].table: names public.t again, as sources[0] does (line 3)"),
        "{report}"
    );
}

/// The TOAST warning names only the columns the plan reads whose unchanged, out-of-line value
/// an update can leave out of the WAL: not the key (always in the WAL, even read by an
/// expression), not fixed-length or PLAIN columns, nor any column of a table without a TOAST
/// table (never out of line); and it says what they cost. A column copied 1:1 costs the same
/// lookup as one read by an expression: the consumer fills every unchanged value it reads.
#[tokio::test(flavor = "multi_thread")]
async fn check_warns_of_toast_lookups_only_for_columns_an_update_can_leave_out_of_the_wal() {
    use crate::small_migration::Migration;
    // `small` can be moved out of line too (any value longer than a TOAST pointer can, once
    // the row outgrows 2 kB); `u` has no TOAST table: its rows never outgrow the threshold.
    let source = "CREATE TABLE t (id text PRIMARY KEY, n int, flat text, kept text, body text, small varchar(20));
                  ALTER TABLE t ALTER flat SET STORAGE PLAIN;
                  CREATE TABLE u (id int PRIMARY KEY, code varchar(10));";
    let target = "CREATE TABLE o (id text PRIMARY KEY, up_id text, n1 int, up_flat text, kept text, up_body text, up_small text);
                  CREATE TABLE p (id int PRIMARY KEY, code text);";
    let plan = "name = \"hostile\"
[[sources]]
table = \"t\"
key = [\"id\"]
[[sources.outputs]]
table = \"o\"
key = [\"id\"]
[sources.outputs.columns]
id = \"id\"
up_id = \"upper(id)\"
n1 = \"n + 1\"
up_flat = \"upper(flat)\"
kept = \"kept\"
up_body = \"upper(body)\"
up_small = \"upper(small)\"
[[sources]]
table = \"u\"
key = [\"id\"]
[[sources.outputs]]
table = \"p\"
key = [\"id\"]
[sources.outputs.columns]
id = \"id\"
code = \"lower(code)\"
";
    let m = Migration::prepare(source, target, plan).await;
    let (ok, report) = m.check();
    assert!(ok, "{report}");
    let toast: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("out of line"))
        .collect();
    assert_eq!(toast.len(), 1, "{report}");
    assert!(
        toast[0].contains("(kept, body, small)")
            && toast[0].contains("one extra query per such update"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_prepares_each_reverse_rule_and_compares_it_with_the_legacy_columns() {
    use crate::small_migration::{copy_plan, Migration};
    let source = "CREATE TABLE legacy (
                      id int PRIMARY KEY,
                      title text NOT NULL,
                      owner text,
                      doubled int GENERATED ALWAYS AS (id * 2) STORED,
                      required text NOT NULL,
                      defaulted text NOT NULL DEFAULT 'x');";
    let target = "CREATE TABLE items (id int PRIMARY KEY, title text, owner text);";
    let mut plan = copy_plan(&[("legacy", &["id"], "items", &["id", "title", "owner"])]);
    plan += r#"
[reverse]
[[reverse.tables]]
table = "legacy"
from = "items"
when = "titel IS NOT NULL"
key = { id = "id" }
[reverse.tables.columns]
title = "upper(titel)"
owner = "length(owner)"
doubled = "id * 2"
nowhere = "title"
"#;
    let m = Migration::prepare(source, target, &plan).await;
    let (ok, report) = m.check();
    assert!(!ok, "{report}");
    for expected in [
        "error: plan.reverse.tables[0].when: PostgreSQL refuses the expression over public.items: column \"titel\" does not exist",
        "error: plan.reverse.tables[0].columns.title: PostgreSQL refuses the expression over public.items: column \"titel\" does not exist",
        "error: plan.reverse.tables[0].columns.doubled: public.legacy.doubled is a generated column",
        "error: plan.reverse.tables[0].columns.nowhere: legacy table public.legacy has no column nowhere",
        "error: plan.reverse.tables[0].columns: legacy column public.legacy.required is NOT NULL without a default",
        "warning: plan.reverse.tables[0].columns.owner: returns integer where legacy column public.legacy.owner is text",
    ] {
        assert!(report.contains(expected), "missing {expected:?} in:\n{report}");
    }
    // The key's expression and the defaulted column raise nothing.
    assert!(!report.contains("key.id"), "{report}");
    assert!(!report.contains("defaulted"), "{report}");

    // Expressions each fine alone, but not one value per row once together; a sequence that
    // is not there; a trailing comment, which is fine.
    let base = copy_plan(&[("legacy", &["id"], "items", &["id", "title", "owner"])]);
    for (columns, expected) in [
        (
            "title = \"max(title)\"\nowner = \"owner\"",
            "error: plan.reverse.tables[0]: PostgreSQL refuses the rule's SELECT over public.items: column \"items.id\" must appear in the GROUP BY clause",
        ),
        (
            "title = \"unnest(array[title, title])\"\nowner = \"owner\"",
            "error: plan.reverse.tables[0]: the rule's SELECT does not give one row per row of public.items (its plan has a ProjectSet node)",
        ),
        (
            "title = \"lag(title) OVER (ORDER BY id)\"\nowner = \"owner\"",
            "error: plan.reverse.tables[0]: the rule's SELECT does not give one row per row of public.items (its plan has a WindowAgg node)",
        ),
    ] {
        let plan = format!(
            "{base}\n[reverse]\n[[reverse.tables]]\ntable = \"legacy\"\nfrom = \"items\"\nkey = {{ id = \"id\" }}\nsequence = \"legacy_id_seq\"\n[reverse.tables.columns]\n{columns}\nrequired = \"'r' -- always r\"\n"
        );
        std::fs::write(&m.plan, plan).unwrap();
        let (ok, report) = m.check();
        assert!(!ok, "{report}");
        for expected in [
            expected,
            "error: plan.reverse.tables[0].sequence: legacy_id_seq is not a sequence on the source",
        ] {
            assert!(report.contains(expected), "missing {expected:?} in:\n{report}");
        }
        assert!(!report.contains("columns.required"), "{report}");
    }

    // The seed's own rules pass against its legacy and new schemas.
    let cluster = crate::support::cluster();
    seeded_source(&cluster, "legacy", 0.001).await;
    cluster.create_database("app").await.unwrap();
    let seed = seed_plan();
    let out = switchyard(&[
        "check",
        "--plan",
        seed.to_str().unwrap(),
        "--source",
        &cluster.url("legacy"),
        "--target",
        &cluster.url("app"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(!stdout.contains("reverse"), "{stdout}");
}
