//! The WAL consumer: source commits in order, grouped into target transactions.
//!
//! ```text
//!  WalPump ───msg──> Begin: skip if already applied (final_lsn < applied_lsn)
//!                     Relation: map onto the plan (DDL on a read column stops the consumer)
//!                     Insert/Update/Delete: same transforms as the backfill -> ApplyBatch
//!                         (coalesced per key; flushed into the open target transaction
//!                          whenever it holds GROUP_BYTES, so a huge source transaction
//!                          never sits in memory)
//!                     Truncate: stop, the target cannot follow it by key
//!                     Message switchyard.fence: the group ends at this transaction's commit
//!                     Commit: the group ends at a commit boundary when it is old or big
//!                          enough or the stream goes idle
//!  group end: flush, record applied_lsn (and the fence) in the same target transaction,
//!             COMMIT, then report the commit's end LSN to the server (confirmed_flush_lsn)
//! ```
//! A fence (see [`crate::source::fence`]) is applied without waiting for more commits: the
//! cutover holds its write lock until it is, so every millisecond here is write-blocked time.
//! Exactly once: applied_lsn and the changes commit together; a restart streams from
//! applied_lsn and skips any source transaction that committed before it. A shutdown request
//! is honoured between groups, so a clean stop never leaves a group half applied.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use tokio_postgres::{Client, Transaction};

use crate::checkpoint;
use crate::pg::lsn::Lsn;
use crate::pg::pgoutput::RelationBody;
use crate::pg::pgoutput::{LogicalReplicationMessage as Msg, OldTuple, TupleData};
use crate::plan::{OnError, Plan};
use crate::sink::apply::ApplyBatch;
use crate::sink::copy_in::OutputWriter;
use crate::sink::dead_letter::{self, DeadLetter};
use crate::sink::lookup::LookupCache;
use crate::source::current_row;
use crate::source::fence::fence_id;
use crate::source::relations::{fields, Described, Field, RelationError, Relations};
use crate::source::wal_stream::{WalEvent, WalStream, STATUS_INTERVAL};
use crate::transform::batch::describe_origin;
use crate::transform::change::{change_ops, rejected_ops, RowChange};
use crate::transform::memo::Memo;
use crate::transform::row::{encode_value, Env};
use crate::transform::value::Value;

use super::confirm::{unless_cut_over, verify, Confirmed, Verdict};
use super::error::{PipelineError, StopReason};
use super::heartbeat::beat;
use super::identity_watch::{Checked, IdentityWatch};
use super::wal_pump::WalPump;

/// Bytes of coalesced operations held before they are written into the open target
/// transaction: bounds memory for any source transaction size.
pub const GROUP_BYTES: usize = 8 * 1024 * 1024;

/// A group of source transactions is committed at the first commit boundary after this long,
/// which bounds the lag a busy stream adds.
pub const GROUP_AGE: Duration = Duration::from_millis(100);

/// With source commits pending, this long without a message commits the group at once.
pub const IDLE_COMMIT: Duration = Duration::from_millis(5);

/// What the consumer needs, resolved by the command.
pub struct FollowContext {
    pub plan: Arc<Plan>,
    pub lookups: Arc<LookupCache>,
    pub on_error: OnError,
    /// Reads current source rows for unchanged TOASTed values.
    pub source: Client,
    /// Key column types per source, for those reads.
    pub key_types: Vec<Vec<String>>,
    /// Heartbeats, on a connection of their own.
    pub monitor: Client,
    /// The OIDs of the followed source tables, per plan source: their identity, whatever
    /// they are called (see [`crate::source::identity`]).
    pub oids: Vec<u32>,
    /// Each followed table's row in the publication as the backfill saw it
    /// (`pg_publication_rel.oid`): another one means it left the publication and came back.
    pub publication_rels: Vec<Option<u32>>,
    /// The publication the slot decodes through.
    pub publication: String,
}

/// One group of source transactions being applied.
struct Group {
    batch: ApplyBatch,
    /// The changes as COPY lines of their plan columns, for dead letters.
    descriptors: Vec<u8>,
    letters: Vec<(usize, DeadLetter)>,
    changes: i64,
    last_end: Option<Lsn>,
    last_commit_micros: i64,
    first_commit_micros: Option<i64>,
    started: Instant,
    /// The id of a fence met in this group; recorded with it.
    fence: Option<String>,
}

