//! The replication connection and `connect()` against real PostgreSQL clusters: authentication
//! methods, TLS modes, the exported snapshot, streaming, and the errors operators see.
//!
//! Each test starts its own throwaway cluster from the shared harness, with the superuser's
//! password required over TCP and trust over the Unix socket (the test's own admin session).

use std::time::Duration;

use switchyard::demo::cluster::{Cluster, ClusterOptions, PasswordAuth};
use switchyard::pg::connect::connect;
use switchyard::pg::conninfo::ConnInfo;
use switchyard::pg::lsn::Lsn;
use switchyard::pg::replication_message::ReplicationMessage;
use switchyard::source::replication::{ReplicationConnection, ReplicationError};

use crate::tls::SelfSignedCertificate;

/// How long a test waits for the server to stream a change before it fails.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// The superuser's password, required over TCP.
const SUPERUSER_PASSWORD: &str = "super-secret-pw";

/// A cluster whose superuser needs [`SUPERUSER_PASSWORD`] over TCP, checked with scram-sha-256.
fn password_options() -> ClusterOptions {
    ClusterOptions::default().with_password(SUPERUSER_PASSWORD)
}

fn start(options: ClusterOptions) -> Cluster {
    Cluster::start(options).unwrap_or_else(|e| panic!("throwaway cluster: {}", error_chain(&e)))
}

/// A key=value connection string for a TCP host, plus `extra`.
fn tcp(cluster: &Cluster, host: &str, user: &str, password: &str, extra: &str) -> ConnInfo {
    format!(
        "host={host} port={} user={user} password='{password}' dbname=postgres {extra}",
        cluster.port()
    )
    .parse()
    .unwrap()
}

/// `user` over the Unix socket, which trusts everyone.
fn socket(cluster: &Cluster, user: &str) -> ConnInfo {
    format!(
        "host={} port={} user={user} dbname=postgres",
        cluster.dir().display(),
        cluster.port()
    )
    .parse()
    .unwrap()
}

async fn superuser(cluster: &Cluster) -> tokio_postgres::Client {
    connect(&socket(cluster, "postgres"), "switchyard-test")
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
    // md5 in pg_hba: md5_user's md5 hash logs in with md5, scram_user's SCRAM hash with SCRAM.
    let cluster = start(password_options().with_password_auth(PasswordAuth::Md5));
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
        let info = tcp(&cluster, "127.0.0.1", user, password, tls);
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
    let mut repl = ReplicationConnection::connect(&socket(&cluster, "postgres"))
        .await
        .unwrap();
    let rows = repl.simple_query("SELECT 1, NULL::text").await.unwrap();
    assert_eq!(rows, vec![vec![Some("1".to_string()), None]]);
    repl.close().await.unwrap();
}

#[tokio::test]
async fn wrong_password_is_a_definite_error_that_hides_the_password() {
    let cluster = start(password_options());
    let wrong = "not-the-Password-123";
    let info = tcp(&cluster, "127.0.0.1", "postgres", wrong, "sslmode=disable");

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
    let cluster = start(password_options());
    let admin = superuser(&cluster).await;
    admin
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text);
             INSERT INTO items SELECT i, 'before ' || i FROM generate_series(1, 3) i;
             CREATE PUBLICATION switchyard FOR TABLE items;",
        )
        .await
        .unwrap();
    let info = tcp(
        &cluster,
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
    let cluster = start(password_options().with_setting("wal_level", "replica"));
    let mut repl = ReplicationConnection::connect(&socket(&cluster, "postgres"))
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

#[tokio::test]
async fn tls_require_verify_ca_and_verify_full_work_for_both_connections() {
    let certificate = SelfSignedCertificate::for_localhost();
    let cluster =
        start(password_options().with_tls(certificate.cert_file(), certificate.key_file()));
    // The client trusts the self-signed certificate itself.
    let root = certificate.cert_file();
    let root = root.display();
    // The server takes plain TCP too, so every session checks pg_stat_ssl that it is encrypted.
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
        let info = tcp(&cluster, host, "postgres", SUPERUSER_PASSWORD, tls);
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
    let info = tcp(
        &cluster,
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
