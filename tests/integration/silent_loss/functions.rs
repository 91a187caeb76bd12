//! See the module line in `silent_loss.rs`.
//!
//! The source database has `LC_CTYPE 'C'` (the throwaway clusters' locale), so PostgreSQL's
//! `upper`/`lower` map ASCII letters only: a consumer using Rust's Unicode mapping, or one that
//! never read the ctype, would write `STRASSE` or dead-letter `é`. Numeric rows need more than
//! 28 digits and PostgreSQL's division scale; an `integer` product that overflows in PostgreSQL
//! must be dead-lettered, not written as the `bigint` answer. The expected values are computed
//! by PostgreSQL itself, through a view on the source.

use crate::small_migration::{Migration, Pair};

const SOURCE: &str = r#"
CREATE TABLE t (id int PRIMARY KEY, name text, amount numeric, qty int);
INSERT INTO t VALUES
  (1, 'Straße', '0.00000000000000006938893903907228', 3),
  (2, 'ΣΑΣ ǅ ﬁ İ é', '0.125', 7),
  (3, 'plain ASCII', '12345678901234567890.5', -2),
  (4, 'ŉ ǰ ᾳ Ꭰ', 'NaN', 0),
  (5, 'big', '-Infinity', 2000000000),
  (6, NULL, '79228162514264337593543950336.0001', 1);
CREATE VIEW expected AS
  SELECT id, upper(name) AS up, lower(name) AS low, amount * 3 / 7 AS ratio,
         amount * amount AS square, (amount + 1) % 2 AS rest, qty * 2 AS doubled
    FROM t WHERE abs(qty) < 1000000000;
"#;

const TARGET: &str = r#"
CREATE TABLE out (id int PRIMARY KEY, up text, low text, ratio numeric, square numeric,
                  rest numeric, doubled int);
"#;

const PLAN: &str = r#"
name = "hostile"

# The view `expected` over t is the test's own yardstick; this migration is never cut over.
[cutover.dependents]
views = "warn"

[[sources]]
table = "t"
key = ["id"]
[[sources.outputs]]
table = "out"
key = ["id"]
[sources.outputs.columns]
id = "id"
up = "upper(name)"
low = "lower(name)"
ratio = "amount * 3 / 7"
square = "amount * amount"
rest = "(amount + 1) % 2"
doubled = "qty::int * 2"
"#;

const COLUMNS: &[&str] = &["id", "up", "low", "ratio", "square", "rest", "doubled"];

const PAIRS: &[Pair] = &[("expected", COLUMNS, "out", COLUMNS)];

#[tokio::test(flavor = "multi_thread")]
async fn case_mapping_and_numeric_arithmetic_match_postgres_or_dead_letter() {
    let mut m = Migration::prepare(SOURCE, TARGET, PLAN).await;
    let [copied, followed] = m
        .backfill_then_follow(
            PAIRS,
            r#"
            INSERT INTO t VALUES (10, 'ǈ ß ς', '-2.5', 46341), (11, 'x', '1e-16383', 1);
            UPDATE t SET name = 'Ǆ ﬀ', amount = '0.0001' WHERE id = 2;
            INSERT INTO t VALUES (12, 'overflow', '1', 1500000000);
            "#,
        )
        .await;
    assert_eq!((copied, followed), (vec![5], vec![7]));
    let letters = m
        .target
        .query(
            "SELECT (source_key->>'id')::int, reason FROM switchyard.dead_letters ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let letters: Vec<(i32, String)> = letters.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        letters.iter().map(|l| l.0).collect::<Vec<_>>(),
        [5, 12],
        "{letters:?}"
    );
    for (id, reason) in &letters {
        assert!(reason.contains("integer out of range"), "{id}: {reason}");
    }
    m.stop();
}
