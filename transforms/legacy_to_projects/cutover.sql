-- The swap, run by `switchyard cutover` on the source ([cutover] side = "source"), inside the
-- transaction that holds the write lock, after the consumer has applied every write: it commits
-- atomically with the release of the lock. No BEGIN/COMMIT here: the cutover owns the
-- transaction (and refuses a file that tries to end it).
--
-- Same database (the new tables next to the legacy ones): rename the legacy tables out of the
-- way and put compatibility views with the legacy names and columns in their place, so that
-- old readers keep working. The views are read-only; an orphan reference (a project that never
-- existed) reads back as NULL. The views are security_invoker (PostgreSQL 15): they read with
-- the rights of whoever queries them, so the new tables' grants and row-level security apply
-- to the application's role (a view running with its owner's rights would bypass them).
-- Two servers: nothing to swap on the source; switchyard itself makes the legacy tables
-- read-only (a trigger that refuses writes), so no write can land on the old side.

DO $swap$
BEGIN
    IF to_regclass('projects') IS NULL THEN
        RETURN; -- the new tables live on another server
    END IF;

    ALTER TABLE company_projects RENAME TO company_projects_legacy;
    ALTER TABLE company_services RENAME TO company_services_legacy;
    ALTER TABLE vortex_items     RENAME TO vortex_items_legacy;

    CREATE VIEW company_projects WITH (security_invoker = true) AS
    SELECT p.legacy_id AS id, t.company_id, p.name, s.name AS type, p.status, p.owner_email,
           p.budget::text AS budget, p.start_date::text AS start_date,
           p.created_at AT TIME ZONE 'UTC' AS created_at,
           p.updated_at AT TIME ZONE 'UTC' AS updated_at,
           p.attributes AS meta
    FROM projects p
    LEFT JOIN teams t ON t.id = p.team_id
    LEFT JOIN project_stages s ON s.id = p.stage_id
    WHERE p.legacy_table = 'company_projects';

    CREATE VIEW company_services WITH (security_invoker = true) AS
    SELECT p.legacy_id AS id, t.company_id, p.name AS service_name, s.name AS type, p.status,
           p.owner_email AS contact_email, (p.budget / 12)::numeric(12,2) AS monthly_fee,
           p.created_at AT TIME ZONE 'UTC' AS created_at,
           p.updated_at AT TIME ZONE 'UTC' AS updated_at
    FROM projects p
    LEFT JOIN teams t ON t.id = p.team_id
    LEFT JOIN project_stages s ON s.id = p.stage_id
    WHERE p.legacy_table = 'company_services';

    CREATE VIEW vortex_items WITH (security_invoker = true) AS
    SELECT k.legacy_id AS id, p.legacy_id AS project_id, NULL::bigint AS parent_item_id, k.title,
           st.name AS status, k.priority::text AS priority, k.assignee_email,
           k.due_date::text AS due, k.description AS body,
           k.created_at AT TIME ZONE 'UTC' AS created_at,
           k.updated_at AT TIME ZONE 'UTC' AS updated_at
    FROM tasks k
    LEFT JOIN projects p ON p.id = k.project_id
    LEFT JOIN task_statuses st ON st.id = k.status_id
    UNION ALL
    SELECT s.legacy_id, p.legacy_id, k.legacy_id, s.title,
           st.name, s.priority::text, s.assignee_email,
           s.due_date::text, s.description,
           s.created_at AT TIME ZONE 'UTC',
           s.updated_at AT TIME ZONE 'UTC'
    FROM sub_tasks s
    LEFT JOIN tasks k ON k.id = s.task_id
    LEFT JOIN projects p ON p.id = k.project_id
    LEFT JOIN task_statuses st ON st.id = s.status_id;
END
$swap$;
