-- After the bulk copy, stage 1 (beside the other tables' keys_*.sql, each on its own session):
-- the keys and the foreign-key column indexes of tasks, built by one sort each instead of
-- a million random index inserts during the copy. Every statement here locks tasks alone, so the
-- three files of the stage never wait for each other. Re-runnable: each step checks the
-- catalog first.
--
-- The indexes are built without CONCURRENTLY because that cannot run inside this multi-statement
-- script; the follow's writes to tasks wait while its indexes build.

DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            ('tasks_pkey', 'PRIMARY KEY (id)'),
            ('tasks_legacy_id_key', 'UNIQUE (legacy_id)')
        ) AS wanted (constraint_name, definition)
    LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_constraint
            WHERE conrelid = 'tasks'::regclass AND conname = c.constraint_name
        ) THEN
            EXECUTE format('ALTER TABLE tasks ADD CONSTRAINT %I %s', c.constraint_name, c.definition);
        END IF;
    END LOOP;
END
$$;

CREATE INDEX IF NOT EXISTS tasks_project_id_idx ON tasks (project_id);
CREATE INDEX IF NOT EXISTS tasks_status_id_idx ON tasks (status_id);
