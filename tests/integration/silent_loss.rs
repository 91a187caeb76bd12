//! Shapes real databases have, where a consumer that cannot see something by the table's name
//! might go on and confirm WAL past changes it never applied (issue 10). One module per kind;
//! each proves the target equals the transformed source, or that switchyard stopped with a
//! clear message before confirming past the change.

/// The source table changes identity: renamed, moved to another schema, replaced, dropped.
mod identity;

/// Keys that arrive only in the old-key tuple (an unchanged, externally stored key).
mod old_key;

/// A source column the WAL never carries (stored generated columns, publication column lists).
mod unpublished_column;

/// Target triggers: the backfill and the consumer treat rows the same way.
mod triggers;

/// Rows that exchange a unique value inside one source transaction.
pub(crate) mod unique_swap;

/// Sequences an output table's defaults use, owned by a column or not, set by the cutover.
mod sequences;

/// Functions compute PostgreSQL's answer (Unicode case mapping, numeric precision) or refuse.
mod functions;

/// Large objects: `check` and `verify` say what is and is not copied.
mod large_objects;

/// An update whose new version the transforms reject: its key leaves the outputs, and the
/// backfill, the consumer and `verify` agree on it.
mod rejected_version;

/// Shapes an adversarial pass found: inheritance children, partition identities off the key,
/// publication settings and toggles, renames while stopped, `on_error = "stop"`.
mod attempts;
