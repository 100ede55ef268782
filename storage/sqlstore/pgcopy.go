package sqlstore

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/taskfleet/taskfleet/storage"
)

var resultColumns = strings.Split(strings.ReplaceAll(resultCols, " ", ""), ",")

// upsertPostgresBatch writes a batch on PostgreSQL in one transaction:
//
//  1. lock the batch's tasks FOR KEY SHARE (a concurrent DeleteTask waits,
//     then deletes these results too) and drop results of unknown tasks;
//  2. look up which (task, device) already have a result;
//  3. COPY the first record of every new (task, device) straight into
//     results, in a savepoint: COPY inserts pages of rows at once, about
//     twice as fast as any INSERT ... ON CONFLICT;
//  4. apply every other record (existing devices, later records of new
//     devices) with the unnest upsert, round by round.
//
// Rows are written in (task, device) order, so concurrent batches sharing
// devices lock them in the same order and do not deadlock.
//
// Per device the records keep their batch order, so the result and the
// count equal sequential processing. If another writer inserts one of the
// new devices between 2 and 3, COPY fails on the unique key; the savepoint
// is rolled back and the whole batch goes through step 4 instead.
func (s *Store) upsertPostgresBatch(ctx context.Context, rs []storage.ResultRecord) (int, error) {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return 0, mapErr(err)
	}
	defer conn.Close()
	total := 0
	err = conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		tx, err := pc.Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		n, err := upsertPostgresTx(ctx, tx, rs)
		if err != nil {
			return err
		}
		total = n
		return tx.Commit(ctx)
	})
	if err != nil {
		return 0, mapErr(err)
	}
	return total, nil
}

func upsertPostgresTx(ctx context.Context, tx pgx.Tx, rs []storage.ResultRecord) (int, error) {
	var taskIDs []string
	for i := range rs {
		if !slices.Contains(taskIDs, rs[i].TaskID) {
			taskIDs = append(taskIDs, rs[i].TaskID)
		}
	}
	rows, err := tx.Query(ctx, `SELECT id FROM tasks WHERE id = ANY($1) FOR KEY SHARE`, taskIDs)
	if err != nil {
		return 0, err
	}
	known, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, err
	}
	if len(known) < len(taskIDs) {
		kept := make([]storage.ResultRecord, 0, len(rs))
		for i := range rs {
			if slices.Contains(known, rs[i].TaskID) {
				kept = append(kept, rs[i])
			}
		}
		rs = kept
	}
	if len(rs) == 0 {
		return 0, nil
	}
	type key struct{ task, dev string }
	exists := make(map[key]bool, len(rs))
	for _, task := range known {
		var devs []string
		for i := range rs {
			if rs[i].TaskID == task {
				devs = append(devs, rs[i].DeviceID)
			}
		}
		rows, err := tx.Query(ctx, `SELECT device_id FROM results WHERE task_id = $1 AND device_id = ANY($2)`, task, devs)
		if err != nil {
			return 0, err
		}
		found, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return 0, err
		}
		for _, d := range found {
			exists[key{task, d}] = true
		}
	}
	// First records of new devices go to COPY; the rest, in order, to
	// the upsert.
	var fresh [][]any
	rest := make([]storage.ResultRecord, 0, len(rs))
	for i := range rs {
		r := &rs[i]
		k := key{r.TaskID, r.DeviceID}
		if exists[k] {
			rest = append(rest, *r)
			continue
		}
		exists[k] = true
		fresh = append(fresh, []any{r.TaskID, r.DeviceID, r.RunID, r.Seq, r.State,
			r.DueAt.UTC(), r.StartedAt.UTC(), r.FinishedAt.UTC(), r.UpdatedAt.UTC(),
			int32(r.Progress), r.Message, r.RestartRequired})
	}
	// Rows are written in key order, so concurrent batches that share
	// devices take their row locks in the same order and never deadlock.
	slices.SortFunc(fresh, func(a, b []any) int {
		if c := strings.Compare(a[0].(string), b[0].(string)); c != 0 {
			return c
		}
		return strings.Compare(a[1].(string), b[1].(string))
	})
	total := 0
	if len(fresh) > 0 {
		sp, err := tx.Begin(ctx) // a savepoint
		if err != nil {
			return 0, err
		}
		n, err := sp.CopyFrom(ctx, pgx.Identifier{"results"}, resultColumns, pgx.CopyFromRows(fresh))
		var pe *pgconn.PgError
		switch {
		case err == nil:
			if err := sp.Commit(ctx); err != nil {
				return 0, err
			}
			total = int(n)
		case errors.As(err, &pe) && pe.Code == "23505":
			// A concurrent writer added one of the devices: upsert all.
			if err := sp.Rollback(ctx); err != nil {
				return 0, err
			}
			rest = rs
		default:
			return 0, err
		}
	}
	for _, round := range rounds(rest) {
		if len(round) == 0 {
			continue
		}
		round = slices.Clone(round) // may be the caller's slice
		slices.SortFunc(round, func(a, b storage.ResultRecord) int {
			if c := strings.Compare(a.TaskID, b.TaskID); c != 0 {
				return c
			}
			return strings.Compare(a.DeviceID, b.DeviceID)
		})
		tag, err := tx.Exec(ctx, pgUpsert, pgUpsertArgs(round)...)
		if err != nil {
			return 0, err
		}
		total += int(tag.RowsAffected())
	}
	return total, nil
}