/// What the consumer reads from the source: the WAL stream, and the identity checks that say
/// how far it may be confirmed.
pub struct Upstream {
    pub stream: WalStream,
    pub identity: IdentityWatch,
}

/// Why a consumer ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowEnd {
    /// Asked to stop; `switchyard follow` resumes from the applied LSN.
    Stopped,
    /// The migration was cut over: there is nothing left to follow.
    CutOver,
}

/// Runs until `shutdown` turns true (a clean stop between groups), the migration is cut over,
/// or an error.
pub async fn follow(
    ctx: &FollowContext,
    target: &mut Client,
    writers: &[OutputWriter],
    mut relations: Relations,
    upstream: Upstream,
    mut applied: Lsn,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<FollowEnd, PipelineError> {
    let plan = &ctx.plan;
    // The source feeding each plan-wide output.
    let owner: Vec<usize> = plan.outputs().map(|(source, _)| source).collect();
    let mut memos: Vec<Memo> = plan
        .sources
        .iter()
        .map(|s| Memo::new(s.derived.len()))
        .collect();
    let env = Env {
        maps: &plan.maps,
        lookups: &*ctx.lookups,
    };
    let mut last_heartbeat = Instant::now();
    let mut cut_over = false;
    let mut received = applied;
    let mut confirmed = Confirmed::new(applied);
    let Upstream {
        stream,
        mut identity,
    } = upstream;
    let mut stream = WalPump::start(stream, applied);
    loop {
        // Wait, without a target transaction, for the first change to apply.
        let mut skipping = false;
        let mut first_commit_micros = None;
        let first = loop {
            // A stop is honoured here, between groups: nothing is half applied, and the last
            // group's LSN is already recorded and reported.
            if *shutdown.borrow() || cut_over {
                stream.close().await.map_err(follow_error)?;
                return Ok(if cut_over {
                    FollowEnd::CutOver
                } else {
                    FollowEnd::Stopped
                });
            }
            if last_heartbeat.elapsed() >= STATUS_INTERVAL {
                cut_over = beat(ctx, received, None).await?;
                last_heartbeat = Instant::now();
            }
            if !cut_over {
                cut_over = checked(ctx, &mut identity, &mut confirmed, received, &stream).await?;
            }
            match stream.next(STATUS_INTERVAL).await.map_err(follow_error)? {
                WalEvent::Idle => continue,
                WalEvent::Ended => return Err(stream_ended()),
                // Between transactions, with nothing applied still pending: all done up to it.
                WalEvent::CaughtUp { wal_end } => {
                    received = received.max(wal_end);
                    stream.flushed(confirmed.done(wal_end));
                }
                WalEvent::Message { message, .. } => match message {
                    Msg::Begin(b) => {
                        skipping = b.final_lsn < applied;
                        tracing::debug!(final_lsn = %b.final_lsn, %applied, skipping, "begin");
                        first_commit_micros = Some(b.commit_timestamp.0);
                    }
                    Msg::Relation(r) => cut_over |= relation(ctx, &mut relations, &r).await?,
                    Msg::Commit(c) => {
                        // Nothing of this transaction touched the plan's tables.
                        received = c.end_lsn;
                        if !skipping {
                            stream.flushed(confirmed.done(c.end_lsn));
                        }
                    }
                    m @ (Msg::Insert(_) | Msg::Update(_) | Msg::Delete(_) | Msg::Truncate(_))
                        if !skipping =>
                    {
                        break m
                    }
                    Msg::Message(m)
                        if !skipping && fence_id(&m.prefix, &m.content, &plan.name).is_some() =>
                    {
                        break Msg::Message(m)
                    }
                    _ => {}
                },
            }
        };
        let tx = target
            .transaction()
            .await
            .map_err(|e| PipelineError::target("starting an apply transaction", e))?;
        let mut group = Group {
            batch: ApplyBatch::new(owner.len()),
            descriptors: Vec::new(),
            letters: Vec::new(),
            changes: 0,
            last_end: None,
            last_commit_micros: 0,
            first_commit_micros,
            started: Instant::now(),
            fence: None,
        };
        let mut pending = Some(first);
        loop {
            let message = match pending.take() {
                Some(m) => m,
                None => {
                    if last_heartbeat.elapsed() >= STATUS_INTERVAL {
                        cut_over = beat(ctx, received, group.first_commit_micros).await?;
                        last_heartbeat = Instant::now();
                    }
                    if !cut_over {
                        cut_over =
                            checked(ctx, &mut identity, &mut confirmed, received, &stream).await?;
                    }
                    let idle = if group.last_end.is_some() {
                        IDLE_COMMIT
                    } else {
                        STATUS_INTERVAL
                    };
                    match stream.next(idle).await.map_err(follow_error)? {
                        WalEvent::Idle if group.last_end.is_some() => break,
                        WalEvent::Idle => continue,
                        WalEvent::CaughtUp { wal_end } => {
                            received = received.max(wal_end);
                            // The stream is idle: commit what is pending now.
                            if group.last_end.is_some() {
                                break;
                            }
                            continue;
                        }
                        WalEvent::Ended => return Err(stream_ended()),
                        WalEvent::Message { message, .. } => message,
                    }
                }
            };
            match message {
                Msg::Begin(b) => skipping = b.final_lsn < applied,
                Msg::Relation(r) => {
                    // Cut over meanwhile: what follows is not the migration's to apply.
                    let cut = relation(ctx, &mut relations, &r).await?;
                    if cut {
                        return Ok(FollowEnd::CutOver);
                    }
                }
                m @ (Msg::Insert(_) | Msg::Update(_) | Msg::Delete(_)) if !skipping => {
                    apply_change(ctx, &env, &relations, &mut memos, &mut group, &m).await?;
                }
                Msg::Truncate(t) if !skipping => {
                    for oid in &t.relation_ids {
                        if let Some(r) = relations.get(*oid).map_err(stop)? {
                            return Err(StopReason::Truncate {
                                table: plan.sources[r.source].table.to_string(),
                            }
                            .into());
                        }
                    }
                }
                Msg::Message(m) if !skipping => {
                    if let Some(id) = fence_id(&m.prefix, &m.content, &plan.name) {
                        group.fence = Some(id.to_owned());
                    }
                }
                Msg::Commit(c) => {
                    received = c.end_lsn;
                    if !skipping {
                        group.last_end = Some(c.end_lsn);
                        group.last_commit_micros = c.commit_timestamp.0;
                        if group.fence.is_some()
                            || group.started.elapsed() >= GROUP_AGE
                            || group.batch.bytes() >= GROUP_BYTES
                        {
                            break;
                        }
                    }
                    skipping = false;
                }
                _ => {}
            }
            if group.batch.bytes() >= GROUP_BYTES {
                flush(&mut group, &tx, writers, &owner, ctx).await?;
            }
        }
        let end = group.last_end.expect("a group ends at a commit");
        flush(&mut group, &tx, writers, &owner, ctx).await?;
        checkpoint::record_applied(
            &tx,
            &plan.name,
            end,
            group.last_commit_micros,
            group.changes,
        )
        .await?;
        if let Some(id) = &group.fence {
            checkpoint::record_fence(&tx, &plan.name, id, end).await?;
        }
        tx.commit()
            .await
            .map_err(|e| PipelineError::target("committing an applied group", e))?;
        applied = end;
        tracing::debug!(%applied, changes = group.changes, "group applied");
        stream.flushed(confirmed.done(end));
    }
}

/// Takes the identity checks' news: a proof advances the position reported to the server, a
/// failure stops the consumer (unless the migration was cut over meanwhile: then `true`).
async fn checked(
    ctx: &FollowContext,
    identity: &mut IdentityWatch,
    confirmed: &mut Confirmed,
    received: Lsn,
    stream: &WalPump,
) -> Result<bool, PipelineError> {
    identity.received(received);
    match identity.latest() {
        Some(Checked::Proven(lsn)) => {
            confirmed.prove(lsn);
            stream.flushed(confirmed.position());
            Ok(false)
        }
        Some(Checked::Failed(why)) => unless_cut_over(ctx, why.into()).await.map(|()| true),
        Some(Checked::Nothing) | None => Ok(false),
    }
}

/// Records a Relation message. A followed table under another name than the plan's is
/// checked in the catalog: renamed back since, it is followed on; still renamed, the
/// consumer stops. Returns whether the migration was cut over meanwhile (the cutover's SQL
/// may rename the legacy tables).
async fn relation(
    ctx: &FollowContext,
    relations: &mut Relations,
    body: &RelationBody,
) -> Result<bool, PipelineError> {
    match relations.describe(&ctx.plan, body) {
        Ok(Described::Mapped | Described::Ignored) => Ok(false),
        Ok(Described::Renamed { source, now }) => {
            let plan_name = &ctx.plan.sources[source].table;
            match verify(ctx).await? {
                Some(Verdict::CutOver) => Ok(true),
                Some(Verdict::Intact) => {
                    tracing::info!("source table {plan_name} was called {now} for a while; it has its name back, so switchyard follows on");
                    Ok(false)
                }
                None => Err(StopReason::RenameUnchecked {
                    table: plan_name.to_string(),
                    now,
                }
                .into()),
            }
        }
        Err(e) => unless_cut_over(ctx, e.into()).await.map(|()| true),
    }
}

/// Turns one decoded change into coalesced operations (or a dead letter).
async fn apply_change<'t>(
    ctx: &FollowContext,
    env: &Env<'_>,
    relations: &Relations,
    memos: &mut [Memo],
    group: &mut Group,
    message: &'t Msg,
) -> Result<(), PipelineError> {
    let (relation_id, kind, old, new): (u32, Kind, Option<&'t OldTuple>, Option<&'t TupleData>) =
        match message {
            Msg::Insert(i) => (i.relation_id, Kind::Insert, None, Some(&i.new_tuple)),
            Msg::Update(u) => (
                u.relation_id,
                Kind::Update,
                u.old_tuple.as_ref(),
                Some(&u.new_tuple),
            ),
            Msg::Delete(d) => (d.relation_id, Kind::Delete, Some(&d.old_tuple), None),
            _ => return Ok(()),
        };
    let Some(relation) = relations.get(relation_id).map_err(stop)? else {
        return Ok(());
    };
    let source = &ctx.plan.sources[relation.source];
    let table = source.table.to_string();
    let old_fields = old
        .map(|o| fields(relation, o.tuple(), &table, &source.columns))
        .transpose()
        .map_err(stop)?;
    let key_len = source.key.len();
    // An old-key tuple carries the replica identity's columns; a plan key column NULL there
    // means the identity of the row's table (or partition) does not cover the plan's key, and
    // the change cannot be found by key.
    if let (Some(OldTuple::Key(_)), Some(old)) = (old, &old_fields) {
        if let Some(i) = (0..key_len).find(|&i| old[i] == Field::Value(Value::Null)) {
            return Err(StopReason::KeyNotInOldTuple {
                table,
                column: source.columns[i].clone(),
            }
            .into());
        }
    }
    let mut new_fields = new
        .map(|n| fields(relation, n, &table, &source.columns))
        .transpose()
        .map_err(stop)?;
    if let Some(new) = &mut new_fields {
        // A key column stored out of line and left unchanged is marked unchanged in the new
        // tuple; PostgreSQL then sends it in the old-key tuple (`ExtractReplicaIdentity` in
        // heapam.c logs the identity whenever it has external values).
        for (i, field) in new[..key_len].iter_mut().enumerate() {
            if *field == Field::Unchanged {
                match old_fields.as_ref().map(|o| &o[i]) {
                    Some(Field::Value(v)) if *v != Value::Null => *field = Field::Value(v.clone()),
                    _ => {
                        return Err(StopReason::KeyNotSent {
                            table,
                            column: source.columns[i].clone(),
                        }
                        .into())
                    }
                }
            }
        }
    }
    // Values the stream does not carry (unchanged TOASTed values, generated columns): from
    // the old tuple under REPLICA IDENTITY FULL where it has them, else the row as it is now
    // on the source. A key tuple (sent when the key changed or is stored out of line) carries
    // the key columns alone, every other column as NULL.
    let full_old = matches!(old, Some(OldTuple::Full(_)));
    let mut fetched: Option<current_row::CurrentRow> = None;
    if let Some(new) = &new_fields {
        let missing = new.iter().enumerate().any(|(i, f)| {
            *f == Field::Unchanged
                && !(full_old
                    && matches!(old_fields.as_ref().map(|o| &o[i]), Some(Field::Value(_))))
        });
        if missing {
            let key: Vec<Option<String>> = new[..key_len].iter().map(field_text).collect();
            fetched =
                current_row::fetch(&ctx.source, source, &ctx.key_types[relation.source], &key)
                    .await
                    .map_err(|e| {
                        PipelineError::source(
                            "reading a row for a value the stream does not carry",
                            e,
                        )
                    })?;
            if fetched.is_none() {
                return Ok(()); // deleted since (or its key changed); that change follows
            }
        }
    }
    // Values borrow from the WAL message (or the fetched row): no copy per column.
    let fetched_row = fetched.as_ref();
    let values = |fs: &[Field<'t>], fallback: Option<&[Field<'t>]>| -> Vec<Value<'_>> {
        fs.iter()
            .enumerate()
            .map(|(i, f)| match f {
                Field::Value(v) => v.clone(),
                Field::Unchanged => match (fallback.map(|o| &o[i]), fetched_row) {
                    (Some(Field::Value(v)), _) => v.clone(),
                    (_, Some(row)) => row.get(i).map_or(Value::Null, Value::text),
                    _ => Value::Null,
                },
            })
            .collect()
    };
    let change = match (kind, old_fields.as_deref(), new_fields.as_deref()) {
        (Kind::Insert, _, Some(new)) => RowChange::Insert {
            new: values(new, None),
        },
        (Kind::Update, old, Some(new)) => RowChange::Update {
            old_key: old.map(|o| values(o, None)),
            new: values(new, old.filter(|_| full_old)),
        },
        (Kind::Delete, Some(old), _) => RowChange::Delete {
            old_key: values(old, None),
        },
        _ => return Ok(()),
    };
    let shown = match &change {
        RowChange::Insert { new } | RowChange::Update { new, .. } => new,
        RowChange::Delete { old_key } => old_key,
    };
    let origin = group.descriptors.len() as u32;
    for (i, v) in shown.iter().enumerate() {
        if i > 0 {
            group.descriptors.push(b'\t');
        }
        encode_value(v, &mut group.descriptors);
    }
    group.descriptors.push(b'\n');
    let mut ops = Vec::new();
    group.changes += 1;
    // Lookups may block on a miss (an insert into the lookup table): not on a runtime thread.
    let memo = &mut memos[relation.source];
    let transformed =
        tokio::task::block_in_place(|| change_ops(source, env, memo, &change, &mut ops));
    match transformed {
        Ok(()) => group.batch.add(source, ops, origin),
        Err(e) => {
            let rejected = describe_origin(source, &group.descriptors, origin, e.message);
            if ctx.on_error == OnError::Stop {
                return Err(PipelineError::BadRow {
                    table,
                    key: rejected.key,
                    reason: rejected.reason,
                });
            }
            // The rejected version has no output rows: its key leaves the outputs, in order
            // with the group's other operations. A key that cannot be computed either leaves
            // only the dead letter.
            let mut deletes = Vec::new();
            if rejected_ops(source, env, &change, &mut deletes).is_ok() {
                group.batch.add(source, deletes, origin);
            }
            group.letters.push((
                relation.source,
                DeadLetter {
                    rejected,
                    output_table: None,
                },
            ));
        }
    }
    Ok(())
}

