//! Ctrl-C (SIGINT) and SIGTERM: one stop request, seen by every job of a command. Jobs stop at
//! a point where their progress is recorded, say what they kept, and the process exits with
//! the shell's code for the signal (130, 143), so a script can tell an interrupted backfill
//! from a finished or a failed one.

use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

/// A job was stopped by a signal. The message says what was kept and how to go on.
#[derive(Debug, thiserror::Error)]
#[error("interrupted: {0}")]
pub struct Interrupted(pub String);

/// The stop request of one command: `true` once SIGINT or SIGTERM arrived.
#[derive(Clone)]
pub struct Stop {
    pub requested: watch::Receiver<bool>,
    signal: Arc<AtomicI32>,
    /// Held so that a closed channel never reads as "stopped".
    _sender: Arc<watch::Sender<bool>>,
}

impl Stop {
    /// Listens for SIGINT and SIGTERM from now on.
    pub fn on_signals() -> Stop {
        let (sender, requested) = watch::channel(false);
        let (sender, seen_signal) = (Arc::new(sender), Arc::new(AtomicI32::new(0)));
        let (send, seen) = (Arc::clone(&sender), Arc::clone(&seen_signal));
        // Registered before returning: a signal from now on is ours, not the default action.
        let (interrupt, terminate) = (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        );
        tokio::spawn(async move {
            seen.store(first_signal(interrupt, terminate).await, Ordering::Relaxed);
            let _ = send.send(true);
        });
        Stop {
            requested,
            signal: seen_signal,
            _sender: sender,
        }
    }

    /// A stop request that never comes (the demo and the library's callers).
    pub fn never() -> Stop {
        let (sender, requested) = watch::channel(false);
        Stop {
            requested,
            signal: Arc::new(AtomicI32::new(0)),
            _sender: Arc::new(sender),
        }
    }

    /// 128 + the signal number, as shells report a process a signal ended.
    pub fn exit_code(&self) -> ExitCode {
        let signal = match self.signal.load(Ordering::Relaxed) {
            0 => libc::SIGINT,
            s => s,
        };
        ExitCode::from((128 + signal) as u8)
    }

    /// Runs `work` unless the stop request comes first: then `None`, and `work` is dropped
    /// where it stood (its connections close, so the server rolls back what was in flight).
    pub async fn unless_stopped<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        let mut requested = self.requested.clone();
        tokio::select! {
            biased;
            _ = requested.wait_for(|stop| *stop) => None,
            out = work => Some(out),
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM with the signal's number.
async fn first_signal(interrupt: Option<Signal>, terminate: Option<Signal>) -> i32 {
    async fn recv(signal: Option<Signal>) {
        match signal {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    tokio::select! {
        _ = recv(interrupt) => libc::SIGINT,
        _ = recv(terminate) => libc::SIGTERM,
    }
}
