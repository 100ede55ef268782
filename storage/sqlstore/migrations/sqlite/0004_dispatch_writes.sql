-- taskfleet schema version 4 (SQLite): the due index holds scheduled
-- results only (see the PostgreSQL migration); the ledger is not indexed.
DROP INDEX results_due;
CREATE INDEX results_due ON results (due_at, task_id, device_id) WHERE state = 'scheduled';
DROP INDEX dispatch_log_task;
