package bench

// Against the database's own limits: taskfleet's dispatch and result
// ingest measured side by side with the least the same PostgreSQL must do
// for the same rows, interleaved op by op so that load on the shared
// machine hits both sides alike. Run from this directory:
//
//	TASKFLEET_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' \
//	  go test -run '^$' -bench 'DispatchVsRaw|IngestVsCopy|EndToEndVsRiver' -benchtime 10x
//
// Each op reports the ratio of the two rates in that op; ratio-x is their
// time-weighted ratio over all ops of the run.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/transport"
)

// rawClaimBatch is the raw drain's batch: the engine's default ClaimBatch.
const rawClaimBatch = 2000

// rawClaim is the database's raw claim: one statement per batch locks
// the first due scheduled rows with FOR UPDATE SKIP LOCKED (through the
// same partial due index the engine uses), moves them to pending, and
// returns their keys. Nothing else: no lease, no epoch, no ledger, no
// task check.
const rawClaim = `UPDATE results r SET state = 'pending'
FROM (SELECT ctid FROM results WHERE state = 'scheduled' AND due_at <= $1
      ORDER BY due_at, task_id, device_id LIMIT $2 FOR UPDATE SKIP LOCKED) d
WHERE r.ctid = d.ctid
RETURNING r.task_id, r.device_id, r.run_id`

// dispatchNoVacuum (TASKFLEET_BENCH_NO_VACUUM set) leaves out the
// VACUUM before each side of BenchmarkDispatchVsRaw.
var dispatchNoVacuum = os.Getenv("TASKFLEET_BENCH_NO_VACUUM") != ""

// rawResultsDue is the index rawClaim reads on the results table.
const rawResultsDue = `CREATE INDEX IF NOT EXISTS raw_results_due ON results (due_at, task_id, device_id) WHERE state = 'scheduled'`

// queueClaim is rawClaim on a bare queue table (queueTable): the
// database's claim rate without sqlstore's schema (its wider rows, its
// second index on the state, its counter trigger).
const queueClaim = `UPDATE raw_queue r SET state = 'pending'
FROM (SELECT ctid FROM raw_queue WHERE state = 'scheduled' AND due_at <= $1
      ORDER BY due_at, task_id, device_id LIMIT $2 FOR UPDATE SKIP LOCKED) d
WHERE r.ctid = d.ctid
RETURNING r.task_id, r.device_id, r.run_id`

// queueTable is the bare queue: the key, the run, the state and the due
// time, with the same partial due index as sqlstore's results.
const queueTable = `CREATE TABLE raw_queue (
    task_id text COLLATE "C" NOT NULL, device_id text COLLATE "C" NOT NULL,
    run_id bigint NOT NULL, state text COLLATE "C" NOT NULL, due_at timestamptz NOT NULL,
    PRIMARY KEY (task_id, device_id));
CREATE INDEX raw_queue_due ON raw_queue (due_at, task_id, device_id) WHERE state = 'scheduled'`

// rawDrain drains every due scheduled row with workers connections in
// batches of rawClaimBatch and returns how many rows it claimed.
func rawDrain(ctx context.Context, tb testing.TB, pool *pgxpool.Pool, claim string, before time.Time, workers int) int {
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				rows, err := pool.Query(ctx, claim, before, rawClaimBatch)
				if err != nil {
					tb.Error(err)
					return
				}
				n := 0
				var task, dev string
				var run int64
				_, err = pgx.ForEachRow(rows, []any{&task, &dev, &run}, func() error { n++; return nil })
				if err != nil {
					tb.Error(err)
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
				if n < rawClaimBatch {
					return
				}
			}
		})
	}
	wg.Wait()
	return total
}

