//! `--metrics-addr`: the exposition scraped during a backfill (held mid-copy by a lock a
//! target trigger waits on), during follow, and from `watch`, each parsed strictly; a taken
//! address stops the command before any work.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchyard::demo::cluster::Cluster;
use tokio_postgres::Client;

use crate::follow::seeded_pair;
use crate::support::{
    middle_top_level_item, prepare_target, run_command, seed_plan, wait_for, wait_until_applied,
};

const MIGRATION: &str = "legacy_to_projects";

/// The advisory lock the target's `tasks` trigger waits on for one row, holding its chunk.
const HOLD: i64 = 15_015;

/// How long a scrape may take to show what the test waits for.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn metrics_scrape_during_backfill_then_follow_and_from_watch() {
    let (source_cluster, target_cluster, source, target) = seeded_pair(0.01).await;
    // One row of `tasks` waits for the lock the test holds: its chunk stays in flight.
    let held = middle_top_level_item(&source).await;
    prepare_target(
        &target,
        &format!(
            "CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.legacy_id = {held} THEN PERFORM pg_advisory_xact_lock_shared({HOLD}); END IF; RETURN NEW; END $$;
             CREATE TRIGGER hold BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION hold();
             ALTER TABLE tasks ENABLE ALWAYS TRIGGER hold;"
        ),
    )
    .await;
    target
        .batch_execute(&format!("SELECT pg_advisory_lock({HOLD})"))
        .await
        .unwrap();
    let addr = free_addr();
    let mut run = Running {
        child: spawn(
            &["backfill", "--jobs", "2", "--metrics-addr", &addr],
            &source_cluster,
            &target_cluster,
        ),
    };

    // Mid-backfill: rows copied, the held chunk not done.
    wait_for(
        &target,
        "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND NOT granted)",
        &mut run.child,
    )
    .await;
    let mid = scrape_until(&addr, |m| {
        m.sum("switchyard_backfill_rows_total") > 0.0
            && m.value("switchyard_backfill_chunks_planned", &[]) > Some(0.0)
    });
    assert_conventions(&mid);
    assert_eq!(mid.kind("switchyard_backfill_rows_total"), "counter");
    assert_eq!(
        mid.kind("switchyard_backfill_rows_rejected_total"),
        "counter"
    );
    assert_eq!(mid.kind("switchyard_backfill_chunks_done"), "gauge");
    assert!(
        mid.value("switchyard_backfill_chunks_done", &[])
            < mid.value("switchyard_backfill_chunks_planned", &[]),
        "the held chunk is not done:\n{}",
        mid.text
    );
    assert_eq!(
        mid.value("switchyard_migration_status", &[("status", "backfilling")]),
        Some(1.0)
    );
    for table in ["company_projects", "company_services", "vortex_items"] {
        assert!(
            mid.value("switchyard_backfill_rows_total", &[("table", table)])
                .is_some(),
            "{table} has its series:\n{}",
            mid.text
        );
    }
    target
        .batch_execute(&format!("SELECT pg_advisory_unlock({HOLD})"))
        .await
        .unwrap();

    // Copied: each table's counter is its rows in the target.
    wait_for(
        &target,
        "SELECT coalesce((SELECT status = 'following' FROM switchyard.migrations), false)",
        &mut run.child,
    )
    .await;
    let projects = target_count(&target, "company_projects").await;
    let services = target_count(&target, "company_services").await;
    let done = scrape_until(&addr, |m| {
        m.value(
            "switchyard_backfill_rows_total",
            &[("table", "company_projects")],
        ) == Some(projects)
            && m.value("switchyard_migration_status", &[("status", "following")]) == Some(1.0)
    });
    assert_conventions(&done);
    assert_eq!(
        done.value(
            "switchyard_backfill_rows_total",
            &[("table", "company_services")]
        ),
        Some(services)
    );
    assert_eq!(done.sum("switchyard_backfill_rows_rejected_total"), 0.0);
    assert_eq!(
        done.value("switchyard_backfill_chunks_done", &[]),
        done.value("switchyard_backfill_chunks_planned", &[])
    );
    assert!(done.value("switchyard_backfill_rows_per_second", &[]) >= Some(0.0));

    // Following: applied changes grow with the source's writes; the lag is known.
    let before = done
        .value("switchyard_follow_changes_applied_total", &[])
        .expect("the consumer's counter is there from the start");
    source
        .batch_execute("UPDATE company_projects SET name = name || '!' WHERE id <= 20")
        .await
        .unwrap();
    let fence = switchyard::source::fence::emit(&source, MIGRATION)
        .await
        .unwrap();
    wait_until_applied(&source, "switchyard_legacy_to_projects", &mut run.child).await;
    let following = scrape_until(&addr, |m| {
        m.value("switchyard_follow_changes_applied_total", &[]) >= Some(before + 20.0)
            && m.value("switchyard_consumer_running", &[]) == Some(1.0)
            && m.value("switchyard_last_fence_lsn", &[]) >= Some(fence.lsn.0 as f64)
    });
    assert_conventions(&following);
    assert_eq!(
        following.kind("switchyard_follow_changes_applied_total"),
        "counter"
    );
    assert_lag_known(&following);
    assert_eq!(following.value("switchyard_dead_letters", &[]), Some(0.0));
    assert_eq!(following.value("switchyard_paused", &[]), Some(0.0));
    assert_eq!(
        following.value("switchyard_throttle_rows_per_second", &[]),
        Some(0.0)
    );
    assert_eq!(following.kind("switchyard_last_fence_lsn"), "gauge");
    assert_eq!(
        following.kind("switchyard_last_fence_timestamp_seconds"),
        "gauge"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let fenced_at = following
        .value("switchyard_last_fence_timestamp_seconds", &[])
        .unwrap();
    assert!(
        (now - 60.0..=now + 1.0).contains(&fenced_at),
        "the fence was applied just now, not at {fenced_at} (now {now})"
    );

    // `watch` serves the migration's state from another process, without in-process counters.
    let watch_addr = free_addr();
    let mut watch = Running {
        child: spawn(
            &["watch", "--metrics-addr", &watch_addr],
            &source_cluster,
            &target_cluster,
        ),
    };
    let watched = scrape_until(&watch_addr, |m| {
        m.value("switchyard_consumer_running", &[]) == Some(1.0)
    });
    assert_conventions(&watched);
    assert_lag_known(&watched);
    assert_eq!(
        watched.value("switchyard_backfill_chunks_done", &[]),
        done.value("switchyard_backfill_chunks_planned", &[])
    );
    assert!(watched
        .value("switchyard_backfill_rows_total", &[])
        .is_none());
    assert!(
        watch.child.try_wait().unwrap().is_none(),
        "watch still runs"
    );
}

