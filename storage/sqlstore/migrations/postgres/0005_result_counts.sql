-- taskfleet schema version 5 (PostgreSQL): nothing to do. This version
-- gives SQLite trigger-maintained result counters; PostgreSQL has had
-- them since version 1 (result_deltas). Both dialects keep the same
-- version numbers.
SELECT 1;
