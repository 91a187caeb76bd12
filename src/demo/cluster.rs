//! Throwaway PostgreSQL clusters for the `demo` command, the integration tests and the benches.
//!
//! Each [`Cluster`] is a private `initdb` in a fresh temporary directory, served by a `postgres`
//! child on a free 127.0.0.1 port with logical decoding enabled and durability switched off
//! (the data is disposable; speed matters). Nothing outlives the value:
//!
//! ```text
//!   start: find binaries -> temp dir -> initdb -> postgres (port, retried) -> wait for "ready"
//!   drop:  disarm watchdog -> SIGQUIT postmaster -> wait -> remove the directory
//!   killed (SIGKILL, abort): the watchdog's stdin pipe closes -> it does the same
//! ```
//!
//! PostgreSQL refuses to run as root, so under euid 0 both `initdb` and `postgres` run as the
//! `postgres` user through `CommandExt::uid/gid` (no `sudo`, which is often missing), and the
//! postmaster stays our direct child, so we signal it by pid.
//!
//! How clients log in is the caller's choice, since tests exercise it: `trust`, or a superuser
//! password over TCP ([`PasswordAuth`]), with or without TLS ([`TlsFiles`]).

mod auth;
mod error;
mod host;
mod tls;
mod watchdog;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use error::io_error;
pub use error::ClusterError;
use host::{find_bin_dir, free_port, make_temp_dir, postgres_user};
use watchdog::Watchdog;

pub use auth::PasswordAuth;
pub use tls::TlsFiles;

/// How long a cold `postgres` may take to accept connections; CI machines can be slow.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a shutdown may take before we escalate to SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval while waiting for state changes: short against a ~200 ms start.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// A free port can be taken between our probe and the server's bind; retry that many times.
const PORT_ATTEMPTS: u32 = 5;
/// Log lines quoted in errors: enough for a FATAL and its context.
const LOG_TAIL_LINES: usize = 40;
/// Only the end of the log is read for a tail, so a huge log costs nothing.
const LOG_TAIL_BYTES: u64 = 16 * 1024;
/// The superuser created by initdb; every URL connects as it.
const SUPERUSER: &str = "postgres";

/// Settings every throwaway cluster gets: logical decoding on, durability off.
const BASE_SETTINGS: &[(&str, &str)] = &[
    ("wal_level", "logical"),
    ("max_wal_senders", "20"),
    ("max_replication_slots", "20"),
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("listen_addresses", "127.0.0.1"),
];

/// How to build a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `None`: `trust` authentication. `Some`: TCP logins need this superuser password, checked
    /// as `password_auth` says; the Unix socket still trusts.
    pub password: Option<String>,
    /// How TCP clients prove a password; unused without one.
    pub password_auth: PasswordAuth,
    /// `Some`: the server offers TLS with this certificate; plain TCP still works.
    pub tls: Option<TlsFiles>,
    /// Extra `-c name=value` settings; they override the defaults.
    pub settings: Vec<(String, String)>,
    /// How long to wait for the server to accept connections.
    pub start_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            password: None,
            password_auth: PasswordAuth::default(),
            tls: None,
            settings: Vec::new(),
            start_timeout: DEFAULT_START_TIMEOUT,
        }
    }
}

impl ClusterOptions {
    /// Require this superuser password over TCP (scram-sha-256 unless `with_password_auth`).
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Check TCP passwords with this `pg_hba.conf` method.
    pub fn with_password_auth(mut self, password_auth: PasswordAuth) -> Self {
        self.password_auth = password_auth;
        self
    }

    /// Offer TLS with this PEM certificate and private key (copied into the data directory).
    pub fn with_tls(mut self, cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        self.tls = Some(TlsFiles {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
        });
        self
    }

    /// Add a `-c name=value` server setting.
    pub fn with_setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }
}

