-- taskfleet schema version 8 (SQLite): the dispatch ledger without its
-- AUTOINCREMENT key, which was never read but cost an update of
-- sqlite_sequence per dispatched run; rows keep SQLite's implicit rowid.
CREATE TABLE dispatch_log_v8 (
    task_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    run_id    INTEGER NOT NULL,
    epoch     INTEGER NOT NULL,
    owner     TEXT NOT NULL,
    at        INTEGER NOT NULL
);
INSERT INTO dispatch_log_v8 (task_id, device_id, run_id, epoch, owner, at)
    SELECT task_id, device_id, run_id, epoch, owner, at FROM dispatch_log ORDER BY id;
DROP TABLE dispatch_log;
ALTER TABLE dispatch_log_v8 RENAME TO dispatch_log;
