package sqlstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/taskfleet/taskfleet/storage"
)

// PutEngineState implements storage.EngineStateStore: records of existing
// tasks are inserted in one transaction; a taken (task, kind, key) is
// skipped (ON CONFLICT DO NOTHING).
func (s *Store) PutEngineState(ctx context.Context, p storage.PutEngineStateParams) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	if err := storage.ValidateEngineState(p.Records); err != nil {
		return 0, fmt.Errorf("sqlstore: put engine state: %w", err)
	}
	if len(p.Records) == 0 {
		return 0, nil
	}
	n := 0
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		n = 0
		kept, err := knownOnly(ctx, s, tx, p.Records, func(r *storage.EngineStateRecord) string { return r.TaskID })
		if err != nil || len(kept) == 0 {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, tx.Rebind(`INSERT INTO engine_state (task_id, kind, key, run_id, at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (task_id, kind, key) DO NOTHING`))
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, r := range kept {
			res, err := stmt.ExecContext(ctx, r.TaskID, r.Kind, r.Key, r.RunID, s.tv(r.At))
			if err != nil {
				return err
			}
			k, err := res.RowsAffected()
			if err != nil {
				return err
			}
			n += int(k)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlstore: put engine state: %w", mapErr(err))
	}
	return n, nil
}

// ListEngineState implements storage.EngineStateStore.
func (s *Store) ListEngineState(ctx context.Context, p storage.ListEngineStateParams) ([]storage.EngineStateRecord, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	limit := p.Limit
	if limit <= 0 {
		limit = storage.DefaultListLimit
	}
	var b strings.Builder
	b.WriteString(`SELECT id, task_id, kind, key, run_id, at FROM engine_state WHERE task_id = ? AND id > ?`)
	args := []any{p.TaskID, p.AfterID}
	if p.Kind != "" {
		b.WriteString(` AND kind = ?`)
		args = append(args, p.Kind)
	}
	b.WriteString(` ORDER BY id LIMIT ?`)
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, s.r.Rebind(b.String()), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list engine state of task %q: %w", p.TaskID, mapErr(err))
	}
	defer rows.Close()
	var out []storage.EngineStateRecord
	for rows.Next() {
		var r storage.EngineStateRecord
		var at dbTime
		if err := rows.Scan(&r.ID, &r.TaskID, &r.Kind, &r.Key, &r.RunID, &at); err != nil {
			return nil, fmt.Errorf("sqlstore: list engine state of task %q: %w", p.TaskID, mapErr(err))
		}
		r.At = at.T
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: list engine state of task %q: %w", p.TaskID, mapErr(err))
	}
	return out, nil
}

// PurgeEngineState implements storage.EngineStateStore.
func (s *Store) PurgeEngineState(ctx context.Context, p storage.PurgeEngineStateParams) (int64, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	if p.TaskID == "" {
		return 0, fmt.Errorf("sqlstore: purge engine state: task id must not be empty: %w", storage.ErrInvalid)
	}
	q := `DELETE FROM engine_state WHERE task_id = ? AND at < ?`
	args := []any{p.TaskID, s.tv(p.Before)}
	if p.Kind != "" {
		q += ` AND kind = ?`
		args = append(args, p.Kind)
	}
	res, err := s.w.ExecContext(ctx, s.w.Rebind(q), args...)
	if err != nil {
		return 0, fmt.Errorf("sqlstore: purge engine state of task %q: %w", p.TaskID, mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlstore: purge engine state of task %q: %w", p.TaskID, mapErr(err))
	}
	return n, nil
}
