//! The servers restarted under a running consumer. (Its sessions terminated by
//! `pg_terminate_backend` are covered in `follow`.)

use switchyard::demo::write_load::{WriteLoad, WriteLoadOptions};

use super::{following, migration_i64, send, Logs, SLOT};

/// A write load on the source at a modest rate; a restart ends it (its sessions are lost).
async fn load(f: &crate::follow::Following) -> WriteLoad {
    WriteLoad::start(
        &f.source_cluster.url("legacy"),
        WriteLoadOptions {
            target_rate: Some(300.0),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// Waits until the consumer has applied changes beyond what it had applied so far.
async fn applies_more(f: &mut crate::follow::Following) {
    let applied = migration_i64(&f.target, "changes_applied").await;
    f.wait_for(&format!(
        "SELECT changes_applied > {applied} FROM switchyard.migrations"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_consumer_rides_out_fast_and_immediate_source_restarts_and_a_target_restart() {
    let mut logs = Logs::default();
    let mut f = following(0.005, &mut logs).await;
    for restart in ["source fast", "source immediate", "target fast"] {
        let writes = load(&f).await;
        applies_more(&mut f).await;
        match restart {
            "source fast" => f.source_cluster.restart().unwrap(),
            "source immediate" => f.source_cluster.restart_immediate().unwrap(),
            _ => f.target_cluster.restart().unwrap(),
        }
        // The old sessions died with the server; the load's too.
        writes.stop().await.unwrap();
        f.source = f.source_cluster.connect("legacy").await.unwrap();
        f.target = f.target_cluster.connect("app").await.unwrap();
        let writes = load(&f).await;
        applies_more(&mut f).await;
        writes.stop().await.unwrap();
        assert!(
            f.consumer.try_wait().unwrap().is_none(),
            "the consumer reconnected after the {restart} restart instead of exiting"
        );
    }
    f.assert_converged().await;
    let log = logs.last();
    // Three losses in a row, the pause doubling each time.
    for pause in [
        "reconnecting in 1 s",
        "reconnecting in 2 s",
        "reconnecting in 4 s",
    ] {
        assert!(log.contains(pause), "{pause}:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_an_immediate_source_restart_each_change_is_applied_exactly_once() {
    let mut logs = Logs::default();
    let mut f = following(0.005, &mut logs).await;
    f.catch_up().await;
    // The slot as saved now is what crash recovery brings back.
    f.source.batch_execute("CHECKPOINT").await.unwrap();
    let before = migration_i64(&f.target, "changes_applied").await;
    let mut changed = f
        .source
        .execute(
            "UPDATE vortex_items SET title = title || ' (1)' WHERE id % 3 = 0",
            &[],
        )
        .await
        .unwrap();
    changed += f
        .source
        .execute(
            // Not rows just updated: an update whose row is gone when it is applied is skipped
            // (its delete follows), and would not be counted.
            "DELETE FROM vortex_items WHERE id % 17 = 1 AND id % 3 <> 0",
            &[],
        )
        .await
        .unwrap();
    f.catch_up().await;
    let applied_lsn: String = f
        .target
        .query_one("SELECT applied_lsn::text FROM switchyard.migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        migration_i64(&f.target, "changes_applied").await - before,
        changed as i64
    );

    // Frozen, the consumer cannot confirm anything to the restarted server before we look.
    send(&f.consumer, libc::SIGSTOP);
    f.source_cluster.restart_immediate().unwrap();
    f.source = f.source_cluster.connect("legacy").await.unwrap();
    let went_back: bool = f
        .source
        .query_one(
            "SELECT confirmed_flush_lsn < $2::text::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
            &[&SLOT, &applied_lsn],
        )
        .await
        .unwrap()
        .get(0);
    println!("after crash recovery the slot's confirmed position is behind the applied LSN {applied_lsn}: {went_back} (the server would resend from there)");
    send(&f.consumer, libc::SIGCONT);

    let more = f
        .source
        .execute(
            "UPDATE vortex_items SET title = title || ' (2)' WHERE id % 5 = 0",
            &[],
        )
        .await
        .unwrap();
    f.catch_up().await;
    assert_eq!(
        migration_i64(&f.target, "changes_applied").await - before,
        (changed + more) as i64,
        "every source change applied once: none again after the crash, none lost"
    );
    f.assert_converged().await;
    assert!(f.consumer.try_wait().unwrap().is_none());
}
