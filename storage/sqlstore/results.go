package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/taskfleet/taskfleet/storage"
)

// upsertSet is the replace rule shared by both dialects: a stored result is
// replaced only by a newer (run_id, seq) pair. Rows whose WHERE fails are
// not counted by RowsAffected, on both engines.
const upsertSet = ` ON CONFLICT (task_id, device_id) DO UPDATE SET
 run_id = excluded.run_id, seq = excluded.seq, state = excluded.state, due_at = excluded.due_at,
 started_at = excluded.started_at, finished_at = excluded.finished_at, updated_at = excluded.updated_at,
 progress = excluded.progress, message = excluded.message, restart_required = excluded.restart_required
 WHERE (excluded.run_id, excluded.seq) > (results.run_id, results.seq)`

// pgUpsert writes a whole round in one statement and one round trip: one
// array parameter per column, expanded by unnest. The CTE keeps only
// results of existing tasks and holds FOR KEY SHARE on them until the
// transaction ends, so a concurrent DeleteTask waits (and then deletes
// these results too) instead of leaving orphans.
//
// Since schema version 11 the statement also keeps the dispatch tables
// in step: a record does not replace a result whose lease row holds an
// equal or newer (run, seq) (the dispatched state is what it competes
// with), every result the round leaves in state scheduled gets its queue
// row (replacing an older run's), and it answers with the number of
// results it inserted or replaced. pgCleanQueue and pgCleanLeases follow.
var pgUpsert = `WITH known AS (SELECT id FROM tasks WHERE id = ANY($13::text[]) FOR KEY SHARE),
ins AS (
 INSERT INTO results (` + resultCols + `)
 SELECT u.task_id, u.device_id, u.run_id, u.seq, u.state,
  ` + pgMicros("u.due_at") + `, ` + pgMicros("u.started_at") + `, ` + pgMicros("u.finished_at") + `, ` + pgMicros("u.updated_at") + `,
  u.progress, u.message, u.restart_required
 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[],
  $7::bigint[], $8::bigint[], $9::bigint[], $10::int[], $11::text[], $12::bool[])
  AS u (task_id, device_id, run_id, seq, state, due_at, started_at, finished_at, updated_at, progress, message, restart_required)
 JOIN known ON known.id = u.task_id
 WHERE NOT EXISTS (SELECT 1 FROM result_leases l WHERE l.task_id = u.task_id COLLATE "C" AND l.device_id = u.device_id COLLATE "C"
  AND (l.run_id, l.seq) >= (u.run_id, u.seq))` + upsertSet + `
 RETURNING task_id, device_id, run_id, seq, state, due_at),
queued AS (
 INSERT INTO result_queue (task_id, device_id, run_id, seq, due_at)
 SELECT task_id, device_id, run_id, seq, due_at FROM ins WHERE state = '` + queuedState + `'
 ON CONFLICT (task_id, device_id) DO UPDATE SET run_id = excluded.run_id, seq = excluded.seq, due_at = excluded.due_at)
SELECT COUNT(*) FROM ins`

// pgCleanQueue and pgCleanLeases follow every round of pgUpsert, in this
// order, as statements of their own (pgCleanLeases locks the leases in
// key order first, as RenewClaims does, so the two never deadlock): they delete the queue and lease rows
// of the round's keys ($1, $2) that no longer match their result (the
// round or a concurrent writer changed it), and count a deleted lease's
// result back from the lease's state to scheduled. The queue statement
// comes first and alone because it may wait for a replica dispatching the
// same row; the lease statement's snapshot, taken after that wait, then
// sees the lease that replica wrote.
const (
	pgCleanQueue = `DELETE FROM result_queue q
USING unnest($1::text[], $2::text[]) AS k (task_id, device_id)
WHERE q.task_id = k.task_id COLLATE "C" AND q.device_id = k.device_id COLLATE "C"
  AND NOT EXISTS (SELECT 1 FROM results r WHERE r.task_id = q.task_id AND r.device_id = q.device_id
      AND r.state = '` + queuedState + `' AND r.run_id = q.run_id AND r.seq = q.seq)`
	pgCleanLeases = `WITH lk AS (
 SELECT l.task_id, l.device_id FROM result_leases l
 JOIN unnest($1::text[], $2::text[]) AS k (task_id, device_id)
   ON l.task_id = k.task_id COLLATE "C" AND l.device_id = k.device_id COLLATE "C"
 WHERE NOT EXISTS (SELECT 1 FROM results r WHERE r.task_id = l.task_id AND r.device_id = l.device_id
       AND r.state = '` + queuedState + `' AND r.run_id = l.run_id AND r.seq = l.base_seq)
 ORDER BY l.task_id, l.device_id
 FOR UPDATE OF l),
gone AS (
 DELETE FROM result_leases l USING lk
 WHERE l.task_id = lk.task_id AND l.device_id = lk.device_id
   AND NOT EXISTS (SELECT 1 FROM results r WHERE r.task_id = l.task_id AND r.device_id = l.device_id
       AND r.state = '` + queuedState + `' AND r.run_id = l.run_id AND r.seq = l.base_seq)
 RETURNING l.task_id, l.state)
INSERT INTO result_deltas (task_id, state, n, restart)
SELECT g.task_id, v.state, v.n, 0 FROM (SELECT task_id, state, COUNT(*) AS c FROM gone GROUP BY task_id, state) g,
 LATERAL (VALUES (g.state, -g.c), ('` + queuedState + `', g.c)) AS v (state, n)`
)

