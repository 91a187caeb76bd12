-- The seed plan's round trip as plain SQL, run on the SOURCE after expected.sql (it uses that
-- file's functions): what the legacy tables hold once their rows have gone forward into the new
-- model and come back through the plan's [reverse] rules. It reads the legacy tables only, not
-- the new ones, so the tests can hold the reverse rules, evaluated on the target over the
-- backfilled new tables, against it row for row. Re-running replaces the schema.
--
-- WHAT A ROUND TRIP LOSES (everything else comes back as it was):
--   type, status      normalized (expected.norm): ' In_Progress' -> 'in progress'; a project
--                     status outside active/on hold/archived -> NULL; a task status 'to do' ->
--                     'todo', 'in progress' -> 'doing'.
--   e-mails           lower-cased and trimmed, '' -> NULL.
--   budget            as numeric(14,2) text: '12,500' -> '12500.00', '' -> NULL.
--   start_date, due   as ISO dates: ' 2024-03-01' -> '2024-03-01', '' -> NULL.
--   priority          as '1'..'4': 'high' -> '3'; anything else -> NULL.
--   project_id        NULL when it names no company project (its uuid names no project).
--   parent_item_id    NULL when it names no top-level item: such a sub-task comes back as a
--                     top-level item.
--   a sub-task's project_id   its parent's (the new model keeps no project on a sub-task).

BEGIN;

DROP SCHEMA IF EXISTS expected_reverse CASCADE;
CREATE SCHEMA expected_reverse;

CREATE TABLE expected_reverse.company_projects AS
SELECT id, company_id, name,
       expected.norm(type) AS type,
       CASE expected.norm(status)
           WHEN 'active' THEN 'active' WHEN 'on hold' THEN 'on hold' WHEN 'archived' THEN 'archived'
       END AS status,
       expected.email(owner_email) AS owner_email,
       NULLIF(replace(trim(budget), ',', ''), '')::numeric(14,2)::text AS budget,
       NULLIF(trim(start_date), '')::date::text AS start_date,
       created_at, updated_at, meta
  FROM public.company_projects;

CREATE TABLE expected_reverse.company_services AS
SELECT id, company_id, service_name,
       expected.norm(type) AS type,
       CASE expected.norm(status)
           WHEN 'active' THEN 'active' WHEN 'on hold' THEN 'on hold' WHEN 'archived' THEN 'archived'
       END AS status,
       expected.email(contact_email) AS contact_email,
       monthly_fee, created_at, updated_at
  FROM public.company_services;

CREATE TABLE expected_reverse.vortex_items AS
SELECT v.id,
       CASE WHEN v.parent_item_id IS NULL
            THEN (SELECT cp.id FROM public.company_projects cp WHERE cp.id = v.project_id)
            ELSE (SELECT cp.id FROM public.vortex_items parent
                    JOIN public.company_projects cp ON cp.id = parent.project_id
                   WHERE parent.id = v.parent_item_id AND parent.parent_item_id IS NULL)
       END AS project_id,
       (SELECT parent.id FROM public.vortex_items parent
         WHERE parent.id = v.parent_item_id AND parent.parent_item_id IS NULL) AS parent_item_id,
       v.title,
       expected.task_status(v.status) AS status,
       expected.priority(v.priority)::text AS priority,
       expected.email(v.assignee_email) AS assignee_email,
       NULLIF(trim(v.due), '')::date::text AS due,
       v.body, v.created_at, v.updated_at
  FROM public.vortex_items v;

COMMIT;
