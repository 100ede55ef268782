-- taskfleet schema version 11 (SQLite): nothing changes. On PostgreSQL
-- this version moves dispatch out of the results table (a queue of the
-- scheduled runs and a table of the leased ones); SQLite has one writer,
-- no concurrent replicas to dispatch between, and keeps dispatching on
-- results. The version exists so both dialects number their schemas alike.
SELECT 1;
