//! What the source catalog says now of each followed table and of the publication: one
//! round trip for the tables, one per table for its replica identity, one for the publication.

use tokio_postgres::Client;

use crate::plan::Plan;

/// What the catalog says of one followed table now.
#[derive(Debug, Clone, Default)]
pub(super) struct Seen {
    /// `schema.table`, `None` when the OID is gone.
    pub name: Option<(String, String)>,
    /// `schema.table` quoted, for the fix in a message.
    pub quoted: Option<String>,
    /// A partitioned table (published through its root).
    pub partitioned: bool,
    /// It, or one of its partitions, is UNLOGGED.
    pub unlogged: bool,
    /// The OID that the plan's name resolves to now.
    pub by_name: Option<u32>,
    /// In the publication (under this name), and with which restrictions.
    pub published: bool,
    pub row_filter: Option<String>,
    pub column_list: Option<Vec<String>>,
    /// Its `pg_publication_rel` row: a new one means it was removed and added back.
    pub membership: Option<u32>,
    /// Inheritance children (not partitions), which the publication includes and the plan
    /// does not follow.
    pub children: Option<String>,
    /// The table or the partitions whose replica identity does not cover the plan's key.
    pub uncovered: Option<String>,
}

/// The publication's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Publication {
    /// `pubinsert, pubupdate, pubdelete, pubtruncate`.
    pub kinds: [bool; 4],
    /// `pubviaroot`: partitioned tables' changes arrive as their root's.
    pub via_root: bool,
}

pub(super) async fn read(
    client: &Client,
    plan: &Plan,
    oids: &[u32],
    publication: &str,
) -> Result<(Vec<Seen>, Option<Publication>), tokio_postgres::Error> {
    let modern = client
        .query_one(
            "SELECT current_setting('server_version_num')::int >= 150000",
            &[],
        )
        .await?
        .get::<_, bool>(0);
    // PostgreSQL 15 added row filters and column lists (`pg_publication_tables.rowfilter`,
    // `attnames`).
    let restrictions = if modern {
        "t.rowfilter, t.attnames::text[]"
    } else {
        "NULL::text, NULL::text[]"
    };
    let names: Vec<String> = plan.sources.iter().map(|s| s.table.quoted()).collect();
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text,
                EXISTS (SELECT 1 FROM pg_partition_tree(c.oid) p
                          JOIN pg_class pc ON pc.oid = p.relid WHERE pc.relpersistence = 'u'),
                to_regclass(u.name)::oid,
                t.tablename IS NOT NULL, {restrictions},
                CASE WHEN c.oid IS NOT NULL THEN format('%I.%I', n.nspname, c.relname) END,
                coalesce(c.relkind = 'p', false),
                (SELECT pr.oid FROM pg_publication_rel pr
                   JOIN pg_publication p ON p.oid = pr.prpubid
                  WHERE p.pubname = $3 AND pr.prrelid = u.oid)
           FROM unnest($1::oid[], $2::text[]) WITH ORDINALITY AS u(oid, name, i)
           LEFT JOIN pg_class c ON c.oid = u.oid
           LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_publication_tables t
                  ON t.pubname = $3 AND t.schemaname = n.nspname AND t.tablename = c.relname
          ORDER BY u.i"
    );
    let rows = client.query(&sql, &[&oids, &names, &publication]).await?;
    let mut seen = Vec::with_capacity(rows.len());
    for ((r, &oid), source) in rows.iter().zip(oids).zip(&plan.sources) {
        let schema: Option<String> = r.get(0);
        let name: Option<String> = r.get(1);
        seen.push(Seen {
            name: schema.zip(name),
            unlogged: r.get::<_, Option<bool>>(2).unwrap_or(false),
            by_name: r.get(3),
            published: r.get(4),
            row_filter: r.get(5),
            column_list: r.get(6),
            quoted: r.get(7),
            partitioned: r.get(8),
            membership: r.get(9),
            children: children(client, oid).await?,
            uncovered: uncovered(client, oid, &source.key, false).await?,
        });
    }
    let publication = client
        .query_opt(
            "SELECT pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot
               FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await?
        .map(|r| Publication {
            kinds: [r.get(0), r.get(1), r.get(2), r.get(3)],
            via_root: r.get(4),
        });
    Ok((seen, publication))
}

/// The table's inheritance children (not partitions), `schema.table` quoted and joined.
pub(super) async fn children(
    client: &Client,
    oid: u32,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT string_agg(format('%I.%I', n.nspname, c.relname), ', ' ORDER BY c.relname)
               FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE i.inhparent = $1::oid AND NOT c.relispartition",
            &[&oid],
        )
        .await?;
    Ok(row.get(0))
}

/// The table, or those of its partitions, whose replica identity does not hold every plan key
/// column: their old-key tuples would not carry the key (`RelationGetIdentityKeyBitmap` in
/// relcache.c: the primary key under `DEFAULT`, the chosen index under `USING INDEX`, none
/// under `NOTHING`; `FULL` logs every column).
///
/// With `with_identity_only`, a leaf with no replica identity at all is left out (`check`
/// reports those on their own).
pub(super) async fn uncovered(
    client: &Client,
    oid: u32,
    key: &[String],
    with_identity_only: bool,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT string_agg(format('%I.%I', n.nspname, l.relname), ', ' ORDER BY l.relname)
               FROM pg_partition_tree($1::oid) t
               JOIN pg_class l ON l.oid = t.relid
               JOIN pg_namespace n ON n.oid = l.relnamespace
              WHERE l.relkind = 'r' AND l.relreplident <> 'f'
                AND NOT ($2::text[] <@ coalesce(
                    (SELECT array_agg(a.attname::text)
                       FROM pg_index x
                       JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = ANY (x.indkey)
                      WHERE x.indrelid = l.oid
                        AND ((l.relreplident = 'd' AND x.indisprimary)
                          OR (l.relreplident = 'i' AND x.indisreplident))),
                    '{}'))
                AND (NOT $3 OR EXISTS (
                    SELECT FROM pg_index y WHERE y.indrelid = l.oid
                       AND ((l.relreplident = 'd' AND y.indisprimary)
                         OR (l.relreplident = 'i' AND y.indisreplident))))",
            &[&oid, &key, &with_identity_only],
        )
        .await?;
    Ok(row.get(0))
}
