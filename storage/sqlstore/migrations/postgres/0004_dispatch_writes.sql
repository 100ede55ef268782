-- taskfleet schema version 4 (PostgreSQL): fewer index writes per result
-- update, so a dispatched run (and every later device report) costs less.
-- The due index only holds scheduled results: a result leaves it for good
-- when it is dispatched, so the dispatch and every state change after it
-- insert no entry into it. DueResults for other states (pending, read
-- once when a server opens) scans the table instead.
DROP INDEX results_due;
CREATE INDEX results_due ON results (due_at, task_id, device_id) WHERE state = 'scheduled';
-- The dispatch ledger is append-only audit data read by whole-table
-- queries; its per-row index cost a write per dispatch and is dropped.
DROP INDEX dispatch_log_task;
