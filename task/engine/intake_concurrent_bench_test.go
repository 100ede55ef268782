package engine_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/taskfleet/taskfleet/scope"
	"github.com/taskfleet/taskfleet/scope/inmem"
	"github.com/taskfleet/taskfleet/storage/sqlstore"
	"github.com/taskfleet/taskfleet/task"
	"github.com/taskfleet/taskfleet/task/engine"
	"github.com/taskfleet/taskfleet/task/transport"
)

// BenchmarkIntakeConcurrent measures the intake as a device channel
// drives it: 2,000 devices each send a one-result Results message at once
// (8 goroutines, like the HTTPS channel's request handlers) while Run's
// ticker flushes every 5 ms, recorded in SQLite. Two servers with their
// own SQLite files take the same bursts, alternating: one writes its
// batches with the server's lock held (before group commit: every device
// message waits for the transaction), one with it released (group
// commit). It reports both throughputs in results per wall second.
//
//	go test -run XXX -bench BenchmarkIntakeConcurrent -benchtime 20x ./task/engine/
func BenchmarkIntakeConcurrent(b *testing.B) {
	locked, group := newConcurrentIntake(b, false), newConcurrentIntake(b, true)
	b.ResetTimer()
	var tLocked, tGroup time.Duration
	for i := range b.N {
		first, second := locked, group
		if i%2 == 1 {
			first, second = group, locked
		}
		for _, x := range []*concurrentIntake{first, second} {
			d := x.burst(b, i)
			if x == group {
				tGroup += d
			} else {
				tLocked += d
			}
		}
	}
	b.StopTimer()
	locked.check(b, b.N)
	group.check(b, b.N)
	n := float64(b.N * concurrentDevices)
	b.ReportMetric(n/tLocked.Seconds(), "results/s-locked")
	b.ReportMetric(n/tGroup.Seconds(), "results/s-group")
}

const concurrentDevices = 2000

type concurrentIntake struct {
	ctx  context.Context
	srv  *engine.Server
	clk  *clock.Mock
	devs []scope.DeviceID
	id   string
	run  int64
}

func newConcurrentIntake(b *testing.B, group bool) *concurrentIntake {
	ctx := context.Background()
	inv := inmem.New()
	must(b, inv.PutGroups(ctx, scope.AdminGroup{ID: "g", Name: "g"}))
	devs := make([]scope.DeviceID, concurrentDevices)
	batch := make([]scope.Device, 0, concurrentDevices)
	for i := range devs {
		devs[i] = scope.DeviceID(fmt.Sprintf("d%05d", i))
		batch = append(batch, scope.Device{ID: devs[i], GroupID: "g", Connected: true})
	}
	must(b, inv.PutDevices(ctx, batch...))
	clk := clock.NewMock()
	clk.Set(t0)
	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(b.TempDir(), "intake.db"))
	must(b, err)
	b.Cleanup(func() { store.Close() })
	srv, err := engine.New(engine.Config{Store: store, Inventory: inv, Clock: clk, Location: time.UTC, SingleReplica: true})
	must(b, err)
	m, err := task.New(task.Config{Store: store, Registry: registry(b), Inventory: inv, Clock: clk, Location: time.UTC, Dispatcher: srv})
	must(b, err)
	must(b, srv.Open(ctx, m, nopEndpoint{}))
	engine.SetGroupCommit(srv, group)
	tk, err := m.Create(ctx, task.System, task.Task{Name: "scan", Application: appES, Type: "virus_scan", Scope: scope.Scope{Kind: scope.Group, Group: "g"}})
	must(b, err)
	run, err := m.Start(ctx, task.System, tk.ID)
	must(b, err)
	must(b, srv.Tick(ctx))
	return &concurrentIntake{ctx: ctx, srv: srv, clk: clk, devs: devs, id: tk.ID, run: run.ID}
}

// burst has every device report round i of its run (a newer Seq each
// round) and returns the wall time until all of it is recorded.
func (x *concurrentIntake) burst(b *testing.B, i int) time.Duration {
	msgs := make([]transport.Message, len(x.devs))
	now := x.clk.Now()
	for k, d := range x.devs {
		msgs[k] = transport.Message{Kind: transport.Results, Device: d, Key: fmt.Sprintf("r/%d", i), Results: []transport.Result{{TaskID: x.id, RunID: x.run,
			Seq: transport.SeqDevice + int64(i), State: string(task.Running), StartedAt: now, UpdatedAt: now, Progress: i % 100}}}
	}
	start := time.Now()
	stop := make(chan struct{})
	ticked := make(chan struct{})
	go func() { // Run's ticker
		defer close(ticked)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				must(b, x.srv.Tick(x.ctx))
			}
		}
	}()
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Go(func() {
			for k := w; k < len(msgs); k += workers {
				x.srv.Handle(x.ctx, msgs[k])
			}
		})
	}
	wg.Wait()
	close(stop)
	<-ticked
	must(b, x.srv.Tick(x.ctx)) // the rest
	return time.Since(start)
}

func (x *concurrentIntake) check(b *testing.B, rounds int) {
	if st := x.srv.Stats(); st.Rejected != 0 || st.ResultsApplied != int64(rounds*concurrentDevices) {
		b.Fatalf("applied %d of %d results, rejected %d (%v)", st.ResultsApplied, rounds*concurrentDevices, st.Rejected, st.RejectedBy)
	}
}
