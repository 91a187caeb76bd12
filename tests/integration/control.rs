use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use switchyard::demo::write_load::{WriteLoad, WriteLoadOptions};
use tokio_postgres::Client;

use crate::follow::{seeded_pair, Following};
use crate::support::{
    assert_target_matches_expected, backfill, done_chunks, seed_plan, switchyard, wait_for,
};

const MIGRATION: &str = "legacy_to_projects";

/// A switchyard process whose stdout lines are read as they come, with the time each arrived.
struct Run {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    seen: Vec<String>,
}

impl Run {
    fn spawn(args: &[&str], source: &str, target: &str) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .args(["--plan", seed_plan().to_str().unwrap()])
            .args(["--source", source, "--target", target])
            .env_remove("SWITCHYARD_SOURCE")
            .env_remove("SWITCHYARD_TARGET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        Run {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// When the first line containing `text` arrived (looking only at lines not yet read).
    fn line_containing(&mut self, text: &str) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => {
                    let found = line.contains(text);
                    self.seen.push(line);
                    if found {
                        return at;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let mut err = String::new();
                    if let Some(mut stderr) = self.child.stderr.take() {
                        use std::io::Read;
                        let _ = stderr.read_to_string(&mut err);
                    }
                    panic!(
                        "no line with {text:?} in the output:\n{}\nstderr:\n{err}",
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    async fn wait_for(&mut self, client: &Client, condition: &str) {
        wait_for(client, condition, &mut self.child).await;
    }

    /// Waits for a successful exit.
    fn succeeds(&mut self) {
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            use std::io::Read;
            let _ = stderr.read_to_string(&mut err);
        }
        assert!(status.success(), "switchyard failed with {status}: {err}");
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `switchyard <args> --plan <seed plan> --target <target>`, which must succeed.
fn control(args: &[&str], target: &str) -> String {
    let plan = seed_plan();
    let mut all = args.to_vec();
    all.extend(["--plan", plan.to_str().unwrap(), "--target", target]);
    let out = switchyard(&all);
    assert!(
        out.status.success(),
        "switchyard {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sets the cap before the backfill starts (the commands need the migration to exist).
async fn throttle_ahead(target: &Client, rows_per_sec: i64) {
    switchyard::checkpoint::ensure_schema(target).await.unwrap();
    switchyard::checkpoint::set_throttle(target, MIGRATION, Some(rows_per_sec), "the test")
        .await
        .unwrap();
}

async fn changes_applied(target: &Client) -> (Instant, i64) {
    let row = target
        .query_one("SELECT changes_applied FROM switchyard.migrations", &[])
        .await
        .unwrap();
    (Instant::now(), row.get(0))
}

/// The applied LSN and changes the consumer recorded, and the slot's confirmed position.
async fn applied(f: &Following) -> (String, i64, String) {
    let row = f
        .target
        .query_one(
            "SELECT applied_lsn::text, changes_applied FROM switchyard.migrations",
            &[],
        )
        .await
        .unwrap();
    let confirmed: String = f
        .source
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    (row.get(0), row.get(1), confirmed)
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_stops_a_backfill_within_a_second_and_resume_finishes_it() {
    let (source_cluster, target_cluster, source, target) = seeded_pair(0.08).await;
    let (s, t) = (source_cluster.url("legacy"), target_cluster.url("app"));
    // Slow enough (seconds) that the pause lands mid-copy.
    throttle_ahead(&target, 20_000).await;
    let mut run = Run::spawn(&["backfill", "--jobs", "2", "--no-follow"], &s, &t);
    run.wait_for(
        &target,
        "SELECT count(*) >= 2 FROM switchyard.chunks WHERE status = 'done'",
    )
    .await;
    control(&["pause"], &t);
    let paused = Instant::now();
    let noticed = run
        .line_containing("waiting: paused by")
        .duration_since(paused);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = done_chunks(&target).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        done_chunks(&target).await,
        settled,
        "chunks went on finishing while paused"
    );
    // Only the chunks in flight when the workers saw the pause finish after it.
    let (late, last_after): (i64, f64) = {
        let row = target
            .query_one(
                "WITH k AS (SELECT paused_at FROM switchyard.control)
                 SELECT count(*) FILTER (WHERE c.finished_at > k.paused_at + interval '1 second'),
                        coalesce(extract(epoch FROM max(c.finished_at) - k.paused_at)::float8, 0)
                   FROM switchyard.chunks c, k
                  WHERE c.status = 'done'
                  GROUP BY k.paused_at",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    eprintln!(
        "pause seen by the backfill after {:.0} ms; last chunk in flight done {last_after:.2} s after the pause; {late} chunks done more than 1 s after it",
        noticed.as_secs_f64() * 1000.0
    );
    assert!(noticed < Duration::from_secs(1), "seen after {noticed:?}");
    assert!(
        late <= 2,
        "{late} chunks finished more than 1 s after the pause (2 workers)"
    );
    let status = control(&["status"], &t);
    assert!(status.contains("PAUSED by"), "{status}");

    control(&["resume"], &t);
    run.succeeds();
    assert_target_matches_expected(&source, &target).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_backfill_holds_its_rate_within_20_percent() {
    let (source_cluster, target_cluster, source, target) = seeded_pair(0.08).await;
    const CAP: f64 = 20_000.0;
    throttle_ahead(&target, CAP as i64).await;
    backfill(
        &source_cluster.url("legacy"),
        &target_cluster.url("app"),
        &[],
    );
    // From the start of the backfill to its last chunk: everything it copied.
    let row = target
        .query_one(
            "SELECT sum(c.row_count)::float8,
                    extract(epoch FROM max(c.finished_at) - m.backfill_started_at)::float8
               FROM switchyard.chunks c JOIN switchyard.migrations m ON m.name = c.migration
              GROUP BY m.backfill_started_at",
            &[],
        )
        .await
        .unwrap();
    let (rows, seconds): (f64, f64) = (row.get(0), row.get(1));
    let rate = rows / seconds;
    eprintln!("{rows} rows in {seconds:.2} s: {rate:.0} rows/s under a cap of {CAP}");
    assert!(seconds > 2.0, "too few rows to measure: {seconds} s");
    assert!(
        (0.8 * CAP..=1.2 * CAP).contains(&rate),
        "{rate:.0} rows/s under a cap of {CAP}"
    );
    assert_target_matches_expected(&source, &target).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_stops_the_consumer_within_a_second_and_resume_converges() {
    let mut f = Following::start(0.02).await;
    let t = f.target_cluster.url("app");
    let load = WriteLoad::start(
        &f.source_cluster.url("legacy"),
        WriteLoadOptions {
            target_rate: Some(200.0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    f.wait_for("SELECT changes_applied > 100 FROM switchyard.migrations")
        .await;
    // The applied position moves under the load, so that its stop measures the pause.
    let mut moves = 0;
    let mut seen = applied(&f).await;
    let watching = Instant::now();
    while moves < 3 {
        assert!(
            watching.elapsed() < Duration::from_secs(30),
            "the consumer does not keep up with the load"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = applied(&f).await;
        if now != seen {
            moves += 1;
            seen = now;
        }
    }
    let asked = Instant::now();
    control(&["pause"], &t);
    let paused = Instant::now();
    // Under load the applied position moves every group until the consumer sees the pause.
    let mut last = applied(&f).await;
    let mut last_moved = paused;
    while paused.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = applied(&f).await;
        if now != last {
            last = now;
            last_moved = Instant::now();
        }
    }
    let stopped_after = last_moved.duration_since(paused);
    eprintln!(
        "the consumer applied its last change {:.0} ms after `switchyard pause` returned ({:.0} ms after it started)",
        stopped_after.as_secs_f64() * 1000.0,
        last_moved.duration_since(asked).as_secs_f64() * 1000.0
    );
    assert!(stopped_after < Duration::from_secs(1), "{stopped_after:?}");
    let watch = switchyard(&[
        "watch",
        "--plan",
        seed_plan().to_str().unwrap(),
        "--source",
        &f.source_cluster.url("legacy"),
        "--target",
        &t,
        "--once",
        "--json",
    ]);
    let sample: serde_json::Value = serde_json::from_slice(&watch.stdout).unwrap();
    assert!(sample["paused"]["by"].is_string(), "{sample}");
    assert_eq!(sample["consumer_running"], true, "{sample}");
    let report = load.stop().await.unwrap();
    assert!(report.counts.committed() > 200, "{:?}", report.counts);
    assert_eq!(applied(&f).await, last, "the consumer applied while paused");

    control(&["resume"], &t);
    f.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_consumer_holds_its_rate_within_20_percent() {
    let mut f = Following::start(0.02).await;
    let t = f.target_cluster.url("app");
    const CAP: f64 = 1000.0;
    control(&["throttle", "--rows-per-sec", "1000"], &t);
    // The consumer reads its controls four times a second.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before: i64 = f
        .target
        .query_one("SELECT changes_applied FROM switchyard.migrations", &[])
        .await
        .unwrap()
        .get(0);
    // A backlog of 8000 changes in 80 transactions: 8 s at the cap.
    f.source
        .batch_execute(
            "DO $$ BEGIN FOR i IN 0..79 LOOP
                 UPDATE vortex_items SET updated_at = now()
                  WHERE id IN (SELECT id FROM vortex_items ORDER BY id LIMIT 100 OFFSET i * 100);
                 COMMIT;
             END LOOP; END $$",
        )
        .await
        .unwrap();
    f.wait_for(&format!(
        "SELECT changes_applied > {before} FROM switchyard.migrations"
    ))
    .await;
    let (t0, c0) = changes_applied(&f.target).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (t1, c1) = changes_applied(&f.target).await;
    let rate = (c1 - c0) as f64 / t1.duration_since(t0).as_secs_f64();
    eprintln!(
        "{} changes in {:.2} s: {rate:.0} changes/s under a cap of {CAP}",
        c1 - c0,
        (t1 - t0).as_secs_f64()
    );
    assert!(
        (0.8 * CAP..=1.2 * CAP).contains(&rate),
        "{rate:.0} changes/s under a cap of {CAP}"
    );
    let status = control(&["status"], &t);
    assert!(status.contains("throttled to 1000 rows/s"), "{status}");
    control(&["throttle", "--off"], &t);
    f.assert_converged().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttle_query_returning_true_holds_the_backfill_and_a_broken_one_stops_it() {
    let (source_cluster, target_cluster, source, target) = seeded_pair(0.01).await;
    let s = source_cluster.url("legacy");
    let mut run = Run::spawn(
        &[
            "backfill",
            "--jobs",
            "2",
            "--no-follow",
            "--throttle-query",
            "SELECT true",
        ],
        &s,
        &target_cluster.url("app"),
    );
    run.line_containing("waiting: throttle query returned true");
    run.wait_for(&target, "SELECT count(*) > 0 FROM switchyard.chunks")
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let copied: i64 = target
        .query_one(
            "SELECT coalesce(sum(row_count), 0)::int8 FROM switchyard.chunks",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        copied, 0,
        "rows were copied while the throttle query said wait"
    );
    drop(run);
    drop(source);
    // The killed backfill's slot and publication go, so that the source can be used again.
    let plan = seed_plan();
    let abort = crate::support::run_command("abort", &plan, &s, &target_cluster.url("app"), &[]);
    assert!(
        abort.status.success(),
        "{}",
        String::from_utf8_lossy(&abort.stderr)
    );

    // An active session on the source that is not switchyard's.
    let busy = source_cluster.connect("legacy").await.unwrap();
    let sleeping = tokio::spawn(async move { busy.batch_execute("SELECT pg_sleep(60)").await });
    target_cluster.create_database("app2").await.unwrap();
    let mut run = Run::spawn(
        &[
            "backfill",
            "--jobs",
            "2",
            "--no-follow",
            "--max-source-sessions",
            "0",
        ],
        &s,
        &target_cluster.url("app2"),
    );
    run.line_containing("active sessions > --max-source-sessions 0");
    drop(run);
    sleeping.abort();

    for (query, says) in [
        ("SELECT 1", "must return exactly one boolean"),
        ("SELECT true FROM nowhere", "failed on the source"),
    ] {
        target_cluster.create_database("app3").await.unwrap();
        let out = crate::support::run_command(
            "backfill",
            &seed_plan(),
            &s,
            &target_cluster.url("app3"),
            &["--no-follow", "--throttle-query", query],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{query}: {err}");
        assert!(
            err.contains("--throttle-query") && err.contains(says),
            "{query}: {err}"
        );
        let app3 = target_cluster.connect("app3").await.unwrap();
        let made: i64 = app3
            .query_one("SELECT count(*) FROM switchyard.migrations", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            made, 0,
            "{query}: the refused backfill recorded a migration"
        );
        drop(app3);
        let admin = target_cluster.connect("postgres").await.unwrap();
        admin.batch_execute("DROP DATABASE app3").await.unwrap();
    }
}
