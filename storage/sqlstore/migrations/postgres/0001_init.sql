-- taskfleet schema version 1 (PostgreSQL).
-- Every text key column uses COLLATE "C" so ordering, comparisons and
-- indexes are byte order whatever the database's locale. Times are
-- timestamptz (UTC, microseconds); the zero time.Time is stored as
-- 0001-01-01 00:00:00+00, so sortable columns never hold NULL.

CREATE TABLE tasks (
    id           text COLLATE "C" NOT NULL PRIMARY KEY,
    name         text COLLATE "C" NOT NULL,
    search_name  text COLLATE "C" NOT NULL,
    unique_name  text COLLATE "C" UNIQUE,   -- NULL when the task has none
    application  text COLLATE "C" NOT NULL,
    task_type    text COLLATE "C" NOT NULL,
    kind         text COLLATE "C" NOT NULL,
    group_id     text COLLATE "C" NOT NULL,
    device_id    text COLLATE "C" NOT NULL,
    revision     bigint      NOT NULL,
    suspended    boolean     NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    last_run_id  bigint      NOT NULL DEFAULT 0, -- AllocateRunID's counter
    body         bytea       NOT NULL
);
CREATE INDEX tasks_name ON tasks (name, id);
CREATE INDEX tasks_created ON tasks (created_at, id);
CREATE INDEX tasks_group ON tasks (group_id);
CREATE INDEX tasks_device ON tasks (device_id);

CREATE TABLE revisions (
    task_id  text COLLATE "C" NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    number   bigint      NOT NULL,
    author   text        NOT NULL,
    at       timestamptz NOT NULL,
    action   text        NOT NULL,
    body     bytea       NOT NULL,
    diff     bytea,
    PRIMARY KEY (task_id, number)
);

-- results is the hot table (every device report lands here), so it has no
-- foreign key: a per-row FK check costs about a quarter of the ingest time.
-- UpsertResults checks the task exists in the same transaction (holding
-- FOR KEY SHARE on PostgreSQL, the write lock on SQLite) and DeleteTask
-- deletes the task's results in its transaction.
CREATE TABLE results (
    task_id          text COLLATE "C" NOT NULL, -- no foreign key: see above
    device_id        text COLLATE "C" NOT NULL,
    run_id           bigint      NOT NULL,
    seq              bigint      NOT NULL,
    state            text COLLATE "C" NOT NULL,
    due_at           timestamptz NOT NULL,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    progress         integer     NOT NULL,
    message          text        NOT NULL,
    restart_required boolean     NOT NULL,
    PRIMARY KEY (task_id, device_id)
);
-- ListResults by state and TaskStatistics (index-only scans).
CREATE INDEX results_task_state ON results (task_id, state) INCLUDE (restart_required);
-- DueResults: the engine's due-run query.
CREATE INDEX results_due ON results (state, due_at, task_id, device_id);

CREATE TABLE events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id   text COLLATE "C" NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    device_id text COLLATE "C" NOT NULL,
    run_id    bigint      NOT NULL,
    at        timestamptz NOT NULL,
    level     text        NOT NULL,
    severity  text        NOT NULL,
    message   text        NOT NULL,
    key       text        NOT NULL
);
CREATE INDEX events_task_id ON events (task_id, id);
CREATE INDEX events_task_at ON events (task_id, at);

-- De-duplication keys outlive PurgeEvents, so a late duplicate delivery of
-- a purged event is still refused; they go with the task.
CREATE TABLE event_keys (
    task_id text COLLATE "C" NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    key     text COLLATE "C" NOT NULL,
    PRIMARY KEY (task_id, key)
);
