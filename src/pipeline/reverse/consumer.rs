//! The reverse consumer's loop: the new tables' slot, decoded, gathered into batches, applied
//! to the legacy tables (see `apply`), confirmed only once the legacy side committed them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::Client;

use crate::checkpoint::{self, reverse as progress};
use crate::pg::connect::connect;
use crate::pg::conninfo::ConnInfo;
use crate::pg::pgoutput::{LogicalReplicationMessage, OldTuple};
use crate::plan::Plan;
use crate::source::fence;
use crate::source::wal_stream::{WalEvent, WalStream};

use super::apply::Applier;
use super::batch::{text_values, Batch};
use super::error::ReverseError;
use super::legacy::LegacyTable;
use super::output::{OutputTable, Reference};
use super::relation::{follow, followed, key_of, not_full, touch, touch_key, Followed};

/// Without a message for this long, a batch holding committed changes is applied.
const IDLE_APPLY: Duration = Duration::from_millis(20);
/// A batch holding this many rows is applied (inside a large source transaction too, without
/// recording a position: see [`Applier::apply`]), so memory stays bounded.
const MAX_BATCH_ROWS: usize = 10_000;
/// A batch holding committed changes is applied at least this often, however busy the stream.
const MAX_BATCH_AGE: Duration = Duration::from_millis(200);
/// How often the consumer records that it is alive and looks whether the stream was ended.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Why the reverse consumer returned without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReverseEnd {
    /// `switchyard rollback` ended the stream: the legacy tables are live again.
    Ended,
    /// Asked to stop (Ctrl-C, SIGTERM): everything received was applied and recorded.
    Stopped,
}

/// The fence prefix's migration part for the reverse stream (fences of the forward stream
/// name the migration alone).
pub fn fence_name(migration: &str) -> String {
    format!("{migration} reverse")
}

