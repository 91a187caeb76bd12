//! Relation messages mapped by identity: renames, replacements, lost columns and keys.

use std::path::Path;

use super::*;
use crate::pg::pgoutput::Column;

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
up = "nom_up"
"#;

const ITEMS: u32 = 16_400;

fn plan() -> Plan {
    Plan::parse(Path::new("p.toml"), PLAN).unwrap()
}

fn catalog(generated: bool) -> Vec<CatalogRelation> {
    let column = |type_id, generated| CatalogColumn {
        type_id,
        generated,
        sql_type: String::new(),
    };
    vec![CatalogRelation {
        oid: ITEMS,
        columns: [
            ("id".to_owned(), column(23, false)),
            ("qty".to_owned(), column(23, false)),
            ("nom_up".to_owned(), column(25, generated)),
        ]
        .into_iter()
        .collect(),
    }]
}

fn body(oid: u32, schema: &str, name: &str, columns: &[(&str, u32, bool)]) -> RelationBody {
    RelationBody {
        xid: None,
        relation_id: oid,
        namespace: schema.to_owned(),
        name: name.to_owned(),
        replica_identity: ReplicaIdentity::Default,
        columns: columns
            .iter()
            .map(|&(name, type_id, key)| Column {
                flags: u8::from(key),
                name: name.to_owned(),
                type_id,
                type_modifier: -1,
            })
            .collect(),
    }
}

const ALL: [(&str, u32, bool); 3] = [("id", 23, true), ("qty", 23, false), ("nom_up", 25, false)];

#[test]
fn a_followed_table_is_known_by_oid_whatever_its_name() {
    let mut r = Relations::new(catalog(false));
    assert_eq!(
        r.describe(&plan(), &body(ITEMS, "public", "items", &ALL)),
        Ok(Described::Mapped)
    );
    assert_eq!(
        r.describe(&plan(), &body(ITEMS, "public", "items_old", &ALL)),
        Ok(Described::Renamed {
            source: 0,
            now: "public.items_old".to_owned()
        })
    );
    assert_eq!(
        r.describe(&plan(), &body(ITEMS, "archive", "items", &ALL)),
        Ok(Described::Renamed {
            source: 0,
            now: "archive.items".to_owned()
        })
    );
    // Still mapped: its changes are applied or the consumer stops, never skipped.
    assert!(r.get(ITEMS).unwrap().is_some());
}

#[test]
fn another_table_under_the_plans_name_is_a_replacement() {
    let mut r = Relations::new(catalog(false));
    let err = r
        .describe(&plan(), &body(ITEMS + 7, "public", "items", &ALL))
        .unwrap_err();
    assert!(
        matches!(err, RelationError::Replaced { followed: ITEMS, now, .. } if now == ITEMS + 7)
    );
}

#[test]
fn unrelated_tables_are_ignored_and_unknown_ones_are_errors() {
    let mut r = Relations::new(catalog(false));
    assert_eq!(
        r.describe(&plan(), &body(99, "public", "other", &ALL)),
        Ok(Described::Ignored)
    );
    assert_eq!(r.get(99).unwrap().map(|m| m.source), None);
    assert_eq!(r.get(100).unwrap_err(), RelationError::Unknown(100));
}

#[test]
fn a_renamed_or_dropped_column_stops() {
    let mut r = Relations::new(catalog(false));
    let renamed = [
        ("id", 23, true),
        ("quantity", 23, false),
        ("nom_up", 25, false),
    ];
    let err = r
        .describe(&plan(), &body(ITEMS, "public", "items", &renamed))
        .unwrap_err();
    assert!(matches!(err, RelationError::Changed { ref column, .. } if column == "qty"));
    let retyped = [("id", 23, true), ("qty", 20, false), ("nom_up", 25, false)];
    let err = r
        .describe(&plan(), &body(ITEMS, "public", "items", &retyped))
        .unwrap_err();
    assert!(err.to_string().contains("changed type"));
}

#[test]
fn a_generated_column_is_read_from_the_source_not_an_error() {
    let mut r = Relations::new(catalog(true));
    let published = [("id", 23, true), ("qty", 23, false)];
    assert_eq!(
        r.describe(&plan(), &body(ITEMS, "public", "items", &published)),
        Ok(Described::Mapped)
    );
    let mapped = r.get(ITEMS).unwrap().unwrap();
    assert_eq!(mapped.positions, vec![Some(0), Some(1), None]);
    let tuple = TupleData {
        columns: vec![TupleColumn::Text(b"1".to_vec().into()), TupleColumn::Null],
    };
    let names: Vec<String> = ["id", "qty", "nom_up"].map(String::from).to_vec();
    let got = fields(mapped, &tuple, "public.items", &names).unwrap();
    assert_eq!(got[2], Field::Unchanged);
    assert_eq!(got[1], Field::Value(Value::Null));
}

#[test]
fn a_key_column_outside_the_replica_identity_stops() {
    let mut r = Relations::new(catalog(false));
    let other_index = [("id", 23, false), ("qty", 23, true), ("nom_up", 25, false)];
    let err = r
        .describe(&plan(), &body(ITEMS, "public", "items", &other_index))
        .unwrap_err();
    assert!(matches!(err, RelationError::KeyNotInIdentity { ref column, .. } if column == "id"));
    let mut full = body(ITEMS, "public", "items", &other_index);
    full.replica_identity = ReplicaIdentity::Full;
    assert_eq!(r.describe(&plan(), &full), Ok(Described::Mapped));
}

#[test]
fn a_partitioned_root_without_key_flags_is_not_judged_by_them() {
    let mut r = Relations::new(catalog(false));
    let root = [("id", 23, false), ("qty", 23, false), ("nom_up", 25, false)];
    assert_eq!(
        r.describe(&plan(), &body(ITEMS, "public", "items", &root)),
        Ok(Described::Mapped)
    );
}
