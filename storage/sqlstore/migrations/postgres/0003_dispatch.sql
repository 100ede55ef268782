-- taskfleet schema version 3 (PostgreSQL): leases for several server
-- replicas on one database (storage.Claimer, storage.Leader).
-- lease_until is judged against the database's now(), never a replica's
-- clock; lease_epoch grows with every claim and fences late completions.
ALTER TABLE results ADD COLUMN lease_owner text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE results ADD COLUMN lease_epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE results ADD COLUMN lease_until timestamptz NOT NULL DEFAULT '0001-01-01 00:00:00+00';

-- One row per accepted dispatch (no unique key on purpose: a duplicate
-- dispatch would show as a second row, so the ledger can be audited).
CREATE TABLE dispatch_log (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id   text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    run_id    bigint      NOT NULL,
    epoch     bigint      NOT NULL,
    owner     text        NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dispatch_log_task ON dispatch_log (task_id, device_id, run_id);

CREATE TABLE leaders (
    name  text COLLATE "C" NOT NULL PRIMARY KEY,
    owner text        NOT NULL,
    epoch bigint      NOT NULL,
    until timestamptz NOT NULL
);
