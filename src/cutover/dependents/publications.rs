//! Publications other than the migration's own that carry a legacy table, found through
//! `pg_publication_tables` (explicit tables, `FOR ALL TABLES` and `FOR TABLES IN SCHEMA`
//! alike), and the logical replication slots of the subscribers connected now
//! ([`crate::source::slot::all`]): the catalog does not say which publication
//! a slot's subscriber asked for. Catalogs:
//! <https://www.postgresql.org/docs/15/view-pg-publication-tables.html>.

use tokio_postgres::GenericClient;

use crate::pg::ident::{quote_ident, quote_literal, TableName};
use crate::plan::Plan;
use crate::source::slot;

use super::parts::dependent;
use super::{Dependent, Kind};

pub(super) async fn publications(
    client: &impl GenericClient,
    plan: &Plan,
    oids: &[u32],
    name: &dyn Fn(u32) -> TableName,
    out: &mut Vec<Dependent>,
) -> Result<(), tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT p.pubname::text, c.oid,
                    CASE WHEN p.puballtables THEN 'FOR ALL TABLES'
                         WHEN EXISTS (SELECT FROM pg_publication_rel pr
                                       WHERE pr.prpubid = p.oid AND pr.prrelid = c.oid) THEN 'the table itself'
                         ELSE format('FOR TABLES IN SCHEMA %I', pt.schemaname) END, p.oid
               FROM pg_publication p
               JOIN pg_publication_tables pt ON pt.pubname = p.pubname
               JOIN pg_namespace n ON n.nspname = pt.schemaname
               JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
              WHERE c.oid = ANY($1) AND p.pubname <> $2
              ORDER BY 1, 2",
            &[&oids, &plan.publication_name()],
        )
        .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let ours = plan.slot_name();
    let subscribers: Vec<String> = slot::all(client)
        .await?
        .into_iter()
        .filter(|s| s.logical && s.in_current_database && s.active && s.name != ours)
        .map(|s| {
            format!(
                "slot {} (pid {}, application {})",
                slot_ident(&s.name),
                s.active_pid.map_or(String::new(), |p| p.to_string()),
                quote_literal(s.walsender_application.as_deref().unwrap_or_default())
            )
        })
        .collect();
    let listening = if subscribers.is_empty() {
        "no subscriber is connected now".to_owned()
    } else {
        format!(
            "subscribers connected now, one of which may read it: {}",
            subscribers.join(", ")
        )
    };
    for r in rows {
        let (publication, how): (String, String) = (r.get(0), r.get(2));
        let table_name = name(r.get(1));
        let legacy = table_name.to_string();
        let mut d = dependent(
            Kind::Publication,
            r.get(3),
            format!(
                "publication {} (publishes {legacy} via {how})",
                quote_ident(&publication)
            ),
            legacy.clone(),
        );
        d.swap = format!(
            "after the swap it carries the legacy table, which takes no more writes: its subscribers silently stop receiving the application's changes ({listening})"
        );
        d.fix = format!(
            "in the plan's cutover SQL publish what replaces it (`ALTER PUBLICATION {} DROP TABLE {}; ALTER PUBLICATION {} ADD TABLE ...`; a FOR ALL TABLES or FOR TABLES IN SCHEMA publication must be re-created as a list) and update the subscribers, with `publications = \"cutover_sql\"`; or `publications = \"warn\"`",
            quote_ident(&publication),
            table_name.quoted(),
            quote_ident(&publication),
        );
        out.push(d);
    }
    Ok(())
}

/// A slot's name as `format('%I')` prints it. Slot names hold only `a-z`, `0-9` and `_`
/// (`ReplicationSlotValidateName`), so only a leading digit needs the quotes (a name that is
/// also an SQL keyword is left bare).
fn slot_ident(name: &str) -> std::borrow::Cow<'_, str> {
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        quote_ident(name).into()
    } else {
        name.into()
    }
}
