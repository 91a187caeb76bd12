-- What the legacy tables must hold when the new tables are as they are now, as plain SQL run on
-- the TARGET (the database of the new tables): the oracle of the reverse stream. After
-- `switchyard cutover --keep-reverse`, the application writes the new tables and the reverse
-- consumer keeps the legacy tables equal to them; once `switchyard rollback` has swapped the
-- legacy tables back, they must equal schema `expected_legacy`, row for row. Re-running
-- replaces the schema.
--
-- It is written from what each legacy column means (legacy_schema.sql), how the forward
-- migration filled the new tables from it (expected.sql) and what the compatibility views of
-- cutover.sql show, with joins; not from the plan's [reverse] rules, which it checks. After a
-- backfill with no writes since, it equals the round-trip oracle expected_reverse.sql (run on
-- the source) row for row.
--
-- KEYS. A row that came from a legacy row keeps its id (legacy_id). A row the new application
-- created has legacy_id NULL; the reverse consumer allocates it an id from the legacy table's
-- sequence and records it in switchyard.reverse_keys (legacy_table, output_key = the row's
-- uuid as text, legacy_key). Every key and every reference below is
-- coalesce(legacy_id, that recorded key): a new row the consumer has not keyed yet has id NULL
-- here, and a reference to it is NULL.
--
-- THE COLUMNS:
--   company_projects   the projects with legacy_table 'company_projects'; company_services
--                      those with 'company_services' (kind follows legacy_table, it has no
--                      column of its own).
--   company_id         the company of the project's team (NULL without a team, which the
--                      legacy NOT NULL refuses).
--   name, service_name, title, body (description), meta (attributes), owner_email,
--   contact_email, assignee_email
--                      as the new tables hold them.
--   type               the name of the project's stage (project_stages).
--   status (projects)  'active', 'on hold', 'archived' for active, on_hold, archived; NULL for
--                      'unknown'; any other value as written.
--   status (items)     the name of the item's status (task_statuses).
--   budget, start_date, due, priority
--                      the text of the numeric(14,2), of the ISO date, of the number 1..4.
--   monthly_fee        budget / 12, rounded to cents (numeric(12,2)).
--   created_at, updated_at   the UTC wall-clock time of the timestamptz.
--   vortex_items       the tasks (parent_item_id NULL) and the sub_tasks (parent_item_id the
--                      key of their task).
--   project_id         the key of the task's project, for a sub-task its task's project; NULL
--                      when that project does not exist or is a service (legacy_table
--                      'company_services': a legacy item can only name a company project).
--
-- WHAT IT LOSES (beyond the round trip's losses, listed in expected_reverse.sql):
--   a sub-task whose task does not exist comes back as a top-level item (parent_item_id NULL,
--   project_id NULL); a task under a service, with no project; a project status outside the
--   four values of the new model as written; teams and team_members have no legacy home
--   (only a project's company comes back).

BEGIN;

DROP SCHEMA IF EXISTS expected_legacy CASCADE;
CREATE SCHEMA expected_legacy;

-- The keys the reverse consumer allocated to rows the new application created (none before
-- any reverse stream ran: then switchyard.reverse_keys may not exist yet).
DO $keys$
BEGIN
    IF to_regclass('switchyard.reverse_keys') IS NULL THEN
        CREATE TEMPORARY VIEW legacy_keys AS
        SELECT NULL::text AS legacy_table, NULL::text AS output_key, NULL::bigint AS legacy_key
         WHERE false;
    ELSE
        CREATE TEMPORARY VIEW legacy_keys AS
        SELECT legacy_table, output_key, legacy_key::bigint AS legacy_key
          FROM switchyard.reverse_keys
         WHERE migration = 'legacy_to_projects';
    END IF;
END
$keys$;

CREATE TABLE expected_legacy.company_projects AS
SELECT coalesce(p.legacy_id, k.legacy_key) AS id,
       t.company_id,
       p.name,
       s.name AS type,
       CASE p.status
           WHEN 'active' THEN 'active' WHEN 'on_hold' THEN 'on hold' WHEN 'archived' THEN 'archived'
           WHEN 'unknown' THEN NULL
           ELSE p.status
       END AS status,
       p.owner_email,
       p.budget::text AS budget,
       p.start_date::text AS start_date,
       p.created_at AT TIME ZONE 'UTC' AS created_at,
       p.updated_at AT TIME ZONE 'UTC' AS updated_at,
       p.attributes AS meta
  FROM projects p
  LEFT JOIN legacy_keys k ON k.legacy_table = 'company_projects' AND k.output_key = p.id::text
  LEFT JOIN teams t ON t.id = p.team_id
  LEFT JOIN project_stages s ON s.id = p.stage_id
 WHERE p.legacy_table = 'company_projects';

CREATE TABLE expected_legacy.company_services AS
SELECT coalesce(p.legacy_id, k.legacy_key) AS id,
       t.company_id,
       p.name AS service_name,
       s.name AS type,
       CASE p.status
           WHEN 'active' THEN 'active' WHEN 'on_hold' THEN 'on hold' WHEN 'archived' THEN 'archived'
           WHEN 'unknown' THEN NULL
           ELSE p.status
       END AS status,
       p.owner_email AS contact_email,
       (p.budget / 12)::numeric(12,2) AS monthly_fee,
       p.created_at AT TIME ZONE 'UTC' AS created_at,
       p.updated_at AT TIME ZONE 'UTC' AS updated_at
  FROM projects p
  LEFT JOIN legacy_keys k ON k.legacy_table = 'company_services' AND k.output_key = p.id::text
  LEFT JOIN teams t ON t.id = p.team_id
  LEFT JOIN project_stages s ON s.id = p.stage_id
 WHERE p.legacy_table = 'company_services';

-- The company projects and their keys, which items point at.
CREATE TEMPORARY VIEW company_project_keys AS
SELECT p.id, coalesce(p.legacy_id, k.legacy_key) AS legacy_key
  FROM projects p
  LEFT JOIN legacy_keys k ON k.legacy_table = 'company_projects' AND k.output_key = p.id::text
 WHERE p.legacy_table = 'company_projects';

CREATE TABLE expected_legacy.vortex_items AS
SELECT coalesce(k.legacy_id, kk.legacy_key) AS id,
       cp.legacy_key AS project_id,
       NULL::bigint AS parent_item_id,
       k.title,
       st.name AS status,
       k.priority::text AS priority,
       k.assignee_email,
       k.due_date::text AS due,
       k.description AS body,
       k.created_at AT TIME ZONE 'UTC' AS created_at,
       k.updated_at AT TIME ZONE 'UTC' AS updated_at
  FROM tasks k
  LEFT JOIN legacy_keys kk ON kk.legacy_table = 'vortex_items' AND kk.output_key = k.id::text
  LEFT JOIN company_project_keys cp ON cp.id = k.project_id
  LEFT JOIN task_statuses st ON st.id = k.status_id
UNION ALL
SELECT coalesce(s.legacy_id, sk.legacy_key),
       cp.legacy_key,
       coalesce(k.legacy_id, kk.legacy_key),
       s.title,
       st.name,
       s.priority::text,
       s.assignee_email,
       s.due_date::text,
       s.description,
       s.created_at AT TIME ZONE 'UTC',
       s.updated_at AT TIME ZONE 'UTC'
  FROM sub_tasks s
  LEFT JOIN legacy_keys sk ON sk.legacy_table = 'vortex_items' AND sk.output_key = s.id::text
  LEFT JOIN tasks k ON k.id = s.task_id
  LEFT JOIN legacy_keys kk ON kk.legacy_table = 'vortex_items' AND kk.output_key = k.id::text
  LEFT JOIN company_project_keys cp ON cp.id = k.project_id
  LEFT JOIN task_statuses st ON st.id = s.status_id;

DROP VIEW company_project_keys;
DROP VIEW legacy_keys;

COMMIT;
