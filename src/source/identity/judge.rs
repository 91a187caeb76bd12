//! The verdict on what [`super::read`] saw; pure, so every case is unit-tested.

use crate::plan::Plan;

use super::read::{Publication, Seen};
use super::IdentityError;

/// `baseline` holds each table's `pg_publication_rel` row as the backfill saw it (empty: none
/// known); another row now means the table left the publication and came back.
pub(super) fn judge(
    plan: &Plan,
    oids: &[u32],
    publication_name: &str,
    seen: &[Seen],
    publication: Option<Publication>,
    baseline: &[Option<u32>],
) -> Result<(), IdentityError> {
    for (i, ((source, &oid), seen)) in plan.sources.iter().zip(oids).zip(seen).enumerate() {
        let table = source.table.to_string();
        let Some((schema, name)) = &seen.name else {
            return Err(match seen.by_name {
                Some(now) => IdentityError::Replaced {
                    table,
                    followed: oid,
                    now,
                },
                None => IdentityError::Dropped { table, oid },
            });
        };
        if *schema != source.table.schema || *name != source.table.name {
            return Err(match seen.by_name {
                Some(now) if now != oid => IdentityError::Replaced {
                    table,
                    followed: oid,
                    now,
                },
                _ => IdentityError::Renamed {
                    table,
                    oid,
                    now: format!("{schema}.{name}"),
                    now_quoted: seen.quoted.clone().unwrap_or_default(),
                },
            });
        }
        if seen.unlogged {
            return Err(IdentityError::Unlogged { table });
        }
        if let Some(children) = &seen.children {
            return Err(IdentityError::Children {
                table,
                children: children.clone(),
            });
        }
        if let Some(uncovered) = &seen.uncovered {
            return Err(IdentityError::KeyNotCovered {
                table,
                key: source.key.join(", "),
                uncovered: uncovered.clone(),
            });
        }
        let not_published = |what: String, fix: String| IdentityError::NotPublished {
            table: table.clone(),
            publication: publication_name.to_owned(),
            what,
            fix,
        };
        let quoted = source.table.quoted();
        let Some(publication) = publication else {
            return Err(not_published(
                "is gone".to_owned(),
                "recreate it".to_owned(),
            ));
        };
        if publication.kinds != [true; 4] {
            return Err(not_published(
                "no longer publishes every kind of change (insert, update, delete, truncate)"
                    .to_owned(),
                "`ALTER PUBLICATION ... SET (publish = 'insert, update, delete, truncate')`"
                    .to_owned(),
            ));
        }
        if seen.partitioned && !publication.via_root {
            return Err(not_published(
                format!("no longer publishes the changes of partitioned {table} through its root (publish_via_partition_root is off)"),
                "`ALTER PUBLICATION ... SET (publish_via_partition_root = true)`".to_owned(),
            ));
        }
        if !seen.published {
            return Err(not_published(
                format!("no longer holds {table}"),
                format!("`ALTER PUBLICATION ... ADD TABLE {quoted}`"),
            ));
        }
        if let Some(filter) = &seen.row_filter {
            return Err(not_published(
                format!("filters the rows of {table} (WHERE {filter})"),
                format!("`ALTER PUBLICATION ... SET TABLE {quoted}` without a WHERE clause"),
            ));
        }
        if let Some(list) = &seen.column_list {
            if let Some(missing) = source.columns.iter().find(|c| !list.contains(c)) {
                return Err(not_published(
                    format!("leaves column {missing} of {table} out of its column list"),
                    format!("`ALTER PUBLICATION ... SET TABLE {quoted}` without a column list"),
                ));
            }
        }
        if let Some(Some(was)) = baseline.get(i) {
            if seen.membership != Some(*was) {
                return Err(IdentityError::Readded {
                    table,
                    publication: publication_name.to_owned(),
                });
            }
        }
    }
    Ok(())
}
