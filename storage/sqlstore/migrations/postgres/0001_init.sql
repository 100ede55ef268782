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
-- ListResults filtered by state, in device order.
CREATE INDEX results_task_state ON results (task_id, state, device_id);
-- DueResults: the engine's due-run query.
CREATE INDEX results_due ON results (state, due_at, task_id, device_id);

-- TaskStatistics must not scan a million-device task. Statement-level
-- triggers append one delta row per (task, state) per statement, built
-- from the transition tables; statistics sum a task's deltas, and
-- compaction folds them back into one row per state. Deltas are
-- insert-only, so concurrent writers never wait for each other on a
-- counter row. The functions keep the search_path of the migration, so a
-- write from a session with another search_path still finds the table.
CREATE TABLE result_deltas (
    task_id text COLLATE "C" NOT NULL,
    state   text COLLATE "C" NOT NULL,
    n       bigint NOT NULL,  -- results in the state
    restart bigint NOT NULL   -- of which restart_required
);
CREATE INDEX result_deltas_task ON result_deltas (task_id);

CREATE FUNCTION taskfleet_results_inserted() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO result_deltas (task_id, state, n, restart)
    SELECT task_id, state, COUNT(*), COUNT(*) FILTER (WHERE restart_required)
    FROM new_rows GROUP BY task_id, state;
    RETURN NULL;
END $$;

CREATE FUNCTION taskfleet_results_updated() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO result_deltas (task_id, state, n, restart)
    SELECT task_id, state, SUM(n), SUM(r) FROM (
        SELECT task_id, state, 1 AS n, CASE WHEN restart_required THEN 1 ELSE 0 END AS r FROM new_rows
        UNION ALL
        SELECT task_id, state, -1, CASE WHEN restart_required THEN -1 ELSE 0 END FROM old_rows
    ) d
    GROUP BY task_id, state HAVING SUM(n) <> 0 OR SUM(r) <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION taskfleet_results_deleted() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO result_deltas (task_id, state, n, restart)
    SELECT task_id, state, -COUNT(*), -COUNT(*) FILTER (WHERE restart_required)
    FROM old_rows GROUP BY task_id, state;
    RETURN NULL;
END $$;

CREATE TRIGGER results_inserted AFTER INSERT ON results
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION taskfleet_results_inserted();
CREATE TRIGGER results_updated AFTER UPDATE ON results
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION taskfleet_results_updated();
CREATE TRIGGER results_deleted AFTER DELETE ON results
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION taskfleet_results_deleted();

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
