//! Safe to point at production: the password never leaves the process (every command's output
//! at the most verbose logging, the server's log, the tool's schema, `pg_stat_activity`), TLS
//! with certificate checks on every session, and a run with only the documented grants.

use std::cell::Cell;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use switchyard::demo::cluster::{Cluster, ClusterOptions};
use switchyard::demo::write_load::{WriteLoad, WriteLoadOptions};
use tokio_postgres::Client;

use crate::support::{
    assert_target_matches_expected, cluster, compute_expected, repo, seed_plan, seeded_source,
    wait_for,
};
use crate::tls::SelfSignedCertificate;

/// Distinctive enough that any occurrence is a leak, and URL-safe so both forms carry it as is.
const PASSWORD: &str = "Zq9-leak-canary-7vLm";
/// A wrong password must not leak either.
const WRONG_PASSWORD: &str = "Wr0ng-canary-pw-4kT";
/// Server settings that make the server log everything a leak could hide in.
const VERBOSE_SERVER: &[(&str, &str)] = &[
    ("log_statement", "all"),
    ("log_connections", "on"),
    ("log_disconnections", "on"),
    ("log_replication_commands", "on"),
    ("log_min_messages", "debug1"),
    ("log_error_verbosity", "verbose"),
];

/// Every file a run of the binary wrote its stdout and stderr to, for the final grep.
struct Transcripts {
    dir: PathBuf,
    count: Cell<usize>,
}

