//! The pieces every kind's catalog read shares: when the catalog is read, how a relation is
//! named in SQL, the shape of a found dependent, and what the legacy table is after the swap.
//! Below the reads ([`super::read`], [`super::functions`], [`super::publications`]), which
//! import it and nothing of each other's.

use crate::plan::Disposition;

use super::{Dependent, Kind, Layout};

/// Before the swap, the legacy names are the tables; after it, the catalog is re-read in the
/// swap's transaction to find what is still bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum When {
    BeforeSwap,
    AfterSwap,
}

/// `schema.name` of the relation with OID `expr`, quoted where needed.
pub(super) fn rel(expr: &str) -> String {
    format!(
        "(SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = {expr})"
    )
}

pub(super) fn dependent(kind: Kind, oid: u32, object: String, legacy: String) -> Dependent {
    Dependent {
        kind,
        object,
        legacy_table: legacy,
        swap: String::new(),
        fix: String::new(),
        disposition: Disposition::Refuse,
        access: None,
        oid,
        definition: None,
    }
}

/// After the swap, a legacy table is renamed (same database) or read-only (two servers).
pub(super) fn frozen(layout: Layout) -> &'static str {
    match layout {
        Layout::SameDatabase => "the renamed legacy table (`*_legacy`), which takes no more writes",
        Layout::TwoServers => "the legacy table, read-only and frozen after the cutover",
    }
}
