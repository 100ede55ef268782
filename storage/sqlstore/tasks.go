package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/taskfleet/taskfleet/storage"
)

// queries are the static statements, rebound to the dialect's placeholders
// once at Open.
type queries struct {
	insertTask, getTask, updateTask, taskRevision, deleteTask, deleteResults, allocateRunID string
	insertRevision, getRevision, listRevisions                                              string
	getResult, statistics                                                                   string
	purgeEvents                                                                             string
	// PostgreSQL only.
	deleteDeltas, compactDeltas string
	// PostgreSQL only: the dispatch tables (schema version 11).
	deleteQueue, deleteLeases string
}

const taskCols = `id, name, search_name, unique_name, application, task_type, kind, group_id, device_id, revision, suspended, created_at, updated_at, body`

const revisionCols = `task_id, number, author, at, action, body, diff`

const resultCols = `task_id, device_id, run_id, seq, state, due_at, started_at, finished_at, updated_at, progress, message, restart_required`

// overlayCols are resultCols of results r read through its lease row l
// (PostgreSQL): a dispatched result shows the lease's state, seq and
// update time.
const overlayCols = `r.task_id, r.device_id, r.run_id, COALESCE(l.seq, r.seq), COALESCE(l.state, r.state), r.due_at,
 r.started_at, r.finished_at, COALESCE(l.updated_at, r.updated_at), r.progress, r.message, r.restart_required`

const eventCols = `id, task_id, device_id, run_id, at, level, severity, message, key`

