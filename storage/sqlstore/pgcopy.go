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

// queueColumns are result_queue's columns, in the order queueRow gives.
var queueColumns = []string{"task_id", "device_id", "run_id", "seq", "due_at"}

// queueRows returns the result_queue rows of the COPY rows (splitFresh's)
// in state queuedState.
func queueRows(fresh [][]any) [][]any {
	var out [][]any
	for _, f := range fresh {
		if f[4].(string) == queuedState {
			out = append(out, []any{f[0], f[1], f[2], f[3], f[5]})
		}
	}
	return out
}

// copyFresh COPYs fresh rows into results and the scheduled ones into
// result_queue; a unique-key violation (a device taken to be new had a
// result) is errCopyRace, after rolling back.
func copyFresh(ctx context.Context, pc *pgx.Conn, fresh [][]any) (int, error) {
	n, err := pc.CopyFrom(ctx, pgx.Identifier{"results"}, resultColumns, pgx.CopyFromRows(fresh))
	if err == nil {
		if q := queueRows(fresh); len(q) > 0 {
			_, err = pc.CopyFrom(ctx, pgx.Identifier{"result_queue"}, queueColumns, pgx.CopyFromRows(q))
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		if _, rerr := pc.Exec(ctx, "ROLLBACK"); rerr != nil {
			return 0, errors.Join(err, rerr)
		}
		return 0, errCopyRace
	}
	return int(n), err
}

// queueRound queues one round of the upsert on b: pgUpsert, then
// pgCleanQueue and pgCleanLeases (readRound reads their answers).
func queueRound(b *pgx.Batch, round []storage.ResultRecord) {
	args := pgUpsertArgs(sortedRound(round))
	b.Queue(pgUpsert, args...)
	b.Queue(pgCleanQueue, args[0], args[1])
	b.Queue(pgCleanLeases, args[0], args[1])
}

// readRound reads the answers of one round queued by queueRound: the
// number of results it inserted or replaced.
func readRound(br pgx.BatchResults) (int, error) {
	var n int64
	if err := br.QueryRow().Scan(&n); err != nil {
		return 0, err
	}
	for range 2 {
		if _, err := br.Exec(); err != nil {
			return 0, err
		}
	}
	return int(n), nil
}

// upsertPostgresBatch writes a batch on PostgreSQL in one transaction:
//
//  1. lock the batch's tasks FOR KEY SHARE (a concurrent DeleteTask waits,
//     then deletes these results too) and drop results of unknown tasks;
//  2. look up a sample of each task's devices (pgSample, spread over the
//     batch): if none has a result the batch is taken to be new devices
//     (a run's first scheduling, a first report); if all have one, a
//     status update; if some, every device is looked up;
//  3. COPY the first record of every new (task, device) straight into
//     results: COPY inserts pages of rows at once, about twice as fast as
//     any INSERT ... ON CONFLICT;
//  4. apply every other record (existing devices, later records of new
//     devices) with the unnest upsert, round by round, and commit.
//
// Steps 1 and 2 travel with BEGIN in one pipelined round trip, and the
// upserts of step 4 with COMMIT in another, so a batch of new devices costs
// the round trips of a bare BEGIN, COPY, COMMIT, and a batch of status
// updates two; neither looks up every device (about 2 ms per 1,000).
//
// Rows are written in (task, device) order, so concurrent batches sharing
// devices lock them in the same order and do not deadlock.
//
// Per device the records keep their batch order, so the result and the
// count equal sequential processing. If a device taken to be new has a
// result after all (the sample missed it, or another writer inserted it
// since), COPY fails on the unique key; the transaction is rolled back and
// the whole batch is written again in a new one by the upsert alone
// (upsertPostgresTx), which is correct for any mix.
func (s *Store) upsertPostgresBatch(ctx context.Context, rs []storage.ResultRecord) (int, error) {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return 0, mapErr(err)
	}
	defer conn.Close()
	total := 0
	err = conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		n, err := upsertPostgresPipelined(ctx, pc, rs)
		if !errors.Is(err, errCopyRace) {
			total = n
			return err
		}
		tx, err := pc.Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if n, err = upsertPostgresTx(ctx, tx, rs); err != nil {
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

// pgCustomPlans makes PostgreSQL plan every statement of the upsert's
// transaction for its actual parameters. The statements are prepared
// once per connection, and after five executions PostgreSQL may switch to
// a generic plan, which has to guess how many elements an array parameter
// holds (ten). Planned for ten keys, the clean-up's anti-joins chose to
// scan and materialize the other side once and compare it with every key:
// a round of 20,000 keys then took 13 to 26 s instead of 0.1 s. Planned
// for the real array the same statements probe the primary keys.
const pgCustomPlans = `SET LOCAL plan_cache_mode = force_custom_plan`

// pgLookup returns which of a task's devices ($2) have a result.
const pgLookup = `SELECT device_id FROM results WHERE task_id = $1 AND device_id = ANY($2)`

// pgSample is how many devices per task a batch looks up before choosing
// between COPY (none has a result) and the upsert (all have one).
const pgSample = 32

// sampleOf returns up to n of devs, spread evenly over the slice.
func sampleOf(devs []string, n int) []string {
	if len(devs) <= n {
		return devs
	}
	out := make([]string, n)
	for i := range out {
		out[i] = devs[i*len(devs)/n]
	}
	return out
}

// errCopyRace: a device the batch took to be new had a result (missed by
// the sample, or inserted by another writer since); the transaction was
// rolled back.
var errCopyRace = errors.New("sqlstore: a new device was written concurrently")

// upsertPostgresPipelined is upsertPostgresBatch's fast path on one
// connection: BEGIN, the task locks and the device lookups in one
// pipeline; COPY of the new devices; the upserts and COMMIT in one
// pipeline. It returns errCopyRace (after rolling back) when COPY met a
// device that had a result; on any error the transaction is rolled back.
func upsertPostgresPipelined(ctx context.Context, pc *pgx.Conn, rs []storage.ResultRecord) (total int, err error) {
	var taskIDs []string
	var devs [][]string // per taskIDs[i]
	index := make(map[string]int)
	for i := range rs {
		k, ok := index[rs[i].TaskID]
		if !ok {
			k = len(taskIDs)
			index[rs[i].TaskID] = k
			taskIDs = append(taskIDs, rs[i].TaskID)
			devs = append(devs, nil)
		}
		devs[k] = append(devs[k], rs[i].DeviceID)
	}
	defer func() {
		if err != nil && pc.PgConn().TxStatus() != 'I' && !pc.IsClosed() {
			if _, rerr := pc.Exec(ctx, "ROLLBACK"); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	// BEGIN, the task locks, and a sample of each task's devices looked up.
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(pgCustomPlans)
	b.Queue(`SELECT id FROM tasks WHERE id = ANY($1) FOR KEY SHARE`, taskIDs)
	sampled := 0
	for i, task := range taskIDs {
		sample := sampleOf(devs[i], pgSample)
		sampled += len(sample)
		b.Queue(pgLookup, task, sample)
	}
	br := pc.SendBatch(ctx, b)
	for range 2 { // BEGIN, pgCustomPlans
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return 0, err
		}
	}
	rows, _ := br.Query()
	known, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		_ = br.Close()
		return 0, err
	}
	found := 0
	for range taskIDs {
		rows, _ := br.Query()
		hit, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			_ = br.Close()
			return 0, err
		}
		found += len(hit)
	}
	if err := br.Close(); err != nil {
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
	type key struct{ task, dev string }
	exists := make(map[key]bool, len(rs))
	var fresh [][]any
	rest := rs
	switch {
	case found == sampled && found > 0:
		// Every sampled device has a result: a status update. The
		// upsert writes them all (and inserts any new one).
	case found > 0:
		// Some new, some not: look every device up.
		for i, task := range taskIDs {
			if !slices.Contains(known, task) {
				continue
			}
			rows, err := pc.Query(ctx, pgLookup, task, devs[i])
			if err != nil {
				return 0, err
			}
			got, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return 0, err
			}
			for _, d := range got {
				exists[key{task, d}] = true
			}
		}
		fallthrough
	default:
		// No sampled device has a result (new devices, e.g. a run's
		// first scheduling): COPY the first record of each device. If
		// the sample missed one that exists, COPY fails on the unique
		// key and the batch is written again by the upsert alone.
		fresh, rest = splitFresh(rs, func(r *storage.ResultRecord) bool {
			k := key{r.TaskID, r.DeviceID}
			if exists[k] {
				return false
			}
			exists[k] = true
			return true
		})
	}
	if len(fresh) > 0 {
		n, err := copyFresh(ctx, pc, fresh)
		if err != nil {
			return 0, err
		}
		total = n
	}
	b = &pgx.Batch{}
	upserts := 0
	for _, round := range rounds(rest) {
		if len(round) > 0 {
			queueRound(b, round)
			upserts++
		}
	}
	b.Queue("COMMIT")
	br = pc.SendBatch(ctx, b)
	for range upserts {
		n, err := readRound(br)
		if err != nil {
			_ = br.Close()
			return 0, err
		}
		total += n
	}
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return 0, err
	}
	return total, br.Close()
}

