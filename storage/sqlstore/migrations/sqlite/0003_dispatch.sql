-- taskfleet schema version 3 (SQLite): leases for storage.Claimer and
-- storage.Leader. SQLite has one writer, so claims are serialized by its
-- write lock; lease_until is microseconds since the Unix epoch on the
-- database host's clock.
ALTER TABLE results ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE results ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE results ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;

CREATE TABLE dispatch_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    run_id    INTEGER NOT NULL,
    epoch     INTEGER NOT NULL,
    owner     TEXT NOT NULL,
    at        INTEGER NOT NULL
);
CREATE INDEX dispatch_log_task ON dispatch_log (task_id, device_id, run_id);

CREATE TABLE leaders (
    name  TEXT NOT NULL PRIMARY KEY,
    owner TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    until INTEGER NOT NULL
);
