-- After the bulk copy, stage 1 (beside the other tables' keys_*.sql, each on its own session):
-- the keys and the foreign-key column indexes of projects, built by one sort each instead of
-- a million random index inserts during the copy. Every statement here locks projects alone, so the
-- three files of the stage never wait for each other. Re-runnable: each step checks the
-- catalog first.
--
-- The indexes are built without CONCURRENTLY because that cannot run inside this multi-statement
-- script; the follow's writes to projects wait while its indexes build.

DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            ('projects_pkey', 'PRIMARY KEY (id)'),
            ('projects_legacy_key', 'UNIQUE (legacy_table, legacy_id)')
        ) AS wanted (constraint_name, definition)
    LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_constraint
            WHERE conrelid = 'projects'::regclass AND conname = c.constraint_name
        ) THEN
            EXECUTE format('ALTER TABLE projects ADD CONSTRAINT %I %s', c.constraint_name, c.definition);
        END IF;
    END LOOP;
END
$$;

CREATE INDEX IF NOT EXISTS projects_team_id_idx ON projects (team_id);
CREATE INDEX IF NOT EXISTS projects_stage_id_idx ON projects (stage_id);
