//! What of a cutover is in place on the source, read from the catalog rather than from the
//! recorded status: a cutover whose second commit failed leaves the swap on the source while
//! the state says it never happened (or the reverse). `rollback` says what it finds and undoes
//! exactly that.
//!
//! A legacy name is swapped when it no longer resolves to the table the backfill copied, whose
//! OID is kept in the target's `switchyard.source_relations` (the OID survives renames).

use std::fmt;

use tokio_postgres::{Client, GenericClient};

use crate::checkpoint;
use crate::pg::ident::TableName;
use crate::plan::Plan;

use super::proof::{name_of, resolve, Resolved};
use super::read_only::{self, Guard};

/// One legacy name and what it resolves to now.
#[derive(Debug, Clone)]
pub struct LegacyName {
    pub table: TableName,
    /// The legacy table's OID as the backfill recorded it.
    pub recorded: Option<u32>,
    /// What the name resolves to now.
    pub now: Option<Resolved>,
    /// The legacy table's current name, when it is not `table` any more.
    pub legacy_now: Option<String>,
}

impl LegacyName {
    /// Whether the name no longer resolves to the legacy table.
    pub fn swapped(&self) -> bool {
        self.recorded
            .is_some_and(|oid| self.now.as_ref().map(|r| r.oid) != Some(oid))
    }
}

impl fmt::Display for LegacyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(oid) = self.recorded else {
            return write!(
                f,
                "{}: the backfill recorded no OID for it, so it cannot be told whether it is the legacy table",
                self.table
            );
        };
        if !self.swapped() {
            return write!(f, "{} is the legacy table (OID {oid})", self.table);
        }
        match &self.now {
            Some(r) => write!(f, "{} is {} (OID {})", self.table, r.kind(), r.oid)?,
            None => write!(f, "{} names nothing", self.table)?,
        }
        match &self.legacy_now {
            Some(name) => write!(f, "; the legacy table (OID {oid}) is now {name}"),
            None => write!(f, "; the legacy table (OID {oid}) no longer exists"),
        }
    }
}

/// What the inspection found.
#[derive(Debug, Clone)]
pub struct InPlace {
    pub names: Vec<LegacyName>,
    /// Read-only triggers on the legacy tables (wherever they are now) and their partitions.
    pub guards: Vec<Guard>,
}

impl InPlace {
    /// Reads the source's catalog through `source` (inside a transaction, it sees that
    /// transaction's own changes); the recorded OIDs come from the target's state.
    pub async fn inspect(
        source: &impl GenericClient,
        state: &Client,
        plan: &Plan,
    ) -> anyhow::Result<InPlace> {
        let recorded = checkpoint::source_relations(state, &plan.name).await?;
        let mut names = Vec::new();
        for s in &plan.sources {
            let oid = recorded
                .iter()
                .find(|r| r.table == s.table.to_string())
                .map(|r| r.oid);
            let now = resolve(source, &s.table).await?;
            let mut name = LegacyName {
                table: s.table.clone(),
                recorded: oid,
                now,
                legacy_now: None,
            };
            if let (true, Some(oid)) = (name.swapped(), oid) {
                name.legacy_now = name_of(source, oid).await?;
            }
            names.push(name);
        }
        let oids: Vec<u32> = names.iter().filter_map(|n| n.recorded).collect();
        let guards = read_only::installed(source, &oids).await?;
        Ok(InPlace { names, guards })
    }

    /// Whether some legacy name no longer resolves to its legacy table.
    pub fn swapped(&self) -> bool {
        self.names.iter().any(LegacyName::swapped)
    }

    /// Whether anything of a cutover is in place.
    pub fn anything(&self) -> bool {
        self.swapped() || !self.guards.is_empty()
    }

    /// One line per legacy name, then the read-only triggers.
    pub fn describe(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.names.iter().map(|n| n.to_string()).collect();
        if self.guards.is_empty() {
            lines.push("no read-only trigger is on the legacy tables".to_owned());
        }
        for g in &self.guards {
            let state = if g.always() {
                "enabled always"
            } else {
                "not enabled always"
            };
            lines.push(format!("read-only trigger on {} ({state})", g.table));
        }
        lines
    }
}