// BenchmarkDispatchVsRaw: each op schedules 20,000 device runs of one
// task (a new run, written with UpsertResults) twice: once they are
// dispatched by one engine replica (Tick, with its default two store
// workers and 2,000-run batches, the starts sent), once drained by the
// raw claim (rawClaim, one connection, the baseline; raw2 with two
// connections, as the engine uses), and once copied into a bare queue
// table and drained from there. The order alternates between ops. Every
// side starts from vacuumed tables (TASKFLEET_BENCH_NO_VACUUM=1 leaves
// the VACUUM out). Since schema version 11 taskfleet dispatches from
// result_queue, not from results; the raw claim on results reads an index
// of its own (rawResultsDue), which the schema no longer has.
//
//   - runs/s: taskfleet's dispatch rate (BenchmarkDispatch's figure).
//   - raw-rows/s, raw2-rows/s: the raw claim rate with one / two connections.
//   - queue-rows/s: the raw claim on a bare queue table holding the same
//     20,000 rows (queueTable), one connection.
//   - ratio-x: runs/s ÷ raw-rows/s (goal ≥ 0.8), over the whole run;
//     med-ratio-x the median of the ops' ratios, q1-ratio-x and q3-ratio-x
//     their quartiles; queue-ratio-x: runs/s ÷ queue-rows/s over the
//     run, med-queue-ratio-x the median of the ops' ratios.
func BenchmarkDispatchVsRaw(b *testing.B) {
	ctx := context.Background()
	dsn := storagePGDSN(b)
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
	r := openDispatchReplica(b, dsn, "r0", clk)
	tk, err := r.m.Create(ctx, task.System, task.Task{Name: "scan", Application: "Endpoint Security", Type: "virus_scan",
		Scope: scope.Scope{Kind: scope.Group, Group: "g-all"}, Schedule: schedule.Default(schedule.Manual, time.Time{}, time.UTC)})
	if err != nil {
		b.Fatal(err)
	}
	sink := &dispatchSink{}
	if err := r.srv.Open(ctx, r.m, sink); err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, queueTable); err != nil {
		b.Fatal(err)
	}
	// Schema version 11 dispatches from result_queue and dropped the
	// partial due index of results; the raw claim on the results table
	// gets it back, so that baseline is the claim it always was.
	if _, err := pool.Exec(ctx, rawResultsDue); err != nil {
		b.Fatal(err)
	}
	rows := make([]storage.ResultRecord, dispatchRuns)
	run := int64(0)
	scheduleRuns := func() time.Time {
		due := clk.Now().Add(-time.Minute).UTC()
		if run == 0 {
			run = transport.RunID(due, transport.Manual)
		}
		run += 4
		for d := range rows {
			rows[d] = storage.ResultRecord{TaskID: tk.ID, DeviceID: fmt.Sprintf("d%06d", d), RunID: run, Seq: transport.SeqScheduled, State: string(task.Scheduled), DueAt: due, UpdatedAt: due}
		}
		if n, err := r.st.UpsertResults(ctx, storage.UpsertResultsParams{Results: rows}); err != nil || n != dispatchRuns {
			b.Fatalf("UpsertResults = %d, %v", n, err)
		}
		// Every side starts from vacuumed tables, as autovacuum leaves
		// them between two fan-outs (a minute apart at the least, not
		// the two seconds of an op here). Without it the dead rows of
		// the earlier ops pile up in every table and index within the
		// run; the delete-and-insert of sqlstore's queue and leases
		// suffers more from that than the bare queue's in-place update
		// (bench/README.md has both figures).
		if !dispatchNoVacuum {
			if _, err := pool.Exec(ctx, `VACUUM result_queue, result_leases, raw_queue, results`); err != nil {
				b.Fatal(err)
			}
		}
		clk.Add(time.Second)
		return due
	}
	var tf, raw1, raw2, queue time.Duration
	var ratios, qratios []float64
	b.ResetTimer()
	b.StopTimer()
	for op := range b.N {
		var tfOp, raw1Op, queueOp time.Duration
		sides := []func(){
			func() {
				scheduleRuns()
				before := sink.n.Load()
				start := time.Now()
				if err := r.srv.Tick(ctx); err != nil {
					b.Fatal(err)
				}
				tfOp = time.Since(start)
				if got := sink.n.Load() - before; got != dispatchRuns {
					b.Fatalf("op %d: %d starts sent, want %d", op, got, dispatchRuns)
				}
			},
			func() {
				due := scheduleRuns()
				start := time.Now()
				if n := rawDrain(ctx, b, pool, rawClaim, due, 1); n != dispatchRuns {
					b.Fatalf("op %d: raw drain claimed %d rows, want %d", op, n, dispatchRuns)
				}
				raw1Op = time.Since(start)
			},
			func() {
				due := scheduleRuns()
				start := time.Now()
				if n := rawDrain(ctx, b, pool, rawClaim, due, 2); n != dispatchRuns {
					b.Fatalf("op %d: raw drain (2 connections) claimed %d rows, want %d", op, n, dispatchRuns)
				}
				raw2 += time.Since(start)
			},
			func() {
				due := scheduleRuns()
				if _, err := pool.Exec(ctx, `INSERT INTO raw_queue (task_id, device_id, run_id, state, due_at)
SELECT task_id, device_id, run_id, 'scheduled', due_at FROM results WHERE task_id = $1
ON CONFLICT (task_id, device_id) DO UPDATE SET run_id = excluded.run_id, state = excluded.state, due_at = excluded.due_at`, tk.ID); err != nil {
					b.Fatal(err)
				}
				if _, err := pool.Exec(ctx, `UPDATE results SET state = 'pending' WHERE task_id = $1 AND state = 'scheduled'`, tk.ID); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if n := rawDrain(ctx, b, pool, queueClaim, due, 1); n != dispatchRuns {
					b.Fatalf("op %d: queue drain claimed %d rows, want %d", op, n, dispatchRuns)
				}
				queueOp = time.Since(start)
			},
		}
		if op%2 == 1 {
			slices.Reverse(sides)
		}
		for _, side := range sides {
			side()
		}
		tf += tfOp
		raw1 += raw1Op
		queue += queueOp
		ratios = append(ratios, raw1Op.Seconds()/tfOp.Seconds())
		qratios = append(qratios, queueOp.Seconds()/tfOp.Seconds())
	}
	n := float64(b.N * dispatchRuns)
	b.ReportMetric(n/tf.Seconds(), "runs/s")
	b.ReportMetric(n/raw1.Seconds(), "raw-rows/s")
	b.ReportMetric(n/raw2.Seconds(), "raw2-rows/s")
	b.ReportMetric(n/queue.Seconds(), "queue-rows/s")
	b.ReportMetric(raw1.Seconds()/tf.Seconds(), "ratio-x")
	b.ReportMetric(median(ratios), "med-ratio-x")
	b.ReportMetric(quantile(ratios, 0.25), "q1-ratio-x")
	b.ReportMetric(quantile(ratios, 0.75), "q3-ratio-x")
	b.ReportMetric(queue.Seconds()/tf.Seconds(), "queue-ratio-x")
	b.ReportMetric(median(qratios), "med-queue-ratio-x")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkIngestVsCopy: each op writes 10,000 new per-device results in
