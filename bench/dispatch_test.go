package bench

// Dispatch throughput of N task/engine replicas sharing one PostgreSQL
// (storage.Claimer leases), against riverqueue/river inserting and working
// the same number of no-op jobs on the same server.
//
//	cd bench && TASKFLEET_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' \
//	  go test -run '^$' -bench 'Dispatch|River' -benchtime 3x

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

// dispatchRuns is the number of device runs (or River jobs) per op.
const dispatchRuns = 20_000

type dispatchSink struct{ n atomic.Int64 }

func (s *dispatchSink) Send(_ context.Context, m transport.Message) error {
	if m.Kind == transport.StartRun {
		s.n.Add(1)
	}
	return nil
}

type dispatchReplica struct {
	st  *sqlstore.Store
	m   *task.Manager
	srv *engine.Server
}

func openDispatchReplica(b *testing.B, dsn, id string, clk clock.Clock) dispatchReplica {
	b.Helper()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, sqlstore.Config{Dialect: sqlstore.Postgres, DSN: dsn})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	reg := task.NewRegistry()
	if err := reg.Register(task.TaskType{Application: "Endpoint Security", Name: "virus_scan"}); err != nil {
		b.Fatal(err)
	}
	inv := inmem.New()
	if err := inv.PutGroups(ctx, scope.AdminGroup{ID: "g-all"}); err != nil {
		b.Fatal(err)
	}
	srv, err := engine.New(engine.Config{Store: st, Inventory: inv, Clock: clk, ReplicaID: id})
	if err != nil {
		b.Fatal(err)
	}
	m, err := task.New(task.Config{Store: st, Registry: reg, Inventory: inv, Clock: clk, Dispatcher: srv})
	if err != nil {
		b.Fatal(err)
	}
	return dispatchReplica{st: st, m: m, srv: srv}
}

// BenchmarkDispatch: each op schedules 20,000 device runs (a new run of
// one group task) and measures until every replica-claimed start is marked
// dispatched in the database and sent. runs/s is the dispatch rate;
// e2e-runs/s also counts the time to write the 20,000 scheduled runs.
func BenchmarkDispatch(b *testing.B) {
	for _, replicas := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			ctx := context.Background()
			dsn := storagePGDSN(b)
			clk := clock.NewMock()
			clk.Set(time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC))
			var rs []dispatchReplica
			for i := range replicas {
				rs = append(rs, openDispatchReplica(b, dsn, fmt.Sprintf("r%d", i), clk))
			}
			tk, err := rs[0].m.Create(ctx, task.System, task.Task{Name: "scan", Application: "Endpoint Security", Type: "virus_scan",
				Scope: scope.Scope{Kind: scope.Group, Group: "g-all"}, Schedule: schedule.Default(schedule.Manual, time.Time{}, time.UTC)})
			if err != nil {
				b.Fatal(err)
			}
			sinks := make([]*dispatchSink, replicas)
			for i, r := range rs {
				sinks[i] = &dispatchSink{}
				if err := r.srv.Open(ctx, r.m, sinks[i]); err != nil {
					b.Fatal(err)
				}
			}
			rows := make([]storage.ResultRecord, dispatchRuns)
			b.ResetTimer()
			var elapsed, scheduling time.Duration
			for op := range b.N {
				b.StopTimer()
				due := clk.Now().Add(-time.Minute).UTC()
				run := transport.RunID(due, transport.Manual) + int64(op)*4
				for d := range rows {
					rows[d] = storage.ResultRecord{TaskID: tk.ID, DeviceID: fmt.Sprintf("d%06d", d), RunID: run, Seq: transport.SeqScheduled, State: string(task.Scheduled), DueAt: due, UpdatedAt: due}
				}
				schedStart := time.Now()
				if _, err := rs[0].st.UpsertResults(ctx, storage.UpsertResultsParams{Results: rows}); err != nil {
					b.Fatal(err)
				}
				scheduling += time.Since(schedStart)
				var before int64
				for _, s := range sinks {
					before += s.n.Load()
				}
				b.StartTimer()
				start := time.Now()
				var wg sync.WaitGroup
				for _, r := range rs {
					wg.Go(func() {
						if err := r.srv.Tick(ctx); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
				elapsed += time.Since(start)
				b.StopTimer()
				var sent int64
				for _, s := range sinks {
					sent += s.n.Load()
				}
				if sent-before != dispatchRuns {
					b.Fatalf("op %d: %d starts sent, want %d", op, sent-before, dispatchRuns)
				}
				clk.Add(time.Second)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N*dispatchRuns)/elapsed.Seconds(), "runs/s")
			// Writing the scheduled runs and dispatching them, the
			// like-for-like figure for River's insert-and-work jobs/s.
			b.ReportMetric(float64(b.N*dispatchRuns)/(elapsed+scheduling).Seconds(), "e2e-runs/s")
		})
	}
}

type noopArgs struct{ N int }

func (noopArgs) Kind() string { return "noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

// BenchmarkRiver: each op inserts 20,000 no-op jobs (InsertManyFast, in
// batches of 1,000) and waits until River's workers completed them all
// (polling the job table every 2 ms).
// jobs/s is comparable to BenchmarkDispatch's runs/s.
func BenchmarkRiver(b *testing.B) {
	ctx := context.Background()
	dsn := storagePGDSN(b)
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
	defer func() { _ = cl.Stop(ctx) }()
	params := make([]river.InsertManyParams, 1000)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		for batch := 0; batch < dispatchRuns; batch += len(params) {
			for i := range params {
				params[i] = river.InsertManyParams{Args: noopArgs{N: batch + i}}
			}
			if _, err := cl.InsertManyFast(ctx, params); err != nil {
				b.Fatal(err)
			}
		}
		for {
			var n int
			if err := pool.QueryRow(ctx, `SELECT COUNT(*) FROM river_job WHERE state <> 'completed'`).Scan(&n); err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	b.ReportMetric(float64(b.N*dispatchRuns)/time.Since(start).Seconds(), "jobs/s")
}