// queuedState is the state of the results PostgreSQL keeps in
// result_queue, the only state DispatchDue takes from there.
const queuedState = "scheduled"

func pgMicros(col string) string {
	return "(timestamptz 'epoch' + interval '1 second' * (" + col + " / 1000000) + interval '1 microsecond' * (" + col + " % 1000000))"
}

// sqliteChunk is the largest number of rows per multi-row INSERT on SQLite
// (12 parameters each, far below SQLite's 32766-parameter limit). Fewer,
// larger statements cost less than one statement per row, and a prepared
// statement skips SQLite's parser, which otherwise dominates.
const sqliteChunk = 256

// sqliteUpsert returns the multi-row upsert of rows rows.
func sqliteUpsert(rows int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO results (" + resultCols + ") VALUES ")
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?)")
	}
	b.WriteString(upsertSet)
	return b.String()
}

// prepareSQLite prepares the multi-row upserts of sqliteChunk, sqliteChunk/2,
// ..., 1 rows on the writer connection, once at Open (preparing later
// would wait for the connection a transaction holds). Any batch is a sum
// of these sizes.
func (s *Store) prepareSQLite(ctx context.Context) error {
	for rows := sqliteChunk; rows >= 1; rows /= 2 {
		for _, p := range []struct {
			to *[]*sql.Stmt
			q  string
		}{{&s.upserts, sqliteUpsert(rows)}, {&s.eventKeys, sqliteEventKeys(rows)}, {&s.events, sqliteEvents(rows)}, {&s.ledger, sqliteLedger(rows)}, {&s.renews, sqliteRenew(rows)}} {
			st, err := s.w.PrepareContext(ctx, p.q)
			if err != nil {
				return fmt.Errorf("sqlstore: prepare: %w", mapErr(err))
			}
			*p.to = append(*p.to, st)
		}
	}
	return nil
}