#[test]
fn a_taken_metrics_address_stops_the_command_before_any_work() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    // Nothing listens on port 1: a command that got past the address would fail connecting.
    let nowhere = "postgres://switchyard@127.0.0.1:1/nowhere";
    for command in ["backfill", "follow", "watch"] {
        let out = run_command(
            command,
            &seed_plan(),
            nowhere,
            nowhere,
            &["--metrics-addr", &addr],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command}: {err}");
        assert!(
            err.contains(&format!("cannot serve metrics on {addr}"))
                && err.contains("in use")
                && !err.contains("connect"),
            "{command}: {err}"
        );
    }
}

/// A running switchyard process, killed on drop.
struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str], source: &Cluster, target: &Cluster) -> Child {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .args(["--plan", seed_plan().to_str().unwrap()])
        .args([
            "--source",
            &source.url("legacy"),
            "--target",
            &target.url("app"),
        ])
        .env_remove("SWITCHYARD_SOURCE")
        .env_remove("SWITCHYARD_TARGET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A port free a moment ago on the loopback.
fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Rows of `projects` the backfill copied from `legacy_table`.
async fn target_count(target: &Client, legacy_table: &str) -> f64 {
    let n: i64 = target
        .query_one(
            "SELECT count(*) FROM projects WHERE legacy_table = $1",
            &[&legacy_table],
        )
        .await
        .unwrap()
        .get(0);
    n as f64
}

/// The consumer runs: lag and slot are measured (not NaN), and plausible.
fn assert_lag_known(m: &Exposition) {
    for (name, kind) in [
        ("switchyard_lag_bytes", "gauge"),
        ("switchyard_lag_seconds", "gauge"),
        ("switchyard_slot_retained_wal_bytes", "gauge"),
    ] {
        assert_eq!(m.kind(name), kind, "{name}");
        let v = m.value(name, &[]).unwrap_or(f64::NAN);
        assert!(v >= 0.0, "{name} is {v}:\n{}", m.text);
    }
    assert!(m.value("switchyard_lag_seconds", &[]) < Some(60.0));
}

/// What every scrape must hold: the migration label on every series, the prefix, and the
/// suffix conventions of the types.
fn assert_conventions(m: &Exposition) {
    assert!(!m.samples.is_empty());
    for s in &m.samples {
        assert!(s.name.starts_with("switchyard_"), "{}", s.name);
        assert_eq!(
            s.labels.get("migration").map(String::as_str),
            Some(MIGRATION),
            "{}",
            s.name
        );
        let kind = m.kind(&s.name);
        assert_eq!(
            s.name.ends_with("_total"),
            kind == "counter",
            "{} is a {kind}",
            s.name
        );
    }
}

/// Scrapes `addr` until `ready` holds for the exposition (or fails after a deadline).
fn scrape_until(addr: &str, ready: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = Instant::now() + SCRAPE_DEADLINE;
    loop {
        let m = scrape(addr);
        if m.as_ref().is_some_and(&ready) {
            return m.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "timed out; last scrape:\n{}",
            m.map_or("(nothing listening)".to_owned(), |m| m.text)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET /metrics`: a 200 in the Prometheus text format, parsed; `None` while nothing listens
/// on `addr` (a process just started).
fn scrape(addr: &str) -> Option<Exposition> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    Some(parse(body))
}

/// One sample line.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed.
#[derive(Debug)]
struct Exposition {
    text: String,
    /// Family name -> its `# TYPE`.
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// The `# TYPE` of `name`'s family.
    fn kind(&self, name: &str) -> &str {
        self.types
            .get(name)
            .unwrap_or_else(|| panic!("no # TYPE for {name}:\n{}", self.text))
    }

    /// The value of the series `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

/// Parses the Prometheus text format (0.0.4) strictly: `# HELP` and `# TYPE` once per family
/// and before its samples, a family's samples together, names and label names of the allowed
/// characters, label values quoted with their escapes, values that are numbers (or NaN,
/// +Inf, -Inf), and no timestamps (switchyard sets none).
fn parse(text: &str) -> Exposition {
    let mut types = BTreeMap::new();
    let mut helps = BTreeMap::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut finished: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (keyword, name, rest) = (parts.next(), parts.next(), parts.next());
            let name = name
                .unwrap_or_else(|| panic!("bad comment: {line}"))
                .to_owned();
            assert!(valid_name(&name), "bad metric name: {line}");
            assert!(
                !samples.iter().any(|s| s.name == name),
                "{line} after its samples"
            );
            match keyword {
                Some("TYPE") => {
                    let kind = rest.unwrap_or_default();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "bad type: {line}"
                    );
                    assert!(
                        types.insert(name, kind.to_owned()).is_none(),
                        "twice: {line}"
                    );
                }
                Some("HELP") => {
                    assert!(
                        helps.insert(name, rest.unwrap_or_default()).is_none(),
                        "twice: {line}"
                    )
                }
                _ => panic!("unknown comment: {line}"),
            }
            continue;
        }
        assert!(!line.is_empty(), "empty line in:\n{text}");
        let sample = parse_sample(line);
        assert!(
            types.contains_key(&sample.name),
            "sample before its # TYPE: {line}"
        );
        if samples.last().is_some_and(|s| s.name != sample.name) {
            finished.push(samples.last().unwrap().name.clone());
        }
        assert!(
            !finished.contains(&sample.name),
            "samples of {} apart",
            sample.name
        );
        samples.push(sample);
    }
    Exposition {
        text: text.to_owned(),
        types,
        samples,
    }
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value: {line}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "bad metric name: {line}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, quoted) = inner
                .split_once("=\"")
                .unwrap_or_else(|| panic!("bad label: {line}"));
            assert!(valid_label_name(key), "bad label name {key:?}: {line}");
            let (value, after) = unquote(quoted, line);
            assert!(
                labels.insert(key.to_owned(), value).is_none(),
                "label twice: {line}"
            );
            inner = match after.strip_prefix(',') {
                Some(next) => next,
                None if after.starts_with('}') => after,
                None => panic!("bad label list: {line}"),
            };
        }
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no value: {line}"));
    Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value, line),
    }
}

