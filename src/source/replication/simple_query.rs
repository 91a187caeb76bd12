//! The simple query protocol: one SQL or replication command, rows back as text.
//!
//! Replication commands (IDENTIFY_SYSTEM, CREATE_REPLICATION_SLOT, ...) only speak this
//! protocol, and on a `replication=database` connection plain SQL does too. Every value comes
//! back as text (or NULL), which is all the callers need.
//!
//! <https://www.postgresql.org/docs/15/protocol-flow.html#id-1.10.6.7.4>

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{DataRowBody, Message};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite};

use super::connection::ReplicationConnection;
use super::error::ReplicationError;
use super::transport::Transport;

/// Rows of text values, `None` for NULL.
pub type TextRows = Vec<Vec<Option<String>>>;

impl<S> ReplicationConnection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Runs `sql` (one or more statements) and returns the rows of all of them. An error from
    /// the server comes back as [`ReplicationError::Server`] with its SQLSTATE, message, detail
    /// and hint; the connection stays usable.
    pub async fn simple_query(&mut self, sql: &str) -> Result<TextRows, ReplicationError> {
        let transport = &mut self.transport;
        frontend::query(sql, &mut transport.write_buf)
            .map_err(|e| transport.protocol_error(e.to_string()))?;
        transport.flush().await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match transport.read_message().await? {
                Message::DataRow(body) => rows.push(text_row(transport, &body)?),
                Message::RowDescription(_)
                | Message::CommandComplete(_)
                | Message::EmptyQueryResponse
                | Message::ParameterStatus(_) => {}
                Message::ErrorResponse(body) => error = Some(transport.server_error(&body)),
                Message::ReadyForQuery(_) => return error.map_or(Ok(rows), Err),
                Message::CopyInResponse(_) | Message::CopyOutResponse(_) => {
                    return Err(transport.protocol_error(
                        "simple_query cannot run COPY; the connection is now unusable".into(),
                    ))
                }
                _ => return Err(transport.protocol_error("unexpected reply to a query".into())),
            }
        }
    }
}

fn text_row<S>(
    transport: &Transport<S>,
    body: &DataRowBody,
) -> Result<Vec<Option<String>>, ReplicationError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let buffer = body.buffer();
    body.ranges()
        .map(|range| {
            Ok(range.map(|r| {
                // client_encoding is UTF8, so the server sends valid UTF-8.
                String::from_utf8_lossy(&buffer[r]).into_owned()
            }))
        })
        .collect()
        .map_err(|e: std::io::Error| transport.protocol_error(format!("malformed DataRow: {e}")))
}

/// Rows whose shape a command guarantees: one row of at least `columns` values.
pub(super) fn single_row<S>(
    transport: &Transport<S>,
    command: &str,
    mut rows: TextRows,
    columns: usize,
) -> Result<Vec<Option<String>>, ReplicationError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    match rows.pop() {
        Some(row) if rows.is_empty() && row.len() >= columns => Ok(row),
        _ => Err(transport.protocol_error(format!(
            "{command} did not return one row of {columns} columns"
        ))),
    }
}
