//! How the contenders are set up before the first backlog: native's subscription synced and
//! disabled, each switchyard migration backfilled without following, the limit's slot.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::switchyard;
use crate::contender::{Contender, LIMIT_SLOT};
use crate::{wait_until, Bench};

/// Whether `switchyard follow` takes `--apply-jobs` (another change adds it).
pub fn follow_has_apply_jobs() -> bool {
    let help = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["follow", "--help"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&help.stdout).contains("--apply-jobs")
}

impl Contender {
    /// The subscription `native`, synced, then disabled.
    pub async fn native(bench: &Bench) -> Contender {
        bench
            .source
            .batch_execute(
                "CREATE PUBLICATION native FOR TABLE company_projects, company_services, vortex_items",
            )
            .await
            .unwrap();
        let url = &bench.source_url;
        bench
            .native
            .batch_execute(&format!(
                "CREATE SUBSCRIPTION native CONNECTION '{url}' PUBLICATION native"
            ))
            .await
            .unwrap();
        wait_until(
            &bench.native,
            "SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate <> 'r'",
        )
        .await;
        Contender::Native.stop(bench, None).await;
        Contender::Native
    }

    /// A copy of the seed migration named `bench_j<apply_jobs>`, backfilled into its own
    /// database with `--no-follow`.
    pub async fn switchyard(bench: &Bench, apply_jobs: usize, pass_flag: bool) -> Contender {
        let name = format!("bench_j{apply_jobs}");
        let plan = copy_plan(&bench.dir.join(&name), &name);
        bench.target_cluster.create_database(&name).await.unwrap();
        let target_url = bench.target_cluster.url(&name);
        let out = switchyard(
            &plan,
            &["backfill", "--no-follow"],
            &bench.source_url,
            &target_url,
        )
        .stdout(Stdio::null())
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "backfill of {name} failed: {stderr}");
        Contender::Switchyard {
            apply_jobs,
            pass_flag,
            plan,
            target_url,
            log: bench.dir.join(format!("{name}.log")),
        }
    }

    /// The limit's pgoutput slot, decoding the publication of `migration`.
    pub async fn limit(bench: &Bench, migration: &Contender) -> Contender {
        let Contender::Switchyard { plan, .. } = migration else {
            panic!("the limit decodes a switchyard migration's publication");
        };
        let plan = switchyard::plan::Plan::load(plan).unwrap();
        bench
            .source
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&LIMIT_SLOT],
            )
            .await
            .unwrap();
        Contender::Limit {
            publication: plan.publication_name(),
        }
    }
}

/// Copy the seed migration's directory into `dir` with the plan named `name`.
fn copy_plan(dir: &Path, name: &str) -> PathBuf {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("transforms/legacy_to_projects");
    fs::create_dir_all(dir).unwrap();
    for entry in fs::read_dir(&seed).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let plan = dir.join("plan.toml");
    let text = fs::read_to_string(&plan).unwrap();
    let renamed = text.replacen(
        "name = \"legacy_to_projects\"",
        &format!("name = \"{name}\""),
        1,
    );
    assert_ne!(
        text, renamed,
        "plan.toml no longer says name = \"legacy_to_projects\""
    );
    fs::write(&plan, renamed).unwrap();
    plan
}
