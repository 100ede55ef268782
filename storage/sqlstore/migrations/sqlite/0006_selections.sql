-- taskfleet schema version 6 (SQLite): saved device selections (the
-- product documentation's "existing device selections") beside the
-- inventory, and their history. IF NOT EXISTS keeps the migration safe to
-- re-apply.
CREATE TABLE IF NOT EXISTS selections (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    expr       TEXT    NOT NULL,
    revision   INTEGER NOT NULL, -- the number of its latest history row
    updated_at INTEGER NOT NULL,
    updated_by TEXT    NOT NULL
) WITHOUT ROWID;

-- One row per change, kept after the selection is deleted.
CREATE TABLE IF NOT EXISTS selection_revisions (
    selection_id TEXT    NOT NULL,
    number       INTEGER NOT NULL,
    action       TEXT    NOT NULL, -- created, updated, deleted
    actor        TEXT    NOT NULL,
    at           INTEGER NOT NULL,
    name         TEXT    NOT NULL,
    expr         TEXT    NOT NULL,
    changed      TEXT    NOT NULL, -- comma-separated: name, expr
    PRIMARY KEY (selection_id, number)
) WITHOUT ROWID;
