//! Every error chain the binary prints names each cause once: an error line ends "...: db
//! error: ERROR: ...", never "...: db error: db error: ERROR: ...". Fed dropped connections: a
//! server that hangs up at once, and a consumer whose sessions are terminated under it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::faults::{following, Logs};
use crate::support::{seed_plan, switchyard};

/// Panics when a segment of `chain` (split on ": ") appears twice: how a cause printed twice
/// reads ("committing a chunk: connection reset: connection reset").
fn assert_each_cause_once(chain: &str) {
    let segments: Vec<&str> = chain.split(": ").collect();
    for (i, segment) in segments.iter().enumerate() {
        assert!(
            !segments[..i].contains(segment),
            "{segment:?} is printed twice in {chain:?}"
        );
    }
}

/// A TCP port that accepts connections and closes them at once, until dropped.
struct HangingUp {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HangingUp {
    fn start() -> HangingUp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for connection in listener.incoming() {
                drop(connection);
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
            }
        });
        HangingUp {
            address,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HangingUp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the blocked accept, which then sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_connection_closed_at_once_is_named_once_in_the_error_line() {
    let server = HangingUp::start();
    for sslmode in ["disable", "prefer"] {
        let target = format!(
            "postgres://switchyard@{}/app?sslmode={sslmode}",
            server.address
        );
        let out = switchyard(&[
            "status",
            "--plan",
            seed_plan().to_str().unwrap(),
            "--target",
            &target,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no error line in:\n{stderr}"));
        assert!(line.contains("cannot connect to"), "{line}");
        assert_each_cause_once(line);
    }
}

/// Waits until the consumer's log holds `count` reconnect lines; returns their chains.
fn reconnect_chains(logs: &Logs, f: &mut crate::follow::Following, count: usize) -> Vec<String> {
    const LINE: &str = "the consumer lost its connection (";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = logs.last();
        let chains: Vec<String> = log
            .lines()
            .filter_map(|l| l.split_once(LINE))
            .map(|(_, rest)| {
                rest.rsplit_once("); reconnecting in")
                    .map_or(rest, |(chain, _)| chain)
                    .to_owned()
            })
            .collect();
        if chains.len() >= count {
            return chains;
        }
        assert!(
            f.consumer.try_wait().unwrap().is_none(),
            "the consumer exited:\n{log}"
        );
        assert!(Instant::now() < deadline, "no reconnect line:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn terminated_sessions_are_named_once_in_the_reconnect_lines() {
    let mut logs = Logs::default();
    let mut f = following(0.005, &mut logs).await;
    // The walsender: the stream's error, through the replication connection's.
    f.terminate_walsender().await;
    reconnect_chains(&logs, &mut f, 1);
    crate::support::wait_for(
        &f.source,
        "SELECT active_pid IS NOT NULL FROM pg_replication_slots",
        &mut f.consumer,
    )
    .await;
    // Every session on the target: a query's error, through tokio_postgres's.
    f.terminate_target_sessions().await;
    f.source
        .batch_execute("UPDATE vortex_items SET title = title || ' (after)' WHERE id % 5 = 0")
        .await
        .unwrap();
    for chain in reconnect_chains(&logs, &mut f, 2) {
        assert_each_cause_once(&chain);
    }
    f.assert_converged().await;
}

#[test]
fn a_segment_printed_twice_is_found() {
    let twice = std::panic::catch_unwind(|| {
        assert_each_cause_once("target: committing a chunk: db error: db error: ERROR: x")
    });
    assert!(twice.is_err());
    assert_each_cause_once("target: committing a chunk: db error: ERROR: x");
}

/// Before any backfill the target has no `switchyard` schema: `status` and `watch --once` say
/// the migration has not started, instead of printing the missing relation.
#[tokio::test(flavor = "multi_thread")]
async fn before_any_backfill_status_and_watch_say_not_started() {
    let cluster = crate::support::cluster();
    let source = crate::support::seeded_source(&cluster, "legacy", 0.001).await;
    drop(source);
    cluster.create_database("app").await.unwrap();
    let plan = seed_plan();
    for extra in [&["--once"][..], &[]] {
        let command = if extra.is_empty() { "status" } else { "watch" };
        let out = crate::support::run_command(
            command,
            &plan,
            &cluster.url("legacy"),
            &cluster.url("app"),
            extra,
        );
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            printed.contains("not started") && !printed.contains("does not exist"),
            "{command}: {printed}"
        );
    }
}
