-- taskfleet schema version 1 (SQLite).
-- Times are INTEGER microseconds since the Unix epoch, UTC; the zero
-- time.Time is stored as its own instant (-62135596800000000), so a
-- sortable column never holds NULL. Text compares with BINARY (byte order).

CREATE TABLE tasks (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    search_name  TEXT    NOT NULL,
    unique_name  TEXT    UNIQUE,            -- NULL when the task has none
    application  TEXT    NOT NULL,
    task_type    TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    group_id     TEXT    NOT NULL,
    device_id    TEXT    NOT NULL,
    revision     INTEGER NOT NULL,
    suspended    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    last_run_id  INTEGER NOT NULL DEFAULT 0, -- AllocateRunID's counter
    body         BLOB    NOT NULL
);
CREATE INDEX tasks_name ON tasks (name, id);
CREATE INDEX tasks_created ON tasks (created_at, id);
CREATE INDEX tasks_group ON tasks (group_id);
CREATE INDEX tasks_device ON tasks (device_id);

CREATE TABLE revisions (
    task_id  TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    number   INTEGER NOT NULL,
    author   TEXT    NOT NULL,
    at       INTEGER NOT NULL,
    action   TEXT    NOT NULL,
    body     BLOB    NOT NULL,
    diff     BLOB,
    PRIMARY KEY (task_id, number)
);

-- results is the hot table (every device report lands here), so it has no
-- foreign key: a per-row FK check costs about a quarter of the ingest time.
-- UpsertResults checks the task exists in the same transaction (holding
-- FOR KEY SHARE on PostgreSQL, the write lock on SQLite) and DeleteTask
-- deletes the task's results in its transaction.
CREATE TABLE results (
    task_id          TEXT    NOT NULL, -- no foreign key: see above
    device_id        TEXT    NOT NULL,
    run_id           INTEGER NOT NULL,
    seq              INTEGER NOT NULL,
    state            TEXT    NOT NULL,
    due_at           INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    finished_at      INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    progress         INTEGER NOT NULL,
    message          TEXT    NOT NULL,
    restart_required INTEGER NOT NULL,
    PRIMARY KEY (task_id, device_id)
) WITHOUT ROWID; -- the key is the table: one B-tree fewer per write
-- ListResults by state and TaskStatistics (covering).
CREATE INDEX results_task_state ON results (task_id, state, restart_required);
-- DueResults: the engine's due-run query.
CREATE INDEX results_due ON results (state, due_at, task_id, device_id);

CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused
    task_id   TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    device_id TEXT    NOT NULL,
    run_id    INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    level     TEXT    NOT NULL,
    severity  TEXT    NOT NULL,
    message   TEXT    NOT NULL,
    key       TEXT    NOT NULL
);
CREATE INDEX events_task_id ON events (task_id, id);
CREATE INDEX events_task_at ON events (task_id, at);

-- De-duplication keys outlive PurgeEvents, so a late duplicate delivery of
-- a purged event is still refused; they go with the task.
CREATE TABLE event_keys (
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    key     TEXT NOT NULL,
    PRIMARY KEY (task_id, key)
) WITHOUT ROWID;
