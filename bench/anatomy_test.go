package bench

// What stands between taskfleet's dispatch and a bare queue table: the
// same claim statement (sqlstore's DispatchDue, the real one) on copies
// of sqlstore's schema with one part of the results table removed at a
// time, each against the raw claim on a bare queue table in the same op.
// Run from this directory:
//
//	TASKFLEET_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' \
//	  go test -run '^$' -bench DispatchAnatomy -benchtime 10x

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

// anatomyVariants are the schema copies: sqlstore's schema as migrated,
// then with an index of lease ends (result_leases_until), which only the
// leader's sweep for expired leases (ClaimStale) would read and every
// dispatched run would pay for with one index entry; schema version 11
// does without it. A variant is a measurement, never a configuration
// taskfleet offers. (Before schema version 11 the variants took parts of
// the results table away, which dispatch no longer writes;
// bench/README.md keeps those figures.)
var anatomyVariants = []struct{ name, alter string }{
	{"schema", ""},
	{"until-index", `CREATE INDEX result_leases_until ON result_leases (until)`},
}

// leaseQueueTable is the bare queue with a lease: the narrowest table a
// dispatch with taskfleet's guarantees could claim from (the layout a
// separate dispatch table would have). leaseLog is its ledger as
// sqlstore keeps it, one row per dispatched run; leaseBatches a ledger of
// one row per claimed batch.
const leaseQueueTable = `CREATE TABLE lease_queue (
    task_id text COLLATE "C" NOT NULL, device_id text COLLATE "C" NOT NULL,
    run_id bigint NOT NULL, state text COLLATE "C" NOT NULL, due_at timestamptz NOT NULL,
    lease_owner text COLLATE "C" NOT NULL DEFAULT '', lease_epoch bigint NOT NULL DEFAULT 0,
    lease_until timestamptz NOT NULL DEFAULT '0001-01-01 00:00:00+00',
    PRIMARY KEY (task_id, device_id));
CREATE INDEX lease_queue_due ON lease_queue (due_at, task_id, device_id) WHERE state = 'scheduled';
CREATE TABLE lease_log (task_id text COLLATE "C" NOT NULL, device_id text COLLATE "C" NOT NULL,
    run_id bigint NOT NULL, epoch bigint NOT NULL, owner text NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE lease_batches (owner text NOT NULL, at timestamptz NOT NULL DEFAULT now(),
    task_ids text[] NOT NULL, device_ids text[] NOT NULL, run_ids bigint[] NOT NULL, epochs bigint[] NOT NULL)`

// leaseClaim is DispatchDue's work on the lease queue: lock the due rows,
// move them to pending under a new lease and epoch, write the ledger. The
// ledger's INSERT is the %s.
const leaseClaim = `WITH due AS (
    SELECT ctid FROM lease_queue WHERE state = 'scheduled' AND due_at <= $1
    ORDER BY due_at, task_id, device_id LIMIT $2 FOR UPDATE SKIP LOCKED),
upd AS (
    UPDATE lease_queue q SET state = 'pending', lease_owner = 'r0', lease_epoch = q.lease_epoch + 1,
        lease_until = now() + interval '30 seconds'
    FROM due WHERE q.ctid = due.ctid AND q.state = 'scheduled'
    RETURNING q.task_id, q.device_id, q.run_id, q.lease_epoch),
log AS (%s)
SELECT task_id, device_id, run_id FROM upd`

const (
	leaseRowLog   = `INSERT INTO lease_log (task_id, device_id, run_id, epoch, owner) SELECT task_id, device_id, run_id, lease_epoch, 'r0' FROM upd`
	leaseBatchLog = `INSERT INTO lease_batches (owner, task_ids, device_ids, run_ids, epochs)
    SELECT 'r0', array_agg(task_id), array_agg(device_id), array_agg(run_id), array_agg(lease_epoch) FROM upd HAVING count(*) > 0`
)

// anatomySide is one schema copy with its store, its task and a pool for
// resetting it.
type anatomySide struct {
	name string
	st   storageClaimer
	task string
	pool *pgxpool.Pool
}

// storageClaimer is the part of sqlstore.Store the benchmark drives.
type storageClaimer interface {
	UpsertResults(context.Context, storage.UpsertResultsParams) (int, error)
	DispatchDue(context.Context, storage.DispatchParams) ([]storage.Claim, error)
}

