package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/taskfleet/taskfleet/storage"
)

// AppendEvents implements storage.EventStore. A keyed event first reserves
// its (task, key) in event_keys; the reservation outlives PurgeEvents, so a
// late duplicate of a purged event stays refused. Within one call only the
// first event of a key is recorded; events keep the call's order (their
// ids ascend in it); events of unknown tasks are skipped.
//
// The writes are set-based, so a batch costs a few statements whatever its
// size: PostgreSQL runs one statement (the array parameters expanded by
// unnest, the key reservation a data-modifying CTE whose RETURNING names
// the keys this call reserved); SQLite runs, in one transaction, multi-row
// statements of up to sqliteChunk rows prepared once at Open: the key
// reservations (INSERT ... ON CONFLICT DO NOTHING RETURNING) and then the
// events.
func (s *Store) AppendEvents(ctx context.Context, p storage.AppendEventsParams) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	if len(p.Events) == 0 {
		return 0, nil
	}
	var n int
	var err error
	if s.dialect == Postgres {
		n, err = s.appendEventsPostgres(ctx, p.Events)
	} else {
		err = s.inTx(ctx, func(tx *sqlx.Tx) error {
			n, err = s.appendEventsSQLite(ctx, tx, p.Events)
			return err
		})
	}
	if err != nil {
		return 0, fmt.Errorf("sqlstore: append events: %w", mapErr(err))
	}
	return n, nil
}

// pgAppendEvents appends a batch of events in one statement. known keeps
// the events of existing tasks and holds FOR KEY SHARE on those tasks until
// the statement ends, so a concurrent DeleteTask waits. u numbers the
// events (ord) and ranks each key's events in call order (rn); reserved
// inserts each key's first event's key and returns the keys that were
// free; the events inserted are the keyless ones and the first event of
// each reserved key, in call order.
const pgAppendEvents = `WITH known AS (SELECT id FROM tasks WHERE id = ANY($9::text[]) FOR KEY SHARE),
u AS (
  SELECT e.*, row_number() OVER (PARTITION BY e.task_id, e.key ORDER BY e.ord) AS rn
  FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[])
    WITH ORDINALITY AS e (task_id, device_id, run_id, at, level, severity, message, key, ord)
  JOIN known ON known.id = e.task_id),
reserved AS (
  INSERT INTO event_keys (task_id, key)
  SELECT task_id, key FROM u WHERE key <> '' AND rn = 1
  ON CONFLICT DO NOTHING
  RETURNING task_id, key)
INSERT INTO events (task_id, device_id, run_id, at, level, severity, message, key)
SELECT u.task_id, u.device_id, u.run_id, ` + "%s" + `, u.level, u.severity, u.message, u.key
FROM u
WHERE u.key = '' OR (u.rn = 1 AND EXISTS (SELECT 1 FROM reserved r WHERE r.task_id = u.task_id AND r.key = u.key))
ORDER BY u.ord`

var pgAppendEventsSQL = fmt.Sprintf(pgAppendEvents, pgMicros("u.at"))

func (s *Store) appendEventsPostgres(ctx context.Context, evs []storage.EventRecord) (int, error) {
	n := len(evs)
	tasks, devs, levels, sevs, msgs, keys := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	runs, ats := make([]int64, n), make([]int64, n)
	var taskIDs []string // distinct, usually one
	for i := range evs {
		e := &evs[i]
		if !slices.Contains(taskIDs, e.TaskID) {
			taskIDs = append(taskIDs, e.TaskID)
		}
		tasks[i], devs[i], levels[i], sevs[i], msgs[i], keys[i] = e.TaskID, e.DeviceID, e.Level, e.Severity, e.Message, e.Key
		runs[i], ats[i] = e.RunID, microsOf(e.At)
	}
	res, err := s.w.ExecContext(ctx, pgAppendEventsSQL, tasks, devs, runs, ats, levels, sevs, msgs, keys, taskIDs)
	if err != nil {
		return 0, err
	}
	k, err := res.RowsAffected()
	return int(k), err
}

// sqliteRows returns "(?,...,?)" with cols placeholders, rows times, comma
// separated.
func sqliteRows(rows, cols int) string {
	one := "(?" + strings.Repeat(",?", cols-1) + ")"
	return one + strings.Repeat(","+one, rows-1)
}

// sqliteEventKeys and sqliteEvents are the multi-row key reservation and
// event insert of rows rows.
func sqliteEventKeys(rows int) string {
	return `INSERT INTO event_keys (task_id, key) VALUES ` + sqliteRows(rows, 2) + ` ON CONFLICT DO NOTHING RETURNING task_id, key`
}

func sqliteEvents(rows int) string {
	return `INSERT INTO events (task_id, device_id, run_id, at, level, severity, message, key) VALUES ` + sqliteRows(rows, 8)
}

