//! The verdict on what the catalog says of each followed table.

use std::path::Path;

use super::judge::judge;
use super::read::{Publication, Seen};
use super::*;

const PLAN: &str = r#"
name = "p"
[[sources]]
table = "items"
key = ["id"]
[[sources.outputs]]
table = "out"
key = ["id"]
[sources.outputs.columns]
id = "id"
qty = "qty"
"#;

const OID: u32 = 16_400;
const PUBLICATION: &str = "switchyard_p";

fn plan() -> Plan {
    Plan::parse(Path::new("p.toml"), PLAN).unwrap()
}

const MEMBERSHIP: u32 = 20_001;

fn intact() -> Seen {
    Seen {
        name: Some(("public".to_owned(), "items".to_owned())),
        quoted: Some("public.items".to_owned()),
        by_name: Some(OID),
        published: true,
        membership: Some(MEMBERSHIP),
        ..Seen::default()
    }
}

fn verdict(seen: Seen, publication: Option<Publication>) -> Result<(), IdentityError> {
    judge(
        &plan(),
        &[OID],
        PUBLICATION,
        &[seen],
        publication,
        &[Some(MEMBERSHIP)],
    )
}

const ALL: Option<Publication> = Some(Publication {
    kinds: [true; 4],
    via_root: true,
});

#[test]
fn an_intact_table_passes() {
    assert_eq!(verdict(intact(), ALL), Ok(()));
}

#[test]
fn renamed_or_moved_names_the_new_name_and_the_way_back() {
    for (schema, name) in [("public", "items_old"), ("archive", "items")] {
        let seen = Seen {
            name: Some((schema.to_owned(), name.to_owned())),
            quoted: Some(format!("{schema}.{name}")),
            by_name: None,
            ..intact()
        };
        let err = verdict(seen, ALL).unwrap_err();
        assert!(
            matches!(err, IdentityError::Renamed { ref now, .. } if *now == format!("{schema}.{name}"))
        );
        assert!(err.to_string().contains("rename it back"), "{err}");
    }
}

#[test]
fn dropped_and_replaced_tables_are_told_apart() {
    let dropped = Seen {
        name: None,
        quoted: None,
        by_name: None,
        published: false,
        ..intact()
    };
    assert_eq!(
        verdict(dropped, ALL),
        Err(IdentityError::Dropped {
            table: "public.items".to_owned(),
            oid: OID
        })
    );
    // Dropped, and a new table took the name (or: renamed away, another renamed in).
    for name in [None, Some(("public".to_owned(), "items_old".to_owned()))] {
        let replaced = Seen {
            name,
            by_name: Some(OID + 1),
            ..intact()
        };
        assert!(matches!(
            verdict(replaced, ALL),
            Err(IdentityError::Replaced { followed: OID, now, .. }) if now == OID + 1
        ));
    }
}

#[test]
fn unlogged_tables_stop() {
    let seen = Seen {
        unlogged: true,
        ..intact()
    };
    assert!(matches!(
        verdict(seen, ALL),
        Err(IdentityError::Unlogged { .. })
    ));
}

#[test]
fn every_way_a_publication_can_leave_changes_out_stops() {
    let cases = [
        (intact(), None, "is gone"),
        (
            intact(),
            Some(Publication {
                kinds: [true, true, false, true],
                via_root: true,
            }),
            "every kind of change",
        ),
        (
            Seen {
                partitioned: true,
                ..intact()
            },
            Some(Publication {
                kinds: [true; 4],
                via_root: false,
            }),
            "publish_via_partition_root = true",
        ),
        (
            Seen {
                published: false,
                ..intact()
            },
            ALL,
            "no longer holds",
        ),
        (
            Seen {
                row_filter: Some("(qty > 0)".to_owned()),
                ..intact()
            },
            ALL,
            "filters the rows",
        ),
        (
            Seen {
                column_list: Some(vec!["id".to_owned()]),
                ..intact()
            },
            ALL,
            "column qty",
        ),
    ];
    for (seen, publishes, says) in cases {
        let err = verdict(seen, publishes).unwrap_err();
        assert!(
            matches!(err, IdentityError::NotPublished { .. }) && err.to_string().contains(says),
            "{err}"
        );
    }
    let every_column = Seen {
        column_list: Some(vec!["qty".to_owned(), "id".to_owned()]),
        ..intact()
    };
    assert_eq!(verdict(every_column, ALL), Ok(()));
}

#[test]
fn inheritance_children_and_identities_off_the_key_stop() {
    let children = Seen {
        children: Some("public.items_2023".to_owned()),
        ..intact()
    };
    let err = verdict(children, ALL).unwrap_err();
    assert!(matches!(err, IdentityError::Children { .. }), "{err}");
    assert!(err.to_string().contains("NO INHERIT"), "{err}");
    let uncovered = Seen {
        uncovered: Some("public.items_a".to_owned()),
        ..intact()
    };
    let err = verdict(uncovered, ALL).unwrap_err();
    assert!(
        matches!(err, IdentityError::KeyNotCovered { ref key, .. } if key == "id"),
        "{err}"
    );
}

#[test]
fn a_table_dropped_from_the_publication_and_added_back_stops() {
    let seen = Seen {
        membership: Some(MEMBERSHIP + 1),
        ..intact()
    };
    let err = verdict(seen, ALL).unwrap_err();
    assert!(matches!(err, IdentityError::Readded { .. }), "{err}");
    assert!(err.to_string().contains("added it back"), "{err}");
}
