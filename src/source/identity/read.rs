//! What the source catalog says now of each followed table and of the publication, in one
//! round trip.

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
    let names: Vec<String> = plan.sources.iter().map(|s| s.table.quoted()).collect();
    let keys: Vec<String> = plan
        .sources
        .iter()
        .map(|s| serde_json::to_string(&s.key).expect("a list of names"))
        .collect();
    // One round trip: the consumer asks four times a second, on a source that may be busy.
    // Row filters and column lists (PostgreSQL 15) are read through `to_jsonb`, which is
    // NULL-safe on servers whose `pg_publication_tables` has no such columns.
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text,
                EXISTS (SELECT 1 FROM pg_partition_tree(c.oid) p
                          JOIN pg_class pc ON pc.oid = p.relid WHERE pc.relpersistence = 'u'),
                to_regclass(u.name)::oid,
                t.tablename IS NOT NULL,
                to_jsonb(t) ->> 'rowfilter',
                CASE WHEN jsonb_typeof(to_jsonb(t) -> 'attnames') = 'array'
                     THEN ARRAY(SELECT jsonb_array_elements_text(to_jsonb(t) -> 'attnames')) END,
                CASE WHEN c.oid IS NOT NULL THEN format('%I.%I', n.nspname, c.relname) END,
                coalesce(c.relkind = 'p', false),
                (SELECT pr.oid FROM pg_publication_rel pr
                   JOIN pg_publication p ON p.oid = pr.prpubid
                  WHERE p.pubname = $3 AND pr.prrelid = u.oid),
                {children},
                {uncovered},
                pb.pubinsert, pb.pubupdate, pb.pubdelete, pb.pubtruncate, pb.pubviaroot
           FROM unnest($1::oid[], $2::text[], $4::text[]) WITH ORDINALITY AS u(oid, name, key, i)
           LEFT JOIN pg_class c ON c.oid = u.oid
           LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_publication_tables t
                  ON t.pubname = $3 AND t.schemaname = n.nspname AND t.tablename = c.relname
           LEFT JOIN pg_publication pb ON pb.pubname = $3
          ORDER BY u.i",
        children = children_sql("u.oid"),
        uncovered = uncovered_sql(
            "u.oid",
            "ARRAY(SELECT jsonb_array_elements_text(u.key::jsonb))",
            "false"
        ),
    );
    let rows = client
        .query(&sql, &[&oids, &names, &publication, &keys])
        .await?;
    let publication = rows.first().and_then(|r| {
        let kinds: [Option<bool>; 5] = [r.get(12), r.get(13), r.get(14), r.get(15), r.get(16)];
        match kinds {
            [Some(i), Some(u), Some(d), Some(t), Some(via_root)] => Some(Publication {
                kinds: [i, u, d, t],
                via_root,
            }),
            _ => None,
        }
    });
    let seen = rows
        .iter()
        .map(|r| {
            let schema: Option<String> = r.get(0);
            let name: Option<String> = r.get(1);
            Seen {
                name: schema.zip(name),
                unlogged: r.get::<_, Option<bool>>(2).unwrap_or(false),
                by_name: r.get(3),
                published: r.get(4),
                row_filter: r.get(5),
                column_list: r.get(6),
                quoted: r.get(7),
                partitioned: r.get(8),
                membership: r.get(9),
                children: r.get(10),
                uncovered: r.get(11),
            }
        })
        .collect();
    Ok((seen, publication))
}

/// The inheritance children (not partitions) of the table whose OID `oid` (an SQL
/// expression) is, `schema.table` quoted and joined, or NULL.
fn children_sql(oid: &str) -> String {
    format!(
        "(SELECT string_agg(format('%I.%I', cn.nspname, ch.relname), ', ' ORDER BY ch.relname)
            FROM pg_inherits ih
            JOIN pg_class ch ON ch.oid = ih.inhrelid
            JOIN pg_namespace cn ON cn.oid = ch.relnamespace
           WHERE ih.inhparent = {oid} AND NOT ch.relispartition)"
    )
}

/// The table or partitions (of OID `oid`) whose replica identity does not hold every column of
/// `key` (a `text[]` expression), or NULL: their old-key tuples would not carry the key
/// (`RelationGetIdentityKeyBitmap` in relcache.c: the primary key under `DEFAULT`, the chosen
/// index under `USING INDEX`, none under `NOTHING`; `FULL` logs every column). With
/// `with_identity_only` true, a leaf with no replica identity at all is left out (`check`
/// reports those on their own).
fn uncovered_sql(oid: &str, key: &str, with_identity_only: &str) -> String {
    format!(
        "(SELECT string_agg(format('%I.%I', ln.nspname, l.relname), ', ' ORDER BY l.relname)
            FROM pg_partition_tree({oid}) pt
            JOIN pg_class l ON l.oid = pt.relid
            JOIN pg_namespace ln ON ln.oid = l.relnamespace
           WHERE l.relkind = 'r' AND l.relreplident <> 'f'
             AND NOT ({key} <@ coalesce(
                 (SELECT array_agg(a.attname::text)
                    FROM pg_index x
                    JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = ANY (x.indkey)
                   WHERE x.indrelid = l.oid
                     AND ((l.relreplident = 'd' AND x.indisprimary)
                       OR (l.relreplident = 'i' AND x.indisreplident))),
                 '{{}}'))
             AND (NOT {with_identity_only} OR EXISTS (
                 SELECT FROM pg_index y WHERE y.indrelid = l.oid
                    AND ((l.relreplident = 'd' AND y.indisprimary)
                      OR (l.relreplident = 'i' AND y.indisreplident)))))"
    )
}

/// For `check`: the table's inheritance children, and its table or partitions with a replica
/// identity that misses `key` (those with none at all left out).
pub(super) async fn shape(
    client: &Client,
    oid: u32,
    key: &[String],
) -> Result<(Option<String>, Option<String>), tokio_postgres::Error> {
    let sql = format!(
        "SELECT {}, {}",
        children_sql("$1::oid"),
        uncovered_sql("$1::oid", "$2::text[]", "true")
    );
    let row = client.query_one(&sql, &[&oid, &key]).await?;
    Ok((row.get(0), row.get(1)))
}