// splitFresh splits rs into the COPY rows of the records isNew accepts
// (called once per record, in order), in (task, device) order, and the
// other records in batch order.
func splitFresh(rs []storage.ResultRecord, isNew func(*storage.ResultRecord) bool) (fresh [][]any, rest []storage.ResultRecord) {
	rest = make([]storage.ResultRecord, 0, len(rs))
	for i := range rs {
		r := &rs[i]
		if !isNew(r) {
			rest = append(rest, *r)
			continue
		}
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
	return fresh, rest
}

// sortedRound returns a copy of round (which may be the caller's slice)
// in (task, device) order.
func sortedRound(round []storage.ResultRecord) []storage.ResultRecord {
	round = slices.Clone(round)
	slices.SortFunc(round, func(a, b storage.ResultRecord) int {
		if c := strings.Compare(a.TaskID, b.TaskID); c != 0 {
			return c
		}
		return strings.Compare(a.DeviceID, b.DeviceID)
	})
	return round
}

// upsertPostgresTx writes a batch in tx with the upsert alone: the
// fallback when COPY met a concurrently added device.
func upsertPostgresTx(ctx context.Context, tx pgx.Tx, rs []storage.ResultRecord) (int, error) {
	var taskIDs []string
	for i := range rs {
		if !slices.Contains(taskIDs, rs[i].TaskID) {
			taskIDs = append(taskIDs, rs[i].TaskID)
		}
	}
	if _, err := tx.Exec(ctx, pgCustomPlans); err != nil {
		return 0, err
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
	total := 0
	for _, round := range rounds(rs) {
		if len(round) == 0 {
			continue
		}
		b := &pgx.Batch{}
		queueRound(b, round)
		br := tx.SendBatch(ctx, b)
		n, err := readRound(br)
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}
