use std::time::Duration;

use switchyard::demo::cluster::{Cluster, ClusterOptions};
use switchyard::pg::conninfo::ConnInfo;
use switchyard::pg::lsn::Lsn;
use switchyard::pg::pgoutput::{Decoder, LogicalReplicationMessage, OldTuple, TupleColumn};
use switchyard::pg::replication_message::ReplicationMessage;
use switchyard::source::replication::ReplicationConnection;

/// How long the stream may take to deliver everything before the test fails.
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Rows in the big transaction: several times `logical_decoding_work_mem` (64kB here), so
/// protocol 2 streams it in chunks.
const BIG_TRANSACTION_ROWS: usize = 3000;
/// The last thing the test writes; the stream is complete once it arrives.
const DONE_PREFIX: &str = "switchyard-test-done";

const SETUP: &str = "
    CREATE TABLE accounts (id int PRIMARY KEY, email text, bio text);
    ALTER TABLE accounts ALTER COLUMN bio SET STORAGE EXTERNAL;
    CREATE TABLE events (id int PRIMARY KEY, payload text);
    CREATE PUBLICATION pub FOR TABLE accounts, events;
";

/// Everything the decoder has seen, by kind.
#[derive(Default, Debug)]
struct Seen {
    inserts: usize,
    streamed_inserts: usize,
    /// Inserts that carried the TOASTed value in full.
    full_toast_inserts: usize,
    /// `'u'` columns in updates.
    unchanged_toast: usize,
    key_tuples: usize,
    truncates: usize,
    stream_starts: usize,
    stream_commits: usize,
    subtransaction_aborts: usize,
    fences: usize,
    commits: usize,
}

#[tokio::test(flavor = "multi_thread")]
async fn decodes_every_message_a_live_protocol_2_stream_sends() {
    let cluster =
        Cluster::start(ClusterOptions::default().with_setting("logical_decoding_work_mem", "64kB"))
            .expect("start a throwaway cluster");
    let client = cluster.connect("postgres").await.unwrap();
    client.batch_execute(SETUP).await.unwrap();
    let row = client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot('s', 'pgoutput')",
            &[],
        )
        .await
        .unwrap();
    let start: Lsn = row.get::<_, String>(0).parse().unwrap();

    let bio = "toast!".repeat(400);
    for statement in [
        format!("INSERT INTO accounts VALUES (1, 'ada@example.com', '{bio}'), (2, 'bob', 'b')"),
        "UPDATE accounts SET email = 'ada@example.org' WHERE id = 1".into(),
        "UPDATE accounts SET id = 20 WHERE id = 2".into(),
        "DELETE FROM accounts WHERE id = 20".into(),
        "SELECT pg_logical_emit_message(true, 'switchyard', 'fence')".into(),
        "TRUNCATE events".into(),
        format!(
            "BEGIN;
             INSERT INTO events SELECT i, 'row ' || i FROM generate_series(1, {BIG_TRANSACTION_ROWS}) i;
             SAVEPOINT s;
             INSERT INTO events SELECT -i, 'gone' FROM generate_series(1, {BIG_TRANSACTION_ROWS}) i;
             ROLLBACK TO SAVEPOINT s;
             COMMIT"
        ),
        format!("SELECT pg_logical_emit_message(false, '{DONE_PREFIX}', '')"),
    ] {
        client.batch_execute(&statement).await.unwrap();
    }

    let info = ConnInfo::parse(&cluster.url("postgres")).unwrap();
    let repl = ReplicationConnection::connect(&info).await.unwrap();
    let options = [
        ("proto_version", "2"),
        ("publication_names", "pub"),
        ("messages", "true"),
        ("streaming", "true"),
    ];
    let mut stream = repl
        .start_logical_replication("s", start, &options)
        .await
        .unwrap();
    let mut decoder = Decoder::new();
    let mut seen = Seen::default();
    tokio::time::timeout(STREAM_TIMEOUT, async {
        loop {
            let ReplicationMessage::XLogData(x) = stream.next_message().await.unwrap().unwrap()
            else {
                continue;
            };
            let message = decoder
                .decode(x.data.clone())
                .unwrap_or_else(|e| panic!("{e}: {:?}", x.data));
            let in_chunk = decoder.open_stream().is_some()
                && !matches!(message, LogicalReplicationMessage::StreamStart(_));
            assert_eq!(message.streamed_xid().is_some(), in_chunk, "{message:?}");
            match message {
                LogicalReplicationMessage::Insert(insert) => {
                    seen.inserts += 1;
                    seen.streamed_inserts += usize::from(insert.xid.is_some());
                    let toasted = TupleColumn::Text(bio.clone().into());
                    seen.full_toast_inserts +=
                        usize::from(insert.new_tuple.columns.get(2) == Some(&toasted));
                }
                LogicalReplicationMessage::Update(update) => {
                    let columns = &update.new_tuple.columns;
                    seen.unchanged_toast += columns
                        .iter()
                        .filter(|c| **c == TupleColumn::UnchangedToast)
                        .count();
                    seen.key_tuples +=
                        usize::from(matches!(update.old_tuple, Some(OldTuple::Key(_))));
                }
                LogicalReplicationMessage::Delete(delete) => {
                    seen.key_tuples += usize::from(matches!(delete.old_tuple, OldTuple::Key(_)));
                }
                LogicalReplicationMessage::Truncate(_) => seen.truncates += 1,
                LogicalReplicationMessage::Commit(_) => seen.commits += 1,
                LogicalReplicationMessage::StreamStart(_) => seen.stream_starts += 1,
                LogicalReplicationMessage::StreamCommit(_) => seen.stream_commits += 1,
                LogicalReplicationMessage::StreamAbort(abort) => {
                    seen.subtransaction_aborts += usize::from(abort.subxid != abort.xid);
                }
                LogicalReplicationMessage::Message(message) if message.prefix == DONE_PREFIX => {
                    break;
                }
                LogicalReplicationMessage::Message(message) => {
                    seen.fences += usize::from(&message.content[..] == b"fence");
                }
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the stream did not deliver everything in time: {seen:?}"));
    stream.finish().await.unwrap().close().await.unwrap();

    assert_eq!(decoder.open_stream(), None);
    // 2 + 3000 committed; the rolled-back subtransaction's rows were streamed too.
    assert!(seen.inserts >= 2 + BIG_TRANSACTION_ROWS, "{seen:?}");
    assert!(seen.streamed_inserts >= BIG_TRANSACTION_ROWS, "{seen:?}");
    assert_eq!(seen.full_toast_inserts, 1, "{seen:?}");
    assert_eq!(seen.unchanged_toast, 1, "{seen:?}");
    assert_eq!(seen.key_tuples, 2, "{seen:?}");
    assert_eq!(seen.truncates, 1, "{seen:?}");
    assert_eq!(seen.fences, 1, "{seen:?}");
    assert!(seen.stream_starts > 1, "{seen:?}");
    assert_eq!(seen.stream_commits, 1, "{seen:?}");
    assert_eq!(seen.subtransaction_aborts, 1, "{seen:?}");
    // Insert, two updates, delete, fence, truncate: one Commit each.
    assert_eq!(seen.commits, 6, "{seen:?}");
}
