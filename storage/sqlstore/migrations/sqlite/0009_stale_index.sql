-- taskfleet schema version 9 (SQLite): the leader's sweep for dispatched
-- starts whose replica's lease expired (ClaimStale, every LeaseTTL)
-- reads pending results only; without this index it scanned the whole
-- results table (every task on every device) at each sweep. Pending
-- results are the starts in flight, so the index stays small.
CREATE INDEX results_leased ON results (lease_until) WHERE state = 'pending';
