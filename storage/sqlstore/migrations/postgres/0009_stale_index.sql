-- taskfleet schema version 9 (PostgreSQL): the index of pending results
-- (the starts in flight) the leader's sweep for dispatched starts whose
-- replica's lease expired (ClaimStale) can read instead of the whole
-- results table; see the SQLite migration.
CREATE INDEX results_leased ON results (lease_until) WHERE state = 'pending';
