-- taskfleet schema version 5 (SQLite): the engine's own records
-- (storage.EngineStateStore), apart from history; see the PostgreSQL
-- migration. at is microseconds since the Unix epoch, UTC.
CREATE TABLE engine_state (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    kind    TEXT    NOT NULL,
    key     TEXT    NOT NULL,
    run_id  INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    UNIQUE (task_id, kind, key)
);