/// Runs the reverse stream of `plan` until it is ended, `stop` turns true, or an error.
pub async fn run(
    plan: Arc<Plan>,
    target: &ConnInfo,
    legacy: &ConnInfo,
    stop: watch::Receiver<bool>,
    say: &(dyn Fn(String) + Sync),
) -> Result<ReverseEnd, ReverseError> {
    let name = "switchyard follow --reverse";
    let legacy_client = connect(legacy, name).await?;
    let Some(state) = progress::load(&legacy_client, &plan.name).await? else {
        return Err(ReverseError::NoStream(plan.name.clone()));
    };
    if state.ended {
        return Ok(ReverseEnd::Ended);
    }
    prepare_legacy_session(&legacy_client, say).await?;
    let target_client = connect(target, name).await?;
    target_client
        .batch_execute(
            "SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3",
        )
        .await
        .map_err(ReverseError::target("setting the session's output formats"))?;
    let mut applier = resolve(&plan, target_client, legacy_client).await?;
    let mut stream =
        WalStream::start(target, &state.slot_name, &state.publication, state.applied).await?;
    let names = |outputs: &[OutputTable]| {
        outputs
            .iter()
            .map(|o| o.table.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (read, referenced) = applier.outputs.split_at(applier.rules_read);
    say(format!(
        "reverse stream of migration {} following from {} (slot {} on the new tables): every change to {} goes back into the legacy tables{}",
        plan.name,
        state.applied,
        state.slot_name,
        names(read),
        if referenced.is_empty() {
            String::new()
        } else {
            format!(
                "; a change to {} goes back through the rows referencing it",
                names(referenced)
            )
        }
    ));
    let fence_name = fence_name(&plan.name);
    let mut relations: HashMap<u32, Followed> = HashMap::new();
    let mut batch = Batch::new(applier.outputs.len());
    // The transaction being received is before what was applied (the boundary at the swap,
    // or a position a restart finds recorded): the forward consumer's, or applied already.
    let mut skipping = false;
    let mut received = state.applied;
    // The first heartbeat goes at once: `rollback` refuses while none is recent.
    let mut last_heartbeat = Instant::now()
        .checked_sub(HEARTBEAT)
        .unwrap_or_else(Instant::now);
    let mut last_flush = Instant::now();
    loop {
        // Looked at between messages (one arrives, or `Idle`, at least every IDLE_APPLY): the
        // stream is never cut inside a read. A sender gone counts as a stop.
        let stopping = *stop.borrow() || stop.has_changed().is_err();
        if stopping && batch.is_empty() {
            let _ = stream.close().await;
            return Ok(ReverseEnd::Stopped);
        }
        if last_heartbeat.elapsed() >= HEARTBEAT && batch.is_empty() {
            last_heartbeat = Instant::now();
            if progress::heartbeat(&applier.legacy, &plan.name, received).await? {
                let _ = stream.close().await;
                return Ok(ReverseEnd::Ended);
            }
        }
        match stream.next(IDLE_APPLY).await? {
            WalEvent::Idle | WalEvent::CaughtUp { .. } if !batch.is_empty() => {
                flush(&mut applier, &mut batch, &mut stream).await?;
                last_flush = Instant::now();
            }
            WalEvent::CaughtUp { wal_end } => {
                // Nothing held: everything up to here is applied (or was never ours).
                stream.flushed(wal_end).await?;
            }
            WalEvent::Idle => {}
            WalEvent::Ended => {
                return Err(ReverseError::Unmappable(format!(
                    "the server ended the reverse stream (slot {}): start `switchyard follow --reverse` again",
                    state.slot_name
                )))
            }
            WalEvent::Message { message, .. } => match message {
                LogicalReplicationMessage::Begin(b) => {
                    skipping = b.final_lsn < state.applied;
                }
                LogicalReplicationMessage::Commit(c) => {
                    received = c.end_lsn;
                    if skipping {
                        if batch.is_empty() {
                            stream.flushed(c.end_lsn).await?;
                        }
                        continue;
                    }
                    batch.commit_end = Some(c.end_lsn);
                    if batch.fence.is_some() || batch.rows() >= MAX_BATCH_ROWS {
                        flush(&mut applier, &mut batch, &mut stream).await?;
                    }
                }
                LogicalReplicationMessage::Relation(r) => {
                    let followed = follow(&applier, &r).await?;
                    relations.insert(r.relation_id, followed);
                }
                LogicalReplicationMessage::Insert(i) if !skipping => {
                    let f = followed(&relations, i.relation_id)?;
                    touch(&mut batch, f, &text_values(&i.new_tuple, &f.name)?);
                }
                LogicalReplicationMessage::Update(u) if !skipping => {
                    let f = followed(&relations, u.relation_id)?;
                    if f.reference_only {
                        // Its old key (when the key changed) and its new key.
                        if let Some(old) = &u.old_tuple {
                            touch_key(&mut batch, f, key_of(f, old.tuple()));
                        }
                        touch_key(&mut batch, f, key_of(f, &u.new_tuple));
                        batch.changes += 1;
                        continue;
                    }
                    let Some(OldTuple::Full(old)) = &u.old_tuple else {
                        return Err(not_full(&f.name));
                    };
                    let old = text_values(old, &f.name)?;
                    touch(&mut batch, f, &old);
                    batch.old_rows[f.output].push((f.columns.clone(), old));
                    // The new row's key only: an unchanged TOASTed value elsewhere is fine.
                    touch_key(&mut batch, f, key_of(f, &u.new_tuple));
                }
                LogicalReplicationMessage::Delete(d) if !skipping => {
                    let f = followed(&relations, d.relation_id)?;
                    if f.reference_only {
                        touch_key(&mut batch, f, key_of(f, d.old_tuple.tuple()));
                        batch.changes += 1;
                        continue;
                    }
                    let OldTuple::Full(old) = &d.old_tuple else {
                        return Err(not_full(&f.name));
                    };
                    let old = text_values(old, &f.name)?;
                    touch(&mut batch, f, &old);
                    batch.old_rows[f.output].push((f.columns.clone(), old));
                }
                LogicalReplicationMessage::Truncate(t) if !skipping => {
                    let names: Vec<String> = t
                        .relation_ids
                        .iter()
                        .map(|id| relations.get(id).map_or_else(|| id.to_string(), |f| f.name.clone()))
                        .collect();
                    return Err(ReverseError::Unmappable(format!(
                        "TRUNCATE of {} on the new tables: the reverse stream cannot tell which legacy rows that removes, so it stops before it (nothing past it is confirmed). Delete the legacy rows it stands for yourself, then advance the slot past it (SELECT pg_replication_slot_advance('{}', '<lsn after the TRUNCATE>')) and start `switchyard follow --reverse` again; or roll back without the reverse stream",
                        names.join(", "),
                        state.slot_name
                    )));
                }
                LogicalReplicationMessage::Message(m) if !skipping => {
                    if let Some(id) = fence::fence_id(&m.prefix, &m.content, &fence_name) {
                        batch.fence = Some((id.to_owned(), m.lsn));
                    }
                }
                _ => {}
            },
        }
        if batch.commit_end.is_some() && last_flush.elapsed() >= MAX_BATCH_AGE {
            // A steady load never leaves the stream idle: apply on time too.
            flush(&mut applier, &mut batch, &mut stream).await?;
            last_flush = Instant::now();
        }
        if batch.rows() >= MAX_BATCH_ROWS {
            // Inside a large transaction: apply what is held, record nothing yet.
            applier.apply(&batch, None).await?;
            let (commit_end, fence, changes) =
                (batch.commit_end, batch.fence.take(), batch.changes);
            batch.clear();
            batch.commit_end = commit_end;
            batch.fence = fence;
            batch.changes = changes;
        }
    }
}

/// Applies the batch, records its last commit, and confirms it to the server.
async fn flush(
    applier: &mut Applier,
    batch: &mut Batch,
    stream: &mut WalStream,
) -> Result<(), ReverseError> {
    let Some(through) = batch.commit_end else {
        return Ok(());
    };
    applier.apply(batch, Some(through)).await?;
    stream.flushed(through).await?;
    batch.clear();
    Ok(())
}

/// The legacy session: replica role, so the legacy tables' foreign keys and triggers do not
/// fire on rows that arrive in an order of their own (as logical replication's apply does),
/// the bypass of the read-only guard the cutover put on them with two servers, and ISO dates.
async fn prepare_legacy_session(
    legacy: &Client,
    say: &(dyn Fn(String) + Sync),
) -> Result<(), ReverseError> {
    legacy
        .batch_execute(&format!(
            "SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3; SET {} = on",
            super::BYPASS_SETTING
        ))
        .await
        .map_err(ReverseError::legacy("setting up the session"))?;
    if let Err(e) = legacy
        .batch_execute("SET session_replication_role = replica")
        .await
    {
        say(format!(
            "warning: session_replication_role = replica refused on the legacy side ({}): the legacy tables' triggers and foreign keys fire on the reverse stream's writes",
            crate::error::Chain::new(&e)
        ));
    }
    Ok(())
}

/// The rules' output tables, their legacy tables and the two sessions, resolved once.
async fn resolve(
    plan: &Arc<Plan>,
    target: Client,
    legacy: Client,
) -> Result<Applier, ReverseError> {
    let Some(reverse) = plan.reverse.as_ref() else {
        return Err(ReverseError::Unmappable(format!(
            "plan {} has no [reverse] rules: the reverse stream has nothing to apply changes with",
            plan.name
        )));
    };
    let mut froms: Vec<&crate::pg::ident::TableName> = Vec::new();
    let mut output_of_rule = Vec::new();
    for rule in &reverse.tables {
        let at = match froms.iter().position(|t| **t == rule.from) {
            Some(at) => at,
            None => {
                froms.push(&rule.from);
                froms.len() - 1
            }
        };
        output_of_rule.push(at);
    }
    let read: Vec<crate::pg::ident::TableName> = froms.into_iter().cloned().collect();
    let referenced = super::output::referenced_tables(&target, &read).await?;
    let mut outputs = Vec::new();
    for table in read.iter().chain(&referenced) {
        outputs.push(OutputTable::read(&target, table).await?);
    }
    let references = Reference::read(&target, &outputs).await?;
    let recorded = checkpoint::source_relations(&target, &plan.name).await?;
    let mut legacy_tables = HashMap::new();
    for rule in &reverse.tables {
        if legacy_tables.contains_key(&rule.source) {
            continue;
        }
        let name = plan.sources[rule.source].table.to_string();
        let Some(r) = recorded.iter().find(|r| r.table == name) else {
            return Err(ReverseError::Unmappable(format!(
                "the backfill recorded no OID for legacy table {name}: the reverse stream cannot tell which table it is now"
            )));
        };
        let key: Vec<String> = rule.key.iter().map(|(c, _)| c.clone()).collect();
        legacy_tables.insert(
            rule.source,
            LegacyTable::resolve(&legacy, r.oid, &key).await?,
        );
    }
    Ok(Applier {
        rules_read: read.len(),
        migration: plan.name.clone(),
        plan: plan.clone(),
        outputs,
        output_of_rule,
        references,
        legacy_tables,
        target,
        legacy,
    })
}
