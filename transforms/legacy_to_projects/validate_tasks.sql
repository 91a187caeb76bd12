-- After the bulk copy, stage 3 (beside the other tables' validate_*.sql): validate each
-- foreign key of tasks still NOT VALID. VALIDATE CONSTRAINT takes SHARE UPDATE EXCLUSIVE on tasks
-- and ROW SHARE on the table it references, which do not conflict with the other files of the
-- stage, so the three scans run at the same time.
--
-- The legacy data has orphans (items pointing at projects that never existed, sub-tasks whose
-- parent was deleted), so validation may fail; the constraint then stays NOT VALID, still
-- enforced for new rows, and a NOTICE says so. A second run retries only those validations.

DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT conname AS constraint_name
        FROM pg_constraint
        WHERE contype = 'f' AND NOT convalidated AND conrelid = 'tasks'::regclass
        ORDER BY conname
    LOOP
        BEGIN
            EXECUTE format('ALTER TABLE tasks VALIDATE CONSTRAINT %I', c.constraint_name);
        EXCEPTION WHEN foreign_key_violation THEN
            RAISE NOTICE 'constraint % on % stays NOT VALID because of orphan rows: %',
                c.constraint_name, 'tasks', SQLERRM;
        END;
    END LOOP;
END
$$;
