-- taskfleet schema version 11 (PostgreSQL): dispatch moves out of the
-- results table.
--
-- Before, dispatching a run rewrote its result row (128 bytes of data,
-- every index, the counter trigger's transition tables) to mark it
-- pending and leased: half the speed of the same claim on a bare queue
-- table (bench/README.md, "the anatomy of the gap"). Now:
--
--   result_queue  holds one row per result in state 'scheduled' that no
--                 replica has dispatched: the key, the run and seq the
--                 result has, and its due time. DispatchDue deletes the
--                 rows it claims (a delete marks the row, it writes no
--                 index entry).
--   result_leases holds one row per dispatched result no device has
--                 answered: the state and seq DispatchDue gave it, its
--                 update time, the result's own seq under it (base_seq)
--                 and the lease (owner, epoch, until).
--                 ClaimStale and RenewClaims write only here.
--
-- The result row itself stays as it was scheduled until the device
-- answers; every read shows a leased result with its lease row's state,
-- seq and update time (the lease row overlays it). A lease row exists
-- only while its result is in state 'scheduled' with the lease's run and
-- base_seq; a
-- queue row only while its result is 'scheduled' with the queue row's run
-- and seq and no lease exists. The counters (result_deltas) count a
-- leased result in its lease's state: DispatchDue and whoever deletes a
-- lease row write those deltas explicitly.
CREATE TABLE result_queue (
    task_id   text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    run_id    bigint      NOT NULL,
    seq       bigint      NOT NULL,
    due_at    timestamptz NOT NULL,
    PRIMARY KEY (task_id, device_id)
);
CREATE INDEX result_queue_due ON result_queue (due_at, task_id, device_id);

CREATE TABLE result_leases (
    task_id    text COLLATE "C" NOT NULL,
    device_id  text COLLATE "C" NOT NULL,
    run_id     bigint      NOT NULL,
    base_seq   bigint      NOT NULL, -- the result's seq under the lease
    seq        bigint      NOT NULL,
    state      text COLLATE "C" NOT NULL,
    due_at     timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    owner      text COLLATE "C" NOT NULL,
    epoch      bigint      NOT NULL,
    until      timestamptz NOT NULL,
    PRIMARY KEY (task_id, device_id)
);
-- No index on until: ClaimStale (the leader's sweep, once per LeaseTTL)
-- reads this table whole, which holds only the starts in flight, in
-- narrow rows; an index would cost every dispatched run an index entry
-- (about 5% of DispatchDue) and make every lease renewal rewrite it
-- (RenewClaims stays a HOT update without one).

-- Results already dispatched and leased keep their lease: the lease row
-- takes the dispatched state and seq, and the result goes back to
-- 'scheduled' underneath it (the trigger counts that move; the explicit
-- deltas below count the lease's state back, so the counters do not move).
INSERT INTO result_leases (task_id, device_id, run_id, base_seq, seq, state, due_at, updated_at, owner, epoch, until)
SELECT task_id, device_id, run_id, seq, seq, state, due_at, updated_at, lease_owner, lease_epoch, lease_until
FROM results WHERE state = 'pending' AND lease_owner <> '';
UPDATE results SET state = 'scheduled' WHERE state = 'pending' AND lease_owner <> '';
INSERT INTO result_deltas (task_id, state, n, restart)
SELECT l.task_id, v.state, v.n, 0
FROM (SELECT task_id, state, COUNT(*) AS c FROM result_leases GROUP BY task_id, state) l,
     LATERAL (VALUES (l.state, l.c), ('scheduled', -l.c)) AS v (state, n);

INSERT INTO result_queue (task_id, device_id, run_id, seq, due_at)
SELECT r.task_id, r.device_id, r.run_id, r.seq, r.due_at FROM results r
WHERE r.state = 'scheduled'
  AND NOT EXISTS (SELECT 1 FROM result_leases l WHERE l.task_id = r.task_id AND l.device_id = r.device_id);

DROP INDEX results_due;
DROP INDEX results_leased;
ALTER TABLE results DROP COLUMN lease_owner, DROP COLUMN lease_epoch, DROP COLUMN lease_until;