// chunkOf returns the index k and size of the largest prepared statement
// (sqliteChunk>>k rows) that fits n rows.
func chunkOf(n int) (k, rows int) {
	k, rows = 0, sqliteChunk
	for rows > n {
		k, rows = k+1, rows/2
	}
	return k, rows
}

func (s *Store) appendEventsSQLite(ctx context.Context, tx *sqlx.Tx, evs []storage.EventRecord) (int, error) {
	kept, err := knownOnly(ctx, s, tx, evs, func(e *storage.EventRecord) string { return e.TaskID })
	if err != nil || len(kept) == 0 {
		return 0, err
	}
	type tk struct{ task, key string }
	// first[i]: kept[i] is the first event of its key in this call.
	first := make([]bool, len(kept))
	var wanted []tk
	seen := make(map[tk]bool)
	for i := range kept {
		if kept[i].Key == "" {
			continue
		}
		k := tk{kept[i].TaskID, kept[i].Key}
		if !seen[k] {
			seen[k] = true
			first[i] = true
			wanted = append(wanted, k)
		}
	}
	reserved := make(map[tk]bool, len(wanted))
	args := make([]any, 0, 8*min(len(kept), sqliteChunk))
	for rest := wanted; len(rest) > 0; {
		k, rows := chunkOf(len(rest))
		args = args[:0]
		for _, w := range rest[:rows] {
			args = append(args, w.task, w.key)
		}
		rest = rest[rows:]
		r, err := tx.StmtContext(ctx, s.eventKeys[k]).QueryContext(ctx, args...)
		if err != nil {
			return 0, err
		}
		for r.Next() {
			var got tk
			if err := r.Scan(&got.task, &got.key); err != nil {
				r.Close()
				return 0, err
			}
			reserved[got] = true
		}
		if err := r.Close(); err != nil {
			return 0, err
		}
		if err := r.Err(); err != nil {
			return 0, err
		}
	}
	// The events to write, as indexes into kept (a copy of each record
	// was a tenth of a simulated week's allocations).
	write := make([]int, 0, len(kept))
	for i := range kept {
		e := &kept[i]
		if e.Key == "" || (first[i] && reserved[tk{e.TaskID, e.Key}]) {
			write = append(write, i)
		}
	}
	for rest := write; len(rest) > 0; {
		k, rows := chunkOf(len(rest))
		args = args[:0]
		for _, i := range rest[:rows] {
			e := &kept[i]
			args = append(args, e.TaskID, e.DeviceID, e.RunID, microsOf(e.At), e.Level, e.Severity, e.Message, e.Key)
		}
		rest = rest[rows:]
		if _, err := tx.StmtContext(ctx, s.events[k]).ExecContext(ctx, args...); err != nil {
			return 0, err
		}
	}
	return len(write), nil
}

// ListEvents implements storage.EventStore.
func (s *Store) ListEvents(ctx context.Context, p storage.ListEventsParams) ([]storage.EventRecord, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	limit := p.Limit
	if limit <= 0 {
		limit = storage.DefaultListLimit
	}
	var b strings.Builder
	b.WriteString("SELECT " + eventCols + " FROM events WHERE task_id = ? AND id > ?")
	args := []any{p.TaskID, p.AfterID}
	if p.DeviceID != "" {
		b.WriteString(" AND device_id = ?")
		args = append(args, p.DeviceID)
	}
	if !p.From.IsZero() {
		b.WriteString(" AND at >= ?")
		args = append(args, s.tv(p.From))
	}
	if !p.To.IsZero() {
		b.WriteString(" AND at < ?")
		args = append(args, s.tv(p.To))
	}
	b.WriteString(" ORDER BY id LIMIT ?")
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, s.r.Rebind(b.String()), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list events of task %q: %w", p.TaskID, mapErr(err))
	}
	defer rows.Close()
	var out []storage.EventRecord
	for rows.Next() {
		var e storage.EventRecord
		var at dbTime
		if err := rows.Scan(&e.ID, &e.TaskID, &e.DeviceID, &e.RunID, &at, &e.Level, &e.Severity, &e.Message, &e.Key); err != nil {
			return nil, fmt.Errorf("sqlstore: list events of task %q: %w", p.TaskID, mapErr(err))
		}
		e.At = at.T
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: list events of task %q: %w", p.TaskID, mapErr(err))
	}
	return out, nil
}

// PurgeEvents implements storage.EventStore (a range delete on the
// (task_id, at) index). De-duplication keys are kept.
func (s *Store) PurgeEvents(ctx context.Context, p storage.PurgeEventsParams) (int64, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	res, err := s.w.ExecContext(ctx, s.q.purgeEvents, p.TaskID, s.tv(p.Before))
	if err != nil {
		return 0, fmt.Errorf("sqlstore: purge events of task %q: %w", p.TaskID, mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlstore: purge events of task %q: %w", p.TaskID, mapErr(err))
	}
	return n, nil
}
