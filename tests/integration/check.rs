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