// BenchmarkDispatchAnatomy: each op writes 20,000 fresh scheduled results
// of one task into every schema copy (the table truncated and vacuumed
// first, so no copy carries another's bloat) and 20,000 rows into a bare
// queue table (queueTable), then drains each with one connection in
// batches of 2,000: the copies with sqlstore's DispatchDue (lease, epoch,
// ledger row, task check; the starts are not sent, no engine runs), the
// queue with the raw claim (queueClaim). The order rotates between ops.
//
//   - queue-rows/s: the bare queue's claim rate.
//   - <variant>-rows/s: DispatchDue's rate on that copy.
//   - <variant>-x: the median over the ops of DispatchDue's rate on that
//     copy ÷ the queue's rate in the same op (issue #21's goal: ≥ 0.8 for
//     the whole dispatch on the schema as it is).
func BenchmarkDispatchAnatomy(b *testing.B) {
	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
	var sides []anatomySide
	for _, v := range anatomyVariants {
		dsn := storagePGDSN(b)
		r := openDispatchReplica(b, dsn, "r0", clk)
		tk, err := r.m.Create(ctx, task.System, task.Task{Name: "scan", Application: "Endpoint Security", Type: "virus_scan",
			Scope: scope.Scope{Kind: scope.Group, Group: "g-all"}, Schedule: schedule.Default(schedule.Manual, time.Time{}, time.UTC)})
		if err != nil {
			b.Fatal(err)
		}
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(pool.Close)
		if v.alter != "" {
			if _, err := pool.Exec(ctx, v.alter); err != nil {
				b.Fatalf("%s: %v", v.name, err)
			}
		}
		sides = append(sides, anatomySide{name: v.name, st: r.st, task: tk.ID, pool: pool})
	}
	queuePool := sides[0].pool
	if _, err := queuePool.Exec(ctx, queueTable+";"+leaseQueueTable); err != nil {
		b.Fatal(err)
	}
	// drainTable fills table with 20,000 fresh due rows and drains it
	// with claim on one connection.
	drainTable := func(op int, table, claim string) time.Duration {
		due := clk.Now().Add(-time.Minute).UTC()
		if _, err := queuePool.Exec(ctx, `TRUNCATE raw_queue, lease_queue, lease_log, lease_batches`); err != nil {
			b.Fatal(err)
		}
		if _, err := queuePool.Exec(ctx, `INSERT INTO `+table+` (task_id, device_id, run_id, state, due_at)
SELECT 't', 'd' || lpad(g::text, 6, '0'), 1, 'scheduled', $1 FROM generate_series(0, $2 - 1) g`, due, dispatchRuns); err != nil {
			b.Fatal(err)
		}
		if _, err := queuePool.Exec(ctx, `VACUUM ANALYZE `+table); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if n := rawDrain(ctx, b, queuePool, claim, due, 1); n != dispatchRuns {
			b.Fatalf("op %d: %s drain claimed %d rows, want %d", op, table, n, dispatchRuns)
		}
		return time.Since(start)
	}
	narrow := []struct{ name, claim string }{
		{"lease-queue", fmt.Sprintf(leaseClaim, leaseRowLog)},
		{"lease-queue-batch-ledger", fmt.Sprintf(leaseClaim, leaseBatchLog)},
	}
	rows := make([]storage.ResultRecord, dispatchRuns)
	reset := func(s anatomySide) time.Time {
		due := clk.Now().Add(-time.Minute).UTC()
		run := transport.RunID(due, transport.Manual)
		clk.Add(time.Second)
		if _, err := s.pool.Exec(ctx, `TRUNCATE results, dispatch_log, result_queue, result_leases, result_deltas`); err != nil {
			b.Fatal(err)
		}
		for d := range rows {
			rows[d] = storage.ResultRecord{TaskID: s.task, DeviceID: fmt.Sprintf("d%06d", d), RunID: run, Seq: transport.SeqScheduled,
				State: string(task.Scheduled), DueAt: due, UpdatedAt: due}
		}
		if n, err := s.st.UpsertResults(ctx, storage.UpsertResultsParams{Results: rows}); err != nil || n != dispatchRuns {
			b.Fatalf("%s: UpsertResults = %d, %v", s.name, n, err)
		}
		if _, err := s.pool.Exec(ctx, `VACUUM ANALYZE results, result_queue, result_leases`); err != nil {
			b.Fatal(err)
		}
		return due
	}
	took := make([]time.Duration, len(sides))
	ratios := make([][]float64, len(sides))
	var queue time.Duration
	narrowTook := make([]time.Duration, len(narrow))
	narrowRatios := make([][]float64, len(narrow))
	b.ResetTimer()
	b.StopTimer()
	for op := range b.N {
		opTook := make([]time.Duration, len(sides))
		narrowOp := make([]time.Duration, len(narrow))
		var queueOp time.Duration
		steps := []func(){func() { queueOp = drainTable(op, "raw_queue", queueClaim) }}
		for i, c := range narrow {
			steps = append(steps, func() { narrowOp[i] = drainTable(op, "lease_queue", c.claim) })
		}
		for i, s := range sides {
			steps = append(steps, func() {
				due := reset(s)
				start := time.Now()
				total := 0
				for {
					cs, err := s.st.DispatchDue(ctx, storage.DispatchParams{Owner: "r0", FromState: string(task.Scheduled), State: string(task.Pending),
						Seq: transport.SeqDispatched, At: clk.Now().UTC(), Before: due, TTL: 30 * time.Second, Limit: rawClaimBatch})
					if err != nil {
						b.Fatalf("%s: DispatchDue: %v", s.name, err)
					}
					total += len(cs)
					if len(cs) < rawClaimBatch {
						break
					}
				}
				opTook[i] = time.Since(start)
				if total != dispatchRuns {
					b.Fatalf("op %d, %s: dispatched %d runs, want %d", op, s.name, total, dispatchRuns)
				}
			})
		}
		// Rotate, so that each side runs first, in the middle and last
		// as often as the others.
		k := op % len(steps)
		steps = append(steps[k:], steps[:k]...)
		for _, step := range steps {
			step()
		}
		queue += queueOp
		for i := range narrow {
			narrowTook[i] += narrowOp[i]
			narrowRatios[i] = append(narrowRatios[i], queueOp.Seconds()/narrowOp[i].Seconds())
		}
		for i := range sides {
			took[i] += opTook[i]
			ratios[i] = append(ratios[i], queueOp.Seconds()/opTook[i].Seconds())
		}
	}
	n := float64(b.N * dispatchRuns)
	b.ReportMetric(n/queue.Seconds(), "queue-rows/s")
	for i, s := range sides {
		b.ReportMetric(n/took[i].Seconds(), s.name+"-rows/s")
		b.ReportMetric(median(slices.Clone(ratios[i])), s.name+"-x")
	}
	for i, c := range narrow {
		b.ReportMetric(n/narrowTook[i].Seconds(), c.name+"-rows/s")
		b.ReportMetric(median(slices.Clone(narrowRatios[i])), c.name+"-x")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkClaimStaleSweep: the leader's sweep for expired leases
// (ClaimStale, once per LeaseTTL) with 100,000 starts in flight, none of
// them expired (the sweep's common case: it finds nothing). Schema
// version 11 keeps no index on the lease ends, so the sweep reads the
// lease table whole; this is what that costs.
//
//   - ms/sweep: one ClaimStale call.
func BenchmarkClaimStaleSweep(b *testing.B) {
	const inFlight = 100_000
	ctx := context.Background()
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
	r := openDispatchReplica(b, storagePGDSN(b), "r0", clk)
	tk, err := r.m.Create(ctx, task.System, task.Task{Name: "scan", Application: "Endpoint Security", Type: "virus_scan",
		Scope: scope.Scope{Kind: scope.Group, Group: "g-all"}, Schedule: schedule.Default(schedule.Manual, time.Time{}, time.UTC)})
	if err != nil {
		b.Fatal(err)
	}
	due := clk.Now().Add(-time.Minute).UTC()
	run := transport.RunID(due, transport.Manual)
	rows := make([]storage.ResultRecord, 0, 10_000)
	for d := 0; d < inFlight; d += cap(rows) {
		rows = rows[:0]
		for i := d; i < d+cap(rows); i++ {
			rows = append(rows, storage.ResultRecord{TaskID: tk.ID, DeviceID: fmt.Sprintf("d%06d", i), RunID: run, Seq: transport.SeqScheduled,
				State: string(task.Scheduled), DueAt: due, UpdatedAt: due})
		}
		if _, err := r.st.UpsertResults(ctx, storage.UpsertResultsParams{Results: rows}); err != nil {
			b.Fatal(err)
		}
	}
	now := clk.Now()
	for total := 0; total < inFlight; {
		cs, err := r.st.DispatchDue(ctx, storage.DispatchParams{Owner: "r0", FromState: string(task.Scheduled), State: string(task.Pending),
			Seq: transport.SeqDispatched, At: now.UTC(), Before: now, TTL: time.Hour, Limit: storage.MaxListLimit, Now: &now})
		if err != nil || len(cs) == 0 {
			b.Fatalf("DispatchDue = %d, %v", len(cs), err)
		}
		total += len(cs)
	}
	if _, err := r.st.DB().ExecContext(ctx, `VACUUM ANALYZE result_leases`); err != nil {
		b.Fatal(err)
	}
	sweepAt := now.Add(time.Minute)
	b.ResetTimer()
	for range b.N {
		cs, err := r.st.ClaimStale(ctx, storage.StaleParams{Owner: "r1", State: string(task.Pending), Seq: transport.SeqDispatched,
			TTL: time.Minute, Limit: 2000, Now: &sweepAt})
		if err != nil || len(cs) != 0 {
			b.Fatalf("ClaimStale = %d, %v", len(cs), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/sweep")
}
