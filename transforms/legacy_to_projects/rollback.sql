-- Undo the migration on the target: drop every table target_schema.sql created (one statement,
-- so the foreign keys between them do not dictate an order). The legacy tables are untouched.

DROP TABLE IF EXISTS
    sub_tasks, tasks, projects, team_members, teams, task_statuses, project_stages;
