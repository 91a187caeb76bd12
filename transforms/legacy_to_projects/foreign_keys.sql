-- After the bulk copy, stage 2, once every key of stage 1 is built: the foreign keys, added
-- NOT VALID. That needs no scan, only a brief SHARE ROW EXCLUSIVE lock on both tables, which
-- would wait for an index build on either; so they come after the keys, in a stage of their
-- own, and are validated in stage 3 (validate_*.sql). Re-runnable: each step checks the
-- catalog first.

DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            ('projects',  'projects_team_id_fkey',
                'FOREIGN KEY (team_id) REFERENCES teams (id) NOT VALID'),
            ('projects',  'projects_stage_id_fkey',
                'FOREIGN KEY (stage_id) REFERENCES project_stages (id) NOT VALID'),
            ('tasks',     'tasks_project_id_fkey',
                'FOREIGN KEY (project_id) REFERENCES projects (id) NOT VALID'),
            ('tasks',     'tasks_status_id_fkey',
                'FOREIGN KEY (status_id) REFERENCES task_statuses (id) NOT VALID'),
            ('sub_tasks', 'sub_tasks_task_id_fkey',
                'FOREIGN KEY (task_id) REFERENCES tasks (id) NOT VALID'),
            ('sub_tasks', 'sub_tasks_status_id_fkey',
                'FOREIGN KEY (status_id) REFERENCES task_statuses (id) NOT VALID')
        ) AS wanted (table_name, constraint_name, definition)
    LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_constraint
            WHERE conrelid = c.table_name::regclass AND conname = c.constraint_name
        ) THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s',
                           c.table_name, c.constraint_name, c.definition);
        END IF;
    END LOOP;
END
$$;
