-- After the bulk copy, stage 1 (beside the other tables' keys_*.sql, each on its own session):
-- the keys and the foreign-key column indexes of sub_tasks, built by one sort each instead of
-- a million random index inserts during the copy. Every statement here locks sub_tasks alone, so the
-- three files of the stage never wait for each other. Re-runnable: each step checks the
-- catalog first.
--
-- The indexes are built without CONCURRENTLY because that cannot run inside this multi-statement
-- script; the follow's writes to sub_tasks wait while its indexes build.

DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            ('sub_tasks_pkey', 'PRIMARY KEY (id)'),
            ('sub_tasks_legacy_id_key', 'UNIQUE (legacy_id)')
        ) AS wanted (constraint_name, definition)
    LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_constraint
            WHERE conrelid = 'sub_tasks'::regclass AND conname = c.constraint_name
        ) THEN
            EXECUTE format('ALTER TABLE sub_tasks ADD CONSTRAINT %I %s', c.constraint_name, c.definition);
        END IF;
    END LOOP;
END
$$;

CREATE INDEX IF NOT EXISTS sub_tasks_task_id_idx ON sub_tasks (task_id);
CREATE INDEX IF NOT EXISTS sub_tasks_status_id_idx ON sub_tasks (status_id);
