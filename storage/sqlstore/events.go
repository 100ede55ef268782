package sqlstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/taskfleet/taskfleet/storage"
)

// AppendEvents implements storage.EventStore. A keyed event first reserves
// its (task, key) in event_keys; the reservation outlives PurgeEvents, so a
// late duplicate of a purged event stays refused.
func (s *Store) AppendEvents(ctx context.Context, p storage.AppendEventsParams) (int, error) {
	if err := s.checkOpen(); err != nil {
		return 0, err
	}
	if len(p.Events) == 0 {
		return 0, nil
	}
	n := 0
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		n = 0
		kept, err := knownOnly(ctx, s, tx, p.Events, func(e *storage.EventRecord) string { return e.TaskID })
		if err != nil || len(kept) == 0 {
			return err
		}
		keyStmt, err := tx.PrepareContext(ctx, s.q.insertEventKey)
		if err != nil {
			return err
		}
		defer keyStmt.Close()
		evStmt, err := tx.PrepareContext(ctx, s.q.insertEvent)
		if err != nil {
			return err
		}
		defer evStmt.Close()
		for i := range kept {
			e := &kept[i]
			if e.Key != "" {
				res, err := keyStmt.ExecContext(ctx, e.TaskID, e.Key)
				if err != nil {
					return err
				}
				if reserved, err := res.RowsAffected(); err != nil {
					return err
				} else if reserved == 0 {
					continue // a duplicate delivery
				}
			}
			if _, err := evStmt.ExecContext(ctx, e.TaskID, e.DeviceID, e.RunID, s.tv(e.At), e.Level, e.Severity, e.Message, e.Key); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlstore: append events: %w", err)
	}
	return n, nil
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
