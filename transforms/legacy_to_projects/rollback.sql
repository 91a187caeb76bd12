-- Swap back after a cutover, run by `switchyard rollback` on the cutover's side (the source):
-- the compatibility views go, the legacy tables get their names back. switchyard lifts the
-- read-only triggers of a two-server cutover itself.
--
-- switchyard tells this file the layout in the setting switchyard.same_database ('on' or 'off',
-- for this transaction only), and runs it only when a legacy name no longer resolves to its
-- legacy table (or the migration is recorded as cut over). With one database the renamed
-- tables must be there, or it raises and nothing changes; afterwards switchyard checks that
-- every legacy name is its legacy table again.
--
-- What this keeps: the legacy tables hold every write acknowledged before the cutover. Writes
-- made through the new tables after the cutover stay there; they are not copied back.

DO $swap_back$
DECLARE
    layout text := nullif(current_setting('switchyard.same_database', true), '');
BEGIN
    IF layout IS NULL THEN
        RAISE EXCEPTION 'switchyard.same_database is not set: this file is run by `switchyard rollback`, which sets it'
            USING HINT = 'to run it by hand: SET LOCAL switchyard.same_database = ''on'' (or ''off'') first';
    END IF;
    IF layout = 'off' THEN
        RETURN; -- two servers: the legacy tables were never renamed
    END IF;
    IF to_regclass('company_projects_legacy') IS NULL OR to_regclass('company_services_legacy') IS NULL
       OR to_regclass('vortex_items_legacy') IS NULL THEN
        RAISE EXCEPTION 'one database, but the renamed legacy tables (company_projects_legacy, company_services_legacy, vortex_items_legacy) are not on the search_path (%): nothing to swap back',
            current_setting('search_path')
            USING HINT = 'put their schema on the source connection''s search_path, or rename them back by hand';
    END IF;

    DROP VIEW IF EXISTS company_projects, company_services, vortex_items;
    ALTER TABLE company_projects_legacy RENAME TO company_projects;
    ALTER TABLE company_services_legacy RENAME TO company_services;
    ALTER TABLE vortex_items_legacy     RENAME TO vortex_items;
END
$swap_back$;
