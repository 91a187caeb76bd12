//! See the module line in `silent_loss.rs`.
//!
//! The consumer coalesces a group of source transactions per key and writes the last versions
//! in one statement; rows that exchanged a unique value then meet each other's old value. Every
//! exchange below was valid on the source, so the target must end equal to it with nothing in
//! the dead-letter table; only a row the target itself refuses goes there.

use crate::small_migration::{Migration, Pair};

pub(crate) const SOURCE: &str = r#"
CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL UNIQUE);
INSERT INTO users SELECT g, 'u' || g FROM generate_series(10, 40) g;
CREATE TABLE seats (id int PRIMARY KEY, room int NOT NULL, seat int NOT NULL, UNIQUE (room, seat));
INSERT INTO seats SELECT g, 1 + g / 10, g % 10 FROM generate_series(1, 30) g;
CREATE TABLE bookings (id int PRIMARY KEY, during int4range NOT NULL,
                       EXCLUDE USING gist (during WITH &&));
INSERT INTO bookings SELECT g, int4range(10 * g, 10 * g + 5) FROM generate_series(1, 10) g;
CREATE TABLE slots (id int PRIMARY KEY, pos int NOT NULL UNIQUE DEFERRABLE INITIALLY DEFERRED);
INSERT INTO slots SELECT g, g FROM generate_series(1, 10) g;
"#;

/// The same unique rules on the target, some spelled differently (an expression and partial
/// index, a second output with its own unique column).
pub(crate) const TARGET: &str = r#"
CREATE TABLE accounts (id bigint PRIMARY KEY, email text UNIQUE);
CREATE UNIQUE INDEX accounts_lower_email ON accounts (lower(email)) WHERE email <> '';
CREATE TABLE logins (login_id bigint PRIMARY KEY, handle text NOT NULL UNIQUE);
CREATE TABLE places (id int PRIMARY KEY, room int, seat int, UNIQUE (room, seat));
CREATE TABLE reservations (id int PRIMARY KEY, during int4range,
                           EXCLUDE USING gist (during WITH &&));
CREATE TABLE positions (id int PRIMARY KEY, pos int UNIQUE DEFERRABLE INITIALLY DEFERRED);
"#;

pub(crate) const PLAN: &str = r#"
name = "hostile"

[[sources]]
table = "users"
key = ["id"]
[[sources.outputs]]
table = "accounts"
key = ["id"]
[sources.outputs.columns]
id = "id"
email = "email"
[[sources.outputs]]
table = "logins"
key = ["login_id"]
[sources.outputs.columns]
login_id = "id"
handle = "upper(email)"

[[sources]]
table = "seats"
key = ["id"]
[[sources.outputs]]
table = "places"
key = ["id"]
[sources.outputs.columns]
id = "id"
room = "room"
seat = "seat"

[[sources]]
table = "bookings"
key = ["id"]
[[sources.outputs]]
table = "reservations"
key = ["id"]
[sources.outputs.columns]
id = "id"
during = "during"

[[sources]]
table = "slots"
key = ["id"]
[[sources.outputs]]
table = "positions"
key = ["id"]
[sources.outputs.columns]
id = "id"
pos = "pos"
"#;

pub(crate) const PAIRS: &[Pair] = &[
    ("users", &["id", "email"], "accounts", &["id", "email"]),
    (
        "users",
        &["id", "upper(email)"],
        "logins",
        &["login_id", "handle"],
    ),
    (
        "seats",
        &["id", "room", "seat"],
        "places",
        &["id", "room", "seat"],
    ),
    (
        "bookings",
        &["id", "during"],
        "reservations",
        &["id", "during"],
    ),
    ("slots", &["id", "pos"], "positions", &["id", "pos"]),
];

