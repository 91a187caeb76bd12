-- Swap back after a cutover, run by `switchyard rollback` on the cutover's side (the source):
-- the compatibility views go, the legacy tables get their names back. switchyard lifts the
-- read-only triggers of a two-server cutover itself.
--
-- What this keeps: the legacy tables hold every write acknowledged before the cutover. Writes
-- made through the new tables after the cutover stay there; they are not copied back.

DO $swap_back$
BEGIN
    IF to_regclass('company_projects_legacy') IS NULL THEN
        RETURN; -- two servers: the legacy tables were never renamed
    END IF;

    DROP VIEW IF EXISTS company_projects, company_services, vortex_items;
    ALTER TABLE company_projects_legacy RENAME TO company_projects;
    ALTER TABLE company_services_legacy RENAME TO company_services;
    ALTER TABLE vortex_items_legacy     RENAME TO vortex_items;
END
$swap_back$;
