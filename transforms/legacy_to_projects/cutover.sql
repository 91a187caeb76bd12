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
-- read-only (a trigger, enabled ALWAYS, that refuses writes), so no write can land on the old
-- side.
--
-- switchyard tells this file the layout in the setting switchyard.same_database ('on' or
-- 'off', set for this transaction only). The file asserts what it assumes instead of guessing:
-- with one database it must find the new tables through the session's search_path (the
-- source connection's), or it raises and the cutover rolls back with nothing changed. After
-- this file, switchyard proves the swap under the lock: every legacy name must now be a view
-- ([cutover] legacy_names, "views" by default with one database).

DO $swap$
DECLARE
    layout text := nullif(current_setting('switchyard.same_database', true), '');
BEGIN
    IF layout IS NULL THEN
        RAISE EXCEPTION 'switchyard.same_database is not set: this file is run by `switchyard cutover`, which sets it'
            USING HINT = 'to run it by hand: SET LOCAL switchyard.same_database = ''on'' (or ''off'') first';
    END IF;
    IF layout = 'off' THEN
        RETURN; -- the new tables live on another server
    END IF;
    IF to_regclass('projects') IS NULL OR to_regclass('tasks') IS NULL
       OR to_regclass('sub_tasks') IS NULL THEN
        RAISE EXCEPTION 'one database, but the new tables (projects, tasks, sub_tasks) are not on the source session''s search_path (%): nothing to swap in',
            current_setting('search_path')
            USING HINT = 'put their schema on the source connection''s search_path (options=-csearch_path=...) or qualify the names in this file';
    END IF;
    IF to_regclass('company_projects_legacy') IS NOT NULL THEN
        RAISE EXCEPTION 'company_projects_legacy already exists: a previous swap was not rolled back'
            USING HINT = '`switchyard rollback` undoes it';
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
