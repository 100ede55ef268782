-- taskfleet schema version 8 (PostgreSQL): the dispatch ledger becomes a
-- bare heap. Its identity column was never read, yet every dispatched run
-- paid for it: a sequence increment and an entry in its primary-key index
-- (three of the four buffer writes of a ledger row). Without it a ledger
-- row is one heap insert. Duplicate dispatches still show as a second row
-- with the same (task_id, device_id, run_id); DROP COLUMN only changes the
-- catalog, so it is instant on a ledger of any size.
ALTER TABLE dispatch_log DROP COLUMN id;