/// A label value up to its closing quote, unescaped, and what follows the quote.
fn unquote<'a>(text: &'a str, line: &str) -> (String, &'a str) {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &text[i + 1..]),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                _ => panic!("bad escape: {line}"),
            },
            c => value.push(c),
        }
    }
    panic!("unclosed label value: {line}")
}

/// A sample's value: a Go float (no timestamp after it), NaN, +Inf or -Inf.
fn parse_value(text: &str, line: &str) -> f64 {
    match text {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => {
            assert!(
                text.chars()
                    .all(|c| c.is_ascii_digit() || ".eE+-".contains(c)),
                "bad value (or a timestamp): {line}"
            );
            text.parse().unwrap_or_else(|_| panic!("bad value: {line}"))
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

#[test]
fn the_parser_refuses_what_prometheus_would() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\",y=\"\"} 1.5e3\n";
    let m = parse(ok);
    assert_eq!(m.value("a_total", &[("x", "q\"\\")]), Some(1500.0));
    for bad in [
        "a 1\n",                                           // no # TYPE
        "# TYPE a gauge\na{x=\"1\"} inf\n",                // not a Go float
        "# TYPE a gauge\na{x=1} 1\n",                      // unquoted label value
        "# TYPE a gauge\na 1 1700000000\n",                // a timestamp
        "# TYPE a gauge\n# TYPE a gauge\na 1\n",           // two # TYPE
        "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na 2\n", // a family apart
    ] {
        assert!(
            std::panic::catch_unwind(|| parse(bad)).is_err(),
            "accepted: {bad:?}"
        );
    }
}