// batches of 1,000 (one transaction each) with sqlstore's UpsertResults
// into one schema and with raw COPY (pgx CopyFrom, one transaction per
// batch) into another, so both tables grow alike. The two writers take
// turns batch by batch (which goes first alternates), so every pair of
// batches meets the same load.
//
//   - results/s: sqlstore's ingest rate.
//   - copy-results/s: raw COPY's rate.
//   - ratio-x: results/s ÷ copy-results/s over the run (goal ≥ 0.9);
//     med-ratio-x the median of the batch pairs' ratios, q1-ratio-x and
//     q3-ratio-x their quartiles.
func BenchmarkIngestVsCopy(b *testing.B) {
	st := storageOpen(b, "postgres")
	raw := storageOpen(b, "postgres")
	var tf, cp time.Duration
	var ratios []float64
	b.ResetTimer()
	b.StopTimer()
	for op := range b.N {
		rows := storageRows(op)
		for off := 0; off < len(rows); off += storageIngestBatch {
			batch := rows[off : off+storageIngestBatch]
			var tfB, cpB time.Duration
			sides := []func(){
				func() {
					start := time.Now()
					n, err := st.UpsertResults(context.Background(), storage.UpsertResultsParams{Results: batch})
					if err != nil || n != storageIngestBatch {
						b.Fatalf("UpsertResults = %d, %v", n, err)
					}
					tfB = time.Since(start)
				},
				func() {
					start := time.Now()
					storageCopy(b, raw.DB().DB, batch, false)
					cpB = time.Since(start)
				},
			}
			if (op*storageIngestOp/storageIngestBatch+off/storageIngestBatch)%2 == 1 {
				slices.Reverse(sides)
			}
			for _, side := range sides {
				side()
			}
			tf += tfB
			cp += cpB
			ratios = append(ratios, cpB.Seconds()/tfB.Seconds())
		}
	}
	n := float64(b.N * storageIngestOp)
	b.ReportMetric(n/tf.Seconds(), "results/s")
	b.ReportMetric(n/cp.Seconds(), "copy-results/s")
	b.ReportMetric(cp.Seconds()/tf.Seconds(), "ratio-x")
	b.ReportMetric(median(ratios), "med-ratio-x")
	b.ReportMetric(quantile(ratios, 0.25), "q1-ratio-x")
	b.ReportMetric(quantile(ratios, 0.75), "q3-ratio-x")
	b.ReportMetric(0, "ns/op")
}

// quantile returns the q-quantile of xs (which it sorts), the nearest
// rank.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[min(len(xs)-1, int(q*float64(len(xs))))]
}

