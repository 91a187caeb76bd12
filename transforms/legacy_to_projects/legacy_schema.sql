-- The legacy schema of the seed migration, as the old application left it: free-text stages and
-- statuses, numbers and dates stored as text, e-mail addresses in any case, no foreign keys.
-- The demo generator (src/demo/generator.rs) runs this before loading; it is not re-runnable on
-- purpose, so that loading twice into one database fails loudly instead of mixing data sets.

CREATE TABLE company_projects (
    id          bigserial PRIMARY KEY,
    company_id  int       NOT NULL,
    name        text      NOT NULL,
    type        text,                 -- free-text stage: 'Planning', ' planning', 'in_progress', ...
    status      text,                 -- 'active', 'Active ', 'on hold', 'on-hold', 'archived'
    owner_email text,
    budget      text,                 -- '12,500.00', '3000', ''
    start_date  text,                 -- '2024-03-01', ''
    created_at  timestamp NOT NULL,
    updated_at  timestamp NOT NULL,
    meta        jsonb
);

CREATE TABLE company_services (
    id            bigserial PRIMARY KEY,
    company_id    int       NOT NULL,
    service_name  text      NOT NULL,
    type          text,
    status        text,
    contact_email text,
    monthly_fee   numeric(12,2),
    created_at    timestamp,
    updated_at    timestamp
);

CREATE TABLE vortex_items (
    id             bigserial PRIMARY KEY,
    project_id     bigint,             -- company_projects.id, or an id that never existed
    parent_item_id bigint,             -- NULL: a task; else the top-level item of a sub-task
    title          text      NOT NULL,
    status         text,               -- 'todo', 'To Do', 'doing', 'in progress', 'done', 'DONE'
    priority       text,               -- 'low' .. 'urgent' or '1' .. '4'
    assignee_email text,
    due            text,               -- a date as text, or ''
    body           text,
    created_at     timestamp,
    updated_at     timestamp
);
