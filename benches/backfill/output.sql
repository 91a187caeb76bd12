-- The limit's input, made on the source before it runs (untimed): the plain SQL migration's
-- result in `output.*`, whose tables target_schema.sql created, so that every column has the
-- target's type and position and binary COPY can carry it over as is. `expected.*` names the
-- stage and the task status where the target holds the lookup's id; the joins map them.

INSERT INTO output.project_stages (id, name) SELECT id, name FROM expected.project_stages;
INSERT INTO output.task_statuses (id, name) SELECT id, name FROM expected.task_statuses;
INSERT INTO output.teams (id, company_id, name) SELECT id, company_id, name FROM expected.teams;
INSERT INTO output.team_members (team_id, email) SELECT team_id, email FROM expected.team_members;
INSERT INTO output.projects (id, legacy_table, legacy_id, team_id, kind, name, stage_id, status,
                             owner_email, budget, start_date, created_at, updated_at, attributes)
SELECT p.id, legacy_table, legacy_id, team_id, kind, p.name, s.id, status,
       owner_email, budget, start_date, created_at, updated_at, attributes
FROM expected.projects p LEFT JOIN expected.project_stages s ON s.name = p.stage
ORDER BY legacy_table, legacy_id;
INSERT INTO output.tasks (id, legacy_id, project_id, title, status_id, priority, assignee_email,
                          due_date, description, created_at, updated_at)
SELECT t.id, legacy_id, project_id, title, s.id, priority, assignee_email,
       due_date, description, created_at, updated_at
FROM expected.tasks t LEFT JOIN expected.task_statuses s ON s.name = t.status
ORDER BY legacy_id;
INSERT INTO output.sub_tasks (id, legacy_id, task_id, title, status_id, priority, assignee_email,
                              due_date, description, created_at, updated_at)
SELECT t.id, legacy_id, task_id, title, s.id, priority, assignee_email,
       due_date, description, created_at, updated_at
FROM expected.sub_tasks t LEFT JOIN expected.task_statuses s ON s.name = t.status
ORDER BY legacy_id;
DROP SCHEMA expected CASCADE;
