//! The COPY primitive the writers share: data sent in bounded pieces, and which errors are
//! about a row (dead-letter it) rather than the run (stop).

use std::pin::Pin;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::{CopyInSink, Transaction};

/// Bytes of COPY data per CopyData message. The connection copies each message into its write
/// buffer, so sending a batch whole would hold a second copy of it there (a 100 MB row: 100 MB
/// more); pieces keep that at one piece. COPY FROM does not need pieces to end at a row, and a
/// 1 MiB batch still goes out in four messages.
const COPY_PIECE_BYTES: usize = 256 * 1024;

/// `COPY ... FROM STDIN` of `data`.
pub(super) async fn copy(
    tx: &Transaction<'_>,
    statement: &str,
    data: &[u8],
) -> Result<u64, tokio_postgres::Error> {
    copy_parts(tx, statement, &[data]).await
}

/// `COPY ... FROM STDIN` of `parts`, one after the other: a binary COPY's header, tuples and
/// trailer, without first copying them into one buffer.
pub(super) async fn copy_parts(
    tx: &Transaction<'_>,
    statement: &str,
    parts: &[&[u8]],
) -> Result<u64, tokio_postgres::Error> {
    let sink = tx.copy_in::<_, Bytes>(statement).await?;
    futures_util::pin_mut!(sink);
    for part in parts {
        send_in_pieces(sink.as_mut(), part).await?;
    }
    sink.finish().await
}

/// Sends `data` as CopyData messages of at most [`COPY_PIECE_BYTES`].
async fn send_in_pieces(
    mut sink: Pin<&mut CopyInSink<Bytes>>,
    data: &[u8],
) -> Result<(), tokio_postgres::Error> {
    for piece in data.chunks(COPY_PIECE_BYTES) {
        sink.send(Bytes::copy_from_slice(piece)).await?;
    }
    Ok(())
}

/// Data exceptions (22xxx) and integrity violations (23xxx) are about rows; anything else is
/// about the run (a missing table, a lost connection) and must stop it.
pub(super) fn is_row_error(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        let code = c.code();
        code.starts_with("22")
            || code.starts_with("23")
            || *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE
    })
}

/// What a refused row says in a dead letter: SQLSTATE, message and detail.
pub(super) fn row_error_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {} ({detail})", db.code().code(), db.message()),
            None => format!("{}: {}", db.code().code(), db.message()),
        },
        None => e.to_string(),
    }
}