// BenchmarkEndToEndVsRiver: each op schedules and dispatches 20,000 runs
// with taskfleet (UpsertResults of the scheduled runs, then one replica's
// Tick, until every start is sent) and inserts and works 20,000 no-op jobs
// with River (InsertManyFast in batches of 1,000, 200 workers, until no
// job is left unfinished), on the same PostgreSQL, in one schema. River's
// client is started before and stopped after its side, so its polling
// does not load the database during taskfleet's side; the order
// alternates between ops.
//
//   - e2e-runs/s: taskfleet's scheduling write plus dispatch.
//   - river-jobs/s: River's insert plus work.
//   - ratio-x: e2e-runs/s ÷ river-jobs/s over the run; med-ratio-x,
//     q1-ratio-x, q3-ratio-x: the median and quartiles of the ops' ratios.
func BenchmarkEndToEndVsRiver(b *testing.B) {
	ctx := context.Background()
	dsn := storagePGDSN(b)
	clk := clock.NewMock()
	clk.Set(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
	r := openDispatchReplica(b, dsn, "r0", clk)
	tk, err := r.m.Create(ctx, task.System, task.Task{Name: "scan", Application: "Endpoint Security", Type: "virus_scan",
		Scope: scope.Scope{Kind: scope.Group, Group: "g-all"}, Schedule: schedule.Default(schedule.Manual, time.Time{}, time.UTC)})
	if err != nil {
		b.Fatal(err)
	}
	sink := &dispatchSink{}
	if err := r.srv.Open(ctx, r.m, sink); err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	drv := riverpgxv5.New(pool)
	mig, err := rivermigrate.New(drv, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := mig.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		b.Fatal(err)
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &noopWorker{})
	rows := make([]storage.ResultRecord, dispatchRuns)
	params := make([]river.InsertManyParams, 1000)
	run := int64(0)
	var tf, rv time.Duration
	var ratios []float64
	b.ResetTimer()
	b.StopTimer()
	for op := range b.N {
		var tfOp, rvOp time.Duration
		sides := []func(){
			func() {
				due := clk.Now().Add(-time.Minute).UTC()
				if run == 0 {
					run = transport.RunID(due, transport.Manual)
				}
				run += 4
				for d := range rows {
					rows[d] = storage.ResultRecord{TaskID: tk.ID, DeviceID: fmt.Sprintf("d%06d", d), RunID: run, Seq: transport.SeqScheduled, State: string(task.Scheduled), DueAt: due, UpdatedAt: due}
				}
				before := sink.n.Load()
				start := time.Now()
				if n, err := r.st.UpsertResults(ctx, storage.UpsertResultsParams{Results: rows}); err != nil || n != dispatchRuns {
					b.Fatalf("UpsertResults = %d, %v", n, err)
				}
				if err := r.srv.Tick(ctx); err != nil {
					b.Fatal(err)
				}
				tfOp = time.Since(start)
				if got := sink.n.Load() - before; got != dispatchRuns {
					b.Fatalf("op %d: %d starts sent, want %d", op, got, dispatchRuns)
				}
				clk.Add(time.Second)
			},
			func() {
				cl, err := river.NewClient(drv, &river.Config{
					Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 200}},
					Workers:           workers,
					FetchCooldown:     time.Millisecond,
					FetchPollInterval: 5 * time.Millisecond,
				})
				if err != nil {
					b.Fatal(err)
				}
				if err := cl.Start(ctx); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				for batch := 0; batch < dispatchRuns; batch += len(params) {
					for i := range params {
						params[i] = river.InsertManyParams{Args: noopArgs{N: batch + i}}
					}
					if _, err := cl.InsertManyFast(ctx, params); err != nil {
						b.Fatal(err)
					}
				}
				for {
					var left bool
					if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM river_job WHERE state IN ('available', 'running', 'retryable', 'scheduled', 'pending'))`).Scan(&left); err != nil {
						b.Fatal(err)
					}
					if !left {
						break
					}
					time.Sleep(2 * time.Millisecond)
				}
				rvOp = time.Since(start)
				if err := cl.Stop(ctx); err != nil {
					b.Fatal(err)
				}
			},
		}
		if op%2 == 1 {
			slices.Reverse(sides)
		}
		for _, side := range sides {
			side()
		}
		tf += tfOp
		rv += rvOp
		ratios = append(ratios, rvOp.Seconds()/tfOp.Seconds())
	}
	n := float64(b.N * dispatchRuns)
	b.ReportMetric(n/tf.Seconds(), "e2e-runs/s")
	b.ReportMetric(n/rv.Seconds(), "river-jobs/s")
	b.ReportMetric(rv.Seconds()/tf.Seconds(), "ratio-x")
	b.ReportMetric(median(ratios), "med-ratio-x")
	b.ReportMetric(quantile(ratios, 0.25), "q1-ratio-x")
	b.ReportMetric(quantile(ratios, 0.75), "q3-ratio-x")
	b.ReportMetric(0, "ns/op")
}

// median returns the median of xs (which it sorts).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}
