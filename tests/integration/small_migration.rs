//! A migration of small hand-written tables on one throwaway cluster (databases `src` and
//! `dst`, each with hostile session defaults), a plan named `hostile`, and comparisons of
//! source and target on the exact text PostgreSQL prints (under fixed session settings) and
//! again typed, `EXCEPT ALL` both ways over the source rows cast back to the target's types.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use switchyard::demo::cluster::Cluster;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::support::{cluster, switchyard, wait_for, wait_until_applied};

pub const SLOT: &str = "switchyard_hostile";

/// A source relation and the output it should equal: (source `FROM` item, its columns, target
/// `FROM` item, the matching columns), all quoted as SQL.
pub type Pair = (
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static [&'static str],
);

/// Settings no switchyard session may depend on, different on each side: a value printed
/// under the source's and parsed under the target's would come out changed or refused
/// (31/12 read as a month, a float cut to 15 digits, another zone's midnight).
const HOSTILE_DEFAULTS: [(&str, &str); 2] = [
    (
        "src",
        "DateStyle = 'SQL, DMY'; IntervalStyle = 'sql_standard'; extra_float_digits = 0;
         bytea_output = 'escape'; TimeZone = 'Asia/Kathmandu'",
    ),
    (
        "dst",
        "DateStyle = 'SQL, MDY'; IntervalStyle = 'iso_8601'; extra_float_digits = -15;
         bytea_output = 'hex'; TimeZone = 'America/St_Johns'",
    ),
];

/// What the comparisons print under: fixed, whatever the database defaults are.
const COMPARE_SETTINGS: &str = "SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres';
    SET extra_float_digits = 3; SET bytea_output = 'hex'; SET TimeZone = 'UTC'";

/// One cluster with databases `src` and `dst`, a plan in the cluster's temp dir, and the
/// `backfill` process that goes on following.
pub struct Migration {
    pub cluster: Cluster,
    pub source: Client,
    pub target: Client,
    pub plan: PathBuf,
    pub consumer: Option<Child>,
}

impl Migration {
    /// Creates both databases with hostile defaults, runs `source_sql` and `target_sql`, and
    /// writes `plan` (TOML, named `hostile`).
    pub async fn prepare(source_sql: &str, target_sql: &str, plan: &str) -> Migration {
        let cluster = cluster();
        for db in ["src", "dst"] {
            cluster.create_database(db).await.unwrap();
        }
        let admin = cluster.connect("postgres").await.unwrap();
        for (db, settings) in HOSTILE_DEFAULTS {
            for setting in settings.split(';') {
                let setting = setting.trim();
                admin
                    .batch_execute(&format!("ALTER DATABASE {db} SET {setting}"))
                    .await
                    .unwrap();
            }
        }
        let source = cluster.connect("src").await.unwrap();
        let target = cluster.connect("dst").await.unwrap();
        source.batch_execute(source_sql).await.unwrap();
        target.batch_execute(target_sql).await.unwrap();
        for client in [&source, &target] {
            client.batch_execute(COMPARE_SETTINGS).await.unwrap();
        }
        let path = cluster.dir().join("hostile_plan.toml");
        std::fs::write(&path, plan).unwrap();
        Migration {
            cluster,
            source,
            target,
            plan: path,
            consumer: None,
        }
    }

    pub fn args<'a>(&'a self, command: &'a str, urls: &'a [String; 2]) -> Vec<&'a str> {
        vec![
            command,
            "--plan",
            self.plan.to_str().unwrap(),
            "--source",
            &urls[0],
            "--target",
            &urls[1],
        ]
    }

    pub fn urls(&self) -> [String; 2] {
        [self.cluster.url("src"), self.cluster.url("dst")]
    }

    /// `switchyard check`: (success, stderr and stdout).
    pub fn check(&self) -> (bool, String) {
        let urls = self.urls();
        let out = switchyard(&self.args("check", &urls));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Starts `backfill` (which then follows) and waits until it follows.
    pub async fn start(&mut self) {
        self.spawn("backfill", &["--jobs", "2"]).await;
    }

    /// Starts `switchyard follow` on a backfilled (or stopped) migration and waits until it
    /// follows.
    pub async fn resume(&mut self) {
        self.spawn("follow", &[]).await;
    }

    async fn spawn(&mut self, command: &str, extra: &[&str]) {
        let urls = self.urls();
        let mut args = self.args(command, &urls);
        args.extend(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(&args)
            .env("SWITCHYARD_LOG", "switchyard=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for(
            &self.target,
            "SELECT coalesce((SELECT status = 'following' FROM switchyard.migrations), false)",
            &mut child,
        )
        .await;
        self.consumer = Some(child);
    }

    /// The source's current insert position.
    pub async fn position(&self) -> String {
        self.source
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Whether the slot is confirmed no further than `lsn`.
    pub async fn confirmed_at_most(&self, lsn: &str) -> bool {
        self.source
            .query_one(
                &format!("SELECT confirmed_flush_lsn <= '{lsn}' FROM pg_replication_slots WHERE slot_name = '{SLOT}'"),
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Runs `sql` on the source, then waits until the consumer has applied it.
    pub async fn write(&mut self, sql: &str) {
        self.source.batch_execute(sql).await.unwrap();
        wait_until_applied(&self.source, SLOT, self.consumer.as_mut().unwrap()).await;
    }

    /// Asserts every pair; returns each pair's row count.
    pub async fn assert_pairs(&self, pairs: &[Pair]) -> Vec<usize> {
        let mut counts = Vec::new();
        for (source, source_columns, target, target_columns) in pairs {
            counts.push(
                self.assert_same(source, source_columns, target, target_columns)
                    .await,
            );
        }
        counts
    }

    /// The whole run: `check` passes, the backfill copies every pair, `writes` are followed.
    /// Returns the row counts after the backfill and after the writes.
    pub async fn backfill_then_follow(&mut self, pairs: &[Pair], writes: &str) -> [Vec<usize>; 2] {
        let (ok, report) = self.check();
        assert!(ok, "check refused the plan:\n{report}");
        self.start().await;
        let copied = self.assert_pairs(pairs).await;
        self.write(writes).await;
        [copied, self.assert_pairs(pairs).await]
    }

    /// Asserts that `target` holds exactly the rows of `source` (both `FROM` items, already
    /// quoted), the i-th column of `source_columns` matching the i-th of `target_columns`.
    /// Returns the row count.
    pub async fn assert_same(
        &self,
        source: &str,
        source_columns: &[&str],
        target: &str,
        target_columns: &[&str],
    ) -> usize {
        let expected = text_rows(&self.source, source, source_columns).await;
        let actual = text_rows(&self.target, target, target_columns).await;
        let (missing, extra): (Vec<_>, Vec<_>) = (
            expected.iter().filter(|r| !actual.contains(r)).collect(),
            actual.iter().filter(|r| !expected.contains(r)).collect(),
        );
        assert!(
            missing.is_empty() && extra.is_empty() && expected.len() == actual.len(),
            "{target} differs from {source} as text ({} vs {} rows):\nmissing {missing:#?}\nextra {extra:#?}",
            expected.len(),
            actual.len()
        );
        self.assert_same_typed(target, target_columns, &expected)
            .await;
        expected.len()
    }

    /// The source rows' text cast to the target columns' types, compared with the target
    /// rows by `EXCEPT ALL` both ways (json, which has no equality, compares as its text).
    pub async fn assert_same_typed(
        &self,
        target: &str,
        columns: &[&str],
        expected: &[Vec<Option<String>>],
    ) {
        let mut casts = Vec::new();
        let mut targets = Vec::new();
        for (i, column) in columns.iter().enumerate() {
            let ty: String = self
                .target
                .query_one(
                    &format!("SELECT pg_typeof({column})::text FROM {target} LIMIT 1"),
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            let (cast, compared) = if ty == "json" {
                (format!("v{i}::json::text"), format!("{column}::text"))
            } else {
                (format!("v{i}::{ty}"), column.to_string())
            };
            casts.push(cast);
            targets.push(compared);
        }
        let arrays: Vec<Vec<Option<String>>> = (0..columns.len())
            .map(|i| expected.iter().map(|r| r[i].clone()).collect())
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> =
            arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let unnest: Vec<String> = (1..=columns.len())
            .map(|i| format!("${i}::text[]"))
            .collect();
        let names: Vec<String> = (0..columns.len()).map(|i| format!("v{i}")).collect();
        let sql = format!(
            "WITH v AS (SELECT {casts} FROM unnest({unnest}) AS u({names})),
                  t AS (SELECT {targets} FROM {target})
             SELECT (SELECT count(*) FROM (TABLE v EXCEPT ALL TABLE t) a),
                    (SELECT count(*) FROM (TABLE t EXCEPT ALL TABLE v) b)",
            casts = casts.join(", "),
            unnest = unnest.join(", "),
            names = names.join(", "),
            targets = targets.join(", "),
        );
        let row = self.target.query_one(&sql, &params).await.unwrap();
        let (missing, extra): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(
            (missing, extra),
            (0, 0),
            "{target}: typed comparison found rows missing / extra"
        );
    }

    /// Waits (up to a minute) for the consumer to exit on its own; returns its stderr.
    pub fn exit_message(&mut self) -> String {
        let mut child = self.consumer.take().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the consumer did not stop"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        err
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.consumer.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Migration {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plan (named `hostile`) copying each (source, key, output, columns) column for column,
/// the output keyed like its source.
pub fn copy_plan(tables: &[(&str, &[&str], &str, &[&str])]) -> String {
    let mut plan = String::from("name = \"hostile\"\n");
    for (source, key, output, columns) in tables {
        plan += &format!(
            "[[sources]]\ntable = {source:?}\nkey = {key:?}\n\
             [[sources.outputs]]\ntable = {output:?}\nkey = {key:?}\n[sources.outputs.columns]\n"
        );
        for column in *columns {
            plan += &format!("{column} = {column:?}\n");
        }
    }
    plan
}

/// Every row of `from`, each column printed as text (NULL kept apart from ''), sorted.
pub async fn text_rows(client: &Client, from: &str, columns: &[&str]) -> Vec<Vec<Option<String>>> {
    let select: Vec<String> = columns.iter().map(|c| format!("{c}::text")).collect();
    let mut rows: Vec<Vec<Option<String>>> = client
        .query(&format!("SELECT {} FROM {from}", select.join(", ")), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (0..columns.len()).map(|i| r.get(i)).collect())
        .collect();
    rows.sort();
    rows
}