/// A running throwaway cluster; dropping it stops the server and deletes its files.
#[derive(Debug)]
pub struct Cluster {
    bin_dir: PathBuf,
    dir: PathBuf,
    /// uid/gid of `postgres` when we are root.
    run_as: Option<(u32, u32)>,
    port: u16,
    password: Option<String>,
    password_auth: PasswordAuth,
    tls: Option<TlsFiles>,
    settings: Vec<(String, String)>,
    start_timeout: Duration,
    postmaster: Option<Child>,
    /// Cleans up if we die without dropping the cluster; `None` while stopped.
    watchdog: Option<Watchdog>,
}

impl Cluster {
    /// Whether this machine can start a cluster at all: the server binaries, and the
    /// `postgres` user to run them as when we are root. The first thing missing is the error.
    pub fn machine_ready() -> Result<(), ClusterError> {
        find_bin_dir()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            postgres_user()?;
        }
        Ok(())
    }

    /// initdb a fresh cluster in a temp dir and start it; returns once it accepts connections.
    pub fn start(opts: ClusterOptions) -> Result<Cluster, ClusterError> {
        let bin_dir = find_bin_dir()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let run_as = if unsafe { libc::geteuid() } == 0 {
            Some(postgres_user()?)
        } else {
            None
        };
        let dir = make_temp_dir()?;
        let mut cluster = Cluster {
            bin_dir,
            dir,
            run_as,
            port: 0,
            password: opts.password,
            password_auth: opts.password_auth,
            tls: opts.tls,
            settings: opts.settings,
            start_timeout: opts.start_timeout,
            postmaster: None,
            watchdog: None,
        };
        // From here on `Drop` cleans up whatever failed.
        cluster.own(&cluster.dir.clone())?;
        cluster.initdb()?;
        if let Some(tls) = &cluster.tls {
            for path in tls.install(&cluster.data_dir())? {
                cluster.own(&path)?;
            }
        }
        cluster.spawn_on_free_port()?;
        Ok(cluster)
    }

    /// A hot standby of `primary`: `pg_basebackup -R` (streaming the WAL it needs) into a
    /// temp dir, started on a free port; it follows the primary until dropped. Only for a
    /// primary with `trust` authentication.
    pub fn standby_of(primary: &Cluster) -> Result<Cluster, ClusterError> {
        let mut standby = Cluster {
            bin_dir: primary.bin_dir.clone(),
            dir: make_temp_dir()?,
            run_as: primary.run_as,
            port: 0,
            password: None,
            password_auth: primary.password_auth,
            tls: None,
            settings: vec![("hot_standby".to_owned(), "on".to_owned())],
            start_timeout: primary.start_timeout,
            postmaster: None,
            watchdog: None,
        };
        standby.own(&standby.dir.clone())?;
        let mut command = standby.command("pg_basebackup");
        command
            .arg("-D")
            .arg(standby.data_dir())
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"])
            .args(["-h", "127.0.0.1", "-U", SUPERUSER])
            .args(["-p", &primary.port.to_string()]);
        let output = command.output().map_err(io_error("run pg_basebackup"))?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            return Err(ClusterError::BaseBackup {
                status: output.status,
                output: text,
            });
        }
        standby.spawn_on_free_port()?;
        Ok(standby)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp directory holding the data directory, the socket and the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `postgres://postgres[:password]@127.0.0.1:PORT/dbname`.
    pub fn url(&self, dbname: &str) -> String {
        let auth = match &self.password {
            Some(password) => format!("{SUPERUSER}:{}", percent_encode(password)),
            None => SUPERUSER.to_string(),
        };
        format!("postgres://{auth}@127.0.0.1:{}/{dbname}", self.port)
    }

    /// Connect to `dbname`; the connection task is spawned on the current tokio runtime.
    pub async fn connect(&self, dbname: &str) -> Result<tokio_postgres::Client, ClusterError> {
        let url = self.url(dbname);
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .map_err(|source| ClusterError::Connect { url, source })?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "throwaway cluster connection ended");
            }
        });
        Ok(client)
    }

    /// `CREATE DATABASE name`.
    pub async fn create_database(&self, name: &str) -> Result<(), ClusterError> {
        let client = self.connect("postgres").await?;
        let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        client
            .batch_execute(&statement)
            .await
            .map_err(|source| ClusterError::Sql { statement, source })
    }

    /// The last lines of the server log, for error reports.
    pub fn log_tail(&self) -> String {
        let path = self.log_path();
        let len = fs::metadata(&path).map_or(0, |m| m.len());
        let text = read_log(&path, len.saturating_sub(LOG_TAIL_BYTES));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Fast shutdown (SIGINT: abort sessions, checkpoint); files stay until drop.
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        self.stop_with(libc::SIGINT)
    }

    /// Immediate shutdown (SIGQUIT: no checkpoint, as after a crash: the next start runs
    /// recovery, and slots come back as of the last checkpoint); files stay until drop.
    pub fn stop_immediate(&mut self) -> Result<(), ClusterError> {
        self.stop_with(libc::SIGQUIT)
    }

    /// Fast shutdown, then start again on the same port (for restart tests).
    pub fn restart(&mut self) -> Result<(), ClusterError> {
        self.stop()?;
        self.start_again()
    }

    /// Immediate shutdown, then start again on the same port, through crash recovery.
    pub fn restart_immediate(&mut self) -> Result<(), ClusterError> {
        self.stop_immediate()?;
        self.start_again()
    }

    fn stop_with(&mut self, signal: libc::c_int) -> Result<(), ClusterError> {
        self.watchdog = None;
        match self.postmaster.take() {
            Some(child) => shut_down(child, signal)
                .map(drop)
                .map_err(io_error("stop the server")),
            None => Ok(()),
        }
    }

    fn start_again(&mut self) -> Result<(), ClusterError> {
        self.spawn(self.port)?
            .map_err(|reason| self.start_error(reason))
    }

    /// The data directory (`PGDATA`) inside [`Cluster::dir`]; its `postmaster.pid` names the
    /// postmaster, which the backfill bench reads to account the cluster's CPU time.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// A command for a PostgreSQL binary, run as `postgres` when we are root.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        // The caller's cwd may be unreadable for `postgres`; initdb complains about that.
        command.current_dir(&self.dir);
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Hand a path we created to the user the server runs as.
    fn own(&self, path: &Path) -> Result<(), ClusterError> {
        match self.run_as {
            Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(io_error(format!("chown {} to postgres", path.display()))),
            None => Ok(()),
        }
    }

    fn initdb(&self) -> Result<(), ClusterError> {
        let mut command = self.command("initdb");
        // C locale and no fsync: fast, and sorting does not depend on the machine.
        let data_dir = self.data_dir();
        command.arg("-D").arg(data_dir).args(["-U", SUPERUSER]);
        command.args(["-E", "UTF8", "--locale=C", "--no-sync"]);
        match &self.password {
            Some(password) => {
                let pwfile = self.dir.join("pwfile");
                fs::write(&pwfile, password).map_err(io_error("write the password file"))?;
                self.own(&pwfile)?;
                command
                    .args(self.password_auth.initdb_args())
                    .arg("--pwfile")
                    .arg(pwfile);
            }
            None => {
                command.args(auth::TRUST_ARGS);
            }
        }
        let output = command.output().map_err(io_error("run initdb"))?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            return Err(ClusterError::Initdb {
                status: output.status,
                output: text,
            });
        }
        Ok(())
    }

    fn spawn_on_free_port(&mut self) -> Result<(), ClusterError> {
        let mut reason = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let log_start = fs::metadata(self.log_path()).map_or(0, |m| m.len());
            match self.spawn(port)? {
                Ok(()) => return Ok(()),
                // Only this attempt's lines count: earlier attempts may have lost a port too.
                Err(why) if read_log(&self.log_path(), log_start).contains("could not bind") => {
                    reason = why
                }
                Err(why) => return Err(self.start_error(why)),
            }
        }
        Err(self.start_error(format!("{reason} ({PORT_ATTEMPTS} ports tried)")))
    }

    /// Start the postmaster on `port` and wait until it is ready. The outer error is ours
    /// (spawning failed); the inner one is the server's (it exited or never got ready).
    fn spawn(&mut self, port: u16) -> Result<Result<(), String>, ClusterError> {
        self.port = port;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(io_error("open the server log"))?;
        let log_err = log.try_clone().map_err(io_error("open the server log"))?;
        let mut command = self.command("postgres");
        command.arg("-D").arg(self.data_dir());
        let port_setting = port.to_string();
        let socket_dir = self.dir.to_string_lossy().into_owned();
        let settings = BASE_SETTINGS
            .iter()
            .copied()
            .chain([
                ("port", port_setting.as_str()),
                ("unix_socket_directories", socket_dir.as_str()),
            ])
            .chain(self.tls.iter().flat_map(|_| tls::SETTINGS.iter().copied()))
            .chain(self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        for (name, value) in settings {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        // Its own process group: a Ctrl-C meant for us must not shut the server down early.
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = command.spawn().map_err(io_error("start postgres"))?;
        let pid = child.id();
        self.postmaster = Some(child);
        let watchdog =
            Watchdog::arm(pid, &self.dir).map_err(io_error("start the cleanup watchdog"))?;
        self.watchdog = Some(watchdog);
        Ok(self.wait_until_ready(pid))
    }

    /// Waits for `postmaster.pid` to say "ready", as `pg_ctl -w` does.
    fn wait_until_ready(&mut self, pid: u32) -> Result<(), String> {
        let pid_file = self.data_dir().join("postmaster.pid");
        let deadline = Instant::now() + self.start_timeout;
        loop {
            if let Some(child) = self.postmaster.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.postmaster = None;
                    self.watchdog = None;
                    return Err(format!("postgres exited with {status}"));
                }
            }
            if let Ok(text) = fs::read_to_string(&pid_file) {
                let lines: Vec<&str> = text.lines().collect();
                // Line 1 is the pid (a stale file may remain), line 8 the status.
                if lines.first() == Some(&pid.to_string().as_str())
                    && lines.get(7).map(|s| s.trim()) == Some("ready")
                {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready after {:?}", self.start_timeout));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn start_error(&self, reason: String) -> ClusterError {
        ClusterError::Start {
            reason,
            log_tail: self.log_tail(),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.watchdog = None;
        if let Some(child) = self.postmaster.take() {
            // Immediate shutdown: the data is thrown away, so skip the checkpoint.
            if let Err(err) = shut_down(child, libc::SIGQUIT) {
                tracing::warn!(error = %err, "could not stop the throwaway cluster");
            }
        }
        if let Err(err) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(error = %err, dir = %self.dir.display(), "could not remove the cluster dir");
        }
    }
}

/// Signal the postmaster and wait for it, escalating to SIGKILL after [`STOP_TIMEOUT`].
fn shut_down(mut child: Child, signal: libc::c_int) -> io::Result<ExitStatus> {
    // SAFETY: a plain syscall. The pid is our own unreaped child, so it is not recycled.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            child.kill()?;
            return child.wait();
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The log from byte `offset` on ("" when there is none yet).
fn read_log(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_to_end(&mut bytes));
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What a password in a URL keeps as it is: RFC 3986's unreserved characters.
const URL_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode everything but RFC 3986 unreserved characters (for passwords in URLs).
fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, URL_UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encode_keeps_only_unreserved_characters() {
        assert_eq!(
            percent_encode("s3cret/with:odd@chars%?é-._~"),
            "s3cret%2Fwith%3Aodd%40chars%25%3F%C3%A9-._~"
        );
    }
}
