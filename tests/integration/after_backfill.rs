//! The after-backfill SQL in stages: the files of one stage run at the same time on their own
//! sessions, a stage waits for the one before it, and a failing file is named with what
//! committed and what did not run.

use crate::small_migration::{copy_plan, Migration};
use crate::support::switchyard;

const SOURCE: &str =
    "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)";

/// The target table, and `log`, where each file writes what it saw.
const TARGET: &str = "CREATE TABLE t (id int PRIMARY KEY);
    CREATE TABLE log (file text, seen_others bigint, maintenance_work_mem text)";

/// A file of the first stage: once rows are copied (`check` runs the files one after another
/// on empty tables), it waits, up to 30 s, until it sees `other` running on another session or
/// finished, then records whether it saw `other` running and its `maintenance_work_mem`. One
/// of the two seeing the other running proves they ran at the same time; run one after the
/// other, neither would.
fn waits_for(me: &str, other: &str) -> String {
    format!(
        "-- file {me}
        DO $$ BEGIN
            PERFORM set_config('test.saw_other', '0', true);
            IF EXISTS (SELECT FROM t) THEN
                FOR i IN 1..3000 LOOP
                    IF EXISTS (SELECT FROM pg_stat_activity
                        WHERE pid <> pg_backend_pid() AND state = 'active' AND query LIKE '-- file {other}%')
                    THEN
                        PERFORM set_config('test.saw_other', '1', true);
                        EXIT;
                    END IF;
                    EXIT WHEN EXISTS (SELECT FROM log WHERE file = '{other}');
                    PERFORM pg_sleep(0.01);
                END LOOP;
            END IF;
        END $$;
        INSERT INTO log VALUES ('{me}', current_setting('test.saw_other')::bigint,
                                current_setting('maintenance_work_mem'));"
    )
}

fn output(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_files_of_a_stage_run_at_once_and_the_next_stage_waits_for_them() {
    let plan = copy_plan(&[("t", &["id"], "t", &["id"])])
        + "[phases]\nafter_backfill = [[\"a.sql\", \"b.sql\"], \"c.sql\"]\n";
    let m = Migration::prepare(SOURCE, TARGET, &plan).await;
    let dir = m.cluster.dir();
    std::fs::write(dir.join("a.sql"), waits_for("a", "b")).unwrap();
    std::fs::write(dir.join("b.sql"), waits_for("b", "a")).unwrap();
    // The second stage sees both files of the first committed.
    std::fs::write(
        dir.join("c.sql"),
        "INSERT INTO log SELECT 'c', count(*), current_setting('maintenance_work_mem') FROM log",
    )
    .unwrap();
    let urls = m.urls();
    let mut args = m.args("backfill", &urls);
    args.extend([
        "--jobs",
        "2",
        "--no-follow",
        "--maintenance-work-mem",
        "100MB",
    ]);
    let out = switchyard(&args);
    assert!(out.status.success(), "{}", output(&out));
    let log: Vec<(String, i64, String)> = m
        .target
        .query("SELECT * FROM log ORDER BY file", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let files: Vec<&str> = log.iter().map(|(f, _, _)| f.as_str()).collect();
    assert_eq!(files, ["a", "b", "c"]);
    assert!(
        log[0].1 + log[1].1 >= 1,
        "a and b ran at the same time: {log:?}"
    );
    assert_eq!(log[2].1, 2, "c ran after a and b committed");
    assert!(
        log.iter().all(|(_, _, mem)| mem == "100MB"),
        "every session has the flag's maintenance_work_mem: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_file_is_named_with_what_committed_and_the_resume_runs_the_stages_again() {
    let plan = copy_plan(&[("t", &["id"], "t", &["id"])])
        + "[phases]\nafter_backfill = [[\"ok.sql\", \"bad.sql\"], \"later.sql\"]\n";
    let m = Migration::prepare(SOURCE, TARGET, &plan).await;
    let dir = m.cluster.dir();
    std::fs::write(
        dir.join("ok.sql"),
        "INSERT INTO log SELECT 'ok', 0, '' WHERE EXISTS (SELECT FROM t)",
    )
    .unwrap();
    // Fails once rows are copied (the checks run it on empty tables), while fail_here exists.
    std::fs::write(
        dir.join("bad.sql"),
        "DO $$ BEGIN IF EXISTS (SELECT FROM t) AND to_regclass('fail_here') IS NOT NULL THEN
             RAISE EXCEPTION 'bad.sql says no';
         END IF; END $$;",
    )
    .unwrap();
    std::fs::write(
        dir.join("later.sql"),
        "INSERT INTO log SELECT 'later', 0, '' WHERE EXISTS (SELECT FROM t)",
    )
    .unwrap();
    m.target
        .batch_execute("CREATE TABLE fail_here ()")
        .await
        .unwrap();
    let urls = m.urls();
    let mut args = m.args("backfill", &urls);
    args.extend(["--jobs", "2", "--no-follow"]);
    let out = switchyard(&args);
    let text = output(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("bad.sql failed and was rolled back")
            && text.contains("bad.sql says no")
            && text.contains("committed: ok.sql")
            && text.contains("not run: later.sql")
            && text.contains("--resume"),
        "{text}"
    );
    assert_eq!(
        files(&m.target).await,
        ["ok"],
        "ok.sql committed, later.sql never ran"
    );

    m.target
        .batch_execute("DROP TABLE fail_here")
        .await
        .unwrap();
    let mut args = m.args("backfill", &urls);
    args.extend(["--jobs", "2", "--no-follow", "--resume"]);
    let out = switchyard(&args);
    assert!(out.status.success(), "{}", output(&out));
    // The resume runs every stage again: ok.sql (re-runnable only in that it does no harm) twice.
    assert_eq!(files(&m.target).await, ["later", "ok", "ok"]);
}

/// The files that wrote to `log`, sorted.
async fn files(target: &tokio_postgres::Client) -> Vec<String> {
    target
        .query("SELECT file FROM log ORDER BY file", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}
