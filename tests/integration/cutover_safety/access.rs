//! See the module line in `cutover_safety.rs`. The application connects as `app`, a LOGIN
//! role that owns nothing: before the cutover it reads and writes the legacy tables through
//! its grants, each tenant (`app.company_id`) seeing its own company's rows only.

use std::path::{Path, PathBuf};

use switchyard::demo::cluster::Cluster;
use tokio_postgres::{Client, NoTls};

use crate::support::{cluster, repo, seeded_source};

/// The application's role, its grants, and a tenant policy on the two legacy tables that carry
/// a company.
const APP: &str = "
    CREATE ROLE app LOGIN;
    GRANT SELECT, INSERT, UPDATE ON company_projects, company_services, vortex_items TO app;
    ALTER TABLE company_projects ENABLE ROW LEVEL SECURITY;
    CREATE POLICY tenant ON company_projects
        USING (company_id = nullif(current_setting('app.company_id', true), '')::int);
    ALTER TABLE company_services ENABLE ROW LEVEL SECURITY;
    CREATE POLICY tenant ON company_services
        USING (company_id = nullif(current_setting('app.company_id', true), '')::int);";

/// The same tenant rule on every table the two legacy tables feed, through `teams.company_id`:
/// what a plan with `policies = "cutover_sql"` appends to its cutover SQL.
const NEW_POLICIES: &str = "
ALTER TABLE teams ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON teams
    USING (company_id = nullif(current_setting('app.company_id', true), '')::int);
ALTER TABLE projects ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON projects
    USING (team_id IN (SELECT id FROM teams
                        WHERE company_id = nullif(current_setting('app.company_id', true), '')::int));
ALTER TABLE team_members ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON team_members
    USING (team_id IN (SELECT id FROM teams
                        WHERE company_id = nullif(current_setting('app.company_id', true), '')::int));
";

/// The seed plan's directory, copied to vary its plan and cutover SQL; removed on drop.
struct PlanDir(PathBuf);

impl PlanDir {
    fn new(tag: &str) -> PlanDir {
        let dir =
            std::env::temp_dir().join(format!("switchyard-access-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(repo().join("transforms/legacy_to_projects")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        PlanDir(dir)
    }

    fn plan(&self) -> PathBuf {
        self.0.join("plan.toml")
    }

    /// Replaces every `from` (there must be one) with `to` in one of the plan's files.
    fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.0.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    }

    fn append(&self, file: &str, more: &str) {
        let path = self.0.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text + more).unwrap();
    }
}

impl Drop for PlanDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `switchyard <command> --plan <plan> --source <source> --target <target> <extra>`.
async fn switchyard(
    command: &str,
    plan: &Path,
    source: &str,
    target: &str,
    extra: &[&str],
) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg(command)
        .args(["--plan", plan.to_str().unwrap()])
        .args(["--source", source, "--target", target])
        .args(extra)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn backfill(plan: &Path, source: &str, target: &str) {
    let (ok, out) = switchyard("backfill", plan, source, target, &["--no-follow"]).await;
    assert!(ok, "backfill: {out}");
}