impl Transcripts {
    fn new(name: &str) -> Transcripts {
        let dir = std::env::temp_dir().join(format!("switchyard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Transcripts {
            dir,
            count: Cell::new(0),
        }
    }

    /// Starts the binary at the most verbose logging, its output going to two new files.
    fn spawn(&self, args: &[String], env: &[(&str, &str)]) -> Child {
        self.count.set(self.count.get() + 1);
        let base = self
            .dir
            .join(format!("{:02}-{}", self.count.get(), args[0]));
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .env_remove("SWITCHYARD_SOURCE")
            .env_remove("SWITCHYARD_TARGET")
            .env_remove("PGPASSWORD")
            .envs(env.iter().copied())
            .env("SWITCHYARD_LOG", "trace")
            .stdout(File::create(base.with_extension("out")).unwrap())
            .stderr(File::create(base.with_extension("err")).unwrap())
            .spawn()
            .unwrap()
    }

    /// Runs the binary to its end; returns whether it succeeded and what it printed.
    fn run(&self, args: &[String], env: &[(&str, &str)]) -> (bool, String) {
        let status = self.spawn(args, env).wait().unwrap();
        (status.success(), self.printed())
    }

    /// What the last run printed, stdout then stderr.
    fn last(&self) -> String {
        let base = self.dir.join(format!("{:02}-", self.count.get()));
        let mut text = String::new();
        for entry in std::fs::read_dir(&self.dir).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().starts_with(&*base.to_string_lossy()) {
                text.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
        text
    }

    /// Waits until the last run printed `needle`, failing if it exits first.
    fn wait_for_output(&self, needle: &str, child: &mut Child) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.last().contains(needle) {
            assert!(
                child.try_wait().unwrap().is_none() && Instant::now() < deadline,
                "{needle:?} never printed: {}",
                self.printed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the last run printed, without the trace and debug lines.
    fn printed(&self) -> String {
        let text = self.last();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("TRACE") && !l.contains("DEBUG"))
            .collect();
        lines.join("\n")
    }

    /// (file, text) of every transcript.
    fn all(&self) -> Vec<(PathBuf, String)> {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
                (path, text)
            })
            .collect()
    }
}

impl Drop for Transcripts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stops a consumer as Ctrl-C would and waits for it.
fn interrupt(child: &mut Child) {
    // SAFETY: kill(2) with a pid we spawned and still own (not yet waited for).
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the consumer did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every row of every table in schema switchyard, as text.
async fn tool_schema_text(target: &Client) -> String {
    let tables = target
        .query(
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables WHERE table_schema = 'switchyard'",
            &[],
        )
        .await
        .unwrap();
    assert!(tables.len() >= 3, "the tool's schema was not found");
    let mut text = String::new();
    for table in tables {
        let name: String = table.get(0);
        let sql = format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM {name} t");
        text.push_str(
            &target
                .query_one(&sql, &[])
                .await
                .unwrap()
                .get::<_, String>(0),
        );
    }
    text
}

/// What the server shows of its sessions: application names, queries, connection info.
async fn sessions_text(admin: &Client) -> String {
    admin
        .query_one(
            "SELECT string_agg(concat_ws(' ', application_name, usename, client_addr, query, backend_type), E'\\n')
               FROM pg_stat_activity",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn assert_no_password(what: &str, text: &str) {
    for secret in [PASSWORD, WRONG_PASSWORD] {
        if let Some(at) = text.find(secret) {
            let from = text[..at]
                .char_indices()
                .rev()
                .nth(200)
                .map_or(0, |(i, _)| i);
            panic!(
                "{what} holds a password: ...{}",
                &text[from..(at + 200).min(text.len())]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_never_appears_in_output_logs_or_state_and_every_session_uses_tls() {
    let certificate = SelfSignedCertificate::for_localhost();
    let mut options = ClusterOptions::default()
        .with_password(PASSWORD)
        .with_tls(certificate.cert_file(), certificate.key_file());
    for (name, value) in VERBOSE_SERVER {
        options = options.with_setting(*name, *value);
    }
    let cluster = Cluster::start(options).unwrap();
    let admin = seeded_source(&cluster, "legacy", 0.002).await;
    cluster.create_database("app").await.unwrap();
    let target_admin = cluster.connect("app").await.unwrap();
    let (port, root) = (cluster.port(), certificate.cert_file());
    let root = root.to_str().unwrap();
    // The source as a URL, the target as key=value, both verifying the certificate and name.
    let source = format!(
        "postgres://postgres:{PASSWORD}@localhost:{port}/legacy?sslmode=verify-full&sslrootcert={root}"
    );
    let target = format!(
        "host=localhost port={port} user=postgres password={PASSWORD} dbname=app sslmode=verify-full sslrootcert='{root}'"
    );
    let plan = seed_plan();
    let plan = plan.to_str().unwrap();
    let runs = Transcripts::new("password-canary");
    // `command --plan P extra...`, then with `--source S --target T`.
    let with = |command: &str, extra: &[&str]| -> Vec<String> {
        [command, "--plan", plan]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let both = |mut args: Vec<String>, source: &str, target: &str| -> Vec<String> {
        args.extend(["--source", source, "--target", target].map(String::from));
        args
    };

    let (ok, out) = runs.run(&both(with("check", &[]), &source, &target), &[]);
    assert!(ok, "check: {out}");
    let mut consumer = runs.spawn(
        &both(with("backfill", &["--jobs", "2"]), &source, &target),
        &[],
    );
    wait_for(
        &target_admin,
        "SELECT coalesce((SELECT status = 'following' FROM switchyard.migrations), false)",
        &mut consumer,
    )
    .await;
    admin
        .batch_execute("UPDATE company_projects SET name = name || ' (renamed)' WHERE id % 7 = 0")
        .await
        .unwrap();
    wait_for(
        &target_admin,
        "SELECT changes_applied > 0 FROM switchyard.migrations",
        &mut consumer,
    )
    .await;
    // Every session of the tool, ordinary and walsender, is encrypted.
    let plain: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
              WHERE (a.application_name LIKE 'switchyard%' OR a.backend_type = 'walsender') AND NOT s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(plain, 0, "a session of the tool is not encrypted");
    let walsenders: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.backend_type = 'walsender' AND s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(walsenders, 1, "the replication connection runs over TLS");
    assert_no_password("pg_stat_activity", &sessions_text(&admin).await);

    // The password given by PGPASSWORD instead of in the strings.
    let bare_source = format!(
        "postgres://postgres@localhost:{port}/legacy?sslmode=verify-full&sslrootcert={root}"
    );
    let bare_target = format!(
        "host=localhost port={port} user=postgres dbname=app sslmode=verify-full sslrootcert={root}"
    );
    let pgpassword = [("PGPASSWORD", PASSWORD)];
    for (args, env) in [
        (with("status", &["--target", &target]), &[][..]),
        (
            with(
                "status",
                &["--json", "--target", &bare_target, "--source", &bare_source],
            ),
            &pgpassword[..],
        ),
        (both(with("verify", &["--json"]), &source, &target), &[][..]),
        (
            both(
                with("cutover", &["--dry-run", "--json"]),
                &bare_source,
                &bare_target,
            ),
            &pgpassword[..],
        ),
    ] {
        let (ok, out) = runs.run(&args, env);
        assert!(ok, "{args:?}: {out}");
    }
    let mut watcher = runs.spawn(&both(with("watch", &[]), &source, &target), &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    interrupt(&mut watcher);
    assert!(
        runs.last().contains("behind"),
        "watch printed: {}",
        runs.printed()
    );

    interrupt(&mut consumer);
    // The stopped consumer's last heartbeat is recent too: only a later one is the new one's.
    let stopped_at: String = target_admin
        .query_one("SELECT now()::text", &[])
        .await
        .unwrap()
        .get(0);
    let mut consumer = runs.spawn(
        &both(with("follow", &[]), &bare_source, &target),
        &pgpassword,
    );
    admin
        .batch_execute("UPDATE company_projects SET name = name || '!' WHERE id % 5 = 0")
        .await
        .unwrap();
    wait_for(
        &target_admin,
        &format!(
            "SELECT coalesce(heartbeat_at > '{stopped_at}'::timestamptz, false) FROM switchyard.migrations"
        ),
        &mut consumer,
    )
    .await;
    assert_no_password("pg_stat_activity", &sessions_text(&admin).await);
    interrupt(&mut consumer);
    assert_no_password("the tool's schema", &tool_schema_text(&target_admin).await);
    // Failing paths: each fails, and says why without the password.
    let wrong = source.replace(PASSWORD, WRONG_PASSWORD);
    let unreachable = target.replace(&format!("port={port}"), "port=1");
    let bad_db = source.replace("/legacy?", "/no_such_db?");
    let wrong_name = target.replace("host=localhost", "host=127.0.0.1");
    for (source, target, expected) in [
        (
            wrong.as_str(),
            target.as_str(),
            "password authentication failed",
        ),
        (source.as_str(), unreachable.as_str(), "port=1"),
        (bad_db.as_str(), target.as_str(), "no_such_db"),
        (source.as_str(), wrong_name.as_str(), "certificate"),
    ] {
        for command in ["check", "backfill", "follow"] {
            let args = both(with(command, &[]), source, target);
            if command == "follow" && expected == "port=1" {
                // A consumer takes an unreachable server for a restart and retries.
                let mut consumer = runs.spawn(&args, &[]);
                runs.wait_for_output("reconnecting in", &mut consumer);
                interrupt(&mut consumer);
                continue;
            }
            let (ok, out) = runs.run(&args, &[]);
            assert!(!ok, "{command} should fail: {out}");
            assert!(
                out.contains(expected),
                "{command}: {expected:?} not in {out}"
            );
        }
    }

    let (ok, out) = runs.run(&both(with("abort", &[]), &source, &target), &[]);
    assert!(ok, "abort: {out}");

    let transcripts = runs.all();
    assert!(
        transcripts.iter().any(|(_, text)| text.contains("TRACE")),
        "the runs logged at trace level"
    );
    for (path, text) in transcripts {
        assert_no_password(&path.display().to_string(), &text);
    }
    let log = String::from_utf8_lossy(&std::fs::read(cluster.dir().join("postgres.log")).unwrap())
        .into_owned();
    assert!(
        log.contains("replication connection authorized") && log.contains("START_REPLICATION"),
        "the server logged the tool's sessions"
    );
    assert_no_password("the server log", &log);
}

/// The source role: it may log in and replicate, nothing else until granted.
const SOURCE_ROLE: &str = "legacy_reader";
/// The target role: it may log in, nothing else until granted.
const TARGET_ROLE: &str = "app_writer";

/// The seed plan without `[phases]`, in a directory of its own: with least privilege the
/// phase SQL (CREATE TABLE, ALTER TABLE) is the tables' owner's to run.
struct PlanWithoutPhases {
    dir: PathBuf,
}

impl PlanWithoutPhases {
    fn write() -> PlanWithoutPhases {
        let text = std::fs::read_to_string(seed_plan()).unwrap();
        let mut kept = Vec::new();
        let mut in_phases = false;
        for line in text.lines() {
            if line.starts_with('[') {
                in_phases = line == "[phases]";
            }
            if !in_phases {
                kept.push(line);
            }
        }
        let dir = std::env::temp_dir().join(format!("switchyard-no-phases-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("plan.toml"), kept.join("\n")).unwrap();
        PlanWithoutPhases { dir }
    }

    fn path(&self) -> String {
        self.dir.join("plan.toml").display().to_string()
    }
}

impl Drop for PlanWithoutPhases {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn seed_sql(file: &str) -> String {
    std::fs::read_to_string(repo().join("transforms/legacy_to_projects").join(file)).unwrap()
}

/// What the DBA runs before the migration, as the owner of everything: the target tables
/// (`target_schema.sql`) and the keys the upserts need, but not the foreign keys, which the
/// backfill's children-before-parents copy would trip (they come with the after-backfill stages).
const OWNER_KEYS_SQL: &str = "
    ALTER TABLE projects ADD PRIMARY KEY (id), ADD CONSTRAINT projects_legacy_key UNIQUE (legacy_table, legacy_id);
    ALTER TABLE tasks ADD PRIMARY KEY (id), ADD CONSTRAINT tasks_legacy_id_key UNIQUE (legacy_id);
    ALTER TABLE sub_tasks ADD PRIMARY KEY (id), ADD CONSTRAINT sub_tasks_legacy_id_key UNIQUE (legacy_id);";

/// The grants of the README's least-privilege section, on the source.
const SOURCE_GRANTS: &str = "
    ALTER ROLE legacy_reader WITH REPLICATION;
    GRANT SELECT ON company_projects, company_services, vortex_items TO legacy_reader;
    CREATE PUBLICATION switchyard_legacy_to_projects FOR TABLE company_projects, company_services, vortex_items;";

/// The grants of the README's least-privilege section, on the target.
const TARGET_GRANTS: &str = "
    CREATE SCHEMA switchyard AUTHORIZATION app_writer;
    GRANT SELECT, INSERT, UPDATE, DELETE ON projects, tasks, sub_tasks, teams, team_members TO app_writer;
    GRANT SELECT, INSERT ON project_stages, task_statuses TO app_writer;
    GRANT SET ON PARAMETER session_replication_role TO app_writer;";

/// `--plan P --source S --target T` for `command`, connecting as the two limited roles.
fn as_limited_roles(cluster: &Cluster, plan: &str, command: &[&str]) -> Vec<String> {
    let url = |role: &str, db: &str| {
        cluster
            .url(db)
            .replacen("postgres@", &format!("{role}@"), 1)
    };
    let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    args.extend(["--plan".into(), plan.into()]);
    args.extend(["--source".into(), url(SOURCE_ROLE, "legacy")]);
    args.extend(["--target".into(), url(TARGET_ROLE, "app")]);
    args
}

#[tokio::test(flavor = "multi_thread")]
async fn least_privileged_roles_are_told_every_missing_grant_then_migrate_and_converge() {
    let cluster = cluster();
    let source = seeded_source(&cluster, "legacy", 0.002).await;
    cluster.create_database("app").await.unwrap();
    let target = cluster.connect("app").await.unwrap();
    source
        .batch_execute(&format!(
            "CREATE ROLE {SOURCE_ROLE} LOGIN; CREATE ROLE {TARGET_ROLE} LOGIN;"
        ))
        .await
        .unwrap();
    target
        .batch_execute(&(seed_sql("target_schema.sql") + OWNER_KEYS_SQL))
        .await
        .unwrap();
    let plan = PlanWithoutPhases::write();
    let plan = plan.path();
    let runs = Transcripts::new("least-privilege");
    let run = |command: &[&str]| runs.run(&as_limited_roles(&cluster, &plan, command), &[]);

    // Nothing granted yet: check names each missing privilege with the statement that fixes it.
    let (ok, out) = run(&["check"]);
    assert!(!ok, "{out}");
    for expected in [
        r#"ALTER ROLE "legacy_reader" WITH REPLICATION;"#,
        r#"GRANT SELECT ON "public"."company_projects" TO <switchyard role>;"#,
        r#"GRANT SELECT ON "public"."vortex_items" TO <switchyard role>;"#,
        "CREATE PUBLICATION \"switchyard_legacy_to_projects\" FOR TABLE",
        r#"GRANT CREATE ON DATABASE "app" TO "app_writer"; or have a superuser run: CREATE SCHEMA switchyard AUTHORIZATION "app_writer";"#,
        r#"GRANT SET ON PARAMETER session_replication_role TO "app_writer";"#,
        r#"GRANT SELECT, INSERT, UPDATE, DELETE ON "public"."projects" TO "app_writer";"#,
        r#"GRANT SELECT, INSERT, UPDATE, DELETE ON "public"."team_members" TO "app_writer";"#,
        r#"GRANT SELECT, INSERT ON "public"."task_statuses" TO "app_writer";"#,
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    // One privilege of several still counts as missing.
    target
        .batch_execute(&format!("GRANT INSERT ON tasks TO {TARGET_ROLE}"))
        .await
        .unwrap();
    let (_, out) = run(&["check"]);
    assert!(
        out.contains(r#"GRANT SELECT, UPDATE, DELETE ON "public"."tasks" TO "app_writer";"#),
        "{out}"
    );

    source.batch_execute(SOURCE_GRANTS).await.unwrap();
    target.batch_execute(TARGET_GRANTS).await.unwrap();
    let (ok, out) = run(&["check"]);
    assert!(ok, "check after the grants: {out}");
    let (ok, out) = run(&["backfill", "--jobs", "2", "--no-follow"]);
    assert!(ok, "backfill: {out}");
    // The owner's after-backfill step: foreign keys, indexes, validation.
    target
        .batch_execute(&crate::support::seed_after_backfill_sql())
        .await
        .unwrap();

    let load = WriteLoad::start(
        &cluster.url("legacy"),
        WriteLoadOptions {
            target_rate: Some(300.0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut consumer = runs.spawn(&as_limited_roles(&cluster, &plan, &["follow"]), &[]);
    wait_for(
        &target,
        "SELECT changes_applied > 100 FROM switchyard.migrations",
        &mut consumer,
    )
    .await;
    load.stop().await.unwrap();
    let lsn: String = source
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    wait_for(
        &source,
        &format!("SELECT confirmed_flush_lsn >= '{lsn}' FROM pg_replication_slots WHERE slot_name = 'switchyard_legacy_to_projects'"),
        &mut consumer,
    )
    .await;
    compute_expected(&source).await;
    assert_target_matches_expected(&source, &target).await;
    let (ok, out) = run(&["verify"]);
    assert!(ok, "verify as the limited roles: {out}");
    let _ = consumer.kill();
    let _ = consumer.wait();

    // abort leaves the owner's publication to its owner, and says so.
    let (ok, out) = run(&["abort"]);
    assert!(
        ok && out.contains("belongs to another role and was kept"),
        "{out}"
    );
    let leftovers: i64 = source
        .query_one("SELECT count(*) FROM pg_replication_slots", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0, "abort dropped the slot");
}
