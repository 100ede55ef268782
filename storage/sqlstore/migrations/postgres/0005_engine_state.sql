-- taskfleet schema version 5 (PostgreSQL): the engine's own records
-- (storage.EngineStateStore): fired activations and stop orders, kept
-- apart from history so history retention and history settings never
-- touch them and device events cannot collide with them. They go with the
-- task (ON DELETE CASCADE); the engine purges old ones itself.
CREATE TABLE engine_state (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id text COLLATE "C" NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    kind    text COLLATE "C" NOT NULL,
    key     text COLLATE "C" NOT NULL,
    run_id  bigint      NOT NULL,
    at      timestamptz NOT NULL,
    UNIQUE (task_id, kind, key)
);