func buildQueries(db *sqlx.DB) queries {
	rb := db.Rebind
	q := queries{
		insertTask:     rb(`INSERT INTO tasks (` + taskCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		getTask:        rb(`SELECT ` + taskCols + ` FROM tasks WHERE id = ?`),
		updateTask:     rb(`UPDATE tasks SET name = ?, search_name = ?, unique_name = ?, application = ?, task_type = ?, kind = ?, group_id = ?, device_id = ?, revision = ?, suspended = ?, created_at = ?, updated_at = ?, body = ? WHERE id = ? AND revision = ?`),
		taskRevision:   rb(`SELECT revision FROM tasks WHERE id = ?`),
		deleteTask:     rb(`DELETE FROM tasks WHERE id = ? AND (? = 0 OR revision = ?)`),
		deleteResults:  rb(`DELETE FROM results WHERE task_id = ?`),
		allocateRunID:  rb(`UPDATE tasks SET last_run_id = last_run_id + 1 WHERE id = ? RETURNING last_run_id`),
		insertRevision: rb(`INSERT INTO revisions (` + revisionCols + `) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		getRevision:    rb(`SELECT ` + revisionCols + ` FROM revisions WHERE task_id = ? AND number = ?`),
		listRevisions:  rb(`SELECT ` + revisionCols + ` FROM revisions WHERE task_id = ? AND number > ? ORDER BY number LIMIT ?`),
		getResult:      rb(`SELECT ` + resultCols + ` FROM results WHERE task_id = ? AND device_id = ?`),
		statistics:     rb(`SELECT state, COUNT(*), SUM(CASE WHEN restart_required THEN 1 ELSE 0 END), 0 FROM results WHERE task_id = ? GROUP BY state`),
		purgeEvents:    rb(`DELETE FROM events WHERE task_id = ? AND at < ?`),
	}
	if db.DriverName() == "pgx" {
		// PostgreSQL keeps per-task counters (result_deltas, see the
		// schema): statistics sum a handful of delta rows instead of
		// scanning the task's results.
		q.statistics = `SELECT state, SUM(n), SUM(restart), COUNT(*) FROM result_deltas WHERE task_id = $1 GROUP BY state`
		q.deleteDeltas = `DELETE FROM result_deltas WHERE task_id = $1`
		q.deleteQueue = `DELETE FROM result_queue WHERE task_id = $1`
		q.deleteLeases = `DELETE FROM result_leases WHERE task_id = $1`
		// A result under a lease reads with the lease's state, seq and
		// update time (see migration 11).
		q.getResult = `SELECT ` + overlayCols + ` FROM results r LEFT JOIN result_leases l ON l.task_id = r.task_id AND l.device_id = r.device_id
WHERE r.task_id = $1 AND r.device_id = $2`
		q.compactDeltas = `WITH gone AS (DELETE FROM result_deltas WHERE task_id = $1 RETURNING state, n, restart)
INSERT INTO result_deltas (task_id, state, n, restart)
SELECT $1, state, SUM(n), SUM(restart) FROM gone GROUP BY state HAVING SUM(n) <> 0 OR SUM(restart) <> 0`
	}
	return q
}

// inTx runs fn in a write transaction and commits it; any error rolls it
// back and is mapped to the storage sentinels.
func (s *Store) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	tx, err := s.w.BeginTxx(ctx, nil)
	if err != nil {
		return mapErr(err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return mapErr(err)
	}
	return mapErr(tx.Commit())
}

// nullIfEmpty stores an empty UniqueName as NULL, which UNIQUE ignores.
func nullIfEmpty(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}

func (s *Store) taskArgs(t *storage.TaskRecord) []any {
	return []any{t.Name, t.SearchName, nullIfEmpty(t.UniqueName), t.Application, t.TaskType, t.Kind, t.GroupID, t.DeviceID, t.Revision, t.Suspended, s.tv(t.CreatedAt), s.tv(t.UpdatedAt), []byte(t.Body)}
}

func (s *Store) insertRevision(ctx context.Context, tx *sqlx.Tx, taskID string, r *storage.RevisionRecord) error {
	var diff []byte
	if r.Diff != nil {
		diff = r.Diff
	}
	body := []byte(r.Body)
	if body == nil {
		body = []byte{}
	}
	_, err := tx.ExecContext(ctx, s.q.insertRevision, taskID, r.Number, r.Author, s.tv(r.At), r.Action, body, diff)
	return err
}

// CreateTask implements storage.TaskStore.
func (s *Store) CreateTask(ctx context.Context, p storage.CreateTaskParams) error {
	if p.Task.ID == "" {
		return fmt.Errorf("sqlstore: create task: empty id: %w", ErrInvalid)
	}
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		args := append([]any{p.Task.ID}, s.taskArgs(&p.Task)...)
		if _, err := tx.ExecContext(ctx, s.q.insertTask, args...); err != nil {
			return err
		}
		return s.insertRevision(ctx, tx, p.Task.ID, &p.Revision)
	})
	if err != nil {
		return fmt.Errorf("sqlstore: create task %q: %w", p.Task.ID, err)
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

func scanTask(sc scanner) (storage.TaskRecord, error) {
	var t storage.TaskRecord
	var unique sql.NullString
	var created, updated dbTime
	var body []byte
	err := sc.Scan(&t.ID, &t.Name, &t.SearchName, &unique, &t.Application, &t.TaskType, &t.Kind, &t.GroupID, &t.DeviceID, &t.Revision, &t.Suspended, &created, &updated, &body)
	t.UniqueName, t.CreatedAt, t.UpdatedAt, t.Body = unique.String, created.T, updated.T, body
	return t, err
}

// GetTask implements storage.TaskStore.
func (s *Store) GetTask(ctx context.Context, id string) (storage.TaskRecord, error) {
	if err := s.checkOpen(); err != nil {
		return storage.TaskRecord{}, err
	}
	t, err := scanTask(s.r.QueryRowContext(ctx, s.q.getTask, id))
	if err != nil {
		return storage.TaskRecord{}, fmt.Errorf("sqlstore: task %q: %w", id, mapErr(err))
	}
	return t, nil
}

// UpdateTask implements storage.TaskStore.
func (s *Store) UpdateTask(ctx context.Context, p storage.UpdateTaskParams) error {
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		args := append(s.taskArgs(&p.Task), p.Task.ID, p.ExpectRevision)
		res, err := tx.ExecContext(ctx, s.q.updateTask, args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var rev int64
			if err := tx.GetContext(ctx, &rev, s.q.taskRevision, p.Task.ID); err != nil {
				return err // sql.ErrNoRows: ErrNotFound
			}
			return fmt.Errorf("stored revision is %d, not %d: %w", rev, p.ExpectRevision, ErrConflict)
		}
		return s.insertRevision(ctx, tx, p.Task.ID, &p.Revision)
	})
	if err != nil {
		return fmt.Errorf("sqlstore: update task %q: %w", p.Task.ID, err)
	}
	return nil
}

// DeleteTask implements storage.TaskStore. Revisions, events, event keys
// and the run counter go with the task (ON DELETE CASCADE), results by an
// explicit delete, all in one transaction.
func (s *Store) DeleteTask(ctx context.Context, p storage.DeleteTaskParams) error {
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, s.q.deleteTask, p.ID, p.ExpectRevision, p.ExpectRevision)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var rev int64
			if err := tx.GetContext(ctx, &rev, s.q.taskRevision, p.ID); err != nil {
				return err
			}
			return fmt.Errorf("stored revision is %d, not %d: %w", rev, p.ExpectRevision, ErrConflict)
		}
		// After the task row: on PostgreSQL its delete waited for
		// every UpsertResults holding FOR KEY SHARE on it, so this
		// statement's snapshot sees their results.
		if s.dialect == Postgres {
			// The queue first, alone: its delete waits for a replica
			// dispatching the task's rows, and the lease statement's
			// snapshot, taken after, sees the leases it wrote.
			for _, q := range []string{s.q.deleteQueue, s.q.deleteLeases} {
				if _, err = tx.ExecContext(ctx, q, p.ID); err != nil {
					return err
				}
			}
		}
		if _, err = tx.ExecContext(ctx, s.q.deleteResults, p.ID); err != nil {
			return err
		}
		if s.dialect == Postgres {
			_, err = tx.ExecContext(ctx, s.q.deleteDeltas, p.ID)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstore: delete task %q: %w", p.ID, err)
	}
	return nil
}

// createdAtKeyLayout is storage.OrderKey's layout for OrderByCreatedAt.
const createdAtKeyLayout = "2006-01-02T15:04:05.000000Z"

// ListTasks implements storage.TaskStore.
func (s *Store) ListTasks(ctx context.Context, p storage.ListTasksParams) (storage.TaskPage, error) {
	if !storage.ValidOrder(p.Order) {
		return storage.TaskPage{}, fmt.Errorf("sqlstore: unknown order %q: %w", p.Order, ErrInvalid)
	}
	if err := s.checkOpen(); err != nil {
		return storage.TaskPage{}, err
	}
	limit := p.Limit
	if limit <= 0 {
		limit = storage.DefaultListLimit
	}
	var where []string
	var args []any
	eq := func(col, v string) {
		if v != "" {
			where = append(where, col+" = ?")
			args = append(args, v)
		}
	}
	eq("application", p.Application)
	eq("task_type", p.TaskType)
	eq("kind", p.Kind)
	eq("group_id", p.GroupID)
	eq("device_id", p.DeviceID)
	if p.NameContains != "" {
		// A plain substring test: no LIKE wildcards, no case folding (the
		// core folded both sides already).
		if s.dialect == Postgres {
			where = append(where, "strpos(search_name, ?) > 0")
		} else {
			where = append(where, "instr(search_name, ?) > 0")
		}
		args = append(args, p.NameContains)
	}
	var keyCol string
	switch p.Order {
	case storage.OrderByCreatedAt:
		keyCol = "created_at"
	case storage.OrderByID:
	default:
		keyCol = "name"
	}
	cmpOp, dir := ">", "ASC"
	if p.Descending {
		cmpOp, dir = "<", "DESC"
	}
	if p.After != "" {
		key, id, err := storage.DecodeCursor(p.After)
		if err != nil {
			return storage.TaskPage{}, err
		}
		switch keyCol {
		case "":
			where = append(where, "id "+cmpOp+" ?")
			args = append(args, id)
		case "created_at":
			at, err := time.Parse(createdAtKeyLayout, key)
			if err != nil {
				return storage.TaskPage{}, fmt.Errorf("sqlstore: bad page cursor: %w", ErrInvalid)
			}
			where = append(where, "(created_at, id) "+cmpOp+" (?, ?)")
			args = append(args, s.tv(at), id)
		default:
			where = append(where, "(name, id) "+cmpOp+" (?, ?)")
			args = append(args, key, id)
		}
	}
	var b strings.Builder
	b.WriteString("SELECT " + taskCols + " FROM tasks")
	if len(where) > 0 {
		b.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	b.WriteString(" ORDER BY ")
	if keyCol != "" {
		b.WriteString(keyCol + " " + dir + ", ")
	}
	b.WriteString("id " + dir + " LIMIT ?")
	args = append(args, limit+1)
	rows, err := s.r.QueryContext(ctx, s.r.Rebind(b.String()), args...)
	if err != nil {
		return storage.TaskPage{}, fmt.Errorf("sqlstore: list tasks: %w", mapErr(err))
	}
	defer rows.Close()
	var page storage.TaskPage
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return storage.TaskPage{}, fmt.Errorf("sqlstore: list tasks: %w", mapErr(err))
		}
		page.Tasks = append(page.Tasks, t)
	}
	if err := rows.Err(); err != nil {
		return storage.TaskPage{}, fmt.Errorf("sqlstore: list tasks: %w", mapErr(err))
	}
	if len(page.Tasks) > limit {
		page.Tasks = page.Tasks[:limit]
		last := &page.Tasks[limit-1]
		page.Next = storage.EncodeCursor(storage.OrderKey(last, p.Order), last.ID)
	}
	return page, nil
}

func scanRevision(sc scanner) (storage.RevisionRecord, error) {
	var r storage.RevisionRecord
	var at dbTime
	var body, diff []byte
	err := sc.Scan(&r.TaskID, &r.Number, &r.Author, &at, &r.Action, &body, &diff)
	r.At, r.Body, r.Diff = at.T, body, diff
	return r, err
}

// ListRevisions implements storage.TaskStore.
func (s *Store) ListRevisions(ctx context.Context, p storage.ListRevisionsParams) ([]storage.RevisionRecord, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	limit := p.Limit
	if limit <= 0 {
		limit = storage.DefaultListLimit
	}
	rows, err := s.r.QueryContext(ctx, s.q.listRevisions, p.TaskID, p.AfterNumber, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list revisions of task %q: %w", p.TaskID, mapErr(err))
	}
	defer rows.Close()
	var out []storage.RevisionRecord
	for rows.Next() {
		r, err := scanRevision(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: list revisions of task %q: %w", p.TaskID, mapErr(err))
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: list revisions of task %q: %w", p.TaskID, mapErr(err))
	}
	return out, nil
}

// GetRevision implements storage.TaskStore.
func (s *Store) GetRevision(ctx context.Context, taskID string, n int64) (storage.RevisionRecord, error) {
	if err := s.checkOpen(); err != nil {
		return storage.RevisionRecord{}, err
	}
	r, err := scanRevision(s.r.QueryRowContext(ctx, s.q.getRevision, taskID, n))
	if err != nil {
		return storage.RevisionRecord{}, fmt.Errorf("sqlstore: task %q revision %d: %w", taskID, n, mapErr(err))
	}
	return r, nil
}

// AllocateRunID implements storage.TaskStore with one atomic UPDATE ...
// RETURNING of the task's counter, so processes sharing the database never
// get the same number.
func (s *Store) AllocateRunID(ctx context.Context, taskID string) (int64, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	var id int64
	if err := s.w.QueryRowContext(ctx, s.q.allocateRunID, taskID).Scan(&id); err != nil {
		return 0, fmt.Errorf("sqlstore: allocate run id of task %q: %w", taskID, mapErr(err))
	}
	return id, nil
}
