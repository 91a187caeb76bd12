//! A source column the WAL never carries: PostgreSQL 15 publishes no generated column. The
//! backfill copies the stored value; the consumer reads it from the source row by key, so both
//! paths agree. A column the publication's column list leaves out stops the consumer instead
//! (see `identity`).

use crate::small_migration::{copy_plan, Migration, Pair};

const SOURCE: &str = "
CREATE TABLE people (
    id int PRIMARY KEY,
    nom text,
    nom_up text GENERATED ALWAYS AS (upper(nom)) STORED,
    total numeric GENERATED ALWAYS AS (length(nom) * 1.5) STORED
);
INSERT INTO people (id, nom) SELECT g, 'name ' || g FROM generate_series(1, 10) g;";

const TARGET: &str =
    "CREATE TABLE people_out (id int PRIMARY KEY, nom text, nom_up text, total numeric);";

const PAIRS: &[Pair] = &[(
    "public.people",
    &["id", "nom", "nom_up", "total"],
    "public.people_out",
    &["id", "nom", "nom_up", "total"],
)];

#[tokio::test(flavor = "multi_thread")]
async fn generated_columns_agree_between_the_backfill_and_the_stream() {
    let plan = copy_plan(&[(
        "people",
        &["id"],
        "people_out",
        &["id", "nom", "nom_up", "total"],
    )]);
    let mut m = Migration::prepare(SOURCE, TARGET, &plan).await;
    let (ok, report) = m.check();
    assert!(ok, "{report}");
    assert!(
        report.contains("nom_up") && report.contains("generated"),
        "check says how generated columns are followed:\n{report}"
    );
    let [copied, followed] = m
        .backfill_then_follow(
            PAIRS,
            "INSERT INTO people (id, nom) VALUES (11, 'eleven'), (12, NULL);
             UPDATE people SET nom = 'renamed ' || id WHERE id <= 3;
             DELETE FROM people WHERE id = 4;
             BEGIN;
             INSERT INTO people (id, nom) VALUES (13, 'thirteen');
             UPDATE people SET nom = 'again' WHERE id = 13;
             COMMIT;
             BEGIN;
             INSERT INTO people (id, nom) VALUES (14, 'gone soon');
             DELETE FROM people WHERE id = 14;
             COMMIT;",
        )
        .await;
    assert_eq!((copied, followed), (vec![10], vec![12]));
}