/// A session as the application's role.
async fn as_app(c: &Cluster, db: &str) -> Client {
    let url = format!("postgres://app@127.0.0.1:{}/{db}", c.port());
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn tenants(db: &Client) -> Vec<i32> {
    db.query_one(
        "SELECT array_agg(DISTINCT company_id ORDER BY company_id) FROM company_projects",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// Per tenant, what `app` sees through the legacy names: (tenant, rows and sum of ids of
/// company_projects, the same of company_services).
async fn tenant_view(app: &Client, tenants: &[i32]) -> Vec<(i32, i64, i64, i64, i64)> {
    let mut seen = Vec::new();
    for t in tenants {
        app.query(
            "SELECT set_config('app.company_id', $1, false)",
            &[&t.to_string()],
        )
        .await
        .unwrap();
        let r = app
            .query_one(
                "SELECT (SELECT count(*) FROM company_projects),
                        (SELECT coalesce(sum(id), 0)::bigint FROM company_projects),
                        (SELECT count(*) FROM company_services),
                        (SELECT coalesce(sum(id), 0)::bigint FROM company_services)",
                &[],
            )
            .await
            .unwrap();
        seen.push((*t, r.get(0), r.get(1), r.get(2), r.get(3)));
    }
    seen
}

async fn relkind(db: &Client, name: &str) -> String {
    db.query_one(
        "SELECT relkind::text FROM pg_class WHERE oid = $1::text::regclass",
        &[&name],
    )
    .await
    .unwrap()
    .get(0)
}

async fn app_may(db: &Client, table: &str, privilege: &str) -> bool {
    db.query_one(
        "SELECT has_table_privilege('app', $1, $2)",
        &[&table, &privilege],
    )
    .await
    .unwrap()
    .get(0)
}

async fn status(db: &Client) -> String {
    db.query_one("SELECT status FROM switchyard.migrations", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn application_role_reads_and_writes_only_its_tenants_rows_after_the_cutover() {
    let c = cluster();
    let db = seeded_source(&c, "legacy", 0.01).await;
    db.batch_execute(APP).await.unwrap();
    let url = c.url("legacy");
    let dir = PlanDir::new("carry");
    dir.edit(
        "plan.toml",
        "policies = \"refuse\"",
        "policies = \"cutover_sql\"",
    );
    dir.append("cutover.sql", NEW_POLICIES);
    let tenants = tenants(&db).await;
    let before = tenant_view(&as_app(&c, "legacy").await, &tenants).await;
    let total: i64 = db
        .query_one("SELECT count(*) FROM company_projects", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        before.iter().map(|t| t.1).sum::<i64>(),
        total,
        "each tenant sees its own rows, together all of them"
    );

    let (ok, out) = switchyard("check", &dir.plan(), &url, &url, &[]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("grants on public.company_projects (app: SELECT, INSERT, UPDATE): carried by the cutover"),
        "{out}"
    );
    assert!(
        out.contains("row-level security of public.company_projects (row-level security enabled; policies tenant"),
        "{out}"
    );
    backfill(&dir.plan(), &url, &url).await;
    let (ok, out) = switchyard("cutover", &dir.plan(), &url, &url, &[]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains(
            "granted SELECT on company_projects to app (takes the name of public.company_projects)"
        ),
        "{out}"
    );
    assert!(
        out.contains("granted INSERT on projects to app (fed by public.company_projects)"),
        "{out}"
    );
    assert!(
        out.contains(
            "granted SELECT on task_statuses to app (a lookup of public.vortex_items's rows)"
        ),
        "{out}"
    );
    assert!(
        out.contains("projects (fed by public.company_projects) has row-level security enabled with 1 policy"),
        "{out}"
    );
    assert_eq!(relkind(&db, "company_projects").await, "v");
    let recorded: i64 = db
        .query_one(
            "SELECT count(*) FROM switchyard.migrations, jsonb_array_elements(cutover_report->'access') a
              WHERE a->>'kind' = 'policies' AND a->>'disposition' = 'cutover_sql'
                AND a->>'what' LIKE 'view company_projects % is security_invoker%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 1, "the JSON report keeps what was proved");

    // A new session of the application, as after a deploy.
    let app = as_app(&c, "legacy").await;
    assert_eq!(
        tenant_view(&app, &tenants).await,
        before,
        "every tenant sees exactly the rows it saw before the cutover"
    );
    app.batch_execute("RESET app.company_id").await.unwrap();
    let unscoped: i64 = app
        .query_one("SELECT count(*) FROM company_projects", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(unscoped, 0, "no tenant, no rows, as before");

    // Writes through the new model, as the tenant.
    let (mine, other) = (tenants[0], tenants[1]);
    app.batch_execute(&format!("SET app.company_id = '{mine}'"))
        .await
        .unwrap();
    let inserted = app
        .execute(
            "INSERT INTO projects (id, legacy_table, legacy_id, team_id, kind, name, status)
             SELECT gen_random_uuid(), 'company_projects', 900001, id, 'project', 'by app', 'active'
               FROM teams",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 1, "the tenant sees its one team");
    let updated = app
        .execute(
            "UPDATE projects SET name = 'renamed by app' WHERE legacy_id = 900001",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(updated, 1);
    app.execute(
        "INSERT INTO tasks (id, legacy_id, project_id, title)
         SELECT gen_random_uuid(), 900002, id, 'task by app' FROM projects WHERE legacy_id = 900001",
        &[],
    )
    .await
    .unwrap();
    let row = app
        .query_one(
            "SELECT (SELECT name FROM company_projects WHERE id = 900001),
                    (SELECT title FROM vortex_items WHERE id = 900002)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some("renamed by app")
    );
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("task by app")
    );

    // Another tenant neither sees that project nor writes into the first tenant's team.
    app.batch_execute(&format!("SET app.company_id = '{other}'"))
        .await
        .unwrap();
    let seen: i64 = app
        .query_one(
            "SELECT count(*) FROM company_projects WHERE id = 900001",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 0);
    let team: String = db
        .query_one("SELECT id::text FROM teams WHERE company_id = $1", &[&mine])
        .await
        .unwrap()
        .get(0);
    let refused = app
        .execute(
            "INSERT INTO projects (id, legacy_table, legacy_id, team_id, kind, name, status)
             VALUES (gen_random_uuid(), 'company_projects', 900003, $1::text::uuid, 'project', 'x', 'active')",
            &[&team],
        )
        .await
        .unwrap_err();
    let message = refused.as_db_error().expect("a server error").message();
    assert!(
        message.contains("violates row-level security policy"),
        "{message}"
    );
}

#[tokio::test]
async fn refused_grants_are_named_by_check_and_the_cutover_and_nothing_changes() {
    let c = cluster();
    let db = seeded_source(&c, "legacy", 0.01).await;
    db.batch_execute(
        "CREATE ROLE app LOGIN;
         GRANT SELECT, INSERT ON company_projects TO app;
         GRANT SELECT (title) ON vortex_items TO PUBLIC;",
    )
    .await
    .unwrap();
    let url = c.url("legacy");
    let dir = PlanDir::new("refuse");
    dir.edit("plan.toml", "grants = \"carry\"", "grants = \"refuse\"");

    let (ok, out) = switchyard("check", &dir.plan(), &url, &url, &[]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("error: source.public.company_projects: public.company_projects grants privileges to roles other than its owner postgres (app: SELECT, INSERT)"),
        "{out}"
    );
    assert!(
        out.contains("set grants = \"carry\" under [cutover.dependents]"),
        "{out}"
    );
    assert!(
        out.contains("error: source.public.vortex_items: public.vortex_items grants privileges to roles other than its owner postgres (PUBLIC: SELECT (title))"),
        "{out}"
    );

    // They block the cutover, not the copy.
    backfill(&dir.plan(), &url, &url).await;
    let (ok, out) = switchyard("cutover", &dir.plan(), &url, &url, &[]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("cutover refused before taking any lock; nothing changed"),
        "{out}"
    );
    assert!(out.contains("(app: SELECT, INSERT)"), "{out}");
    assert_eq!(relkind(&db, "company_projects").await, "r");
    assert_ne!(status(&db).await, "cut_over");
    assert!(app_may(&db, "company_projects", "INSERT").await);
    assert!(!app_may(&db, "projects", "SELECT").await);
}

#[tokio::test]
async fn a_cutover_sql_that_forgets_the_policies_is_rolled_back_naming_each_table() {
    let c = cluster();
    let db = seeded_source(&c, "legacy", 0.01).await;
    db.batch_execute(APP).await.unwrap();
    let url = c.url("legacy");
    let dir = PlanDir::new("forgot");
    dir.edit(
        "plan.toml",
        "policies = \"refuse\"",
        "policies = \"cutover_sql\"",
    );
    backfill(&dir.plan(), &url, &url).await;
    let (ok, out) = switchyard("cutover", &dir.plan(), &url, &url, &[]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("cutover aborted after the cutover SQL")
            && out.contains("Everything was rolled back"),
        "{out}"
    );
    for table in ["projects", "teams", "team_members"] {
        assert!(
            out.contains(&format!(
                "{table} (fed by public.company_projects, which has row-level security enabled; policies tenant"
            )),
            "{table}: {out}"
        );
        assert!(
            out.contains(&format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;")),
            "{out}"
        );
    }
    assert_eq!(relkind(&db, "company_projects").await, "r");
    assert_ne!(status(&db).await, "cut_over");
    assert!(
        !app_may(&db, "projects", "SELECT").await,
        "the carried grants were rolled back with the rest"
    );
}

#[tokio::test]
async fn a_compatibility_view_that_is_not_security_invoker_over_a_table_with_rls_is_rolled_back() {
    let c = cluster();
    let db = seeded_source(&c, "legacy", 0.01).await;
    db.batch_execute(APP).await.unwrap();
    let url = c.url("legacy");
    let dir = PlanDir::new("definer");
    dir.edit(
        "plan.toml",
        "policies = \"refuse\"",
        "policies = \"cutover_sql\"",
    );
    dir.edit("cutover.sql", " WITH (security_invoker = true)", "");
    dir.append("cutover.sql", NEW_POLICIES);
    backfill(&dir.plan(), &url, &url).await;
    let (ok, out) = switchyard("cutover", &dir.plan(), &url, &url, &[]).await;
    assert!(!ok, "{out}");
    for view in ["company_projects", "company_services"] {
        assert!(
            out.contains(&format!(
                "view {view} takes the name of public.{view}, which has row-level security enabled"
            )),
            "{view}: {out}"
        );
        assert!(
            out.contains(&format!("ALTER VIEW {view} SET (security_invoker = true);")),
            "{out}"
        );
    }
    assert!(
        !out.contains("view vortex_items takes"),
        "vortex_items has no row-level security: {out}"
    );
    assert_eq!(relkind(&db, "company_projects").await, "r");
    assert_ne!(status(&db).await, "cut_over");
}

#[tokio::test]
async fn two_servers_carry_grants_and_name_the_roles_the_target_lacks() {
    let source_cluster = cluster();
    let target_cluster = cluster();
    let source = seeded_source(&source_cluster, "legacy", 0.01).await;
    source
        .batch_execute(
            "CREATE ROLE app LOGIN; CREATE ROLE auditor;
             GRANT SELECT, INSERT ON company_projects, company_services TO app;
             GRANT SELECT ON company_projects, company_services TO auditor;",
        )
        .await
        .unwrap();
    target_cluster.create_database("app").await.unwrap();
    let target = target_cluster.connect("app").await.unwrap();
    target.batch_execute("CREATE ROLE app LOGIN").await.unwrap();
    let (source_url, target_url) = (source_cluster.url("legacy"), target_cluster.url("app"));
    let dir = PlanDir::new("two-servers");

    let (_, out) = switchyard("check", &dir.plan(), &source_url, &target_url, &[]).await;
    assert!(
        out.contains(
            "role auditor holds privileges on a legacy table but does not exist on the target"
        ),
        "{out}"
    );
    backfill(&dir.plan(), &source_url, &target_url).await;
    let (ok, out) = switchyard("cutover", &dir.plan(), &source_url, &target_url, &[]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("NOT granted: role auditor does not exist on the target; create it there, then run: GRANT SELECT ON TABLE projects TO \"auditor\";"),
        "{out}"
    );
    assert!(app_may(&target, "projects", "INSERT").await);
    assert!(app_may(&target, "teams", "SELECT").await);
    assert!(app_may(&target, "project_stages", "SELECT").await);
}

#[tokio::test]
async fn grants_the_cutover_sql_forgets_are_rolled_back_naming_the_role_and_the_table() {
    let c = cluster();
    let db = seeded_source(&c, "legacy", 0.01).await;
    db.batch_execute(
        "CREATE ROLE app LOGIN;
         GRANT SELECT, INSERT ON vortex_items TO app;
         GRANT SELECT (title) ON vortex_items TO PUBLIC;",
    )
    .await
    .unwrap();
    let url = c.url("legacy");
    let dir = PlanDir::new("grants-sql");
    dir.edit(
        "plan.toml",
        "grants = \"carry\"",
        "grants = \"cutover_sql\"",
    );
    // Everything but INSERT on sub_tasks.
    dir.append(
        "cutover.sql",
        "GRANT SELECT ON vortex_items, tasks, sub_tasks, task_statuses, projects TO app;
         GRANT INSERT ON vortex_items, tasks TO app;",
    );
    backfill(&dir.plan(), &url, &url).await;
    let (ok, out) = switchyard("cutover", &dir.plan(), &url, &url, &[]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("app lacks INSERT on sub_tasks (fed by public.vortex_items): add `GRANT INSERT ON TABLE sub_tasks TO \"app\";` to the cutover SQL"),
        "{out}"
    );
    assert!(!out.contains("app lacks SELECT"), "{out}");
    assert_eq!(relkind(&db, "vortex_items").await, "r");
    assert!(!app_may(&db, "tasks", "SELECT").await, "rolled back");

    // With the missing grant, the same cutover commits and says what it proved.
    let dir = PlanDir::new("grants-sql-fixed");
    dir.edit(
        "plan.toml",
        "grants = \"carry\"",
        "grants = \"cutover_sql\"",
    );
    dir.append(
        "cutover.sql",
        "GRANT SELECT ON vortex_items, tasks, sub_tasks, task_statuses, projects TO app;
         GRANT INSERT ON vortex_items, tasks, sub_tasks TO app;
         GRANT SELECT (title) ON vortex_items, tasks, sub_tasks TO PUBLIC;",
    );
    let (ok, out) = switchyard("cutover", &dir.plan(), &url, &url, &[]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("holds INSERT on sub_tasks to app (fed by public.vortex_items)"),
        "{out}"
    );
    assert!(
        out.contains("holds SELECT (title) on tasks to PUBLIC (fed by public.vortex_items)"),
        "{out}"
    );
    assert!(app_may(&db, "sub_tasks", "INSERT").await);
}
