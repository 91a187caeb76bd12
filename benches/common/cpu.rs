//! CPU seconds by who spent them: the client processes a contender starts, and each cluster;
//! and the peak memory of a client process.
//!
//! **Client processes** (psql, switchyard) are reaped with `wait4`, which returns the rusage of
//! that one child (and of whatever it waited for itself): its user + system CPU time, not the
//! running total of every child this process ever had.
//!
//! **Peak RSS** is *not* taken from `ru_maxrss`: at `execve` the kernel folds the high-water
//! RSS of the image the process leaves into it, and before the exec a child's image is ours
//! (shared after `posix_spawn`, which std uses, copied after `fork`), so every child's
//! `ru_maxrss` starts at this bench's own peak (every psql showed the bench's 26 MB at SF 1; a
//! `/bin/true` spawned from a 300 MB process reports 300 MB, either way). Instead
//! [`wait_sampling_peak_rss`] reads `VmHWM` of `/proc/<pid>/status` (the high-water mark of the
//! new image alone, monotonic) every [`PEAK_RSS_POLL`] until the process exits; only growth in
//! its last poll interval is missed.
//!
//! **A cluster** is its postmaster and the postmaster's children (backends, parallel workers,
//! autovacuum, checkpointer, WAL writer, ...). The postmaster reaps every child that exits, so
//! the kernel adds an exited backend's CPU time to the postmaster's `cutime`/`cstime`; a child
//! still alive has its time only in its own `/proc/<pid>/stat`. So
//!
//! ```text
//!   cluster CPU = postmaster (utime + stime + cutime + cstime)
//!               + sum over live children with ppid == postmaster (utime + stime)
//! ```
//!
//! counts every backend exactly once whether it exited between two samples or not, and the
//! difference of two samples is what the cluster spent in between.
//!
//! Limits: background processes count too (checkpointer, background writer, WAL writer,
//! autovacuum); that is wanted, since their work is part of what a contender costs, but an
//! autovacuum left over from an earlier step lands on whoever runs next, so the bench drops each
//! contender's target database before the next. A backend that exits between the scan of the
//! children and the read of the postmaster is counted in neither; the samples are taken while the
//! cluster is idle, so that window holds at most a backend's last tick. The resolution is one
//! clock tick (`sysconf(_SC_CLK_TCK)`, usually 10 ms).

use std::fs;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::Duration;

use switchyard::demo::cluster::Cluster;

/// How often [`wait_sampling_peak_rss`] reads `VmHWM`: a read costs microseconds, and a run
/// of seconds that grows its memory only in its last 10 ms is not what the figure is for.
pub const PEAK_RSS_POLL: Duration = Duration::from_millis(10);

/// What one client process, or several together, cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChildUsage {
    /// User plus system CPU seconds.
    pub cpu_seconds: f64,
    /// Peak resident set size in KiB, when it was sampled ([`wait_sampling_peak_rss`]).
    pub peak_rss_kb: Option<u64>,
}

impl ChildUsage {
    /// The usage of two processes together: CPU adds up, the peak is the larger one.
    pub fn plus(self, other: ChildUsage) -> ChildUsage {
        ChildUsage {
            cpu_seconds: self.cpu_seconds + other.cpu_seconds,
            peak_rss_kb: self.peak_rss_kb.max(other.peak_rss_kb),
        }
    }
}

/// Wait for `child`, returning its exit status and CPU time; the peak RSS is not sampled.
///
/// The child is reaped here, so `child` must not be waited for again; it is consumed.
pub fn wait(child: Child) -> io::Result<(ExitStatus, ChildUsage)> {
    let pid = child.id() as libc::pid_t;
    Ok(reap(pid, 0)?.expect("a blocking wait4 returns only once the child exited"))
}

/// [`wait`], sampling the child's peak RSS every [`PEAK_RSS_POLL`] while it runs.
pub fn wait_sampling_peak_rss(child: Child) -> io::Result<(ExitStatus, ChildUsage)> {
    let pid = child.id() as libc::pid_t;
    let mut peak_rss_kb = 0;
    loop {
        // None once the child is a zombie (its memory is gone): the last read stands.
        if let Some(kb) = vm_hwm_kb(pid) {
            peak_rss_kb = peak_rss_kb.max(kb);
        }
        if let Some((status, usage)) = reap(pid, libc::WNOHANG)? {
            let peak_rss_kb = Some(peak_rss_kb);
            return Ok((
                status,
                ChildUsage {
                    peak_rss_kb,
                    ..usage
                },
            ));
        }
        std::thread::sleep(PEAK_RSS_POLL);
    }
}

