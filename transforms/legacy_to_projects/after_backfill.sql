-- After the bulk copy: the primary keys of the three large tables (built by one sort instead of
-- a million random index inserts: the copy into uuid-keyed tables runs about twice as fast),
-- unique keys on the legacy ids, indexes on the foreign-key columns, and
-- the foreign keys themselves. Re-runnable: each step checks the catalog first.
--
-- Foreign keys are added NOT VALID (no scan, only a brief lock) and validated afterwards. The
-- legacy data has orphans (items pointing at projects that never existed, sub-tasks whose parent
-- was deleted), so validation may fail; the constraint then stays NOT VALID, still enforced for
-- new rows, and a NOTICE says so. A second run retries only those validations.
--
-- The indexes are built without CONCURRENTLY because that cannot run inside this multi-statement
-- script; the follow's writes to a table wait while its index builds.

DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            ('projects',  'projects_pkey',             'PRIMARY KEY (id)'),
            ('tasks',     'tasks_pkey',                'PRIMARY KEY (id)'),
            ('sub_tasks', 'sub_tasks_pkey',            'PRIMARY KEY (id)'),
            ('projects',  'projects_legacy_key',       'UNIQUE (legacy_table, legacy_id)'),
            ('tasks',     'tasks_legacy_id_key',       'UNIQUE (legacy_id)'),
            ('sub_tasks', 'sub_tasks_legacy_id_key',   'UNIQUE (legacy_id)'),
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

CREATE INDEX IF NOT EXISTS projects_team_id_idx   ON projects (team_id);
CREATE INDEX IF NOT EXISTS projects_stage_id_idx  ON projects (stage_id);
CREATE INDEX IF NOT EXISTS tasks_project_id_idx   ON tasks (project_id);
CREATE INDEX IF NOT EXISTS tasks_status_id_idx    ON tasks (status_id);
CREATE INDEX IF NOT EXISTS sub_tasks_task_id_idx  ON sub_tasks (task_id);
CREATE INDEX IF NOT EXISTS sub_tasks_status_id_idx ON sub_tasks (status_id);

-- Validate each foreign key still NOT VALID; orphans leave it so, with a NOTICE.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT conrelid::regclass AS table_name, conname AS constraint_name
        FROM pg_constraint
        WHERE contype = 'f' AND NOT convalidated
          AND conrelid IN ('projects'::regclass, 'tasks'::regclass, 'sub_tasks'::regclass)
        ORDER BY conname
    LOOP
        BEGIN
            EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I',
                           c.table_name, c.constraint_name);
        EXCEPTION WHEN foreign_key_violation THEN
            RAISE NOTICE 'constraint % on % stays NOT VALID because of orphan rows: %',
                c.constraint_name, c.table_name, SQLERRM;
        END;
    END LOOP;
END
$$;
