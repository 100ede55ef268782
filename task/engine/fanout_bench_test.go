package engine_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/taskfleet/taskfleet/schedule"
	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

// BenchmarkFanOut measures a manual start on every device of a fleet as
// the load test (examples/fleetload) makes it, without the network: one
// server on SQLite (and on PostgreSQL when TASKFLEET_TEST_POSTGRES is
// set) with its inventory in the same store, the claim layer
// on, Run ticking every 100 ms, and devices that answer every start they
// get with a result within 10 ms (through Handle, from 8 goroutines), so
// the results compete with the fan-out for the store. It reports the
// seconds from Manager.Start until every start was dispatched
// (dispatch-s), until every result was recorded (recorded-s), the time
// Manager.Start itself took (start-s), and the starts dispatched per
// second.
//
//	go test -run XXX -bench BenchmarkFanOut -benchtime 1x ./task/engine/
func BenchmarkFanOut(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		st, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "fanout.db"))
		must(b, err)
		defer st.Close()
		fanOut(b, st)
	})
	// With TASKFLEET_TEST_POSTGRES set: the same on PostgreSQL, in a
	// schema of its own.
	b.Run("postgres", func(b *testing.B) {
		st, err := sqlstore.Open(context.Background(), sqlstore.Config{Dialect: sqlstore.Postgres, DSN: pgSchemaDSN(b)})
		must(b, err)
		defer st.Close()
		fanOut(b, st)
	})
}

func fanOut(b *testing.B, st *sqlstore.Store) {
	const n = 20000
	ctx := context.Background()
	inv := st.Inventory().(*sqlstore.Inventory)
	must(b, inv.PutGroups(ctx, scope.AdminGroup{ID: "g-all", Name: "all"}))
	devs := make([]scope.Device, 0, 1000)
	for i := range n {
		devs = append(devs, scope.Device{ID: scope.DeviceID(fmt.Sprintf("d%06d", i)), GroupID: "g-all", TimeZone: "UTC", Tags: []string{}, Connected: true,
			Server: scope.ServerRef{ID: "main", Role: scope.Primary}, Applications: map[string]scope.AppState{appES: {Installed: true, Running: true}}})
		if len(devs) == cap(devs) {
			must(b, inv.PutDevices(ctx, devs...))
			devs = devs[:0]
		}
	}
	srv, err := engine.New(engine.Config{Store: st, Inventory: inv, RetryInterval: time.Minute, LeaseTTL: 10 * time.Second})
	must(b, err)
	m, err := task.New(task.Config{Store: st, Registry: registry(b), Inventory: inv, Dispatcher: srv})
	must(b, err)
	ep := &answering{}
	must(b, srv.Open(ctx, m, ep))
	tk, err := m.Create(ctx, task.System, task.Task{Name: "scan", Application: appES, Type: "virus_scan", Scope: groupScope("g-all"),
		Schedule: schedule.Default(schedule.Manual, time.Now(), time.UTC)})
	must(b, err)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Run(rctx, 100*time.Millisecond) })
	for range 8 {
		wg.Go(func() { ep.answer(rctx, srv) })
	}
	var tStart, tDisp, tRec time.Duration
	b.ResetTimer()
	for i := range b.N {
		if i > 0 {
			b.StopTimer()
			time.Sleep(1100 * time.Millisecond) // a new run id (they derive from time)
			b.StartTimer()
		}
		base := srv.Stats()
		began := time.Now()
		_, err := m.Start(ctx, task.System, tk.ID)
		must(b, err)
		tStart += time.Since(began)
		disp := time.Duration(0)
		for {
			s := srv.Stats()
			if disp == 0 && s.Dispatched-base.Dispatched >= n {
				disp = time.Since(began)
			}
			if s.ResultsApplied-base.ResultsApplied >= n {
				break
			}
			if time.Since(began) > 5*time.Minute {
				b.Fatalf("after 5 minutes: %+v", s)
			}
			time.Sleep(5 * time.Millisecond)
		}
		tDisp += disp
		tRec += time.Since(began)
	}
	b.StopTimer()
	cancel()
	wg.Wait()
	runs := float64(b.N)
	b.ReportMetric(tStart.Seconds()/runs, "start-s")
	b.ReportMetric(tDisp.Seconds()/runs, "dispatch-s")
	b.ReportMetric(tRec.Seconds()/runs, "recorded-s")
	b.ReportMetric(n*runs/tDisp.Seconds(), "starts/s")
}

// answering is an endpoint whose devices answer each start with a
// completed result.
type answering struct {
	mu     sync.Mutex
	starts []transport.Message
}

func (a *answering) Send(_ context.Context, m transport.Message) error {
	if m.Kind == transport.StartRun {
		a.mu.Lock()
		a.starts = append(a.starts, m)
		a.mu.Unlock()
	}
	return nil
}

func (a *answering) answer(ctx context.Context, srv *engine.Server) {
	for ctx.Err() == nil {
		a.mu.Lock()
		batch := a.starts[:min(len(a.starts), 500)]
		a.starts = a.starts[len(batch):]
		a.mu.Unlock()
		if len(batch) == 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		now := time.Now().UTC()
		for _, m := range batch {
			st := m.Start
			srv.Handle(ctx, transport.Message{Kind: transport.Results, Device: m.Device, Key: fmt.Sprintf("r/%d/%s", st.RunID, m.Device), Results: []transport.Result{{
				TaskID: st.TaskID, RunID: st.RunID, Seq: transport.SeqDevice, State: string(task.Completed), DueAt: st.Due, StartedAt: now, FinishedAt: now, UpdatedAt: now, Progress: 100}}})
		}
	}
}
