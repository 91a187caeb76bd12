//! The seed plan's reverse rules, evaluated by PostgreSQL on the target over the backfilled new
//! tables, give back the legacy tables as the round-trip oracle
//! (`transforms/legacy_to_projects/expected_reverse.sql`, plain SQL over the legacy tables
//! only) says, row for row: what a reverse stream would write is right before one exists.

use crate::small_migration::text_rows;
use crate::support::{backfill, cluster, repo, seed_plan, seeded_source};
use switchyard::plan::Plan;

#[tokio::test(flavor = "multi_thread")]
async fn the_reverse_rules_over_the_new_tables_equal_the_round_trip_oracle() {
    let (source_cluster, target_cluster) = (cluster(), cluster());
    let source = seeded_source(&source_cluster, "legacy", 0.01).await;
    target_cluster.create_database("app").await.unwrap();
    backfill(
        &source_cluster.url("legacy"),
        &target_cluster.url("app"),
        &[],
    );
    let target = target_cluster.connect("app").await.unwrap();
    let oracle =
        std::fs::read_to_string(repo().join("transforms/legacy_to_projects/expected_reverse.sql"))
            .unwrap();
    source
        .batch_execute(&oracle)
        .await
        .expect("expected_reverse.sql");

    let plan = Plan::load(&seed_plan()).unwrap();
    let reverse = plan.reverse.as_ref().expect("the seed has reverse rules");
    for legacy in ["company_projects", "company_services", "vortex_items"] {
        let rules: Vec<_> = reverse
            .tables
            .iter()
            .filter(|t| t.table.name == legacy)
            .collect();
        let columns: Vec<&str> = rules[0].all_columns().map(|(c, _)| c.as_str()).collect();
        let mut got = Vec::new();
        for rule in &rules {
            let same: Vec<&str> = rule.all_columns().map(|(c, _)| c.as_str()).collect();
            assert_eq!(
                same, columns,
                "the rules for {legacy} list the same columns"
            );
            got.extend(text_rows(&target, &format!("({}) r", rule.select("true")), &columns).await);
        }
        got.sort();
        let expected = text_rows(&source, &format!("expected_reverse.{legacy}"), &columns).await;
        assert!(expected.len() > 10, "{legacy}: the oracle has rows");
        assert_eq!(got.len(), expected.len(), "{legacy}: as many rows");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g, e, "{legacy} ({})", columns.join(", "));
        }
    }
}

/// `expected_legacy.sql`, the legacy tables as the new tables (and the keys a reverse stream
/// allocated) say they must be, equals the round trip over a backfill with no writes since.
#[tokio::test(flavor = "multi_thread")]
async fn the_reverse_streams_oracle_over_a_fresh_backfill_equals_the_round_trip_oracle() {
    let (source_cluster, target_cluster) = (cluster(), cluster());
    let source = seeded_source(&source_cluster, "legacy", 0.01).await;
    target_cluster.create_database("app").await.unwrap();
    backfill(
        &source_cluster.url("legacy"),
        &target_cluster.url("app"),
        &[],
    );
    let target = target_cluster.connect("app").await.unwrap();
    let sql = |file: &str| {
        std::fs::read_to_string(repo().join("transforms/legacy_to_projects").join(file)).unwrap()
    };
    source
        .batch_execute(&sql("expected_reverse.sql"))
        .await
        .expect("expected_reverse.sql");
    target
        .batch_execute(&sql("expected_legacy.sql"))
        .await
        .expect("expected_legacy.sql");
    for (legacy, columns) in [
        ("company_projects", "id, company_id, name, type, status, owner_email, budget, start_date, created_at, updated_at, meta"),
        ("company_services", "id, company_id, service_name, type, status, contact_email, monthly_fee, created_at, updated_at"),
        ("vortex_items", "id, project_id, parent_item_id, title, status, priority, assignee_email, due, body, created_at, updated_at"),
    ] {
        let columns: Vec<&str> = columns.split(", ").collect();
        let got = text_rows(&target, &format!("expected_legacy.{legacy}"), &columns).await;
        let expected = text_rows(&source, &format!("expected_reverse.{legacy}"), &columns).await;
        assert!(expected.len() > 10, "{legacy}: the oracle has rows");
        assert_eq!(got.len(), expected.len(), "{legacy}: as many rows");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g, e, "{legacy} ({})", columns.join(", "));
        }
    }
}