/// Which pgoutput change a tuple pair comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Insert,
    Update,
    Delete,
}

fn field_text(f: &Field<'_>) -> Option<String> {
    match f {
        Field::Value(Value::Null) | Field::Unchanged => None,
        Field::Value(v) => Some(v.to_string()),
    }
}

async fn flush(
    group: &mut Group,
    tx: &Transaction<'_>,
    writers: &[OutputWriter],
    owner: &[usize],
    ctx: &FollowContext,
) -> Result<(), PipelineError> {
    for (number, origin, reason) in group.batch.flush(tx, writers).await? {
        let source = &ctx.plan.sources[owner[number]];
        let rejected = describe_origin(source, &group.descriptors, origin, reason);
        if ctx.on_error == OnError::Stop {
            return Err(PipelineError::BadRow {
                table: source.table.to_string(),
                key: rejected.key,
                reason: rejected.reason,
            });
        }
        group.letters.push((
            owner[number],
            DeadLetter {
                rejected,
                output_table: Some(writers[number].table().to_owned()),
            },
        ));
    }
    let mut by_source: FxHashMap<usize, Vec<DeadLetter>> = FxHashMap::default();
    for (source, letter) in group.letters.drain(..) {
        by_source.entry(source).or_default().push(letter);
    }
    for (source, letters) in by_source {
        dead_letter::write(
            tx,
            &ctx.plan.name,
            "follow",
            &ctx.plan.sources[source].table.to_string(),
            &letters,
        )
        .await
        .map_err(|e| PipelineError::target("writing dead letters", e))?;
    }
    group.descriptors.clear();
    Ok(())
}

fn stop(e: RelationError) -> PipelineError {
    StopReason::Relation(e).into()
}

fn follow_error(e: crate::source::wal_stream::WalStreamError) -> PipelineError {
    PipelineError::Stream(e)
}

fn stream_ended() -> PipelineError {
    PipelineError::StreamEnded
}
