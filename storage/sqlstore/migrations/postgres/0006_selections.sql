-- taskfleet schema version 6 (PostgreSQL): saved device selections (the
-- product documentation's "existing device selections") beside the
-- inventory, and their history. IF NOT EXISTS keeps the migration safe to
-- re-apply.
CREATE TABLE IF NOT EXISTS selections (
    id         text COLLATE "C" NOT NULL PRIMARY KEY,
    name       text        NOT NULL,
    expr       text        NOT NULL,
    revision   bigint      NOT NULL, -- the number of its latest history row
    updated_at timestamptz NOT NULL,
    updated_by text        NOT NULL
);

-- One row per change, kept after the selection is deleted.
CREATE TABLE IF NOT EXISTS selection_revisions (
    selection_id text COLLATE "C" NOT NULL,
    number       bigint      NOT NULL,
    action       text        NOT NULL, -- created, updated, deleted
    actor        text        NOT NULL,
    at           timestamptz NOT NULL,
    name         text        NOT NULL,
    expr         text        NOT NULL,
    changed      text        NOT NULL, -- comma-separated: name, expr
    PRIMARY KEY (selection_id, number)
);
