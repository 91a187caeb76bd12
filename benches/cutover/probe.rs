//! The application's view of the window: one session writes one legacy row after another and
//! times each write. A write sent while the cutover holds its lock waits for the release (or,
//! after a real cutover, is refused by the read-only trigger), so the worst latency of the
//! writes sent during a cutover is the stall the application felt.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::Client;

/// The pause between two probe writes: often enough to land several inside a window of tens
/// of milliseconds, rare enough to add nothing the write mix would notice.
const PROBE_INTERVAL: Duration = Duration::from_millis(2);

/// The rows the probe cycles through (ids `1..=PROBE_ROWS`, capped by the table's size).
const PROBE_ROWS: i64 = 1000;

/// A running probe session. Its samples are taken out run by run ([`Probe::worst_between`]), so
/// its memory stays that of one run.
pub struct Probe {
    samples: Arc<Mutex<Vec<(Instant, Duration)>>>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Probe {
    /// Start writing `company_services` rows `1..=min(rows, PROBE_ROWS)` on `client`.
    pub fn start(client: Client, rows: u64) -> Probe {
        let samples: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let rows = (rows as i64).clamp(1, PROBE_ROWS);
        let task = {
            let (samples, stop) = (Arc::clone(&samples), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut id = 1i64;
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    // Refused once the legacy tables are read-only: the time it took still is
                    // what the application waited.
                    let _ = client
                        .execute(
                            "UPDATE company_services SET status = status WHERE id = $1",
                            &[&id],
                        )
                        .await;
                    samples.lock().unwrap().push((sent, sent.elapsed()));
                    id = id % rows + 1;
                    tokio::time::sleep(PROBE_INTERVAL).await;
                }
            })
        };
        Probe {
            samples,
            stop,
            task,
        }
    }

    /// The worst latency of the writes sent from `from` to `to`, and the number of them;
    /// forgets every sample taken so far. Call it a while after `to`, so that a write still
    /// waiting at `to` has come back.
    pub fn worst_between(&self, from: Instant, to: Instant) -> (Duration, usize) {
        let mut samples = self.samples.lock().unwrap();
        let sent = samples.iter().filter(|(at, _)| *at >= from && *at <= to);
        let count = sent.clone().count();
        let worst = sent.map(|(_, took)| *took).max().unwrap_or_default();
        samples.clear();
        (worst, count)
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
    }
}