/// `wait4(pid, options)`: None while the child runs (with `WNOHANG`).
fn reap(pid: libc::pid_t, options: libc::c_int) -> io::Result<Option<(ExitStatus, ChildUsage)>> {
    let mut status = 0;
    // SAFETY: `rusage` is plain integers; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = loop {
        // SAFETY: wait4 writes into the status and the struct we own; `pid` is our child,
        // not yet reaped (std reaps only in `wait`/`try_wait`/`output`, which we do not call).
        let reaped = unsafe { libc::wait4(pid, &mut status, options, &mut usage) };
        if reaped >= 0 {
            break reaped;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    if reaped == 0 {
        return Ok(None);
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let usage = ChildUsage {
        cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        peak_rss_kb: None,
    };
    Ok(Some((ExitStatus::from_raw(status), usage)))
}

/// `VmHWM` of `/proc/<pid>/status` in KiB; None when the process has no memory any more.
pub fn vm_hwm_kb(pid: libc::pid_t) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU seconds one live process (not necessarily our child) has spent so far,
/// from `/proc/<pid>/stat`; an error once it has exited.
pub fn process_seconds(pid: i32) -> io::Result<f64> {
    let stat = ProcStat::read(pid)?;
    Ok((stat.utime + stat.stime) as f64 / clock_ticks_per_second())
}

/// The CPU account of one running cluster.
#[derive(Debug, Clone, Copy)]
pub struct ClusterCpu {
    postmaster: i32,
}

impl ClusterCpu {
    /// The cluster's postmaster, from the first line of `<data dir>/postmaster.pid`.
    pub fn of(cluster: &Cluster) -> io::Result<ClusterCpu> {
        let pid_file = fs::read_to_string(cluster.data_dir().join("postmaster.pid"))?;
        let postmaster = pid_file
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| io::Error::other("postmaster.pid does not start with a pid"))?;
        Ok(ClusterCpu { postmaster })
    }

    /// CPU seconds the cluster has spent since its postmaster started, children included.
    pub fn seconds(&self) -> io::Result<f64> {
        let mut ticks = 0;
        for entry in fs::read_dir("/proc")? {
            let Some(pid) = entry?
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if pid == self.postmaster {
                continue;
            }
            // A process may exit between listing and reading; it is then counted through the
            // postmaster's cutime/cstime instead.
            if let Ok(stat) = ProcStat::read(pid) {
                if stat.ppid == self.postmaster {
                    ticks += stat.utime + stat.stime;
                }
            }
        }
        let postmaster = ProcStat::read(self.postmaster)?;
        ticks += postmaster.utime + postmaster.stime + postmaster.cutime + postmaster.cstime;
        Ok(ticks as f64 / clock_ticks_per_second())
    }
}

/// The fields of `/proc/<pid>/stat` this module reads, in clock ticks.
struct ProcStat {
    ppid: i32,
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
}

impl ProcStat {
    fn read(pid: i32) -> io::Result<ProcStat> {
        let text = fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))?;
        ProcStat::parse(&text)
            .ok_or_else(|| io::Error::other(format!("unreadable /proc/{pid}/stat: {text}")))
    }

    /// `pid (comm) state ppid ...`: `comm` may hold spaces and parentheses, so the fields are
    /// counted from the last `)`. Field 3 (state) is index 0 after it, so field N is N - 3.
    fn parse(text: &str) -> Option<ProcStat> {
        let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<i64>().ok();
        Some(ProcStat {
            ppid: field(4)? as i32,
            utime: field(14)? as u64,
            stime: field(15)? as u64,
            cutime: field(16)? as u64,
            cstime: field(17)? as u64,
        })
    }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(ticks > 0, "sysconf(_SC_CLK_TCK) failed");
    ticks as f64
}