// existingTasks returns which of ids name existing tasks. On PostgreSQL it
// takes FOR KEY SHARE locks, so a concurrent DeleteTask waits for the
// caller's transaction instead of breaking its foreign keys; on SQLite the
// caller already holds the only write lock.
func (s *Store) existingTasks(ctx context.Context, tx *sqlx.Tx, ids []string) (map[string]bool, error) {
	found := make(map[string]bool, len(ids))
	const chunk = 500
	for len(ids) > 0 {
		part := ids[:min(chunk, len(ids))]
		ids = ids[len(part):]
		var q string
		var args []any
		if s.dialect == Postgres {
			q, args = `SELECT id FROM tasks WHERE id = ANY($1) FOR KEY SHARE`, []any{part}
		} else {
			q = `SELECT id FROM tasks WHERE id IN (?` + strings.Repeat(",?", len(part)-1) + `)`
			args = make([]any, len(part))
			for i, id := range part {
				args[i] = id
			}
		}
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			found[id] = true
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// knownOnly keeps the items whose task exists, in order.
func knownOnly[T any](ctx context.Context, s *Store, tx *sqlx.Tx, items []T, taskOf func(*T) string) ([]T, error) {
	var ids []string
	seen := map[string]bool{}
	for i := range items {
		if id := taskOf(&items[i]); !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	found, err := s.existingTasks(ctx, tx, ids)
	if err != nil {
		return nil, err
	}
	if len(found) == len(ids) {
		return items, nil
	}
	kept := make([]T, 0, len(items))
	for i := range items {
		if found[taskOf(&items[i])] {
			kept = append(kept, items[i])
		}
	}
	return kept, nil
}

// rounds splits a batch so that no round names the same (task, device)
// twice, keeping each device's records in batch order: round k holds every
// device's k-th record. Applying the rounds in order gives exactly the
// result (and count) of applying the records one by one, and PostgreSQL's
// ON CONFLICT never touches a row twice in one statement (PostgreSQL only:
// SQLite applies a statement's rows one by one).
func rounds(rs []storage.ResultRecord) [][]storage.ResultRecord {
	type key struct{ task, dev string }
	seen := make(map[key]int, len(rs))
	var out [][]storage.ResultRecord
	dup := false
	for i := range rs {
		k := key{rs[i].TaskID, rs[i].DeviceID}
		n := seen[k]
		seen[k] = n + 1
		if n > 0 {
			dup = true
		}
	}
	if !dup {
		return [][]storage.ResultRecord{rs}
	}
	clear(seen)
	for i := range rs {
		k := key{rs[i].TaskID, rs[i].DeviceID}
		n := seen[k]
		seen[k] = n + 1
		if n == len(out) {
			out = append(out, nil)
		}
		out[n] = append(out[n], rs[i])
	}
	return out
}

// UpsertResults implements storage.ResultStore: one transaction per call.
// SQLite drops results of unknown tasks first, then writes the batch in
// order with multi-row INSERT ... ON CONFLICT statements (SQLite applies
// their rows one by one, so a device repeated in a batch needs no rounds). PostgreSQL writes each
// round with one statement that also filters unknown tasks; a batch
// without repeated devices (the usual case) is that single statement in
// autocommit: one round trip, atomic.
func (s *Store) UpsertResults(ctx context.Context, p storage.UpsertResultsParams) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	if len(p.Results) == 0 {
		return 0, nil
	}
	total := 0
	var err error
	if s.dialect == Postgres {
		total, err = s.upsertPostgresBatch(ctx, p.Results)
	} else {
		err = s.inTx(ctx, func(tx *sqlx.Tx) error {
			total = 0
			kept, err := knownOnly(ctx, s, tx, p.Results, func(r *storage.ResultRecord) string { return r.TaskID })
			if err != nil || len(kept) == 0 {
				return err
			}
			// No rounds (see rounds): SQLite applies the rows of a
			// multi-row upsert one after the other, each seeing the rows
			// before it, which is applying the records one by one.
			n, err := s.upsertSQLite(ctx, tx, kept)
			total = int(n)
			return err
		})
	}
	if err != nil {
		return 0, fmt.Errorf("sqlstore: upsert results: %w", err)
	}
	if s.dialect == Postgres && s.upsertCalls.Add(1)%compactEvery == 0 {
		seen := map[string]bool{}
		for i := range p.Results {
			if id := p.Results[i].TaskID; !seen[id] {
				seen[id] = true
				s.compact(ctx, id)
			}
		}
	}
	return total, nil
}

func (s *Store) upsertSQLite(ctx context.Context, tx *sqlx.Tx, rs []storage.ResultRecord) (int64, error) {
	var total int64
	args := make([]any, 0, 12*min(len(rs), sqliteChunk))
	for len(rs) > 0 {
		// The largest prepared size that fits: s.upserts[k] has
		// sqliteChunk>>k rows.
		k, rows := 0, sqliteChunk
		for rows > len(rs) {
			k, rows = k+1, rows/2
		}
		part := rs[:rows]
		rs = rs[rows:]
		args = args[:0]
		for i := range part {
			r := &part[i]
			args = append(args, r.TaskID, r.DeviceID, r.RunID, r.Seq, r.State,
				microsOf(r.DueAt), microsOf(r.StartedAt), microsOf(r.FinishedAt), microsOf(r.UpdatedAt),
				int64(r.Progress), r.Message, r.RestartRequired)
		}
		res, err := tx.StmtContext(ctx, s.upserts[k]).ExecContext(ctx, args...)
		if err != nil {
			return 0, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// pgUpsertArgs are pgUpsert's parameters for one round.
func pgUpsertArgs(rs []storage.ResultRecord) []any {
	n := len(rs)
	tasks, devs, states, msgs := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	runs, seqs := make([]int64, n), make([]int64, n)
	due, started, finished, updated := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	progress := make([]int32, n)
	restart := make([]bool, n)
	var taskIDs []string // distinct, usually one
	for i := range rs {
		r := &rs[i]
		if !slices.Contains(taskIDs, r.TaskID) {
			taskIDs = append(taskIDs, r.TaskID)
		}
		tasks[i], devs[i], states[i], msgs[i] = r.TaskID, r.DeviceID, r.State, r.Message
		runs[i], seqs[i] = r.RunID, r.Seq
		due[i], started[i], finished[i], updated[i] = microsOf(r.DueAt), microsOf(r.StartedAt), microsOf(r.FinishedAt), microsOf(r.UpdatedAt)
		progress[i] = int32(r.Progress)
		restart[i] = r.RestartRequired
	}
	return []any{tasks, devs, runs, seqs, states, due, started, finished, updated, progress, msgs, restart, taskIDs}
}

func scanResult(sc scanner) (storage.ResultRecord, error) {
	var r storage.ResultRecord
	var due, started, finished, updated dbTime
	var progress int64
	err := sc.Scan(&r.TaskID, &r.DeviceID, &r.RunID, &r.Seq, &r.State, &due, &started, &finished, &updated, &progress, &r.Message, &r.RestartRequired)
	r.DueAt, r.StartedAt, r.FinishedAt, r.UpdatedAt, r.Progress = due.T, started.T, finished.T, updated.T, int(progress)
	return r, err
}

func (s *Store) queryResults(ctx context.Context, q string, args ...any) ([]storage.ResultRecord, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []storage.ResultRecord
	for rows.Next() {
		r, err := scanResult(rows)
		if err != nil {
			return nil, mapErr(err)
		}
		out = append(out, r)
	}
	return out, mapErr(rows.Err())
}

// GetResult implements storage.ResultStore.
func (s *Store) GetResult(ctx context.Context, taskID, deviceID string) (storage.ResultRecord, error) {
	if err := s.checkOpen(); err != nil {
		return storage.ResultRecord{}, err
	}
	r, err := scanResult(s.r.QueryRowContext(ctx, s.q.getResult, taskID, deviceID))
	if err != nil {
		return storage.ResultRecord{}, fmt.Errorf("sqlstore: result of task %q device %q: %w", taskID, deviceID, mapErr(err))
	}
	return r, nil
}

// ListResults implements storage.ResultStore.
func (s *Store) ListResults(ctx context.Context, p storage.ListResultsParams) ([]storage.ResultRecord, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	limit := p.Limit
	if limit <= 0 {
		limit = storage.DefaultListLimit
	}
	var b strings.Builder
	args := []any{p.TaskID}
	if s.dialect == Postgres {
		s.listResultsPG(&b, &args, p, limit)
	} else {
		b.WriteString("SELECT " + resultCols + " FROM results WHERE task_id = ?")
		if len(p.States) > 0 {
			b.WriteString(" AND state IN (?" + strings.Repeat(",?", len(p.States)-1) + ")")
			for _, st := range p.States {
				args = append(args, st)
			}
		}
		if p.AfterDevice != "" {
			b.WriteString(" AND device_id > ?")
			args = append(args, p.AfterDevice)
		}
		b.WriteString(" ORDER BY device_id LIMIT ?")
		args = append(args, limit)
	}
	out, err := s.queryResults(ctx, s.r.Rebind(b.String()), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list results of task %q: %w", p.TaskID, err)
	}
	return out, nil
}

// listResultsPG writes ListResults' query on PostgreSQL: results read
// through their lease rows. With states, the results in those states that
// no lease overlays and the leased results in those states are two index
// scans merged by device.
func (s *Store) listResultsPG(b *strings.Builder, args *[]any, p storage.ListResultsParams, limit int) {
	after := ""
	if p.AfterDevice != "" {
		*args = append(*args, p.AfterDevice)
		after = fmt.Sprintf(" AND %%s.device_id > $%d", len(*args))
	}
	if len(p.States) == 0 {
		b.WriteString("SELECT " + overlayCols + " FROM results r LEFT JOIN result_leases l ON l.task_id = r.task_id AND l.device_id = r.device_id WHERE r.task_id = $1")
		if after != "" {
			fmt.Fprintf(b, after, "r")
		}
		*args = append(*args, limit)
		fmt.Fprintf(b, " ORDER BY r.device_id LIMIT $%d", len(*args))
		return
	}
	*args = append(*args, p.States)
	states := len(*args)
	fmt.Fprintf(b, `SELECT * FROM (
SELECT `+resultCols+` FROM results r WHERE r.task_id = $1 AND r.state = ANY($%d::text[])`, states)
	if after != "" {
		fmt.Fprintf(b, after, "r")
	}
	b.WriteString(` AND NOT EXISTS (SELECT 1 FROM result_leases l WHERE l.task_id = r.task_id AND l.device_id = r.device_id)
UNION ALL
SELECT ` + overlayCols + ` FROM result_leases l JOIN results r ON r.task_id = l.task_id AND r.device_id = l.device_id`)
	fmt.Fprintf(b, ` WHERE l.task_id = $1 AND l.state = ANY($%d::text[])`, states)
	if after != "" {
		fmt.Fprintf(b, after, "l")
	}
	*args = append(*args, limit)
	fmt.Fprintf(b, ") x ORDER BY device_id LIMIT $%d", len(*args))
}

// DueResults implements storage.ResultStore. Scheduled results are an
// index range scan on the partial index (due_at, task_id, device_id) WHERE
// state = 'scheduled'; other states (read once when a server opens) scan
// the table.
func (s *Store) DueResults(ctx context.Context, p storage.DueResultsParams) ([]storage.ResultRecord, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	limit := p.Limit
	if limit <= 0 {
		limit = storage.DefaultListLimit
	}
	state, err := stateLiteral("state", p.State)
	if err != nil {
		return nil, err
	}
	q := s.w.Rebind(`SELECT ` + resultCols + ` FROM results WHERE state = ` + state + ` AND due_at <= ? ORDER BY due_at, task_id, device_id LIMIT ?`)
	if s.dialect == Postgres {
		if p.State == queuedState {
			// The queue holds exactly the scheduled results no lease
			// overlays, with their due times indexed.
			q = `SELECT ` + overlayCols + ` FROM result_queue q JOIN results r ON r.task_id = q.task_id AND r.device_id = q.device_id
LEFT JOIN result_leases l ON false
WHERE q.due_at <= $1 ORDER BY q.due_at, q.task_id, q.device_id LIMIT $2`
		} else {
			q = `SELECT * FROM (
SELECT ` + resultCols + ` FROM results r WHERE r.state = ` + state + ` AND r.due_at <= $1
  AND NOT EXISTS (SELECT 1 FROM result_leases l WHERE l.task_id = r.task_id AND l.device_id = r.device_id)
UNION ALL
SELECT ` + overlayCols + ` FROM result_leases l JOIN results r ON r.task_id = l.task_id AND r.device_id = l.device_id
WHERE l.state = ` + state + ` AND l.due_at <= $1) x
ORDER BY due_at, task_id, device_id LIMIT $2`
		}
	}
	out, err := s.queryResults(ctx, q, s.tv(p.Before), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: due results: %w", err)
	}
	return out, nil
}

// compactAfter is the number of a task's delta rows (PostgreSQL) above
// which TaskStatistics folds them into one row per state.
const compactAfter = 256

// compactEvery: every compactEvery-th UpsertResults call (PostgreSQL)
// also compacts the deltas of the tasks it wrote, so they stay small even
// when nobody reads statistics.
const compactEvery = 64

// compact folds a task's result deltas into one row per state. It is safe
// beside writers and other compactions: under READ COMMITTED a concurrent
// compaction deletes only rows still present and re-inserts their sum.
// Failures are logged, never returned: compaction only saves work.
func (s *Store) compact(ctx context.Context, taskID string) {
	if _, err := s.w.ExecContext(ctx, s.q.compactDeltas, taskID); err != nil {
		s.log.Warn().Err(err).Str("task_id", taskID).Msg("compacting result counters failed")
	}
}

// TaskStatistics implements storage.ResultStore. PostgreSQL sums the
// task's delta rows (maintained by statement triggers, O(states)); SQLite
// scans the covering index (task_id, state, restart_required).
func (s *Store) TaskStatistics(ctx context.Context, taskID string) (storage.Statistics, error) {
	if err := s.checkOpen(); err != nil {
		return storage.Statistics{}, err
	}
	rows, err := s.r.QueryContext(ctx, s.q.statistics, taskID)
	if err != nil {
		return storage.Statistics{}, fmt.Errorf("sqlstore: statistics of task %q: %w", taskID, mapErr(err))
	}
	defer rows.Close()
	st := storage.Statistics{ByState: map[string]int{}}
	deltas := int64(0)
	for rows.Next() {
		var state string
		var n, restart, parts int64
		if err := rows.Scan(&state, &n, &restart, &parts); err != nil {
			return storage.Statistics{}, fmt.Errorf("sqlstore: statistics of task %q: %w", taskID, mapErr(err))
		}
		deltas += parts
		if n != 0 {
			st.ByState[state] = int(n)
			st.Total += int(n)
		}
		st.RestartRequired += int(restart)
	}
	if err := rows.Err(); err != nil {
		return storage.Statistics{}, fmt.Errorf("sqlstore: statistics of task %q: %w", taskID, mapErr(err))
	}
	if deltas > compactAfter {
		s.compact(ctx, taskID)
	}
	return st, nil
}