/// Every member of the kind, sent at once so that the consumer takes them as one group.
pub(crate) const EXCHANGES: &str = r#"
-- two rows swap through a temporary value, in one transaction
BEGIN;
UPDATE users SET email = 'tmp' WHERE id = 11;
UPDATE users SET email = 'u11' WHERE id = 12;
UPDATE users SET email = 'u12' WHERE id = 11;
COMMIT;
-- a 3-cycle in one transaction
BEGIN;
UPDATE users SET email = 'tmp' WHERE id = 13;
UPDATE users SET email = 'u13' WHERE id = 14;
UPDATE users SET email = 'u14' WHERE id = 15;
UPDATE users SET email = 'u15' WHERE id = 13;
COMMIT;
-- a swap across three transactions of the same group
UPDATE users SET email = 'tmp' WHERE id = 16;
UPDATE users SET email = 'u16' WHERE id = 17;
UPDATE users SET email = 'u17' WHERE id = 16;
-- a value moved from a deleted row and from an updated row to new rows (their keys sort first)
BEGIN;
DELETE FROM users WHERE id = 18;
INSERT INTO users VALUES (1, 'u18');
UPDATE users SET email = 'moved19' WHERE id = 19;
INSERT INTO users VALUES (2, 'u19');
COMMIT;
-- a key change combined with a swap
BEGIN;
UPDATE users SET id = 200, email = 'tmp' WHERE id = 20;
UPDATE users SET email = 'u20' WHERE id = 21;
UPDATE users SET email = 'u21' WHERE id = 200;
COMMIT;
-- a 4-cycle through a temporary value that another row takes for good afterwards
BEGIN;
UPDATE users SET email = 'spare' WHERE id = 22;
UPDATE users SET email = 'u22' WHERE id = 23;
UPDATE users SET email = 'u23' WHERE id = 24;
UPDATE users SET email = 'u24' WHERE id = 25;
UPDATE users SET email = 'u25' WHERE id = 22;
UPDATE users SET email = 'spare' WHERE id = 26;
COMMIT;
-- a composite unique key: a swap and a 3-cycle across rooms
BEGIN;
UPDATE seats SET seat = 99 WHERE id = 1;
UPDATE seats SET seat = 1 WHERE id = 2;
UPDATE seats SET seat = 2 WHERE id = 1;
COMMIT;
BEGIN;
UPDATE seats SET room = 9 WHERE id = 5;
UPDATE seats SET room = 1, seat = 5 WHERE id = 15;
UPDATE seats SET room = 2, seat = 5 WHERE id = 25;
UPDATE seats SET room = 3, seat = 5 WHERE id = 5;
COMMIT;
-- an exclusion constraint: two bookings exchange their ranges
BEGIN;
UPDATE bookings SET during = int4range(1000, 1001) WHERE id = 1;
UPDATE bookings SET during = int4range(10, 15) WHERE id = 2;
UPDATE bookings SET during = int4range(20, 25) WHERE id = 1;
COMMIT;
-- a deferrable unique constraint: a swap in one statement
UPDATE slots SET pos = 3 - pos WHERE id IN (1, 2);
"#;

#[tokio::test(flavor = "multi_thread")]
async fn rows_exchanging_unique_values_are_applied_with_nothing_dead_lettered() {
    let mut m = Migration::prepare(SOURCE, TARGET, PLAN).await;
    let [copied, followed] = m.backfill_then_follow(PAIRS, EXCHANGES).await;
    assert_eq!(copied, vec![31, 31, 30, 10, 10]);
    assert_eq!(followed, vec![32, 32, 30, 10, 10]);
    assert_eq!(dead_letters(&m).await, Vec::<(String, String)>::new());
    // And again, the other way round, in later groups: the first group's fallback left the
    // apply session able to go on set-based.
    m.write(
        "BEGIN;
         UPDATE users SET email = 'tmp' WHERE id = 12;
         UPDATE users SET email = 'u12' WHERE id = 11;
         UPDATE users SET email = 'u11' WHERE id = 12;
         COMMIT;
         UPDATE users SET email = email || '!' WHERE id BETWEEN 30 AND 40;",
    )
    .await;
    m.assert_pairs(PAIRS).await;
    assert_eq!(dead_letters(&m).await, Vec::<(String, String)>::new());
}

/// A target-only rule (the source has no such check): the swap in the same transaction still
/// applies, and only the refused row is dead-lettered, with its key and reason.
const STRICTER_TARGET: &str = r#"
CREATE TABLE accounts (id bigint PRIMARY KEY, email text UNIQUE CHECK (email NOT LIKE 'bad%'));
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_row_the_target_refuses_is_dead_lettered_alone_next_to_a_swap() {
    let users = "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL UNIQUE);
                 INSERT INTO users SELECT g, 'u' || g FROM generate_series(10, 20) g;";
    let plan =
        crate::small_migration::copy_plan(&[("users", &["id"], "accounts", &["id", "email"])]);
    let mut m = Migration::prepare(users, STRICTER_TARGET, &plan).await;
    let pairs: &[Pair] = &[(
        "(SELECT * FROM users WHERE id <> 13) u",
        &["id", "email"],
        "(SELECT * FROM accounts WHERE id <> 13) a",
        &["id", "email"],
    )];
    m.backfill_then_follow(
        pairs,
        "BEGIN;
         UPDATE users SET email = 'tmp' WHERE id = 11;
         UPDATE users SET email = 'u11' WHERE id = 12;
         UPDATE users SET email = 'bad13' WHERE id = 13;
         UPDATE users SET email = 'u12' WHERE id = 11;
         COMMIT;",
    )
    .await;
    let letters = dead_letters(&m).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0, "13");
    assert!(letters[0].1.contains("23514"), "{letters:?}");
}

/// (source key id, reason) of every dead letter.
async fn dead_letters(m: &Migration) -> Vec<(String, String)> {
    m.target
        .query(
            "SELECT source_key->>'id', reason FROM switchyard.dead_letters ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}
