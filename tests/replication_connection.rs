//! The replication connection and `connect()` against real PostgreSQL clusters: authentication
//! methods, TLS modes, the exported snapshot, streaming, and the errors operators see.
//!
//! Each test starts its own throwaway cluster (see `Cluster` below, a stand-in until the shared
//! test harness lands). PostgreSQL refuses to run as root, so the binaries run as `postgres`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchyard::pg::connect::connect;
use switchyard::pg::conninfo::ConnInfo;
use switchyard::pg::lsn::Lsn;
use switchyard::pg::replication_message::ReplicationMessage;
use switchyard::source::replication::{ReplicationConnection, ReplicationError};

/// How long a test waits for the server to stream a change before it fails.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// The superuser's password (initdb --pwfile).
const SUPERUSER_PASSWORD: &str = "super-secret-pw";

/// A PostgreSQL 15 cluster in a temp directory, stopped and removed on drop (even on panic).
struct Cluster {
    dir: PathBuf,
    port: u16,
    bindir: PathBuf,
}

static CLUSTER_COUNT: AtomicUsize = AtomicUsize::new(0);

impl Cluster {
    /// initdb (SCRAM over TCP, trust over the socket), write `files` into the data directory
    /// (`*.key` private to postgres), append `conf` to postgresql.conf, replace pg_hba.conf
    /// with `hba`, start.
    fn start(conf: &str, hba: &str, files: &[(&str, &[u8])]) -> Cluster {
        let bindir = PathBuf::from(output("pg_config", &["--bindir"]).trim());
        let dir = std::env::temp_dir().join(format!(
            "switchyard-repl-test-{}-{}",
            std::process::id(),
            CLUSTER_COUNT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster { dir, port, bindir };
        std::fs::write(cluster.dir.join("pwfile"), SUPERUSER_PASSWORD).unwrap();
        chown_to_postgres(&cluster.dir);
        cluster.as_postgres(
            "initdb",
            &[
                "-D",
                cluster.data().to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                "--auth-local=trust",
                "--pwfile",
                cluster.dir.join("pwfile").to_str().unwrap(),
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let settings = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nmax_wal_senders = 10\nmax_replication_slots = 10\n{conf}\n",
            cluster.port,
            cluster.dir.display()
        );
        append(&cluster.data().join("postgresql.conf"), &settings);
        std::fs::write(cluster.data().join("pg_hba.conf"), hba).unwrap();
        for (name, content) in files {
            let path = cluster.data().join(name);
            std::fs::write(&path, content).unwrap();
            if name.ends_with(".key") {
                use std::os::unix::fs::PermissionsExt;
                let private = std::fs::Permissions::from_mode(0o600);
                std::fs::set_permissions(&path, private).unwrap();
            }
        }
        chown_to_postgres(&cluster.dir);
        let log = cluster.dir.join("log");
        cluster.as_postgres(
            "pg_ctl",
            &[
                "-D",
                cluster.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A key=value connection string for a TCP host, plus `extra`.
    fn tcp(&self, host: &str, user: &str, password: &str, extra: &str) -> ConnInfo {
        format!(
            "host={host} port={} user={user} password='{password}' dbname=postgres {extra}",
            self.port
        )
        .parse()
        .unwrap()
    }

    /// The superuser over the Unix socket (trust).
    fn socket(&self, user: &str) -> ConnInfo {
        format!(
            "host={} port={} user={user} dbname=postgres",
            self.dir.display(),
            self.port
        )
        .parse()
        .unwrap()
    }

    fn as_postgres(&self, program: &str, args: &[&str]) {
        let program = self.bindir.join(program);
        let status = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        if !status.success() {
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            panic!("{args:?} failed: {status}\n{log}");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bindir.join("pg_ctl"))
            .args([
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .stdout(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

fn chown_to_postgres(dir: &Path) {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// pg_hba for password tests: the socket trusts everyone, TCP wants SCRAM (md5 for md5_user).
const PASSWORD_HBA: &str = "local all all trust\n\
                            host all md5_user 127.0.0.1/32 md5\n\
                            host all all 127.0.0.1/32 scram-sha-256\n";

async fn superuser(cluster: &Cluster) -> tokio_postgres::Client {
    connect(&cluster.socket("postgres"), "switchyard-test")
        .await
        .unwrap()
}

async fn sql_value(client: &tokio_postgres::Client, sql: &str) -> String {
    let rows = client.simple_query(sql).await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql} returned no value"))
}

#[tokio::test]
async fn authenticates_with_scram_md5_and_trust_and_sets_session_settings() {
    let cluster = Cluster::start("wal_level = logical", PASSWORD_HBA, &[]);
    let admin = superuser(&cluster).await;
    admin
        .batch_execute(
            "CREATE ROLE scram_user LOGIN REPLICATION PASSWORD 'scram-pw';
             SET password_encryption = 'md5';
             CREATE ROLE md5_user LOGIN REPLICATION PASSWORD 'md5-pw';",
        )
        .await
        .unwrap();
    let stored = sql_value(
        &admin,
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'md5_user'",
    )
    .await;
    assert!(stored.starts_with("md5"), "md5_user's password is {stored}");

    // md5_user leaves sslmode at its default, prefer: this server declines TLS, so plain TCP.
    for (user, password, tls) in [
        ("scram_user", "scram-pw", "sslmode=disable"),
        ("md5_user", "md5-pw", ""),
    ] {
        let info = cluster.tcp("127.0.0.1", user, password, tls);
        let mut repl = ReplicationConnection::connect(&info).await.unwrap();
        let identity = repl.identify_system().await.unwrap();
        assert_eq!(identity.dbname.as_deref(), Some("postgres"));
        let settings = repl
            .simple_query(
                "SELECT current_setting('TimeZone'), current_setting('DateStyle'), current_user",
            )
            .await
            .unwrap();
        assert_eq!(
            settings,
            vec![vec![
                Some("UTC".to_string()),
                Some("ISO, MDY".to_string()),
                Some(user.to_string())
            ]]
        );
        repl.close().await.unwrap();

        let client = connect(&info, "switchyard-auth-test").await.unwrap();
        for (sql, expected) in [
            ("SHOW application_name", "switchyard-auth-test"),
            ("SHOW TimeZone", "UTC"),
            ("SHOW DateStyle", "ISO, MDY"),
            ("SHOW IntervalStyle", "postgres"),
            ("SHOW extra_float_digits", "3"),
            ("SHOW bytea_output", "hex"),
            ("SHOW statement_timeout", "0"),
            ("SHOW lock_timeout", "0"),
            ("SHOW idle_in_transaction_session_timeout", "0"),
        ] {
            assert_eq!(sql_value(&client, sql).await, expected, "{sql} as {user}");
        }
    }

    // Trust over the Unix socket: no password at all.
    let mut repl = ReplicationConnection::connect(&cluster.socket("postgres"))
        .await
        .unwrap();
    let rows = repl.simple_query("SELECT 1, NULL::text").await.unwrap();
    assert_eq!(rows, vec![vec![Some("1".to_string()), None]]);
    repl.close().await.unwrap();
}

#[tokio::test]
async fn wrong_password_is_a_definite_error_that_hides_the_password() {
    let cluster = Cluster::start("wal_level = logical", PASSWORD_HBA, &[]);
    let wrong = "not-the-Password-123";
    let info = cluster.tcp("127.0.0.1", "postgres", wrong, "sslmode=disable");

    let error = ReplicationConnection::connect(&info).await.unwrap_err();
    let text = error.to_string();
    assert!(!error.is_transient(), "{text}");
    assert_eq!(error.server_error().unwrap().code, "28P01", "{text}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(text.contains("check the user name and password"), "{text}");
    assert!(
        text.contains("password='********'") || text.contains("password=********"),
        "{text}"
    );
    assert!(!text.contains(wrong), "{text}");
    assert!(!format!("{error:?}").contains(wrong));

    let error = connect(&info, "switchyard-test").await.unwrap_err();
    let chain = error_chain(&error);
    assert!(chain.contains("password authentication failed"), "{chain}");
    assert!(!chain.contains(wrong), "{chain}");
    assert!(!format!("{error:?}").contains(wrong));
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text = format!("{text}: {e}");
        cause = e.source();
    }
    text
}

#[tokio::test]
async fn exported_snapshot_hides_later_rows_and_the_stream_delivers_them() {
    let cluster = Cluster::start("wal_level = logical", PASSWORD_HBA, &[]);
    let admin = superuser(&cluster).await;
    admin
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text);
             INSERT INTO items SELECT i, 'before ' || i FROM generate_series(1, 3) i;
             CREATE PUBLICATION switchyard FOR TABLE items;",
        )
        .await
        .unwrap();
    let info = cluster.tcp(
        "127.0.0.1",
        "postgres",
        SUPERUSER_PASSWORD,
        "sslmode=disable",
    );
    let mut repl = ReplicationConnection::connect(&info).await.unwrap();

    let identity = repl.identify_system().await.unwrap();
    let system_id = sql_value(&admin, "SELECT system_identifier FROM pg_control_system()").await;
    assert_eq!(identity.system_id, system_id);
    assert_eq!(identity.timeline, 1);
    assert!(identity.xlog_pos > Lsn(0));

    let slot = repl
        .create_logical_slot_exporting_snapshot("switchyard_test")
        .await
        .unwrap();
    assert_eq!(slot.slot_name, "switchyard_test");
    assert!(slot.consistent_point >= identity.xlog_pos);

    admin
        .batch_execute("INSERT INTO items VALUES (4, 'after 4'), (5, 'after 5')")
        .await
        .unwrap();
    let mut importers = Vec::new();
    for _ in 0..2 {
        let importer = connect(&info, "switchyard-importer").await.unwrap();
        importer
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
                 SET TRANSACTION SNAPSHOT '{}'",
                slot.snapshot_name
            ))
            .await
            .unwrap();
        importers.push(importer);
    }
    for importer in &importers {
        assert_eq!(sql_value(importer, "SELECT count(*) FROM items").await, "3");
        assert_eq!(sql_value(importer, "SELECT max(id) FROM items").await, "3");
    }
    assert_eq!(sql_value(&admin, "SELECT count(*) FROM items").await, "5");

    // Every importer holds the snapshot now, so the connection may move on.
    let options = [("proto_version", "1"), ("publication_names", "switchyard")];
    let mut stream = repl
        .start_logical_replication(&slot.slot_name, slot.consistent_point, &options)
        .await
        .unwrap();
    let mut tags = Vec::new();
    let commit_end = tokio::time::timeout(STREAM_TIMEOUT, async {
        loop {
            match stream.next_message().await.unwrap().expect("stream ended") {
                ReplicationMessage::XLogData(x) => {
                    tags.push(x.data[0]);
                    if x.data[0] == b'C' {
                        // Commit: flags u8, commit_lsn u64, end_lsn u64, timestamp.
                        return Lsn(u64::from_be_bytes(x.data[10..18].try_into().unwrap()));
                    }
                }
                ReplicationMessage::PrimaryKeepalive(_) => {}
            }
        }
    })
    .await
    .expect("no commit streamed in time");
    assert_eq!(tags.first(), Some(&b'B'), "tags {tags:?}");
    assert_eq!(
        tags.iter().filter(|&&t| t == b'I').count(),
        2,
        "tags {tags:?}"
    );

    stream
        .send_status(commit_end, commit_end, commit_end, false)
        .await
        .unwrap();
    let mut repl = stream.finish().await.unwrap();
    let confirmed = sql_value(
        &admin,
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'switchyard_test'",
    )
    .await;
    assert_eq!(confirmed.parse::<Lsn>().unwrap(), commit_end);
    // Back in command mode after finish().
    assert_eq!(repl.identify_system().await.unwrap().system_id, system_id);

    let error = repl
        .create_logical_slot_exporting_snapshot("switchyard_test")
        .await
        .unwrap_err();
    assert!(!error.is_transient());
    assert!(
        error.to_string().contains("pg_drop_replication_slot"),
        "{error}"
    );
    repl.close().await.unwrap();
}

#[tokio::test]
async fn server_without_logical_wal_level_gives_the_fix() {
    let cluster = Cluster::start("wal_level = replica", PASSWORD_HBA, &[]);
    let mut repl = ReplicationConnection::connect(&cluster.socket("postgres"))
        .await
        .unwrap();
    let error = repl
        .create_logical_slot_exporting_snapshot("switchyard_test")
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, ReplicationError::Server { .. }), "{text}");
    assert!(!error.is_transient(), "{text}");
    assert!(text.contains("wal_level"), "{text}");
    assert!(
        text.contains("set wal_level = logical in postgresql.conf and restart the server"),
        "{text}"
    );
}

/// A self-signed certificate for `localhost` only (no IP address in it), and its key.
fn self_signed_certificate(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    assert!(
        Command::new("openssl").arg("version").output().is_ok(),
        "openssl is needed to make the test certificate"
    );
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())
}

#[tokio::test]
async fn tls_require_verify_ca_and_verify_full_work_for_both_connections() {
    let scratch = std::env::temp_dir().join(format!("switchyard-cert-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let (cert, key) = self_signed_certificate(&scratch);
    std::fs::remove_dir_all(&scratch).unwrap();
    // Only TLS connections may log in over TCP, so a session that works proves TLS is on.
    let hba = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n";
    let conf =
        "wal_level = logical\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'";
    let files: [(&str, &[u8]); 2] = [("server.crt", &cert), ("server.key", &key)];
    let cluster = Cluster::start(conf, hba, &files);
    // The client trusts the self-signed certificate itself.
    let root = cluster.data().join("server.crt");
    let root = root.display();
    let working = [
        ("127.0.0.1", "sslmode=require".to_string()),
        ("127.0.0.1", "sslmode=prefer".to_string()),
        ("127.0.0.1", format!("sslmode=verify-ca sslrootcert={root}")),
        (
            "localhost",
            format!("sslmode=verify-full sslrootcert={root}"),
        ),
    ];
    for (host, tls) in &working {
        let info = cluster.tcp(host, "postgres", SUPERUSER_PASSWORD, tls);
        let client = connect(&info, "switchyard-tls-test")
            .await
            .unwrap_or_else(|e| panic!("{tls}: {}", error_chain(&e)));
        let ssl = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
        assert_eq!(sql_value(&client, ssl).await, "t");
        // SCRAM over TLS runs with channel binding (SCRAM-SHA-256-PLUS): a wrong binding
        // would fail the login.
        let mut repl = ReplicationConnection::connect(&info)
            .await
            .unwrap_or_else(|e| panic!("{tls}: {e}"));
        assert_eq!(
            repl.simple_query(ssl).await.unwrap(),
            vec![vec![Some("t".to_string())]]
        );
        repl.identify_system().await.unwrap();
        repl.close().await.unwrap();
    }

    // verify-full checks the name: the certificate is for localhost, not 127.0.0.1.
    let info = cluster.tcp(
        "127.0.0.1",
        "postgres",
        SUPERUSER_PASSWORD,
        &format!("sslmode=verify-full sslrootcert={root}"),
    );
    let error = ReplicationConnection::connect(&info).await.unwrap_err();
    assert!(matches!(error, ReplicationError::Tls { .. }), "{error}");
    assert!(error.to_string().contains("not valid for name"), "{error}");
    assert!(!error.is_transient());
    assert!(connect(&info, "switchyard-tls-test").await.is_err());
}
