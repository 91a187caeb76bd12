//! The displays as a person sees them: `follow` and `watch` run under a pseudo-terminal
//! (portable-pty, wezterm's) redraw in place, with cursor movement and no scrolling; with
//! stdout a pipe they print plain lines without a single escape sequence. No number printed
//! carries float noise. Each waits on what is printed, never on a fixed sleep.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{native_pty_system, CommandBuilder, PtySize};

use crate::small_migration::{copy_plan, Migration};
use crate::support::switchyard;

/// How long a display may take to show what a test waits for.
const PATIENCE: Duration = Duration::from_secs(60);

/// A switchyard command on a pseudo-terminal, its output gathered as it comes.
struct OnTerminal {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    output: Arc<Mutex<Vec<u8>>>,
}

impl OnTerminal {
    fn spawn(args: &[&str]) -> OnTerminal {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 40,
                cols: 120,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("open a pseudo-terminal");
        let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_switchyard"));
        command.args(args);
        command.env("TERM", "xterm-256color");
        command.env_remove("SWITCHYARD_SOURCE");
        command.env_remove("SWITCHYARD_TARGET");
        let child = pair.slave.spawn_command(command).expect("spawn on the pty");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            // Keeps the master open as long as it reads: the child never blocks on a full pty.
            let _master = pair.master;
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        OnTerminal { child, output }
    }

    /// What it printed so far, once `done` holds for it (or panics after [`PATIENCE`]).
    fn until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned();
            if done(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} on the terminal:\n{text:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child with stdout a pipe, killed on drop.
struct Piped(Child);

impl Drop for Piped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `lines` lines printed by `args` with stdout a pipe.
fn piped_lines(args: &[&str], lines: usize) -> Vec<String> {
    let mut child = Piped(
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .env_remove("SWITCHYARD_SOURCE")
            .env_remove("SWITCHYARD_TARGET")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = BufReader::new(child.0.stdout.take().unwrap());
    stdout.lines().take(lines).map(Result::unwrap).collect()
}

/// A number with more than one decimal: `7356.018159923259`.
fn float_noise(text: &str) -> Option<&str> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|n| n.split_once('.').is_some_and(|(_, frac)| frac.len() > 1))
}

/// A line erased to be drawn again: carriage return, then erase-line.
fn erases_a_line(text: &str) -> bool {
    text.contains("\r\x1b[2K")
}

/// The cursor moved up over a frame of several lines: `ESC [ n A`.
fn moves_up(text: &str) -> bool {
    text.split("\x1b[").skip(1).any(|seq| {
        let digits = seq.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && seq[digits..].starts_with('A')
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_and_watch_redraw_in_place_on_a_terminal_and_print_plain_lines_off_one() {
    let plan = copy_plan(&[("t", &["id"], "t", &["id", "v"])]);
    let m = Migration::prepare(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 500) g;",
        "CREATE TABLE t (id int PRIMARY KEY, v text);",
        &plan,
    )
    .await;
    let urls = m.urls();
    let mut backfill = m.args("backfill", &urls);
    backfill.push("--no-follow");
    let out = switchyard(&backfill);
    assert!(out.status.success(), "{out:?}");
    let backfilled = String::from_utf8_lossy(&out.stdout);
    assert_eq!(float_noise(&backfilled), None, "{backfilled}");

    // Off a terminal, `follow` prints a plain line that reads alone.
    let follow = m.args("follow", &urls);
    let line = piped_lines(&follow, 1).remove(0);
    // (The first sample may come before the consumer has set the migration following.)
    assert!(
        line.starts_with("hostile ") && line.contains("slot holds"),
        "{line:?}"
    );
    assert!(!line.contains('\x1b') && !line.contains('\r'), "{line:?}");

    // On a terminal, one status line, redrawn in place.
    let consumer = OnTerminal::spawn(&follow);
    let shown = consumer.until("status line redrawn", |t| {
        t.matches("changes/s").count() >= 3 && erases_a_line(t)
    });
    assert!(shown.contains("0 changes/s · slot "), "{shown:?}");
    assert!(
        shown.matches('\n').count() < 3,
        "the status line scrolls: {shown:?}"
    );
    assert_eq!(float_noise(&shown), None, "{shown:?}");

    // `watch` on a terminal: a frame redrawn in place over itself.
    let watch = m.args("watch", &urls);
    let watcher = OnTerminal::spawn(&watch);
    let frames = watcher.until("watch frame redrawn", |t| {
        t.matches("applying").count() >= 3 && moves_up(t)
    });
    assert!(frames.contains("hostile  following"), "{frames:?}");
    assert!(frames.contains("max_slot_wal_keep_size"), "{frames:?}");
    assert_eq!(float_noise(&frames), None, "{frames:?}");

    // Off a terminal, and with --once, a line per sample.
    let lines = piped_lines(&watch, 2);
    for line in &lines {
        assert!(line.starts_with("hostile following: "), "{lines:?}");
        assert!(!line.contains('\x1b') && !line.contains('\r'), "{lines:?}");
        assert_eq!(float_noise(line), None, "{lines:?}");
    }
    let mut once = watch.clone();
    once.push("--once");
    let out = switchyard(&once);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        1,
        "{out:?}"
    );
}
