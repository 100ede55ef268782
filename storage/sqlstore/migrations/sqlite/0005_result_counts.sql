-- taskfleet schema version 5 (SQLite): per-task result counters kept by
-- triggers, so TaskStatistics reads a handful of rows instead of counting
-- a task's results (about 0.3-0.8 s for a million-device task).
--
-- SQLite has one writer at a time, so a plain counter row per (task,
-- state) is never contended (PostgreSQL appends delta rows instead, see
-- 0001). The row triggers run inside the statement that changes results,
-- so the counters commit or roll back with it: a killed process leaves
-- them equal to the rows. A write from another connection (a host's own
-- SQL) is counted too. Rows reaching n = 0 stay; TaskStatistics skips
-- them, and DeleteTask removes the task's rows.
CREATE TABLE result_counts (
    task_id TEXT    NOT NULL,
    state   TEXT    NOT NULL,
    n       INTEGER NOT NULL, -- results in the state
    restart INTEGER NOT NULL, -- of which restart_required
    PRIMARY KEY (task_id, state)
) WITHOUT ROWID;

INSERT INTO result_counts (task_id, state, n, restart)
SELECT task_id, state, COUNT(*), SUM(CASE WHEN restart_required THEN 1 ELSE 0 END)
FROM results GROUP BY task_id, state;

CREATE TRIGGER results_count_insert AFTER INSERT ON results BEGIN
    INSERT INTO result_counts (task_id, state, n, restart)
    VALUES (NEW.task_id, NEW.state, 1, CASE WHEN NEW.restart_required THEN 1 ELSE 0 END)
    ON CONFLICT (task_id, state) DO UPDATE SET n = n + 1, restart = restart + excluded.restart;
END;

-- Only a change of what is counted touches the counters (a progress
-- report in the same state does not).
CREATE TRIGGER results_count_update AFTER UPDATE OF task_id, state, restart_required ON results
WHEN OLD.task_id IS NOT NEW.task_id OR OLD.state IS NOT NEW.state
  OR (OLD.restart_required <> 0) IS NOT (NEW.restart_required <> 0)
BEGIN
    UPDATE result_counts SET n = n - 1, restart = restart - CASE WHEN OLD.restart_required THEN 1 ELSE 0 END
    WHERE task_id = OLD.task_id AND state = OLD.state;
    INSERT INTO result_counts (task_id, state, n, restart)
    VALUES (NEW.task_id, NEW.state, 1, CASE WHEN NEW.restart_required THEN 1 ELSE 0 END)
    ON CONFLICT (task_id, state) DO UPDATE SET n = n + 1, restart = restart + excluded.restart;
END;

CREATE TRIGGER results_count_delete AFTER DELETE ON results BEGIN
    UPDATE result_counts SET n = n - 1, restart = restart - CASE WHEN OLD.restart_required THEN 1 ELSE 0 END
    WHERE task_id = OLD.task_id AND state = OLD.state;
END;
